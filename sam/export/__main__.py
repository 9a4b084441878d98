"""``python -m sam.export``: write TorchScript encoder and decoder files for any config + checkpoint."""

from __future__ import annotations

import argparse
import sys

from sam.build import build_model
from sam.config import registry_names
from sam.export.torchscript import export_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sam.export",
        description=(
            "Export the SAM image encoder and mask decoder to TorchScript (encoder.pt, decoder.pt, "
            "export.json) after checking that the scripted graphs match the eager model (max abs "
            "difference <= 1e-5)."
        ),
        epilog=(
            "examples:\n"
            "  python -m sam.export --model vit_b --checkpoint sam_vit_b_01ec64.pth --out-dir build/vit_b\n"
            "  python -m sam.export --model models/sam_small/config.json "
            "--checkpoint models/sam_small/model.pt --out-dir build/small"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help=f"registry name ({', '.join(registry_names())}) or path to a JSON config")
    parser.add_argument("--checkpoint", help="state dict with official key names (default: random weights)")
    parser.add_argument("--out-dir", required=True, help="folder to write encoder.pt, decoder.pt, export.json")
    parser.add_argument("--skip-parity-check", action="store_true",
                        help="write without comparing against the eager model (not recommended)")
    args = parser.parse_args(argv)
    try:
        model = build_model(args.model, args.checkpoint)
        report = export_model(model, args.out_dir, check=not args.skip_parity_check)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {report.encoder_path} and {report.decoder_path} "
          f"(parity: encoder {report.encoder_max_abs_diff:.2g}, decoder {report.decoder_max_abs_diff:.2g} "
          f"over {len(report.cases)} decoder cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
