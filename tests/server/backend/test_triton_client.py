"""The async Triton client against the session's real tritonserver, and its error mapping table."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from sam.transforms import resize_image
from server.backend.local_triton import free_ports
from server.backend.triton_client import SHARED_OUTPUT_SETS, ModelInfo, TritonClient, map_triton_error
from server.errors import DeadlineExceeded, Internal, InvalidArgument, Unavailable
from tests.server.helpers import scene

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(r"ignore:.*torch\.jit\..* is deprecated:DeprecationWarning"),
]


@pytest.fixture()
async def plain(sam_service: Any) -> AsyncIterator[TritonClient]:
    client = TritonClient(sam_service.triton_url)
    yield client
    await client.close()


def _prompts(batch: int) -> tuple[np.ndarray, ...]:
    coords = np.tile(np.array([[[40.0, 50.0], [0.0, 0.0]]], np.float32), (batch, 1, 1))
    coords[:, 0, 0] += np.arange(batch) * 20
    labels = np.tile(np.array([[1, -1]], np.int32), (batch, 1))
    mask = np.random.default_rng(1).standard_normal((batch, 1, 64, 64)).astype(np.float32)
    has_mask = (np.arange(batch) % 2).astype(np.float32)
    return coords, labels, mask, has_mask


def _shm_regions(triton_url: str) -> list[str]:
    client = triton_grpc.InferenceServerClient(triton_url)
    try:
        status = client.get_system_shared_memory_status(as_json=True)
    finally:
        client.close()
    return sorted(status.get("regions", {}))


async def test_model_info_ready_and_shapes(plain: TritonClient) -> None:
    assert await plain.ready()
    info = await plain.model_info()
    assert info == ModelInfo("tiny", info.version, 256, 16, 64, 0.0, 256)
    assert info.model_id == f"tiny@{info.version}" and info.embedding_nbytes == 262144
    embedding = await plain.embed(resize_image(scene(120, 200, seed=2), 256))
    assert embedding.shape == (256, 16, 16) and embedding.dtype == np.float32
    low_res, iou = await plain.decode(embedding, *_prompts(3))
    assert low_res.shape == (3, 4, 64, 64) and iou.shape == (3, 4)


def _unregister_all(admin: triton_grpc.InferenceServerClient) -> None:
    """Triton refuses (INTERNAL) to unregister a region a just-answered request still holds for a
    moment; retry for up to 5 s."""
    deadline = time.monotonic() + 5
    while True:
        try:
            admin.unregister_system_shared_memory()
            return
        except InferenceServerException as error:
            if error.status() != "StatusCode.INTERNAL" or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def test_shared_memory_gives_the_same_tensors_and_is_released(plain: TritonClient, sam_service: Any) -> None:
    image = resize_image(scene(150, 100, seed=3), 256)
    expected = await plain.embed(image)
    expected_low, expected_iou = await plain.decode(expected, *_prompts(2))
    shared = TritonClient(sam_service.triton_url, use_shared_memory=True)
    try:
        embedding = await shared.embed(image)
        np.testing.assert_array_equal(embedding, expected)
        low, iou = await shared.decode(embedding, *_prompts(2))
        np.testing.assert_array_equal(low, expected_low)
        np.testing.assert_array_equal(iou, expected_iou)
        regions = _shm_regions(sam_service.triton_url)
        assert len(regions) == 1 and regions[0].startswith(f"sam-gw-{os.getpid()}-")  # one region, reused
        # Triton forgets registrations (as after a restart): the client registers again and retries.
        admin = triton_grpc.InferenceServerClient(sam_service.triton_url)
        _unregister_all(admin)
        admin.close()
        low_again, _ = await shared.decode(embedding, *_prompts(2))
        np.testing.assert_array_equal(low_again, expected_low)
        assert shared.use_shared_memory
    finally:
        await shared.close()
    assert _shm_regions(sam_service.triton_url) == []
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(f"sam-gw-{os.getpid()}-")]


async def test_shared_memory_outputs_and_the_held_embedding(plain: TritonClient, sam_service: Any) -> None:
    first = await plain.embed(resize_image(scene(150, 100, seed=4), 256))
    second = await plain.embed(resize_image(scene(90, 160, seed=5), 256))
    many = SHARED_OUTPUT_SETS + 2  # more sets than the region keeps room for: outputs in the response
    expected = {name: await plain.decode(emb, *_prompts(2)) for name, emb in (("first", first), ("second", second))}
    expected_many = await plain.decode(first, *_prompts(many))
    shared = TritonClient(sam_service.triton_url, use_shared_memory=True)
    try:
        for _ in range(2):  # the second round finds "first" held in the region and sends it as it is
            low, iou = await shared.decode(first, *_prompts(2), embedding_key="m/first")
            np.testing.assert_array_equal(low, expected["first"][0])
            np.testing.assert_array_equal(iou, expected["first"][1])
        region = shared._pool._all[0]  # type: ignore[union-attr]  # Triton wrote the masks after the embedding
        in_region = shm.get_contents_as_numpy(region.handle, np.float32, list(low.shape), first.nbytes)
        np.testing.assert_array_equal(in_region, expected["first"][0])
        # A key names its embedding for good: under the same key the region is not written again.
        low, _ = await shared.decode(second, *_prompts(2), embedding_key="m/first")
        np.testing.assert_array_equal(low, expected["first"][0])
        low, _ = await shared.decode(second, *_prompts(2), embedding_key="m/second")
        np.testing.assert_array_equal(low, expected["second"][0])
        # The encoder writes its output where the embedding was: the held key is forgotten.
        await shared.embed(resize_image(scene(60, 60, seed=6), 256))
        low, _ = await shared.decode(second, *_prompts(2), embedding_key="m/second")
        np.testing.assert_array_equal(low, expected["second"][0])
        low, iou = await shared.decode(first, *_prompts(many), embedding_key="m/first")
        np.testing.assert_array_equal(low, expected_many[0])
        np.testing.assert_array_equal(iou, expected_many[1])
        assert shared.use_shared_memory and len(_shm_regions(sam_service.triton_url)) == 1
    finally:
        await shared.close()


async def test_a_dead_triton_is_unavailable_quickly() -> None:
    (port,) = free_ports(1)
    client = TritonClient(f"127.0.0.1:{port}")
    try:
        start = time.monotonic()
        assert not await client.ready()
        with pytest.raises(Unavailable) as caught:
            await client.embed(np.zeros((256, 256, 3), np.uint8))
        assert caught.value.reason == "BACKEND_UNAVAILABLE" and caught.value.retry_delay_s
        with pytest.raises(Unavailable):
            await client.model_info()
        assert time.monotonic() - start < 5
    finally:
        await client.close()


async def test_a_model_failure_is_internal_without_triton_internals(plain: TritonClient) -> None:
    with pytest.raises(Internal) as caught:
        await plain.embed(np.zeros((300, 10, 3), np.uint8))  # long side is not the image size
    assert "incident id" in caught.value.message and "TorchScript" not in caught.value.message
    assert caught.value.metadata["model"] == "sam_encoder"


@pytest.mark.parametrize(
    ("status", "message", "expected", "reason"),
    [
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", Unavailable, "BACKEND_UNAVAILABLE"),
        ("StatusCode.NOT_FOUND", "Request for unknown model: 'sam_encoder' is not found", Unavailable,
         "BACKEND_UNAVAILABLE"),
        ("StatusCode.UNAVAILABLE", "Request for unknown model: 'sam_decoder' has no available versions", Unavailable,
         "BACKEND_UNAVAILABLE"),
        ("StatusCode.INTERNAL", "model 'sam_encoder' is not ready", Unavailable, "BACKEND_UNAVAILABLE"),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", DeadlineExceeded, "DEADLINE_EXCEEDED"),
        ("StatusCode.INVALID_ARGUMENT", "unexpected shape for input 'point_coords'", InvalidArgument,
         "INVALID_ARGUMENT"),
        ("StatusCode.INTERNAL", "RuntimeError: boom\ntraceback...", Internal, "INTERNAL"),
        ("StatusCode.UNKNOWN", "", Internal, "INTERNAL"),
    ],
)  # fmt: skip
def test_triton_errors_map_to_service_errors(status: str, message: str, expected: type, reason: str) -> None:
    error = map_triton_error(InferenceServerException(msg=message, status=status), "sam_encoder", 30.0)
    assert type(error) is expected and error.reason == reason
    if expected is Internal:
        assert "boom" not in error.message and "incident_id" in error.metadata
    assert map_triton_error(TimeoutError(), "m", 2.0).code == DeadlineExceeded.code
    assert isinstance(map_triton_error(ConnectionRefusedError(), "m", 2.0), Unavailable)
