# Pipeline image for Kubeflow / Vertex AI / Dataflow workers: the TFX 1.15.1 base image (Python 3.10,
# TFX, Beam) plus this project and the exact pinned stack from requirements/lock.txt.
# Build: `make image` (docker build -f Dockerfile -t poster-similarity-pipeline:latest .)
FROM tensorflow/tfx:1.15.1

WORKDIR /pipeline
RUN pip install --no-cache-dir uv==0.5.11
COPY requirements/lock.txt requirements/lock.txt
# Same lock as local runs: one environment runs the pipeline and compiles it for Kubeflow.
RUN uv pip install --system --no-cache -r requirements/lock.txt
COPY setup.py pyproject.toml ./
COPY poster_similarity poster_similarity
COPY configs configs
# Components reference module files by import path (poster_similarity.components.trainer.run_fn …),
# so the project is installed into the image: no wheels are built or fetched at run time.
RUN pip install --no-cache-dir --no-deps .
# Beam workers (Dataflow/Flink/Spark) load the exported model inside TFMA: ScaNN's ops must be
# registered in every Python process of this image, so import scann at interpreter start.
RUN echo "import scann" > "$(python -c 'import site; print(site.getsitepackages()[0])')/scann_ops.pth"
# TFX's container entrypoint (KubeflowV2 / Argo launchers) is inherited from the base image.
