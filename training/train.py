"""Train or fine-tune SAM with simulated interactive prompts (SAM's recipe), from a JSON config.

    python -m training.train --config training/configs/tiny_synthetic.json --out runs/tiny
    python -m training.train --out runs/tiny --resume                 # continue (config from the run)
    python -m training.train --config CONFIG.json --out runs/ft --init sam_vit_b.pth \\
        --freeze-image-encoder                                         # cheap fine-tuning
    python -m training.train --config CONFIG.json --out runs/x --time-budget 3600 \\
        --data-workers 8                                               # fit the run into an hour

Each step draws ``batch_size`` images and ``objects_per_image`` ground-truth masks from each (any
level: whole, part or sub-part), runs the 11-round episode of :mod:`training.interactive` on all
of them in one decoder batch, and takes one AdamW step (linear warmup, then cosine decay).
Everything random is drawn from ``np.random.default_rng([seed, step])``, so a resumed run sees the
same data as an uninterrupted one.

With ``freeze_image_encoder`` only the prompt encoder and mask decoder train and the image
embeddings are computed without gradient; with a finite training set (``data.scenes`` for
synthetic data, or COCO) they are cached in memory (float16) and optionally on disk
(``embedding_cache_dir``), so each image is encoded once.

The run folder holds ``config.json``, ``checkpoint.pt`` (model, optimizer, scheduler, step: what
``--resume`` reads), ``model.pt`` (the latest weights, a plain state dict with the official key
names that ``sam.build_model(spec, checkpoint=...)`` loads), ``best.pt`` (best validation score),
``log.jsonl`` (one JSON object per line: ``{"type": "init", ...}`` first when the run starts from
``init`` (its path and the file's sha256), ``{"type": "train", ...}`` every ``log_every`` steps and
``{"type": "val", ...}`` after each validation) and ``curves.png``. A progress bar goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import statistics
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from training.clicks import plan_rounds
from training.data.prefetch import Prefetcher
from training.interactive import DecodeFn, EpisodeResult, run_episode
from training.plot import draw_curves

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
AUTO = "auto"  # a setting, not a precision: bf16 where the device has it natively, else fp32
PRECISION_SETTINGS = (*PRECISIONS, AUTO)  # what a config or --precision may say


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or an x86 CPU
    with AVX512-BF16 or AMX tiles. Elsewhere bf16 autocast is emulated and much slower than float32
    (a ``sam_small`` step took 15x to 17x the float32 time on an AVX2 EPYC; bench/bench_training.py)."""
    if device.type == "cuda":  # compute capability 8 or more (Ampere on); older GPUs only emulate it
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type != "cpu":
        return False
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(probe()) for probe in probes if probe is not None)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run on ``device`` uses for the setting ``precision`` (``"auto"``: ``"bf16"``
    where :func:`native_bf16`, else ``"fp32"``; a precision stands as given)."""
    if precision == AUTO:
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` (see ``TrainConfig.precision``) on ``device``."""
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def bound_decoder(model: Any, embeddings: torch.Tensor, precision: str) -> DecodeFn:
    """``model.decode`` with ``embeddings`` (``B x C x g x g``) bound, run under ``precision``'s
    autocast; returns float32 ``(low_res_logits[B,4,L,L], iou_predictions[B,4])`` whatever the
    precision (the contract of :mod:`training.interactive`)."""

    def decode(coords: torch.Tensor, labels: torch.Tensor, mask_input: torch.Tensor | None,
               has_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(precision, embeddings.device):
            low_res, iou = model.decode(embeddings, coords, labels, mask_input, has_mask)
        return low_res.float(), iou.float()

    return decode


@dataclass
class TrainConfig:
    """Everything a run depends on. ``data``/``val`` are dicts:

    - ``{"source": "synthetic", "scene": {SceneConfig keys}, "scenes": N or null}``: training scenes
      of the train split (``scenes`` null: a fresh scene for every draw; N: a fixed pool of the first
      N scenes, required to cache embeddings). For ``val``: ``"scenes"`` is the number of validation
      scenes (default 16) of the val split.
    - ``{"source": "coco", "images": DIR, "annotations": JSON, "min_area": 100}``; for ``val``
      also ``"images_max"`` (default 16).
    """

    model: Any = "tiny"  # registry name, JSON config path or dict (sam.build_model's spec)
    init: str | None = None  # checkpoint to start from (official key names)
    data: dict = field(default_factory=lambda: {"source": "synthetic", "scene": {}, "scenes": None})
    val: dict | None = field(default_factory=lambda: {"source": "synthetic", "scenes": 16})
    steps: int = 1000
    batch_size: int = 4  # images per step
    objects_per_image: int = 8  # masks (prompt sets) per image
    min_object_area: int = 20  # px in the resized frame
    lr: float = 4e-4
    min_lr_ratio: float = 0.05  # the cosine decay ends at lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # max global gradient norm (0 disables)
    rounds: int = 11
    # curriculum: for the first ``curriculum_steps`` steps, episodes have ``curriculum_rounds`` rounds
    # and, with ``curriculum_whole_only`` (synthetic data), only whole objects are prompted; the full
    # recipe afterwards; with ``curriculum_full_every`` = N > 0, every N-th curriculum step (steps N-1,
    # 2N-1, ...) runs the full recipe instead, so that the corrections are not forgotten meanwhile
    curriculum_steps: int = 0
    curriculum_rounds: int = 3
    curriculum_whole_only: bool = False
    curriculum_full_every: int = 0
    # fresh models only (no ``init``): if > 0, every attention of the mask decoder starts with its key
    # projection equal to its query projection, both scaled by this gain, so that q.k already
    # compares positional encodings (a point prompt attends to the image near it from step 0)
    decoder_qk_init_gain: float = 0.0
    loss_size: int | None = None  # side of the square frame the loss is computed in (default image_size)
    iou_loss_weight: float = 1.0
    freeze_image_encoder: bool = False
    embedding_cache_mb: int = 2048
    embedding_cache_dir: str | None = None
    seed: int = 0
    log_every: int = 10
    val_every: int = 200
    val_max_objects: int = 8  # objects per validation image
    val_noc: bool = False  # also run the 20-click NoC protocol at validation (slow)
    ckpt_every: int = 100
    threads: int = 0  # torch CPU threads (0: torch's default)
    # > 0: the scenes of the next steps are generated ahead in this many worker processes
    # (training.data.prefetch; unbounded synthetic data only, whose scene indices are known ahead).
    # The same scenes as without workers: only where they are computed changes
    data_workers: int = 0
    # > 0: fit the run into this many seconds of wall time (from the start of ``train``, setup
    # included): after the first ``budget_probe_steps`` steps (and a timed validation there, when
    # ``val`` is set), ``steps`` is set from their measured times so that the last step and the
    # validations end by ``budget_target`` of the budget (``curriculum_steps`` scaled with it, the
    # other settings unchanged), and a step is not started once the budget is spent (the run then
    # ends early, saved). The fit is made again every ``val_every`` steps from the times of the
    # steps since the last one, while the run is in its curriculum and in the first half of its
    # steps (a machine whose speed changes), so the schedule stays put in the second half. Only a
    # fresh run is resized; ``config.json`` records the resolved ``steps``
    time_budget_s: float = 0.0
    budget_probe_steps: int = 30
    budget_target: float = 0.95
    device: str | None = None  # cpu / cuda (default: cuda if available)
    # "fp32", or "bf16": the image encoder and the mask decoder run under bfloat16 autocast (their
    # outputs are cast back to float32, so the losses, click sampling, optimizer and weights stay
    # float32); on a CPU with native bf16 (an AVX512-BF16 EPYC) a step took 0.61x the float32 time,
    # on an AVX2 EPYC without it 15x (bench/bench_training.py). "auto": bf16 where the device has
    # it natively (native_bf16), else fp32; ``train`` resolves it, and config.json records the result
    precision: str = "fp32"

    def __post_init__(self) -> None:
        problems = []
        for name in ("steps", "batch_size", "objects_per_image", "log_every", "val_every", "ckpt_every"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1 or self.warmup_steps < 0 or self.weight_decay < 0:
            problems.append("need lr > 0, 0 <= min_lr_ratio <= 1, warmup_steps >= 0, weight_decay >= 0")
        if self.rounds < 3 or self.curriculum_rounds < 3:
            problems.append("rounds and curriculum_rounds must be >= 3 "
                            "(first prompt, a middle mask-only round, the last)")
        if self.curriculum_steps < 0 or self.curriculum_full_every < 0:
            problems.append("curriculum_steps and curriculum_full_every must be >= 0")
        if self.data_workers < 0 or self.time_budget_s < 0 or self.budget_probe_steps < 3 \
                or not 0 < self.budget_target <= 1:
            problems.append("need data_workers >= 0, time_budget_s >= 0, budget_probe_steps >= 3 and "
                            "0 < budget_target <= 1")
        if self.precision not in PRECISION_SETTINGS:
            problems.append(f"precision must be one of {sorted(PRECISION_SETTINGS)}, got {self.precision!r}")
        source = self.data.get("source") if isinstance(self.data, dict) else None
        if source not in ("synthetic", "coco"):
            problems.append('data.source must be "synthetic" or "coco"')
        if source == "coco" and not (self.data.get("images") and self.data.get("annotations")):
            problems.append('coco data needs "images" (folder) and "annotations" (JSON)')
        val_source = self.val.get("source") if isinstance(self.val, dict) else None
        if self.val is not None and val_source not in ("synthetic", "coco"):
            problems.append('val must be null or a dict with source "synthetic" or "coco"')
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out


# ----------------------------------------------------------------------------------------------
# Data


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 (hex) of a module's state dict: every name, dtype, shape and the bytes of every tensor."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class TrainSource:
    """Images + instance masks to train on: a finite indexable dataset, or fresh synthetic scenes."""

    def __init__(self, spec: dict, image_size: int) -> None:
        self.spec = dict(spec)
        source = spec["source"]
        if source == "synthetic":
            from training.data.synthetic import SPLITS, SceneConfig, SyntheticDataset

            scene = dict(spec.get("scene") or {})
            scene.setdefault("long_side", image_size)
            self.scene_config = SceneConfig.from_dict(scene)
            n = spec.get("scenes")
            start, stop = SPLITS["train"]
            self.finite = n is not None
            self.dataset: Any = SyntheticDataset("train", int(n) if n is not None else stop - start, self.scene_config)
            self.key = "synthetic-train-" + _digest(scene)
        else:
            from training.data.coco import CocoDataset

            self.dataset = CocoDataset(spec["images"], spec["annotations"], min_area=int(spec.get("min_area", 1)))
            if len(self.dataset) == 0:
                raise ValueError(f"COCO data {spec['annotations']} has no image with instances")
            self.finite = True
            self.key = "coco-" + _digest({"annotations": str(Path(spec["annotations"]).resolve())})

        self.prefetcher: Prefetcher | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def start_prefetch(self, workers: int) -> bool:
        """Generates the scenes of upcoming steps in ``workers`` processes (see :meth:`prefetch`);
        only for unbounded synthetic data, whose indices do not depend on the random draws.
        Returns whether prefetching is on."""
        if workers <= 0 or self.finite or self.spec["source"] != "synthetic":
            return False
        self.prefetcher = Prefetcher(self.dataset, workers)
        return True

    def prefetch(self, step: int, steps: int, batch_size: int, wait: bool = False) -> None:
        """Asks for the scenes of steps ``step .. step + steps - 1`` (and drops older pending work);
        with ``wait``, returns once they are computed."""
        if self.prefetcher is None:
            return
        first = step * batch_size
        self.prefetcher.forget_below(first % len(self.dataset))
        self.prefetcher.want(i % len(self.dataset) for i in range(first, first + steps * batch_size))
        if wait:
            self.prefetcher.wait()

    def close(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.close()
            self.prefetcher = None

    def pick(self, rng: np.random.Generator, step: int, slot: int, batch_size: int) -> int:
        """Index of the image for ``slot`` of ``step``: fresh sequential scenes for unbounded synthetic
        data, a uniform draw otherwise."""
        if not self.finite:
            return (step * batch_size + slot) % len(self.dataset)
        return int(rng.integers(len(self.dataset)))

    def __getitem__(self, index: int) -> Any:
        return (self.prefetcher or self.dataset)[index]


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``MxHxW`` bool -> ``Mxhxw`` bool (``size`` = ``(h, w)``), area/bilinear resampling at 0.5."""
    h, w = size
    if masks.shape[1:] == (h, w):
        return masks.astype(bool, copy=False)
    interp = cv2.INTER_AREA if h < masks.shape[1] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(m.astype(np.float32), (w, h), interpolation=interp) >= 0.5 for m in masks])


def prepare_image(image: np.ndarray, image_size: int) -> np.ndarray:
    from sam import transforms

    if max(image.shape[:2]) == image_size:
        return image
    return transforms.resize_image(image, image_size)


class EmbeddingCache:
    """float16 embeddings by key, in memory (bounded, least recently used out) and optionally on disk."""

    def __init__(self, max_bytes: int, directory: str | Path | None = None) -> None:
        self.max_bytes = max_bytes
        self.directory = Path(directory) if directory else None
        if self.directory:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    def get(self, key: str) -> torch.Tensor | None:
        if key in self.items:
            self.items.move_to_end(key)
            self.hits += 1
            return self.items[key]
        if self.directory and (self.directory / f"{key}.pt").is_file():
            value = torch.load(self.directory / f"{key}.pt", map_location="cpu", weights_only=True)
            self._put_memory(key, value)
            self.hits += 1
            return value
        self.misses += 1
        return None

    def put(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().to("cpu", torch.float16)
        self._put_memory(key, value)
        if self.directory:
            tmp = self.directory / f"{key}.pt.tmp"
            torch.save(value, tmp)
            os.replace(tmp, self.directory / f"{key}.pt")

    def _put_memory(self, key: str, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.max_bytes:
            return
        self.items[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()


@dataclass
class Batch:
    embeddings: torch.Tensor  # (batch_size * K) x 256 x g x g
    targets: torch.Tensor  # (batch_size * K) x 1 x S x S float {0, 1}
    valid_sizes: list[tuple[int, int]]
    indices: list[int]


def make_batch(model: Any, source: TrainSource, config: TrainConfig, rng: np.random.Generator, step: int,
               device: torch.device, cache: EmbeddingCache | None, whole_only: bool = False) -> Batch:
    """Draws images and objects for one step and computes (or fetches) their embeddings.
    ``whole_only``: prompt only whole objects (level 0) where the samples carry ``levels``."""
    s = model.config.image_size
    k = config.objects_per_image
    images, targets, valid, indices = [], [], [], []
    for slot in range(config.batch_size):
        for attempt in range(20):
            index = source.pick(rng, step, slot, config.batch_size) if attempt == 0 else int(rng.integers(len(source)))
            sample = source[index]
            image = prepare_image(sample.image, s)
            h, w = image.shape[:2]
            scale = (h * w) / (sample.image.shape[0] * sample.image.shape[1])
            areas = sample.masks.sum(axis=(1, 2)) * scale
            keep = areas >= config.min_object_area
            levels = getattr(sample, "levels", None)
            if whole_only and levels is not None:
                keep &= np.asarray(levels) == 0
            candidates = np.flatnonzero(keep)
            if candidates.size:
                break
        else:
            raise ValueError("20 images in a row had no object of at least min_object_area px; lower it")
        chosen = rng.choice(candidates, k, replace=candidates.size < k)
        masks = resize_masks(sample.masks[chosen], (h, w))
        padded = np.zeros((k, 1, s, s), np.float32)
        padded[:, 0, :h, :w] = masks
        for m in range(k):  # a mask can vanish when resized down; keep one pixel of it
            if not masks[m].any():
                ys, xs = np.nonzero(sample.masks[chosen[m]])
                sy, sx = h / sample.masks.shape[1], w / sample.masks.shape[2]
                padded[m, 0, min(int(ys.mean() * sy), h - 1), min(int(xs.mean() * sx), w - 1)] = 1
        images.append(image)
        targets.append(torch.from_numpy(padded))
        valid += [(h, w)] * k
        indices.append(index)

    embeddings: list[torch.Tensor | None] = [None] * len(images)
    todo = list(range(len(images)))
    if cache is not None:
        todo = []
        for i, index in enumerate(indices):
            hit = cache.get(f"{source.key}-{index}")
            if hit is None:
                todo.append(i)
            else:
                embeddings[i] = hit.to(device, torch.float32)
    if todo:
        pixels = [torch.from_numpy(np.ascontiguousarray(images[i])).to(device).permute(2, 0, 1)[None] for i in todo]
        x = torch.cat([model.preprocess(p.float()) for p in pixels])
        with torch.no_grad() if config.freeze_image_encoder else contextlib.nullcontext(), \
                autocast(config.precision, device):
            out = model.image_encoder(x).float()
        for j, i in enumerate(todo):
            embeddings[i] = out[j:j + 1]
            if cache is not None:  # use the cached (float16) value now too: the same numbers hit or miss
                cache.put(f"{source.key}-{indices[i]}", out[j:j + 1])
                embeddings[i] = out[j:j + 1].detach().half().float()
    emb = torch.cat([e for e in embeddings if e is not None]).repeat_interleave(k, dim=0)
    return Batch(emb, torch.cat(targets).to(device), valid, indices)


def val_samples(spec: dict, image_size: int) -> list[Any]:
    if spec["source"] == "synthetic":
        from training.data.synthetic import SceneConfig, SyntheticDataset

        scene = dict(spec.get("scene") or {})
        scene.setdefault("long_side", image_size)
        return list(SyntheticDataset("val", int(spec.get("scenes", 16)), SceneConfig.from_dict(scene)))
    from training.data.coco import CocoDataset

    coco = CocoDataset(spec["images"], spec["annotations"], min_area=int(spec.get("min_area", 1)))
    return [coco[i] for i in range(min(int(spec.get("images_max", 16)), len(coco)))]


# ----------------------------------------------------------------------------------------------
# Optimisation


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into decayed (matrices, convolution kernels) and not decayed
    (biases, norms, learned embeddings and tokens, position tables)."""
    embedding_params = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or id(p) in embedding_params or "pos_embed" in name or "rel_pos" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based): linear warmup to 1 over
    ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def in_curriculum(config: TrainConfig, step: int) -> bool:
    """Whether 0-based ``step`` runs the curriculum's short episodes (``curriculum_rounds`` rounds,
    whole objects only if ``curriculum_whole_only``) rather than the full recipe."""
    every = config.curriculum_full_every
    return step < config.curriculum_steps and not (every > 0 and (step + 1) % every == 0)


# ----------------------------------------------------------------------------------------------
# Run folder: checkpoints, log, progress


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash
    return records


class ProgressBar:
    """One updating line on a terminal; a plain line every ``every_s`` seconds otherwise."""

    def __init__(self, total: int, start: int, stream: Any = sys.stderr, every_s: float = 30.0) -> None:
        self.total, self.start, self.stream = total, start, stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.every_s = every_s if not self.tty else 0.2

    def update(self, step: int, text: str, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        done = step - self.start
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        width = 24
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "--:--:--"
        line = f"[{bar}] {step}/{self.total} {text} {1 / rate if rate else 0:.2f}s/step eta {eta_text}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ----------------------------------------------------------------------------------------------
# The run


def align_decoder_attention(model: Any, gain: float) -> None:
    """Sets ``k_proj.weight = q_proj.weight = gain * q_proj.weight`` in every attention layer of the
    mask decoder (biases unchanged): ``q.k`` then starts as a positive semi-definite similarity of
    the inputs, so positional encodings of prompts and image tokens match where they coincide."""
    from sam.modeling.transformer import Attention

    with torch.no_grad():
        for module in model.mask_decoder.modules():
            if isinstance(module, Attention):
                module.q_proj.weight.mul_(gain)
                module.k_proj.weight.copy_(module.q_proj.weight)


def build(config: TrainConfig) -> Any:
    import sam
    from sam.build import load_weights, read_state_dict

    model = sam.build_model(config.model)
    if config.init:
        load_weights(model, read_state_dict(config.init), source=f"--init {config.init}")
    elif config.decoder_qk_init_gain > 0:
        align_decoder_attention(model, config.decoder_qk_init_gain)
    if config.freeze_image_encoder:
        model.image_encoder.requires_grad_(False)
    return model


def validate(model: Any, samples: list[Any], config: TrainConfig) -> dict[str, Any]:
    from training.evaluate import evaluate

    report = evaluate(model, samples, with_noc=config.val_noc, max_objects=config.val_max_objects,
                      seed=config.seed)
    return report["overall"]


def train_step(model: Any, optimizer: torch.optim.Optimizer, source: TrainSource, config: TrainConfig, step: int,
               device: torch.device, cache: EmbeddingCache | None = None,
               rounds: int | None = None) -> tuple[EpisodeResult, torch.Tensor]:
    """One optimizer step (no scheduler step): draws step ``step``'s batch from
    ``np.random.default_rng([seed, step])``, runs its episode (``rounds`` overrides the curriculum's
    length, for benchmarks), backpropagates, clips and steps. Returns the episode result and the
    gradient norm before clipping (NaN with ``grad_clip`` 0). Raises FloatingPointError on a
    non-finite loss, before the weights change."""
    rng = np.random.default_rng([config.seed, step])
    warm = in_curriculum(config, step)
    batch = make_batch(model, source, config, rng, step, device, cache,
                       whole_only=warm and config.curriculum_whole_only)
    plan = plan_rounds(rng, rounds or (config.curriculum_rounds if warm else config.rounds))
    result = run_episode(bound_decoder(model, batch.embeddings, config.precision), batch.targets,
                         batch.valid_sizes, rng, rounds=plan, loss_size=config.loss_size,
                         iou_weight=config.iou_loss_weight)
    optimizer.zero_grad(set_to_none=True)
    result.loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    grad_norm = (torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
                 if config.grad_clip > 0 else torch.tensor(float("nan")))
    if not torch.isfinite(result.loss):
        raise FloatingPointError(f"loss became {result.loss.item()} at step {step}; lower the lr")
    optimizer.step()
    return result, grad_norm


def fit_to_budget(config: TrainConfig, probe: Sequence[tuple[bool, float]], elapsed: float,
                  val_seconds: float = 0.0, done: int | None = None) -> dict[str, Any]:
    """The run length that ends by ``budget_target * time_budget_s`` (see ``TrainConfig``).

    ``probe``: ``(in_curriculum, seconds)`` of the steps the rates are measured on (the first two
    are left out, as warm-up); ``done``: the steps run so far, all of them in the curriculum when
    there is one (default ``len(probe)``: the probe is every step from step 0; a re-fit passes the
    steps since the last fit); ``elapsed``: seconds since ``train`` began; ``val_seconds``:
    what one validation takes (0: no validation), counted every ``val_every`` steps from here and
    once more at the end. The curriculum keeps its share of the steps, and its every
    ``curriculum_full_every``-th step is costed as a full one. Returns ``steps``,
    ``curriculum_steps`` and the figures they came from."""
    measured = list(probe[2:]) or list(probe)
    short = [t for warm, t in measured if warm]
    full = [t for warm, t in measured if not warm]
    ratio = config.rounds / config.curriculum_rounds
    t_short = statistics.median(short) if short else statistics.median(full) / ratio
    t_full = statistics.median(full) if full else statistics.median(short) * ratio
    every = config.curriculum_full_every
    t_curriculum = t_short if every == 0 else ((every - 1) * t_short + t_full) / every
    share = min(1.0, config.curriculum_steps / config.steps)
    done = len(probe) if done is None else done
    target = config.budget_target * config.time_budget_s
    # elapsed + (share * n - done) * t_curriculum + (1 - share) * n * t_full
    #     + val_seconds * ((n - done) / val_every + 1) = target
    # (the steps done being curriculum steps when there is a curriculum)
    t_done = t_curriculum if share > 0 else t_full
    per_val = val_seconds / config.val_every
    steps = int((target - elapsed + done * (t_done + per_val) - val_seconds)
                / (share * t_curriculum + (1 - share) * t_full + per_val))
    steps = max(steps, done)
    return {"steps": steps, "curriculum_steps": round(share * steps), "probe_steps": len(probe), "steps_done": done,
            "seconds_per_short_step": round(t_short, 4), "seconds_per_full_step": round(t_full, 4),
            "seconds_per_validation": round(val_seconds, 2), "elapsed_s": round(elapsed, 1),
            "time_budget_s": config.time_budget_s}


def may_refit(config: TrainConfig, step: int) -> bool:
    """Whether the run length may be fitted again after ``step`` steps: only in the first half of
    ``config.steps`` and inside the curriculum (any step when there is none), where
    :func:`fit_to_budget` counts every step done as a curriculum step."""
    return step <= config.steps // 2 and (config.curriculum_steps == 0 or step < config.curriculum_steps)


def train(config: TrainConfig, out: Path, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    """Runs (or resumes) a training run in ``out``. ``stop_after``: return after this many steps of
    this call (for tests); the schedule still follows ``config.steps``. Returns the last train record.
    With ``time_budget_s`` a fresh run sets ``config.steps`` and ``config.curriculum_steps`` (on the
    object passed in) after its probe steps; ``config.precision`` "auto" is replaced by the
    precision it resolves to on the run's device."""
    t_begin = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if config.precision == "bf16" and not native_bf16(device):
        print(f"warning: precision bf16 on a {device.type} without native bfloat16 (no AVX512-BF16 or AMX on a "
              "CPU): its steps can take many times the float32 time (15x on an AVX2 EPYC); pass --precision fp32 "
              "or auto", file=sys.stderr)
    config.precision = resolve_precision(config.precision, device)
    torch.manual_seed(config.seed)
    model = build(config).to(device)
    model.train()
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr, betas=config.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config.warmup_steps, config.steps, config.min_lr_ratio))
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.jsonl"
    start, best = 0, -math.inf
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, best = int(state["step"]), float(state.get("best", -math.inf))
        records = [r for r in read_log(log_path) if r.get("step", 0) <= start]
        log_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif resume:
        print(f"--resume: no checkpoint in {out}; starting from step 0", file=sys.stderr)
        log_path.write_text("")
    else:
        if ckpt_path.exists():
            raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        log_path.write_text("")
    if start == 0 and config.init:  # the starting file's identity: its path may name other weights later
        from sam.build import file_sha256

        log_path.write_text(json.dumps({"type": "init", "step": 0, "checkpoint": config.init,
                                        "sha256": file_sha256(config.init)}) + "\n")
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    s = model.config.image_size
    source = TrainSource(config.data, s)
    cache = None
    if config.freeze_image_encoder and source.finite:
        # embeddings depend on the frozen encoder: key them by its configuration, the digest of its
        # weights as loaded (not the --init path, whose file may be replaced between runs) and precision
        spec = {"model": model.config.to_dict(), "image_encoder": weights_digest(model.image_encoder),
                "precision": config.precision}
        source.key += "-" + _digest(spec)
        cache = EmbeddingCache(config.embedding_cache_mb << 20, config.embedding_cache_dir)
    val = val_samples(config.val, s) if config.val else []

    def save(step: int) -> None:
        weights = model.state_dict()
        atomic_save({"model": weights, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "step": step, "best": best, "config": config.to_dict()}, ckpt_path)
        atomic_save(weights, out / "model.pt")

    def log(record: dict) -> None:
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    bar = ProgressBar(config.steps, start)

    def validation(step: int) -> float:
        """Validates at ``step`` (log record, ``best.pt``, curves); returns the seconds it took."""
        nonlocal best
        t_val = time.perf_counter()
        metrics = validate(model, val, config)
        score = metrics["one_click_miou_best_of_3"]
        log({"type": "val", "step": step, **metrics})
        if score > best:
            best = score
            atomic_save(model.state_dict(), out / "best.pt")
        bar.update(step, f"val 1-click mIoU {score:.3f} box {metrics['box_miou']:.3f}", force=True)
        draw_curves(read_log(log_path), out / "curves.png")
        return time.perf_counter() - t_val

    last: dict[str, Any] = {}
    ema = None
    step = start
    # a fresh run only: the first fit is made at step budget_probe_steps, so any later step is a re-fit
    resize = config.time_budget_s > 0 and start == 0 and config.steps > config.budget_probe_steps
    probe: list[tuple[bool, float]] = []  # the steps since the last fit
    prefetching = source.start_prefetch(config.data_workers)
    ahead = max(2, math.ceil(3 * config.data_workers / config.batch_size))  # steps of scenes asked for ahead
    t_last, t_step = time.perf_counter(), start
    limit: float = math.inf if stop_after is None else start + stop_after  # this call's last step
    try:
        end = min(config.steps, limit)
        while step < end:
            if config.time_budget_s > 0 and time.perf_counter() - t_begin > config.time_budget_s:
                log({"type": "budget_stop", "step": step, "elapsed_s": round(time.perf_counter() - t_begin, 1)})
                print(f"\ntime budget of {config.time_budget_s} s spent: stopping at step {step} of {config.steps}",
                      file=sys.stderr)
                break
            if prefetching:
                source.prefetch(step, ahead, config.batch_size)
            t_start = time.perf_counter()
            result, grad_norm = train_step(model, optimizer, source, config, step, device, cache)
            scheduler.step()
            step += 1
            loss = float(result.loss.item())  # (waits for the device: the step's time is complete)
            if resize:
                probe.append((in_curriculum(config, step - 1), time.perf_counter() - t_start))
            ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            if step % config.log_every == 0 or step == end:
                now = time.perf_counter()
                last = {"type": "train", "step": step, "loss": loss, "mask_loss": result.mask_loss,
                        "iou_loss": result.iou_loss, "focal": result.focal, "dice": result.dice,
                        "iou_round_1": result.round_iou[0], "iou_last_round": result.round_iou[-1],
                        "lr": optimizer.param_groups[0]["lr"], "grad_norm": float(grad_norm),
                        "seconds_per_step": (now - t_last) / (step - t_step), "time": time.time()}
                t_last, t_step = now, step
                log(last)
            bar.update(step, f"loss {ema:.4f} lr {optimizer.param_groups[0]['lr']:.2e}")
            val_seconds = None
            if val and (step % config.val_every == 0 or step == config.steps):
                val_seconds = validation(step)
            refit = step > config.budget_probe_steps
            if resize and refit and not may_refit(config, step):
                resize = False  # past the half or the curriculum: the length stays
            if resize and (step % config.val_every == 0 and len(probe) >= config.budget_probe_steps if refit
                           else step == config.budget_probe_steps):
                if val and val_seconds is None:  # a validation here too, timed, so that the plan counts them
                    val_seconds = validation(step)
                plan = fit_to_budget(config, probe, time.perf_counter() - t_begin, val_seconds or 0.0, done=step)
                config.steps, config.curriculum_steps = plan["steps"], plan["curriculum_steps"]
                (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
                log({"type": "budget", "step": step, **plan})
                bar.total = config.steps
                end = min(config.steps, limit)
                probe = []
            if step % config.ckpt_every == 0:
                save(step)
    except KeyboardInterrupt:
        print(f"\ninterrupted: saving step {step} to {ckpt_path}", file=sys.stderr)
        save(step)
        raise
    finally:
        bar.close()
        source.close()
    save(step)
    draw_curves(read_log(log_path), out / "curves.png")
    return last


def build_parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(prog="python -m training.train", description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc.split("\n\n", 1)[1])
    p.add_argument("--config", help="JSON file with TrainConfig keys (with --resume: default the run's config.json)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, log.jsonl, curves.png)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--init", help="checkpoint to start from (official key names, e.g. sam_vit_b.pth)")
    p.add_argument("--model", help="model spec: registry name or JSON config (overrides the config)")
    p.add_argument("--freeze-image-encoder", action="store_true",
                   help="train prompt encoder + mask decoder only, on cached embeddings where possible")
    p.add_argument("--steps", type=int, help="total optimizer steps")
    p.add_argument("--batch-size", type=int, help="images per step")
    p.add_argument("--objects-per-image", type=int, help="masks (prompt sets) per image")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--val-every", type=int)
    p.add_argument("--ckpt-every", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--data-workers", type=int,
                   help="processes generating the next steps' synthetic scenes ahead (0: in the training process)")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="fit a fresh run into this wall time: steps (and curriculum_steps) are set from the "
                        "first budget_probe_steps steps' times, and no step starts once it is spent")
    p.add_argument("--precision", choices=sorted(PRECISION_SETTINGS),
                   help="bf16: run the model under bfloat16 autocast (faster only where the CPU or GPU has native "
                        "bf16; elsewhere many times slower); auto: bf16 where native, else fp32")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    path = args.config
    if path is None and args.resume and (Path(args.out) / "config.json").is_file():
        path = str(Path(args.out) / "config.json")
    values: dict[str, Any] = {}
    if path:
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read the config {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise ValueError(f"config {path} must hold a JSON object")
    overrides = {"init": args.init, "model": args.model, "steps": args.steps, "batch_size": args.batch_size,
                 "objects_per_image": args.objects_per_image, "lr": args.lr, "warmup_steps": args.warmup_steps,
                 "seed": args.seed, "val_every": args.val_every, "ckpt_every": args.ckpt_every,
                 "threads": args.threads, "device": args.device, "precision": args.precision,
                 "data_workers": args.data_workers, "time_budget_s": args.time_budget}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if args.freeze_image_encoder:
        values["freeze_image_encoder"] = True
    return TrainConfig.from_dict(values)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        last = train(config, Path(args.out), resume=args.resume)
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(last), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
