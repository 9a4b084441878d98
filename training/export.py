"""Write a trained model as a float16 state dict for shipping (official key names, strict-checked).

    python -m training.export --model CONFIG.json --checkpoint runs/x/best.pt --out model_fp16.pt

Reads a plain state dict or a training checkpoint (``checkpoint.pt``: its ``model`` entry), checks
that it loads strictly into ``--model``, casts floating tensors to float16 and writes them.
``sam.build_model(spec, checkpoint=...)`` casts them back to float32 on load. Prints the file size
and its sha256 and, with ``--max-mb``, fails if the file is larger.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch


def export_fp16(model_spec: str, checkpoint: str | Path, out: str | Path) -> tuple[int, str]:
    """Writes ``out``; returns ``(size_bytes, sha256_hex)``. Raises ValueError if the checkpoint
    does not fit the configuration."""
    import sam
    from sam.build import file_sha256, load_weights, read_state_dict

    model = sam.build_model(model_spec)
    state = read_state_dict(checkpoint)
    load_weights(model, state, source=f"checkpoint {checkpoint}")  # strict: names and shapes
    half = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
            for k, v in model.state_dict().items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    torch.save(half, tmp)
    os.replace(tmp, out)
    return out.stat().st_size, file_sha256(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.export", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--model", required=True, help="model spec: registry name or JSON config")
    p.add_argument("--checkpoint", required=True, help="model.pt, best.pt or checkpoint.pt of a run")
    p.add_argument("--out", required=True, help="output .pt file (float16 state dict)")
    p.add_argument("--max-mb", type=float, help="fail if the file is larger than this many MB (10^6 bytes)")
    args = p.parse_args(argv)
    try:
        size, digest = export_fp16(args.model, args.checkpoint, args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {size / 1e6:.2f} MB, sha256 {digest}")
    if args.max_mb is not None and size > args.max_mb * 1e6:
        print(f"error: {args.out} is {size / 1e6:.2f} MB, over --max-mb {args.max_mb}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
