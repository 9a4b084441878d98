"""Interactive-segmentation evaluation of a SAM model, and its CLI.

Protocol (per object = per ground-truth instance mask, every level of a synthetic scene):

- 1 click: the object's point farthest from its boundary, multimask output; the IoU of the best of
  the 3 masks (oracle) and of the top-ranked one (highest predicted IoU) are both reported.
- Box: the object's tight box (no noise), single-mask output (token 0). As a reference the report
  also gives the IoU of the box itself taken as the mask (``box_fill_miou``): a model's box mIoU
  below it means its box masks are worse than no segmentation at all.
- NoC@85 / NoC@90: click 1 as above (the top-ranked mask is kept), then each next click at the
  centre of the largest error region (see :mod:`training.clicks`) with the previous low-res logits
  as the mask prompt and single-mask output, up to ``max_clicks`` (20) clicks; an object that never
  reaches the threshold counts ``max_clicks``.
- Spearman: rank correlation between predicted and true IoU over the 3 multimask outputs of the
  1-click predictions of all objects.

Masks are compared in the original image frame (logits upscaled with the model's postprocessing,
thresholded at 0). Clicks are computed there and scaled to the resized frame for the decoder.

CLI::

    python -m training.evaluate --model tiny --checkpoint runs/x/model.pt --split test \\
        --num-images 100 --out runs/x/eval
    python -m training.evaluate --model vit_b --checkpoint sam_vit_b.pth \\
        --coco-images val2017 --coco-annotations instances_val2017.json --num-images 50 --out eval_coco

It writes ``OUT/report.json``, ``OUT/report.md`` (a markdown table) and ``OUT/per_object.json``
(every object's results, which ``python -m training.compare`` pairs between two models) and prints
the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.clicks import first_eval_click, mask_box, next_eval_click
from training.metrics import MAX_CLICKS, iou, mean_noc, number_of_clicks, spearman

LEVEL_NAMES = ("whole", "part", "sub-part")
NOC_THRESHOLDS = (0.85, 0.90)


def noc_key(threshold: float) -> str:
    """The report key of NoC at ``threshold``: ``noc85`` for 0.85, ``noc90`` for 0.90."""
    return f"noc{int(round(threshold * 100))}"


def embed_image(model: Any, image: np.ndarray, device: torch.device | None = None
                ) -> tuple[torch.Tensor, tuple[int, int]]:
    """``HxWx3`` uint8 RGB -> (``1x256xgxg`` embedding, resized ``(h, w)``)."""
    from sam import transforms

    device = device or next(model.parameters()).device
    resized = transforms.resize_image(image, model.config.image_size)
    x = torch.from_numpy(np.ascontiguousarray(resized)).to(device).permute(2, 0, 1)[None].float()
    return model.embed(x), (int(resized.shape[0]), int(resized.shape[1]))


class _ImageDecoder:
    """Decodes prompt sets given in original-image pixels on one image's embedding."""

    def __init__(self, model: Any, embedding: torch.Tensor, input_size: tuple[int, int],
                 original_size: tuple[int, int]) -> None:
        self.model = model
        self.embedding = embedding
        self.input_size = input_size
        self.original_size = original_size

    def __call__(self, coords: np.ndarray, labels: np.ndarray, mask_input: torch.Tensor | None,
                 tokens: slice) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """``BxNx2`` original-frame coords, ``BxN`` labels -> (``BxCxHxW`` bool masks, ``BxC`` IoU
        predictions, ``BxCxLxL`` low-res logits) for the decoder tokens in ``tokens``."""
        from sam import transforms

        device = self.embedding.device
        scaled = transforms.scale_coords(coords, self.original_size, self.model.config.image_size)
        c = torch.as_tensor(scaled, dtype=torch.float32, device=device)
        lab = torch.as_tensor(labels, dtype=torch.int64, device=device)
        has = None if mask_input is None else torch.ones(c.shape[0], device=device)
        low_res, iou_pred = self.model.decode(self.embedding, c, lab, mask_input, has)
        low_res, iou_pred = low_res[:, tokens], iou_pred[:, tokens]
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size) > 0.0
        return masks.cpu().numpy(), iou_pred.float().cpu().numpy(), low_res


@torch.no_grad()
def evaluate_image(model: Any, image: np.ndarray, masks: np.ndarray, max_clicks: int = MAX_CLICKS,
                   with_noc: bool = True, device: torch.device | None = None) -> dict[str, Any]:
    """Evaluates every mask of one image. ``masks``: ``MxHxW`` bool in the image's frame, non-empty.

    Returns per-object lists: ``one_click_best``, ``one_click_top``, ``box`` (IoUs), ``area`` (the
    mask's pixels), ``box_fill`` (IoU of the tight box taken as the mask), ``curves``
    (IoU after each of ``max_clicks`` clicks, when ``with_noc``), ``pred_iou``/``true_iou``
    (``Mx3``: the multimask outputs of the first click).
    """
    h, w = image.shape[:2]
    if masks.ndim != 3 or masks.shape[1:] != (h, w):
        raise ValueError(f"masks must be Mx{h}x{w} to match the image, got {masks.shape}")
    embedding, input_size = embed_image(model, image, device)
    decode = _ImageDecoder(model, embedding, input_size, (h, w))
    m = masks.shape[0]
    multi, single = slice(1, 4), slice(0, 1)

    clicks = [first_eval_click(g) for g in masks]
    coords = np.array([[[c.x, c.y], [0.0, 0.0]] for c in clicks])
    labels = np.array([[c.label, -1] for c in clicks])
    pred, scores, low_res = decode(coords, labels, None, multi)
    ious = np.array([[iou(pred[i, k], masks[i]) for k in range(3)] for i in range(m)])
    top = scores.argmax(axis=1)
    out: dict[str, Any] = {
        "one_click_best": ious.max(axis=1).tolist(),
        "one_click_top": ious[np.arange(m), top].tolist(),
        "pred_iou": scores.tolist(),
        "true_iou": ious.tolist(),
    }

    box_coords = np.stack([mask_box(g).reshape(2, 2) for g in masks])
    box_pred, _, _ = decode(box_coords, np.tile([[2, 3]], (m, 1)), None, single)
    out["box"] = [iou(box_pred[i, 0], masks[i]) for i in range(m)]
    # the mask lies inside its tight box, so the box-as-mask IoU is |mask| / |box|
    sides = box_coords[:, 1] - box_coords[:, 0] + 1  # [M, (w, h)], inclusive corners
    out["area"] = masks.reshape(m, -1).sum(axis=1).tolist()
    out["box_fill"] = (np.asarray(out["area"]) / sides.prod(axis=1)).tolist()

    if with_noc:
        curves = [[float(ious[i, top[i]])] for i in range(m)]
        current = pred[np.arange(m), top]
        logits = low_res[torch.arange(m), torch.as_tensor(top)].unsqueeze(1)
        points = [[(c.x, c.y, c.label)] for c in clicks]
        for _ in range(1, max_clicks):
            for i in range(m):
                nxt = next_eval_click(current[i], masks[i])
                points[i].append((0.0, 0.0, -1) if nxt is None else (nxt.x, nxt.y, nxt.label))
            coords = np.array([[(x, y) for x, y, _ in p] + [(0.0, 0.0)] for p in points])
            labels = np.array([[lab for _, _, lab in p] + [-1] for p in points])
            pred1, _, logits = decode(coords, labels, logits, single)
            current = pred1[:, 0]
            for i in range(m):
                curves[i].append(iou(current[i], masks[i]))
        out["curves"] = curves
    return out


def summarize(per_object: dict[str, list], levels: Sequence[int] | None = None,
              max_clicks: int = MAX_CLICKS) -> dict[str, Any]:
    """Aggregates per-object results (lists aligned by object) into the report's metrics."""
    def block(idx: np.ndarray) -> dict[str, Any]:
        res: dict[str, Any] = {
            "objects": int(idx.size),
            "one_click_miou_best_of_3": float(np.mean(np.asarray(per_object["one_click_best"])[idx])),
            "one_click_miou_top_ranked": float(np.mean(np.asarray(per_object["one_click_top"])[idx])),
            "box_miou": float(np.mean(np.asarray(per_object["box"])[idx])),
        }
        if per_object.get("box_fill"):
            res["box_fill_miou"] = float(np.mean(np.asarray(per_object["box_fill"])[idx]))
        if per_object.get("curves"):
            curves = [per_object["curves"][i] for i in idx]
            for t in NOC_THRESHOLDS:
                res[noc_key(t)] = mean_noc(curves, t, max_clicks)
            arr = np.asarray(curves)
            res["miou_at_clicks"] = {str(k): float(arr[:, k - 1].mean()) for k in (1, 3, 5, 10, 20)
                                     if k <= arr.shape[1]}
        pred = np.asarray(per_object["pred_iou"])[idx].ravel()
        true = np.asarray(per_object["true_iou"])[idx].ravel()
        res["spearman_pred_vs_true_iou"] = spearman(pred, true) if pred.size >= 2 else float("nan")
        return res

    n = len(per_object["box"])
    if n == 0:
        raise ValueError("no objects were evaluated")
    report = {"overall": block(np.arange(n))}
    if levels is not None:
        lv = np.asarray(levels)
        report["by_level"] = {LEVEL_NAMES[k]: block(np.flatnonzero(lv == k)) for k in range(3) if (lv == k).any()}
    return report


def evaluate(model: Any, samples: Iterable[Any], max_clicks: int = MAX_CLICKS, with_noc: bool = True,
             max_objects: int | None = None, seed: int = 0, min_area: int = 1,
             progress: bool = False, keep_per_object: bool = False) -> dict[str, Any]:
    """Evaluates ``model`` on samples with ``image`` (``HxWx3`` uint8) and ``masks`` (``MxHxW`` bool)
    and optionally ``levels`` (``M``). ``max_objects`` caps objects per image (a seeded random
    subset); masks with fewer than ``min_area`` pixels are skipped.

    With ``keep_per_object`` the report also holds ``per_object``: :func:`per_object_results`, one
    entry per evaluated object, for paired comparisons of two models (``training.compare``)."""
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    per_object: dict[str, list] = {"one_click_best": [], "one_click_top": [], "box": [], "box_fill": [], "area": [],
                                   "pred_iou": [], "true_iou": [], "curves": []}
    levels: list[int] = []
    has_levels = True
    object_ids: list[tuple[int, int]] = []  # (sample index in the stream, mask index in the sample)
    images = 0
    start = time.perf_counter()
    try:
        for sample_index, sample in enumerate(samples):
            masks = np.asarray(sample.masks, dtype=bool)
            if len(masks) == 0:
                continue
            keep = np.flatnonzero(masks.reshape(len(masks), -1).sum(axis=1) >= max(min_area, 1))
            if max_objects is not None and keep.size > max_objects:
                keep = np.sort(rng.choice(keep, max_objects, replace=False))
            if keep.size == 0:
                continue
            res = evaluate_image(model, sample.image, masks[keep], max_clicks, with_noc)
            for key in per_object:
                per_object[key] += res.get(key, [])
            object_ids += [(sample_index, int(k)) for k in keep]
            sample_levels = getattr(sample, "levels", None)
            if sample_levels is None:
                has_levels = False
            else:
                levels += np.asarray(sample_levels)[keep].tolist()
            images += 1
            if progress:
                rate = images / (time.perf_counter() - start)
                print(f"\reval: {images} images, {len(per_object['box'])} objects, {rate:.2f} img/s",
                      end="", file=sys.stderr, flush=True)
    finally:
        if progress:
            print(file=sys.stderr)
        model.train(was_training)
    report = summarize(per_object, levels if has_levels else None, max_clicks)
    report["images"] = images
    report["max_clicks"] = max_clicks
    if keep_per_object:
        report["per_object"] = per_object_results(per_object, object_ids, levels if has_levels else None,
                                                  max_clicks)
    return report


def per_object_results(per_object: dict[str, list], object_ids: Sequence[tuple[int, int]],
                       levels: Sequence[int] | None, max_clicks: int = MAX_CLICKS) -> dict[str, list]:
    """Per-object lists, aligned by object: ``sample`` and ``mask`` (where the object comes from:
    index of its sample in the evaluated stream and of its mask in the sample), ``level`` (or
    None), ``area`` (pixels), ``one_click_best``, ``one_click_top``, ``box`` (IoUs) and, when the
    click curves were run, ``noc85``, ``noc90`` (clicks) and ``final_iou`` (IoU after ``max_clicks`` clicks)."""
    out: dict[str, list] = {
        "sample": [s for s, _ in object_ids], "mask": [k for _, k in object_ids],
        "level": list(levels) if levels is not None else [None] * len(object_ids),
        "area": list(per_object["area"]),
        "one_click_best": list(per_object["one_click_best"]), "one_click_top": list(per_object["one_click_top"]),
        "box": list(per_object["box"]),
    }
    curves = per_object.get("curves")
    if curves:
        for t in NOC_THRESHOLDS:
            out[noc_key(t)] = [number_of_clicks(c, t, max_clicks) for c in curves]
        out["final_iou"] = [float(c[-1]) for c in curves]
    return out


def _json_safe(x: Any) -> Any:
    """NaN -> None (strict JSON has no NaN)."""
    if isinstance(x, float) and np.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def markdown_table(report: dict[str, Any]) -> str:
    """The report as a markdown table: one row per object group (all, then each level)."""
    cols = [("objects", "objects"), ("one_click_miou_best_of_3", "1-click mIoU (best of 3)"),
            ("one_click_miou_top_ranked", "1-click mIoU (top-ranked)"), ("box_miou", "box mIoU"),
            ("noc85", "NoC@85"), ("noc90", "NoC@90"), ("spearman_pred_vs_true_iou", "Spearman (pred vs true IoU)"),
            ("box_fill_miou", "box itself as the mask (reference)")]
    rows = [("all", report["overall"])] + list(report.get("by_level", {}).items())
    lines = ["| group | " + " | ".join(title for _, title in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for name, block in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(block.get(key, float("nan"))) for key, _ in cols) + " |")
    lines.append("")
    lines.append(f"{report['images']} images; NoC with up to {report['max_clicks']} clicks "
                 f"(an object that never reaches the threshold counts {report['max_clicks']}).")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registry name (tiny, vit_b, ...), JSON config path")
    p.add_argument("--checkpoint", help="state dict or training checkpoint (official key names)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="synthetic split (default test)")
    p.add_argument("--num-images", type=int, default=100, help="images to evaluate (default 100)")
    p.add_argument("--offset", type=int, default=0, help="first synthetic scene index of the split (default 0)")
    p.add_argument("--scene-config", help="JSON file or inline JSON with SceneConfig keys (default: defaults)")
    p.add_argument("--coco-images", help="COCO images folder (evaluates COCO data instead of synthetic)")
    p.add_argument("--coco-annotations", help="COCO instances JSON")
    p.add_argument("--max-objects", type=int, help="objects per image at most (seeded random subset)")
    p.add_argument("--max-clicks", type=int, default=MAX_CLICKS, help="clicks for NoC (default 20)")
    p.add_argument("--no-noc", action="store_true", help="skip the NoC click sequences (faster)")
    p.add_argument("--min-area", type=int, default=1, help="skip masks smaller than this many pixels")
    p.add_argument("--seed", type=int, default=0, help="seed of the object subsets (default 0)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", help="folder for report.json and report.md")
    return p


def load_scene_config(value: str | None) -> Any:
    from training.data.synthetic import SceneConfig

    if not value:
        return SceneConfig()
    text = Path(value).read_text() if Path(value).is_file() else value
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--scene-config must be a JSON file or inline JSON: {exc}") from exc
    return SceneConfig.from_dict(data)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import sam
    from sam.build import file_sha256

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        model = sam.build_model(args.model, checkpoint=args.checkpoint).to(device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # the loaded file's identity (read now, before a long evaluation): a path such as
    # models/sam_small/model.pt names another model after each ship
    sha256 = file_sha256(args.checkpoint) if args.checkpoint else None
    if args.coco_images or args.coco_annotations:
        if not (args.coco_images and args.coco_annotations):
            raise SystemExit("give both --coco-images and --coco-annotations")
        from training.data.coco import CocoDataset

        coco = CocoDataset(args.coco_images, args.coco_annotations)
        samples: Iterable[Any] = (coco[i] for i in range(min(args.num_images, len(coco))))
        data = {"source": "coco", "annotations": args.coco_annotations, "images": args.coco_images}
    else:
        from training.data.synthetic import SyntheticDataset

        scene_config = load_scene_config(args.scene_config)
        samples = SyntheticDataset(args.split, args.num_images, scene_config, offset=args.offset)
        data = {"source": "synthetic", "split": args.split, "offset": args.offset,
                "scene_config": scene_config.__dict__ | {"kinds": list(scene_config.kinds)}}
    start = time.perf_counter()
    report = evaluate(model, samples, max_clicks=args.max_clicks, with_noc=not args.no_noc,
                      max_objects=args.max_objects, seed=args.seed, min_area=args.min_area, progress=True,
                      keep_per_object=bool(args.out))
    per_object = report.pop("per_object", None)
    report = {"model": args.model, "checkpoint": args.checkpoint, "checkpoint_sha256": sha256, "data": data,
              "seconds": round(time.perf_counter() - start, 1)} | report
    table = markdown_table(report)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(_json_safe(report), indent=2) + "\n")
        (out / "report.md").write_text(f"# Evaluation: {args.model}\n\n" + table)
        # what decides which objects were evaluated, so that two reports can be paired object by object
        selection = data | {"num_images": args.num_images, "max_objects": args.max_objects, "seed": args.seed,
                            "min_area": args.min_area, "max_clicks": args.max_clicks}
        pairs = {"model": args.model, "checkpoint": args.checkpoint, "checkpoint_sha256": sha256,
                 "selection": selection, "objects": per_object}
        (out / "per_object.json").write_text(json.dumps(_json_safe(pairs)) + "\n")
        print(f"wrote {out / 'report.json'}, {out / 'report.md'} and {out / 'per_object.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
