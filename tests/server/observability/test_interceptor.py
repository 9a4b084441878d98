"""The observability interceptor on a real grpc.aio server (a toy service with raw-bytes methods)."""

import asyncio
import json
import logging

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from server.observability.interceptor import ObservabilityInterceptor
from server.observability.logs import JsonFormatter
from server.observability.metrics import Metrics

SERVICE = "segmentanything.v1.SegmentAnythingService"
EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)


async def _ok(request: bytes, context) -> bytes:
    return request


async def _bad(request: bytes, context) -> bytes:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad point")


async def _stream(request: bytes, context):
    for i in range(3):
        yield bytes([i])


@pytest.fixture()
async def served():
    metrics = Metrics()
    server = grpc.aio.server(interceptors=[ObservabilityInterceptor(metrics)])
    handlers = {
        "Segment": grpc.unary_unary_rpc_method_handler(_ok),
        "EmbedImage": grpc.unary_unary_rpc_method_handler(_bad),
        "GenerateMasks": grpc.unary_stream_rpc_method_handler(_stream),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    EXPORTER.clear()
    yield metrics, channel
    await channel.close()
    await server.stop(None)


def _value(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_counters_and_histograms_count_each_call_by_method_and_code(served):
    metrics, channel = served
    segment = channel.unary_unary(f"/{SERVICE}/Segment")
    embed = channel.unary_unary(f"/{SERVICE}/EmbedImage")
    for _ in range(3):
        assert await segment(b"x") == b"x"
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await embed(b"x")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    items = [r async for r in channel.unary_stream(f"/{SERVICE}/GenerateMasks")(b"")]
    assert len(items) == 3
    assert _value(metrics, "sam_rpc_requests_total", {"method": "Segment", "code": "OK"}) == 3
    assert _value(metrics, "sam_rpc_duration_seconds_count", {"method": "Segment", "code": "OK"}) == 3
    assert _value(metrics, "sam_rpc_requests_total", {"method": "EmbedImage", "code": "INVALID_ARGUMENT"}) == 2
    assert _value(metrics, "sam_rpc_errors_total", {"method": "EmbedImage", "code": "INVALID_ARGUMENT"}) == 2
    assert _value(metrics, "sam_rpc_errors_total", {"method": "Segment", "code": "OK"}) == 0
    assert _value(metrics, "sam_rpc_requests_total", {"method": "GenerateMasks", "code": "OK"}) == 1
    assert _value(metrics, "sam_rpc_in_flight", {"method": "Segment"}) == 0
    text = generate_latest(metrics.registry).decode()
    assert 'sam_rpc_duration_seconds_bucket{code="OK",le="0.001",method="Segment"}' in text


async def _finished_spans(*methods: str, timeout: float = 5.0) -> dict:
    """Finished server spans by method name, once all of ``methods`` have one. An aborted call's
    status reaches the client before the server's handler task unwinds and ends its span, so the
    span can finish a moment after the client's call returns."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        spans = {s.name.rsplit("/", 1)[-1]: s for s in EXPORTER.get_finished_spans()}
        if all(m in spans for m in methods) or loop.time() > deadline:
            return spans
        await asyncio.sleep(0.01)


async def test_server_span_continues_the_callers_traceparent(served):
    _, channel = served
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    metadata = (("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),)
    await channel.unary_unary(f"/{SERVICE}/Segment")(b"x", metadata=metadata)
    with pytest.raises(grpc.aio.AioRpcError):
        await channel.unary_unary(f"/{SERVICE}/EmbedImage")(b"x")
    spans = await _finished_spans("Segment", "EmbedImage")
    seg = spans["Segment"]
    assert format(seg.context.trace_id, "032x") == trace_id
    assert seg.parent is not None and format(seg.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert seg.attributes["rpc.grpc.status_code"] == "OK"
    assert spans["EmbedImage"].attributes["rpc.grpc.status_code"] == "INVALID_ARGUMENT"
    assert not spans["EmbedImage"].status.is_ok


async def test_one_json_log_line_per_request_with_trace_ids(served, caplog):
    _, channel = served
    caplog.set_level(logging.INFO, logger="sam.gateway.rpc")
    await channel.unary_unary(f"/{SERVICE}/Segment")(b"secret-image-bytes")
    records = [r for r in caplog.records if r.name == "sam.gateway.rpc"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["method"] == "Segment" and line["code"] == "OK" and line["duration_ms"] >= 0
    assert "secret" not in json.dumps(line)


async def test_concurrent_calls_are_counted_in_flight(served):
    metrics, channel = served
    call = channel.unary_unary(f"/{SERVICE}/Segment")
    await asyncio.gather(*(call(b"x") for _ in range(8)))
    assert _value(metrics, "sam_rpc_requests_total", {"method": "Segment", "code": "OK"}) == 8
