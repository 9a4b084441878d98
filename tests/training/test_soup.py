import json

import pytest
import torch

import sam
from sam.build import file_sha256
from training.compare import main as compare_main
from training.evaluate import main as evaluate_main
from training.soup import average_state_dicts, main


def test_average_is_the_keywise_mean_in_the_widest_dtype():
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([0.1], dtype=torch.float16)}
    b = {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([0.2], dtype=torch.float16)}
    c = {"w": torch.tensor([2.0, 1.0]), "h": torch.tensor([0.3], dtype=torch.float16)}
    soup = average_state_dicts([a, b, c])
    assert torch.equal(soup["w"], torch.tensor([2.0, 3.0]))
    assert soup["h"].dtype == torch.float16 and soup["h"].item() == pytest.approx(0.2, abs=1e-3)
    assert torch.equal(average_state_dicts([a])["w"], a["w"])
    mixed = average_state_dicts([a, b | {"h": torch.tensor([0.2], dtype=torch.float32)}])
    assert mixed["h"].dtype == torch.float32 and mixed["h"].item() == pytest.approx(0.15, abs=1e-4)


def test_members_that_do_not_match_are_named():
    a = {"w": torch.zeros(2), "v": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"checkpoint 2 has other keys.*missing: \['v'\]"):
        average_state_dicts([a, {"w": torch.zeros(2)}])
    with pytest.raises(ValueError, match=r"checkpoint 3: w has shape \(3,\), checkpoint 1 has \(2,\)"):
        average_state_dicts([a, a, {"w": torch.zeros(3), "v": torch.zeros(1)}])
    count = {"w": torch.zeros(2), "v": torch.zeros(1), "n": torch.tensor(3)}
    assert average_state_dicts([count, count])["n"].item() == 3
    with pytest.raises(ValueError, match=r"n \(torch.int64\) differs between the checkpoints"):
        average_state_dicts([count, count | {"n": torch.tensor(4)}])
    with pytest.raises(ValueError, match="at least one"):
        average_state_dicts([])


@pytest.mark.slow
def test_cli_writes_a_loadable_soup_with_its_members_and_comparison(tmp_path, capsys):
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        folder = tmp_path / f"run{seed}"
        folder.mkdir()
        torch.save(sam.build_model("tiny").state_dict(), folder / "model.pt")
        paths.append(folder / "model.pt")
    (tmp_path / "run1" / "summary.json").write_text(json.dumps({"steps_run": 8, "base": {"steps_run": 4}}))
    (tmp_path / "metrics.json").write_text(json.dumps({"training": {"steps_run": 99}}))
    soup_dir = tmp_path / "soup"
    members = [str(p) for p in paths]
    assert main(members + ["--model", "tiny", "--out", str(soup_dir)]) == 0
    first_file = file_sha256(soup_dir / "model.pt")

    soup = torch.load(soup_dir / "model.pt", weights_only=True)
    a, b = (torch.load(p, weights_only=True) for p in paths)
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    assert torch.allclose(soup[key], (a[key] + b[key]) / 2) and not torch.equal(soup[key], a[key])
    sam.build_model("tiny").load_state_dict(soup, strict=True)

    # the real evaluation and comparison of member 0 (a) with the soup (b), then the summary
    for name, checkpoint in (("a", paths[0]), ("b", soup_dir / "model.pt")):
        assert evaluate_main(["--model", "tiny", "--checkpoint", str(checkpoint), "--split", "val",
                              "--num-images", "2", "--no-noc", "--threads", "1", "--device", "cpu",
                              "--out", str(tmp_path / name)]) == 0
    assert compare_main([str(tmp_path / "a"), str(tmp_path / "b"), "--resamples", "200",
                         "--out", str(tmp_path / "cmp")]) == 0
    assert main(members + ["--model", "tiny", "--out", str(soup_dir), "--compare", str(tmp_path / "cmp"),
                           "--confirm", str(tmp_path / "cmp"), "--base", str(tmp_path / "metrics.json"),
                           "--note", "device=CPU"]) == 0
    assert file_sha256(soup_dir / "model.pt") == first_file  # same members, same file
    summary = json.loads((soup_dir / "summary.json").read_text())
    m0, m1 = summary["soup"]["members"]
    assert m0 == {"checkpoint": str(paths[0]), "sha256": file_sha256(paths[0])}  # no summary next to it
    assert m1["sha256"] == file_sha256(paths[1]) and m1["summary"] == {"steps_run": 8}  # its base left out
    assert summary["paired"]["b"]["checkpoint_sha256"] == first_file
    assert summary["confirmation"] == summary["paired"]  # --confirm read through the same record
    assert summary["base"] == {"steps_run": 99} and summary["notes"] == {"device": "CPU"}

    capsys.readouterr()
    torch.save({"step": 3}, tmp_path / "not_weights.pt")
    assert main([members[0], str(tmp_path / "not_weights.pt"), "--model", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert "does not hold a state dict" in capsys.readouterr().err
    assert main([members[0], str(tmp_path / "metrics.json"), "--model", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.startswith("error: ")  # a JSON file: torch's unpickling error, no traceback
    torch.save(sam.build_model("tiny").state_dict() | {"extra": torch.zeros(1)}, tmp_path / "extra.pt")
    assert main([members[0], str(tmp_path / "extra.pt"), "--model", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert "extra: ['extra']" in capsys.readouterr().err
