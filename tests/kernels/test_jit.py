"""kernels/_jit.py: the JIT policy every kernel is compiled with."""

import warnings

import numba.core.caching
import numpy as np
import pytest

from fastnn.kernels import _jit, activations, losses, optim


def test_policy_keeps_nan_semantics_and_is_cached_and_nogil():
    k = activations.activation_forward
    for variant, parallel in ((k.serial, False), (k.parallel, True)):
        opts = variant.targetoptions
        assert opts["nogil"] and opts.get("parallel", False) == parallel
        assert isinstance(variant._cache, numba.core.caching.FunctionCache)  # cache=True
        flags = set(opts["fastmath"])
        assert "nnan" not in flags and "ninf" not in flags and "fast" not in flags
        assert flags == {"nsz", "arcp", "contract", "afn"}  # no "reassoc": see below
    assert set(optim.grad_sq_partial.serial.targetoptions["fastmath"]) == flags | {"reassoc"}


def _adjacent(shape, dtype, gap_bytes):
    """Two arrays of ``shape`` in one allocation, the second starting ``gap_bytes`` after the
    first ends (a pair of small arrays that malloc happened to place side by side)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(2 * size + gap_bytes, np.uint8)
    first = raw[:size].view(dtype).reshape(shape)
    second = raw[size + gap_bytes:].view(dtype).reshape(shape)
    return first, second


@pytest.mark.parametrize("gap", [0, 4, 16, 36, 64])
def test_results_do_not_depend_on_where_the_arrays_lie(gap):
    # With "reassoc", LLVM vectorizes a loop that both stores and sums only after a runtime
    # check that the store does not overwrite what is still to be read; for small arrays
    # within a few vector widths of each other the check fails and the scalar loop runs,
    # which sums in another order: the last bits of the softmax cross-entropy gradient of a
    # (3, 5) batch depended on the addresses malloc gave its two arrays.
    rng = np.random.default_rng(0)
    for n, c in ((3, 5), (4, 8), (2, 17)):
        logits = rng.standard_normal((n, c)).astype(np.float32)
        labels = rng.integers(0, c, n)
        far = np.empty_like(logits)
        partial = np.empty(losses.n_chunks(n))
        ref = losses.softmax_cross_entropy.serial(logits, labels, far, partial)
        z, dz = _adjacent((n, c), np.float32, gap)
        z[...] = logits
        got = losses.softmax_cross_entropy.serial(z, labels, dz, partial)
        assert got == ref
        np.testing.assert_array_equal(dz, far)
        pred, dpred = _adjacent((n * c,), np.float32, gap)
        pred[...] = logits.ravel()
        target = rng.standard_normal(n * c).astype(np.float32)
        far = np.empty(n * c, np.float32)
        marker = np.empty(0, np.float32)
        ref = losses.mse.serial(logits.ravel(), target, 0.5, far, marker, partial)
        assert losses.mse.serial(pred, target, 0.5, dpred, marker, partial) == ref
        np.testing.assert_array_equal(dpred, far)
    # The one kernel compiled with reassociation, a pure reduction: its partial sums land in
    # an array right after the squares' input.
    x = rng.standard_normal(4096 + 13).astype(np.float32)
    ref = np.empty(2)
    optim.grad_sq_partial.serial(x, ref)
    raw = np.empty(x.nbytes + gap + 16, np.uint8)
    xs = raw[:x.nbytes].view(np.float32)
    xs[...] = x
    out = raw[x.nbytes + gap:x.nbytes + gap + 16].view(np.float64)
    optim.grad_sq_partial.serial(xs, out)
    np.testing.assert_array_equal(out, ref)


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


def test_constant_arguments_do_not_compile_a_callee_once_per_value():
    # Numba types a constant argument as a literal and would compile the callee once per
    # value; the policy types calls by their arguments' types, so one compilation serves all.
    @_jit.jit
    def pick(flag, x):
        return x + 1.0 if flag else x - 1.0

    @_jit.jit
    def both(x):
        return pick(True, x) + pick(False, x)

    assert both(2.0) == 4.0
    assert [str(t) for sig in pick.signatures for t in sig] == ["bool", "float64"]
    assert pick(False, 2.0) == 1.0 and len(pick.signatures) == 1  # Python's call: the same


def test_shared_compilation_waits_for_the_process_that_holds_the_kernel(tmp_path):
    # Two processes compile one kernel under sharing: the second waits on the first's lock
    # and then loads the kernel from the cache instead of compiling it again.
    import os
    import subprocess
    import sys
    import textwrap

    source = tmp_path / "shared_kernel.py"
    source.write_text(textwrap.dedent("""
        import sys, time
        from fastnn.kernels import _jit
        _jit.share_compilation(True)

        @_jit.jit
        def twice(x):
            return 2.0 * x

        assert twice(1.5) == 3.0
        print(sum(twice.stats.cache_misses.values()), sum(twice.stats.cache_hits.values()))
    """))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH":
           os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    runs = [subprocess.Popen([sys.executable, str(source)], env=env, stdout=subprocess.PIPE,
                             text=True) for _ in range(2)]
    counts = sorted(tuple(map(int, r.communicate()[0].split())) for r in runs)
    assert counts == [(0, 1), (1, 0)]  # one compiled it, the other loaded it
    assert any(p.suffix == ".lock" for p in (tmp_path / "cache").rglob("*"))
