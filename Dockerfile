# syntax=docker/dockerfile:1
# The gRPC gateway image: `python -m server` on a slim Python, as a non-root user, without torch.
#
#   docker build -t sam-gateway:0.1.0 .
#   docker run --rm -p 50051:50051 -p 9090:9090 -e SAM_TRITON_URL=triton:8001 sam-gateway:0.1.0
#
# The gateway never loads the model: it reads sizes and metadata from Triton, and uses only the
# numpy/Pillow parts of `sam` (config, transforms, prompts, ranking, and the automatic generator's
# numpy steps for GenerateMasks). The model and its export live
# in the Triton image (docker/triton.Dockerfile). Every setting is a SAM_* variable or a flag
# (python -m server --help). tests/deploy/test_images.py checks that the packages and modules
# copied here cover everything the gateway imports.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# -- build: a virtual environment from pinned binary wheels (no compiler needed or installed) ------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY requirements-gateway.txt /tmp/requirements-gateway.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-deps --only-binary=:all: -r /tmp/requirements-gateway.txt \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

WORKDIR /app
COPY sam/__init__.py sam/config.py sam/transforms.py sam/prompts.py sam/ranking.py sam/
COPY sam/automatic/__init__.py sam/automatic/params.py sam/automatic/steps.py sam/automatic/grid.py \
     sam/automatic/crops.py sam/automatic/boxes.py sam/automatic/nms.py sam/automatic/records.py \
     sam/automatic/regions.py sam/automatic/rle.py sam/automatic/runs.py sam/automatic/stability.py \
     sam/automatic/
COPY sam/configs sam/configs
COPY segmentanything segmentanything
COPY server server
COPY docker/gateway_healthcheck.py docker/gateway_healthcheck.py
# Byte-compile here: the runtime root filesystem is read-only, so Python could not cache it there.
RUN /opt/venv/bin/python -m compileall -q /opt/venv/lib /app

# -- runtime -----------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="sam-gateway" \
      org.opencontainers.image.description="Segment Anything gRPC gateway in front of Triton" \
      org.opencontainers.image.source="https://github.com/segment-anything-serving/segment-anything-serving"

# A fixed numeric uid/gid, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 sam \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sam

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SAM_HOST=0.0.0.0 \
    SAM_PORT=50051 \
    SAM_METRICS_PORT=9090
WORKDIR /app
USER 10001:10001
EXPOSE 50051 9090

# Docker and compose use this; Kubernetes ignores it and uses native gRPC probes instead.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/app/docker/gateway_healthcheck.py", "--timeout", "3"]

# SIGTERM goes straight to Python (exec form, no shell): the gateway stops accepting calls and
# finishes the ones in flight within SAM_GRACE_PERIOD_S.
ENTRYPOINT ["python", "-m", "server"]
