"""A weight average ("model soup") of checkpoints of one model, and its summary for ``training.ship``.

    python -m training.soup runs/sam_small_19/model.pt runs/sam_small_20/model.pt \\
        runs/sam_small_21/model.pt --model models/sam_small/config.json --out runs/soup_19_20_21 \\
        --compare runs/cmp_soup_19_20_21 --base models/sam_small/metrics.json --note device="CPU, 2 threads"

Averages the checkpoints' tensors uniformly (each key's mean over the members, summed in float64 and
stored in the widest of the members' dtypes), checks that the result loads strictly into ``--model``, and
writes ``OUT/model.pt`` (a plain state dict) and ``OUT/summary.json``:

- ``soup``: ``method`` and ``members``, each with its checkpoint path, the file's sha256 and, when
  the checkpoint's folder holds one, that run's ``summary.json`` from ``training.run_summary`` (its
  ``base`` left out: the lineage is the top-level ``base``);
- ``paired``, ``confirmation``, ``base``, ``notes``: as in ``training.run_summary``. ``--compare`` is
  a comparison of the model the soup would replace (``a``) with ``OUT/model.pt`` (``b``): make the
  soup, evaluate and compare it, then run this command again with ``--compare`` (the same members
  give the same file).

Averaging works for runs that started from the same weights (fine-tunes of one model stay in one
basin); averaging unrelated trainings gives a broken model, which the comparison will show.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from training.run_summary import add_decision_arguments, decision_from_args


def average_state_dicts(state_dicts: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The key-wise mean of ``state_dicts`` (same keys and shapes), summed in float64, stored in
    the widest of the members' dtypes for that key (a float16 member, such as a shipped file,
    averaged with float32 ones gives float32); a non-float tensor is kept if every member holds the
    same values. Raises ``ValueError`` naming the first key that does not match."""
    if not state_dicts:
        raise ValueError("a soup needs at least one checkpoint")
    first = state_dicts[0]
    for i, sd in enumerate(state_dicts[1:], start=2):
        if set(sd) != set(first):
            extra, missing = sorted(set(sd) - set(first)), sorted(set(first) - set(sd))
            raise ValueError(f"checkpoint {i} has other keys than checkpoint 1 "
                             f"(extra: {extra[:3]}, missing: {missing[:3]})")
        for key, t in sd.items():
            if t.shape != first[key].shape:
                raise ValueError(f"checkpoint {i}: {key} has shape {tuple(t.shape)}, "
                                 f"checkpoint 1 has {tuple(first[key].shape)}")
    soup = {}
    for key, t in first.items():
        if not t.is_floating_point():  # counters, indices: kept when the members agree
            if any(not torch.equal(sd[key], t) for sd in state_dicts[1:]):
                raise ValueError(f"{key} ({t.dtype}) differs between the checkpoints and cannot be averaged")
            soup[key] = t.clone()
            continue
        total, dtype = t.to(torch.float64), t.dtype
        for sd in state_dicts[1:]:
            total = total + sd[key].to(torch.float64)
            dtype = torch.promote_types(dtype, sd[key].dtype)
        soup[key] = (total / len(state_dicts)).to(dtype)
    return soup


def member(checkpoint: Path) -> dict[str, Any]:
    """A member's record: path, sha256 and its run's summary (without ``base``) if next to it."""
    from sam.build import file_sha256

    record: dict[str, Any] = {"checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint)}
    summary = checkpoint.parent / "summary.json"
    if summary.is_file():
        record["summary"] = {k: v for k, v in json.loads(summary.read_text()).items() if k != "base"}
    return record


def make_soup(checkpoints: Sequence[Path], model_spec: str, out: Path) -> dict[str, Any]:
    """Writes ``out/model.pt``, the average of ``checkpoints``, after loading it strictly into
    ``model_spec``; returns the ``soup`` record."""
    import sam
    from sam.build import read_state_dict

    members = [member(c) for c in checkpoints]
    soup = average_state_dicts([read_state_dict(c) for c in checkpoints])
    sam.build_model(model_spec).load_state_dict(soup, strict=True)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(soup, out / "model.pt")
    return {"method": "uniform average of the members' weights", "model": model_spec, "members": members}


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(prog="python -m training.soup", description=doc.split("\n\n")[0])
    p.add_argument("checkpoints", type=Path, nargs="+", help="state dicts of one model (run folders' model.pt)")
    p.add_argument("--model", required=True, help="model config JSON or name the checkpoints belong to")
    p.add_argument("--out", type=Path, required=True, help="output folder (model.pt, summary.json)")
    add_decision_arguments(p, compared="the model replaced (a) against OUT/model.pt (b)",
                           lineage="the model replaced")
    args = p.parse_args(argv)
    try:
        summary = {"soup": make_soup(args.checkpoints, args.model, args.out)} | decision_from_args(args)
    except (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError) as e:
        print(f"error: {e} (CHECKPOINTS must be state dicts of the --model config; --compare and "
              f"--confirm training.compare --out folders)", file=sys.stderr)
        return 2
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out / 'model.pt'} ({len(args.checkpoints)} members) and {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
