"""Encoder and decoder latency of the model package on this CPU (a benchmark, not a test).

Measures ``Predictor.set_image`` on a 768x1024 image and a one-point ``Predictor.predict`` (which
includes the upsampling to full size), on random weights of a registry config (default vit_b).
Baseline, in the same process and interleaved with ours: the same model with the two optimised
pieces replaced by their textbook forms (relative-position attention with the full bias and
softmax materialised; mask upscaling through the ConvTranspose2d stack). Prints medians and
ratios (ours / baseline, lower is better).

    python bench/bench_model.py [--model vit_b] [--repeats 3] [--predict-repeats 30]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

import sam
from sam.modeling.image_encoder import Attention, relative_position_table
from sam.modeling.mask_decoder import MaskDecoder


def _textbook_rel_pos_attention(self: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h: int,
                                w: int, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor) -> torch.Tensor:
    n = q.shape[0]
    attn = (q * self.scale) @ k.transpose(-2, -1)
    q_grid = q.reshape(n, h, w, -1)
    bias_h = torch.einsum("bhwc,hkc->bhwk", q_grid, relative_position_table(h, h, rel_pos_h))
    bias_w = torch.einsum("bhwc,wkc->bhwk", q_grid, relative_position_table(w, w, rel_pos_w))
    attn = (attn.view(n, h, w, h, w) + bias_h[..., None] + bias_w[..., None, :]).view(n, h * w, h * w)
    return attn.softmax(dim=-1) @ v


def _textbook_upscale(self: MaskDecoder, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    x = self.output_upscaling(tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w))
    return x.permute(0, 2, 3, 1)


@contextlib.contextmanager
def baseline() -> Iterator[None]:
    saved = Attention._attend_with_rel_pos, MaskDecoder.upscale
    Attention._attend_with_rel_pos = _textbook_rel_pos_attention  # type: ignore[method-assign]
    MaskDecoder.upscale = _textbook_upscale  # type: ignore[method-assign]
    try:
        yield
    finally:
        Attention._attend_with_rel_pos, MaskDecoder.upscale = saved  # type: ignore[method-assign]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b", help="registry name or JSON config (random weights)")
    parser.add_argument("--repeats", type=int, default=3, help="set_image repeats per variant")
    parser.add_argument("--predict-repeats", type=int, default=30, help="predict repeats per variant")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = sam.build_model(args.model)
    predictor = sam.Predictor(model)
    image = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    point, label = np.array([[500.0, 375.0]]), np.array([1])

    encode: dict[str, list[float]] = {"ours": [], "baseline": []}
    decode: dict[str, list[float]] = {"ours": [], "baseline": []}
    predictor.set_image(image)  # warm-up
    for _ in range(args.repeats):
        with baseline():
            encode["baseline"].append(timed(lambda: predictor.set_image(image)))
            base_features = predictor.features
        encode["ours"].append(timed(lambda: predictor.set_image(image)))
    diff = float((predictor.features - base_features).abs().max())
    for _ in range(3):
        predictor.predict(point, label)
    for _ in range(args.predict_repeats):
        with baseline():
            decode["baseline"].append(timed(lambda: predictor.predict(point, label)))
        decode["ours"].append(timed(lambda: predictor.predict(point, label)))

    print(f"model {args.model}, image 768x1024, torch threads {torch.get_num_threads()}")
    for name, runs, unit, scale in (("set_image", encode, "s", 1.0), ("predict (1 point)", decode, "ms", 1e3)):
        ours, base = statistics.median(runs["ours"]), statistics.median(runs["baseline"])
        print(f"{name:18s} ours {ours * scale:8.2f} {unit}   baseline {base * scale:8.2f} {unit}   "
              f"ratio {ours / base:.2f}   (medians of {len(runs['ours'])})")
    print(f"max |embedding ours - baseline| = {diff:.2e}")


if __name__ == "__main__":
    main()
