"""poster-similarity: a TFX pipeline that learns movie-poster similarity and serves it.

One top-level name, so installing the project shadows no other distribution's packages. Inside,
the layout of TFX's templates: the pipeline definition in `pipeline/`, the model code TFX runs in
`components/`, the runners beside them (`local_runner.py`, `kubeflow_runner.py`). Dependencies flow
one way (tests/test_architecture.py): `core` → `datatools`, `components` → `serving`, `pipeline` →
the runners → `posters` (the CLI) → `bench`.
"""
