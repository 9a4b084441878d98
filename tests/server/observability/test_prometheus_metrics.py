from dataclasses import dataclass

import pytest

from server.cache.embedding_cache import CacheStats
from server.observability.metrics import Metrics
from server.observability.tracing import configure_tracing, outgoing_headers


@dataclass
class _Redis:
    hits: int = 4
    misses: int = 1
    errors: int = 2
    bypassed: int = 0
    available: bool = False


def test_cache_counters_are_read_at_scrape_time():
    stats = {
        "value": CacheStats(
            hits=1, misses=2, evictions=0, entries=2, bytes=10, capacity_bytes=100, single_flight_waits=0, rejected=0
        )
    }
    metrics = Metrics()
    metrics.watch_caches(lambda: stats["value"], lambda: _Redis())
    get = metrics.registry.get_sample_value
    assert get("sam_embedding_cache_hits_total") == 1 and get("sam_embedding_cache_bytes") == 10
    stats["value"] = CacheStats(
        hits=5, misses=2, evictions=3, entries=1, bytes=4, capacity_bytes=100, single_flight_waits=7, rejected=0
    )
    assert get("sam_embedding_cache_hits_total") == 5
    assert get("sam_embedding_cache_evictions_total") == 3
    assert get("sam_embedding_cache_single_flight_waits_total") == 7
    assert get("sam_embedding_cache_capacity_bytes") == 100
    assert get("sam_redis_cache_requests_total", {"result": "error"}) == 2
    assert get("sam_redis_cache_available") == 0


def test_triton_calls_by_model_and_outcome():
    metrics = Metrics()
    metrics.observe_triton("sam_decoder", True, 0.004)
    metrics.observe_triton("sam_decoder", False, 0.2)
    get = metrics.registry.get_sample_value
    assert get("sam_triton_request_duration_seconds_count", {"model": "sam_decoder", "outcome": "ok"}) == 1
    assert get("sam_triton_errors_total", {"model": "sam_decoder"}) == 1


def test_tracing_is_off_by_default_and_rejects_unknown_exporters():
    assert configure_tracing({}) is False
    assert configure_tracing({"OTEL_TRACES_EXPORTER": "none"}) is False
    assert outgoing_headers() == {}  # no active span: nothing to propagate
    with pytest.raises(ValueError, match="otlp, console or none"):
        configure_tracing({"OTEL_TRACES_EXPORTER": "zipkin"})
