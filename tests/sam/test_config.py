import json

import pytest

from sam.config import SamConfig, load_config, registry_names


def test_registry_has_official_and_tiny_configs():
    assert {"vit_b", "vit_l", "vit_h", "tiny"} <= set(registry_names())


def test_derived_sizes_of_official_and_small_configs():
    b = load_config("vit_b")
    assert (b.embedding_size, b.low_res_size) == (64, 256)
    tiny = load_config("tiny")
    assert (tiny.image_size, tiny.embedding_size, tiny.low_res_size) == (256, 16, 64)


def test_json_path_and_dict_specs_ignore_unknown_keys(tmp_path):
    values = load_config("tiny").to_dict() | {"description": "anything", "name": "mine"}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(values))
    from_path = load_config(path)
    from_dict = load_config(values)
    assert from_path == from_dict
    assert from_path.name == "mine"


def test_inconsistent_sizes_are_rejected_with_the_fix():
    values = load_config("tiny").to_dict() | {"image_embedding_size": [64, 64]}
    with pytest.raises(ValueError, match=r"image_embedding_size \[64, 64\] must equal \[16, 16\]"):
        SamConfig.from_dict(values)


def test_missing_required_key_is_named():
    values = load_config("tiny").to_dict()
    del values["encoder_depth"]
    with pytest.raises(ValueError, match="missing keys: encoder_depth"):
        SamConfig.from_dict(values)


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="vit_b"):
        load_config("vit_x")
