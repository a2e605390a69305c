"""``typed(like, value)``: the constant ``value`` in the Numba type of the scalar ``like``.

Inside a kernel, a Python float literal is float64, and float32 arithmetic mixed with it
is promoted to float64: slower, and not what the array's dtype asks for. Kernels write
``typed(x[0], 0.5)`` to keep float32 data in float32 (and float64 in float64).
"""

from __future__ import annotations

from numba.extending import overload


def typed(like, value):
    """Pure-Python meaning (for the NumPy twins and for reading): ``type(like)(value)``."""
    return type(like)(value)


@overload(typed, inline="always")
def _typed_overload(like, value):
    numba_type = like

    def impl(like, value):
        return numba_type(value)

    return impl
