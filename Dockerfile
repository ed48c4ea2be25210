# syntax=docker/dockerfile:1
# One image for every long-running Chassis process on Kubernetes (deployments/kubernetes/):
#   gateway        args: serve --model NAME ...
#   webhook relay  args: webhook-relay
#   Prefect worker args: prefect worker start --pool chassis-kubernetes --type kubernetes
#   flow-run pods  args: prefect flow-run execute   (what Prefect's Kubernetes worker passes)
# and for the MLflow server (args: mlflow server ...). docs/kubernetes.md: build and use.
#
#   docker build -t chassis:0.1.0 .
#
# Not built on the development machine (no docker, and base images cannot be pulled there);
# tests/unit/test_container_image.py checks this file's rules and that every command the
# manifests run exists in an install like this one.

ARG PYTHON_VERSION=3.11

# ---- builder: compilers and pip caches stay here ----------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch from the CPU wheel index first: the exact pin in pyproject.toml is then satisfied
# and pip does not pull the multi-GB CUDA build from PyPI.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
# The repository lives at /opt/chassis in the image (CHASSIS_PROJECT_DIR): Prefect's pull
# step runs flows/*.py from there, and the bundled specs read expectations/ beside chassis/,
# so the install is editable, as in a checkout. Dependencies first, for the layer cache.
WORKDIR /opt/chassis
COPY pyproject.toml README.md ./
COPY chassis ./chassis
COPY chassis_cli ./chassis_cli
COPY flows ./flows
COPY tasks ./tasks
COPY expectations ./expectations
COPY deployments ./deployments
RUN pip install -e ".[kubernetes]" && python -m compileall -q /opt/chassis

# ---- runtime: the venv and the source, nothing else -------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
# A fixed UID/GID, so runAsUser in the manifests and file ownership on volumes agree.
ARG CHASSIS_UID=10001
RUN groupadd --system --gid ${CHASSIS_UID} chassis \
 && useradd --system --uid ${CHASSIS_UID} --gid chassis --home-dir /home/chassis \
      --create-home --shell /usr/sbin/nologin chassis
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/chassis /opt/chassis
# Offline and quiet by default (docs/environment.md); state under /var/lib/chassis, which
# the manifests mount as a volume (the root filesystem is read-only there).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false \
    ORT_DISABLE_TELEMETRY=1 \
    CHASSIS_PROJECT_DIR=/opt/chassis \
    CHASSIS_HOME=/var/lib/chassis \
    HOME=/home/chassis
RUN mkdir -p /var/lib/chassis && chown chassis:chassis /var/lib/chassis
WORKDIR /opt/chassis
USER 10001:10001
# `chassis` runs the arguments; `prefect ...` (the worker, and the flow-run pods that
# Prefect's Kubernetes worker starts with args only, keeping this entrypoint) and
# `mlflow ...` run those commands instead: deployments/docker/entrypoint.sh.
ENTRYPOINT ["/opt/chassis/deployments/docker/entrypoint.sh"]
CMD ["--help"]
