import torch

from sam.modeling.common import LayerNorm2d


def test_matmul_upscaling_equals_the_transposed_conv_stack(tiny_model):
    decoder = tiny_model.mask_decoder
    torch.manual_seed(1)
    tokens = torch.randn(2, 16 * 16, 256)
    with torch.no_grad():
        reference = decoder.output_upscaling(tokens.transpose(1, 2).reshape(2, 256, 16, 16))
        ours = decoder.upscale(tokens, 16, 16).permute(0, 3, 1, 2)
    assert ours.shape == (2, 32, 64, 64)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_layer_norm_2d_normalises_channels_per_pixel():
    norm = LayerNorm2d(4, eps=1e-6)
    x = torch.randn(2, 4, 3, 5) * 3 + 1
    y = norm(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(2, 3, 5), atol=1e-4, rtol=0)


def test_decoder_outputs_all_four_tokens_and_broadcasts_one_embedding(tiny_model):
    emb = torch.randn(1, 256, 16, 16)
    coords = torch.rand(3, 2, 2) * 256
    labels = torch.tensor([[1, -1]] * 3, dtype=torch.int32)
    with torch.no_grad():
        low, iou = tiny_model.decode(emb, coords, labels)
        low_rep, iou_rep = tiny_model.decode(emb.expand(3, -1, -1, -1), coords, labels)
        single, _ = tiny_model.decode(emb, coords[1:2], labels[1:2])
    assert low.shape == (3, 4, 64, 64) and iou.shape == (3, 4)
    torch.testing.assert_close(low, low_rep)
    torch.testing.assert_close(low[1:2], single, atol=1e-5, rtol=1e-5)


def test_has_mask_flag_switches_between_mask_and_no_mask_embedding(tiny_model):
    emb = torch.randn(1, 256, 16, 16)
    coords = torch.tensor([[[100.0, 100.0], [0.0, 0.0]]] * 2)
    labels = torch.tensor([[1, -1]] * 2, dtype=torch.int32)
    mask = torch.randn(2, 1, 64, 64) * 10
    with torch.no_grad():
        flagged, _ = tiny_model.decode(emb, coords, labels, mask, torch.tensor([1.0, 0.0]))
        with_mask, _ = tiny_model.decode(emb, coords, labels, mask, None)
        without, _ = tiny_model.decode(emb, coords, labels, None, None)
    torch.testing.assert_close(flagged[0], with_mask[0])
    torch.testing.assert_close(flagged[1], without[1])
    assert not torch.allclose(with_mask[1], without[1])
