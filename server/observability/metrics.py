"""Prometheus metrics of the gateway, in one registry.

Names follow Prometheus conventions (base units, ``_seconds``, ``_bytes``, ``_total``) and labels
stay bounded: gRPC method, status-code name, Triton model, outcome, Segment stage — never image ids.
``deploy/monitoring`` (rules, dashboard) uses exactly these names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# 1 ms .. 60 s, roughly x2.5 per step.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

SEGMENT_STAGES = ("decode_image", "embed", "decode_prompt", "upsample", "encode_masks")


class _CacheCollector(Collector):
    """Reads the embedding cache's (and optionally Redis's) counters at scrape time."""

    def __init__(self, cache_stats: Callable[[], Any], redis_stats: Callable[[], Any] | None) -> None:
        self._cache_stats = cache_stats
        self._redis_stats = redis_stats

    def collect(self) -> Iterator[Any]:
        s = self._cache_stats()
        for name, value, doc in (
            ("hits", s.hits, "Embedding cache lookups that found the image"),
            ("misses", s.misses, "Embedding cache lookups that ran the encoder"),
            ("evictions", s.evictions, "Embeddings evicted to stay within the byte capacity"),
            ("single_flight_waits", s.single_flight_waits,
             "Requests that waited for a concurrent identical encode instead of running their own"),
        ):
            yield CounterMetricFamily(f"sam_embedding_cache_{name}", doc, value=value)
        yield GaugeMetricFamily("sam_embedding_cache_entries", "Embeddings held", value=s.entries)
        yield GaugeMetricFamily("sam_embedding_cache_bytes", "Bytes of embeddings held", value=s.bytes)
        yield GaugeMetricFamily("sam_embedding_cache_capacity_bytes", "Byte capacity of the embedding cache",
                                value=s.capacity_bytes)
        if self._redis_stats is not None:
            r = self._redis_stats()
            family = CounterMetricFamily("sam_redis_cache_requests", "Shared Redis cache requests by result",
                                         labels=["result"])
            for result in ("hit", "miss", "error", "bypassed"):
                family.add_metric([result], getattr(r, {"hit": "hits", "miss": "misses", "error": "errors",
                                                        "bypassed": "bypassed"}[result]))
            yield family
            yield GaugeMetricFamily("sam_redis_cache_available", "1 while the shared Redis cache answers",
                                    value=1.0 if r.available else 0.0)


class Metrics:
    """All gateway metrics, registered in ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rpc_requests = Counter("sam_rpc_requests", "RPCs finished, by method and status code",
                                    ["method", "code"], registry=r)
        self.rpc_errors = Counter("sam_rpc_errors", "RPCs finished with a status other than OK",
                                  ["method", "code"], registry=r)
        self.rpc_duration = Histogram("sam_rpc_duration_seconds", "RPC latency, recorded when the handler ends",
                                      ["method", "code"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.rpc_in_flight = Gauge("sam_rpc_in_flight", "RPCs being handled", ["method"], registry=r)
        self.triton_duration = Histogram("sam_triton_request_duration_seconds", "Triton inference call latency",
                                         ["model", "outcome"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.triton_errors = Counter("sam_triton_errors", "Triton inference calls that failed", ["model"],
                                     registry=r)
        self.segment_stage = Histogram("sam_segment_stage_duration_seconds", "Time of each stage of a Segment call",
                                       ["stage"], buckets=LATENCY_BUCKETS_S, registry=r)

    def watch_caches(self, cache_stats: Callable[[], Any], redis_stats: Callable[[], Any] | None = None) -> None:
        """Exports cache counters read from ``cache_stats()`` (and ``redis_stats()``) at scrape time."""
        self.registry.register(_CacheCollector(cache_stats, redis_stats))

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpc_requests.labels(method, code).inc()
        self.rpc_duration.labels(method, code).observe(seconds)
        if code != "OK":
            self.rpc_errors.labels(method, code).inc()

    def observe_triton(self, model: str, ok: bool, seconds: float) -> None:
        self.triton_duration.labels(model, "ok" if ok else "error").observe(seconds)
        if not ok:
            self.triton_errors.labels(model).inc()
