"""Model selection runs on one BLAS thread; fits on every row of a big set get every core."""

from __future__ import annotations

import os

import numpy  # noqa: F401 - loads the BLAS the limits act on
import scipy.linalg  # noqa: F401
from threadpoolctl import threadpool_info

from train.fit.threads import SHARED_THREADS_CELLS, one_thread, threads_for


def _blas_threads() -> set[int]:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_one_thread_then_every_core_for_big_fits_only():
    cores = len(os.sched_getaffinity(0))
    before = _blas_threads()
    assert before  # numpy's BLAS is loaded, so the checks below can fail
    with one_thread():
        assert _blas_threads() == {1}
        with threads_for(1000, 257):
            assert _blas_threads() == {1}
        with threads_for(SHARED_THREADS_CELLS // 257 + 1, 257):
            assert _blas_threads() == {cores}
        assert _blas_threads() == {1}  # restored after the big fit
    assert _blas_threads() == before


def test_processes_only_for_work_that_pays_their_start_up():
    from train.fit.threads import PARALLEL_MIN_CELLS, workers_for

    assert workers_for(PARALLEL_MIN_CELLS - 1) == 1
    assert workers_for(PARALLEL_MIN_CELLS) == len(os.sched_getaffinity(0))
