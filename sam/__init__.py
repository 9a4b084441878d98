"""Segment Anything (v1) in PyTorch: model, predictor, automatic mask generation, export.

Heavy (torch) parts are imported lazily, so ``sam.transforms``, ``sam.prompts`` and ``sam.config``
stay importable without torch (the gateway uses them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sam.build import build_model
    from sam.config import SamConfig, load_config
    from sam.modeling.sam import Sam
    from sam.predictor import Predictor
    from sam.ranking import rank_by_iou

_LAZY = {
    "build_model": "sam.build",
    "Sam": "sam.modeling.sam",
    "SamConfig": "sam.config",
    "load_config": "sam.config",
    "Predictor": "sam.predictor",
    "rank_by_iou": "sam.ranking",
    "MaskGenerator": "sam.automatic",
}

__all__ = ["MaskGenerator", "Predictor", "Sam", "SamConfig", "build_model", "load_config", "rank_by_iou"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sam' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
