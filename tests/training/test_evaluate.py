import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from training.evaluate import evaluate, evaluate_image, main, markdown_table
from training.metrics import MAX_CLICKS


@dataclass
class Sample:
    image: np.ndarray
    masks: np.ndarray
    levels: np.ndarray | None = None


@dataclass(frozen=True)
class FakeConfig:
    image_size: int = 64


class OracleModel(nn.Module):
    """Answers every prompt with the ground-truth mask under its first point or box (low-res frame
    == input frame, so nothing is lost in resampling); ``empty=True`` answers nothing at all."""

    def __init__(self, masks: np.ndarray, empty: bool = False):
        super().__init__()
        self.config = FakeConfig()
        self.masks = torch.from_numpy(masks)
        self.empty = empty
        self.dummy = nn.Parameter(torch.zeros(1))

    def embed(self, x):
        return torch.zeros(1, 1, 1, 1)

    def decode(self, emb, coords, labels, mask_input, has_mask):
        b = coords.shape[0]
        logits = torch.full((b, 4, 64, 64), -10.0)
        iou = torch.tensor([[0.5, 0.2, 0.9, 0.4]]).repeat(b, 1)
        if not self.empty:
            for i in range(b):
                x, y = coords[i, 0].long().tolist()
                hit = [k for k in range(len(self.masks)) if self.masks[k, y, x]]
                best = min(hit, key=lambda k: self.masks[k].sum())  # the smallest mask under the point
                logits[i, :, :, :] = torch.where(self.masks[best], 10.0, -10.0)
        return logits, iou

    def postprocess_masks(self, low_res, input_size, original_size):
        low_res = low_res[..., : input_size[0], : input_size[1]]
        return F.interpolate(low_res, original_size, mode="nearest")


def scene():
    masks = np.zeros((2, 64, 64), bool)
    masks[0, 5:40, 5:40] = True
    masks[1, 45:60, 30:62] = True
    return Sample(np.zeros((64, 64, 3), np.uint8), masks, np.array([0, 1]))


def test_oracle_scores_perfectly_and_empty_scores_zero_with_noc_capped():
    s = scene()
    perfect = evaluate(OracleModel(s.masks), [s], max_clicks=5)
    overall = perfect["overall"]
    assert overall["objects"] == 2
    assert overall["one_click_miou_best_of_3"] == 1.0 and overall["one_click_miou_top_ranked"] == 1.0
    assert overall["box_miou"] == 1.0
    assert overall["noc85"] == 1.0 and overall["noc90"] == 1.0
    assert set(perfect["by_level"]) == {"whole", "part"}

    empty_report = evaluate(OracleModel(s.masks, empty=True), [s], max_clicks=5)
    empty = empty_report["overall"]
    assert empty["one_click_miou_best_of_3"] == 0.0 and empty["box_miou"] == 0.0
    assert empty["noc90"] == 5.0  # never reached: counts the click budget
    assert np.isnan(empty["spearman_pred_vs_true_iou"])  # true IoU is constant 0
    table = markdown_table(empty_report)
    assert "| all | 2 | 0.000 | 0.000 | 0.000 | 5.000 | 5.000 | n/a | 1.000 |" in table


def test_box_fill_reference_is_the_box_taken_as_the_mask():
    masks = np.zeros((1, 64, 64), bool)
    masks[0, 10:40, 10:20] = True  # an L: 30x10 upright + 10x20 foot = 500 px in a 30x30 box
    masks[0, 30:40, 20:40] = True
    s = Sample(np.zeros((64, 64, 3), np.uint8), masks, np.array([0]))
    overall = evaluate(OracleModel(masks), [s], max_clicks=2)["overall"]
    assert overall["box_fill_miou"] == pytest.approx(500 / 900)
    assert overall["box_miou"] == 1.0  # the oracle segments the L, which beats the box itself


@pytest.mark.slow
def test_tiny_model_image_report_shapes():
    import sam

    torch.manual_seed(0)
    model = sam.build_model("tiny")
    s = scene()
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    masks = np.zeros((2, 64, 96), bool)
    masks[0, 10:30, 10:50] = True
    masks[1, 40:60, 60:90] = True
    res = evaluate_image(model, image, masks, max_clicks=4)
    assert len(res["one_click_best"]) == 2 and len(res["box"]) == 2
    assert [len(c) for c in res["curves"]] == [4, 4]
    assert np.asarray(res["pred_iou"]).shape == (2, 3)
    assert all(0 <= v <= 1 for c in res["curves"] for v in c)
    assert res["one_click_best"] == [max(r) for r in res["true_iou"]]
    with pytest.raises(ValueError, match="match the image"):
        evaluate_image(model, image, s.masks)


def test_cli_writes_json_and_markdown(tmp_path):
    out = tmp_path / "eval"
    assert main(["--model", "tiny", "--num-images", "1", "--max-objects", "2", "--max-clicks", "2",
                 "--threads", "1", "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["split"] == "test" and report["overall"]["objects"] == 2
    assert report["max_clicks"] == 2 and MAX_CLICKS == 20
    md = (out / "report.md").read_text()
    assert "1-click mIoU (best of 3)" in md and "NoC@90" in md


def test_per_object_results_name_each_object_and_its_clicks():
    s = scene()
    report = evaluate(OracleModel(s.masks), [Sample(s.image, s.masks[:0]), s, s], max_clicks=5,
                      keep_per_object=True)
    per = report["per_object"]
    assert per["sample"] == [1, 1, 2, 2] and per["mask"] == [0, 1, 0, 1]  # sample 0 has no masks
    assert per["level"] == [0, 1, 0, 1] and per["area"] == [35 * 35, 15 * 32] * 2
    assert per["one_click_best"] == [1.0] * 4 and per["noc85"] == [1] * 4 and per["noc90"] == [1] * 4
    assert per["final_iou"] == [1.0] * 4
    empty = evaluate(OracleModel(s.masks, empty=True), [s], max_clicks=5, keep_per_object=True)["per_object"]
    assert empty["noc90"] == [5, 5] and empty["box"] == [0.0, 0.0]
    assert "per_object" not in evaluate(OracleModel(s.masks), [s], max_clicks=5)


def test_cli_writes_per_object_results_with_their_selection(tmp_path):
    out = tmp_path / "eval"
    assert main(["--model", "tiny", "--split", "val", "--num-images", "1", "--max-objects", "2", "--no-noc",
                 "--threads", "1", "--device", "cpu", "--out", str(out)]) == 0
    per = json.loads((out / "per_object.json").read_text())
    assert per["selection"]["split"] == "val" and per["selection"]["max_objects"] == 2
    assert per["selection"]["num_images"] == 1
    assert len(per["objects"]["box"]) == 2 and per["objects"]["sample"] == [0, 0]
    assert "noc90" not in per["objects"]  # --no-noc: no click curves
