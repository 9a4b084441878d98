import csv
import hashlib
from pathlib import Path

import pytest
import torch

import sam
from sam.build import build_from_config, file_sha256
from sam.config import load_config

KEYS_TSV = Path(__file__).parent / "data" / "sam_checkpoint_keys.tsv"


def _reference_shapes(model_name: str) -> dict[str, tuple[int, ...]]:
    with KEYS_TSV.open() as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["model"] == model_name]
    return {r["key"]: tuple(int(x) for x in r["shape"].split("x")) for r in rows}


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_state_dict_keys_and_shapes_equal_the_official_checkpoints(name):
    # Shapes only: build on the meta device so vit_h needs no memory.
    with torch.device("meta"):
        model = build_from_config(load_config(name))
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == _reference_shapes(name)


def test_pixel_mean_and_std_are_not_in_the_state_dict(tiny_model):
    keys = set(tiny_model.state_dict())
    assert "pixel_mean" not in keys and "pixel_std" not in keys
    assert "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" in keys


def test_fp16_checkpoint_round_trips_into_float32(tiny_model, tmp_path):
    path = tmp_path / "tiny_fp16.pt"
    torch.save({k: v.half() for k, v in tiny_model.state_dict().items()}, path)
    loaded = sam.build_model("tiny", checkpoint=path)
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32, key
        assert torch.equal(value, tiny_model.state_dict()[key].half().float()), key
    assert not loaded.training


def test_checkpoint_wrapped_under_model_key_loads(tiny_model, tmp_path):
    path = tmp_path / "wrapped.pt"
    torch.save({"model": tiny_model.state_dict(), "step": torch.tensor(3)}, path)
    loaded = sam.build_model("tiny", checkpoint=path)
    assert torch.equal(loaded.mask_decoder.iou_token.weight, tiny_model.mask_decoder.iou_token.weight)


def test_strict_load_names_missing_and_unexpected_keys(tiny_model, tmp_path):
    state = dict(tiny_model.state_dict())
    del state["mask_decoder.iou_token.weight"]
    state["mask_decoder.extra"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        sam.build_model("tiny", checkpoint=path)
    assert "missing keys: mask_decoder.iou_token.weight" in str(info.value)
    assert "unexpected keys: mask_decoder.extra" in str(info.value)


def test_checkpoint_of_another_size_reports_shape_mismatch(tiny_model, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_model.state_dict(), path)
    small = load_config("tiny").to_dict() | {"encoder_embed_dim": 32, "name": "narrow"}
    with pytest.raises(ValueError, match="shape mismatches: image_encoder"):
        sam.build_model(small, checkpoint=path)


def test_missing_checkpoint_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        sam.build_model("tiny", checkpoint=tmp_path / "nope.pt")


def test_file_sha256_reads_large_files_in_chunks(tmp_path):
    data = bytes(range(256)) * ((3 << 20) // 256 + 7)  # a little over 3 MiB: four 1 MiB reads
    (tmp_path / "f.bin").write_bytes(data)
    assert file_sha256(tmp_path / "f.bin") == hashlib.sha256(data).hexdigest()
    (tmp_path / "g.bin").write_bytes(data[:-1])
    assert file_sha256(tmp_path / "g.bin") == hashlib.sha256(data[:-1]).hexdigest() != file_sha256(tmp_path / "f.bin")
