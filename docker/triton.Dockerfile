# syntax=docker/dockerfile:1
# The Triton image: NVIDIA's Triton Inference Server container (PyTorch/libtorch backend) with the
# SAM model repository built into it: exported TorchScript files, configs, warmup and metadata.
# Build from the repository root (the build context):
#
#   docker build -f docker/triton.Dockerfile \
#     --build-context checkpoints=/path/to/checkpoints \
#     --build-arg MODEL=vit_b --build-arg CHECKPOINT=sam_vit_b_01ec64.pth \
#     -t sam-triton:0.1.0 .
#
# Without a checkpoint the build fails, unless RANDOM_WEIGHTS=1 (fixed random weights, for smoke
# tests only: `--build-arg MODEL=tiny --build-arg RANDOM_WEIGHTS=1`).
#
# Why the model is inside the image (and not in Triton's cloud-storage model repository): the image
# digest then names the exact model that serves, rollouts and rollbacks are plain image changes,
# and nodes need no bucket credentials or network path to object storage at start. deploy/README.md
# describes the s3:// / gs:// alternative and when to prefer it.
#
# TorchScript compatibility: Triton's libtorch must read what the export's torch wrote. The default
# export uses the project's pinned torch (2.13.0, CPU wheel; the build runs the export's parity check
# with it), which needs a TRITON_VERSION whose PyTorch is 2.13 or newer. For an exact match, export
# with NVIDIA's PyTorch container of the same release, which Triton's PyTorch backend is built from:
#   --build-arg EXPORT_IMAGE=nvcr.io/nvidia/pytorch:<TRITON_VERSION>-py3

ARG TRITON_VERSION=26.10
ARG EXPORT_IMAGE=python:3.11.11-slim-bookworm

# -- checkpoints: empty unless `--build-context checkpoints=DIR` replaces this stage -----------------
FROM scratch AS checkpoints

# -- export: TorchScript files + configs, written by the project's own builder ------------------------
FROM ${EXPORT_IMAGE} AS export
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Use the base image's torch when it has one (NVIDIA's PyTorch container); otherwise the pinned CPU
# wheel (any other torch spec pulls a multi-GB CUDA build that the export does not need).
RUN if python -c 'import torch' 2>/dev/null; then \
        python -c 'import torch; print("export: torch", torch.__version__, "from the base image")'; \
    else \
        pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0+cpu \
        && pip install numpy==1.26.4 pillow==13.0.0; \
    fi

WORKDIR /src
COPY sam sam
COPY model_repository model_repository
COPY docker/derive_cpu_configs.sh docker/derive_cpu_configs.sh

ARG MODEL=vit_b
ARG CHECKPOINT=""
ARG RANDOM_WEIGHTS=0
ARG SEED=0
RUN --mount=type=bind,from=checkpoints,target=/checkpoints \
    if [ -n "${CHECKPOINT}" ]; then \
        set -- --checkpoint "/checkpoints/${CHECKPOINT}"; \
    elif [ "${RANDOM_WEIGHTS}" = "1" ]; then \
        echo "export: no checkpoint, fixed random weights (seed ${SEED}): NOT a usable model" >&2; \
        set -- --seed "${SEED}"; \
    else \
        echo "export: set CHECKPOINT (a file in the 'checkpoints' build context) or RANDOM_WEIGHTS=1" >&2; \
        exit 1; \
    fi \
    && python -m sam.export.model_repository --model "${MODEL}" "$@" --out /models \
    && sh docker/derive_cpu_configs.sh /models \
    && rm -rf /models/*/1/__pycache__

# -- runtime: Triton with the repository ------------------------------------------------------------
FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3 AS runtime
LABEL org.opencontainers.image.title="sam-triton" \
      org.opencontainers.image.description="Triton Inference Server with the Segment Anything encoder and decoder"

COPY --from=export /models /models

# A fixed numeric uid/gid (Triton's own triton-server user has none that is stable across releases),
# so Kubernetes can verify runAsNonRoot. Triton only reads /models and writes nothing to disk.
RUN groupadd --system --gid 10001 sam \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sam
USER 10001:10001
EXPOSE 8000 8001 8002

HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4)"]

# NVIDIA's entrypoint stays (it sets up CUDA forward compatibility); these are its arguments.
# On a node without a GPU add --model-config-name=libtorch_cpu.
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=none", "--strict-readiness=true", \
     "--exit-on-error=true", "--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"]
