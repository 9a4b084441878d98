"""Automatic mask generation: SAM prompted by a grid of points, with the reference generator's
parameters, filters and output (see :class:`MaskGenerator`).

:class:`MaskGenerator` (torch) is imported lazily, so the numpy-only steps (``grid``, ``crops``,
``stability``, ``runs``, ``rle``, ``boxes``, ``nms``, ``records``, ``regions``, ``params``,
``steps``) stay importable without torch: the gateway's ``GenerateMasks`` runs them on the
decoder outputs it gets from Triton.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sam.automatic.generator import OUTPUT_MODES, MaskGenerator

__all__ = ["OUTPUT_MODES", "MaskGenerator"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("sam.automatic.generator"), name)
    raise AttributeError(f"module 'sam.automatic' has no attribute {name!r}")
