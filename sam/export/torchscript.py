"""Scripts the export wrappers, checks eager-vs-TorchScript parity, then writes the files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sam.export.wrappers import DecoderExport, EncoderExport
from sam.modeling.sam import Sam

ENCODER_FILE = "encoder.pt"
DECODER_FILE = "decoder.pt"
METADATA_FILE = "export.json"


@dataclass
class ExportReport:
    """Where the files went and the largest eager-vs-TorchScript differences seen."""

    encoder_path: Path
    decoder_path: Path
    encoder_max_abs_diff: float
    decoder_max_abs_diff: float
    cases: list[str] = field(default_factory=list)


def script_encoder(model: Sam) -> torch.jit.ScriptModule:
    return torch.jit.script(EncoderExport(model).eval())


def script_decoder(model: Sam) -> torch.jit.ScriptModule:
    return torch.jit.script(DecoderExport(model).eval())


def decoder_parity_inputs(model: Sam, seed: int = 0) -> dict[str, tuple[torch.Tensor, ...]]:
    """Decoder inputs covering 1..5 points, with and without box and mask prompt, batch 1 and 3."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config
    g, low, size = cfg.embedding_size, cfg.low_res_size, cfg.image_size
    cases: dict[str, tuple[torch.Tensor, ...]] = {}
    for batch in (1, 3):
        emb = torch.randn(1, cfg.out_chans, g, g, generator=gen)
        for n_points in (1, 2, 5):
            for with_box in (False, True):
                for with_mask in (False, True):
                    coords = torch.rand(batch, n_points, 2, generator=gen) * size
                    labels = torch.randint(0, 2, (batch, n_points), generator=gen, dtype=torch.int32)
                    if with_box:
                        corners = torch.sort(torch.rand(batch, 2, 2, generator=gen) * size, dim=1).values
                        coords = torch.cat([coords, corners], dim=1)
                        labels = torch.cat([labels, torch.tensor([[2, 3]] * batch, dtype=torch.int32)], dim=1)
                    else:
                        coords = torch.cat([coords, torch.zeros(batch, 1, 2)], dim=1)
                        labels = torch.cat([labels, -torch.ones(batch, 1, dtype=torch.int32)], dim=1)
                    mask = torch.randn(batch, 1, low, low, generator=gen) * 5
                    has_mask = torch.full((batch,), 1.0 if with_mask else 0.0)
                    name = f"batch{batch}-points{n_points}-box{int(with_box)}-mask{int(with_mask)}"
                    cases[name] = (emb, coords, labels, mask, has_mask)
        # mask prompt only (no points, no box): N = 0
        cases[f"batch{batch}-mask-only"] = (
            emb, torch.zeros(batch, 0, 2), torch.zeros(batch, 0, dtype=torch.int32),
            torch.randn(batch, 1, low, low, generator=gen), torch.ones(batch),
        )
    return cases


def max_abs_diff(a: tuple[torch.Tensor, ...] | torch.Tensor, b: tuple[torch.Tensor, ...] | torch.Tensor) -> float:
    xs = a if isinstance(a, tuple) else (a,)
    ys = b if isinstance(b, tuple) else (b,)
    return max(float((x - y).abs().max()) for x, y in zip(xs, ys, strict=True))


@torch.inference_mode()
def check_parity(model: Sam, encoder: torch.jit.ScriptModule, decoder: torch.jit.ScriptModule,
                 tolerance: float = 1e-5) -> tuple[float, float, list[str]]:
    """Runs eager and scripted graphs on the same inputs; raises if any output differs > tolerance."""
    size = model.config.image_size
    gen = torch.Generator().manual_seed(1)
    enc_diff = 0.0
    for h, w in ((size, size), (size * 3 // 4, size), (size, size // 2 + 1)):
        image = torch.randint(0, 256, (1, h, w, 3), generator=gen, dtype=torch.uint8)
        enc_diff = max(enc_diff, max_abs_diff(EncoderExport(model)(image), encoder(image)))
    eager = DecoderExport(model)
    dec_diff = 0.0
    cases = decoder_parity_inputs(model)
    for inputs in cases.values():
        dec_diff = max(dec_diff, max_abs_diff(eager(*inputs), decoder(*inputs)))
    if enc_diff > tolerance or dec_diff > tolerance:
        raise RuntimeError(
            f"TorchScript export differs from the eager model: encoder {enc_diff:.3g}, decoder "
            f"{dec_diff:.3g} (tolerance {tolerance:g}); nothing was written"
        )
    return enc_diff, dec_diff, list(cases)


def export_model(model: Sam, out_dir: str | Path, check: bool = True) -> ExportReport:
    """Writes ``encoder.pt``, ``decoder.pt`` and ``export.json`` (config + parity figures) to
    ``out_dir``, after the parity check when ``check`` is true."""
    model = model.eval()
    encoder = script_encoder(model)
    decoder = script_decoder(model)
    enc_diff = dec_diff = float("nan")
    cases: list[str] = []
    if check:
        enc_diff, dec_diff, cases = check_parity(model, encoder, decoder)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder.save(str(out / ENCODER_FILE))
    decoder.save(str(out / DECODER_FILE))
    metadata = {
        "config": model.config.to_dict(),
        "encoder_max_abs_diff": enc_diff,
        "decoder_max_abs_diff": dec_diff,
        "parity_cases": cases,
        "torch_version": torch.__version__,
    }
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return ExportReport(out / ENCODER_FILE, out / DECODER_FILE, enc_diff, dec_diff, cases)
