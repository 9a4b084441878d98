"""An optional second-level embedding cache in Redis, shared by every gateway replica.

With several gateway replicas behind one Service, calls for one image land on different replicas
and each replica's in-process :class:`~server.cache.embedding_cache.EmbeddingCache` misses once.
This cache sits between the local LRU and the encoder: local, then Redis, then Triton, writing
both on the way back (:meth:`RedisEmbeddingCache.fetch_or_compute` is that middle step, meant to
be the ``compute`` function of the local cache's single-flight ``get_or_compute``).

Off by default: the gateway builds one only when it is given a Redis URL.

Entries
    Key ``<prefix><model_id>:<image_id>`` (the local cache's :class:`EmbeddingKey`; ``image_id``
    is the sha256 of the image content, so replicas agree on it). Value: a 40-byte header
    (:data:`HEADER`: magic, format version, dtype, ``original_size``, ``input_size``, the array
    shape) followed by the raw little-endian array, float32 or float16. Every entry is written with
    a TTL (``ttl_s``); a hit refreshes it (``GETEX``), so images in use stay and idle ones expire.

Size policy
    Entries larger than ``max_entry_bytes`` are not written (counted in ``oversize``). The bound
    on the whole cache is Redis's own: run it with ``maxmemory`` and ``maxmemory-policy
    allkeys-lru`` (a Redis used only as this cache) or ``volatile-lru`` (a shared one; all our
    keys have a TTL). :meth:`RedisEmbeddingCache.check_server` warns when neither is set, because
    Redis then answers writes with OOM errors once it is full.

Failure policy
    Redis is an optimisation, never a dependency: every operation is bounded by ``timeout_s``, and
    any failure is a miss (``get``) or a skipped write (``put``), counted and logged, never an
    exception to the caller. A connection failure or timeout opens a circuit breaker: for
    ``backoff_s`` (doubling on each failed probe up to ``max_backoff_s``) calls skip Redis without
    touching the network (``bypassed``); then one call probes it, and a success closes the breaker.
    One WARNING line when it opens, one INFO line when it recovers. Redis's own retries are off
    (the breaker is the retry policy), so a dead Redis costs one timeout per backoff period.

Needs Redis 6.2 or newer (``GETEX``). Use from one event loop (the gRPC aio server's), like the
local cache.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.cache.embedding_cache import EmbeddingKey, ImageEmbedding

log = logging.getLogger(__name__)

DEFAULT_KEY_PREFIX = "sam:emb:v1:"

# Header: magic, format version, dtype code, ndim, reserved byte, original (H, W), input (h, w),
# then ndim uint32 dims (padded to MAX_NDIM so the header has one fixed size).
MAGIC = b"SAME"
FORMAT_VERSION = 1
MAX_NDIM = 4
HEADER = struct.Struct(f"<4sBBBx4I{MAX_NDIM}I")
_DTYPE_CODES: dict[np.dtype, int] = {np.dtype("<f4"): 1, np.dtype("<f2"): 2}
_CODE_DTYPES = {code: dtype for dtype, code in _DTYPE_CODES.items()}

# Failures that mean "Redis is not reachable right now" and open the breaker. Anything else from
# Redis (an OOM answer to SET, a READONLY replica) is counted and logged but leaves it closed.
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, asyncio.TimeoutError, OSError)


class CorruptEntry(ValueError):
    """A Redis value that is not an embedding this code wrote (wrong magic, version or length)."""


def encode_entry(embedding: ImageEmbedding, dtype: np.dtype | str = "float32") -> bytes:
    """Header + raw little-endian bytes of ``embedding.array`` cast to ``dtype`` (float32/float16).

    Raises:
        TypeError: the array is not floating point, or ``dtype`` is not float32/float16.
        ValueError: the array has more than :data:`MAX_NDIM` dimensions.
    """
    wire = np.dtype(dtype).newbyteorder("<")
    if wire not in _DTYPE_CODES:
        raise TypeError(f"embeddings are stored as float32 or float16, not {np.dtype(dtype)}")
    array = embedding.array
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"an embedding must be a float array, got {array.dtype}")
    if array.ndim > MAX_NDIM:
        raise ValueError(f"an embedding has at most {MAX_NDIM} dimensions, got shape {list(array.shape)}")
    dims = list(array.shape) + [0] * (MAX_NDIM - array.ndim)
    header = HEADER.pack(
        MAGIC, FORMAT_VERSION, _DTYPE_CODES[wire], array.ndim, *embedding.original_size, *embedding.input_size, *dims
    )
    return header + np.ascontiguousarray(array, dtype=wire).tobytes()


def entry_nbytes(embedding: ImageEmbedding, dtype: np.dtype | str = "float32") -> int:
    """Size of :func:`encode_entry`'s result without building it."""
    return HEADER.size + int(embedding.array.size) * np.dtype(dtype).itemsize


def decode_entry(payload: bytes) -> ImageEmbedding:
    """The :class:`ImageEmbedding` in ``payload``, as a read-only float32 array.

    Raises:
        CorruptEntry: ``payload`` was not written by :func:`encode_entry` (or is truncated).
    """
    if len(payload) < HEADER.size:
        raise CorruptEntry(f"entry of {len(payload)} bytes is shorter than the {HEADER.size}-byte header")
    magic, version, code, ndim, oh, ow, ih, iw, *dims = HEADER.unpack_from(payload)
    if magic != MAGIC or version != FORMAT_VERSION:
        raise CorruptEntry(f"entry has magic {magic!r} version {version}, expected {MAGIC!r} {FORMAT_VERSION}")
    if code not in _CODE_DTYPES or not 0 < ndim <= MAX_NDIM:
        raise CorruptEntry(f"entry has unknown dtype code {code} or ndim {ndim}")
    dtype = _CODE_DTYPES[code]
    shape = tuple(dims[:ndim])
    expected = HEADER.size + int(np.prod(shape)) * dtype.itemsize
    if len(payload) != expected:
        raise CorruptEntry(f"entry of shape {list(shape)} {dtype} should be {expected} bytes, got {len(payload)}")
    array = np.frombuffer(payload, dtype=dtype, offset=HEADER.size).reshape(shape)
    # float32 from bytes is already read-only and zero-copy; float16 becomes a new float32 array.
    array = array.astype(np.float32, copy=False) if dtype != np.float32 else array
    array.flags.writeable = False
    return ImageEmbedding(array, (oh, ow), (ih, iw))


@dataclass(frozen=True)
class RedisCacheStats:
    """A snapshot of the counters (for metrics); counters only grow.

    ``hits``/``misses``: lookups that reached Redis. ``errors``: operations that failed (Redis
    unreachable, timed out, an error answer, or a corrupt entry). ``bypassed``: operations skipped
    because the breaker was open. ``writes``: entries stored. ``oversize``: entries not written for
    exceeding ``max_entry_bytes``. ``corrupt``: unreadable entries found (and deleted).
    ``breaker_opens``: times the breaker opened. ``available``: the breaker is closed now.
    """

    hits: int
    misses: int
    errors: int
    bypassed: int
    writes: int
    oversize: int
    corrupt: int
    breaker_opens: int
    available: bool


class RedisEmbeddingCache:
    """Second-level embedding cache in Redis; failures degrade to misses (see the module docstring).

    Args:
        url: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS, ``unix://`` paths).
        ttl_s: lifetime of an entry in seconds (> 0; fractions allowed), renewed on every hit.
        max_entry_bytes: entries larger than this (header included) are not written.
        float16: store float16 (half the bytes in Redis and on the wire). Use the same setting as
            the local cache's ``float16`` so a hit from Redis equals a local hit bit for bit.
        timeout_s: bound on one Redis operation, connecting included.
        backoff_s, max_backoff_s: how long the breaker stays open after the first failure, and
            the cap as it doubles on each failed probe.
        key_prefix: prefix of every key (includes the entry format version).
        client: an existing ``redis.asyncio.Redis`` instead of ``url`` (its retry settings are
            then the caller's).
        clock: monotonic seconds (tests pass a fake one to step through the backoff).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        ttl_s: float = 3600.0,
        max_entry_bytes: int = 8 << 20,
        float16: bool = False,
        timeout_s: float = 0.5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        client: aioredis.Redis | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if url is not None and client is not None:
            raise ValueError("give exactly one of url and client, not both")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive seconds, got {ttl_s}")
        if max_entry_bytes <= 0:
            raise ValueError(f"max_entry_bytes must be positive, got {max_entry_bytes}")
        if timeout_s <= 0 or backoff_s <= 0 or max_backoff_s < backoff_s:
            raise ValueError(
                f"need timeout_s > 0 and 0 < backoff_s <= max_backoff_s, got {timeout_s}, {backoff_s}, {max_backoff_s}"
            )
        if client is None:
            if url is None:
                raise ValueError("give exactly one of url and client")
            client = aioredis.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                # The breaker is the retry policy: a dead Redis must cost one timeout, not four.
                retry=Retry(NoBackoff(), 0),
                health_check_interval=30,
            )
        self._client = client
        self.url = url
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.max_entry_bytes = max_entry_bytes
        self.dtype = np.dtype("<f2") if float16 else np.dtype("<f4")
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.key_prefix = key_prefix
        self._clock = clock
        # Breaker state: closed when _open_until is None.
        self._open_until: float | None = None
        self._current_backoff = backoff_s
        self._probing = False
        self._hits = 0
        self._misses = 0
        self._errors = 0
        self._bypassed = 0
        self._writes = 0
        self._oversize = 0
        self._corrupt = 0
        self._opens = 0

    # -- public API ------------------------------------------------------------------------------

    def redis_key(self, key: EmbeddingKey) -> str:
        return f"{self.key_prefix}{key.model_id}:{key.image_id}"

    @property
    def available(self) -> bool:
        """False while the breaker is open (Redis failed recently and is being skipped)."""
        return self._open_until is None

    def stats(self) -> RedisCacheStats:
        return RedisCacheStats(
            hits=self._hits,
            misses=self._misses,
            errors=self._errors,
            bypassed=self._bypassed,
            writes=self._writes,
            oversize=self._oversize,
            corrupt=self._corrupt,
            breaker_opens=self._opens,
            available=self.available,
        )

    async def get(self, key: EmbeddingKey) -> ImageEmbedding | None:
        """The embedding stored for ``key`` (read-only float32), or ``None`` on a miss or any failure.

        A hit renews the entry's TTL. A corrupt entry is deleted and counts as a miss.
        """
        redis_key = self.redis_key(key)
        payload = await self._call("get", self._client.getex, redis_key, px=self.ttl_ms)
        if payload is _FAILED:
            return None
        if payload is None:
            self._misses += 1
            return None
        try:
            embedding = decode_entry(payload)
        except CorruptEntry as error:
            self._corrupt += 1
            self._errors += 1
            self._misses += 1
            log.warning("redis embedding cache: dropping unreadable entry %s: %s", redis_key, error)
            await self._call("delete", self._client.delete, redis_key)
            return None
        self._hits += 1
        return embedding

    async def put(self, key: EmbeddingKey, embedding: ImageEmbedding) -> bool:
        """Store ``embedding`` under ``key`` with the TTL; True if Redis accepted it.

        False (and no exception) when it is larger than ``max_entry_bytes``, when the breaker is
        open, or when Redis fails or refuses the write.

        Raises:
            TypeError: ``embedding.array`` is not a float array (a bug in the caller, not Redis).
        """
        if entry_nbytes(embedding, self.dtype) > self.max_entry_bytes:
            self._oversize += 1
            return False
        payload = encode_entry(embedding, self.dtype)
        result = await self._call("put", self._client.set, self.redis_key(key), payload, px=self.ttl_ms)
        if result is _FAILED:
            return False
        self._writes += 1
        return True

    async def delete(self, key: EmbeddingKey) -> bool:
        """Drop ``key`` from Redis; True if it was there (False also when Redis is unavailable)."""
        result = await self._call("delete", self._client.delete, self.redis_key(key))
        return result is not _FAILED and bool(result)

    async def fetch_or_compute(
        self, key: EmbeddingKey, compute: Callable[[], Awaitable[ImageEmbedding]]
    ) -> tuple[ImageEmbedding, bool]:
        """Redis's embedding for ``key``, else ``await compute()`` written to Redis.

        Returns ``(embedding, from_redis)``. Exceptions of ``compute`` propagate unchanged (they are
        the encoder's); Redis failures never do. Use it as the local cache's compute step::

            async def compute() -> ImageEmbedding:
                embedding, from_redis = await shared.fetch_or_compute(key, encode)
                ...
            lookup = await local.get_or_compute(key, compute)

        The write is awaited (bounded by ``timeout_s``), so once this returns another replica finds it.
        """
        found = await self.get(key)
        if found is not None:
            return found, True
        embedding = await compute()
        await self.put(key, embedding)
        return embedding, False

    async def ping(self) -> bool:
        """True if Redis answers PING now (a probe: it also closes an open breaker on success)."""
        return await self._call("ping", self._client.ping, force=True) is not _FAILED

    async def check_server(self) -> dict[str, Any] | None:
        """Read Redis's eviction settings and warn when it is not set up as a cache.

        Returns ``{"maxmemory": int, "maxmemory-policy": str}``, or ``None`` when Redis is
        unreachable or refuses ``CONFIG GET`` (managed Redis services often do); never raises.
        """
        try:
            async with asyncio.timeout(self.timeout_s):
                memory = await self._client.config_get("maxmemory")
                policy = await self._client.config_get("maxmemory-policy")
        except (RedisError, *_UNAVAILABLE) as error:
            log.info("redis embedding cache: cannot read maxmemory settings (%s); not checking them", error)
            return None
        settings = {_text(k): _text(v) for k, v in {**memory, **policy}.items()}
        maxmemory = int(settings.get("maxmemory", "0"))
        eviction = settings.get("maxmemory-policy", "")
        if maxmemory == 0 or not eviction.endswith(("-lru", "-lfu", "-random", "-ttl")):
            log.warning(
                "redis embedding cache: Redis has maxmemory=%s maxmemory-policy=%s; set maxmemory and "
                "maxmemory-policy allkeys-lru (or volatile-lru), or it fills up and refuses writes",
                maxmemory,
                eviction,
            )
        return {"maxmemory": maxmemory, "maxmemory-policy": eviction}

    async def aclose(self) -> None:
        """Close the connection pool (at gateway shutdown)."""
        try:
            await self._client.aclose()
        except (RedisError, *_UNAVAILABLE):  # pragma: no cover - closing a dead connection
            pass

    # -- the breaker -----------------------------------------------------------------------------

    async def _call(self, operation: str, function: Callable[..., Awaitable[Any]], *args: Any,
                    force: bool = False, **kwargs: Any) -> Any:
        """``await function(*args, **kwargs)`` under the timeout and the breaker; :data:`_FAILED` on failure."""
        probe = False
        if self._open_until is not None and not force:
            if self._clock() < self._open_until or self._probing:
                self._bypassed += 1
                return _FAILED
            probe = self._probing = True
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await function(*args, **kwargs)
        except _UNAVAILABLE as error:
            self._errors += 1
            self._trip(operation, error)
            return _FAILED
        except RedisError as error:
            # Redis answered, with an error (OOM when full under noeviction, READONLY, ...).
            self._errors += 1
            self._recover()
            log.warning("redis embedding cache: %s failed: %s", operation, error)
            return _FAILED
        finally:
            if probe:
                self._probing = False
        self._recover()
        return result

    def _trip(self, operation: str, error: BaseException) -> None:
        was_closed = self._open_until is None
        if was_closed:
            self._current_backoff = self.backoff_s
            self._opens += 1
        else:
            self._current_backoff = min(self._current_backoff * 2, self.max_backoff_s)
        self._open_until = self._clock() + self._current_backoff
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if was_closed:
            log.warning(
                "redis embedding cache unavailable (%s during %s); serving from the local cache only, "
                "retrying in %.1f s",
                reason,
                operation,
                self._current_backoff,
            )
        else:
            log.debug("redis embedding cache still unavailable (%s); retrying in %.1f s", reason, self._current_backoff)

    def _recover(self) -> None:
        if self._open_until is not None:
            self._open_until = None
            self._current_backoff = self.backoff_s
            log.info("redis embedding cache available again")


class _Failed:
    """Sentinel result of a Redis call that failed or was skipped (``None`` is a real GET answer)."""

    def __repr__(self) -> str:
        return "<failed>"


_FAILED: Any = _Failed()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
