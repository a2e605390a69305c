"""fastnn's one thread budget, shared by BLAS (during GEMMs) and Numba (during kernels).

The kernels run serially below ``kernels._jit.PARALLEL_MIN_ELEMENTS`` elements, so for small
and medium layers the cores belong to BLAS; both pools are limited to the same budget.
"""

from __future__ import annotations

import numba
from threadpoolctl import threadpool_limits

_limits = None


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads, in BLAS and in Numba's kernels (default: all cores)."""
    global _limits
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive integer, got {n!r}")
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    _limits = threadpool_limits(limits=n)


def get_num_threads() -> int:
    """The thread budget in force (Numba's, which ``set_num_threads`` keeps equal to BLAS's)."""
    return numba.get_num_threads()

