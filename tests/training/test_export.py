import json

import torch

import sam
from sam.config import load_config
from training.export import main


def test_fp16_export_round_trips_and_checks_size(tmp_path):
    torch.manual_seed(0)
    model = sam.build_model("tiny")
    torch.save({"model": model.state_dict(), "step": 3}, tmp_path / "checkpoint.pt")  # a training checkpoint
    out = tmp_path / "fp16.pt"
    assert main(["--model", "tiny", "--checkpoint", str(tmp_path / "checkpoint.pt"), "--out", str(out)]) == 0
    half = torch.load(out, weights_only=True)
    assert all(v.dtype == torch.float16 for v in half.values() if v.is_floating_point())
    loaded = sam.build_model("tiny", checkpoint=out)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value.half().float(), rtol=0, atol=0)
    assert main(["--model", "tiny", "--checkpoint", str(out), "--out", str(out), "--max-mb", "0.001"]) == 1
    # a checkpoint of another configuration is refused with the mismatching keys named
    other = load_config("tiny").to_dict() | {"encoder_embed_dim": 32, "name": "other"}
    (tmp_path / "other.json").write_text(json.dumps(other))
    argv = ["--model", str(tmp_path / "other.json"), "--checkpoint", str(out), "--out", str(tmp_path / "x.pt")]
    assert main(argv) == 2
