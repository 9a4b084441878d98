"""OpenTelemetry tracing: off unless configured by the standard ``OTEL_*`` variables.

``OTEL_TRACES_EXPORTER`` = ``otlp`` (OTLP/gRPC to ``OTEL_EXPORTER_OTLP_ENDPOINT``) or ``console``
turns it on; unset or ``none`` leaves the API's no-op tracer (nearly free). ``OTEL_SERVICE_NAME``
names the service (default ``sam-gateway``). Read once at start, never on the request path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.trace import Tracer

TRACER_NAME = "sam.gateway"


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
    return trace.get_tracer(TRACER_NAME)


def outgoing_headers() -> dict[str, str]:
    """W3C ``traceparent`` (and ``tracestate``) of the current span, for a call to Triton."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def incoming_context(metadata: tuple[tuple[str, str | bytes], ...] | None):  # type: ignore[no-untyped-def]
    """The trace context a caller sent in gRPC metadata (``traceparent``), or None."""
    carrier = {k: v if isinstance(v, str) else v.decode("latin-1") for k, v in (metadata or ())}
    return propagate.extract(carrier) if "traceparent" in carrier else None
