"""OpenTelemetry tracing: off unless configured by the standard ``OTEL_*`` variables.

``OTEL_TRACES_EXPORTER`` = ``otlp`` (OTLP/gRPC to ``OTEL_EXPORTER_OTLP_ENDPOINT``) or ``console``
turns it on; unset or ``none`` leaves the API's no-op tracer (nearly free). ``OTEL_SERVICE_NAME``
names the service (default ``sam-gateway``). Read once at start, never on the request path.

Spans of a call (the interceptor opens the server span; the core and the Triton client open the
children with :func:`child_span`)::

    segmentanything.v1.SegmentAnythingService/Segment     SERVER  sam.model, sam.image.*, sam.prompt_sets, sam.cache.hit
    ├── embedding_cache.lookup                                    sam.cache.hit, sam.cache.source
    │   ├── decode_image          (miss only)                     sam.image.bytes, sam.image.*_px, sam.resized.*_px
    │   └── triton.infer          (miss only)             CLIENT  triton.model=sam_encoder
    ├── triton.infer              (one per prompt length) CLIENT  triton.model=sam_decoder, sam.prompt_sets
    └── encode_masks              (upscale, threshold, encode)    sam.masks, sam.mask_encoding

``triton.infer`` sends its own span as the W3C ``traceparent``, so Triton's spans (when Triton
traces in ``opentelemetry`` mode) hang under it. Child spans are only made while the current span
records: with tracing off (or a caller's unsampled trace) :func:`child_span` costs one check and
returns a shared no-op span.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

TRACER_NAME = "sam.gateway"
#: A proxy: it follows a tracer provider installed after import (by :func:`configure_tracing` or a test).
_TRACER = trace.get_tracer(TRACER_NAME)
_NO_SPAN: AbstractContextManager[Span] = contextlib.nullcontext(trace.INVALID_SPAN)


def configure_tracing(environ: Mapping[str, str] | None = None) -> bool:
    """Installs an SDK tracer provider when the environment asks for one; returns whether it did."""
    env = os.environ if environ is None else environ
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter_name in ("", "none"):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, TLS from OTEL_EXPORTER_OTLP_* variables
    else:
        raise ValueError(f"OTEL_TRACES_EXPORTER={exporter_name!r} is not supported: use otlp, console or none")
    provider = TracerProvider(resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "sam-gateway")}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def tracer() -> Tracer:
    return _TRACER


def child_span(
    name: str, attributes: Mapping[str, AttributeValue] | None = None, kind: SpanKind = SpanKind.INTERNAL
) -> AbstractContextManager[Span]:
    """``with child_span(name, attributes) as span:`` a span under the current one, made current.

    When the current span does not record (tracing off, no RPC span, or an unsampled trace) this
    is one check, and ``span`` is a shared no-op span whose ``set_attribute`` does nothing. An
    exception leaving the block is recorded on the span and marks it as an error.
    """
    if not trace.get_current_span().is_recording():
        return _NO_SPAN
    return _TRACER.start_as_current_span(name, kind=kind, attributes=attributes)


def current_span_attributes(attributes: Mapping[str, Any]) -> None:
    """Adds attributes (model, image size, prompt count, cache hit...) to the current span, if it records."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)


def outgoing_headers() -> dict[str, str]:
    """W3C ``traceparent`` (and ``tracestate``) of the current span, for a call to Triton."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def incoming_context(metadata: tuple[tuple[str, str | bytes], ...] | None):  # type: ignore[no-untyped-def]
    """The trace context a caller sent in gRPC metadata (``traceparent``), or None."""
    carrier = {k: v if isinstance(v, str) else v.decode("latin-1") for k, v in (metadata or ())}
    return propagate.extract(carrier) if "traceparent" in carrier else None
