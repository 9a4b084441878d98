"""Overlay drawing (Pillow): the image with its masks, prompts and scores."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from sam_client.types import Box, Mask, Point

#: Distinct, colour-blind-friendly-ish colours (Okabe-Ito), in rank order.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 114, 178),
    (230, 159, 0),
    (0, 158, 115),
    (204, 121, 167),
    (86, 180, 233),
    (213, 94, 0),
    (240, 228, 66),
)
FOREGROUND = (40, 220, 40)
BACKGROUND = (230, 30, 30)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _edges(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` pixels of its boundary."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return mask & ~inner


def distinct_colours(n: int) -> list[tuple[int, int, int]]:
    """``n`` different RGB colours: :data:`PALETTE` first, then hues spaced by the golden angle
    (with alternating lightness), so that many masks (automatic generation) stay apart."""
    colours = list(PALETTE[:n])
    golden = 0.618033988749895
    for i in range(len(colours), n):
        r, g, b = colorsys.hls_to_rgb((i * golden) % 1.0, 0.45 + 0.15 * (i % 2), 0.85)
        colour = (round(r * 255), round(g * 255), round(b * 255))
        while colour in colours:  # rounding can collide for very many masks
            colour = (colour[0], colour[1], (colour[2] + 1) % 256)
        colours.append(colour)
    return colours


def draw_overlay(
    image: np.ndarray,
    masks: Sequence[Mask],
    *,
    points: Sequence[Point] = (),
    boxes: Sequence[Box] = (),
    alpha: float = 0.45,
    colours: Sequence[tuple[int, int, int]] | None = None,
    labels: bool = True,
) -> PILImage.Image:
    """An RGB image the size of ``image`` (``uint8 HxWx3``) with each mask tinted in its colour and
    outlined, the prompt boxes and points (green foreground, red background), and (``labels``) a
    ``#rank score`` label at each mask's box. Masks without pixels (logits) are labelled only.
    ``colours`` gives one RGB colour per mask; by default :data:`PALETTE` in rank order (repeating)."""
    height, width = image.shape[:2]
    canvas = image.astype(np.float32)
    scale = max(1, round(max(height, width) / 400))
    if colours is None:
        colours = [PALETTE[rank % len(PALETTE)] for rank in range(len(masks))]
    elif len(colours) < len(masks):
        raise ValueError(f"give one colour per mask: {len(masks)} masks, {len(colours)} colours")
    for rank, mask in enumerate(masks):
        if mask.mask is None or mask.mask.shape != (height, width):
            continue
        colour = np.asarray(colours[rank], dtype=np.float32)
        canvas[mask.mask] = (1 - alpha) * canvas[mask.mask] + alpha * colour
        canvas[_edges(mask.mask, scale)] = colour
    out = PILImage.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(out)
    for box in boxes:
        draw.rectangle(box.as_tuple(), outline=(255, 255, 255), width=scale + 1)
        draw.rectangle(box.as_tuple(), outline=(20, 20, 20), width=max(1, scale - 1))
    radius = 3 * scale + 2
    for point in points:
        fill = FOREGROUND if point.foreground else BACKGROUND
        draw.ellipse(
            (point.x - radius, point.y - radius, point.x + radius, point.y + radius),
            fill=fill,
            outline=(255, 255, 255),
            width=max(1, scale),
        )
    font = _font(10 + 4 * scale)
    label_y: dict[tuple[int, int], int] = {}
    for rank, mask in enumerate(masks if labels else ()):
        text = f"#{rank + 1} {mask.score:.3f}"
        x, y = int(mask.bbox.x_min), int(mask.bbox.y_min)
        key = (x, y)
        y += label_y.get(key, 0)  # stack labels of masks that share a corner
        left, top, right, bottom = draw.textbbox((x + 2, y + 1), text, font=font)
        label_y[key] = label_y.get(key, 0) + int(bottom - top) + 4
        draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=colours[rank])
        draw.text((x + 2, y + 1), text, fill=(255, 255, 255), font=font)
    return out
