"""poster-similarity: a TFX pipeline that learns movie-poster similarity and serves it."""
from setuptools import find_packages, setup

setup(
    name="poster-similarity",
    version="0.1.0",
    description="TFX pipeline for movie-poster similarity, served with TensorFlow Serving",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["pipeline", "components", "serving", "kubeflow", "bench"]),
    package_data={"serving": ["config/*", "k8s/base/*", "k8s/overlays/*/*", "docker/*"], "pipeline": ["fonts/*"]},
    # Versions are pinned in requirements/lock.txt (installed by scripts/bootstrap.sh).
    install_requires=[],
    entry_points={"console_scripts": ["posters=pipeline.cli:main"]},
)
