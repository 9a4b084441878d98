"""Mask decoder: output tokens + prompt tokens through the two-way transformer, then masks.

Output tokens: one IoU token and four mask tokens. Token 0 is the single-mask output (for
unambiguous prompts); tokens 1..3 are the multimask outputs (whole / part / sub-part).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sam.modeling.common import MLP, LayerNorm2d
from sam.modeling.transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    def __init__(self, transformer_dim: int, transformer: TwoWayTransformer, num_multimask_outputs: int = 3,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicts all mask tokens' outputs.

        Args:
            image_embeddings: ``1xCxgxg`` (broadcast over the prompt sets) or ``BxCxgxg``.
            image_pe: ``1xCxgxg`` positional encoding of the grid.
            sparse_prompt_embeddings: ``BxNxC`` point/box tokens (N may be 0).
            dense_prompt_embeddings: ``BxCxgxg`` mask-prompt embedding.

        Returns:
            ``BxTx4gx4g`` low-res mask logits and ``BxT`` IoU predictions, T = 4 tokens in token order.
        """
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(b, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)

        src = image_embeddings.expand(b, -1, -1, -1) + dense_prompt_embeddings
        _, c, h, w = src.shape
        hs, src = self.transformer(src, image_pe, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        upscaled = self.upscale(src, h, w)  # B x 4h x 4w x C/8, channels last
        hyper = []
        for i, mlp in enumerate(self.output_hypernetworks_mlps):
            hyper.append(mlp(mask_tokens_out[:, i, :]))
        hyper_in = torch.stack(hyper, dim=1)  # B x T x C/8
        h_up, w_up = upscaled.shape[1], upscaled.shape[2]
        masks = hyper_in @ upscaled.reshape(b, h_up * w_up, -1).transpose(1, 2)
        return masks.reshape(b, -1, h_up, w_up), self.iou_prediction_head(iou_token_out)

    def upscale(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Runs ``output_upscaling`` on image tokens ``Bx(h*w)xC`` -> ``Bx4hx4wx(C/8)`` channels-last.

        Each transposed convolution has kernel == stride == 2, so output pixel ``(2i+di, 2j+dj)``
        is ``x[i, j] @ W[:, :, di, dj] + bias``: one matmul per layer and a pixel rearrangement.
        LayerNorm2d over channels is a LayerNorm over the last axis in this layout. Same weights
        and the same function as ``self.output_upscaling`` on ``BxCxhxw``, without its layout copies.
        """
        conv1, norm, conv2 = self.output_upscaling[0], self.output_upscaling[1], self.output_upscaling[3]
        x = _stride2_transposed_conv(tokens, conv1.weight, conv1.bias, h, w)
        x = F.gelu(F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps))
        x = x.reshape(x.shape[0], 4 * h * w, -1)
        x = _stride2_transposed_conv(x, conv2.weight, conv2.bias, 2 * h, 2 * w)
        return F.gelu(x)


def _stride2_transposed_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, h: int,
                             w: int) -> torch.Tensor:
    """``ConvTranspose2d(kernel=2, stride=2)`` on channels-last tokens ``Bx(h*w)xCin`` ->
    ``Bx2hx2wxCout``; ``weight`` is ``Cin x Cout x 2 x 2`` as stored by PyTorch."""
    c_out = weight.shape[1]
    y = x @ weight.permute(0, 2, 3, 1).reshape(weight.shape[0], 4 * c_out)
    y = y.reshape(x.shape[0], h, w, 2, 2, c_out).permute(0, 1, 3, 2, 4, 5)
    y = y.reshape(x.shape[0], 2 * h, 2 * w, c_out)
    if bias is not None:
        y = y + bias
    return y
