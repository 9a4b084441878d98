"""Automatic mask generation: SAM prompted by a grid of points, with the reference generator's
parameters, filters and output (see :class:`MaskGenerator`)."""

from sam.automatic.generator import OUTPUT_MODES, MaskGenerator

__all__ = ["OUTPUT_MODES", "MaskGenerator"]
