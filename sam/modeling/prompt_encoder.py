"""Prompt encoder: points and box corners -> sparse tokens, a mask prompt -> dense embedding.

Coordinates arrive in the RESIZED frame (pixels of the image after its long side was scaled to
``image_size``), ``(x, y)`` order. Point labels (internal, never part of the public API):

=====  =========================================
label  meaning
=====  =========================================
-1     padding ("not a point"; positional encoding zeroed)
 0     background point
 1     foreground point
 2     box top-left corner
 3     box bottom-right corner
=====  =========================================
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sam.modeling.common import LayerNorm2d

NUM_POINT_EMBEDDINGS = 4  # background, foreground, box top-left, box bottom-right


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of normalised ``(x, y)``: ``[sin(2*pi*p@G), cos(2*pi*p@G)]``.

    ``G`` is a stored ``2 x (C/2)`` Gaussian matrix; ``p = 2 * xy - 1`` maps ``[0, 1]`` to ``[-1, 1]``.
    """

    def __init__(self, num_pos_feats: int, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """``...x2`` coordinates normalised to ``[0, 1]`` -> ``...xC``."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def grid(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of every cell centre of an ``h x w`` grid -> ``Cxhxw``."""
        h, w = size
        matrix = self.positional_encoding_gaussian_matrix
        ones = torch.ones((h, w), device=matrix.device, dtype=matrix.dtype)
        y = (ones.cumsum(dim=0) - 0.5) / h
        x = (ones.cumsum(dim=1) - 0.5) / w
        return self.encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def encode_pixels(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """``...x2`` pixel coordinates ``(x, y)`` in an ``(h, w)`` frame -> ``...xC``."""
        x = coords[..., 0] / image_size[1]
        y = coords[..., 1] / image_size[0]
        return self.encode(torch.stack([x, y], dim=-1).to(self.positional_encoding_gaussian_matrix.dtype))


class PromptEncoder(nn.Module):
    """Encodes prompts for the mask decoder.

    Args:
        embed_dim: token width (256).
        image_embedding_size: ``(g, g)`` grid of the image embedding.
        input_image_size: ``(S, S)``, the padded encoder input in pixels.
        mask_in_chans: hidden channels of the mask downscaler (16).
    """

    def __init__(self, embed_dim: int, image_embedding_size: tuple[int, int],
                 input_image_size: tuple[int, int], mask_in_chans: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = NUM_POINT_EMBEDDINGS
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(NUM_POINT_EMBEDDINGS))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the embedding grid, ``1xCxgxg``."""
        return self.pe_layer.grid(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sparse tokens for ``BxNx2`` resized-frame coordinates and ``BxN`` labels -> ``BxNxC``.

        The coordinate is shifted by 0.5 (to the pixel centre) and normalised by the input size;
        padding points (label -1) get the "not a point" embedding instead of a position.
        """
        pe = self.pe_layer.encode_pixels(coords + 0.5, self.input_image_size)
        labels = labels.long()
        is_padding = (labels == -1).unsqueeze(-1)
        pe = torch.where(is_padding, torch.zeros_like(pe), pe)
        rows = [self.not_a_point_embed.weight]
        for embedding in self.point_embeddings:
            rows.append(embedding.weight)
        table = torch.cat(rows, dim=0)  # (1 + 4) x C, row = label + 1
        return pe + table[(labels + 1).clamp(0, self.num_point_embeddings)]

    def embed_masks(self, mask_input: torch.Tensor | None, has_mask_input: torch.Tensor | None,
                    batch_size: int) -> torch.Tensor:
        """Dense embedding ``BxCxgxg`` from ``Bx1x4gx4g`` mask logits where ``has_mask_input[b]`` is
        non-zero, else the learned "no mask" embedding. ``mask_input=None`` means no mask anywhere."""
        g = self.image_embedding_size
        no_mask = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch_size, -1, g[0], g[1])
        if mask_input is None:
            return no_mask
        dense = self.mask_downscaling(mask_input)
        if has_mask_input is None:
            return dense
        use = (has_mask_input.reshape(-1, 1, 1, 1) != 0)
        return torch.where(use, dense, no_mask)
