"""poster-similarity: a TFX pipeline that learns movie-poster similarity and serves it.

Packages, bottom to top (tests/test_architecture.py enforces the direction): `core` (config, data
contract) → `datatools` (sample posters, import) and `components` (model code run by TFX) →
`serving` (no TFX) and `pipeline` (the TFX definition) → the runners (`local_runner`,
`kubeflow_runner`, at the root like TFX's templates) → `posters` (the CLI). `bench` sits on top
(it imports the product, never the reverse). No top-level name shadows another distribution's package (e.g. `kubeflow`).
"""
from setuptools import setup

setup(
    name="poster-similarity",
    version="0.1.0",
    description="TFX pipeline for movie-poster similarity, served with TensorFlow Serving",
    python_requires=">=3.10,<3.11",
    packages=["core", "datatools", "components", "pipeline", "serving", "posters", "bench"],
    py_modules=["local_runner", "kubeflow_runner"],
    package_data={"serving": ["config/*", "k8s/base/*", "k8s/overlays/*/*", "docker/*"]},
    # Versions are pinned in requirements/lock.txt (installed by scripts/bootstrap.sh).
    install_requires=[],
    entry_points={"console_scripts": ["posters=posters.cli:main"]},
)
