import json
import time

import pytest

from tests.training.test_train import TINY
from training.compare import main as compare_main
from training.evaluate import main as evaluate_main
from training.run_summary import main, step_times, summarize
from training.train import main as train_main


def train_record(step, seconds_per_step):
    return {"type": "train", "step": step, "seconds_per_step": seconds_per_step}


def test_step_times_sums_windows_and_splits_at_the_curriculum():
    records = [train_record(10, 1.0), train_record(20, 1.2), {"type": "val", "step": 20},
               train_record(30, 1.1), train_record(40, 4.0), train_record(45, 5.0)]
    times = step_times(records, curriculum_steps=30)
    assert times["steps_run"] == 45
    assert times["train_wall_seconds"] == round(10 * 1.0 + 10 * 1.2 + 10 * 1.1 + 10 * 4.0 + 5 * 5.0)  # 98
    assert times["seconds_per_step_curriculum_median"] == 1.1
    assert times["seconds_per_step_all_rounds_median"] == 4.5


def test_step_times_without_a_curriculum_or_train_records():
    records = [train_record(10, 1.0), train_record(20, 1.0), train_record(30, 1.0), train_record(40, 2.0),
               train_record(50, 2.0)]
    times = step_times(records, curriculum_steps=0)
    assert times["steps_run"] == 50
    assert times["train_wall_seconds"] == 30 + 20 + 20
    assert times["seconds_per_step_curriculum_median"] is None
    assert times["seconds_per_step_all_rounds_median"] == 1.0  # median of 1, 1, 1, 2, 2
    with pytest.raises(ValueError, match="no train records"):
        step_times([{"type": "val", "step": 10}], 0)


@pytest.mark.slow
def test_summary_of_a_real_resumed_run_with_its_evaluations(tmp_path, capsys):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(TINY | {"steps": 3, "objects_per_image": 2, "log_every": 1,
                                              "curriculum_rounds": 3, "curriculum_steps": 2,
                                              "val": {"source": "synthetic", "scenes": 1},
                                              "val_max_objects": 2, "val_every": 2}))
    run = tmp_path / "run"
    started = time.monotonic()
    assert train_main(["--config", str(config_path), "--out", str(run)]) == 0
    assert train_main(["--out", str(run), "--resume", "--steps", "4"]) == 0
    elapsed = time.monotonic() - started

    def evaluate(name):
        assert evaluate_main(["--model", "tiny", "--split", "val", "--num-images", "1", "--no-noc", "--threads",
                              "1", "--device", "cpu", "--out", str(tmp_path / name)]) == 0

    evaluate("before")
    evaluate("after")
    assert compare_main([str(tmp_path / "before"), str(tmp_path / "after"), "--resamples", "200",
                         "--out", str(tmp_path / "cmp")]) == 0
    assert compare_main([str(tmp_path / "after"), str(tmp_path / "before"), "--resamples", "200",
                         "--out", str(tmp_path / "reversed")]) == 0
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"training": {"seed": 8, "steps_run": 3600}}))
    capsys.readouterr()

    assert main([str(run), "--step0", str(tmp_path / "before"), "--compare", str(tmp_path / "cmp"),
                 "--confirm", str(tmp_path / "reversed"),
                 "--base", str(metrics), "--note", "device=CPU, 1 thread", "--note", "why=a=b"]) == 0
    assert "4 steps" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["steps"] == 4 and summary["steps_planned"] == 4 and summary["steps_run"] == 4
    assert 0 < summary["train_wall_seconds"] <= elapsed + 1
    assert summary["seconds_per_step_curriculum_median"] > 0 and summary["seconds_per_step_all_rounds_median"] > 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    val = {str(r["step"]): r for r in log if r["type"] == "val"}
    assert list(summary["val_curve"]) == ["0", *val]
    for step, record in val.items():
        assert summary["val_curve"][step]["box_miou"] == round(record["box_miou"], 4)
    before = json.loads((tmp_path / "before" / "report.json").read_text())["overall"]
    assert summary["val_curve"]["0"]["one_click_miou_best_of_3"] == round(before["one_click_miou_best_of_3"], 4)
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert summary["paired"]["box"]["b_minus_a"] == round(comparison["metrics"]["box"]["b_minus_a"], 4)
    assert summary["paired"]["split"] == "val" and summary["paired"]["objects"] == comparison["objects"]
    assert summary["paired"]["offset"] == 0 and summary["paired"]["num_images"] == 1
    for key, metric in comparison["metrics"].items():  # the verdict of the unrounded interval
        assert summary["paired"][key]["beyond_noise"] == metric["beyond_noise"]
    reversed_ = json.loads((tmp_path / "reversed" / "comparison.json").read_text())
    assert summary["confirmation"]["a"] == reversed_["a"] and summary["confirmation"]["b"] == reversed_["b"]
    assert summary["confirmation"]["box"]["b_minus_a"] == round(reversed_["metrics"]["box"]["b_minus_a"], 4)
    assert summary["base"] == {"seed": 8, "steps_run": 3600}
    assert summary["notes"] == {"device": "CPU, 1 thread", "why": "a=b"}

    assert summarize(run)["val_curve"].keys() == val.keys()  # no step 0 without --step0
    assert main([str(tmp_path / "before")]) == 2  # an evaluation folder is not a run folder
    assert "RUN needs config.json and log.jsonl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(run), "--note", "no-equals-sign"])
