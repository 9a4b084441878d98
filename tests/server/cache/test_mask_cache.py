"""MaskCache: bounded LRU of low-res mask logits by opaque mask id."""

from __future__ import annotations

import numpy as np
import pytest

from server.cache.mask_cache import MaskCache, new_mask_id


def logits(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((16, 16)).astype(np.float32)


def test_put_returns_a_fresh_opaque_id_and_get_returns_a_read_only_copy() -> None:
    cache = MaskCache(4)
    original = logits(0)

    mask_id = cache.put(original, model_id="tiny", image_id="img")
    original[:] = 0  # the caller's array may change afterwards
    stored = cache.get(mask_id)

    assert stored is not None
    np.testing.assert_array_equal(stored.logits, logits(0))
    assert not stored.logits.flags.writeable
    assert (stored.model_id, stored.image_id) == ("tiny", "img")
    assert len(mask_id) >= 20 and mask_id != cache.put(logits(0), model_id="tiny", image_id="img")


def test_mask_ids_are_hex_so_a_command_line_never_reads_one_as_an_option() -> None:
    # 2000 draws: an id alphabet with '-' would start one with it with probability 1 - (63/64)**2000
    ids = [new_mask_id() for _ in range(2000)]
    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)
    assert len(set(ids)) == len(ids)


def test_keeps_only_the_most_recent_entries() -> None:
    cache = MaskCache(2)
    a = cache.put(logits(0), model_id="m", image_id="i")
    b = cache.put(logits(1), model_id="m", image_id="i")
    assert cache.get(a) is not None  # a becomes most recently used

    c = cache.put(logits(2), model_id="m", image_id="i")

    assert cache.get(b) is None
    assert cache.get(a) is not None and cache.get(c) is not None
    stats = cache.stats()
    assert (stats.entries, stats.evictions, stats.bytes) == (2, 1, 2 * 16 * 16 * 4)
    assert (stats.hits, stats.misses) == (3, 1)


def test_zero_entries_disables_the_cache() -> None:
    cache = MaskCache(0)
    assert cache.get(cache.put(logits(0), model_id="m", image_id="i")) is None


@pytest.mark.parametrize("bad", [np.zeros((1, 16, 16), np.float32), np.zeros((16, 16), np.float64)])
def test_rejects_logits_that_are_not_2d_float32(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="2-D float32"):
        MaskCache(1).put(bad, model_id="m", image_id="i")
