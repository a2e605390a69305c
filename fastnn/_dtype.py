"""Default dtype and the one place where user data is checked and cast to a float dtype."""

from __future__ import annotations

import numpy as np

_SUPPORTED = (np.dtype(np.float32), np.dtype(np.float64))
_default_dtype = np.dtype(np.float32)


def _as_supported(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in _SUPPORTED:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def set_default_dtype(dtype) -> None:
    """Set the dtype of new tensors built from Python numbers and of new layers' parameters.

    Parameters
    ----------
    dtype : float32 or float64 (anything ``np.dtype`` accepts that names one of them).
    """
    global _default_dtype
    _default_dtype = _as_supported(dtype)


def get_default_dtype() -> np.dtype:
    """The current default dtype (float32 unless changed by :func:`set_default_dtype`)."""
    return _default_dtype


def resolve_dtype(dtype) -> np.dtype:
    """``dtype`` checked, or the default dtype when ``dtype`` is None."""
    return _default_dtype if dtype is None else _as_supported(dtype)


def as_float_array(value, dtype=None, name: str = "data") -> np.ndarray:
    """``value`` as an ndarray of a float dtype, refusing what is not real numeric data.

    Floating arrays keep their dtype when ``dtype`` is None; Python numbers, lists and
    integer arrays become the default dtype. bool, complex, object and string data raise
    TypeError naming ``name``: silently turning them into numbers hides a bug upstream.
    """
    arr = np.asarray(value)
    kind = arr.dtype.kind
    if kind not in "fiu":
        what = {"b": "bool", "c": "complex", "O": "object", "U": "string", "S": "bytes"}.get(
            kind, str(arr.dtype)
        )
        raise TypeError(f"{name} must be real numeric data, got {what} array (dtype {arr.dtype})")
    if dtype is not None:
        target = _as_supported(dtype)
    elif (
        kind == "f"
        and arr.dtype in _SUPPORTED
        and type(value) not in (float, int)  # NumPy scalars keep their dtype, as arrays do
        and not isinstance(value, (list, tuple))
    ):
        target = arr.dtype
    else:
        target = _default_dtype
    return arr if arr.dtype == target else arr.astype(target)


_EMPTY: dict[tuple, np.ndarray] = {}


def empty_marker(dtype, cols: int | None = None) -> np.ndarray:
    """A shared array with no rows, (0,) or (0, cols): the kernels' "no bias", "no weights",
    "skip this output" marker. One per (dtype, shape), so a step allocates none.

    Writable, although nothing can be written into it: a read-only array is another Numba
    type, which would compile every kernel once more.
    """
    key = (np.dtype(dtype), cols)
    arr = _EMPTY.get(key)
    if arr is None:
        arr = _EMPTY[key] = np.empty((0,) if cols is None else (0, cols), dtype)
    return arr
