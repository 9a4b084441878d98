"""Paired comparison of two models evaluated on the same objects, with a scene-bootstrap interval.

Two models' mIoUs on a few hundred objects differ by less than the spread between objects, so a
difference of means alone does not say whether one model is better. Evaluated on the *same*
objects, the per-object differences ``B - A`` are paired; their mean is the difference of mIoUs,
and its uncertainty comes from resampling scenes (with replacement, all objects of a drawn scene
together, since objects of one scene are not independent): the 2.5th and 97.5th percentiles of
the resampled means give a 95 % interval. The report also gives the share of objects on which B
is better and worse (for NoC, fewer clicks is better), and on which metrics B is better or worse
beyond noise: those whose interval lies wholly on one side of zero (``beyond_noise``).

CLI, on two ``training.evaluate`` output folders (or their ``per_object.json`` files) made with the
same data options (``--split``, ``--num-images``, ``--offset``, ``--max-objects``, ``--seed``...)::

    python -m training.evaluate --model models/sam_small/config.json --checkpoint runs/a/model.pt \\
        --split val --num-images 50 --out runs/eval_a
    python -m training.evaluate --model models/sam_small/config.json --checkpoint runs/b/model.pt \\
        --split val --num-images 50 --out runs/eval_b
    python -m training.compare runs/eval_a runs/eval_b --out runs/compare_a_b

It prints a markdown table and, with ``--out``, writes ``comparison.json`` and ``comparison.md``.
``--first-scenes N`` pairs only the objects of the first N scenes of both evaluations (by scene
index), e.g. to see how much wider the interval on 50 scenes is than on all 100 of an evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# per-object metric -> (title, True when a higher value is better)
METRICS = {
    "one_click_best": ("1-click IoU, best of 3", True),
    "one_click_top": ("1-click IoU, top-ranked", True),
    "box": ("box IoU", True),
    "noc85": ("NoC@85", False),
    "noc90": ("NoC@90", False),
    "final_iou": ("IoU after the last click", True),
}


def scene_bootstrap(diff: Sequence[float] | np.ndarray, scene: Sequence[int] | np.ndarray,
                    resamples: int = 5000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``diff`` (one value per object) when whole scenes are
    resampled with replacement. ``scene[i]`` names the scene of object ``i``. Returns ``(low,
    high)`` at ``level`` (0.95: the 2.5th and 97.5th percentiles of ``resamples`` resampled
    means, each the mean over the drawn scenes' objects)."""
    d = np.asarray(diff, dtype=np.float64)
    s = np.asarray(scene)
    if d.ndim != 1 or d.shape != s.shape:
        raise ValueError(f"diff and scene must be 1-D and aligned, got {d.shape} and {s.shape}")
    if d.size == 0:
        raise ValueError("scene_bootstrap needs at least one object")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    _, inverse = np.unique(s, return_inverse=True)
    sums = np.bincount(inverse, weights=d)
    counts = np.bincount(inverse).astype(np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):  # blocks of draws keep memory small for many scenes
        draws = rng.integers(0, sums.size, size=(min(1000, resamples - start), sums.size))
        means[start:start + len(draws)] = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def load_per_object(path: str | Path) -> dict[str, Any]:
    """``per_object.json`` as ``training.evaluate --out`` writes it; ``path`` is the file or its folder."""
    p = Path(path)
    if p.is_dir():
        p = p / "per_object.json"
    if not p.is_file():
        raise ValueError(f"{p} not found: give a folder written by `python -m training.evaluate --out` "
                         "or its per_object.json")
    return json.loads(p.read_text())


def model_identity(report: dict[str, Any]) -> dict[str, Any]:
    """Model spec, checkpoint path and the checkpoint file's sha256 (None for random weights and for
    reports written before evaluate recorded it)."""
    return {"model": report.get("model"), "checkpoint": report.get("checkpoint"),
            "checkpoint_sha256": report.get("checkpoint_sha256")}


def describe(identity: dict[str, Any]) -> str:
    sha = identity.get("checkpoint_sha256")
    return f"{identity['checkpoint']}" + (f" (sha256 {sha[:12]})" if sha else "")


def beyond_noise(low: float, high: float, higher_is_better: bool) -> str | None:
    """``"better"`` when the 95 % interval ``[low, high]`` of ``B - A`` lies wholly on B's good side of
    zero (above it, or below it for a metric where lower is better), ``"worse"`` when wholly on the
    other side, ``None`` when it includes zero (a difference within noise)."""
    if low > 0 or high < 0:
        return "better" if (low > 0) == higher_is_better else "worse"
    return None


def first_scenes(objects: dict[str, list[Any]], n: int) -> dict[str, list[Any]]:
    """The per-object lists of ``objects`` (``per_object.json``'s ``objects``) kept for the objects
    of the ``n`` lowest scene indices (``sample``). Raises ValueError unless ``1 <= n <=`` the
    number of scenes."""
    scenes = sorted(set(objects["sample"]))
    if not 1 <= n <= len(scenes):
        raise ValueError(f"--first-scenes must be between 1 and {len(scenes)} (the evaluations' scenes), got {n}")
    keep = [i for i, s in enumerate(objects["sample"]) if s <= scenes[n - 1]]
    return {k: [v[i] for i in keep] for k, v in objects.items()}


def compare(a: dict[str, Any], b: dict[str, Any], resamples: int = 5000, seed: int = 0,
            scenes: int | None = None) -> dict[str, Any]:
    """Pairs two ``per_object.json`` contents object by object, on the objects of the first
    ``scenes`` scenes only when given (``first_scenes``). Raises ValueError unless both evaluated
    the same objects (same data selection, same samples and masks)."""
    if a["selection"] != b["selection"]:
        keys = sorted(k for k in set(a["selection"]) | set(b["selection"])
                      if a["selection"].get(k) != b["selection"].get(k))
        details = "; ".join(f"{k}: {a['selection'].get(k)!r} vs {b['selection'].get(k)!r}" for k in keys)
        raise ValueError(f"the two reports evaluated different objects ({details}); evaluate both with "
                         "the same data options (--split, --num-images, --offset, --max-objects, --seed, ...)")
    oa, ob = a["objects"], b["objects"]
    if oa["sample"] != ob["sample"] or oa["mask"] != ob["mask"]:
        raise ValueError("the two reports list different objects although their data options match")
    if not oa["sample"]:
        raise ValueError("the reports hold no objects")
    if scenes is not None:
        oa, ob = first_scenes(oa, scenes), first_scenes(ob, scenes)
    scene = np.asarray(oa["sample"])
    rows: dict[str, Any] = {}
    for key, (title, higher_is_better) in METRICS.items():
        if key not in oa or key not in ob:
            continue
        va, vb = np.asarray(oa[key], dtype=np.float64), np.asarray(ob[key], dtype=np.float64)
        diff = vb - va
        low, high = scene_bootstrap(diff, scene, resamples, seed)
        sign = 1 if higher_is_better else -1
        rows[key] = {"title": title, "a": float(va.mean()), "b": float(vb.mean()), "b_minus_a": float(diff.mean()),
                     "ci95": [low, high], "share_b_better": float(np.mean(sign * diff > 0)),
                     "share_b_worse": float(np.mean(sign * diff < 0)),
                     "beyond_noise": beyond_noise(low, high, higher_is_better)}
    verdict = {side: [k for k, r in rows.items() if r["beyond_noise"] == side] for side in ("better", "worse")}
    return {"a": model_identity(a), "b": model_identity(b),
            "selection": a["selection"], "objects": len(oa["sample"]), "scenes": int(np.unique(scene).size),
            "first_scenes": scenes, "resamples": resamples, "seed": seed, "metrics": rows,
            "beyond_noise": verdict}


def markdown_table(result: dict[str, Any], names: tuple[str, str] = ("A", "B")) -> str:
    """The comparison as a markdown table, one row per metric."""
    na, nb = names
    lines = [f"| metric | {na} | {nb} | {nb} - {na} | 95 % interval (scene bootstrap) | {nb} better | {nb} worse |",
             "|---|---|---|---|---|---|---|"]
    for row in result["metrics"].values():
        low, high = row["ci95"]
        lines.append(f"| {row['title']} | {row['a']:.3f} | {row['b']:.3f} | {row['b_minus_a']:+.4f} | "
                     f"[{low:+.4f}, {high:+.4f}] | {row['share_b_better']:.0%} | {row['share_b_worse']:.0%} |")
    def titles(side: str) -> str:
        return "; ".join(result["metrics"][k]["title"] for k in result["beyond_noise"][side]) or "nothing"
    lines += ["", f"{nb} better beyond noise (95 % interval clear of zero): {titles('better')}. "
              f"Worse beyond noise: {titles('worse')}.",
              "", f"{result['objects']} objects in {result['scenes']} scenes, paired; {result['resamples']} "
              f"scene resamples. {na}: {describe(result['a'])}; {nb}: {describe(result['b'])}."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="baseline: a training.evaluate --out folder or its per_object.json")
    p.add_argument("b", help="candidate: the same, evaluated with the same data options")
    p.add_argument("--names", nargs=2, default=("A", "B"), metavar=("NAME_A", "NAME_B"),
                   help="column names in the table (default A B)")
    p.add_argument("--resamples", type=int, default=5000, help="scene bootstrap resamples (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("--first-scenes", type=int, metavar="N",
                   help="pair only the objects of the first N scenes (lowest scene indices) of both evaluations")
    p.add_argument("--out", help="folder for comparison.json and comparison.md")
    args = p.parse_args(argv)
    if args.resamples < 1:
        p.error("--resamples must be at least 1")
    try:
        result = compare(load_per_object(args.a), load_per_object(args.b), args.resamples, args.seed,
                         args.first_scenes)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["names"] = list(args.names)
    table = markdown_table(result, tuple(args.names))
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "comparison.md").write_text(f"# {args.names[1]} against {args.names[0]}\n\n" + table)
        print(f"wrote {out / 'comparison.json'} and {out / 'comparison.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
