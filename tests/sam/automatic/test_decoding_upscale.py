"""The fast paths must equal the plain ones bit for bit (torch.equal, not allclose)."""

import pytest
import torch

import sam
from sam import transforms
from sam.automatic.decoding import PointGridDecoder, supports
from sam.automatic.upscale import upscale_logits


def _prompts(b: int, image_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand((b, 1, 2), generator=generator, dtype=torch.float64) * image_size
    coords = torch.cat([points, torch.zeros((b, 1, 2), dtype=torch.float64)], dim=1)
    labels = torch.tensor([[1, -1]], dtype=torch.int32).expand(b, 2)
    return coords, labels


@pytest.mark.parametrize(("b", "chunk"), [(1, 1), (5, 2), (16, 3), (64, 2), (64, 64)])
def test_point_grid_decoder_equals_sam_decode(noisy_tiny_model: sam.Sam, b: int, chunk: int) -> None:
    model = noisy_tiny_model
    g = model.config.embedding_size
    embedding = torch.randn((1, 256, g, g), generator=torch.Generator().manual_seed(b))
    coords, labels = _prompts(b, model.config.image_size, seed=b)
    with torch.inference_mode():
        low_res, iou = model.decode(embedding, coords, labels)
        decoded = PointGridDecoder(model, chunk).decode(embedding, coords, labels)
        assert torch.equal(decoded.iou_predictions, iou)
        assert torch.equal(decoded.low_res_masks(torch.arange(b)), low_res)
        some = torch.tensor([i for i in range(b) if i % 3 != 1], dtype=torch.int64)
        assert torch.equal(decoded.low_res_masks(some), low_res[some])
        assert decoded.low_res_masks(torch.zeros(0, dtype=torch.int64)).shape == (0, 4, 4 * g, 4 * g)


def test_decoder_rejects_unknown_models(disc_model: sam.Sam, noisy_tiny_model: sam.Sam) -> None:
    assert supports(noisy_tiny_model)
    assert not supports(disc_model)  # overrides Sam.decode: the generator must call it
    with pytest.raises(ValueError, match="Sam.decode"):
        PointGridDecoder(disc_model)
    with pytest.raises(ValueError, match="chunk"):
        PointGridDecoder(noisy_tiny_model, 0)


@pytest.mark.parametrize("size", [(96, 128), (128, 96), (1, 1), (3, 500), (500, 3), (256, 256), (61, 333), (300, 300)])
def test_upscale_equals_postprocess_masks(noisy_tiny_model: sam.Sam, size: tuple[int, int]) -> None:
    model = noisy_tiny_model
    low = model.config.low_res_size
    image_size = model.config.image_size
    low_res = torch.randn((3, low, low), generator=torch.Generator().manual_seed(0)) * 4
    input_size = transforms.resized_size(*size, image_size)
    expected = model.postprocess_masks(low_res[:, None], input_size, size)[:, 0]
    assert torch.equal(upscale_logits(low_res, image_size, input_size, size), expected)
