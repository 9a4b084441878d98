#!/usr/bin/env bash
# One timed training session on a lent GPU machine (the device tool's: python3 with torch and
# opencv, no virtual environment; run from the repository root). Continues the shipped sam_small
# weights with training/configs/sam_small_continue_gpu.json and leaves in $OUT what must come back
# (at most 8 files of at most 16 MiB each):
#
#   bench.txt / bench.json   bench/bench_training.py on the GPU: fp32 and bf16 at 8, 16, 32 images
#   train.log                the run's progress and any error
#   config.json / log.jsonl  the run's resolved config (steps fitted to the budget) and its log
#   model_a.pt / model_b.pt  the final float32 weights as two halves of the state dict (a whole one,
#                            18 MB, is over the 16 MiB limit); join them with
#                            {**torch.load("model_a.pt"), **torch.load("model_b.pt")}
#
# The precision and batch size are picked from the bench (mixed steps: 9 short + 1 full): the faster
# precision at each batch size; 16 images unless 32 gives at least 1.5x the images per second (or
# 8 more than 16). The training gets what is left of SECONDS after the bench, less a reserve.
#
#     OUT=/tmp/out bash scripts/train_on_lent_gpu.sh [SECONDS=560] [SEED=15]
#
# DEVICE=cpu runs the same steps on the CPU (a dry run of the script itself).
set -u
t0=$(date +%s)
total=${1:-560}
seed=${2:-15}
out=${OUT:-/tmp/lent_gpu}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
run=/tmp/lent_gpu_run
device=${DEVICE:-cuda}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import sys, torch, numpy, cv2; print(sys.version.split()[0], torch.__version__, numpy.__version__,
cv2.__version__, torch.cuda.is_available())"
    timeout 100 python3 bench/bench_training.py --device "$device" --repeats 4 --batch-size 8 --batch-size 16 \
        --batch-size 32 --data-workers 12 --threads 4 --json "$out/bench.json"
} >"$out/bench.txt" 2>&1
cat "$out/bench.txt"

read -r precision batch < <(python3 - "$out/bench.json" <<'EOF'
import json, sys
try:
    bench = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("fp32 16")  # no bench: the config's own settings
    raise SystemExit
best = {}
for b in (8, 16, 32):
    mixed = {p: 0.9 * bench[f"{p}/b{b}"]["3"] + 0.1 * bench[f"{p}/b{b}"]["11"] for p in ("fp32", "bf16")}
    p = min(mixed, key=mixed.get)
    best[b] = (p, b / mixed[p])  # precision, images per second
choice = 16
if best[32][1] >= 1.5 * best[16][1]:
    choice = 32
elif best[8][1] > best[16][1]:
    choice = 8
print(best[choice][0], choice)
EOF
)
budget=$(( total - ($(date +%s) - t0) - 45 ))
echo "training: precision $precision, batch $batch, budget $budget s" | tee "$out/train.log"
rm -rf "$run"
timeout $(( budget + 35 )) python3 -m training.train --config training/configs/sam_small_continue_gpu.json \
    --out "$run" --seed "$seed" --precision "$precision" --batch-size "$batch" --time-budget "$budget" --device "$device" \
    >>"$out/train.log" 2>&1
echo "training exit status $?" | tee -a "$out/train.log"
tail -n 5 "$out/train.log"

cp "$run/config.json" "$run/log.jsonl" "$out/" 2>/dev/null
python3 - "$run/model.pt" "$out" <<'EOF'
import sys, torch
state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
keys, half, size, a = list(state), sum(t.numel() * t.element_size() for t in state.values()) / 2, 0, {}
for k in keys:
    if size >= half:
        break
    a[k] = state[k]
    size += state[k].numel() * state[k].element_size()
torch.save(a, f"{sys.argv[2]}/model_a.pt")
torch.save({k: v for k, v in state.items() if k not in a}, f"{sys.argv[2]}/model_b.pt")
print(f"saved {len(a)} + {len(state) - len(a)} tensors")
EOF
ls -l "$out"
echo "total $(( $(date +%s) - t0 )) s"
