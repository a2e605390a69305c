"""Compilation at start-up: the once-per-process notice, the helper process of a cold
``fastnn train`` and the shared warm-up (fastnn/_warmup.py, fastnn/_prewarm.py)."""

import os
import subprocess
import sys

import numpy as np

import fastnn as fnn
from fastnn import _prewarm

NOTICE = "fastnn: compiling kernels"


def _run(code, cache):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True).stderr


def test_a_compile_pause_is_announced_once_and_a_warm_cache_says_nothing(tmp_path):
    # One tiny kernel (the losses' ordered sum) compiles for a fraction of a second, so the
    # test lowers the threshold; two calls with other dtypes compile twice, and it is said
    # once. (An activation kernel did the same in ~8 s of compiling, in a cache of its own.)
    code = ("import numpy as np, time, fastnn._warmup as w; w.NOTICE_AFTER = 0.01\n"
            "from fastnn.kernels import losses\n"
            "for dt in (np.float32, np.float64):\n"
            "    losses._ordered_sum(np.zeros(4, dt))\n"
            "time.sleep(0.2)\n")
    try:
        err = _run(code, tmp_path / "cache")
    except subprocess.CalledProcessError as exc:  # the kernel's arguments changed
        raise AssertionError(exc.stderr) from None
    assert err.count(NOTICE) == 1
    assert NOTICE not in _run(code, tmp_path / "cache")  # warm: loaded, not compiled


def test_the_helper_trains_a_throwaway_twin_and_leaves_the_model_alone():
    model = fnn.Sequential(fnn.Linear(5, 4, dtype=np.float32), fnn.BatchNorm1d(4,
                           dtype=np.float32), fnn.ReLU(), fnn.Linear(4, 3, dtype=np.float32))
    optimizer = fnn.optim.Adam(model.parameters())
    before = {k: v.copy() for k, v in model.state_dict().items()}
    thresholds = [k.min_parallel for k in fnn.kernels.all_kernels()]
    pid = _prewarm.start(model, fnn.losses.cross_entropy, optimizer, 5)
    assert isinstance(pid, int)
    _prewarm.stop(pid)
    spec = {"architecture": fnn.interop.architecture(model), "loss": "cross_entropy",
            "optimizer": "Adam", "dtype": "float32", "n_inputs": 5}
    _prewarm._steps(spec)  # what the helper runs (here in-process, on a warm cache)
    assert [k.min_parallel for k in fnn.kernels.all_kernels()] == thresholds
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_the_bundled_digits_load_without_importing_scikit_learn():
    code = ("import sys; from fastnn.datasets import load_digits; d = load_digits(); "
            "print(d.X.shape, d.y.dtype, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")[0]
    assert out == "(1797, 64) int64 False"
    sk = __import__("pytest").importorskip("sklearn.datasets").load_digits()
    from fastnn.datasets import load_digits

    d = load_digits()
    np.testing.assert_array_equal(d.X, sk.data)
    np.testing.assert_array_equal(d.y, sk.target)


def test_warmup_with_cnn_runs_every_convolutional_layer_kind(monkeypatch):
    """``fastnn warmup --cnn``: the tiny CNN step goes through the convolution algorithms it
    warms (shifted products, direct depthwise, the batch-wide im2col; forward and backward),
    pooling, BatchNorm2d, Dropout2d and the augment kernel without error."""
    from fastnn import _warmup
    from fastnn.kernels import conv

    calls = set()
    entry_points = [f"{kind}{suffix}" for kind in ("conv2d_forward", "conv2d_backward")
                    for suffix in ("", "_chunked", "_shifted")]
    entry_points += ["depthwise_forward_call", "depthwise_backward_call"]

    def counting(name, original):
        def counted(*args, **kwargs):
            calls.add(name)
            return original(*args, **kwargs)
        return counted

    for name in entry_points:
        monkeypatch.setattr(conv, name, counting(name, getattr(conv, name)))
    # float32, the default dtype: the suite's CNN tests compile these kernels in float32 (in
    # float64, used by no other test, this test compiled ten CNN kernels of its own: ~45 s)
    _warmup.warmup(dtypes=("float32",), verbose=False, parallel=False, cnn=True)
    # all but the chunked im2col (large strided layers; it compiles at its first use)
    assert calls == set(entry_points) - {"conv2d_forward_chunked", "conv2d_backward_chunked"}
