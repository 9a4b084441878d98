import numpy as np
import pytest

from training.data.prefetch import Prefetcher
from training.data.synthetic import SceneConfig, SyntheticDataset


def test_prefetched_scenes_are_the_scenes_the_dataset_makes():
    dataset = SyntheticDataset("train", 1000, SceneConfig(long_side=128))
    with Prefetcher(dataset, workers=2) as prefetcher:
        prefetcher.want([5, 6, 7])
        prefetcher.want([6])  # already pending: not asked twice
        assert sorted(prefetcher.pending) == [5, 6, 7]
        prefetcher.wait()
        assert all(future.done() for future in prefetcher.pending.values())
        for index in (5, 6, 7, 9):  # 9 was not asked for: computed here
            got, want = prefetcher[index], dataset[index]
            np.testing.assert_array_equal(got.image, want.image)
            np.testing.assert_array_equal(got.masks, want.masks)
            np.testing.assert_array_equal(got.levels, want.levels)
        assert (prefetcher.hits, prefetcher.misses) == (3, 1)
        prefetcher.want([1, 2, 20])
        prefetcher.forget_below(10)
        assert sorted(prefetcher.pending) == [20]


def test_prefetcher_needs_a_worker():
    with pytest.raises(ValueError, match="workers"):
        Prefetcher(SyntheticDataset("train", 4), workers=0)
