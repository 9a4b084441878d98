"""The error interceptor on a real grpc.aio server (a toy service with raw-bytes methods): a table
of raised errors against the status, details and trailers the client receives."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.errors import (
    ERROR_DOMAIN,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Reason,
    ResourceExhausted,
    ServiceError,
    Unavailable,
    Unimplemented,
)
from server.interceptors import ErrorInterceptor, server_interceptors

SERVICE = "segmentanything.v1.Toy"

RAISED: dict[str, BaseException] = {
    "invalid": InvalidArgument(
        "point is outside the image", Reason.POINT_OUTSIDE_IMAGE,
        field_violations=[FieldViolation("prompt_sets[0].points[0].x", "x=900 is not in [0, 640)")],
    ),
    "not_found": NotFound("image not cached; send it again", Reason.EMBEDDING_NOT_FOUND, metadata={"image_id": "ab"}),
    "exhausted": ResourceExhausted("at most 64 prompt sets per call, got 65"),
    "unavailable": Unavailable("Triton is not reachable", Reason.BACKEND_UNAVAILABLE, retry_delay_s=1.5),
    "unimplemented": Unimplemented("GenerateMasks comes in a later version"),
    "bug": ZeroDivisionError("secret internal detail"),
}


async def _raise(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise RAISED[request.decode()]


async def _ok(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def _self_abort(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "handler's own abort")
    return b""


async def _stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"first"
    raise RAISED[request.decode()]


async def _writing_stream(request: bytes, context: grpc.aio.ServicerContext) -> None:
    await context.write(b"written")
    raise RAISED[request.decode()]


@pytest.fixture()
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=server_interceptors())
    handlers = {
        "Raise": grpc.unary_unary_rpc_method_handler(_raise),
        "Ok": grpc.unary_unary_rpc_method_handler(_ok),
        "SelfAbort": grpc.unary_unary_rpc_method_handler(_self_abort),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream),
        "WritingStream": grpc.unary_stream_rpc_method_handler(_writing_stream),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(None)


def _details(error: grpc.aio.AioRpcError) -> dict[str, object]:
    status = rpc_status.from_call(error)  # checks that code and message agree with the trailer
    assert status is not None, "no grpc-status-details-bin trailer"
    out: dict[str, object] = {}
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                out[kind.__name__] = message
    return out


@pytest.mark.parametrize(
    ("name", "code", "reason"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, "POINT_OUTSIDE_IMAGE"),
        ("not_found", grpc.StatusCode.NOT_FOUND, "EMBEDDING_NOT_FOUND"),
        ("exhausted", grpc.StatusCode.RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED"),
        ("unavailable", grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE"),
        ("unimplemented", grpc.StatusCode.UNIMPLEMENTED, "UNIMPLEMENTED"),
        ("bug", grpc.StatusCode.INTERNAL, "INTERNAL"),
    ],
)
async def test_raised_errors_become_rpc_statuses(
    channel: grpc.aio.Channel, name: str, code: grpc.StatusCode, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary(f"/{SERVICE}/Raise")(name.encode())
    error = caught.value
    assert error.code() == code
    details = _details(error)
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == (reason, ERROR_DOMAIN)
    raised = RAISED[name]
    if isinstance(raised, ServiceError):
        assert error.details() == raised.message
        assert dict(info.metadata) == raised.metadata
        assert not caplog.records, "service errors are expected outcomes, not logged as errors"
    else:
        # Unexpected: a generic message with an incident id, the traceback only in the log.
        assert "secret" not in error.details() and "incident id" in error.details()
        incident = info.metadata["incident_id"]
        assert incident in error.details()
        (record,) = caplog.records
        assert incident in record.getMessage() and record.exc_info is not None
    if name == "invalid":
        bad_request = details["BadRequest"]
        assert isinstance(bad_request, error_details_pb2.BadRequest)
        assert [(v.field, v.description) for v in bad_request.field_violations] == [
            ("prompt_sets[0].points[0].x", "x=900 is not in [0, 640)")
        ]
    else:
        assert "BadRequest" not in details
    if name == "unavailable":
        retry = details["RetryInfo"]
        assert isinstance(retry, error_details_pb2.RetryInfo)
        assert retry.retry_delay.ToMilliseconds() == 1500


async def test_success_and_a_handlers_own_abort_pass_through(channel: grpc.aio.Channel) -> None:
    assert await channel.unary_unary(f"/{SERVICE}/Ok")(b"echo") == b"echo"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary(f"/{SERVICE}/SelfAbort")(b"")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "handler's own abort"


@pytest.mark.parametrize("method", ["Stream", "WritingStream"])
async def test_a_stream_keeps_what_it_sent_and_ends_with_the_status(channel: grpc.aio.Channel, method: str) -> None:
    call = channel.unary_stream(f"/{SERVICE}/{method}")(b"not_found")
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in call:
            received.append(message)
    assert received == [b"first" if method == "Stream" else b"written"]
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info = _details(caught.value)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.reason == "EMBEDDING_NOT_FOUND"


def test_the_error_interceptor_is_innermost() -> None:
    outer = ErrorInterceptor()  # stands in for the observability interceptor
    chain = server_interceptors(outer)
    assert chain[0] is outer and isinstance(chain[-1], ErrorInterceptor) and len(chain) == 2


async def test_the_observability_interceptor_outside_records_the_mapped_code() -> None:
    from server.observability.interceptor import ObservabilityInterceptor
    from server.observability.metrics import Metrics

    metrics = Metrics()
    server = grpc.aio.server(interceptors=server_interceptors(ObservabilityInterceptor(metrics)))
    handlers = {"Raise": grpc.unary_unary_rpc_method_handler(_raise)}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for name in ("not_found", "bug"):
                with pytest.raises(grpc.aio.AioRpcError):
                    await channel.unary_unary(f"/{SERVICE}/Raise")(name.encode())
    finally:
        await server.stop(None)
    for code in ("NOT_FOUND", "INTERNAL"):
        assert metrics.registry.get_sample_value("sam_rpc_requests_total", {"method": "Raise", "code": code}) == 1
