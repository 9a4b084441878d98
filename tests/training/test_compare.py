import json
from pathlib import Path

import pytest

from sam.build import file_sha256
from training.compare import beyond_noise, compare, main, markdown_table, scene_bootstrap
from training.evaluate import main as evaluate_main


def test_constant_difference_has_a_zero_width_interval():
    low, high = scene_bootstrap([0.25] * 6, [0, 0, 1, 2, 2, 2], resamples=200)
    assert low == pytest.approx(0.25) and high == pytest.approx(0.25)


def test_bootstrap_resamples_whole_scenes_and_weights_objects():
    diff, scene = [1.0, 1.0, 0.0], [7, 7, 3]  # scene 7: two objects gaining 1, scene 3: one gaining 0
    # two scenes drawn: both scene 3 (p 1/4) -> 0, both scene 7 (1/4) -> 1, one each (1/2) -> 2/3
    assert scene_bootstrap(diff, scene, resamples=4000) == pytest.approx((0.0, 1.0))
    # the middle 40 % falls on the mixed draws: the object-weighted mean 2/3, not the scene mean 1/2
    assert scene_bootstrap(diff, scene, resamples=4000, level=0.4) == pytest.approx((2 / 3, 2 / 3))
    with pytest.raises(ValueError, match="aligned"):
        scene_bootstrap([1.0, 2.0], [0])


def per_object(box, noc90, selection=None, masks=None):
    n = len(box)
    return {"model": "m", "checkpoint": "c", "selection": selection or {"split": "val", "num_images": 2},
            "objects": {"sample": [0] * (n // 2) + [1] * (n - n // 2), "mask": masks or list(range(n)),
                        "box": box, "noc90": noc90}}


def test_compare_pairs_objects_and_counts_fewer_clicks_as_better():
    a = per_object([0.5, 0.6, 0.7, 0.8], [10, 20, 5, 5])
    b = per_object([0.6, 0.6, 0.9, 0.7], [8, 20, 6, 5])
    result = compare(a, b, resamples=500)
    box, noc = result["metrics"]["box"], result["metrics"]["noc90"]
    assert set(result["metrics"]) == {"box", "noc90"}  # only the metrics both reports hold
    assert box["b_minus_a"] == pytest.approx(0.05) and box["a"] == pytest.approx(0.65)
    assert box["share_b_better"] == 0.5 and box["share_b_worse"] == 0.25
    assert noc["b_minus_a"] == pytest.approx(-0.25)
    assert noc["share_b_better"] == 0.25 and noc["share_b_worse"] == 0.25
    assert result["objects"] == 4 and result["scenes"] == 2
    assert "| box IoU | 0.650 | 0.700 | +0.0500 |" in markdown_table(result)


def test_beyond_noise_needs_the_interval_clear_of_zero_on_the_metrics_good_side():
    assert beyond_noise(0.001, 0.004, higher_is_better=True) == "better"
    assert beyond_noise(-0.004, -0.001, higher_is_better=True) == "worse"
    assert beyond_noise(-0.2, -0.1, higher_is_better=False) == "better"  # fewer clicks
    assert beyond_noise(0.1, 0.2, higher_is_better=False) == "worse"
    assert beyond_noise(-0.001, 0.004, higher_is_better=True) is None
    assert beyond_noise(0.0, 0.004, higher_is_better=True) is None  # touching zero is within noise
    assert beyond_noise(-0.2, 0.0, higher_is_better=False) is None


def test_compare_names_the_metrics_better_and_worse_beyond_noise():
    # box: B gains 0.1 on every object (interval [0.1, 0.1]); NoC@90: B needs one click more on
    # every object (worse); after that, a box gain on one scene and a loss on the other: within noise
    a = per_object([0.5, 0.6, 0.7, 0.8], [10, 20, 5, 5])
    b = per_object([0.6, 0.7, 0.8, 0.9], [11, 21, 6, 6])
    result = compare(a, b, resamples=500)
    assert result["beyond_noise"] == {"better": ["box"], "worse": ["noc90"]}
    assert result["metrics"]["box"]["beyond_noise"] == "better"
    assert result["metrics"]["noc90"]["beyond_noise"] == "worse"
    table = markdown_table(result, ("shipped", "run"))
    assert "run better beyond noise (95 % interval clear of zero): box IoU. Worse beyond noise: NoC@90." in table
    mixed = compare(a, per_object([0.6, 0.7, 0.6, 0.7], [10, 20, 5, 5]), resamples=500)
    assert mixed["beyond_noise"] == {"better": [], "worse": []}
    assert mixed["metrics"]["box"]["beyond_noise"] is None
    assert "zero): nothing. Worse beyond noise: nothing." in markdown_table(mixed, ("shipped", "run"))


def test_first_scenes_pairs_only_the_objects_of_the_lowest_scene_indices():
    a = per_object([0.5, 0.6, 0.7, 0.8], [10, 20, 5, 5])  # scene 0: objects 0 and 1, scene 1: 2 and 3
    b = per_object([0.6, 0.6, 0.9, 0.7], [8, 20, 6, 5])
    first = compare(a, b, resamples=500, scenes=1)
    assert first["objects"] == 2 and first["scenes"] == 1 and first["first_scenes"] == 1
    assert first["metrics"]["box"]["b_minus_a"] == pytest.approx(0.05)  # (0.1 + 0.0) / 2
    assert first["metrics"]["noc90"]["b_minus_a"] == pytest.approx(-1.0)
    assert compare(a, b, resamples=500, scenes=2)["metrics"] == compare(a, b, resamples=500)["metrics"]
    for bad in (0, 3):
        with pytest.raises(ValueError, match="between 1 and 2"):
            compare(a, b, scenes=bad)


def test_compare_refuses_reports_of_different_objects():
    a = per_object([0.5, 0.6], [1, 2])
    with pytest.raises(ValueError, match="num_images: 2 vs 3"):
        compare(a, per_object([0.5, 0.6], [1, 2], selection={"split": "val", "num_images": 3}))
    with pytest.raises(ValueError, match="different objects"):
        compare(a, per_object([0.5, 0.6], [1, 2], masks=[0, 2]))


def test_cli_compares_two_real_evaluations(tmp_path, capsys):
    def evaluate(name, model, checkpoint, images="2"):
        args = ["--model", model, "--split", "val", "--num-images", images, "--no-noc", "--threads", "1",
                "--device", "cpu", "--out", str(tmp_path / name)]
        assert evaluate_main(args + (["--checkpoint", checkpoint] if checkpoint else [])) == 0

    evaluate("random", "tiny", None)
    evaluate("shipped", "models/sam_small/config.json", "models/sam_small/model.pt")
    capsys.readouterr()
    assert main([str(tmp_path / "random"), str(tmp_path / "shipped" / "per_object.json"), "--names", "random",
                 "shipped", "--resamples", "1000", "--out", str(tmp_path / "cmp")]) == 0
    assert "| box IoU |" in capsys.readouterr().out
    result = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    box = result["metrics"]["box"]
    assert box["ci95"][0] > 0.1  # the trained model's box masks beat random weights' clearly
    assert box["ci95"][0] <= box["b_minus_a"] <= box["ci95"][1]
    assert (tmp_path / "cmp" / "comparison.md").read_text().startswith("# shipped against random")
    # each side is named by its file's content too: the path models/sam_small/model.pt changes with each ship
    shipped_sha = json.loads(Path("models/sam_small/metrics.json").read_text())["sha256"]
    assert result["a"] == {"model": "tiny", "checkpoint": None, "checkpoint_sha256": None}
    assert result["b"]["checkpoint_sha256"] == shipped_sha == file_sha256("models/sam_small/model.pt")
    assert f"shipped: models/sam_small/model.pt (sha256 {shipped_sha[:12]})" in \
        (tmp_path / "cmp" / "comparison.md").read_text()

    assert main([str(tmp_path / "shipped"), str(tmp_path / "shipped")]) == 0  # a model against itself
    same = json.loads(json.dumps(compare(*[json.loads((tmp_path / "shipped" / "per_object.json").read_text())] * 2)))
    assert all(m["b_minus_a"] == 0 and m["ci95"] == [0, 0] and m["share_b_better"] == 0
               for m in same["metrics"].values())

    evaluate("one_image", "tiny", None, images="1")
    assert main([str(tmp_path / "random"), str(tmp_path / "one_image")]) == 2
    assert "num_images: 2 vs 1" in capsys.readouterr().err
    assert main([str(tmp_path / "random"), str(tmp_path / "missing")]) == 2
    assert "training.evaluate --out" in capsys.readouterr().err

    # the first scene of the two real evaluations: its objects only
    full = json.loads((tmp_path / "shipped" / "per_object.json").read_text())["objects"]
    assert main([str(tmp_path / "random"), str(tmp_path / "shipped"), "--first-scenes", "1", "--resamples", "100",
                 "--out", str(tmp_path / "cmp1")]) == 0
    first = json.loads((tmp_path / "cmp1" / "comparison.json").read_text())
    assert first["scenes"] == 1 and first["first_scenes"] == 1
    assert first["objects"] == full["sample"].count(min(full["sample"])) < len(full["sample"])
    assert main([str(tmp_path / "random"), str(tmp_path / "shipped"), "--first-scenes", "3"]) == 2
    assert "--first-scenes must be between 1 and 2" in capsys.readouterr().err
