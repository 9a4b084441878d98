"""The fast paths must equal the plain ones, with one and with two threads (PyTorch's kernels do
not always round the same way in both). Upscaling must match bit for bit. The point-grid decoder
shares the image-side attention across the point batch, so its matmuls have other shapes than
``Sam.decode``'s: on some CPUs (an AVX2 one here) that still gave bitwise-equal results, on others
(an AVX-512 AMD EPYC) the last float32 bits differ (mask logits by up to ~4e-5 on values of a few
units), so it is held to float32 rounding: relative 1e-5, absolute 1e-5 of the largest logit."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

import sam
from sam import transforms
from sam.automatic.decoding import PointGridDecoder, supports
from sam.automatic.upscale import upscale_logits


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _prompts(b: int, image_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand((b, 1, 2), generator=generator, dtype=torch.float64) * image_size
    coords = torch.cat([points, torch.zeros((b, 1, 2), dtype=torch.float64)], dim=1)
    labels = torch.tensor([[1, -1]], dtype=torch.int32).expand(b, 2)
    return coords, labels


@pytest.mark.parametrize(("b", "chunk", "threads"), [(1, 1, 1), (5, 2, 1), (16, 3, 1), (64, 2, 1), (64, 64, 1),
                                                     (16, 3, 2)])
def test_point_grid_decoder_equals_sam_decode(noisy_tiny_model: sam.Sam, b: int, chunk: int, threads: int) -> None:
    model = noisy_tiny_model
    g = model.config.embedding_size
    embedding = torch.randn((1, 256, g, g), generator=torch.Generator().manual_seed(b))
    coords, labels = _prompts(b, model.config.image_size, seed=b)
    with torch.inference_mode(), _threads(threads):
        low_res, iou = model.decode(embedding, coords, labels)
        decoded = PointGridDecoder(model, chunk).decode(embedding, coords, labels)
        scale = float(low_res.abs().max())
        torch.testing.assert_close(decoded.iou_predictions, iou, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(decoded.low_res_masks(torch.arange(b)), low_res, rtol=1e-5, atol=1e-5 * scale)
        some = torch.tensor([i for i in range(b) if i % 3 != 1], dtype=torch.int64)
        torch.testing.assert_close(decoded.low_res_masks(some), low_res[some], rtol=1e-5, atol=1e-5 * scale)
        assert decoded.low_res_masks(torch.zeros(0, dtype=torch.int64)).shape == (0, 4, 4 * g, 4 * g)


def test_decoder_rejects_unknown_models(disc_model: sam.Sam, noisy_tiny_model: sam.Sam) -> None:
    assert supports(noisy_tiny_model)
    assert not supports(disc_model)  # overrides Sam.decode: the generator must call it
    with pytest.raises(ValueError, match="Sam.decode"):
        PointGridDecoder(disc_model)
    with pytest.raises(ValueError, match="chunk"):
        PointGridDecoder(noisy_tiny_model, 0)


@pytest.mark.parametrize(("size", "threads"), [((96, 128), 1), ((128, 96), 1), ((1, 1), 1), ((3, 500), 1),
                                               ((500, 3), 1), ((256, 256), 1), ((61, 333), 1), ((300, 300), 1),
                                               ((96, 128), 2), ((61, 333), 2), ((300, 300), 2)])
def test_upscale_equals_postprocess_masks(noisy_tiny_model: sam.Sam, size: tuple[int, int], threads: int) -> None:
    model = noisy_tiny_model
    low = model.config.low_res_size
    image_size = model.config.image_size
    low_res = torch.randn((4, 3, low, low), generator=torch.Generator().manual_seed(0)) * 4
    input_size = transforms.resized_size(*size, image_size)
    with _threads(threads):
        # What the reference generator computes: all 3 multimask outputs of a point batch at once.
        expected = model.postprocess_masks(low_res, input_size, size).flatten(0, 1)
        flat = low_res.flatten(0, 1)
        assert torch.equal(upscale_logits(flat, image_size, input_size, size), expected)
        for some in ([5], [0, 1, 2, 3], [2, 7, 11], list(range(1, 12, 2))):
            assert torch.equal(upscale_logits(flat[some], image_size, input_size, size), expected[some])
        assert upscale_logits(flat[:0], image_size, input_size, size).shape == (0, *size)
