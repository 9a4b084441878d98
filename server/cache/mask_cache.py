"""A bounded cache of recently returned low-res mask logits, addressed by an opaque mask id.

Every mask the gateway returns gets a mask id; a later Segment call may name it as its mask prompt
instead of sending the logits back. The cache keeps the most recent ``max_entries`` masks (LRU);
an unknown or evicted id is the caller's to report (NOT_FOUND, reason MASK_NOT_FOUND).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StoredMask:
    """Low-res logits of one returned mask and where they came from.

    Attributes:
        logits: read-only ``float32 [4g, 4g]`` mask logits in the padded, resized frame (the frame
            of the decoder's ``mask_input``; 256 x 256 for the standard models).
        model_id: the model that produced them (a mask prompt must go to the same model).
        image_id: the image they belong to.
    """

    logits: np.ndarray
    model_id: str
    image_id: str


@dataclass(frozen=True)
class MaskCacheStats:
    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int


def new_mask_id() -> str:
    """A random, opaque mask id: 32 lowercase hex digits (128 bits of entropy).

    Hex, not base64url: a base64url id starts with '-' once in 64, and a command line then reads it
    as an option (``sam-client segment --mask-id -x...`` fails in argparse).
    """
    return secrets.token_hex(16)


class MaskCache:
    """LRU of :class:`StoredMask` by mask id, holding at most ``max_entries`` (0 disables it)."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, StoredMask] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, logits: np.ndarray, *, model_id: str, image_id: str) -> str:
        """Store a copy of ``logits`` (``float32 [4g, 4g]``) and return its new mask id."""
        if logits.ndim != 2 or logits.dtype != np.float32:
            raise ValueError(
                f"mask logits must be a 2-D float32 array [4g, 4g], got {logits.dtype} {list(logits.shape)}"
            )
        mask_id = new_mask_id()
        if self.max_entries == 0:
            return mask_id
        stored = np.array(logits, dtype=np.float32, copy=True)
        stored.flags.writeable = False
        while len(self._entries) >= self.max_entries:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.logits.nbytes
            self._evictions += 1
        self._entries[mask_id] = StoredMask(stored, model_id, image_id)
        self._bytes += stored.nbytes
        return mask_id

    def get(self, mask_id: str) -> StoredMask | None:
        """The stored mask (marked most recently used), or ``None`` if unknown or evicted."""
        stored = self._entries.get(mask_id)
        if stored is None:
            self._misses += 1
            return None
        self._hits += 1
        self._entries.move_to_end(mask_id)
        return stored

    def stats(self) -> MaskCacheStats:
        return MaskCacheStats(
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            entries=len(self._entries),
            bytes=self._bytes,
        )
