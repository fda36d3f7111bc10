"""One BLAS / OpenMP thread for the small fits of model selection.

Choosing C, the out-of-fold predictions and the head-family candidates fit thousands of small
problems (a 10k-row sample, MLP minibatches of 200): multi-threaded BLAS spends longer handing
those products between threads than computing them. Measured on 8k x 257 rows, 2 cores:
lbfgs 0.06 s on one thread vs 0.37 s on two; the MLP 0.8 s vs 1.3 s; and with another busy
process on the machine, two threads took 8-12 s for the same MLP (spin-waiting threads). Fits
on every row of a big set keep the default threads, where the products are large enough to
share.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

from threadpoolctl import threadpool_limits

# Above this many cells (rows x features) a fit's products are big enough for several threads.
SHARED_THREADS_CELLS = 50_000_000


def one_thread() -> AbstractContextManager[object]:
    return threadpool_limits(limits=1)


def threads_for(rows: int, features: int) -> AbstractContextManager[object]:
    """Every core for a fit big enough to share, else one thread (inside `one_thread`, this
    lifts the limit for the big fits only)."""
    big = rows * features > SHARED_THREADS_CELLS
    return threadpool_limits(limits=cores() if big else 1)


# Cells (rows x features) of fitting work below which a second process costs more to start
# (~1-2 s: a fresh interpreter importing scikit-learn) than it saves.
PARALLEL_MIN_CELLS = 5_000_000


def workers_for(cells: int) -> int:
    """Processes for a batch of independent fits: every core when the work is big enough."""
    return cores() if cells >= PARALLEL_MIN_CELLS else 1


def cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
