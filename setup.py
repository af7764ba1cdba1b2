"""poster-similarity: a TFX pipeline that learns movie-poster similarity and serves it.

One top-level package, `poster_similarity`, so that installing the project shadows no other
distribution's import names (not `kubeflow`, `pipeline`, `bench`, `core`, ...). Its subpackages,
bottom to top (tests/test_architecture.py enforces the direction): `core` (config, data contract) →
`datatools` (sample posters, import) and `components` (model code run by TFX) → `serving` (no TFX)
and `pipeline` (the TFX definition) → the runners (`local_runner`, `kubeflow_runner`, beside
`pipeline/` like TFX's templates) → `posters` (the CLI). `bench` sits on top (it imports the
product, never the reverse).
"""
from setuptools import find_packages, setup

setup(
    name="poster-similarity",
    version="0.1.0",
    description="TFX pipeline for movie-poster similarity, served with TensorFlow Serving",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["poster_similarity", "poster_similarity.*"]),
    package_data={"poster_similarity.serving": ["config/*", "k8s/base/*", "k8s/overlays/*/*", "docker/*",
                                               "docker/patches/*"]},
    # Versions are pinned in requirements/lock.txt (installed by scripts/bootstrap.sh).
    install_requires=[],
    entry_points={"console_scripts": ["posters=poster_similarity.posters.cli:main"]},
)
