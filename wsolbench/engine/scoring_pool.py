"""Scoring evaluation maps in worker processes while the model predicts the next batches.

:class:`ScoringPool` runs a metric's torch-free ``scoring.statistics`` (numpy + OpenCV:
:mod:`wsolbench.metrics.accumulators`) for each batch in ``workers`` spawned processes with one OpenCV thread
each, and adds each batch's statistics to the metric when it is collected. The statistics are integer sums,
so the result is identical to scoring every batch in the main process, whatever the order in which the
workers finish. At most ``2 * workers`` batches are in flight, so memory stays bounded. With ``workers <= 1``,
or for a metric without a ``scoring`` (a third-party one), batches are scored in the main process. One pool
serves every evaluation of a run; its processes start at the first batch.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor

from wsolbench.scoremaps import single_threaded_worker


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ScoringPool:
    """Score batches of maps in ``workers`` processes (see :mod:`this module <wsolbench.engine.scoring_pool>`);
    a context manager."""

    def __init__(self, workers: int):
        self.workers = max(int(workers), 1)
        self._executor: ProcessPoolExecutor | None = None
        self._pending: deque = deque()

    def submit(self, metric, *batch) -> None:
        """Score ``batch`` (the arguments of ``metric.update``) for ``metric``, now or in a worker."""
        scoring = getattr(metric, "scoring", None)
        if self.workers == 1 or scoring is None:
            metric.update(*batch)
            return
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=single_threaded_worker)
        self._pending.append((metric, self._executor.submit(scoring.statistics, *batch)))
        while len(self._pending) > 2 * self.workers:
            self._collect_oldest()

    def drain(self) -> None:
        """Wait for every submitted batch and add its statistics to its metric (a worker's error is raised
        here, as it would have been by ``metric.update``)."""
        while self._pending:
            self._collect_oldest()

    def _collect_oldest(self) -> None:
        metric, future = self._pending.popleft()
        metric.add_statistics(future.result())

    def close(self) -> None:
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None

    def __enter__(self) -> "ScoringPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
