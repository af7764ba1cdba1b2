"""The trained embedding learns: on the held-out split of colour-graded sample posters it beats a
random ranking and the same network untrained (best of three initialisations), with margins;
phase-1 vs phase-2 numbers are printed (reported) whichever wins. Same comparison as
`python -m bench.learning`, on the e2e fixture's pipeline run."""
import pytest

pytestmark = pytest.mark.slow


def test_trained_embedding_beats_untrained_network_and_random_ranking(trained_model):
    from bench.learning import MAP_MARGIN, format_rows, learning_rows

    rows = learning_rows(trained_model["config"], trained_model["model_dir"])
    print(f"\n{int(rows['untrained']['num_queries'])} held-out posters\n{format_rows(rows)}")
    trained = rows["phase 1+2"]
    for base in (rows["untrained"], rows["random"]):
        # recall@10 (any top-10 neighbour shares a genre) is not compared with the baselines: it is
        # saturated. About 30 % of poster pairs share a genre, so even a random top 10 misses with
        # p ≈ 0.7^10 ≈ 3 %: ~2 of the 78 held-out queries, and 0 or 1 for the trained and untrained
        # nets, whose training on CPU is not bit-reproducible. A difference of one query is noise
        # (a run measured trained 77/78 vs untrained 78/78 while every margin below held). The
        # floor after the loop bounds it; the metrics below are where learning shows.
        # ir_recall@10 (the share of relevant posters found in the top 10) does not saturate.
        assert trained["ir_recall@10"] >= 1.5 * base["ir_recall@10"]
        assert trained["ir_recall@10"] >= base["ir_recall@10"] + 0.08
        assert trained["precision@10"] >= base["precision@10"] + 0.2
        assert trained["map@r"] >= base["map@r"] + MAP_MARGIN
        assert trained["recall@1"] >= base["recall@1"] + 0.1
    assert trained["recall@10"] >= 0.97
    assert trained["embedding_std"] > 1e-3  # not collapsed
