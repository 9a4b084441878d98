"""The shipped small model (``models/sam_small``) loads strictly, reaches its recorded accuracy, and
its model card and the README state its file and figures as recorded.

``models/sam_small/metrics.json`` records the evaluation on the held-out synthetic test split
(``test``) and, under ``check_subset``, the exact small subset this test re-evaluates: the first
``images`` scenes of the test split, every object, 1 click (farthest from the boundary), no NoC
sequences. The recomputed 1-click mIoU (best of 3) must match the recorded subset value up to
floating-point noise, and lie within sampling noise of the full-test-split number.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "sam_small"
FILES = [MODEL_DIR / "config.json", MODEL_DIR / "model.pt", MODEL_DIR / "metrics.json"]
MAX_MB = 20


@pytest.fixture(scope="module")
def shipped():
    missing = [str(p.relative_to(ROOT)) for p in FILES if not p.is_file()]
    if missing:
        pytest.skip(f"the shipped model is absent: {', '.join(missing)} "
                    "(train and export it: see models/sam_small/MODEL_CARD.md)")
    import sam

    metrics = json.loads((MODEL_DIR / "metrics.json").read_text())
    model = sam.build_model(str(MODEL_DIR / "config.json"), checkpoint=str(MODEL_DIR / "model.pt"))  # strict
    return model, metrics


def test_checkpoint_is_float16_and_small(shipped):
    path = MODEL_DIR / "model.pt"
    assert path.stat().st_size <= MAX_MB * 1e6
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    model, _ = shipped
    assert model.config.prompt_embed_dim == 256 and model.config.out_chans == 256  # what Triton/gateway expect
    assert model.config.image_size >= 256


def test_one_click_miou_matches_the_recorded_value(shipped):
    from training.data.synthetic import SceneConfig, SyntheticDataset
    from training.evaluate import evaluate_image

    model, metrics = shipped
    subset = metrics["check_subset"]
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scenes = SyntheticDataset(subset["split"], int(subset["images"]), SceneConfig.from_dict(subset["scene_config"]),
                                  offset=int(subset.get("offset", 0)))
        ious: list[float] = []
        with torch.no_grad():
            for sample in scenes:
                masks = np.asarray(sample.masks, dtype=bool)
                keep = masks.reshape(len(masks), -1).sum(axis=1) >= int(subset.get("min_area", 1))
                if keep.any():
                    ious += evaluate_image(model, sample.image, masks[keep], with_noc=False)["one_click_best"]
    finally:
        torch.set_num_threads(threads)
    assert len(ious) == subset["objects"]
    miou = float(np.mean(ious))
    # the same objects and clicks: only floating-point differences between machines
    assert miou == pytest.approx(subset["one_click_miou_best_of_3"], abs=0.01)
    # the subset is a sample of the test split: within 3 standard errors (and at least 0.05) of the full number
    full = metrics["test"]["one_click_miou_best_of_3"]
    noise = max(0.05, 3 * float(np.std(ious)) / np.sqrt(len(ious)))
    assert abs(miou - full) <= noise, f"subset 1-click mIoU {miou:.3f} vs recorded test-split {full:.3f}"


def test_card_and_readme_state_what_was_shipped(shipped):
    """MODEL_CARD.md and README.md state the file and the test figures ``training.ship`` recorded.

    The card and README are edited by hand after each ship; this catches a stale sha256, size or
    metrics table, and README figures that no longer round from ``metrics.json``.
    """
    from sam.build import file_sha256
    from training.evaluate import markdown_table

    _, metrics = shipped
    path = MODEL_DIR / "model.pt"
    digest = file_sha256(path)
    assert metrics["sha256"] == digest, "metrics.json is not the record of this model.pt: re-run training.ship"
    card = (MODEL_DIR / "MODEL_CARD.md").read_text()
    assert f"{path.stat().st_size / 1e6:.2f} MB, sha256 `{digest}`" in card
    # the table training.ship wrote to eval_report.md, rendered again from metrics.json
    test = metrics["test"]
    table = markdown_table({"overall": test, "by_level": test["by_level"], "images": test["images"],
                            "max_clicks": test["max_clicks"]})
    assert table in (MODEL_DIR / "eval_report.md").read_text()
    groups = ("| all |", "| whole |", "| part |", "| sub-part |")
    rows = [line for line in table.splitlines() if line.startswith(groups)]
    assert len(rows) == 4
    for row in rows:
        assert row in card, f"MODEL_CARD.md lacks the metrics row {row!r} (eval_report.md has it)"
    readme = (ROOT / "README.md").read_text()
    one, box = f"{test['one_click_miou_best_of_3']:.2f}", f"{test['box_miou']:.2f}"
    assert f"1-click mIoU {one}, box {box} on held-out synthetic scenes" in readme
    assert f"1-click mIoU is {one} (best of 3) and box mIoU {box}" in readme
