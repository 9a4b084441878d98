"""Training-step time on this machine, float32 against bfloat16 autocast (a benchmark, not a test).

One step of ``training.train`` exactly as a run takes it (``training.train.train_step``: draw the
scenes, encode, run the episode, backward, gradient clipping, AdamW), for a 3-round episode (the
curriculum's short steps) and an 11-round one (SAM's full recipe). Baseline, in the same process
and interleaved with the candidate: ``precision`` "fp32"; candidate: "bf16". The same step seeds
for both, so both see the same scenes and prompts. Prints per-variant medians, the ratio
(bf16 / fp32, lower is better) and the relative difference of the step-0 losses (how far bf16
moves the numbers).

    python bench/bench_training.py [--config training/configs/sam_small_continue4.json] [--repeats 5]
    python bench/bench_training.py --device cuda --batch-size 8 --batch-size 16 --data-workers 8 --json OUT.json

With several ``--batch-size`` values every precision runs at each. With ``--data-workers`` the
scenes of a step are drawn by that many processes and ready before its clock starts, as
``training.train`` with ``data_workers`` draws them while the step before runs, so the times are
the model's and the click sampling's, not the scene generator's (without, the step draws them
itself, as a run without workers does). On a GPU each time is taken after the device finished the
step. ``--json`` also writes the medians, per variant, as
``{"fp32/b8": {"3": seconds, "11": seconds}, ...}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from training.train import TrainConfig, TrainSource, build, native_bf16, train_step


def step_once(model: torch.nn.Module, optimizer: torch.optim.Optimizer, source: TrainSource, config: TrainConfig,
              step: int, rounds: int, device: torch.device) -> tuple[float, float]:
    """One training step exactly as ``training.train`` takes it, with ``rounds`` rounds; returns
    (seconds, loss), the time taken once the device has finished the step."""
    source.prefetch(step, 1, config.batch_size, wait=True)  # the step's scenes ready before the clock
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result, _ = train_step(model, optimizer, source, config, step, device, rounds=rounds)
    loss = float(result.loss.item())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="training/configs/sam_small_continue4.json", help="a training config")
    parser.add_argument("--repeats", type=int, default=5, help="steps per variant and episode length")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-size", type=int, action="append",
                        help="images per step (repeatable; default the config's)")
    parser.add_argument("--data-workers", type=int, default=0, help="processes drawing scenes ahead")
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if not native_bf16(device):
        print(f"note: this {device.type} has no native bfloat16 (no AVX512-BF16 or AMX on a CPU): expect the bf16 "
              "steps to take many times the float32 time (15x on an AVX2 EPYC), and this run to be long; "
              "lower --repeats", flush=True)
    values = json.loads(Path(args.config).read_text()) | {"device": args.device}
    batches = args.batch_size or [int(values["batch_size"])]
    configs = {f"{p}/b{b}": TrainConfig.from_dict({**values, "precision": p, "batch_size": b})
               for b in batches for p in ("fp32", "bf16")}
    first = next(iter(configs.values()))
    source = TrainSource(first.data, 256)
    source.start_prefetch(args.data_workers)
    results: dict[str, dict[str, float]] = {name: {} for name in configs}
    try:
        for rounds in (3, 11):
            times: dict[str, list[float]] = {name: [] for name in configs}
            first_loss: dict[str, float] = {}
            for name, config in configs.items():  # warm-up, and the step-0 losses on the same weights
                torch.manual_seed(0)
                model = build(config).to(device).train()
                first_loss[name] = step_once(model, torch.optim.SGD(model.parameters(), lr=0.0), source, config,
                                             0, rounds, device)[1]
            models = {}
            for name, config in configs.items():
                torch.manual_seed(0)
                model = build(config).to(device).train()
                models[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-5))
            for step in range(1, args.repeats + 1):
                for name, config in configs.items():
                    model, optimizer = models[name]
                    times[name].append(step_once(model, optimizer, source, config, step, rounds, device)[0])
            for b in batches:
                fp32, bf16 = statistics.median(times[f"fp32/b{b}"]), statistics.median(times[f"bf16/b{b}"])
                results[f"fp32/b{b}"][str(rounds)], results[f"bf16/b{b}"][str(rounds)] = fp32, bf16
                base, cand = first_loss[f"fp32/b{b}"], first_loss[f"bf16/b{b}"]
                drift = abs(cand - base) / abs(base)
                print(f"{rounds:2d}-round step, {b} images: fp32 {fp32:.3f} s, bf16 {bf16:.3f} s (medians of "
                      f"{args.repeats}): bf16/fp32 {bf16 / fp32:.2f}x; step-0 loss {base:.5f} vs {cand:.5f} "
                      f"(relative difference {drift:.1e})", flush=True)
    finally:
        source.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
