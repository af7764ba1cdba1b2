"""poster-similarity: a TFX pipeline that learns movie-poster similarity and serves it.

One top-level package, `poster_similarity`, so that installing the project shadows no other
distribution's import names (not `kubeflow`, `pipeline`, `bench`, `core`, ...). Its subpackages,
bottom to top (tests/test_architecture.py enforces the direction): `core` (config, data contract) →
`datatools` (sample posters, import) and `components` (model code run by TFX) → `serving` (the model
server, no TFX), `client` (PosterClient, `query`, `gallery`) and `pipeline` (the TFX definition) →
the runners (`local_runner`, `kubeflow_runner`, beside `pipeline/` like TFX's templates) → `posters`
(the CLI). The wheel holds only that product: what is deployed (`serving/`, `kubeflow/`), the
benchmarks (`bench/`) and the tests stay in the repository.

Dependencies: `install_requires` lists requirements/base.in's runtime section (names, plus the few
pins that make the TF 2.15 stack work together); every exact version lives in requirements/lock.txt,
which scripts/bootstrap.sh installs (`pip install . -c requirements/lock.txt` does the same).
"""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def requirements(path: str = os.path.join(HERE, "requirements", "base.in")) -> tuple[list[str], list[str]]:
    """(runtime, dev) requirement lines of base.in, split at its `# dev / test` comment."""
    runtime, dev, section = [], [], "runtime"
    with open(path, encoding="utf-8") as f:
        for raw in f:
            if raw.strip().lower().startswith("# dev"):
                section = "dev"
            line = raw.split("#", 1)[0].strip()
            if line:
                (runtime if section == "runtime" else dev).append(line)
    return runtime, dev


RUNTIME, DEV = requirements()

setup(
    name="poster-similarity",
    version="0.1.0",
    description="TFX pipeline for movie-poster similarity, served with TensorFlow Serving",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["poster_similarity", "poster_similarity.*"]),
    install_requires=RUNTIME,
    extras_require={"dev": DEV},
    entry_points={"console_scripts": ["posters=poster_similarity.posters.cli:main"]},
)
