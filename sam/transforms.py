"""Every geometric transform between the original image and the model's frames, in one place.

Frames:
- *original*: pixels of the image as the caller gave it, ``H x W``; points ``(x, y)``, boxes XYXY.
- *resized*: the image scaled so that its long side equals ``image_size`` (``h x w``), top-left
  aligned inside the ``S x S`` encoder input (``S = image_size``); the decoder takes coordinates here.
- *low-res*: mask logits on a ``4g x 4g`` grid covering the whole ``S x S`` input.

numpy + Pillow only: the gateway uses this module without importing torch. The Predictor, the
gateway and the automatic mask generator all call these functions.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def resized_size(height: int, width: int, image_size: int) -> tuple[int, int]:
    """``(h, w)`` after scaling ``(height, width)`` so that the long side is ``image_size``
    (each side rounded half up)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    scale = image_size * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_image(image: np.ndarray, image_size: int) -> np.ndarray:
    """``HxWx3`` uint8 -> ``hxwx3`` uint8, long side ``image_size``, with PIL's bilinear filter."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    h, w = resized_size(image.shape[0], image.shape[1], image_size)
    pil = Image.fromarray(np.ascontiguousarray(image))
    return np.array(pil.resize((w, h), Image.Resampling.BILINEAR))


def scale_coords(coords: np.ndarray, original_size: tuple[int, int], image_size: int) -> np.ndarray:
    """``...x2`` ``(x, y)`` in original pixels -> resized-frame pixels (float64)."""
    old_h, old_w = original_size
    new_h, new_w = resized_size(old_h, old_w, image_size)
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] = out[..., 0] * (new_w / old_w)
    out[..., 1] = out[..., 1] * (new_h / old_h)
    return out


def scale_boxes(boxes: np.ndarray, original_size: tuple[int, int], image_size: int) -> np.ndarray:
    """``...x4`` XYXY boxes in original pixels -> resized-frame pixels (float64)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    corners = scale_coords(boxes.reshape(-1, 2, 2), original_size, image_size)
    return corners.reshape(boxes.shape)


def _bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of 1-D linear resampling, half-pixel centres (align_corners=False).

    Output ``i`` reads ``x[i0] * (1 - t) + x[i1] * t`` with ``src = (i + 0.5) * in/out - 0.5``
    clamped at 0 (PyTorch's ``interpolate(mode="bilinear", align_corners=False)`` rule).
    """
    scale = np.float32(in_size / out_size)
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    t = (src - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, t


def _resample_axis(x: np.ndarray, axis: int, out_size: int, limit: int | None = None) -> np.ndarray:
    """Resamples ``axis`` of ``x`` to ``out_size``, computing only the first ``limit`` outputs."""
    i0, i1, t = _bilinear_taps(x.shape[axis], out_size)
    if limit is not None:
        i0, i1, t = i0[:limit], i1[:limit], t[:limit]
    shape = [1] * x.ndim
    shape[axis] = t.shape[0]
    t = t.reshape(shape)
    a = np.take(x, i0, axis=axis)
    b = np.take(x, i1, axis=axis)
    return a + (b - a) * t


def upscale_logits(low_res: np.ndarray, input_size: tuple[int, int], original_size: tuple[int, int],
                   image_size: int) -> np.ndarray:
    """Low-res logits ``...x4gx4g`` -> ``...xHxW`` float32 logits in original pixels.

    Bilinear to ``S x S`` (only the part inside the resized image is computed), crop to
    ``input_size``, bilinear to ``original_size``: the same as the model's postprocessing.
    """
    x = np.asarray(low_res, dtype=np.float32)
    in_h, in_w = input_size
    out_h, out_w = original_size
    x = _resample_axis(x, x.ndim - 1, image_size, limit=in_w)
    x = _resample_axis(x, x.ndim - 2, image_size, limit=in_h)
    if (in_h, in_w) != (out_h, out_w):
        x = _resample_axis(x, x.ndim - 1, out_w)
        x = _resample_axis(x, x.ndim - 2, out_h)
    return x.astype(np.float32, copy=False)
