"""Models and images for the automatic generator's tests.

Random weights make masks that cover most of the image, so NMS leaves one. ``disc_model`` replaces
the decoder by a formula: around each prompt point, token 0 is a small disc, token 1 a large disc,
token 2 a disc with a separate small island, token 3 a ring (a mask with a hole), with predicted IoUs
taken from a coarse hash of the point (many ties). Its masks are local, so grids, crops, NMS and
small-region removal all have work to do.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

import sam
from sam.modeling.sam import Sam

DISC_LOGIT_SCALE = 8.0


class DiscSam(Sam):
    """A tiny :class:`Sam` whose ``decode`` draws discs and rings around the first point."""

    def decode(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
               mask_input: torch.Tensor | None = None,
               has_mask_input: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.config.low_res_size
        scale = size / self.config.image_size
        point = point_coords[:, 0].to(torch.float32) * scale  # B x 2, low-res pixels
        centres = torch.arange(size, dtype=torch.float32) + 0.5
        dy = centres[None, :, None] - point[:, None, None, 1]
        dx = centres[None, None, :] - point[:, None, None, 0]
        dist = torch.sqrt(dx * dx + dy * dy)  # B x L x L
        island = torch.sqrt((dx - 12) ** 2 + dy * dy)
        small = 4 - dist
        large = 20 - dist
        with_island = torch.maximum(6 - dist, 1.5 - island)
        ring = 2 - (dist - 8).abs()
        logits = torch.stack([small, large, with_island, ring], dim=1) * DISC_LOGIT_SCALE
        x, y = point_coords[:, 0, 0].floor(), point_coords[:, 0, 1].floor()
        token = torch.arange(4, dtype=torch.float32)
        bucket = torch.remainder(x[:, None] * 7 + y[:, None] * 13 + token * 5, 10)
        iou = (0.75 + 0.025 * bucket).to(torch.float32)
        return logits.to(torch.float32), iou


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Runs these tests on one intra-op thread: the tiny model's ops are too small to gain from more,
    and on a shared 2-core machine OpenMP barriers waiting for a descheduled thread made this
    directory 20x slower (15 s vs 5 min under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def noisy_tiny_model() -> Sam:
    """The tiny config with large random perturbations: logits of several units, varied IoUs."""
    torch.manual_seed(0)
    model = sam.build_model("tiny")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model


@pytest.fixture(scope="session")
def disc_model() -> DiscSam:
    torch.manual_seed(0)
    base = sam.build_model("tiny")
    return DiscSam(base.config, base.image_encoder, base.prompt_encoder, base.mask_decoder).eval()


@pytest.fixture(scope="session")
def scene() -> np.ndarray:
    """A 96x128 RGB image: two coloured rectangles on a background, with noise."""
    rng = np.random.default_rng(0)
    image = np.zeros((96, 128, 3), np.uint8)
    image[:] = (30, 60, 90)
    image[16:56, 24:72] = (200, 50, 50)
    image[48:88, 80:120] = (20, 220, 40)
    return (image + rng.integers(0, 20, image.shape)).astype(np.uint8)
