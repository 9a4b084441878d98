"""A training run's summary for ``training.ship --training``, built from the run's own files.

    python -m training.run_summary runs/sam_small_c9 --step0 runs/eval16_base --compare runs/pcmp_c8_c9 \\
        --base models/sam_small/metrics.json --note device="CPU, 2 threads"

Writes ``RUN/summary.json`` (or ``--out``) with:

- ``config``: the run's resolved ``config.json`` (model, init, data, schedule, rounds, precision, seed);
- ``init``: the starting checkpoint's path and sha256 as ``training.train`` logged them when the run
  began (absent for a run from fresh weights or one logged before train recorded them);
- ``steps_planned`` / ``steps_run``, ``train_wall_seconds`` (the sum of the logged windows: every
  second from the first step to the last log line, validation and checkpoints included, summed
  across resumed sessions), the median seconds per step of the logged windows inside the
  curriculum (``curriculum_steps``; mixed 3-round and full steps) and after it (all rounds);
- ``val_curve``: the run's validation records by step (``log.jsonl``), with step 0 taken from
  ``--step0``, a ``training.evaluate --out`` folder evaluated on the run's own validation objects;
- ``paired``: a ``training.compare --out`` folder's result (``a`` is the previous model, ``b`` this
  run, each with its checkpoint path and the file's sha256): both models' means and ``b - a`` with its
  95 % scene-bootstrap interval, per metric, whether that interval puts ``b`` better or worse beyond
  noise (``beyond_noise``: ``"better"``, ``"worse"`` or null, from the unrounded interval), and the
  scenes compared (split, first scene, count);
- ``confirmation``: the same from ``--confirm``, a second comparison that checks the decision on
  scenes it was not made on (e.g. the next 50 ``val`` scenes, ``training.evaluate --offset 50``);
- ``base``: the ``training`` record of a ``metrics.json`` (the summary of the run this one started
  from), so that a shipped ``metrics.json`` holds the whole lineage;
- ``notes``: free text given as ``--note KEY=TEXT``.

Every figure is read from a file, none typed by hand.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from training.compare import METRICS, beyond_noise
from training.train import read_log

VAL_KEYS = ("one_click_miou_best_of_3", "one_click_miou_top_ranked", "box_miou")


def step_times(records: list[dict], curriculum_steps: int) -> dict[str, Any]:
    """Wall time and median seconds per step from the ``train`` records of ``log.jsonl``.

    Each record's ``seconds_per_step`` is the mean over the steps since the previous record (its
    window). A window belongs to the curriculum when its last step is at most ``curriculum_steps``.
    ``training.train --resume`` drops the log records after the checkpoint it resumes from, so each
    step is logged once, and time spent on steps that a resume discarded is not counted.
    """
    train = [r for r in records if r.get("type") == "train"]
    if not train:
        raise ValueError("log.jsonl has no train records")
    windows, previous = [], 0
    for r in train:
        windows.append((r["step"], r["step"] - previous, r["seconds_per_step"]))
        previous = r["step"]
    mixed = [s for step, _, s in windows if step <= curriculum_steps]
    full = [s for step, _, s in windows if step > curriculum_steps]
    return {
        "steps_run": previous,
        "train_wall_seconds": round(sum(n * s for _, n, s in windows)),
        "seconds_per_step_curriculum_median": round(statistics.median(mixed), 3) if mixed else None,
        "seconds_per_step_all_rounds_median": round(statistics.median(full), 3) if full else None,
    }


def val_curve(records: list[dict], step0: dict | None) -> dict[str, dict]:
    """Validation points by step (as strings); ``step0`` (an evaluation's ``overall``) becomes step "0"."""
    points = ([(0, step0)] if step0 is not None else []) + [(r["step"], r) for r in records if r.get("type") == "val"]
    return {str(step): {k: round(r[k], 4) for k in VAL_KEYS} | {"objects": r["objects"]} for step, r in points}


def paired(comparison: dict) -> dict[str, Any]:
    out: dict[str, Any] = {
        "a": comparison["a"], "b": comparison["b"], "objects": comparison["objects"],
        "scenes": comparison["scenes"], "resamples": comparison["resamples"],
        "split": comparison["selection"].get("split"), "offset": comparison["selection"].get("offset"),
        "num_images": comparison["selection"].get("num_images"),
    }
    for key, m in comparison["metrics"].items():
        out[key] = {"a": round(m["a"], 4), "b": round(m["b"], 4), "b_minus_a": round(m["b_minus_a"], 4),
                    "ci95": [round(x, 4) for x in m["ci95"]],
                    "beyond_noise": beyond_noise(m["ci95"][0], m["ci95"][1], METRICS[key][1])}
    return out


def summarize(run: Path, step0: Path | None = None) -> dict[str, Any]:
    """The summary of the run folder ``run`` (``config.json`` and ``log.jsonl`` from ``training.train``),
    without the decision records (``decision``)."""
    config = json.loads((run / "config.json").read_text())
    records = read_log(run / "log.jsonl")
    summary: dict[str, Any] = {"run": str(run), "config": config, "steps_planned": config["steps"]}
    init = next((r for r in records if r.get("type") == "init"), None)
    if init is not None:
        summary["init"] = {"checkpoint": init["checkpoint"], "sha256": init["sha256"]}
    summary |= step_times(records, config["curriculum_steps"])
    step0_report = json.loads((step0 / "report.json").read_text())["overall"] if step0 else None
    summary["val_curve"] = val_curve(records, step0_report)
    return summary


def decision(comparison: Path | None, base: Path | None, notes: dict[str, str] | None,
             confirm: Path | None = None) -> dict[str, Any]:
    """The records that tie a candidate to the model it would replace, each only when given:
    ``paired`` from a ``training.compare --out`` folder, ``confirmation`` from another one (a check
    on scenes the choice was not made on, e.g. ``--offset 50``), ``notes``, and ``base`` (the
    ``training`` record of that model's ``metrics.json``)."""
    out: dict[str, Any] = {}
    if comparison is not None:
        out["paired"] = paired(json.loads((comparison / "comparison.json").read_text()))
    if confirm is not None:
        out["confirmation"] = paired(json.loads((confirm / "comparison.json").read_text()))
    if notes:
        out["notes"] = dict(notes)
    if base is not None:
        out["base"] = json.loads(base.read_text()).get("training")
    return out


def add_decision_arguments(p: argparse.ArgumentParser, compared: str, lineage: str) -> None:
    """The options ``decision_from_args`` reads, shared by ``training.run_summary`` and
    ``training.soup``: ``compared`` says which model is ``a`` and which ``b`` in ``--compare``,
    ``lineage`` whose ``training`` record ``--base`` holds."""
    p.add_argument("--compare", type=Path, help=f"training.compare --out folder: {compared}")
    p.add_argument("--confirm", type=Path,
                   help="training.compare --out folder: a check of the decision on other scenes, recorded "
                        "under 'confirmation'")
    p.add_argument("--base", type=Path, help=f"metrics.json whose 'training' record is {lineage}")
    p.add_argument("--note", type=parse_note, action="append", default=[], help="KEY=TEXT, recorded under 'notes'")


def decision_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``decision`` from the options ``add_decision_arguments`` added."""
    return decision(args.compare, args.base, dict(args.note), args.confirm)


def parse_note(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--note takes KEY=TEXT, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(prog="python -m training.run_summary", description=doc.split("\n\n")[0])
    p.add_argument("run", type=Path, help="run folder written by training.train (config.json, log.jsonl)")
    p.add_argument("--step0", type=Path, help="training.evaluate --out folder: the starting weights on the "
                                              "run's validation objects (step 0 of the curve)")
    add_decision_arguments(p, compared="previous model (a) against this run (b)",
                           lineage="the run this one started from")
    p.add_argument("--out", type=Path, help="output file (default RUN/summary.json)")
    args = p.parse_args(argv)
    try:
        summary = summarize(args.run, args.step0) | decision_from_args(args)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e!r} (RUN needs config.json and log.jsonl from training.train; --step0 a "
              f"training.evaluate --out folder; --compare and --confirm training.compare --out folders)",
              file=sys.stderr)
        return 2
    out = args.out or args.run / "summary.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {out}: {summary['steps_run']} steps, {summary['train_wall_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
