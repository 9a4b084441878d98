import pytest
import torch

from sam.modeling.image_encoder import Attention, merge_windows, partition_windows, relative_position_table


def _explicit_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Textbook form: softmax(scale*q.k + q.Rh[dh] + q.Rw[dw]) v, with the full bias materialised."""
    b, h, w, c = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4).reshape(3, b * heads, h * w, -1)
    q, k, v = qkv[0], qkv[1], qkv[2]
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    ys = torch.arange(h).repeat_interleave(w)
    xs = torch.arange(w).repeat(h)
    rh = attn.rel_pos_h[(ys[:, None] - ys[None, :]) + h - 1]  # (hw) x (hw) x C
    rw = attn.rel_pos_w[(xs[:, None] - xs[None, :]) + w - 1]
    logits = logits + torch.einsum("bic,ijc->bij", q, rh) + torch.einsum("bic,ijc->bij", q, rw)
    out = logits.softmax(-1) @ v
    return attn.proj(out.view(b, heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1))


@pytest.mark.parametrize(("size", "chunk_limit"), [(14, None), (16, None), (16, 4 * 16 * 16 * 16 * 3)])
def test_fused_relative_position_attention_equals_the_explicit_formula(size, chunk_limit):
    torch.manual_seed(0)
    attn = Attention(dim=32, num_heads=2, qkv_bias=True, use_rel_pos=True, input_size=(size, size))
    with torch.no_grad():
        attn.rel_pos_h.normal_(0, 0.5)
        attn.rel_pos_w.normal_(0, 0.5)
    x = torch.randn(2, size, size, 32)
    if chunk_limit is not None:  # force the query-chunked path
        attn.bias_chunk_elements = chunk_limit
    with torch.no_grad():
        torch.testing.assert_close(attn(x), _explicit_attention(attn, x), atol=1e-5, rtol=1e-5)


def test_relative_position_table_indexes_offsets():
    table = torch.arange(7.0)[:, None]  # offsets -3..3 for size 4
    out = relative_position_table(4, 4, table)[..., 0]
    assert out[0, 0] == 3 and out[3, 0] == 6 and out[0, 3] == 0


def test_window_partition_pads_with_zeros_and_round_trips():
    x = torch.randn(2, 16, 16, 3)
    windows, padded = partition_windows(x, 14)
    assert padded == (28, 28) and windows.shape == (8, 14, 14, 3)
    assert windows[1, :, 2:].abs().sum() == 0  # right window of the first row: 2 real columns
    torch.testing.assert_close(merge_windows(windows, 14, padded, (16, 16)), x)
