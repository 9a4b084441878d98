"""The ViT image encoder: patch embedding, windowed/global attention blocks, neck.

Tensor layout inside the transformer is channels-last ``BxHxWxC`` on the token grid
(``H = W = image_size // patch_size``); the output embedding is ``Bx256xHxW``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sam.modeling.common import LayerNorm2d, MLPBlock


class PatchEmbed(nn.Module):
    """Stride-``patch`` convolution: ``Bx3xSxS`` image -> ``BxHxWxC`` tokens."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


def relative_position_table(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """Gathers a ``(2*max(q,k)-1)xC`` relative-position table into ``q_size x k_size x C``.

    Entry ``[i, j]`` is the embedding of the offset ``i - j`` (rescaled when the query and key
    lengths differ). A table of a different length is resized linearly first.
    """
    length = 2 * max(q_size, k_size) - 1
    if table.shape[0] != length:
        table = F.interpolate(table.t().unsqueeze(0), size=length, mode="linear").squeeze(0).t()
    q_scale = max(k_size / q_size, 1.0)
    k_scale = max(q_size / k_size, 1.0)
    q_pos = torch.arange(q_size, device=table.device)[:, None] * q_scale
    k_pos = torch.arange(k_size, device=table.device)[None, :] * k_scale
    offsets = (q_pos - k_pos) + (k_size - 1) * k_scale
    return table[offsets.long()]


class Attention(nn.Module):
    """Multi-head self-attention over a ``BxHxWxC`` grid with decomposed relative positions.

    The relative-position bias of query ``(h, w)`` and key ``(h', w')`` is
    ``q . Rh[h - h'] + q . Rw[w - w']`` (unscaled query), added to the scaled dot product
    ``scale * q . k`` before the softmax.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, use_rel_pos: bool,
                 input_size: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        # Largest relative-position bias (elements) built at once; larger ones go in query chunks.
        self.bias_chunk_elements = 1 << 27
        self.rel_pos_h: nn.Parameter | None = None
        self.rel_pos_w: nn.Parameter | None = None
        if use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
        qkv = qkv.reshape(3, b * heads, h * w, -1)
        q, k, v = qkv[0], qkv[1], qkv[2]
        rel_pos_h, rel_pos_w = self.rel_pos_h, self.rel_pos_w
        if rel_pos_h is None or rel_pos_w is None:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            out = self._attend_with_rel_pos(q, k, v, h, w, rel_pos_h, rel_pos_w)
        out = out.view(b, heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(out)

    def _attend_with_rel_pos(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h: int, w: int,
                             rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor) -> torch.Tensor:
        """Fused attention with the decomposed relative-position bias as an additive mask.

        ``q, k, v``: ``(B*heads)x(h*w)xC``. The bias ``(B*heads)x(h*w)x(h*w)`` is built and consumed
        in chunks of query rows, so at most ``bias_chunk_elements`` (2**27) bias values exist at once
        (global attention on a 64x64 grid would otherwise need one 4096x4096 matrix per head).
        """
        n = q.shape[0]
        q_grid = q.reshape(n, h, w, -1)
        # contiguous: einsum returns permuted layouts, and the broadcast sum below would inherit
        # one, so that its reshape to (n, rows*w, h*w) had to copy the whole bias again
        bias_h = torch.einsum("bhwc,hkc->bhwk", q_grid, relative_position_table(h, h, rel_pos_h)).contiguous()
        bias_w = torch.einsum("bhwc,wkc->bhwk", q_grid, relative_position_table(w, w, rel_pos_w)).contiguous()
        rows = max(1, self.bias_chunk_elements // max(1, n * w * h * w))
        if rows >= h:
            bias = (bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]).reshape(n, h * w, h * w)
            return self._attend(q, k, v, bias)
        out = torch.empty_like(q)
        for start in range(0, h, rows):
            stop = min(start + rows, h)
            bias = (bias_h[:, start:stop, :, :, None] + bias_w[:, start:stop, :, None, :]).reshape(
                n, (stop - start) * w, h * w)
            out[:, start * w:stop * w] = self._attend(q[:, start * w:stop * w], k, v, bias)
        return out

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``softmax(scale * q k^T + bias) v``; ``bias`` is a fresh tensor and is overwritten.

        On a GPU: PyTorch's fused attention (the bias as an additive mask). On the CPU that falls
        back to a math path whose "safe" softmax scans the scores for -inf three more times (about
        1.5 s of a 12.5 s vit_b encoder on 2 cores), so the CPU adds the scores into the bias in
        place (one GEMM with beta = 1) and takes a plain softmax.
        """
        if q.is_cuda:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        scores = bias.baddbmm_(q, k.transpose(1, 2), alpha=self.scale)
        return torch.bmm(scores.softmax(dim=-1), v)


def partition_windows(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pads ``BxHxWxC`` to multiples of ``window`` and cuts it into ``(B*nW)xwindowxwindowxC``.

    Returns the windows and the padded size ``(Hp, Wp)``. Padded tokens take part in attention.
    """
    b, h, w, c = x.shape
    pad_h = (window - h % window) % window
    pad_w = (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def merge_windows(windows: torch.Tensor, window: int, padded: tuple[int, int],
                  size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`partition_windows`: windows back to ``BxHxWxC``, padding cropped."""
    hp, wp = padded
    h, w = size
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :].contiguous()
    return x


class Block(nn.Module):
    """Pre-norm transformer block; ``window_size`` 0 means global attention over the whole grid."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, norm_eps: float,
                 use_rel_pos: bool, window_size: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        attn_size = input_size if window_size == 0 else (window_size, window_size)
        self.attn = Attention(dim, num_heads, qkv_bias, use_rel_pos, attn_size)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), act=nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            h, w = x.shape[1], x.shape[2]
            windows, padded = partition_windows(x, self.window_size)
            x = merge_windows(self.attn(windows), self.window_size, padded, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """ViT backbone + neck: normalised, padded ``Bx3xSxS`` image -> ``Bx256xgxg`` embedding."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float, out_chans: int, qkv_bias: bool, norm_eps: float, use_abs_pos: bool,
                 use_rel_pos: bool, window_size: int, global_attn_indexes: tuple[int, ...]) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, norm_eps, use_rel_pos,
                  0 if i in global_attn_indexes else window_size, (grid, grid))
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans, eps=1e-6),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans, eps=1e-6),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        pos_embed = self.pos_embed
        if pos_embed is not None:
            x = x + pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
