import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sam
import training.train as train_module
from sam.build import file_sha256
from training.clicks import plan_rounds
from training.interactive import run_episode
from training.run_summary import summarize
from training.train import (
    TrainConfig,
    TrainSource,
    build,
    fit_to_budget,
    in_curriculum,
    lr_factor,
    main,
    make_batch,
    may_refit,
    native_bf16,
    resolve_precision,
    train,
)

# A tiny, fast recipe: 2 fixed scenes, 4 objects each, 3 rounds, loss at the 64 px low-res size.
TINY = {
    "model": "tiny",
    "data": {"source": "synthetic", "scenes": 2},
    "val": None,
    "steps": 8,
    "batch_size": 1,
    "objects_per_image": 4,
    "rounds": 3,
    "loss_size": 64,
    "lr": 1e-3,
    "warmup_steps": 0,
    "min_lr_ratio": 1.0,
    "log_every": 1,
    "ckpt_every": 4,
    "threads": 1,
    "device": "cpu",
}


def fixed_loss(model, config, seed=123):
    """The episode loss on a fixed draw of objects, prompts and clicks."""
    source = TrainSource(config.data, model.config.image_size)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        batch = make_batch(model, source, config, rng, 0, torch.device("cpu"), None)
        result = run_episode(lambda c, l, m, h: model.decode(batch.embeddings, c, l, m, h), batch.targets,
                             batch.valid_sizes, rng, rounds=plan_rounds(rng, config.rounds),
                             loss_size=config.loss_size)
    return result.loss.item()


@pytest.mark.slow
def test_a_few_training_steps_lower_the_loss(tmp_path):
    config = TrainConfig.from_dict(TINY | {"freeze_image_encoder": False})
    torch.manual_seed(config.seed)
    before = fixed_loss(build(config), config)
    train(config, tmp_path / "run")
    trained = sam.build_model("tiny", checkpoint=tmp_path / "run" / "model.pt")  # strict load
    after = fixed_loss(trained, config)
    assert after < 0.8 * before, (before, after)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))


@pytest.mark.slow
def test_bf16_precision_runs_the_model_in_bfloat16_and_still_learns(tmp_path, monkeypatch):
    config = TrainConfig.from_dict(TINY | {"precision": "bf16"})
    torch.manual_seed(config.seed)
    before = fixed_loss(build(config), config)  # measured in float32, as for fp32 training
    seen: dict[str, set] = {}

    def build_and_watch(cfg):  # the real model, with every Linear's output dtype recorded by top-level part
        model = build(cfg)
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                part = name.split(".")[0]
                module.register_forward_hook(lambda m, i, out, part=part: seen.setdefault(part, set()).add(out.dtype))
        return model

    monkeypatch.setattr(train_module, "build", build_and_watch)
    train(config, tmp_path / "run")
    assert seen == {"image_encoder": {torch.bfloat16}, "mask_decoder": {torch.bfloat16}}, seen
    weights = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
    trained = sam.build_model("tiny", checkpoint=tmp_path / "run" / "model.pt")
    after = fixed_loss(trained, config)
    assert after < 0.8 * before, (before, after)
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig.from_dict({"precision": "fp16"})


def test_auto_precision_follows_the_cpu_and_bf16_without_native_support_warns(tmp_path, monkeypatch, capsys):
    """"auto" resolves to bf16 only where the CPU reports AVX512-BF16 or AMX (the probes torch reads
    off the CPU, set here both ways since the machine has one answer), config.json records what it
    resolved to, and an explicit bf16 stands but warns where it would be emulated."""
    cpu = torch.device("cpu")
    for avx512_bf16, amx in ((False, False), (True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        expected = "bf16" if avx512_bf16 or amx else "fp32"
        assert native_bf16(cpu) is (avx512_bf16 or amx)
        assert resolve_precision("auto", cpu) == expected
        assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
        run = tmp_path / f"auto_{avx512_bf16}_{amx}"
        config = TrainConfig.from_dict(TINY | {"steps": 1, "precision": "auto"})
        train(config, run)
        assert config.precision == expected
        assert json.loads((run / "config.json").read_text())["precision"] == expected
        assert "without native bfloat16" not in capsys.readouterr().err
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    train(TrainConfig.from_dict(TINY | {"steps": 1, "precision": "bf16"}), tmp_path / "bf16")
    err = capsys.readouterr().err
    assert "precision bf16 on a cpu without native bfloat16" in err and "--precision fp32" in err, err
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["precision"] == "bf16"


@pytest.mark.slow
def test_resume_continues_exactly_where_it_stopped(tmp_path):
    config = TrainConfig.from_dict(TINY | {"steps": 4, "freeze_image_encoder": True})
    train(config, tmp_path / "straight")
    train(config, tmp_path / "split", stop_after=2)
    state = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2
    train(config, tmp_path / "split", resume=True)
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    torch.manual_seed(config.seed)  # train() builds the model after seeding torch the same way
    frozen = sam.build_model("tiny")
    torch.testing.assert_close(b["image_encoder.patch_embed.proj.weight"],
                               frozen.state_dict()["image_encoder.patch_embed.proj.weight"])
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_cli_writes_the_run_folder(tmp_path):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(TINY | {"steps": 2, "rounds": 3, "objects_per_image": 2,
                                              "val": {"source": "synthetic", "scenes": 1},
                                              "val_max_objects": 2, "val_every": 2}))
    out = tmp_path / "run"
    assert main(["--config", str(config_path), "--out", str(out), "--freeze-image-encoder"]) == 0
    for name in ("checkpoint.pt", "model.pt", "best.pt", "config.json", "log.jsonl", "curves.png"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {r["type"] for r in records} == {"train", "val"}
    val = [r for r in records if r["type"] == "val"][0]
    assert 0.0 <= val["one_click_miou_best_of_3"] <= 1.0 and val["objects"] == 2
    assert Image.open(out / "curves.png").size[0] == 900
    assert json.loads((out / "config.json").read_text())["freeze_image_encoder"] is True
    # an existing run is not overwritten without --resume
    assert main(["--config", str(config_path), "--out", str(out)]) == 2
    # --resume reads the run's own config and extends it
    assert main(["--out", str(out), "--resume", "--steps", "3"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3


def test_init_is_logged_by_content_and_frozen_embeddings_are_keyed_by_the_encoder_weights(tmp_path):
    """A path may name other weights later (models/sam_small/model.pt after each ship): the run logs the
    --init file's sha256, and disk-cached embeddings of a frozen encoder follow its weights, not the path."""
    init, cache = tmp_path / "init.pt", tmp_path / "cache"
    config = TINY | {"steps": 1, "objects_per_image": 2, "freeze_image_encoder": True, "init": str(init),
                     "embedding_cache_dir": str(cache)}

    def run(name, weights_seed):
        torch.manual_seed(weights_seed)
        torch.save(sam.build_model("tiny").state_dict(), init)  # the same path each time
        train(TrainConfig.from_dict(config), tmp_path / name)
        first = json.loads((tmp_path / name / "log.jsonl").read_text().splitlines()[0])
        assert first == {"type": "init", "step": 0, "checkpoint": str(init), "sha256": file_sha256(init)}
        assert summarize(tmp_path / name)["init"] == {"checkpoint": str(init), "sha256": first["sha256"]}
        return first["sha256"], sorted(p.name for p in cache.glob("*.pt"))

    sha_a, files_a = run("a", weights_seed=0)
    assert files_a  # the embedding of the drawn scene went to disk
    sha_again, files_again = run("again", weights_seed=0)
    assert sha_again == sha_a and files_again == files_a  # same weights: read back, nothing new written
    sha_b, files_b = run("b", weights_seed=1)
    assert sha_b != sha_a
    new = sorted(set(files_b) - set(files_a))
    assert len(new) == len(files_a)  # other weights at the same path: encoded afresh under a new key
    assert {name.rsplit("-", 1)[1] for name in new} == {name.rsplit("-", 1)[1] for name in files_a}


def test_coco_is_a_training_source(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(images / "x.png")
    coco = {"images": [{"id": 1, "file_name": "x.png", "height": 96, "width": 128}],
            "categories": [{"id": 1, "name": "a"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 900,
                             "bbox": [10, 10, 30, 30], "segmentation": [[10, 10, 40, 10, 40, 40, 10, 40]]}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    data = {"source": "coco", "images": str(images), "annotations": str(tmp_path / "coco.json")}
    config = TrainConfig.from_dict(TINY | {"data": data, "steps": 1, "objects_per_image": 2})
    last = train(config, tmp_path / "run")
    assert np.isfinite(last["loss"])
    source = TrainSource(data, 256)
    batch = make_batch(build(config), source, config, np.random.default_rng(0), 0, torch.device("cpu"), None)
    assert batch.valid_sizes == [(192, 256)] * 2  # 96x128 resized so the long side is 256
    assert batch.targets[0, 0, :192, :256].sum() == pytest.approx(60 * 60, rel=0.1)


def test_config_errors_and_schedule():
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"stpes": 3})
    with pytest.raises(ValueError, match="coco data needs"):
        TrainConfig.from_dict({"data": {"source": "coco"}})
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, 0.1) == pytest.approx(0.55)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)


def test_curriculum_interleaves_full_recipe_steps():
    with pytest.raises(ValueError, match="curriculum_full_every"):
        TrainConfig.from_dict(TINY | {"curriculum_full_every": -1})
    plain = TrainConfig.from_dict(TINY | {"curriculum_steps": 6})
    assert [in_curriculum(plain, s) for s in range(8)] == [True] * 6 + [False] * 2
    mixed = TrainConfig.from_dict(TINY | {"curriculum_steps": 6, "curriculum_full_every": 3})
    assert [in_curriculum(mixed, s) for s in range(8)] == [True, True, False, True, True, False, False, False]


def test_curriculum_prompts_whole_objects_only_and_checks_rounds():
    with pytest.raises(ValueError, match="curriculum_rounds"):
        TrainConfig.from_dict(TINY | {"curriculum_steps": 5, "curriculum_rounds": 2})
    config = TrainConfig.from_dict(TINY | {"curriculum_steps": 5, "curriculum_whole_only": True,
                                           "objects_per_image": 6})
    model = build(config)
    source = TrainSource(config.data, model.config.image_size)
    with torch.no_grad():
        batch = make_batch(model, source, config, np.random.default_rng(0), 0, torch.device("cpu"), None,
                           whole_only=True)
    sample = source[batch.indices[0]]
    wholes = sample.masks[sample.levels == 0]
    assert wholes.shape[:1] != sample.masks.shape[:1]  # the scene has parts that must not be drawn
    h, w = batch.valid_sizes[0]
    areas = {int(m.sum()) for m in wholes}
    for target in batch.targets[:, 0]:
        assert target[h:].sum() == 0 and target[:, w:].sum() == 0
        # the scene is already at the model's size: targets are the scene's masks unchanged
        assert int(target.sum()) in areas


def test_fit_to_budget_costs_short_and_full_steps():
    config = TrainConfig.from_dict(TINY | {"steps": 100, "curriculum_steps": 90, "curriculum_full_every": 10,
                                           "rounds": 11, "curriculum_rounds": 3, "time_budget_s": 100})
    # steps 0-1 are warm-up (left out); step 9 is a full step of the curriculum
    probe = [(True, 5.0), (True, 5.0)] + [(True, 1.0)] * 7 + [(False, 3.0)]
    plan = fit_to_budget(config, probe, elapsed=20.0)
    # a curriculum step costs (9 * 1 + 3) / 10 = 1.2 s on average, a full one 3 s; 90 % of the run is
    # curriculum: 20 + (0.9 n - 10) * 1.2 + 0.1 n * 3 = 0.95 * 100  ->  n = 87 / 1.38 = 63.04
    assert (plan["steps"], plan["curriculum_steps"]) == (63, 57)
    assert (plan["seconds_per_short_step"], plan["seconds_per_full_step"]) == (1.0, 3.0)
    # without a full step in the probe, full steps are costed by their rounds (11 / 3 of a short one)
    plan = fit_to_budget(config, [(True, 1.0)] * 5, elapsed=5.0)
    assert plan["seconds_per_full_step"] == pytest.approx(11 / 3, abs=1e-4)
    # validations (every 10 steps from here, and one at the end) are costed too: 2 s each adds
    # 0.2 s a step and 2 s: 20 + (0.9 n - 10) * 1.2 + 0.1 n * 3 + 2 * ((n - 10) / 10 + 1) = 95  ->  n = 55.06
    config.val_every = 10
    assert fit_to_budget(config, probe, elapsed=20.0, val_seconds=2.0)["steps"] == 55
    # a budget already spent keeps the steps that ran
    assert fit_to_budget(config, probe, elapsed=500.0)["steps"] == 10
    # a re-fit measures the rates on the steps since the last fit (here the same 10 times) and counts
    # every step done: 40 + (0.9 n - 30) * 1.2 + 0.1 n * 3 = 95  ->  n = 91 / 1.38 = 65.9
    config.val_every = 1_000_000
    plan = fit_to_budget(config, probe, elapsed=40.0, done=30)
    assert (plan["steps"], plan["steps_done"], plan["probe_steps"]) == (65, 30, 10)
    # the same rates twice as fast later on: the run is re-fitted longer
    faster = fit_to_budget(config, [(warm, t / 2) for warm, t in probe], elapsed=40.0, done=30)
    assert faster["seconds_per_short_step"] == 0.5 and faster["steps"] == int((95 - 40 + 30 * 0.6) / 0.69)
    with pytest.raises(ValueError, match="budget_probe_steps"):
        TrainConfig.from_dict(TINY | {"budget_probe_steps": 2})


def test_refits_stop_at_the_half_or_the_end_of_the_curriculum():
    config = TrainConfig.from_dict(TINY | {"steps": 100, "curriculum_steps": 90})
    assert may_refit(config, 50) and not may_refit(config, 51)  # the half comes first
    config.curriculum_steps = 40
    assert may_refit(config, 39) and not may_refit(config, 40)  # the curriculum ends first
    config.curriculum_steps = 0  # no curriculum: every step is a full one, the half alone decides
    assert may_refit(config, 50) and not may_refit(config, 51)


def test_time_budget_resizes_a_fresh_run_and_stops_at_it(tmp_path):
    config = TrainConfig.from_dict(TINY | {"steps": 10_000, "time_budget_s": 8.0, "budget_probe_steps": 3,
                                           "objects_per_image": 2, "val": {"source": "synthetic", "scenes": 1},
                                           "val_max_objects": 2, "val_every": 3})
    out = tmp_path / "run"
    assert main(["--config", str(_write(tmp_path / "c.json", config.to_dict())), "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    budget = [r for r in records if r["type"] == "budget"]
    assert budget[0]["step"] == 3 and budget[0]["probe_steps"] == budget[0]["steps_done"] == 3
    assert budget[0]["seconds_per_validation"] > 0  # the probe ends with a timed validation
    vals = [r["step"] for r in records if r["type"] == "val"]
    assert vals[0] == 3 and len(vals) == len(set(vals))  # the probe's validation is step 3's only one
    # re-fitted at each validation (every 3 steps) on the steps since the last fit, in the first half
    for before, refit in zip(budget, budget[1:], strict=False):
        assert refit["step"] == before["step"] + 3 and refit["steps_done"] == refit["step"]
        assert refit["probe_steps"] == 3 and refit["step"] <= before["steps"] // 2
    assert len(budget) >= 2 or budget[0]["steps"] < 12  # step 6 is in the first half of 12 or more steps
    steps = budget[-1]["steps"]
    assert 3 <= steps < 10_000
    assert json.loads((out / "config.json").read_text())["steps"] == steps  # the resolved length is recorded
    last = max(r["step"] for r in records if r["type"] == "train")
    stopped = [r for r in records if r["type"] == "budget_stop"]
    # the run ends at its resolved length, or earlier if the budget ran out first (a noisy machine)
    assert last == steps or (stopped and stopped[0]["step"] == last < steps)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == last


def test_data_workers_draw_the_same_batches(tmp_path):
    config = TrainConfig.from_dict(TINY | {"data": {"source": "synthetic", "scene": {}, "scenes": None},
                                           "batch_size": 2, "objects_per_image": 2})
    model = build(config)
    plain = TrainSource(config.data, model.config.image_size)
    ahead = TrainSource(config.data, model.config.image_size)
    assert ahead.start_prefetch(2)
    try:
        ahead.prefetch(3, 2, config.batch_size, wait=True)  # steps 3 and 4, computed on return
        assert sorted(ahead.prefetcher.pending) == [6, 7, 8, 9]
        assert all(future.done() for future in ahead.prefetcher.pending.values())
        with torch.no_grad():
            for step in (3, 4):
                a = make_batch(model, plain, config, np.random.default_rng([0, step]), step, torch.device("cpu"), None)
                b = make_batch(model, ahead, config, np.random.default_rng([0, step]), step, torch.device("cpu"), None)
                assert a.indices == b.indices == [2 * step, 2 * step + 1]
                torch.testing.assert_close(a.targets, b.targets, rtol=0, atol=0)
                torch.testing.assert_close(a.embeddings, b.embeddings)
        assert ahead.prefetcher.hits == 4
    finally:
        ahead.close()
    finite = TrainSource(TINY["data"], 256)  # a fixed pool draws its images at random: nothing to prefetch
    assert not finite.start_prefetch(2)


def _write(path: Path, values: dict) -> Path:
    path.write_text(json.dumps(values))
    return path


CONFIG_DIR = Path(__file__).resolve().parents[2] / "training" / "configs"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.json")), ids=lambda p: p.name)
def test_committed_training_configs_are_valid(path, monkeypatch):
    """Every config under training/configs parses (no stale keys), names a model that builds, its
    ``init`` checkpoint, when it names one, exists and loads strictly into that model, and the run
    ends on SAM's full 11-round recipe (raising ``steps`` without ``curriculum_steps``, or the other
    way round, must not leave a run that never leaves the short curriculum episodes)."""
    monkeypatch.chdir(CONFIG_DIR.parents[1])  # the configs' paths are relative to the repository root
    config = TrainConfig.from_dict(json.loads(path.read_text()))
    sam.build_model(config.model, checkpoint=config.init)
    assert config.rounds == 11
    assert config.curriculum_steps < config.steps
