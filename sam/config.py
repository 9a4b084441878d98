"""Model configurations: one frozen dataclass and the registry of named variants.

A configuration has exactly the keys of the official JSON files (``sam/configs/vit_b.json``);
unknown keys such as ``description`` are ignored. Named variants live as JSON files in
``sam/configs/``; any other JSON file or dict with the same keys works too.

This module imports only the standard library (the gateway reads configurations without torch).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class SamConfig:
    """Hyperparameters of one SAM variant.

    Sizes: the encoder sees a square ``image_size`` x ``image_size`` input split into
    ``vit_patch_size`` patches, so the embedding grid is ``g = image_size // vit_patch_size`` on each
    side; low-res masks and mask prompts are ``4g x 4g``.
    """

    name: str
    image_size: int
    vit_patch_size: int
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    use_abs_pos: bool = True
    use_rel_pos: bool = True
    encoder_norm_eps: float = 1e-6
    out_chans: int = 256
    prompt_embed_dim: int = 256
    image_embedding_size: tuple[int, int] = (64, 64)
    mask_in_chans: int = 16
    num_multimask_outputs: int = 3
    decoder_transformer_depth: int = 2
    decoder_transformer_mlp_dim: int = 2048
    decoder_transformer_num_heads: int = 8
    decoder_attention_downsample_rate: int = 2
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    mask_threshold: float = 0.0
    image_format: str = "RGB"
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    low_res_mask_size: tuple[int, int] = (256, 256)

    @property
    def embedding_size(self) -> int:
        """Side ``g`` of the square image-embedding grid."""
        return self.image_size // self.vit_patch_size

    @property
    def low_res_size(self) -> int:
        """Side of the square low-res mask logits and mask prompts (``4g``)."""
        return 4 * self.embedding_size

    def __post_init__(self) -> None:
        problems = []
        if self.image_size <= 0 or self.vit_patch_size <= 0:
            problems.append("image_size and vit_patch_size must be positive")
        elif self.image_size % self.vit_patch_size:
            problems.append(
                f"image_size {self.image_size} must be a multiple of vit_patch_size {self.vit_patch_size}"
            )
        g = self.image_size // max(self.vit_patch_size, 1)
        if tuple(self.image_embedding_size) != (g, g):
            problems.append(
                f"image_embedding_size {list(self.image_embedding_size)} must equal "
                f"[{g}, {g}] (image_size // vit_patch_size)"
            )
        if tuple(self.low_res_mask_size) != (4 * g, 4 * g):
            problems.append(f"low_res_mask_size {list(self.low_res_mask_size)} must equal [{4 * g}, {4 * g}]")
        if self.encoder_embed_dim % self.encoder_num_heads:
            problems.append("encoder_embed_dim must be divisible by encoder_num_heads")
        bad = [i for i in self.encoder_global_attn_indexes if not 0 <= i < self.encoder_depth]
        if bad:
            problems.append(f"encoder_global_attn_indexes {bad} outside 0..{self.encoder_depth - 1}")
        if self.image_format not in ("RGB", "BGR"):
            problems.append(f"image_format must be 'RGB' or 'BGR', got {self.image_format!r}")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3:
            problems.append("pixel_mean and pixel_std need 3 values (R, G, B)")
        if self.prompt_embed_dim % 2 or self.mask_in_chans % 4:
            problems.append("prompt_embed_dim must be even and mask_in_chans a multiple of 4")
        if problems:
            raise ValueError(f"invalid SAM config {self.name!r}: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SamConfig:
        """Builds a config from a mapping with the official JSON keys; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        kwargs.setdefault("name", "custom")
        missing = [f.name for f in fields(cls) if f.name not in kwargs and f.default is MISSING]
        if missing:
            raise ValueError(f"SAM config is missing keys: {', '.join(sorted(missing))}")
        for key in ("encoder_global_attn_indexes", "image_embedding_size", "pixel_mean", "pixel_std",
                    "low_res_mask_size"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def registry_names() -> list[str]:
    """Names of the configurations shipped in ``sam/configs/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(spec: str | Path | Mapping[str, Any] | SamConfig) -> SamConfig:
    """Resolves a registry name, a JSON path or a dict into a :class:`SamConfig`."""
    if isinstance(spec, SamConfig):
        return spec
    if isinstance(spec, Mapping):
        return SamConfig.from_dict(spec)
    text = str(spec)
    path = Path(text)
    if not text.endswith(".json") and (CONFIG_DIR / f"{text}.json").is_file():
        path = CONFIG_DIR / f"{text}.json"
    if not path.is_file():
        raise ValueError(
            f"unknown model {text!r}: give one of {', '.join(registry_names())} or a path to a JSON config"
        )
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"config {path} is not valid JSON: {exc}") from exc
    if not isinstance(values, dict):
        raise ValueError(f"config {path} must hold a JSON object")
    values.setdefault("name", path.stem)
    return SamConfig.from_dict(values)
