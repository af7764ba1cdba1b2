"""IndexBuilder's executor: read the catalogue embeddings, wrap the tower SavedModel with the
index, save the served SavedModel (`components.export`) into the output Model artifact.

The embedding examples also carry each poster's rule attributes (CatalogueEmbedder copies them from
the raw catalogue): genres, year, tags and the crowding key, which `crowding_keys` takes from the
`group` feature (franchise/series) or, failing that, from `duplicate_group` (near-duplicate set).
"""
from __future__ import annotations

import json
import logging
import math
import os
from typing import NamedTuple

import numpy as np
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from poster_similarity.components.tower import TRAINING_REPORT
from poster_similarity.core.config import PipelineConfig
from poster_similarity.core.tfrecords import (
    FEATURE_DUPLICATE_GROUP,
    FEATURE_GENRES,
    FEATURE_GROUP,
    FEATURE_IMAGE,
    FEATURE_MOVIE_ID,
    FEATURE_TAGS,
    FEATURE_TITLE,
    FEATURE_YEAR,
    iter_serialized,
)

log = logging.getLogger(__name__)

WARMUP_POSTERS = 4


class Catalogue(NamedTuple):
    """CatalogueEmbedder's output, one entry per distinct movie_id."""

    ids: np.ndarray  # [N] bytes
    titles: np.ndarray  # [N] bytes
    embeddings: np.ndarray  # [N, D] float32
    duplicates: int  # records dropped because their movie_id was seen before
    attributes: dict  # `export_filtered.CatalogueAttributes` fields (genre_vocab aside), see `read_embeddings`


def _texts(f, key: str) -> list[str]:
    return [v.decode("utf-8", "replace") for v in f[key].bytes_list.value] if key in f else []


def crowding_keys(groups: list[str], duplicate_groups: list[str]) -> list[str] | None:
    """Per poster, the key `per_group` crowds on: its `group` (franchise/series) when it has one;
    else the group of its near-duplicate set (the first member's that has one), so a copy of a
    franchise poster is crowded with that franchise; else its `duplicate_group` itself, so copies
    of one artwork crowd each other; else none (""). The two namespaces are prefixed apart.
    None when no poster has either (nothing stored in the served model)."""
    if not any(groups) and not any(duplicate_groups):
        return None
    of_set: dict[str, str] = {}
    for g, d in zip(groups, duplicate_groups, strict=True):
        if g and d:
            of_set.setdefault(d, g)
    return [f"group:{g}" if g else f"group:{of_set[d]}" if d in of_set else f"duplicate:{d}" if d else ""
            for g, d in zip(groups, duplicate_groups, strict=True)]


def read_embeddings(patterns: list[str]) -> Catalogue:
    """CatalogueEmbedder's output (files in sorted order); a movie_id seen twice keeps its first
    embedding. Attributes: {"genres": [[str]], "years": int32 [N], "tags": [[str]] or None,
    "groups": crowding keys [N] or None}; None = no poster has any, so the export stores nothing."""
    import tensorflow as tf

    ids, titles, vecs, seen, dup = [], [], [], set(), 0
    genres, years, tags, groups, dups = [], [], [], [], []
    for pattern in patterns:
        for record in iter_serialized(pattern):
            f = tf.train.Example.FromString(record).features.feature
            mid = f[FEATURE_MOVIE_ID].bytes_list.value[0]
            if mid in seen:
                dup += 1
                continue
            seen.add(mid)
            ids.append(mid)
            titles.append(f[FEATURE_TITLE].bytes_list.value[0] if f[FEATURE_TITLE].bytes_list.value else b"")
            vecs.append(np.asarray(f["embedding"].float_list.value, np.float32))
            genres.append(_texts(f, FEATURE_GENRES))
            years.append(f[FEATURE_YEAR].int64_list.value[0] if FEATURE_YEAR in f and f[FEATURE_YEAR].int64_list.value
                         else 0)
            tags.append(_texts(f, FEATURE_TAGS))
            groups.append((_texts(f, FEATURE_GROUP) or [""])[0])
            dups.append((_texts(f, FEATURE_DUPLICATE_GROUP) or [""])[0])
    if not ids:
        raise ValueError("the catalogue has no embeddable poster: nothing to index")
    attributes = {"genres": genres, "years": np.clip(np.array(years, np.int64), 0, np.iinfo(np.int32).max)
                  .astype(np.int32), "tags": tags if any(tags) else None, "groups": crowding_keys(groups, dups),
                  "duplicate_groups": dups if any(dups) else None}  # one artwork once per answer
    return Catalogue(np.array(ids, dtype=object), np.array(titles, dtype=object), np.stack(vecs), dup, attributes)


def warmup_posters(patterns: list[str], wanted: set[bytes], n: int = WARMUP_POSTERS) -> dict:
    """The first `n` raw catalogue posters that were embedded (so their images decode)."""
    import tensorflow as tf

    out: dict = {"images": [], "ids": [], "titles": []}
    for pattern in patterns:
        for record in iter_serialized(pattern):
            f = tf.train.Example.FromString(record).features.feature
            mid = f[FEATURE_MOVIE_ID].bytes_list.value[0] if f[FEATURE_MOVIE_ID].bytes_list.value else b""
            if mid in wanted:
                out["images"].append(f[FEATURE_IMAGE].bytes_list.value[0])
                out["ids"].append(mid)
                out["titles"].append(f[FEATURE_TITLE].bytes_list.value[0] if f[FEATURE_TITLE].bytes_list.value
                                     else b"")
                if len(out["ids"]) == n:
                    return out
    return out


def _split_globs(artifact) -> list[str]:
    return [os.path.join(artifact_utils.get_split_uri([artifact], s), "*")
            for s in artifact_utils.decode_split_names(artifact.split_names)]


def record_training_lift(artifact, helped: dict) -> None:
    """ML Metadata properties answering "did training help?": macro genre P@10 of the model and of
    each baseline on the eval split (`<row>_macro_precision_at_10`), and the lift over each."""
    rows = {"model": helped.get("model") or {}} | (helped.get("baselines") or {})
    values = {f"{name}_macro_precision_at_10": row["macro_precision@10"] for name, row in rows.items()
              if "macro_precision@10" in row}
    values |= {f"lift_over_{name}": v for name, v in (helped.get("lift_macro_precision@10") or {}).items()}
    for key, value in values.items():
        if math.isfinite(float(value)):  # ML Metadata rejects inf and nan
            artifact.set_float_custom_property(key, float(value))


class Executor(base_executor.BaseExecutor):
    """Builds `serving_model` from `model`, `transform_graph`, `embeddings` and `catalogue`."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 — TFX's executor API
        import tensorflow as tf
        import tensorflow_transform as tft

        from poster_similarity.components.export import export_serving_model
        from poster_similarity.components.export_filtered import CatalogueAttributes
        from poster_similarity.core.scann_ops import register_scann_ops

        self._log_startup(input_dict, output_dict, exec_properties)
        register_scann_ops()
        tower = artifact_utils.get_single_instance(input_dict["model"])
        embeddings = artifact_utils.get_single_instance(input_dict["embeddings"])
        catalogue = artifact_utils.get_single_instance(input_dict["catalogue"])
        transform_graph = artifact_utils.get_single_instance(input_dict["transform_graph"])
        out = artifact_utils.get_single_instance(output_dict["serving_model"])

        cat = read_embeddings(_split_globs(embeddings))
        ids, emb, duplicates = cat.ids, cat.embeddings, cat.duplicates
        tower_dir = path_utils.serving_model_path(tower.uri, path_utils.is_old_model_artifact(tower))
        trained = tf.saved_model.load(tower_dir)
        extra = {"catalogue_duplicates_dropped": duplicates,
                 "catalogue_posters_dropped": embeddings.get_int_custom_property("num_dropped")}
        report_path = os.path.join(tower_dir, "assets.extra", TRAINING_REPORT)
        if os.path.exists(report_path):
            with open(report_path) as f:
                extra.update(json.load(f))
        index_cfg = PipelineConfig.from_dict({"index": json.loads(exec_properties["index_config"])}).index
        export_dir = path_utils.serving_model_path(out.uri)
        report = export_serving_model(
            index_cfg, trained, tft.TFTransformOutput(transform_graph.uri), ids, emb,
            warmup_posters(_split_globs(catalogue), set(ids.tolist())), export_dir,
            model_name=exec_properties["model_name"], seed=int(exec_properties["seed"]), extra_info=extra,
            attributes=CatalogueAttributes(**cat.attributes))
        out.set_int_custom_property("catalogue_size", int(report["catalogue_size"]))
        out.set_float_custom_property("index_recall_vs_exact", float(report["recall_at_k_vs_exact"]))
        out.set_string_custom_property("index_kind", str(report["kind"]))
        record_training_lift(out, extra.get("did_training_help") or {})
