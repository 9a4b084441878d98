"""EmbeddingCache: byte-bounded LRU, float16 storage, single-flight."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from server.cache.embedding_cache import EmbeddingCache, EmbeddingKey, ImageEmbedding
from server.codecs import image_id

SHAPE = (256, 4, 4)
ENTRY_BYTES = int(np.prod(SHAPE)) * 4  # float32


def embedding(seed: int) -> ImageEmbedding:
    array = np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)
    return ImageEmbedding(array, original_size=(480, 640), input_size=(768, 1024))


def key(name: str, model_id: str = "tiny") -> EmbeddingKey:
    return EmbeddingKey(model_id, image_id(name.encode()))


class CountingFactory:
    """An async factory that counts calls and can be held until released."""

    def __init__(self, value: ImageEmbedding, *, error: Exception | None = None, hold: bool = False) -> None:
        self.value = value
        self.error = error
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self) -> ImageEmbedding:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.value


def test_keys_differ_by_model() -> None:
    assert key("abc", "vit_b") != key("abc", "tiny")
    assert key("abc", "tiny") == key("abc", "tiny")


async def test_miss_then_hit_returns_the_same_float32_embedding() -> None:
    cache = EmbeddingCache(10 * ENTRY_BYTES)
    value = embedding(0)
    factory = CountingFactory(value)

    first = await cache.get_or_compute(key("a"), factory)
    second = await cache.get_or_compute(key("a"), factory)

    assert (first.cached, second.cached) == (False, True)
    assert factory.calls == 1
    np.testing.assert_array_equal(second.embedding.array, value.array)
    assert second.embedding.array.dtype == np.float32
    assert second.embedding.original_size == (480, 640) and second.embedding.input_size == (768, 1024)
    assert not second.embedding.array.flags.writeable
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries, stats.bytes) == (1, 1, 1, ENTRY_BYTES)


async def test_evicts_least_recently_used_at_the_byte_bound() -> None:
    cache = EmbeddingCache(2 * ENTRY_BYTES + ENTRY_BYTES // 2)  # room for two entries
    for name, seed in (("a", 0), ("b", 1)):
        await cache.get_or_compute(key(name), CountingFactory(embedding(seed)))
    assert cache.get(key("a")) is not None  # "a" is now the most recently used

    await cache.get_or_compute(key("c"), CountingFactory(embedding(2)))

    assert key("b") not in cache
    assert key("a") in cache and key("c") in cache
    stats = cache.stats()
    assert (stats.evictions, stats.entries, stats.bytes) == (1, 2, 2 * ENTRY_BYTES)
    assert stats.bytes <= stats.capacity_bytes


async def test_entry_larger_than_capacity_is_returned_but_not_cached() -> None:
    cache = EmbeddingCache(ENTRY_BYTES - 1)
    value = embedding(0)

    result = await cache.get_or_compute(key("a"), CountingFactory(value))

    np.testing.assert_array_equal(result.embedding.array, value.array)
    assert len(cache) == 0 and cache.bytes_used == 0
    assert cache.stats().rejected == 1


async def test_float16_storage_halves_bytes_and_reads_back_float32() -> None:
    cache = EmbeddingCache(10 * ENTRY_BYTES, float16=True)
    value = embedding(0)

    computed = await cache.get_or_compute(key("a"), CountingFactory(value))
    hit = await cache.get_or_compute(key("a"), CountingFactory(value))

    assert cache.bytes_used == ENTRY_BYTES // 2
    assert hit.cached
    for result in (computed, hit):
        assert result.embedding.array.dtype == np.float32
        np.testing.assert_array_equal(result.embedding.array, value.array.astype(np.float16).astype(np.float32))
    assert not np.array_equal(hit.embedding.array, value.array)  # really rounded through float16


async def test_concurrent_requests_for_one_missing_key_compute_once() -> None:
    cache = EmbeddingCache(10 * ENTRY_BYTES)
    factory = CountingFactory(embedding(0), hold=True)

    calls = [asyncio.ensure_future(cache.get_or_compute(key("a"), factory)) for _ in range(8)]
    await factory.started.wait()
    await asyncio.sleep(0)  # let the seven followers reach the shared computation
    factory.release.set()
    results = await asyncio.gather(*calls)

    assert factory.calls == 1
    assert sum(r.joined for r in results) == 7
    assert all(not r.cached for r in results)
    assert all(r.embedding is results[0].embedding for r in results)
    stats = cache.stats()
    assert (stats.misses, stats.single_flight_waits, stats.entries) == (1, 7, 1)


async def test_a_failing_computation_reaches_every_waiter_and_caches_nothing() -> None:
    cache = EmbeddingCache(10 * ENTRY_BYTES)
    factory = CountingFactory(embedding(0), error=RuntimeError("encoder failed"), hold=True)

    calls = [asyncio.ensure_future(cache.get_or_compute(key("a"), factory)) for _ in range(4)]
    await factory.started.wait()
    await asyncio.sleep(0)
    factory.release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert factory.calls == 1
    assert all(isinstance(o, RuntimeError) and str(o) == "encoder failed" for o in outcomes)
    assert len(cache) == 0
    retry = await cache.get_or_compute(key("a"), CountingFactory(embedding(0)))
    assert not retry.cached and key("a") in cache


async def test_cancelling_the_first_caller_does_not_cancel_the_shared_computation() -> None:
    cache = EmbeddingCache(10 * ENTRY_BYTES)
    factory = CountingFactory(embedding(0), hold=True)
    first = asyncio.ensure_future(cache.get_or_compute(key("a"), factory))
    await factory.started.wait()
    second = asyncio.ensure_future(cache.get_or_compute(key("a"), factory))
    await asyncio.sleep(0)

    first.cancel()
    factory.release.set()

    result = await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert result.joined and factory.calls == 1
    assert key("a") in cache


async def test_delete_drops_the_entry_and_its_bytes() -> None:
    cache = EmbeddingCache(10 * ENTRY_BYTES)
    await cache.get_or_compute(key("a"), CountingFactory(embedding(0)))

    assert cache.delete(key("a")) is True
    assert cache.delete(key("a")) is False
    assert cache.get(key("a")) is None
    assert cache.bytes_used == 0


async def test_a_non_float32_embedding_is_rejected() -> None:
    cache = EmbeddingCache(10 * ENTRY_BYTES)
    value = ImageEmbedding(np.zeros(SHAPE, np.float64), (1, 1), (1, 1))

    with pytest.raises(TypeError, match="float32"):
        await cache.get_or_compute(key("a"), CountingFactory(value))
    assert len(cache) == 0


def test_negative_capacity_is_rejected() -> None:
    with pytest.raises(ValueError, match="capacity_bytes"):
        EmbeddingCache(-1)
