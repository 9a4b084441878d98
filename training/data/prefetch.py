"""Samples of an indexable dataset computed ahead of use in worker processes.

A training step draws its synthetic scenes at known indices (``step * batch_size + slot`` for the
unbounded synthetic source), so the scenes of the next few steps can be generated while the
current step runs. :class:`Prefetcher` keeps a pool of worker processes, each holding its own copy
of the dataset, and hands back exactly what ``dataset[index]`` would have returned (the scenes
are deterministic by index, so which process made one does not matter). An index that was not
asked for ahead is computed in the calling process.

Workers are started with the ``spawn`` method, so a parent that already initialised CUDA or
holds threads forks nothing it should not.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable
from concurrent import futures
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import cv2

_DATASET: Any = None


def _init_worker(dataset: Any) -> None:
    global _DATASET
    _DATASET = dataset
    cv2.setNumThreads(1)  # one thread per worker: the pool is the parallelism


def _load(index: int) -> Any:
    return _DATASET[index]


class Prefetcher:
    """``dataset[index]`` computed ahead in ``workers`` processes.

    ``dataset`` must be picklable (it is copied into each worker once); call :meth:`close` (or use
    the object as a context manager) to stop the workers.
    """

    def __init__(self, dataset: Any, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.dataset = dataset
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker, initargs=(dataset,))
        self.pending: dict[int, Future] = {}
        self.hits = self.misses = 0

    def want(self, indices: Iterable[int]) -> None:
        """Starts computing ``indices`` (those not already pending)."""
        for index in indices:
            if index not in self.pending:
                self.pending[index] = self.pool.submit(_load, index)

    def wait(self) -> None:
        """Blocks until every pending sample is computed."""
        futures.wait(list(self.pending.values()))

    def forget_below(self, index: int) -> None:
        """Drops pending work for indices below ``index`` (no longer needed)."""
        for key in [k for k in self.pending if k < index]:
            self.pending.pop(key).cancel()

    def __getitem__(self, index: int) -> Any:
        future = self.pending.pop(index, None)
        if future is None:
            self.misses += 1
            return self.dataset[index]
        self.hits += 1
        return future.result()

    def close(self) -> None:
        for future in self.pending.values():
            future.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
