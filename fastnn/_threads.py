"""fastnn's one thread budget.

Everything runs on Numba's pool: the kernels, and the matrix products, whose blocks each
thread hands to single-threaded BLAS (``kernels/blas.py``). ``set_num_threads`` limits that
pool, and BLAS's own threads too (used by NumPy code outside fastnn, and by fastnn's products
only where NumPy's BLAS cannot be called from the pool).
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

