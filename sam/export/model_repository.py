"""Builds a servable Triton model repository: templates + exported TorchScript + warmup + metadata.

``python -m sam.export.model_repository --model SPEC [--checkpoint CKPT] --out DIR`` copies the
committed templates (``model_repository/``: ``config.pbtxt`` for the libtorch backend on GPU,
``configs/cpu.pbtxt`` for the Python backend on CPU, ``1/model.py``), exports the model with the
parity check, writes ``<model>/1/model.pt``, and appends to every config a ``model_warmup`` sized for
this model (so Triton's "ready" means warm) and ``parameters`` that describe it (``sam_model_name``,
``sam_model_version``, ``sam_image_size``, ``sam_embedding_size``, ``sam_config``), which the
gateway reads back from Triton.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from sam.build import build_model, file_sha256
from sam.config import SamConfig, registry_names
from sam.export.torchscript import DECODER_FILE, ENCODER_FILE, export_model

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "model_repository"
ENCODER_MODEL = "sam_encoder"
DECODER_MODEL = "sam_decoder"


def model_version_id(config: SamConfig, checkpoint: str | Path | None, seed: int = 0) -> str:
    """A short content id: sha256 of the checkpoint bytes (or of config + seed for random weights)."""
    if checkpoint is not None:
        return file_sha256(checkpoint)[:16]
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update(f"random-weights-seed-{seed}".encode())
    return digest.hexdigest()[:16]


def _parameters_block(values: dict[str, str]) -> str:
    lines = [f'parameters: {{ key: "{k}", value: {{ string_value: {json.dumps(v)} }} }}' for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _encoder_warmup(config: SamConfig) -> str:
    s = config.image_size
    return (
        "model_warmup [\n  {\n    name: \"square_image\"\n    batch_size: 1\n"
        f"    inputs {{ key: \"image\", value: {{ data_type: TYPE_UINT8, dims: [ {s}, {s}, 3 ], zero_data: true }} }}\n"
        "  }\n]\n"
    )


def _decoder_warmup(config: SamConfig) -> str:
    g, low = config.embedding_size, config.low_res_size
    inputs = [
        ("image_embeddings", "TYPE_FP32", [1, 256, g, g]),
        ("point_coords", "TYPE_FP32", [1, 2, 2]),
        ("point_labels", "TYPE_INT32", [1, 2]),
        ("mask_input", "TYPE_FP32", [1, 1, low, low]),
        ("has_mask_input", "TYPE_FP32", [1]),
    ]
    body = "".join(
        f"    inputs {{ key: \"{name}\", value: {{ data_type: {dtype}, dims: [ {', '.join(map(str, dims))} ], "
        "zero_data: true } }\n"
        for name, dtype, dims in inputs
    )
    return f"model_warmup [\n  {{\n    name: \"one_point\"\n    batch_size: 1\n{body}  }}\n]\n"


def build_model_repository(spec: str | Path, out_dir: str | Path, checkpoint: str | Path | None = None,
                           template_dir: str | Path = TEMPLATE_DIR, seed: int = 0) -> Path:
    """Writes a complete repository to ``out_dir`` (replacing the two model folders there).

    Without a checkpoint the weights are random but fixed: drawn from ``torch.manual_seed(seed)``.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(spec, checkpoint)
    config = model.config
    out = Path(out_dir)
    template = Path(template_dir)
    metadata = {
        "sam_model_name": config.name,
        "sam_model_version": model_version_id(config, checkpoint, seed),
        "sam_image_size": str(config.image_size),
        "sam_embedding_size": str(config.embedding_size),
        "sam_config": json.dumps(config.to_dict(), sort_keys=True),
    }
    with tempfile.TemporaryDirectory() as tmp:
        report = export_model(model, tmp)
        for name, exported, warmup in (
            (ENCODER_MODEL, ENCODER_FILE, _encoder_warmup(config)),
            (DECODER_MODEL, DECODER_FILE, _decoder_warmup(config)),
        ):
            target = out / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(template / name, target, ignore=shutil.ignore_patterns("*.pt", "__pycache__"))
            shutil.copyfile(Path(tmp) / exported, target / "1" / "model.pt")
            configs = [target / "config.pbtxt", *sorted((target / "configs").glob("*.pbtxt"))]
            for path in configs:
                text = path.read_text().rstrip("\n") + "\n" + warmup + _parameters_block(metadata)
                path.write_text(text)
    (out / "export.json").write_text(json.dumps(
        {**metadata, "encoder_max_abs_diff": report.encoder_max_abs_diff,
         "decoder_max_abs_diff": report.decoder_max_abs_diff}, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sam.export.model_repository",
        description="Build a Triton model repository (sam_encoder, sam_decoder) for a SAM config + checkpoint.",
        epilog="example:\n  python -m sam.export.model_repository --model vit_b --checkpoint sam_vit_b_01ec64.pth "
               "--out build/model_repository",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help=f"registry name ({', '.join(registry_names())}) or path to a JSON config")
    parser.add_argument("--checkpoint", help="state dict with official key names (default: random weights)")
    parser.add_argument("--out", required=True, help="target folder (model folders in it are replaced)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights when no checkpoint is given")
    args = parser.parse_args(argv)
    try:
        out = build_model_repository(args.model, args.out, args.checkpoint, seed=args.seed)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote Triton model repository {out} ({ENCODER_MODEL}, {DECODER_MODEL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
