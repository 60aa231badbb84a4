# syntax=docker/dockerfile:1
#
# One image for every Clusternet component; the command selects it:
#   clusternet-hub | clusternet-controller-manager | clusternet-scheduler | clusternet-agent
# (and `clusternet`, the CLI).  See docs/deployment.md.
#
#   docker build -t ghcr.io/<owner>/clusternet:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# -- build: the project's wheel and the wheels of its pinned dependencies ------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (pyproject.toml names README.md as the readme).
COPY pyproject.toml README.md ./
COPY src/ src/
# The build backend comes from [build-system] (hatchling, pinned); the runtime dependencies are
# pinned exactly in [project.dependencies], so this resolves the same set on every build.
RUN pip wheel --wheel-dir /wheels .
# A virtual environment without pip: the runtime stage copies it as is (same base image, so
# the interpreter path its scripts and symlinks point at is the same).
RUN python -m venv --without-pip /opt/clusternet \
 && pip --python /opt/clusternet/bin/python install --no-index --find-links /wheels clusternet-py \
 && /opt/clusternet/bin/python -m compileall -q /opt/clusternet

# -- runtime: the interpreter and the virtual environment, nothing else ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="clusternet-py" \
      org.opencontainers.image.description="Manage many Kubernetes clusters as one: a Python implementation of Clusternet (hub, controller-manager, scheduler, agent)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/clusternet/clusternet-py" \
      org.opencontainers.image.documentation="https://github.com/clusternet/clusternet-py/blob/main/docs/deployment.md"
COPY --from=build /opt/clusternet /opt/clusternet
ENV PATH=/opt/clusternet/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Any non-root numeric UID works (the charts set runAsUser 65532, the distroless "nonroot"):
# nothing in the image is written at run time; /tmp is an emptyDir in the charts.
USER 65532:65532
WORKDIR /tmp
# Exec form, no shell: Kubernetes sets the component with `command:` (the charts use the
# absolute paths /opt/clusternet/bin/clusternet-<component>).
ENTRYPOINT []
CMD ["clusternet", "--help"]
