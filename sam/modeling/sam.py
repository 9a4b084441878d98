"""The composed model: image encoder + prompt encoder + mask decoder, with pre/postprocessing."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sam.config import SamConfig
from sam.modeling.image_encoder import ImageEncoderViT
from sam.modeling.mask_decoder import MaskDecoder
from sam.modeling.prompt_encoder import PromptEncoder


class Sam(nn.Module):
    """Segment Anything.

    The encoder/decoder seam is the image embedding ``Bx256xgxg``: :meth:`embed` runs once per image,
    :meth:`decode` once per prompt batch. Pixel mean/std are non-persistent buffers (not in the
    checkpoint).
    """

    __jit_ignored_attributes__ = ["config"]
    __jit_unused_properties__ = ["image_size", "mask_threshold"]

    def __init__(self, config: SamConfig, image_encoder: ImageEncoderViT, prompt_encoder: PromptEncoder,
                 mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.config = config
        self.input_size = config.image_size  # plain int for TorchScript
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def mask_threshold(self) -> float:
        return self.config.mask_threshold

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """``Bx3xhxw`` RGB in 0..255 (uint8 or float; long side == image_size) -> normalised
        ``Bx3xSxS`` float, zero-padded on the bottom and right."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2], x.shape[-1]
        if max(h, w) != self.input_size:
            raise ValueError(
                "the image must be resized so that its long side is " + str(self.input_size)
                + " px; got " + str(h) + "x" + str(w)
            )
        return F.pad(x, (0, self.input_size - w, 0, self.input_size - h))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Resized RGB ``Bx3xhxw`` (0..255) -> image embedding ``Bx256xgxg``."""
        return self.image_encoder(self.preprocess(x))

    def decode(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
               mask_input: torch.Tensor | None = None,
               has_mask_input: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs prompt encoder + mask decoder for B prompt sets on one (or B) embeddings.

        Args:
            image_embeddings: ``1x256xgxg`` (broadcast) or ``Bx256xgxg``.
            point_coords: ``BxNx2`` float ``(x, y)`` in resized-frame pixels (N may be 0).
            point_labels: ``BxN`` int: -1 padding, 0 background, 1 foreground, 2/3 box corners.
            mask_input: ``Bx1x4gx4g`` logits or None.
            has_mask_input: ``B`` float, non-zero where ``mask_input`` is used; None = all used.

        Returns:
            ``Bx4x4gx4g`` low-res logits and ``Bx4`` IoU predictions, in mask-token order.
        """
        b = point_coords.shape[0]
        sparse = self.prompt_encoder.embed_points(point_coords, point_labels)
        dense = self.prompt_encoder.embed_masks(mask_input, has_mask_input, b)
        return self.mask_decoder(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense)

    def postprocess_masks(self, masks: torch.Tensor, input_size: tuple[int, int],
                          original_size: tuple[int, int]) -> torch.Tensor:
        """``BxCx4gx4g`` low-res logits -> ``BxCxHxW`` logits in original-image pixels.

        Bilinear (align_corners=False) to ``SxS``, crop to the resized ``input_size``, bilinear to
        ``original_size``.
        """
        size = self.config.image_size
        masks = F.interpolate(masks, (size, size), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)
