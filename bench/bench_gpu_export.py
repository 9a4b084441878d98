"""The exported TorchScript encoder and decoder on a CUDA GPU (a benchmark and check, not a test).

Builds a registry model with random weights (seed 0), scripts encoder and decoder as
``python -m sam.export`` does, runs them on the GPU and compares with the CPU (the same scripted
encoder on a random 3:4 uint8 image whose long side is the input size, 768x1024 for vit_b; the
eager decoder on every decoder parity case of the export), then times them with CUDA events:
encoder at batch 1 and 4, decoder with one point and with 64 prompt
sets. float32, TF32 off (torch's default). Prints JSON and writes it to $OUT (default /tmp).
Without a GPU it only runs the CPU side and the parity on CPU.

    python bench/bench_gpu_export.py [vit_b|vit_l|vit_h|tiny|CONFIG.json]

Run it from the repository root with the project installed (``scripts/setup_env.sh``), or with
``PYTHONPATH=.`` where only torch is installed (as on a lent GPU machine).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch

import sam
from sam.export.torchscript import decoder_parity_inputs, max_abs_diff, script_decoder, script_encoder

name = sys.argv[1] if len(sys.argv) > 1 else "vit_b"
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
out = os.environ.get("OUT", "/tmp")
res = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
       "model": name, "tf32": torch.backends.cuda.matmul.allow_tf32}
torch.manual_seed(0)
model = sam.build_model(name).eval()
s = model.config.image_size
g = torch.Generator().manual_seed(1)
image = torch.randint(0, 256, (1, s * 3 // 4, s, 3), dtype=torch.uint8, generator=g)
enc, dec = script_encoder(model), script_decoder(model)
t0 = time.perf_counter()
with torch.inference_mode():
    emb_cpu = enc(image)
    cases = decoder_parity_inputs(model)
    ref = {k: model.decode(*v) for k, v in cases.items()}
res["cpu_encoder_s"] = time.perf_counter() - t0
enc_d, dec_d = enc.to(dev), dec.to(dev)


def timed(fn, n: int) -> float:
    for _ in range(3):
        fn()
    xs = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        xs.append(a.elapsed_time(b))
    return statistics.median(xs)


with torch.inference_mode():
    img_d = image.to(dev)
    emb_d = enc_d(img_d)
    res["encoder_max_abs_diff_vs_cpu"] = float((emb_d.cpu() - emb_cpu).abs().max())
    res["embedding_abs_max"] = float(emb_cpu.abs().max())
    worst = 0.0
    for k, v in cases.items():
        got = dec_d(*(t.to(dev) for t in v))
        worst = max(worst, max_abs_diff(tuple(x.cpu() for x in got), ref[k]))
    res["decoder_max_abs_diff_vs_cpu"] = worst
    if dev.type == "cuda":
        res["encoder_ms_batch1"] = timed(lambda: enc_d(img_d), 20)
        img4 = img_d.expand(4, -1, -1, -1).contiguous()
        res["encoder_ms_batch4"] = timed(lambda: enc_d(img4), 10)
        e = emb_d
        c = torch.tensor([[[500.0, 400.0], [0.0, 0.0]]], device=dev)
        lab = torch.tensor([[1, -1]], dtype=torch.int32, device=dev)
        lo = model.config.low_res_size
        m = torch.zeros(1, 1, lo, lo, device=dev)
        h = torch.zeros(1, device=dev)
        res["decoder_ms_1_point"] = timed(lambda: dec_d(e, c, lab, m, h), 100)
        c64, l64 = c.expand(64, -1, -1).contiguous(), lab.expand(64, -1).contiguous()
        m64, h64 = m.expand(64, -1, -1, -1).contiguous(), h.expand(64).contiguous()
        res["decoder_ms_64_prompt_sets"] = timed(lambda: dec_d(e, c64, l64, m64, h64), 50)
        res["max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
print(json.dumps(res, indent=1))
with open(os.path.join(out, f"gpu_check_{name}.json"), "w") as f:
    json.dump(res, f, indent=1)
