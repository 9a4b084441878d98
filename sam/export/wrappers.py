"""Thin export modules with fixed signatures and no data-dependent control flow.

These are the graphs Triton serves (``model_repository/sam_encoder``, ``sam_decoder``).
"""

from __future__ import annotations

import torch
from torch import nn

from sam.modeling.sam import Sam


class EncoderExport(nn.Module):
    """``image``: ``BxHxWx3`` uint8 RGB, already resized so that its long side equals
    ``image_size`` -> ``Bx256xgxg`` float32 embedding. Normalisation and zero padding to the square
    input happen inside the graph, so 4x fewer bytes travel than a float32 tensor."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        return self.model.embed(x)


class DecoderExport(nn.Module):
    """All four mask tokens for B prompt sets.

    Inputs: ``image_embeddings`` ``1|Bx256xgxg`` float32; ``point_coords`` ``BxNx2`` float32
    ``(x, y)`` in resized-frame pixels; ``point_labels`` ``BxN`` int32 (-1 padding, 0 background,
    1 foreground, 2/3 box corners); ``mask_input`` ``Bx1x4gx4g`` float32 logits;
    ``has_mask_input`` ``B`` float32 (1 = use ``mask_input``).

    Outputs: ``low_res_masks`` ``Bx4x4gx4g`` float32 logits and ``iou_predictions`` ``Bx4`` float32,
    in mask-token order (token 0 single-mask output, tokens 1..3 multimask outputs).
    """

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.model = model

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode(image_embeddings, point_coords, point_labels, mask_input, has_mask_input)
