"""The transport-neutral core against a fake inference backend (no Triton): how prompt sets become
decoder calls, token choice, ranking, measurements, mask ids, caching and validation."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from sam.prompts import PromptSet, pack_prompt_set
from sam.transforms import upscale_logits
from server import codecs
from server.backend.triton_client import ModelInfo
from server.errors import InvalidArgument, NotFound, Unavailable
from server.service import (
    ImageSource,
    MaskEncoding,
    MultimaskMode,
    Prompt,
    SegmentationService,
    choose_multimask,
    mask_boxes,
)
from server.settings import Settings
from tests.server.helpers import png, scene

INFO = ModelInfo(name="fake", version="v1", image_size=64, embedding_size=4, low_res_size=16, mask_threshold=0.0)


class FakeBackend:
    """Deterministic stand-in: the embedding is a function of the image; the decoder's logits are a
    function of the first packed point, its IoU scores a fixed permutation per token."""

    def __init__(self, embed_delay_s: float = 0.0) -> None:
        self.embed_calls = 0
        self.decode_calls: list[dict[str, np.ndarray]] = []
        self.embed_delay_s = embed_delay_s
        self.available = True

    async def ready(self) -> bool:
        return self.available

    async def model_info(self) -> ModelInfo:
        if not self.available:
            raise Unavailable("down")
        return INFO

    async def embed(self, image: np.ndarray) -> np.ndarray:
        self.embed_calls += 1
        await asyncio.sleep(self.embed_delay_s)
        assert max(image.shape[:2]) == INFO.image_size
        return np.full(INFO.embedding_shape, float(image.mean()), np.float32)

    async def decode(
        self,
        embedding: np.ndarray,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        mask_input: np.ndarray,
        has_mask_input: np.ndarray,
        *,
        embedding_key: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        self.decode_calls.append(
            {"coords": point_coords, "labels": point_labels, "mask_input": mask_input, "has_mask": has_mask_input}
        )
        b, size = point_coords.shape[0], INFO.low_res_size
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        low = np.empty((b, 4, size, size), np.float32)
        for i in range(b):
            x, y = point_coords[i, 0] * size / INFO.image_size
            for t in range(4):
                low[i, t] = (2.0 + t) - np.hypot(xx - x, yy - y) + has_mask_input[i] * mask_input[i, 0]
        iou = np.tile(np.array([0.5, 0.7, 0.9, 0.8], np.float32), (b, 1)) + np.arange(b, dtype=np.float32)[:, None]
        return low, iou

    def invalidate(self) -> None:
        pass

    async def close(self) -> None:
        pass


def _settings(**overrides: Any) -> Settings:
    return Settings(**overrides)


def _prompt(
    *points: tuple[float, float, int],
    box: tuple[float, ...] | None = None,
    field: str = "prompt_sets[0]",
    mask_logits: np.ndarray | None = None,
    mask_id: str | None = None,
) -> Prompt:
    coords = np.array([(x, y) for x, y, _ in points], np.float64).reshape(-1, 2)
    labels = np.array([label for *_, label in points], np.int32)
    return Prompt(coords, labels, None if box is None else np.array(box, np.float64), mask_logits, mask_id, field)


@pytest.fixture()
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture()
def service(backend: FakeBackend) -> SegmentationService:
    return SegmentationService(backend, _settings())


@pytest.fixture()
async def record(service: SegmentationService) -> Any:
    return await service.embed_image(ImageSource(png(scene(48, 80, seed=3))))


def test_token_choice() -> None:
    one_point = _prompt((1, 1, 1))
    assert choose_multimask(one_point, MultimaskMode.AUTO)
    assert not choose_multimask(_prompt((1, 1, 1), (2, 2, 0)), MultimaskMode.AUTO)
    assert not choose_multimask(_prompt(box=(0, 0, 5, 5)), MultimaskMode.AUTO)
    assert not choose_multimask(_prompt((1, 1, 1), mask_id="m"), MultimaskMode.AUTO)
    assert choose_multimask(_prompt(box=(0, 0, 5, 5)), MultimaskMode.MULTI)
    assert not choose_multimask(one_point, MultimaskMode.SINGLE)


def test_mask_boxes_match_a_brute_force() -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((5, 13, 17), bool)
    masks[0, 3:7, 2:9] = True
    masks[1] = rng.random((13, 17)) > 0.9
    masks[2, 12, 16] = True
    masks[3, 0, 0] = True
    boxes = mask_boxes(masks)
    for mask, box in zip(masks, boxes, strict=True):
        if mask.any():
            ys, xs = np.nonzero(mask)
            assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
        else:
            assert box.tolist() == [0, 0, 0, 0]


async def test_sets_of_equal_packed_length_share_one_decoder_call(
    service: SegmentationService, backend: FakeBackend, record: Any
) -> None:
    prompts = [
        _prompt((10, 10, 1), field="prompt_sets[0]"),  # packs to 2 (point + padding)
        _prompt(box=(5, 5, 40, 30), field="prompt_sets[1]"),  # 2 (two corners)
        _prompt((10, 10, 1), (20, 20, 0), field="prompt_sets[2]"),  # 3
        _prompt((30, 20, 1), box=(5, 5, 40, 30), field="prompt_sets[3]"),  # 3
        _prompt((60, 40, 1), field="prompt_sets[4]"),  # 2
    ]
    results = await service.segment(record, prompts, MultimaskMode.AUTO)
    assert sorted(call["coords"].shape[:2] for call in backend.decode_calls) == [(2, 3), (3, 2)]
    # Each set was packed exactly as the model package packs it, in its group.
    packed = [pack_prompt_set(PromptSet(p.points, p.labels, p.box), record.original_size, 64) for p in prompts]
    rows = [
        (coords, labels)
        for call in backend.decode_calls
        for coords, labels in zip(call["coords"], call["labels"], strict=True)
    ]
    assert len(rows) == len(prompts)
    for coords, labels in packed:
        assert any(
            c.shape == coords.shape and np.array_equal(c, coords) and np.array_equal(lab, labels) for c, lab in rows
        )
    assert [len(r) for r in results] == [3, 1, 1, 1, 3]
    for masks in results:
        scores = [m.score for m in masks]
        assert scores == sorted(scores, reverse=True)


async def test_tokens_and_scores_follow_the_mode(service: SegmentationService, record: Any) -> None:
    prompt = [_prompt((10, 10, 1))]
    (multi,) = await service.segment(record, prompt, MultimaskMode.MULTI, MaskEncoding.LOW_RES_LOGITS)
    (single,) = await service.segment(record, prompt, MultimaskMode.SINGLE, MaskEncoding.LOW_RES_LOGITS)
    # Fake scores per token: 0.5, 0.7, 0.9, 0.8 -> MULTI ranks tokens 2, 3, 1; SINGLE is token 0.
    np.testing.assert_allclose([m.score for m in multi], [0.9, 0.8, 0.7])
    np.testing.assert_allclose([m.score for m in single], [0.5])
    offsets = [float(m.low_res_logits.max()) for m in (*multi, *single)]  # fake logits peak at 2 + token
    np.testing.assert_allclose(offsets, [4.0, 5.0, 3.0, 2.0], atol=0.3)


async def test_masks_are_upscaled_measured_and_encoded(service: SegmentationService, record: Any) -> None:
    prompt = [_prompt((30, 20, 1))]
    (rle,) = await service.segment(record, prompt, MultimaskMode.SINGLE, MaskEncoding.RLE)
    (png_mask,) = await service.segment(record, prompt, MultimaskMode.SINGLE, MaskEncoding.PNG)
    (low,) = await service.segment(record, prompt, MultimaskMode.SINGLE, MaskEncoding.LOW_RES_LOGITS)
    expected = upscale_logits(low[0].low_res_logits[None], record.input_size, record.original_size, 64)[0] > 0
    assert rle[0].rle is not None and png_mask[0].png is not None
    np.testing.assert_array_equal(codecs.decode_rle(rle[0].rle), expected)
    assert rle[0].area_px == png_mask[0].area_px == int(expected.sum()) > 0
    ys, xs = np.nonzero(expected)
    assert rle[0].bbox == (xs.min(), ys.min(), xs.max(), ys.max())


async def test_mask_ids_refine_and_are_checked(service: SegmentationService, backend: FakeBackend, record: Any) -> None:
    (first,) = await service.segment(record, [_prompt((10, 10, 1))], MultimaskMode.SINGLE)
    mask_id = first[0].mask_id
    stored = service.masks.get(mask_id)
    assert stored is not None and stored.image_id == record.image_id
    await service.segment(record, [_prompt((12, 12, 1), mask_id=mask_id)])
    call = backend.decode_calls[-1]
    assert call["has_mask"].tolist() == [1.0]
    np.testing.assert_array_equal(call["mask_input"][0, 0], stored.logits)
    with pytest.raises(NotFound) as missing:
        await service.segment(record, [_prompt((12, 12, 1), mask_id="gone")])
    assert missing.value.reason == "MASK_NOT_FOUND"
    other = await service.embed_image(ImageSource(png(scene(30, 30, seed=9))))
    with pytest.raises(InvalidArgument) as wrong_image:
        await service.segment(other, [_prompt((12, 12, 1), mask_id=mask_id)])
    assert wrong_image.value.field_violations[0].field == "prompt_sets[0].mask.mask_id"


async def test_no_mask_ids_without_a_mask_cache(backend: FakeBackend) -> None:
    service = SegmentationService(backend, _settings(mask_cache_entries=0))
    record = await service.embed_image(ImageSource(png(scene(20, 20))))
    (masks,) = await service.segment(record, [_prompt((3, 3, 1))])
    assert all(m.mask_id == "" for m in masks)


async def test_geometry_is_checked_against_the_original_image(service: SegmentationService, record: Any) -> None:
    height, width = record.original_size  # 48 x 80
    with pytest.raises(InvalidArgument) as caught:
        await service.segment(
            record,
            [
                _prompt((width, 0, 1), field="prompt_sets[0]"),
                _prompt((width - 0.5, height - 0.5, 1), field="prompt_sets[1]"),  # inside
                _prompt(box=(0, 0, width, height + 1), field="prompt_sets[2]"),
            ],
        )
    assert caught.value.reason == "POINT_OUTSIDE_IMAGE"
    assert [v.field for v in caught.value.field_violations] == [
        "prompt_sets[0].points[0].x",
        "prompt_sets[2].box.y_max",
    ]
    await service.segment(record, [_prompt(box=(0, 0, width, height))])  # the whole image is a valid box


async def test_single_flight_and_cache_hits(backend: FakeBackend) -> None:
    backend.embed_delay_s = 0.05
    service = SegmentationService(backend, _settings())
    source = ImageSource(png(scene(40, 40, seed=5)))
    records = await asyncio.gather(*(service.embed_image(source) for _ in range(8)))
    assert backend.embed_calls == 1 and not any(r.cached for r in records)
    again = await service.embed_image(source)
    assert again.cached and backend.embed_calls == 1
    assert (await service.lookup_image(again.image_id)).cached


async def test_byte_bound_eviction_and_lookup(backend: FakeBackend) -> None:
    nbytes = INFO.embedding_nbytes
    service = SegmentationService(backend, _settings(cache_capacity_bytes=2 * nbytes))
    ids = [(await service.embed_image(ImageSource(png(scene(20, 20, seed=i))))).image_id for i in range(3)]
    assert service.embeddings.bytes_used == 2 * nbytes
    with pytest.raises(NotFound) as caught:
        await service.lookup_image(ids[0])
    assert caught.value.reason == "EMBEDDING_NOT_FOUND"
    await service.lookup_image(ids[2])
    with pytest.raises(InvalidArgument):
        await service.lookup_image("ABC")


async def test_raw_images_and_decoding_errors(service: SegmentationService) -> None:
    pixels = scene(10, 12, seed=8)
    record = await service.embed_image(ImageSource(pixels.tobytes(), raw_size=(12, 10), field="image.raw"))
    assert record.original_size == (10, 12) and record.input_size == (53, 64)
    with pytest.raises(InvalidArgument) as caught:
        await service.embed_image(ImageSource(b"\x89PNG broken", field="image.encoded"))
    assert caught.value.reason == "IMAGE_DECODE_FAILED"
    assert caught.value.field_violations[0].field == "image.encoded"


async def test_a_changed_model_drops_the_cache(backend: FakeBackend, service: SegmentationService) -> None:
    await service.embed_image(ImageSource(png(scene(20, 20))))
    assert len(service.embeddings) == 1
    changed = ModelInfo(**{**INFO.__dict__, "version": "v2"})

    async def model_info() -> ModelInfo:
        return changed

    backend.model_info = model_info  # type: ignore[method-assign]
    assert (await service.model_info()).model_id == "fake@v2"
    assert len(service.embeddings) == 0


async def test_large_jobs_split_over_worker_threads_give_the_same_masks(
    service: SegmentationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    import server.service as module

    record = await service.embed_image(ImageSource(png(scene(120, 200, seed=4))))
    prompts = [_prompt((30 + 10 * i, 40, 1), field=f"prompt_sets[{i}]") for i in range(5)]
    monkeypatch.setattr(module, "INLINE_POSTPROCESS_VALUES", 1 << 40)
    inline = await service.segment(record, prompts, MultimaskMode.MULTI, MaskEncoding.RLE)
    monkeypatch.setattr(module, "INLINE_POSTPROCESS_VALUES", 0)
    threaded = await service.segment(record, prompts, MultimaskMode.MULTI, MaskEncoding.RLE)
    assert [[(m.score, m.area_px, m.bbox, m.rle) for m in r] for r in inline] == [
        [(m.score, m.area_px, m.bbox, m.rle) for m in r] for r in threaded
    ]
    service.close()  # afterwards everything runs inline
    assert len(await service.segment(record, prompts, MultimaskMode.MULTI)) == 5
