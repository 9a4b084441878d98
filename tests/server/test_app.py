"""The assembled gateway process: health, reflection, metrics, the byte-bounded cache, Triton going
away and coming back, and SIGTERM. Real ``python -m server`` processes on the session's Triton."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from segmentanything.v1 import segment_anything_pb2 as pb
from tests.conftest import REPO, wait_for_health
from tests.server.helpers import (
    FG,
    error_details,
    metric,
    png,
    point_set,
    scene,
    settled_inference_count,
    stub,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(r"ignore:.*torch\.jit\..* is deprecated:DeprecationWarning"),
]

EMBEDDING_BYTES = 4 * 256 * 16 * 16  # one float32 embedding of the tiny model


def _health(address: str, service: str) -> str:
    with grpc.insecure_channel(address) as channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.RpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status.status))


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _embed(api: Any, image: np.ndarray) -> str:
    return str(api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=png(image)))).image_id)


def test_help_is_true_and_lists_every_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for flag in (
        "--port",
        "--triton-url",
        "--cache-capacity-bytes",
        "--use-shared-memory",
        "--grace-period-s",
        "--health-poll-interval-s",
        "--redis-url",
    ):
        assert flag in result.stdout


def test_health_reflection_and_metrics(sam_service: Any) -> None:
    address = sam_service.address
    assert _health(address, "") == "SERVING"
    assert _health(address, "segmentanything.v1.SegmentAnythingService") == "SERVING"
    assert _health(address, "liveness") == "SERVING"
    assert _health(address, "no.such.Service") == "NOT_FOUND"
    with grpc.insecure_channel(address) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(reflection.ServerReflectionInfo(iter([request])))
    services = {s.name for s in answer.list_services_response.service}
    assert {"segmentanything.v1.SegmentAnythingService", "grpc.health.v1.Health"} <= services
    with sam_service.channel() as channel:
        stub(channel).GetModelInfo(pb.GetModelInfoRequest())
    text = _metrics(sam_service.gateway.metrics_url)
    assert metric(text, "sam_rpc_requests_total", {"method": "GetModelInfo", "code": "OK"}) >= 1
    assert metric(text, "sam_embedding_cache_capacity_bytes") == 1 << 30


def test_the_cache_evicts_the_least_recently_used_at_its_byte_bound(sam_service: Any) -> None:
    gateway = sam_service.start_gateway(cache_capacity_bytes=2 * EMBEDDING_BYTES)
    try:
        with gateway.channel() as channel:
            api = stub(channel)
            a = _embed(api, scene(60, 80, seed=40))
            b = _embed(api, scene(60, 80, seed=41))
            api.Segment(pb.SegmentRequest(image_id=a, prompt_sets=[point_set((10, 10, FG))]))  # a is now recent
            c = _embed(api, scene(60, 80, seed=42))  # evicts b
            for kept in (a, c):
                api.Segment(pb.SegmentRequest(image_id=kept, prompt_sets=[point_set((10, 10, FG))]))
            with pytest.raises(grpc.RpcError) as caught:
                api.Segment(pb.SegmentRequest(image_id=b, prompt_sets=[point_set((10, 10, FG))]))
            details = error_details(caught.value)
            assert (details.code, details.reason) == (grpc.StatusCode.NOT_FOUND, "EMBEDDING_NOT_FOUND")
            assert details.metadata["image_id"] == b
            text = _metrics(gateway.metrics_url)
            assert metric(text, "sam_embedding_cache_entries") == 2
            assert metric(text, "sam_embedding_cache_bytes") == 2 * EMBEDDING_BYTES
            assert metric(text, "sam_embedding_cache_evictions_total") == 1
    finally:
        gateway.stop()


def test_float16_cache_halves_the_bytes_per_embedding(sam_service: Any) -> None:
    gateway = sam_service.start_gateway(cache_float16=True)
    try:
        with gateway.channel() as channel:
            api = stub(channel)
            assert api.GetModelInfo(pb.GetModelInfoRequest()).cache_float16
            _embed(api, scene(60, 80, seed=50))
            _embed(api, scene(60, 80, seed=51))
            assert metric(_metrics(gateway.metrics_url), "sam_embedding_cache_bytes") == EMBEDDING_BYTES
    finally:
        gateway.stop()


def test_health_and_errors_follow_triton_down_and_back_up(sam_service: Any) -> None:
    address = sam_service.address
    with sam_service.channel() as channel:
        api = stub(channel)
        cached = _embed(api, scene(70, 90, seed=60))
        request = pb.SegmentRequest(image_id=cached, prompt_sets=[point_set((10, 10, FG))])
        before = api.Segment(request)
        sam_service.triton.stop()
        try:
            wait_for_health(address, "NOT_SERVING", timeout_s=30)
            assert _health(address, "liveness") == "SERVING"  # a Triton outage must not restart gateways
            for call in (
                lambda: api.Segment(request),
                lambda: api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=png(scene(30, 30, seed=61))))),
                lambda: api.GetModelInfo(pb.GetModelInfoRequest()),
            ):
                with pytest.raises(grpc.RpcError) as caught:
                    call()
                details = error_details(caught.value)
                assert (details.code, details.reason) == (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")
                assert details.retry_delay_s is not None and details.retry_delay_s > 0
        finally:
            sam_service.triton.start()
        wait_for_health(address, "SERVING", timeout_s=60)
        after = api.Segment(request)  # the cached embedding survived; same model, same answer
        assert [m.score for m in after.results[0].masks] == [m.score for m in before.results[0].masks]


def test_sigterm_drains_health_finishes_in_flight_calls_and_exits_0(sam_service: Any) -> None:
    gateway = sam_service.start_gateway(grace_period_s=20)
    assert gateway.process is not None
    with gateway.channel() as channel:
        api = stub(channel)
        statuses: list[str] = []
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))

        def follow() -> None:
            try:
                for message in watch:
                    statuses.append(health_pb2.HealthCheckResponse.ServingStatus.Name(message.status))
                    if message.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                        watch.cancel()  # an open Watch stream would hold the stop for the whole grace period
            except grpc.RpcError:
                pass

        follower = threading.Thread(target=follow)
        follower.start()
        # A slow call (a large image to decode and embed), in flight when SIGTERM arrives.
        data = png(scene(1600, 1600, seed=70))
        future = api.EmbedImage.future(pb.EmbedImageRequest(image=pb.Image(encoded=data)), timeout=60)
        deadline = time.monotonic() + 30
        while metric(_metrics(gateway.metrics_url), "sam_rpc_in_flight", {"method": "EmbedImage"}) < 1:
            assert time.monotonic() < deadline, "the call never arrived"
            time.sleep(0.005)
        gateway.process.send_signal(signal.SIGTERM)
        response = future.result()  # finished within the grace period
        assert len(response.image_id) == 64 and not response.cached
        code = gateway.process.wait(timeout=30)
        follower.join(timeout=10)
    gateway.process = None
    assert code == 0, gateway.log_tail()
    assert statuses[0] == "SERVING" and "NOT_SERVING" in statuses[1:], statuses


def test_gateways_share_embeddings_through_redis(sam_service: Any, tmp_path: Any) -> None:
    from tests.server.cache.test_redis_cache import RedisServer, _redis_server_binary

    binary = _redis_server_binary()
    if binary is None:
        pytest.skip("redis-server not found; install it with `bash scripts/install_system_deps.sh` (as root)")
    redis = RedisServer(binary, tmp_path)
    redis.start()
    first = second = None
    try:
        first = sam_service.start_gateway(redis_url=redis.url)
        second = sam_service.start_gateway(redis_url=redis.url)
        data = png(scene(90, 70, seed=80))
        with first.channel() as a_channel, second.channel() as b_channel:
            a, b = stub(a_channel), stub(b_channel)
            image_id = a.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=data))).image_id
            encodes = settled_inference_count(sam_service.triton_url, "sam_encoder")
            # The other replica never saw the image: it finds the embedding in Redis, not in Triton.
            b.Segment(pb.SegmentRequest(image_id=image_id, prompt_sets=[point_set((10, 10, FG))]))
            assert b.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=data))).cached
            assert settled_inference_count(sam_service.triton_url, "sam_encoder") == encodes
            encoder_calls = ("sam_triton_request_duration_seconds_count", {"model": "sam_encoder", "outcome": "ok"})
            assert metric(_metrics(second.metrics_url), *encoder_calls) == 0  # it never called the encoder
            assert metric(_metrics(second.metrics_url), "sam_redis_cache_requests_total", {"result": "hit"}) >= 1

            # Redis goes away mid-run: both replicas keep answering, from memory or from Triton.
            redis.stop()
            other = png(scene(80, 60, seed=81))
            for replica, gateway in ((a, first), (b, second)):
                reply = replica.Segment(pb.SegmentRequest(image_id=image_id, prompt_sets=[point_set((12, 9, FG))]))
                assert len(reply.results[0].masks) == 3
                fresh = replica.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=other)), timeout=60)
                reply = replica.Segment(pb.SegmentRequest(image_id=fresh.image_id,
                                                          prompt_sets=[point_set((5, 5, FG))]), timeout=60)
                assert len(reply.results[0].masks) == 3
                text = _metrics(gateway.metrics_url)
                assert metric(text, "sam_redis_cache_requests_total", {"result": "error"}) + metric(
                    text, "sam_redis_cache_requests_total", {"result": "bypassed"}) >= 1
    finally:
        for gateway in (first, second):
            if gateway is not None:
                gateway.stop()
        redis.stop()
