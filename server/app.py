"""Assemble the gateway: gRPC server, health, reflection, metrics endpoint, Triton watch.

:func:`create_server` builds everything from a :class:`~server.settings.Settings` and optional
:class:`Dependencies` (tests and embedders pass their own backend or metrics), binds the gRPC
address (port 0 picks a free one) and the metrics port, and returns the :class:`GatewayServer`
with the bound gRPC port. Nothing runs until :meth:`GatewayServer.start`.

Health (``grpc.health.v1.Health``):

- ``""`` and ``segmentanything.v1.SegmentAnythingService``: SERVING only while Triton and both
  models are ready. A background task polls Triton every ``health_poll_interval_s`` and flips them
  both ways (Triton went away / came back); they start NOT_SERVING and go NOT_SERVING for good when
  draining. Kubernetes' readiness probe asks for ``""``.
- ``liveness``: SERVING while the gRPC server runs, whatever Triton does (liveness and startup
  probes: a Triton outage must not restart gateways).

Call :func:`create_server` from a coroutine running in the event loop that will serve (grpc.aio
binds its objects to the running loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from segmentanything.v1 import segment_anything_pb2 as pb
from segmentanything.v1 import segment_anything_pb2_grpc as pb_grpc
from server.backend.triton_client import InferenceBackend, TritonClient
from server.cache.redis_cache import RedisEmbeddingCache
from server.errors import ServiceError
from server.interceptors import server_interceptors
from server.observability.interceptor import ObservabilityInterceptor
from server.observability.metrics import Metrics
from server.observability.tracing import outgoing_headers
from server.service import SegmentationService
from server.servicer import SegmentAnythingServicer
from server.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SegmentAnythingService"].full_name
#: Health service names that follow Triton's readiness.
READINESS_SERVICES = ("", SERVICE_NAME)
#: Health service name that is SERVING as long as the process serves gRPC.
LIVENESS_SERVICE = "liveness"

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Dependencies:
    """What :func:`create_server` would otherwise build from the settings.

    Attributes:
        backend: the model server client (default: :class:`TritonClient` for ``settings.triton_url``).
        metrics: the metrics registry holder (default: a fresh :class:`Metrics`).
        redis: the shared embedding cache (default: one for ``settings.redis_url``, if set).
        serve_metrics: start the Prometheus HTTP endpoint on ``settings.metrics_port``.
    """

    backend: InferenceBackend | None = None
    metrics: Metrics | None = None
    redis: RedisEmbeddingCache | None = None
    serve_metrics: bool = True


def grpc_options(settings: Settings) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        # A port another process holds must fail the bind, not be silently shared.
        ("grpc.so_reuseport", 0),
    ]


class GatewayServer:
    """The running gateway: the grpc.aio server plus the tasks and endpoints around it."""

    def __init__(
        self,
        *,
        settings: Settings,
        server: grpc.aio.Server,
        port: int,
        health_servicer: health.aio.HealthServicer,
        service: SegmentationService,
        backend: InferenceBackend,
        metrics: Metrics,
        redis: RedisEmbeddingCache | None,
        serve_metrics: bool,
    ) -> None:
        self.settings = settings
        self.grpc_server = server
        self.port = port
        self.health = health_servicer
        self.service = service
        self.backend = backend
        self.metrics = metrics
        self.redis = redis
        self._serve_metrics = serve_metrics
        self._metrics_http: Any = None
        self._metrics_thread: threading.Thread | None = None
        self.metrics_port: int | None = None
        self._watch: asyncio.Task[None] | None = None
        self._draining = False
        self.backend_ready = False

    @property
    def address(self) -> str:
        """``host:port`` clients can dial (loopback when listening on every interface)."""
        host = self.settings.host
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Start serving: gRPC calls, the metrics endpoint and the Triton watch."""
        for name in READINESS_SERVICES:
            await self.health.set(name, _NOT_SERVING)
        await self.health.set(LIVENESS_SERVICE, _SERVING)
        if self._serve_metrics:
            self._metrics_http, self._metrics_thread = start_http_server(
                self.settings.metrics_port, addr=self.settings.host, registry=self.metrics.registry
            )
            self.metrics_port = int(self._metrics_http.server_port)
        await self.grpc_server.start()
        if self.redis is not None:
            await self.redis.check_server()
        log.info("waiting for triton at %s and its models; health NOT_SERVING until then", self.settings.triton_url)
        self._watch = asyncio.create_task(self._watch_backend(), name="watch-triton")
        log.info(
            "gateway serving",
            extra={"address": self.address, "metrics_port": self.metrics_port, "triton_url": self.settings.triton_url},
        )

    async def _set_ready(self, ready: bool) -> None:
        if self._draining:
            return
        for name in READINESS_SERVICES:
            await self.health.set(name, _SERVING if ready else _NOT_SERVING)

    async def check_backend(self) -> bool:
        """Poll Triton once and update health; True if it is ready (with the model described)."""
        ready = await self.backend.ready()
        if ready:
            try:
                await self.service.model_info()
            except ServiceError as error:
                log.warning("triton is ready but its model cannot be used: %s", error.message)
                ready = False
        if ready != self.backend_ready:
            if not ready:
                # Forget what Triton knew about us (model description, shared memory registrations).
                self.backend.invalidate()
                log.warning("triton at %s is not ready; health NOT_SERVING", self.settings.triton_url)
            else:
                log.info("triton at %s is ready; health SERVING", self.settings.triton_url)
            self.backend_ready = ready
            await self._set_ready(ready)
        return ready

    async def _watch_backend(self) -> None:
        while not self._draining:
            try:
                await self.check_backend()
            except Exception:  # noqa: BLE001 - the watch must outlive any single failure
                log.exception("checking triton's readiness failed")
            await asyncio.sleep(self.settings.health_poll_interval_s)

    async def drain(self) -> None:
        """Report NOT_SERVING for good (liveness stays SERVING); calls are still accepted."""
        for name in READINESS_SERVICES:
            await self.health.set(name, _NOT_SERVING)
        self._draining = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    async def stop(self, grace: float | None) -> None:
        """Drain, stop accepting calls, let in-flight calls finish within ``grace`` seconds, then
        release Triton (shared memory), Redis and the metrics endpoint."""
        await self.drain()
        await self.grpc_server.stop(grace)
        self.service.close()
        await self.backend.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
            self._metrics_http = None

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        return await self.grpc_server.wait_for_termination(timeout)


def create_server(settings: Settings, deps: Dependencies | None = None) -> tuple[GatewayServer, int]:
    """Build the gateway for ``settings`` and bind ``settings.listen_address``.

    Returns ``(server, port)``: the not yet started :class:`GatewayServer` and the bound gRPC port
    (the chosen one when ``settings.port`` is 0).

    Raises:
        OSError: the address cannot be bound.
    """
    deps = deps or Dependencies()
    metrics = deps.metrics or Metrics()
    backend = deps.backend or TritonClient(
        settings.triton_url,
        encoder_model=settings.encoder_model,
        decoder_model=settings.decoder_model,
        model_version=settings.model_version,
        timeout_s=settings.triton_timeout_s,
        max_message_bytes=settings.max_message_bytes,
        use_shared_memory=settings.use_shared_memory,
        observe=metrics.observe_triton,
        headers=outgoing_headers,
    )
    redis = deps.redis
    if redis is None and settings.redis_url:
        redis = RedisEmbeddingCache(settings.redis_url, float16=settings.cache_float16)
    service = SegmentationService(
        backend,
        settings,
        redis=redis,
        observe_stage=lambda stage, seconds: metrics.segment_stage.labels(stage).observe(seconds),
    )
    metrics.watch_caches(service.embeddings.stats, redis.stats if redis is not None else None)

    server = grpc.aio.server(
        interceptors=server_interceptors(ObservabilityInterceptor(metrics)),
        options=grpc_options(settings),
    )
    pb_grpc.add_SegmentAnythingServiceServicer_to_server(SegmentAnythingServicer(service, settings), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(settings.listen_address)
    except RuntimeError as error:
        raise OSError(f"cannot listen on {settings.listen_address}: {error}") from error
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen_address}")
    gateway = GatewayServer(
        settings=settings,
        server=server,
        port=port,
        health_servicer=health_servicer,
        service=service,
        backend=backend,
        metrics=metrics,
        redis=redis,
        serve_metrics=deps.serve_metrics,
    )
    return gateway, port
