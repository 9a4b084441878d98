"""Builds a :class:`~sam.modeling.sam.Sam` from a config and loads official-format checkpoints."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sam.config import SamConfig, load_config
from sam.modeling.image_encoder import ImageEncoderViT
from sam.modeling.mask_decoder import MaskDecoder
from sam.modeling.prompt_encoder import PromptEncoder
from sam.modeling.sam import Sam
from sam.modeling.transformer import TwoWayTransformer


def build_from_config(config: SamConfig) -> Sam:
    """Instantiates the three parts with random weights (eval mode not set)."""
    g = config.embedding_size
    image_encoder = ImageEncoderViT(
        img_size=config.image_size,
        patch_size=config.vit_patch_size,
        embed_dim=config.encoder_embed_dim,
        depth=config.encoder_depth,
        num_heads=config.encoder_num_heads,
        mlp_ratio=config.mlp_ratio,
        out_chans=config.out_chans,
        qkv_bias=config.qkv_bias,
        norm_eps=config.encoder_norm_eps,
        use_abs_pos=config.use_abs_pos,
        use_rel_pos=config.use_rel_pos,
        window_size=config.window_size,
        global_attn_indexes=tuple(config.encoder_global_attn_indexes),
    )
    prompt_encoder = PromptEncoder(
        embed_dim=config.prompt_embed_dim,
        image_embedding_size=(g, g),
        input_image_size=(config.image_size, config.image_size),
        mask_in_chans=config.mask_in_chans,
    )
    transformer = TwoWayTransformer(
        depth=config.decoder_transformer_depth,
        embedding_dim=config.prompt_embed_dim,
        num_heads=config.decoder_transformer_num_heads,
        mlp_dim=config.decoder_transformer_mlp_dim,
        attention_downsample_rate=config.decoder_attention_downsample_rate,
    )
    mask_decoder = MaskDecoder(
        transformer_dim=config.prompt_embed_dim,
        transformer=transformer,
        num_multimask_outputs=config.num_multimask_outputs,
        iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )
    return Sam(config, image_encoder, prompt_encoder, mask_decoder)


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB chunks: the identity of a checkpoint file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads a checkpoint file: a state dict, or a dict holding one under ``model``/``state_dict``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"checkpoint {path} does not hold a state dict of tensors")
    return dict(obj)


def load_weights(model: Sam, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strictly loads official key names; floating tensors are cast to the model's dtype.

    Raises ValueError naming missing, unexpected and mis-shaped keys.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mis_shaped = sorted(
        f"{k} (checkpoint {list(state_dict[k].shape)}, model {list(own[k].shape)})"
        for k in set(own) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or mis_shaped:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:10]) + (f" ... (+{len(keys) - 10} more)" if len(keys) > 10 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if mis_shaped:
            parts.append(f"shape mismatches: {show(mis_shaped)}")
        raise ValueError(
            f"{source} does not fit config {model.config.name!r} ({'; '.join(parts)}); "
            "check that the config matches the checkpoint (e.g. vit_b vs vit_h)"
        )
    cast = {
        k: (v.to(own[k].dtype) if v.is_floating_point() else v) for k, v in state_dict.items()
    }
    model.load_state_dict(cast, strict=True)


def build_model(spec: str | Path | Mapping[str, Any] | SamConfig,
                checkpoint: str | Path | None = None) -> Sam:
    """Builds a SAM model in eval mode.

    Args:
        spec: a registry name (``vit_b``, ``vit_l``, ``vit_h``, ``tiny``, ...), a path to a JSON config
            with the keys of ``sam/configs/vit_b.json``, or a dict with those keys (unknown keys ignored).
        checkpoint: optional path to a state dict with the official key names (float16 is cast to
            float32). Without it the weights are random.
    """
    config = load_config(spec)
    model = build_from_config(config)
    if checkpoint is not None:
        load_weights(model, read_state_dict(checkpoint), source=f"checkpoint {checkpoint}")
    return model.eval()
