import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sam.export.torchscript import decoder_parity_inputs, export_model, max_abs_diff
from sam.export.wrappers import DecoderExport, EncoderExport

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    report = export_model(tiny_model, out)
    return report, torch.jit.load(str(report.encoder_path)), torch.jit.load(str(report.decoder_path))


def test_export_writes_files_and_reports_parity(exported):
    report, _, _ = exported
    assert report.encoder_max_abs_diff <= 1e-5 and report.decoder_max_abs_diff <= 1e-5
    meta = json.loads((report.encoder_path.parent / "export.json").read_text())
    assert meta["config"]["image_size"] == 256
    assert len(meta["parity_cases"]) == len(report.cases) > 20


def test_loaded_decoder_matches_eager_on_every_case(tiny_model, exported):
    _, _, decoder = exported
    eager = DecoderExport(tiny_model)
    cases = decoder_parity_inputs(tiny_model, seed=7)
    assert {"batch3-points5-box1-mask1", "batch1-points1-box0-mask0", "batch1-mask-only"} <= set(cases)
    with torch.no_grad():
        for name, inputs in cases.items():
            assert max_abs_diff(eager(*inputs), decoder(*inputs)) <= 1e-5, name


@pytest.mark.parametrize("size", [(256, 256), (190, 256), (256, 93)])
def test_loaded_encoder_matches_eager_on_resized_uint8(tiny_model, exported, size):
    _, encoder, _ = exported
    image = torch.randint(0, 256, (1, *size, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert max_abs_diff(EncoderExport(tiny_model)(image), encoder(image)) <= 1e-5
        assert encoder(image).shape == (1, 256, 16, 16)


def test_cli_exports_a_registry_config(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sam.export", "--model", "tiny", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, check=False, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "encoder.pt").is_file() and (tmp_path / "decoder.pt").is_file()
    assert "parity" in result.stdout


def test_cli_reports_a_bad_checkpoint_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sam.export", "--model", "tiny", "--checkpoint", str(tmp_path / "x.pt"),
         "--out-dir", str(tmp_path)], capture_output=True, text=True, check=False, cwd=REPO,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
