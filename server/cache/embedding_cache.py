"""An asyncio LRU cache of image embeddings, bounded in bytes, with single-flight computation.

The embedding is the only thing that crosses the encoder/decoder seam, so it is what the gateway
caches (never the image). Entries are keyed by ``(model_id, image_id)``, where ``image_id`` is the
sha256 of the image content (:func:`server.codecs.image_id`), so a repeated image costs one hash.

Use from one event loop (the gRPC aio server's); the cache does no locking because nothing in it
awaits between reading and changing its state.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EmbeddingKey:
    """Cache key: the model that computed the embedding and the image's content id
    (:func:`server.codecs.image_id`, a sha256 hex)."""

    model_id: str
    image_id: str


@dataclass(frozen=True)
class ImageEmbedding:
    """One image's encoder output and the sizes needed to map prompts and masks.

    Attributes:
        array: ``float32 [256, g, g]`` image embedding (``g`` = the model's embedding grid side),
            read-only when it comes from the cache.
        original_size: ``(H, W)`` of the image as sent, in pixels.
        input_size: ``(h, w)`` of the resized image fed to the encoder (long side == image_size).
    """

    array: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


@dataclass(frozen=True)
class Lookup:
    """What :meth:`EmbeddingCache.get_or_compute` found.

    ``cached``: the entry was already in the cache (a hit). ``joined``: it was being computed by a
    concurrent call, and this call waited for that result instead of computing it again.
    """

    embedding: ImageEmbedding
    cached: bool
    joined: bool = False


@dataclass(frozen=True)
class CacheStats:
    """A snapshot of the cache counters (for metrics). Counters only grow; ``entries`` and
    ``bytes`` are current values. ``rejected`` counts values larger than the whole capacity."""

    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int
    capacity_bytes: int
    single_flight_waits: int
    rejected: int


class EmbeddingCache:
    """LRU of :class:`ImageEmbedding` bounded by ``capacity_bytes`` of stored arrays.

    Args:
        capacity_bytes: upper bound on the bytes of stored embedding arrays (``>= 0``; 0 disables
            caching, but concurrent identical requests still share one computation).
        float16: store arrays as float16 (half the memory); reads return a float32 copy. The
            caller that computed the value also gets the float16-rounded version, so a hit and a
            miss for the same image give identical results.
    """

    def __init__(self, capacity_bytes: int, *, float16: bool = False) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self.float16 = float16
        self._entries: OrderedDict[EmbeddingKey, ImageEmbedding] = OrderedDict()
        self._in_flight: dict[EmbeddingKey, asyncio.Task[ImageEmbedding]] = {}
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._waits = 0
        self._rejected = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @property
    def bytes_used(self) -> int:
        """Bytes of the arrays currently stored (float16 entries count half)."""
        return self._bytes

    def stats(self) -> CacheStats:
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            entries=len(self._entries),
            bytes=self._bytes,
            capacity_bytes=self.capacity_bytes,
            single_flight_waits=self._waits,
            rejected=self._rejected,
        )

    def get(self, key: EmbeddingKey) -> ImageEmbedding | None:
        """The cached embedding (float32, marked most recently used), or ``None``. Counts a hit or a miss."""
        stored = self._entries.get(key)
        if stored is None:
            self._misses += 1
            return None
        self._hits += 1
        self._entries.move_to_end(key)
        return self._as_float32(stored)

    def delete(self, key: EmbeddingKey) -> bool:
        """Drop ``key``; True if it was cached. A computation in flight for it still stores its result."""
        stored = self._entries.pop(key, None)
        if stored is None:
            return False
        self._bytes -= stored.nbytes
        return True

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    async def get_or_compute(
        self, key: EmbeddingKey, compute: Callable[[], Awaitable[ImageEmbedding]]
    ) -> Lookup:
        """The embedding for ``key``, computing it with ``compute()`` if it is not cached.

        Concurrent calls for the same missing key run ``compute`` once; the others wait for its
        result (counted in ``single_flight_waits``). If ``compute`` raises, every waiting call gets
        that exception and nothing is cached. Cancelling one caller does not cancel the shared
        computation. ``compute`` must return a float32 array, which the cache then owns (callers
        must not change it afterwards).
        """
        stored = self._entries.get(key)
        if stored is not None:
            self._hits += 1
            self._entries.move_to_end(key)
            return Lookup(self._as_float32(stored), cached=True)
        task = self._in_flight.get(key)
        joined = task is not None
        if task is None:
            self._misses += 1
            task = asyncio.ensure_future(self._compute_and_store(key, compute))
            self._in_flight[key] = task
            # Retrieve the outcome even if every caller was cancelled (no "never retrieved" warning).
            task.add_done_callback(_consume_outcome)
        else:
            self._waits += 1
        embedding = await asyncio.shield(task)
        return Lookup(embedding, cached=False, joined=joined)

    async def _compute_and_store(
        self, key: EmbeddingKey, compute: Callable[[], Awaitable[ImageEmbedding]]
    ) -> ImageEmbedding:
        try:
            embedding = await compute()
            if not isinstance(embedding, ImageEmbedding) or embedding.array.dtype != np.float32:
                raise TypeError(
                    "embedding computation must return an ImageEmbedding with a float32 array, got "
                    f"{type(embedding).__name__}"
                    + (f" of {embedding.array.dtype}" if isinstance(embedding, ImageEmbedding) else "")
                )
            stored = self._to_storage(embedding)
            self._store(key, stored)
            return self._as_float32(stored)
        finally:
            del self._in_flight[key]

    def _to_storage(self, embedding: ImageEmbedding) -> ImageEmbedding:
        # float32: a read-only view, no copy; the cache owns the array from here on.
        array = embedding.array.astype(np.float16) if self.float16 else embedding.array.view()
        array.flags.writeable = False
        return ImageEmbedding(array, embedding.original_size, embedding.input_size)

    @staticmethod
    def _as_float32(stored: ImageEmbedding) -> ImageEmbedding:
        if stored.array.dtype == np.float32:
            return stored
        array = stored.array.astype(np.float32)
        array.flags.writeable = False
        return ImageEmbedding(array, stored.original_size, stored.input_size)

    def _store(self, key: EmbeddingKey, stored: ImageEmbedding) -> None:
        size = stored.nbytes
        if size > self.capacity_bytes:
            self._rejected += 1
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._bytes -= previous.nbytes
        while self._bytes + size > self.capacity_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes
            self._evictions += 1
        self._entries[key] = stored
        self._bytes += size


def _consume_outcome(task: asyncio.Task[ImageEmbedding]) -> None:
    if not task.cancelled():
        task.exception()
