"""kernels/_jit.py: the JIT policy every kernel is compiled with."""

import warnings

import numba.core.caching
import numpy as np
import pytest

from fastnn.kernels import _jit, activations


def test_policy_keeps_nan_semantics_and_is_cached_and_nogil():
    k = activations.activation_forward
    for variant, parallel in ((k.serial, False), (k.parallel, True)):
        opts = variant.targetoptions
        assert opts["nogil"] and opts.get("parallel", False) == parallel
        assert isinstance(variant._cache, numba.core.caching.FunctionCache)  # cache=True
        flags = set(opts["fastmath"])
        assert "nnan" not in flags and "ninf" not in flags and "fast" not in flags
        assert flags == {"nsz", "arcp", "contract", "afn", "reassoc"}


def test_serial_and_parallel_variants_have_distinct_cache_names():
    k = activations.activation_backward
    assert k.serial.py_func.__qualname__ != k.parallel.py_func.__qualname__
    assert k(10) is k.serial and k(10**7) is k.parallel


@pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")
def test_no_writable_cache_directory_warns_once_and_compiles(monkeypatch):
    # A read-only install: Numba finds no cache locator and raises at decoration time.
    monkeypatch.setattr(numba.core.caching.CacheImpl, "_locator_classes", [])
    monkeypatch.setattr(_jit, "_cache_warned", False)

    def twice(x):
        return 2 * x

    def thrice(x):
        return 3 * x

    with pytest.warns(RuntimeWarning, match="no writable directory"):
        k1 = _jit.kernel(twice)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k2 = _jit.jit(thrice)  # warned once per process, not per kernel
    assert k1.serial(np.float64(2.0)) == 4.0 and k1.parallel(3.0) == 6.0
    assert k2(2.0) == 6.0


def test_other_runtime_errors_are_not_swallowed(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("something else")

    monkeypatch.setattr(_jit.numba, "njit", boom)
    with pytest.raises(RuntimeError, match="something else"):
        _jit.jit(lambda x: x)
