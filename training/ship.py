"""Export a run's weights as the shipped model and record its metrics (``models/sam_small`` by default).

    python -m training.ship --checkpoint runs/sam_small/best.pt --num-images 60 --threads 1

Writes ``DIR/model.pt`` (float16 state dict, strict-checked, size-capped like ``training.export``),
evaluates it on the held-out synthetic test split (the first ``--num-images`` scenes, every object,
20-click NoC) and on the small fixed subset ``tests/training/test_shipped_model.py`` re-checks, and
writes ``DIR/metrics.json`` and ``DIR/eval_report.md``. The model config is ``DIR/config.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

CHECK_IMAGES = 8  # scenes of the test subset the shipped-model test re-evaluates


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ship", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="best.pt / model.pt / checkpoint.pt of a run")
    p.add_argument("--dir", default="models/sam_small", help="folder with config.json (default models/sam_small)")
    p.add_argument("--num-images", type=int, default=100, help="test-split scenes to evaluate (default 100)")
    p.add_argument("--max-mb", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--training", help="JSON file with a summary of the training (steps, time) to record")
    args = p.parse_args(argv)

    import sam
    from training.data.synthetic import SceneConfig, SyntheticDataset
    from training.evaluate import _json_safe, evaluate, markdown_table
    from training.export import export_fp16

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    folder = Path(args.dir)
    config_path, model_path = folder / "config.json", folder / "model.pt"
    size, digest = export_fp16(str(config_path), args.checkpoint, model_path)
    print(f"wrote {model_path}: {size / 1e6:.2f} MB, sha256 {digest}")
    if size > args.max_mb * 1e6:
        print(f"error: {model_path} is over {args.max_mb} MB")
        return 1
    model = sam.build_model(str(config_path), checkpoint=str(model_path))
    scene = SceneConfig(long_side=model.config.image_size)
    scene_dict = scene.__dict__ | {"kinds": list(scene.kinds)}

    t0 = time.perf_counter()
    with torch.no_grad():
        check = evaluate(model, SyntheticDataset("test", CHECK_IMAGES, scene), with_noc=False)
        report = evaluate(model, SyntheticDataset("test", args.num_images, scene), with_noc=True, progress=True)
    seconds = time.perf_counter() - t0
    metrics: dict[str, Any] = {
        "model": str(config_path), "checkpoint": str(model_path), "bytes": size, "sha256": digest,
        "source_checkpoint": args.checkpoint,
        "goals": {"one_click_miou_best_of_3": ">= 0.90", "box_miou": ">= 0.93", "noc90": "<= 3"},
        "test": {"split": "test", "offset": 0, "images": report["images"], "scene_config": scene_dict,
                 "max_clicks": report["max_clicks"], **report["overall"], "by_level": report.get("by_level")},
        "check_subset": {"split": "test", "offset": 0, "images": CHECK_IMAGES, "scene_config": scene_dict,
                         "min_area": 1, "objects": check["overall"]["objects"],
                         "one_click_miou_best_of_3": check["overall"]["one_click_miou_best_of_3"]},
        "eval_seconds": round(seconds, 1),
    }
    if args.training:
        metrics["training"] = json.loads(Path(args.training).read_text())
    (folder / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2) + "\n")
    table = markdown_table(report)
    (folder / "eval_report.md").write_text(
        f"# sam_small on the synthetic test split ({report['images']} scenes)\n\n" + table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
