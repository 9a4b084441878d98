#!/usr/bin/env bash
# Start the whole service locally: a real Triton (CPU) and the gRPC gateway in front of it.
#
#   bash scripts/serve.sh
#
# 1. scripts/setup_env.sh creates/updates .venv (the first run installs the pinned packages).
# 2. Builds the Triton model repository into build/model_repository with
#    `python -m sam.export.model_repository` from the shipped small model
#    (models/sam_small/config.json + models/sam_small/model.pt) when it is there, else from the
#    `tiny` config with fixed random weights (--seed 0; its masks are not meaningful). Rebuilt only
#    when the model files or the export code change.
# 3. Starts Triton (python -m server.backend.local_triton, the Python-backend CPU configs) on
#    127.0.0.1, and the gateway (python -m server) on 127.0.0.1:${SAM_PORT:-50051} with Prometheus
#    metrics on ${SAM_METRICS_PORT:-9090}, waits until the gateway's health reports SERVING and
#    prints the addresses.
# 4. Ctrl-C or SIGTERM stops both (the gateway drains first); if either exits, the other is stopped.
#
# SAM_SERVE_MODEL (registry name or JSON config) and SAM_SERVE_CHECKPOINT serve another model,
# e.g. an official checkpoint. Environment: every SAM_* gateway setting applies (python -m server --help), e.g. SAM_PORT,
# SAM_METRICS_PORT, SAM_CACHE_CAPACITY_BYTES; SAM_TRITON_URL is set here to the Triton started here,
# and SAM_USE_SHARED_MEMORY defaults to true (both run on this host; set it to false to send tensors
# in the gRPC messages instead).
# TRITON_HTTP_PORT, TRITON_GRPC_PORT, TRITON_METRICS_PORT (default 8000, 8001, 8002) move Triton.
# Logs: build/serve/gateway.log (JSON lines) and build/serve/triton.log.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

bash scripts/setup_env.sh
# shellcheck disable=SC1091
. .venv/bin/activate

say() { printf 'serve: %s\n' "$*" >&2; }

# -- the model repository ------------------------------------------------------------------------------
shipped=models/sam_small
if [ -n "${SAM_SERVE_MODEL:-}" ]; then
  # Another model, e.g. an official checkpoint: SAM_SERVE_MODEL=vit_b SAM_SERVE_CHECKPOINT=sam_vit_b_01ec64.pth
  model_args=(--model "$SAM_SERVE_MODEL")
  model_inputs=()
  if [ -n "${SAM_SERVE_CHECKPOINT:-}" ]; then
    model_args+=(--checkpoint "$SAM_SERVE_CHECKPOINT")
    model_inputs=("$SAM_SERVE_CHECKPOINT")
  fi
  [ -f "$SAM_SERVE_MODEL" ] && model_inputs+=("$SAM_SERVE_MODEL")
  model_text="$SAM_SERVE_MODEL ${SAM_SERVE_CHECKPOINT:-(random weights, seed 0)}"
  [ -n "${SAM_SERVE_CHECKPOINT:-}" ] || model_args+=(--seed 0)
elif [ -f "$shipped/config.json" ] && [ -f "$shipped/model.pt" ]; then
  model_args=(--model "$shipped/config.json" --checkpoint "$shipped/model.pt")
  model_text="the shipped small model ($shipped)"
  model_inputs=("$shipped/config.json" "$shipped/model.pt")
else
  model_args=(--model tiny --seed 0)
  model_text="the 'tiny' config with fixed random weights (seed 0): $shipped is not there, so masks are not meaningful"
  model_inputs=()
fi
say "model: $model_text"

repository=build/model_repository
stamp="$repository/.inputs.sha256"
want=$({
  printf '%s\n' "${model_args[@]}"
  find sam model_repository -type f \( -name '*.py' -o -name '*.json' -o -name '*.pbtxt' \) \
    -not -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  [ "${#model_inputs[@]}" -eq 0 ] || sha256sum "${model_inputs[@]}"
} | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$repository/sam_encoder/1/model.pt" ]; then
  say "model repository $repository is up to date"
else
  say "building the model repository in $repository (export with parity check)"
  rm -rf "$repository"
  python -m sam.export.model_repository "${model_args[@]}" --out "$repository" >&2
  printf '%s\n' "$want" >"$stamp"
fi

# -- Triton and the gateway ---------------------------------------------------------------------------
logs=build/serve
mkdir -p "$logs"
: >"$logs/triton.log"
: >"$logs/gateway.log"
triton_http=${TRITON_HTTP_PORT:-8000}
triton_grpc=${TRITON_GRPC_PORT:-8001}
triton_metrics=${TRITON_METRICS_PORT:-8002}
export SAM_TRITON_URL="127.0.0.1:$triton_grpc"
export SAM_USE_SHARED_MEMORY="${SAM_USE_SHARED_MEMORY:-true}"
gateway_port=${SAM_PORT:-50051}
metrics_port=${SAM_METRICS_PORT:-9090}

triton_pid=""
gateway_pid=""
stopping=0
stop_all() {
  [ "$stopping" -eq 1 ] && return
  stopping=1
  trap '' INT TERM
  say "stopping the gateway and Triton"
  # The gateway first: it reports NOT_SERVING and finishes in-flight calls.
  [ -n "$gateway_pid" ] && kill -TERM "$gateway_pid" 2>/dev/null || true
  [ -n "$gateway_pid" ] && wait "$gateway_pid" 2>/dev/null || true
  [ -n "$triton_pid" ] && kill -TERM "$triton_pid" 2>/dev/null || true
  [ -n "$triton_pid" ] && wait "$triton_pid" 2>/dev/null || true
  say "stopped"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

say "starting Triton (gRPC 127.0.0.1:$triton_grpc, HTTP $triton_http, metrics $triton_metrics; log $logs/triton.log)"
python -m server.backend.local_triton --model-repository "$repository" --model-config-name cpu \
  --http-port "$triton_http" --grpc-port "$triton_grpc" --metrics-port "$triton_metrics" \
  --log-file "$logs/triton.log" >>"$logs/triton.log" 2>&1 &
triton_pid=$!

say "starting the gateway on 127.0.0.1:$gateway_port (metrics $metrics_port; log $logs/gateway.log)"
python -m server --port "$gateway_port" --metrics-port "$metrics_port" >>"$logs/gateway.log" 2>&1 &
gateway_pid=$!

# Wait until the gateway reports SERVING (Triton ready, models loaded and described).
if ! python - "$gateway_port" "$triton_pid" "$gateway_pid" <<'PY'
import os, sys, time
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

port, pids = sys.argv[1], [int(p) for p in sys.argv[2:]]
deadline = time.monotonic() + 600
with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    stub = health_pb2_grpc.HealthStub(channel)
    while time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                sys.exit(f"serve: a process exited during start (pid {pid})")
        try:
            if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status == 1:
                sys.exit(0)
        except grpc.RpcError:
            pass
        time.sleep(0.5)
sys.exit("serve: the gateway did not report SERVING within 600 s")
PY
then
  say "start failed; last lines of the logs:"
  tail -n 20 "$logs/triton.log" >&2 || true
  tail -n 20 "$logs/gateway.log" >&2 || true
  exit 1
fi

cat <<EOF

Segment Anything is serving:
  gRPC gateway   127.0.0.1:$gateway_port   segmentanything.v1.SegmentAnythingService (+ health, reflection)
  metrics        http://127.0.0.1:$metrics_port/metrics
  Triton         gRPC 127.0.0.1:$triton_grpc   HTTP http://127.0.0.1:$triton_http   metrics http://127.0.0.1:$triton_metrics/metrics
  model          $model_text
  logs           $logs/gateway.log   $logs/triton.log
Health check:    .venv/bin/python docker/gateway_healthcheck.py --address 127.0.0.1:$gateway_port
Press Ctrl-C to stop.
EOF

# Run until a signal arrives or either process exits.
set +e
wait -n "$triton_pid" "$gateway_pid"
code=$?
set -e
if [ "$stopping" -eq 0 ]; then
  say "a process exited on its own (code $code); last lines of the logs:"
  tail -n 20 "$logs/triton.log" >&2 || true
  tail -n 20 "$logs/gateway.log" >&2 || true
  exit 1
fi
