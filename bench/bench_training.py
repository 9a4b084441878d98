"""Training-step time on this machine, float32 against bfloat16 autocast (a benchmark, not a test).

One step of ``training.train`` exactly as a run takes it (``training.train.train_step``: draw the
scenes, encode, run the episode, backward, gradient clipping, AdamW), for a 3-round episode (the
curriculum's short steps) and an 11-round one (SAM's full recipe). Baseline, in the same process
and interleaved with the candidate: ``precision`` "fp32"; candidate: "bf16". The same step seeds
for both, so both see the same scenes and prompts. Prints per-variant medians, the ratio
(bf16 / fp32, lower is better) and the relative difference of the step-0 losses (how far bf16
moves the numbers).

    python bench/bench_training.py [--config training/configs/sam_small_continue4.json] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from training.train import TrainConfig, TrainSource, build, train_step


def step_once(model: torch.nn.Module, optimizer: torch.optim.Optimizer, source: TrainSource, config: TrainConfig,
              step: int, rounds: int) -> tuple[float, float]:
    """One training step exactly as ``training.train`` takes it, with ``rounds`` rounds; returns
    (seconds, loss)."""
    start = time.perf_counter()
    result, _ = train_step(model, optimizer, source, config, step, torch.device("cpu"), rounds=rounds)
    return time.perf_counter() - start, float(result.loss.item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="training/configs/sam_small_continue4.json", help="a training config")
    parser.add_argument("--repeats", type=int, default=5, help="steps per variant and episode length")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    values = json.loads(Path(args.config).read_text())
    configs = {p: TrainConfig.from_dict({**values, "precision": p}) for p in ("fp32", "bf16")}
    source = TrainSource(configs["fp32"].data, 256)
    for rounds in (3, 11):
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        first_loss: dict[str, float] = {}
        for precision, config in configs.items():  # warm-up, and the step-0 losses on the same weights
            torch.manual_seed(0)
            model = build(config).train()
            first_loss[precision] = step_once(model, torch.optim.SGD(model.parameters(), lr=0.0), source, config,
                                              0, rounds)[1]
        models = {}
        for precision, config in configs.items():
            torch.manual_seed(0)
            model = build(config).train()
            models[precision] = (model, torch.optim.AdamW(model.parameters(), lr=1e-5))
        for step in range(1, args.repeats + 1):
            for precision, config in configs.items():
                model, optimizer = models[precision]
                times[precision].append(step_once(model, optimizer, source, config, step, rounds)[0])
        fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        drift = abs(first_loss["bf16"] - first_loss["fp32"]) / abs(first_loss["fp32"])
        print(f"{rounds:2d}-round step: fp32 {fp32:.3f} s, bf16 {bf16:.3f} s (medians of {args.repeats}): "
              f"bf16/fp32 {bf16 / fp32:.2f}x; step-0 loss {first_loss['fp32']:.5f} vs {first_loss['bf16']:.5f} "
              f"(relative difference {drift:.1e})")


if __name__ == "__main__":
    main()
