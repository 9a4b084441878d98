"""One server interceptor for metrics, the per-RPC span and the per-request log line.

Install it OUTERMOST (first in the interceptor list) so it sees the final status code, after the
error interceptor has turned service errors into statuses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from opentelemetry.trace import SpanKind, Status, StatusCode

from server.observability.metrics import Metrics
from server.observability.tracing import incoming_context, tracer

log = logging.getLogger("sam.gateway.rpc")


def _code_name(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return status.name
    return "OK" if error is None else "UNKNOWN"


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Records ``sam_rpc_*`` metrics, opens a server span (continuing a caller's ``traceparent``)
    and logs one INFO line per request with method, code and duration (never payloads)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    @asynccontextmanager
    async def _observe(self, method: str, context: grpc.aio.ServicerContext,
                       metadata: Any) -> AsyncIterator[None]:
        start = time.perf_counter()
        in_flight = self.metrics.rpc_in_flight.labels(method)
        in_flight.inc()
        error: BaseException | None = None
        with tracer().start_as_current_span(
            f"segmentanything.v1.SegmentAnythingService/{method}", kind=SpanKind.SERVER,
            context=incoming_context(metadata), attributes={"rpc.system": "grpc", "rpc.method": method},
        ) as span:
            try:
                yield
            except BaseException as exc:
                error = exc
                raise
            finally:
                seconds = time.perf_counter() - start
                code = _code_name(context, error)
                in_flight.dec()
                self.metrics.observe_rpc(method, code, seconds)
                span.set_attribute("rpc.grpc.status_code", code)
                if code != "OK":
                    span.set_status(Status(StatusCode.ERROR, code))
                log.info("rpc", extra={"method": method, "code": code, "duration_ms": round(seconds * 1e3, 3)})

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        metadata = details.invocation_metadata
        if handler.unary_unary is not None:
            inner_unary = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                async with self._observe(method, context, metadata):
                    return await inner_unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async with self._observe(method, context, metadata):
                    async for item in inner_stream(request, context):
                        yield item

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler

