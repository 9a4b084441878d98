"""RedisEmbeddingCache against a real redis-server on a free loopback port.

The server comes from the Debian package ``redis-server`` (``scripts/install_system_deps.sh``
installs it); without it on PATH the Redis tests skip with a message saying so. The entry format
tests need no server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from server.cache.embedding_cache import EmbeddingCache, EmbeddingKey, ImageEmbedding
from server.cache.redis_cache import (
    HEADER,
    CorruptEntry,
    RedisEmbeddingCache,
    decode_entry,
    encode_entry,
    entry_nbytes,
)
from server.codecs import image_id

SHAPE = (256, 8, 8)
F32_BYTES = HEADER.size + int(np.prod(SHAPE)) * 4
F16_BYTES = HEADER.size + int(np.prod(SHAPE)) * 2


def embedding(seed: int, shape: tuple[int, ...] = SHAPE) -> ImageEmbedding:
    array = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return ImageEmbedding(array, original_size=(480, 640), input_size=(768, 1024))


def key(name: str, model_id: str = "tiny@0123456789abcdef") -> EmbeddingKey:
    return EmbeddingKey(model_id, image_id(name.encode()))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- a real redis-server ---------------------------------------------------------------------------


def _redis_server_binary() -> str | None:
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1:<port>, no persistence; stop/start keep the port."""

    def __init__(self, binary: str, workdir: Path, *extra: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self, timeout_s: float = 15.0) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--protected-mode", "yes", *self.extra]  # fmt: skip
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self._log_tail()}")
            try:
                with self.client() as client:
                    if client.ping():
                        return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING in {timeout_s} s: {self._log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _log_tail(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = _redis_server_binary()
    if binary is None:
        pytest.skip("redis-server not found on PATH; install it with `bash scripts/install_system_deps.sh` (as root)")
    return binary


@pytest.fixture()
def redis_server(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary, tmp_path)
    server.start()
    yield server
    server.stop()


# -- entry format (no server) ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_entry_round_trip(dtype: str) -> None:
    value = embedding(0)
    payload = encode_entry(value, dtype)
    assert len(payload) == entry_nbytes(value, dtype) == HEADER.size + value.array.size * np.dtype(dtype).itemsize
    assert HEADER.size == 40

    decoded = decode_entry(payload)

    assert decoded.array.dtype == np.float32 and decoded.array.shape == SHAPE
    assert not decoded.array.flags.writeable
    np.testing.assert_array_equal(decoded.array, value.array.astype(dtype).astype(np.float32))
    assert (decoded.original_size, decoded.input_size) == ((480, 640), (768, 1024))


def test_float16_entry_differs_from_float32_only_by_rounding() -> None:
    value = embedding(1)
    f16 = decode_entry(encode_entry(value, "float16")).array
    assert not np.array_equal(f16, value.array)  # the test would be vacuous if it did not round
    np.testing.assert_allclose(f16, value.array, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:10],  # shorter than the header
        lambda b: b"XXXX" + b[4:],  # wrong magic
        lambda b: b[:4] + bytes([99]) + b[5:],  # unknown format version
        lambda b: b[:5] + bytes([7]) + b[6:],  # unknown dtype code
        lambda b: b[:-1],  # truncated array
        lambda b: b + b"\0",  # trailing bytes
    ],
    ids=["short", "magic", "version", "dtype", "truncated", "trailing"],
)
def test_decode_rejects_what_encode_did_not_write(mangle: object) -> None:
    payload = encode_entry(embedding(0))
    with pytest.raises(CorruptEntry):
        decode_entry(mangle(payload))  # type: ignore[operator]


def test_encode_rejects_non_float_arrays_and_dtypes() -> None:
    ints = ImageEmbedding(np.zeros((2, 2), np.int32), (1, 1), (1, 1))
    with pytest.raises(TypeError, match="float array"):
        encode_entry(ints)
    with pytest.raises(TypeError, match="float32 or float16"):
        encode_entry(embedding(0), "float64")


def test_constructor_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        RedisEmbeddingCache()
    with pytest.raises(ValueError, match="ttl_s"):
        RedisEmbeddingCache("redis://127.0.0.1:1", ttl_s=0)
    with pytest.raises(ValueError, match="max_entry_bytes"):
        RedisEmbeddingCache("redis://127.0.0.1:1", max_entry_bytes=0)


# -- against a real redis-server -------------------------------------------------------------------


@pytest.mark.parametrize("float16", [False, True], ids=["float32", "float16"])
async def test_round_trip_through_redis(redis_server: RedisServer, float16: bool) -> None:
    shared = RedisEmbeddingCache(redis_server.url, ttl_s=60, float16=float16)
    value = embedding(2)
    try:
        assert await shared.get(key("a")) is None
        assert await shared.put(key("a"), value)
        found = await shared.get(key("a"))
    finally:
        await shared.aclose()

    assert found is not None
    assert found.array.dtype == np.float32 and not found.array.flags.writeable
    expected = value.array.astype(np.float16).astype(np.float32) if float16 else value.array
    np.testing.assert_array_equal(found.array, expected)
    assert (found.original_size, found.input_size) == (value.original_size, value.input_size)
    with redis_server.client() as raw:
        assert raw.strlen(shared.redis_key(key("a"))) == (F16_BYTES if float16 else F32_BYTES)
    stats = shared.stats()
    assert (stats.hits, stats.misses, stats.writes, stats.errors) == (1, 1, 1, 0)


async def test_keys_separate_models_and_images(redis_server: RedisServer) -> None:
    cache = RedisEmbeddingCache(redis_server.url)
    try:
        await cache.put(key("a", "vit_b@1"), embedding(0))
        assert await cache.get(key("a", "vit_b@2")) is None
        assert await cache.get(key("b", "vit_b@1")) is None
        assert await cache.get(key("a", "vit_b@1")) is not None
    finally:
        await cache.aclose()
    assert cache.redis_key(key("a", "vit_b@1")) == f"sam:emb:v1:vit_b@1:{image_id(b'a')}"


async def test_every_entry_has_the_ttl_and_a_hit_renews_it(redis_server: RedisServer) -> None:
    shared = RedisEmbeddingCache(redis_server.url, ttl_s=300)
    redis_key = shared.redis_key(key("a"))
    try:
        await shared.put(key("a"), embedding(0))
        with redis_server.client() as raw:
            assert 299_000 < raw.pttl(redis_key) <= 300_000
            raw.pexpire(redis_key, 5_000)
            assert raw.pttl(redis_key) <= 5_000
            assert await shared.get(key("a")) is not None
            assert 299_000 < raw.pttl(redis_key) <= 300_000
    finally:
        await shared.aclose()


async def test_entries_expire_after_the_ttl(redis_server: RedisServer) -> None:
    shared = RedisEmbeddingCache(redis_server.url, ttl_s=0.2)
    try:
        await shared.put(key("a"), embedding(0))
        with redis_server.client() as raw:
            deadline = time.monotonic() + 5
            while raw.exists(shared.redis_key(key("a"))):
                assert time.monotonic() < deadline, "the entry outlived its 0.2 s TTL by 5 s"
                await asyncio.sleep(0.05)
        assert await shared.get(key("a")) is None
    finally:
        await shared.aclose()


async def test_oversize_entries_are_not_written(redis_server: RedisServer) -> None:
    shared = RedisEmbeddingCache(redis_server.url, max_entry_bytes=F32_BYTES - 1)
    try:
        assert not await shared.put(key("big"), embedding(0))
        assert await shared.put(key("small"), embedding(0, (256, 4, 4)))
        with redis_server.client() as raw:
            assert not raw.exists(shared.redis_key(key("big")))
            assert raw.exists(shared.redis_key(key("small")))
        stats = shared.stats()
        assert (stats.oversize, stats.writes, stats.errors) == (1, 1, 0)
    finally:
        await shared.aclose()

    # The bound applies to the stored size: the same embedding fits as float16.
    half = RedisEmbeddingCache(redis_server.url, max_entry_bytes=F32_BYTES - 1, float16=True)
    try:
        assert await half.put(key("big"), embedding(0))
    finally:
        await half.aclose()


async def test_a_corrupt_entry_is_a_miss_and_is_deleted(redis_server: RedisServer,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisEmbeddingCache(redis_server.url)
    redis_key = cache.redis_key(key("a"))
    try:
        with redis_server.client() as raw:
            raw.set(redis_key, b"not an embedding")
            with caplog.at_level(logging.WARNING, logger="server.cache.redis_cache"):
                assert await cache.get(key("a")) is None
            assert not raw.exists(redis_key)
    finally:
        await cache.aclose()
    assert cache.stats().corrupt == 1 and cache.available
    assert "unreadable entry" in caplog.text


async def test_redis_stopped_mid_run_degrades_to_misses_then_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    shared = RedisEmbeddingCache(redis_server.url, ttl_s=60, timeout_s=0.5, backoff_s=2.0, clock=clock)
    try:
        assert await shared.put(key("a"), embedding(0))
        assert await shared.get(key("a")) is not None

        redis_server.stop()
        with caplog.at_level(logging.INFO, logger="server.cache.redis_cache"):
            started = time.monotonic()
            assert await shared.get(key("a")) is None  # fails, opens the breaker
            assert not await shared.put(key("b"), embedding(1))  # skipped: breaker open
            assert await shared.get(key("b")) is None
            assert not await shared.delete(key("a"))
            elapsed = time.monotonic() - started
            assert elapsed < 2.0, f"degraded calls took {elapsed:.2f} s"
            stats = shared.stats()
            assert (stats.errors, stats.bypassed, stats.breaker_opens, stats.available) == (1, 3, 1, False)
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()

            # Past the backoff, one call probes the still-dead Redis and the backoff doubles.
            clock.now += 2.1
            assert await shared.get(key("a")) is None
            assert shared.stats().errors == 2
            clock.now += 2.1  # 2.1 < 4: still open
            assert await shared.get(key("a")) is None
            assert shared.stats().bypassed == 4

            redis_server.start()  # same port, empty (no persistence)
            clock.now += 2.0
            assert await shared.get(key("a")) is None  # the probe reaches Redis: a plain miss
            assert shared.available
            assert await shared.put(key("a"), embedding(0))
            found = await shared.get(key("a"))
            assert found is not None
            np.testing.assert_array_equal(found.array, embedding(0).array)
        assert "available again" in caplog.text
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    finally:
        await shared.aclose()


async def test_a_hung_redis_times_out_quickly(redis_server: RedisServer) -> None:
    """SIGSTOP: the kernel still accepts connections but nothing answers (a hung or partitioned Redis)."""
    shared = RedisEmbeddingCache(redis_server.url, timeout_s=0.3)
    assert redis_server.process is not None
    try:
        assert await shared.put(key("a"), embedding(0))
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert await shared.get(key("a")) is None
            elapsed = time.monotonic() - started
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        assert 0.25 < elapsed < 3.0, f"get on a hung Redis took {elapsed:.2f} s (timeout 0.3 s)"
        assert not shared.available
        assert await shared.ping()  # a forced probe closes the breaker again
        assert shared.available
        assert await shared.get(key("a")) is not None
    finally:
        await shared.aclose()


async def test_unreachable_from_the_start_never_raises() -> None:
    shared = RedisEmbeddingCache(f"redis://127.0.0.1:{_free_port()}/0", timeout_s=0.3)
    try:
        assert await shared.get(key("a")) is None
        assert not await shared.put(key("a"), embedding(0))
        assert not await shared.ping()
        assert await shared.check_server() is None
        assert shared.stats().errors >= 2
    finally:
        await shared.aclose()


async def test_only_one_probe_runs_while_half_open(redis_server: RedisServer) -> None:
    clock = FakeClock()
    shared = RedisEmbeddingCache(redis_server.url, timeout_s=0.3, backoff_s=1.0, clock=clock)
    try:
        redis_server.stop()
        assert await shared.get(key("a")) is None
        clock.now += 1.5
        results = await asyncio.gather(*(shared.get(key("a")) for _ in range(8)))
        assert results == [None] * 8
        stats = shared.stats()
        assert stats.errors == 2, "more than one call probed the dead Redis"
        assert stats.bypassed == 7
    finally:
        await shared.aclose()


async def test_full_redis_refusing_writes_is_not_an_outage(redis_binary: str, tmp_path: Path) -> None:
    server = RedisServer(redis_binary, tmp_path, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
    server.start()
    shared = RedisEmbeddingCache(server.url)
    try:
        with server.client() as raw:  # fill Redis until it refuses writes of an entry's size
            for i in range(200):
                try:
                    raw.set(f"filler:{i}", b"x" * F32_BYTES)
                except redis.exceptions.OutOfMemoryError:
                    break
            else:
                pytest.fail("Redis with maxmemory 2mb accepted 200 writes of 64 KiB")
        assert not await shared.put(key("a"), embedding(0))  # the OOM answer
        assert shared.available, "an OOM answer means Redis is up; the breaker must stay closed"
        assert shared.stats().errors == 1
        assert await shared.get(key("a")) is None
        assert shared.stats().misses == 1  # Redis still serves reads
        info = await shared.check_server()
        assert info == {"maxmemory": 2 * 1024 * 1024, "maxmemory-policy": "noeviction"}
    finally:
        await shared.aclose()
        server.stop()


async def test_allkeys_lru_keeps_redis_within_maxmemory(redis_binary: str, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """The documented configuration: Redis evicts the least recently used embeddings when full."""
    server = RedisServer(redis_binary, tmp_path, "--maxmemory", "20mb", "--maxmemory-policy", "allkeys-lru")
    server.start()
    shared = RedisEmbeddingCache(server.url)  # 4 MiB entries: five fit in 20 MB, not ten
    try:
        with caplog.at_level(logging.WARNING, logger="server.cache.redis_cache"):
            assert (await shared.check_server() or {}).get("maxmemory-policy") == "allkeys-lru"
        assert "maxmemory" not in caplog.text
        for i in range(10):
            assert await shared.put(key(str(i)), embedding(i, (256, 64, 64)))
        assert await shared.get(key("0")) is None
        assert await shared.get(key("9")) is not None
        with server.client() as raw:
            # Redis evicts before a write, so it may exceed maxmemory by at most about one entry.
            assert int(raw.info("memory")["used_memory"]) <= 26 * 1024 * 1024
            assert raw.dbsize() < 10
    finally:
        await shared.aclose()
        server.stop()


# -- as the local cache's second level: two replicas sharing one Redis -----------------------------


class Encoder:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> ImageEmbedding:
        self.calls += 1
        await asyncio.sleep(0)
        return embedding(42)


async def _lookup(local: EmbeddingCache, shared: RedisEmbeddingCache, k: EmbeddingKey,
                  encode: Encoder) -> tuple[ImageEmbedding, bool]:
    """What the gateway does: local, then Redis, then encode (writing both)."""
    from_redis = False

    async def compute() -> ImageEmbedding:
        nonlocal from_redis
        value, from_redis = await shared.fetch_or_compute(k, encode)
        return value

    lookup = await local.get_or_compute(k, compute)
    return lookup.embedding, lookup.cached or from_redis


async def test_a_second_replica_reuses_the_first_replicas_encode(redis_server: RedisServer) -> None:
    encode = Encoder()
    replicas = [(EmbeddingCache(1 << 24), RedisEmbeddingCache(redis_server.url)) for _ in range(2)]
    try:
        (local_a, shared_a), (local_b, shared_b) = replicas
        first, cached_a = await _lookup(local_a, shared_a, key("img"), encode)
        second, cached_b = await _lookup(local_b, shared_b, key("img"), encode)
        again, cached_again = await _lookup(local_b, shared_b, key("img"), encode)

        assert encode.calls == 1
        assert (cached_a, cached_b, cached_again) == (False, True, True)
        np.testing.assert_array_equal(first.array, second.array)
        assert shared_b.stats().hits == 1  # the third call was a local hit: Redis not asked
        assert again is not None
    finally:
        for _, shared in replicas:
            await shared.aclose()


async def test_replicas_keep_encoding_when_redis_is_down(redis_server: RedisServer) -> None:
    encode = Encoder()
    local, shared = EmbeddingCache(1 << 24), RedisEmbeddingCache(redis_server.url, timeout_s=0.3)
    try:
        redis_server.stop()
        value, cached = await _lookup(local, shared, key("img"), encode)
        assert not cached and encode.calls == 1
        np.testing.assert_array_equal(value.array, embedding(42).array)
        _, cached = await _lookup(local, shared, key("img"), encode)
        assert cached and encode.calls == 1  # the local cache still works
    finally:
        await shared.aclose()
