"""In-process predictor: embed an image once, then answer point/box/mask prompts in milliseconds."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sam import transforms
from sam.modeling.sam import Sam
from sam.prompts import PromptSet, pack_prompt_sets


class Predictor:
    """Wraps a :class:`Sam` model with image state.

    Coordinates given to :meth:`predict` are ``(x, y)`` in original-image pixels; boxes are XYXY in
    original-image pixels; ``mask_input`` holds low-res logits (``1x4gx4g``, e.g. the third output of
    an earlier ``predict``). Outputs are in mask-token order (use :func:`sam.ranking.rank_by_iou` to
    sort by predicted IoU).
    """

    def __init__(self, model: Sam) -> None:
        self.model = model
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.pixel_mean.device  # type: ignore[return-value]  # registered buffer

    def reset_image(self) -> None:
        self.features: torch.Tensor | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    @property
    def is_image_set(self) -> bool:
        return self.features is not None

    @torch.inference_mode()
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embeds an ``HxWx3`` uint8 image (RGB, or BGR with ``image_format="BGR"``)."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", None)
            raise ValueError(f"image must be an HxWx3 numpy array, got shape {shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 (0..255), got dtype {image.dtype}; convert it first")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image is empty: shape {image.shape}")
        if image_format != self.model.config.image_format:
            image = image[..., ::-1]
        resized = transforms.resize_image(image, self.model.image_size)
        x = torch.from_numpy(np.ascontiguousarray(resized)).to(self.device).permute(2, 0, 1)[None]
        self.features = self.model.embed(x)
        self.original_size = (int(image.shape[0]), int(image.shape[1]))
        self.input_size = (int(resized.shape[0]), int(resized.shape[1]))

    def get_image_embedding(self) -> torch.Tensor:
        """The current ``1x256xgxg`` embedding."""
        if self.features is None:
            raise ValueError("no image is set: call set_image(image) before asking for its embedding")
        return self.features

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask_output: bool = True,
                return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicts masks for one prompt set.

        Args:
            point_coords: ``Nx2`` ``(x, y)`` in original-image pixels.
            point_labels: ``N`` labels: 1 foreground, 0 background, -1 ignored ("not a point").
            box: ``4`` (or ``1x4``) XYXY in original-image pixels.
            mask_input: ``1x4gx4g`` (or ``4gx4g``) low-res logits from an earlier prediction.
            multimask_output: True returns the 3 multimask outputs, False the single-mask output.
            return_logits: return float logits instead of boolean masks.

        Returns:
            ``masks`` ``CxHxW`` (bool, or float32 logits), ``iou_predictions`` ``C`` float32,
            ``low_res_logits`` ``Cx4gx4g`` float32; C is 3 or 1.
        """
        masks, iou, low_res = self.predict_batch(
            None if point_coords is None else np.asarray(point_coords)[None],
            None if point_labels is None else np.asarray(point_labels)[None],
            None if box is None else np.asarray(box, dtype=np.float64).reshape(1, -1),
            None if mask_input is None else _as_mask_batch(mask_input),
            multimask_output=multimask_output,
            return_logits=return_logits,
        )
        return masks[0], iou[0], low_res[0]

    @torch.inference_mode()
    def predict_batch(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                      boxes: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                      multimask_output: bool = True,
                      return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicts masks for B prompt sets on the current embedding (the encoder is not re-run).

        Args:
            point_coords: ``BxNx2`` original-image pixels; point_labels ``BxN``.
            boxes: ``Bx4`` XYXY original-image pixels.
            mask_input: ``Bx1x4gx4g`` low-res logits.

        Returns:
            ``BxCxHxW`` masks, ``BxC`` IoU predictions, ``BxCx4gx4g`` low-res logits.
        """
        if self.features is None or self.original_size is None or self.input_size is None:
            raise ValueError("no image is set: call set_image(image) before predict")
        config = self.model.config
        sets = _prompt_sets(point_coords, point_labels, boxes, mask_input, config.low_res_size)
        packed = pack_prompt_sets(sets, self.original_size, config.image_size)
        device = self.device
        coords = torch.from_numpy(packed.coords).to(device)
        labels = torch.from_numpy(packed.labels).to(device)
        masks_t = None if mask_input is None else torch.as_tensor(mask_input, dtype=torch.float32, device=device)
        low_res, iou = self.model.decode(self.features, coords, labels, masks_t, None)
        picked = slice(1, None) if multimask_output else slice(0, 1)
        low_res, iou = low_res[:, picked], iou[:, picked]
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks.cpu().numpy(), iou.cpu().numpy(), low_res.cpu().numpy()


def _as_mask_batch(mask_input: Any) -> np.ndarray:
    mask = np.asarray(mask_input, dtype=np.float32)
    if mask.ndim == 2:
        mask = mask[None]
    return mask[None]


def _prompt_sets(point_coords: Any, point_labels: Any, boxes: Any, mask_input: Any,
                 low_res_size: int) -> list[PromptSet]:
    """Validates batched numpy prompts and splits them into per-set :class:`PromptSet` objects."""
    batch_sizes = {}
    if point_coords is not None:
        if point_labels is None:
            raise ValueError("point_labels are required with point_coords (1 foreground, 0 background)")
        point_coords = np.asarray(point_coords, dtype=np.float64)
        point_labels = np.asarray(point_labels)
        if point_coords.ndim != 3 or point_coords.shape[2] != 2:
            raise ValueError(f"point_coords must be BxNx2 (x, y), got shape {point_coords.shape}")
        if point_labels.shape != point_coords.shape[:2]:
            raise ValueError(
                f"point_labels must have shape {point_coords.shape[:2]} to match point_coords, "
                f"got {point_labels.shape}"
            )
        batch_sizes["point_coords"] = point_coords.shape[0]
    elif point_labels is not None:
        raise ValueError("point_labels were given without point_coords")
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"box must hold 4 values XYXY per prompt set, got shape {boxes.shape}")
        batch_sizes["box"] = boxes.shape[0]
    if mask_input is not None:
        mask_input = np.asarray(mask_input, dtype=np.float32)
        expected = (1, low_res_size, low_res_size)
        if mask_input.ndim != 4 or mask_input.shape[1:] != expected:
            raise ValueError(
                f"mask_input must be 1x{low_res_size}x{low_res_size} low-res logits per prompt set, "
                f"got shape {mask_input.shape[1:] if mask_input.ndim == 4 else mask_input.shape}"
            )
        if not np.isfinite(mask_input).all():
            raise ValueError("mask_input holds NaN or infinite values")
        batch_sizes["mask_input"] = mask_input.shape[0]
    if not batch_sizes:
        raise ValueError("give at least one prompt: point_coords + point_labels, box or mask_input")
    if len(set(batch_sizes.values())) != 1:
        raise ValueError(f"prompt batch sizes differ: {batch_sizes}")
    b = next(iter(batch_sizes.values()))
    if b == 0:
        raise ValueError("the prompt batch is empty")
    return [
        PromptSet(
            points=None if point_coords is None else point_coords[i],
            labels=None if point_labels is None else point_labels[i],
            box=None if boxes is None else boxes[i],
        )
        for i in range(b)
    ]
