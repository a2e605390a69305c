"""Shared fixtures: small data files of every format that fastnn reads."""

import gzip
import json
import os
import struct

import numpy as np
import pytest
from hypothesis import settings

# CI (CI=true) replays the same property-test examples every run, so that a landing never
# depends on the draw; local runs explore new examples each time.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# FASTNN_TEST_COMPILE_LOG=path: one JSON line per Numba compilation in this process (the test
# that caused it, the function, its argument types, the nesting depth, the seconds), to find
# the kernel signatures that a single test compiles for itself (on a clean clone the cache is
# cold and compiling is about half of the suite's time). Off: nothing is registered.
if os.environ.get("FASTNN_TEST_COMPILE_LOG"):
    import time

    import numba.core.event

    _compile_log = open(os.environ["FASTNN_TEST_COMPILE_LOG"], "a")  # noqa: SIM115
    _running_test = ["<collection>"]

    class _CompileLog(numba.core.event.Listener):
        def __init__(self):
            self.started = []

        def on_start(self, event):
            self.started.append(time.perf_counter())

        def on_end(self, event):
            seconds = time.perf_counter() - self.started.pop()
            py_func = getattr((event.data or {}).get("dispatcher"), "py_func", None)
            _compile_log.write(json.dumps({
                "test": _running_test[0], "depth": len(self.started), "seconds": seconds,
                "function": f"{getattr(py_func, '__module__', '?')}."
                            f"{getattr(py_func, '__qualname__', '?')}",
                "args": str((event.data or {}).get("args"))}) + "\n")
            _compile_log.flush()

    numba.core.event.register("numba:compile", _CompileLog())

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        _running_test[0] = item.nodeid
        yield
        _running_test[0] = "<between tests>"


def write_idx(path, arr, gz=False):
    """An IDX file (MNIST's format) holding ``arr`` (uint8)."""
    arr = np.asarray(arr, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)
    return path


def blobs(n, d, classes, seed=0, spread=0.6):
    """Separable Gaussian blobs: features (n, d) float64 and labels (n,)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)) * 3
    y = rng.integers(0, classes, n)
    return centres[y] + spread * rng.standard_normal((n, d)), y


@pytest.fixture
def mnist_dir(tmp_path):
    """A tiny MNIST-format directory: 4x4 'images' of 3 classes, train gzipped, test raw."""
    rng = np.random.default_rng(0)

    def images(n):
        y = rng.integers(0, 3, n)
        X = np.zeros((n, 4, 4), np.uint8)
        for i, c in enumerate(y):
            X[i, c, :] = 200
            X[i] += rng.integers(0, 30, (4, 4)).astype(np.uint8)
        return X, y

    X, y = images(120)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", X, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y, gz=True)
    X, y = images(40)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", X)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y)
    return tmp_path


def cli_train(tmp_path, name, *argv):
    """``fastnn train --out tmp_path/name ARGV``: (exit code, output directory)."""
    from fastnn.cli import main

    out = tmp_path / name
    return main(["train", "--out", str(out), *argv]), out


def run_metrics(out) -> dict:
    """The metrics.json of a run's output directory."""
    return json.loads((out / "metrics.json").read_text())
