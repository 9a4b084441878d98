"""Client behaviour against a tiny in-test server: retry on UNAVAILABLE (a server that starts late),
deadlines, no retry of other codes, image-id reuse, bearer token, error details, sync and async."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from fake_server import SERVICE, FakeService, model_info
from sam_client import (
    AsyncSamClient,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    RetryPolicy,
    SamClient,
    UnavailableError,
    image_id,
)
from sam_client._proto import segment_anything_pb2 as pb

from server import codecs
from server.errors import FieldViolation, InvalidArgument, NotFound, Reason, Unavailable

FAST_RETRY = RetryPolicy(max_attempts=100, initial_backoff_s=0.05, max_backoff_s=0.3)


def _start_late(service: FakeService, port: int, delay_s: float) -> tuple[threading.Thread, list]:
    servers: list = []

    def start() -> None:
        time.sleep(delay_s)
        servers.append(service.start(port)[0])

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    return thread, servers


def test_sync_client_retries_unavailable_until_a_late_server_starts(free_port: int) -> None:
    service = FakeService({"GetModelInfo": model_info})
    thread, servers = _start_late(service, free_port, 1.0)
    try:
        with SamClient(f"127.0.0.1:{free_port}", timeout_s=15, retry=FAST_RETRY) as client:
            started = time.monotonic()
            info = client.model_info()
            elapsed = time.monotonic() - started
        assert info.name == "fake"
        assert elapsed >= 0.9  # it really waited for the server
        assert service.methods() == ["GetModelInfo"]
    finally:
        thread.join()
        for server in servers:
            server.stop(None)


async def test_async_client_retries_unavailable_until_a_late_server_starts(free_port: int) -> None:
    service = FakeService({"GetModelInfo": model_info})
    thread, servers = _start_late(service, free_port, 1.0)
    try:
        async with AsyncSamClient(f"127.0.0.1:{free_port}", timeout_s=15, retry=FAST_RETRY) as client:
            info = await client.model_info()
        assert info.embedding_shape == (256, 64, 64)
    finally:
        thread.join()
        for server in servers:
            server.stop(None)


def test_retries_stop_at_the_deadline_when_nothing_listens(free_port: int) -> None:
    with SamClient(f"127.0.0.1:{free_port}", timeout_s=1.0, retry=FAST_RETRY) as client:
        started = time.monotonic()
        with pytest.raises((UnavailableError, DeadlineExceededError)) as caught:
            client.model_info()
        elapsed = time.monotonic() - started
    assert elapsed < 1.5  # never past the deadline (plus scheduling slack)
    assert getattr(caught.value, "attempts", 1) > 1


def test_retry_honours_the_servers_retry_info_and_then_succeeds() -> None:
    answers = iter([Unavailable("warming up", Reason.BACKEND_UNAVAILABLE, retry_delay_s=0.3), None])

    def flaky(request, context):
        error = next(answers)
        if error is not None:
            raise error
        return model_info(request, context)

    service = FakeService({"GetModelInfo": flaky})
    server, port = service.start()
    try:
        with SamClient(f"127.0.0.1:{port}", retry=FAST_RETRY) as client:
            started = time.monotonic()
            assert client.model_info().name == "fake"
            assert time.monotonic() - started >= 0.3
        assert service.methods() == ["GetModelInfo", "GetModelInfo"]
    finally:
        server.stop(None)


def test_other_errors_are_not_retried_and_keep_code_and_field() -> None:
    def bad(request, context):
        raise InvalidArgument(
            "x=5000 is outside the 640x480 image",
            Reason.POINT_OUTSIDE_IMAGE,
            field_violations=[FieldViolation("prompt_sets[0].points[0].x", "must be < 640")],
        )

    service = FakeService({"Segment": bad})
    server, port = service.start()
    try:
        with SamClient(f"127.0.0.1:{port}", retry=FAST_RETRY) as client:
            with pytest.raises(InvalidArgumentError) as caught:
                client.segment(image_id="a" * 64, points=[(5000, 10)])
        error = caught.value
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.reason == "POINT_OUTSIDE_IMAGE"
        assert error.fields == ("prompt_sets[0].points[0].x",)
        assert service.methods() == ["Segment"]  # exactly one attempt
    finally:
        server.stop(None)


@pytest.mark.parametrize("use_async", [False, True])
def test_a_slow_server_hits_the_deadline(use_async: bool) -> None:
    def slow(request, context):
        time.sleep(3)
        return model_info(request, context)

    service = FakeService({"GetModelInfo": slow})
    server, port = service.start()
    try:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError) as caught:
            if use_async:

                async def call() -> None:
                    async with AsyncSamClient(f"127.0.0.1:{port}", timeout_s=0.5) as client:
                        await client.model_info()

                asyncio.run(call())
            else:
                with SamClient(f"127.0.0.1:{port}", timeout_s=0.5) as client:
                    client.model_info()
        assert 0.4 <= time.monotonic() - started < 2.0
        assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        with SamClient(f"127.0.0.1:{port}", timeout_s=10) as client:  # a per-call deadline overrides
            with pytest.raises(DeadlineExceededError):
                client.model_info(timeout_s=0.3)
    finally:
        server.stop(None)


def _segment_service(cached: set[str]) -> FakeService:
    """Segment that knows only ``cached`` ids; an inline image gets cached."""

    def segment(request, context):
        if request.WhichOneof("image_source") == "image_id":
            if request.image_id not in cached:
                raise NotFound(f"image {request.image_id} is not cached", Reason.EMBEDDING_NOT_FOUND)
            key = request.image_id
        else:
            raw = request.image.raw
            key = codecs.image_id(raw.rgb, (raw.width_px, raw.height_px))
            cached.add(key)
        mask = np.zeros((4, 6), bool)
        mask[1:3, 2:5] = True
        (rle,) = codecs.encode_rle(mask[None])
        masks = [
            pb.Mask(mask_id=f"m{i}", score=0.9 - i / 10, area_px=6, bbox=pb.Box(x_min=2, y_min=1, x_max=4, y_max=2),
                    rle=pb.CocoRle(height_px=4, width_px=6, counts=rle.counts))
            for i in range(len(request.prompt_sets[0].points) == 1 and 3 or 1)
        ]  # fmt: skip
        return pb.SegmentResponse(
            image_id=key,
            original_size=pb.ImageSize(height_px=4, width_px=6),
            results=[pb.PromptSetResult(masks=masks)],
            cached=request.WhichOneof("image_source") == "image_id",
        )

    return FakeService({"Segment": segment})


def test_an_image_is_uploaded_once_and_resent_only_when_evicted() -> None:
    cached: set[str] = set()
    service = _segment_service(cached)
    server, port = service.start()
    pixels = np.zeros((4, 6, 3), np.uint8)
    try:
        with SamClient(f"127.0.0.1:{port}", token="s3cret") as client:
            first = client.segment(pixels, points=[(3, 2)])
            second = client.segment(pixels, points=[(3, 2)])
            cached.clear()  # the server evicted it
            third = client.segment(pixels, points=[(3, 2)])
        sources = [c[1].WhichOneof("image_source") for c in service.calls]
        # new image: by id (not found), then inline; known: by id only; evicted: by id, then inline
        assert sources == ["image_id", "image", "image_id", "image_id", "image"]
        assert first.image_id == second.image_id == third.image_id == image_id(pixels.tobytes(), (6, 4))
        assert not first.cached and second.cached
        assert all(c[2].get("authorization") == "Bearer s3cret" for c in service.calls)
        assert [m.score for m in first.masks] == sorted((m.score for m in first.masks), reverse=True)
        assert len(first.masks) == 3 and first.best.mask.dtype == bool and first.best.mask.shape == (4, 6)
        assert first.best.mask.sum() == 6 and first.best.mask_id == "m0"
    finally:
        server.stop(None)


async def test_async_image_reuse_and_a_named_missing_id() -> None:
    cached: set[str] = set()
    service = _segment_service(cached)
    server, port = service.start()
    try:
        async with AsyncSamClient(f"127.0.0.1:{port}") as client:
            result = await client.segment(np.ones((4, 6, 3), np.uint8), box=(0, 0, 5, 3))
            again = await client.segment(image_id=result.image_id, box=(0, 0, 5, 3))
            assert again.cached and len(again.masks) == 1
            with pytest.raises(NotFoundError) as caught:
                await client.segment(image_id="f" * 64, points=[(1, 1)])  # no image to resend: the error
        assert caught.value.reason == "EMBEDDING_NOT_FOUND"
    finally:
        server.stop(None)


def test_tls_with_a_custom_root_certificate_and_a_bearer_token(tmp_path, free_port: int) -> None:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    service = FakeService({"GetModelInfo": model_info})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(
        service._wrap("GetModelInfo"),
        request_deserializer=pb.GetModelInfoRequest.FromString,
        response_serializer=lambda m: m.SerializeToString(),
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"GetModelInfo": handler}),))
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    server.add_secure_port(f"localhost:{free_port}", credentials)
    server.start()
    try:
        with SamClient(f"localhost:{free_port}", root_certificates=cert, token="t0ken", timeout_s=10) as client:
            assert client.model_info().name == "fake"
        assert service.calls[0][2]["authorization"] == "Bearer t0ken"
        # plaintext against a TLS port fails as UNAVAILABLE, not as a hang
        with SamClient(f"localhost:{free_port}", timeout_s=1, retry=RetryPolicy(max_attempts=1)) as client:
            with pytest.raises((UnavailableError, DeadlineExceededError)):
                client.model_info()
    finally:
        server.stop(None)
