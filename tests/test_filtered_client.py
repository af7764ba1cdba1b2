"""The filtered signatures over the project's server (`posters serve`'s ModelServer, on the stand-in
brute_force export with rule attributes): hostile rule inputs get 4xx and the server keeps serving;
REST rows and gRPC TensorProtos answer alike; `PosterClient.*_filtered`, `posters query --genre …`
and the gallery's filtered row send the rules and get answers that obey them."""
from __future__ import annotations

import base64
import http.client
import json
import re

import numpy as np
import pytest
import tensorflow as tf

from poster_similarity.client.rules import QueryRules, parse_years, rule_inputs
from poster_similarity.components.retrieval_rules import MAX_EXCLUDE_IDS
from tests import tiny_export
from tests.standin_export import attributes

N = 300  # the stand-in catalogue
ATTRS = attributes(N)


def obeys(mid: str, rules: QueryRules) -> bool:
    """Whether stand-in poster `mid` satisfies `rules` (crowding aside)."""
    i = int(mid[1:])
    lo, hi = rules.years
    year = int(ATTRS.years[i])
    genres, tags = set(ATTRS.genres[i]), set(ATTRS.tags[i])
    return ((not rules.genres or bool(genres & set(rules.genres))) and not genres & set(rules.not_genres)
            and set(rules.tags) <= tags and not tags & set(rules.not_tags) and mid not in rules.exclude
            and (not (lo or hi) or (year > 0 and (not lo or year >= lo) and (not hi or year <= hi))))


def crowded_ok(ids: list[str], per_group: int) -> bool:
    keys = [ATTRS.groups[int(m[1:])] for m in ids if ATTRS.groups[int(m[1:])]]
    return not per_group or all(keys.count(g) <= per_group for g in keys)


# --- the project's server: hostile rule inputs get 4xx, the server keeps serving -------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import shutil

    from poster_similarity.serving.server import ModelServer

    base = tmp_path_factory.mktemp("filtered") / "posters"
    shutil.copytree(tiny_export.cached("brute_force"), base / "1")
    srv = ModelServer(str(base), "posters", rest_port=0, grpc_port=0, poll_seconds=60).start()
    yield srv
    srv.stop()


def post(port: int, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/models/posters:predict", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def rest_rules(**over) -> dict:
    base = {"include_genres": [[""]], "exclude_genres": [[""]], "year_range": [[0, 0]], "required_tags": [[""]],
            "forbidden_tags": [[""]], "exclude_ids": [[""]], "per_group": [0], "k": [0]}
    return {**base, **over}


@pytest.mark.parametrize("over,needle", [
    ({"exclude_ids": [[f"m{i}" for i in range(MAX_EXCLUDE_IDS + 1)]]}, "exclude_ids"),
    ({"include_genres": [["Western"]]}, "unknown genre"),
    ({"required_tags": [[f"t{i}" for i in range(10_000)]]}, "required_tags"),
    ({"forbidden_tags": [[f"t{i}" for i in range(10_000)]]}, "forbidden_tags"),
    ({"k": [100_000]}, "k: at most"),
    ({"per_group": [-3]}, "per_group"),
    ({"year_range": [[1990]]}, "year_range"),
    ({"per_group": [0, 0]}, "one row per query"),
    ({"include_genres": [[3]]}, "include_genres"),
])
def test_hostile_rules_get_400_over_rest(server, over, needle):
    status, body = post(server.rest_port, {"signature_name": "neighbors_filtered",
                                           "inputs": {"embedding": [[0.1] * 128], **rest_rules(**over)}})
    assert status == 400 and needle in body["error"], (status, str(body)[:300])
    ok = post(server.rest_port, {"signature_name": "neighbors_filtered",
                                 "inputs": {"embedding": [[0.1] * 128], **rest_rules(include_genres=[["", "Horror"]])}})
    assert ok[0] == 200 and ok[1]["outputs"]["num_results"] == [10]


def test_recommend_filtered_caps_history_plus_exclusions(server):
    status, body = post(server.rest_port, {"signature_name": "recommend_filtered", "inputs": {
        "history": [["m1"] * 6000], **rest_rules(exclude_ids=[["m2"] * 6000])}})
    assert status == 400 and "exclude_ids + history" in body["error"]


def test_rest_rows_and_grpc_answer_alike(server):
    """The documented REST row format and a gRPC PredictRequest of TensorProtos, same answer."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    png = tf.io.encode_png(np.full((48, 32, 3), 90, np.uint8)).numpy()
    row = {"image_bytes": {"b64": base64.b64encode(png).decode()}, "include_genres": ["", "Horror", "Drama"],
           "exclude_genres": ["", "Comedy"], "year_range": [1980, 1999], "required_tags": [""],
           "forbidden_tags": ["", "rating:R"], "exclude_ids": ["", "m7"], "per_group": 1, "k": 5}
    status, body = post(server.rest_port, {"signature_name": "similar_filtered", "instances": [row]})
    assert status == 200, body
    req = predict_pb2.PredictRequest()
    req.model_spec.name, req.model_spec.signature_name = "posters", "similar_filtered"
    for name, value in row.items():
        value = png if name == "image_bytes" else value
        dtype = tf.int32 if name in ("year_range", "per_group", "k") else tf.string
        req.inputs[name].CopyFrom(tf.make_tensor_proto([value], dtype=dtype))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=60)
    ids = [i.decode() for i in tf.make_ndarray(resp.outputs["movie_ids"])[0]]
    assert body["predictions"][0]["movie_ids"] == ids and 0 < body["predictions"][0]["num_results"] <= 5



# --- the client library, the CLI, the gallery -------------------------------------------------------
RULES = QueryRules(genres=("Horror", "Drama"), not_genres=("Comedy",), years=(1970, 2010), not_tags=("rating:R",),
                   exclude=("m5", "m9"), per_group=1)


def test_rule_encoding_follows_the_padding_convention():
    enc = rule_inputs([RULES, QueryRules(tags=("hd", "hd"))], 2, k=7)
    assert enc["include_genres"] == [[b"", b"Horror", b"Drama"], [b"", b"", b""]]
    assert enc["required_tags"] == [[b"", b"", ], [b"", b"hd"]]  # a set: once
    assert enc["exclude_ids"][0] == [b"", b"m5", b"m9"] and enc["forbidden_tags"][1] == [b"", b""]
    assert enc["year_range"].dtype == np.int32 and enc["year_range"].tolist() == [[1970, 2010], [0, 0]]
    assert enc["per_group"].tolist() == [1, 0] and enc["k"].tolist() == [7, 7] and enc["k"].dtype == np.int32
    assert [parse_years(t) for t in ("1980-1999", "1980-", "-1999", "1984", "1980–1999")] == [
        (1980, 1999), (1980, 0), (0, 1999), (1984, 1984), (1980, 1999)]
    for bad in ("1999-1980", "eighties", "-", "-5-3"):
        with pytest.raises(ValueError):
            parse_years(bad)
    assert QueryRules(genres=("Horror",), years=(1980, 1999), per_group=1).describe(like="this") == \
        "Horror like this, 1980–1999, max 1 per series"


@pytest.fixture(scope="module")
def clients(server):
    from poster_similarity.client import PosterClient

    with PosterClient(f"127.0.0.1:{server.rest_port}") as rest, \
            PosterClient(f"127.0.0.1:{server.grpc_port}", protocol="grpc") as grpc:
        yield rest, grpc


def test_client_filtered_calls_agree_over_rest_and_grpc_and_obey_the_rules(clients):
    rest, grpc = clients
    png = tf.io.encode_png(np.full((48, 32, 3), 90, np.uint8)).numpy()
    emb = rest.embed([png])
    answers = []
    for client in (rest, grpc):
        answers.append([client.similar_filtered([png], RULES, k=6), client.neighbors_filtered(emb[0], RULES, k=6),
                        client.recommend_filtered([["m1", "m2"], ["m3"]], RULES, k=6)])
    for a, b in zip(*answers, strict=True):
        assert [[m for m, _ in row] for row in a] == [[m for m, _ in row] for row in b]
        assert a.plan == b.plan and len(a.plan) == len(a)
    similar, neighbors, recs = answers[0]
    # The same query twice: the same ids; scores equal up to float32 rounding (the image path scores
    # inside one graph, the embedding path after a round trip, and XLA/oneDNN may order sums differently).
    assert [[m for m, _ in row] for row in similar] == [[m for m, _ in row] for row in neighbors]
    np.testing.assert_allclose([[s for _, s in row] for row in similar], [[s for _, s in row] for row in neighbors],
                               rtol=0, atol=1e-6)
    assert recs.history_used == [2, 1]
    for rows, excluded in ((similar, set()), (recs, {"m1", "m2"}), (recs[1:], {"m3"})):
        for row in rows:
            ids = [m for m, _ in row]
            assert 0 < len(ids) <= 6 and all(obeys(m, RULES) for m in ids) and crowded_ok(ids, 1)
            assert not set(ids) & excluded
            assert [s for _, s in row] == sorted((s for _, s in row), reverse=True)


def _cli(server, capsys, *argv: str) -> tuple[int, str, str]:
    from poster_similarity.posters.cli import main as cli

    rc = cli(["query", *argv, "--server", f"127.0.0.1:{server.rest_port}"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_posters_query_rules(server, tmp_path, capsys):
    img = tmp_path / "p.png"
    img.write_bytes(tf.io.encode_png(np.full((48, 32, 3), 90, np.uint8)).numpy())
    rc, out, _ = _cli(server, capsys, str(img), "--history", "m1", "m2", "--genre", "Horror", "--genre", "Drama",
                      "--not-genre", "Comedy", "--years", "1970-2010", "--not-tag", "rating:R", "--exclude", "m5",
                      "--exclude", "m9", "--per-group", "1", "-k", "6")
    assert rc == 0, out
    heads = [line for line in out.splitlines() if line.startswith("==")]
    assert len(heads) == 2 and all("[Horror or Drama, 1970–2010, not Comedy, without rating:R, 2 excluded, "
                                   "max 1 per series]" in h for h in heads), heads
    ids = [line.split()[1] for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(ids) == 12 and all(obeys(m, RULES) for m in ids) and not {"m1", "m2"} & set(ids)
    rc, _, err = _cli(server, capsys, str(img), "--tag", "no-such-tag", "-k", "3")  # nothing qualifies
    assert rc == 0 and "only 0 posters satisfy the rules" in err
    for bad, needle in ((["--years", "1999-1980"], "--years"), (["--per-group", "-1"], "--per-group"),
                        (["--genre", "Horror", "-k", "5000"], "-k must be <= 1000")):
        rc, _, err = _cli(server, capsys, str(img), *bad)
        assert rc == 2 and needle in err, err
    rc, _, err = _cli(server, capsys, str(img), "--genre", "Western")
    assert rc == 1 and "unknown genre" in err


def test_gallery_has_a_filtered_row_that_obeys_its_rules(clients, tmp_path):
    from poster_similarity.client import gallery
    from poster_similarity.core import tfrecords as tfr

    colours = [tf.io.encode_png(np.full((30, 20, 3), c, np.uint8)).numpy() for c in range(0, 250, 25)]
    examples = (tfr.make_example(f"m{i}", colours[i % len(colours)], ATTRS.genres[i], f"Film {i}",
                                 int(ATTRS.years[i]), ATTRS.tags[i], ATTRS.groups[i]) for i in range(N))
    tfr.write_sharded(examples, str(tmp_path / "cat"), shards=1)
    gallery.build_gallery(clients[0], tfr.shard_glob(str(tmp_path / "cat")), str(tmp_path / "out"), queries=2)
    doc = json.loads((tmp_path / "out" / "gallery.json").read_text())
    assert [r["kind"] for r in doc["rows"]] == ["query", "query", "mix", "history", "filtered"]
    row = doc["rows"][-1]
    query = int(row["inputs"][0][1:])
    genre = ATTRS.genres[query][0]
    assert row["heading"].startswith(f"{genre} like Film {query}") and "max 1 per series" in row["heading"]
    years = re.search(r"(\d{4})–(\d{4})", row["heading"])
    lo, hi = (int(years.group(1)), int(years.group(2))) if years else (0, 9999)
    ids = [m for m, _ in row["neighbors"]]
    assert len(ids) == 10 and row["inputs"][0] not in ids and crowded_ok(ids, 1)
    assert all(genre in ATTRS.genres[int(m[1:])] and lo <= int(ATTRS.years[int(m[1:])]) <= hi for m in ids)
    assert 'data-row="filtered"' in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
