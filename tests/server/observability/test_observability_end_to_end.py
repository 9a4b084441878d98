"""Observability against the real service: exact metric increments scraped from a running gateway,
the span tree of a Segment call, and the trace continuing inside Triton.

Metrics use the session's ``python -m server`` gateway (deltas over a known sequence of calls).
Traces need an in-memory span exporter in the gateway's process, so those tests run the gateway
in-process (``server.app.create_server``) against a second real Triton that traces in
``opentelemetry`` mode and exports OTLP/HTTP to a small receiver in this test.

Why not Triton's ``triton`` trace mode: its trace file (``--trace-config triton,file=...``) records
only Triton's own numeric trace ids, never the W3C ``traceparent`` of the request (checked on this
Triton 2.51 build); ``opentelemetry`` mode continues the caller's trace, so that is what is tested.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from segmentanything.v1 import segment_anything_pb2 as pb
from segmentanything.v1 import segment_anything_pb2_grpc as pb_grpc
from tests.conftest import CHANNEL_OPTIONS
from tests.server.helpers import FG, metric, png, point_set, scene

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(r"ignore:.*torch\.jit\..* is deprecated:DeprecationWarning"),
]

SEGMENT_SPAN = "segmentanything.v1.SegmentAnythingService/Segment"


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


# -- metrics ------------------------------------------------------------------------------------------


def test_metrics_count_exactly_the_calls_made(sam_service: Any) -> None:
    url = sam_service.gateway.metrics_url
    rpc = [("EmbedImage", "OK"), ("Segment", "OK"), ("Segment", "NOT_FOUND"), ("Segment", "INVALID_ARGUMENT"),
           ("GetModelInfo", "OK")]  # fmt: skip
    models = ("sam_encoder", "sam_decoder")

    def snapshot() -> dict[str, float]:
        text = _scrape(url)
        values = {}
        for method, code in rpc:
            labels = {"method": method, "code": code}
            for name in ("sam_rpc_requests_total", "sam_rpc_errors_total", "sam_rpc_duration_seconds_count",
                         "sam_rpc_duration_seconds_sum"):  # fmt: skip
                values[f"{name}{method}{code}"] = metric(text, name, labels)
            values[f"inf{method}{code}"] = metric(text, "sam_rpc_duration_seconds_bucket", {**labels, "le": "+Inf"})
        for model in models:
            for outcome in ("ok", "error"):
                labels = {"model": model, "outcome": outcome}
                values[f"triton{model}{outcome}"] = metric(text, "sam_triton_request_duration_seconds_count", labels)
        for name in ("hits", "misses"):
            values[name] = metric(text, f"sam_embedding_cache_{name}_total")
        values["decode_image"] = metric(text, "sam_segment_stage_duration_seconds_count", {"stage": "decode_image"})
        values["in_flight"] = metric(text, "sam_rpc_in_flight", {"method": "Segment"})
        return values

    before = snapshot()
    a, b = png(scene(61, 83, seed=900)), png(scene(59, 77, seed=901))
    with sam_service.channel() as channel:
        api = pb_grpc.SegmentAnythingServiceStub(channel)
        image_id = api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=a))).image_id  # miss, 1 encode
        assert api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=a))).cached  # hit
        api.Segment(pb.SegmentRequest(image_id=image_id, prompt_sets=[point_set((10, 10, FG))]))  # hit, 1 decode
        # Inline image: a miss and an encode; 1 and 2 points pack to different lengths: 2 decodes.
        two = [point_set((10, 10, FG)), point_set((10, 10, FG), (20, 30, FG))]
        reply = api.Segment(pb.SegmentRequest(image=pb.Image(encoded=b), prompt_sets=two))
        assert not reply.cached and len(reply.results) == 2
        with pytest.raises(grpc.RpcError) as not_found:  # a well-formed id nobody sent: a miss
            api.Segment(pb.SegmentRequest(image_id="ab" * 32, prompt_sets=[point_set((1, 1, FG))]))
        assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as invalid:  # rejected before any lookup
            api.Segment(pb.SegmentRequest(image_id="not-a-sha256", prompt_sets=[point_set((1, 1, FG))]))
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        api.GetModelInfo(pb.GetModelInfoRequest())
    after = snapshot()
    delta = {key: after[key] - before[key] for key in before}

    calls = {("EmbedImage", "OK"): 2, ("Segment", "OK"): 2, ("Segment", "NOT_FOUND"): 1,
             ("Segment", "INVALID_ARGUMENT"): 1, ("GetModelInfo", "OK"): 1}  # fmt: skip
    for (method, code), count in calls.items():
        key = f"{method}{code}"
        assert delta[f"sam_rpc_requests_total{key}"] == count, key
        assert delta[f"sam_rpc_duration_seconds_count{key}"] == count, key
        assert delta[f"inf{key}"] == count, key  # every observation lands in the histogram's buckets
        assert delta[f"sam_rpc_duration_seconds_sum{key}"] > 0, key
        assert delta[f"sam_rpc_errors_total{key}"] == (0 if code == "OK" else count), key
    assert (delta["hits"], delta["misses"]) == (2, 3)  # hits: EmbedImage, Segment by id; misses: a, b, unknown id
    assert delta["decode_image"] == 2
    assert delta["tritonsam_encoderok"] == 2 and delta["tritonsam_decoderok"] == 3
    assert delta["tritonsam_encodererror"] == 0 and delta["tritonsam_decodererror"] == 0
    assert after["in_flight"] == 0


# -- traces -------------------------------------------------------------------------------------------


class OtlpReceiver:
    """An OTLP/HTTP trace receiver (JSON encoding, what Triton's exporter sends) on a free loopback port."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.content_types: set[str] = set()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.content_types.add(self.headers.get("Content-Type", ""))
                if self.path == "/v1/traces" and "json" in self.headers.get("Content-Type", ""):
                    for resource in json.loads(body).get("resourceSpans", []):
                        for scope in resource.get("scopeSpans", []):
                            receiver.spans.extend(scope.get("spans", []))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _span_exporter() -> InMemorySpanExporter:
    """An in-memory exporter on the process's tracer provider (installing an SDK provider if there
    is none yet: the global provider can be set once per process, and other test modules set it)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    assert isinstance(trace.get_tracer_provider(), TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@dataclass
class TracedStack:
    api: pb_grpc.SegmentAnythingServiceStub
    spans: InMemorySpanExporter
    triton_spans: OtlpReceiver


@pytest.fixture(scope="module")
async def traced(sam_service: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TracedStack]:
    """An in-process gateway whose spans go to an in-memory exporter, on a Triton that traces every
    request in ``opentelemetry`` mode to an in-test OTLP receiver."""
    from server.app import Dependencies, create_server
    from server.backend.local_triton import LocalTriton
    from server.settings import Settings

    receiver = OtlpReceiver()
    trace_args = ["mode=opentelemetry", "rate=1", "level=TIMESTAMPS", f"opentelemetry,url={receiver.url}",
                  "opentelemetry,bsp_schedule_delay=50", "opentelemetry,resource=service.name=triton"]  # fmt: skip
    triton = LocalTriton(
        sam_service.repository,
        model_config_name="cpu",
        extra_args=[arg for setting in trace_args for arg in ("--trace-config", setting)],
        log_path=Path(tmp_path_factory.mktemp("traced")) / "triton.log",
    )
    exporter = _span_exporter()
    gateway = None
    channel = None
    try:
        await asyncio.to_thread(triton.start)
        settings = Settings(host="127.0.0.1", port=0, triton_url=triton.grpc_url, health_poll_interval_s=0.2)
        gateway, port = create_server(settings, Dependencies(serve_metrics=False))
        await gateway.start()
        deadline = time.monotonic() + 60
        while not await gateway.check_backend():
            assert time.monotonic() < deadline, "the in-process gateway never saw Triton ready"
            await asyncio.sleep(0.1)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
        yield TracedStack(pb_grpc.SegmentAnythingServiceStub(channel), exporter, receiver)
    finally:
        if channel is not None:
            await channel.close()
        if gateway is not None:
            await gateway.stop(0)
        exporter.shutdown()
        await asyncio.to_thread(triton.stop)
        receiver.close()


def _by_trace(spans: tuple[ReadableSpan, ...], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def _names(spans: list[ReadableSpan]) -> list[str]:
    return sorted(s.name for s in spans)


async def _segment_spans(exporter: InMemorySpanExporter, timeout_s: float = 10.0) -> list[ReadableSpan]:
    """The finished ``Segment`` server spans, waiting (at most ``timeout_s``) until there is one.

    A reply can reach the caller before the server span ends: ``context.abort`` sends an error
    status at once, and the span ends as the exception leaves the handler.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        found = [s for s in exporter.get_finished_spans() if s.name == SEGMENT_SPAN]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.01)


async def test_segment_span_tree_has_the_expected_parents_and_attributes(traced: TracedStack) -> None:
    traced.spans.clear()
    caller_trace, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    metadata = (("traceparent", f"00-{caller_trace}-{caller_span}-01"),)
    prompts = [point_set((10, 12, FG)), point_set((10, 12, FG), (30, 20, FG))]  # 2 lengths: 2 decoder calls
    reply = await traced.api.Segment(
        pb.SegmentRequest(image=pb.Image(encoded=png(scene(48, 64, seed=910))), prompt_sets=prompts),
        metadata=metadata,
    )
    masks = sum(len(r.masks) for r in reply.results)
    assert masks == 4  # AUTO: 3 for the lone point, 1 for the pair

    (root,) = await _segment_spans(traced.spans)
    spans = _by_trace(traced.spans.get_finished_spans(), int(caller_trace, 16))
    assert root in spans
    assert root.kind == trace.SpanKind.SERVER
    assert root.parent is not None and format(root.parent.span_id, "016x") == caller_span  # continues the caller
    attributes = dict(root.attributes or {})
    assert attributes["rpc.grpc.status_code"] == "OK"
    assert (attributes["sam.image.height_px"], attributes["sam.image.width_px"]) == (48, 64)
    assert attributes["sam.prompt_sets"] == 2 and attributes["sam.cache.hit"] is False
    assert str(attributes["sam.model"]).startswith("tiny@")

    children = _children(spans, root)
    assert _names(children) == ["embedding_cache.lookup", "encode_masks", "triton.infer", "triton.infer"]
    (lookup,) = [s for s in children if s.name == "embedding_cache.lookup"]
    assert dict(lookup.attributes or {}).items() >= {"sam.cache.hit": False, "sam.cache.source": "encoder"}.items()
    # On a miss the image is decoded and embedded inside the lookup (single-flight).
    in_lookup = _children(spans, lookup)
    assert _names(in_lookup) == ["decode_image", "triton.infer"]
    (decode,) = [s for s in in_lookup if s.name == "decode_image"]
    assert dict(decode.attributes or {}).items() >= {"sam.image.height_px": 48, "sam.image.width_px": 64}.items()
    (encoder,) = [s for s in in_lookup if s.name == "triton.infer"]
    assert encoder.kind == trace.SpanKind.CLIENT and (encoder.attributes or {})["triton.model"] == "sam_encoder"
    decoders = [s for s in children if s.name == "triton.infer"]
    assert {(s.attributes or {})["triton.model"] for s in decoders} == {"sam_decoder"}
    assert sorted((s.attributes or {})["sam.points_per_set"] for s in decoders) == [2, 3]  # + padding point
    (encode,) = [s for s in children if s.name == "encode_masks"]
    assert dict(encode.attributes or {}).items() >= {"sam.masks": masks, "sam.mask_encoding": "RLE"}.items()
    assert len(spans) == 7 and all(s.status.is_ok for s in spans)

    # The same image again, by id: a hit, no decode, no encoder call.
    traced.spans.clear()
    await traced.api.Segment(pb.SegmentRequest(image_id=reply.image_id, prompt_sets=prompts[:1]))
    (root,) = await _segment_spans(traced.spans)
    assert root.context is not None
    spans = _by_trace(traced.spans.get_finished_spans(), root.context.trace_id)
    assert (root.attributes or {})["sam.cache.hit"] is True
    children = _children(spans, root)
    assert _names(children) == ["embedding_cache.lookup", "encode_masks", "triton.infer"]
    (lookup,) = [s for s in children if s.name == "embedding_cache.lookup"]
    assert (lookup.attributes or {})["sam.cache.hit"] is True and not _children(spans, lookup)


async def test_an_error_status_marks_the_server_span(traced: TracedStack) -> None:
    traced.spans.clear()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await traced.api.Segment(pb.SegmentRequest(image_id="cd" * 32, prompt_sets=[point_set((1, 1, FG))]))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    (root,) = await _segment_spans(traced.spans)
    assert not root.status.is_ok and (root.attributes or {})["rpc.grpc.status_code"] == "NOT_FOUND"
    (lookup,) = _children(list(traced.spans.get_finished_spans()), root)
    assert lookup.name == "embedding_cache.lookup" and (lookup.attributes or {})["sam.cache.hit"] is False


async def test_triton_continues_the_gateways_trace(traced: TracedStack) -> None:
    """Triton's request spans join the gateway's trace, each under the gateway's ``triton.infer``
    span of that call (the ``traceparent`` the gateway sends names that span).

    This Triton build (2.51, the pytriton wheel) now and then starts a fresh trace for a request
    that did carry a valid ``traceparent`` (from none to 3 of 7 requests per test run here; the
    gateway sent a valid one every time, checked by logging the headers). So the test requires
    that every Triton span in the gateway's trace hangs under one of the gateway's client spans,
    with the right model, and that Triton joined encoder and decoder calls each at least once in
    up to 5 Segment calls.
    """
    prompts = [point_set((10, 12, FG)), point_set((10, 12, FG), (30, 20, FG))]
    joined: set[str] = set()  # models whose request span Triton hung under the gateway's span
    for attempt in range(5):
        traced.spans.clear()
        exported_before = len(traced.triton_spans.spans)
        await traced.api.Segment(
            pb.SegmentRequest(image=pb.Image(encoded=png(scene(52, 40, seed=920 + attempt))), prompt_sets=prompts)
        )
        (root,) = await _segment_spans(traced.spans)
        assert root.context is not None
        trace_id = format(root.context.trace_id, "032x")
        spans = _by_trace(traced.spans.get_finished_spans(), root.context.trace_id)
        calls = [s for s in spans if s.name == "triton.infer"]
        assert len(calls) == 3  # one encoder, two decoder calls
        models = {f"{c.context.span_id:016x}": str((c.attributes or {})["triton.model"]) for c in calls if c.context}

        # Wait until Triton has exported a request span under each of the three calls. A span
        # orphaned into a fresh trace never arrives there, so once three request spans have come
        # since this call started (its own, or late ones of the previous call) allow 2 s more.
        # Spans are looked up by trace id over everything received, not by arrival position: under
        # load Triton's batch exporter can send a call's spans after the next call's.
        deadline, grace_end = time.monotonic() + 20, None
        while True:
            received = list(traced.triton_spans.spans)
            ours = [s for s in received if s.get("traceId") == trace_id]
            if sum(s.get("name") == "InferRequest" for s in ours) >= len(calls):
                break
            if grace_end is None and sum(s.get("name") == "InferRequest" for s in received[exported_before:]) >= 3:
                grace_end = time.monotonic() + 2
            if grace_end is not None and time.monotonic() > grace_end:
                break
            count = len(received) - exported_before
            assert time.monotonic() < deadline, f"Triton exported {count} spans in 20 s, not 3 request spans"
            await asyncio.sleep(0.05)

        for request in [s for s in ours if s.get("name") == "InferRequest"]:
            # Triton's request span is a child of a gateway client span: the traceparent arrived.
            parent = request.get("parentSpanId")
            assert parent in models, f"Triton request span under {parent}, not under a gateway call {sorted(models)}"
            (model_span,) = [s for s in ours if s.get("parentSpanId") == request["spanId"]]
            model_attributes = {a["key"]: a["value"].get("stringValue") for a in model_span.get("attributes", [])}
            assert model_attributes["triton.model_name"] == models[parent]
            joined.add(models[parent])
        if joined == {"sam_encoder", "sam_decoder"}:
            break
    assert joined == {"sam_encoder", "sam_decoder"}, f"in 5 Segment calls Triton joined the trace only of {joined}"
