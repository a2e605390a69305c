"""Sparse vs dense X in fastnn.sklearn.MLPClassifier: tracemalloc peak of a fit, and step time.

A standalone script (not an asv benchmark)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE uv run python asv_bench/sklearn_sparse.py memory
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE uv run python asv_bench/sklearn_sparse.py time

memory: one epoch on a 200,000 x 5,000 CSR X of density 0.001 (float32, hidden (100,)):
tracemalloc's peak during the fit (X itself excluded: it exists before), against the 4 GB the
densified X alone would take; then the same on 20,000 rows, sparse against ``X.toarray()``.
time: seconds per step (batch 200) of 3-epoch fits on the 20,000-row X, sparse and dense
alternated three times, medians.

Measured 2026-12-07 on a loaded 2-core machine: 200,000 x 5,000: X 8.8 MB sparse, fit peak
19.1 MB (densified X: 4.0 GB); 20,000 x 5,000: 0.9 + 16.7 MB sparse against 400 + 16.7 MB
dense (23.7x less); a step 45.9 ms sparse, 48.2 ms dense (0.95x; noisy: 38-73 and 42-60 ms).
"""
import sys
import time
import tracemalloc
import warnings

import numpy as np
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning

from fastnn.sklearn import MLPClassifier

warnings.simplefilter("ignore", ConvergenceWarning)
n_big, d, density = 200_000, 5_000, 0.001
n_small = 20_000
hidden = (100,)


def data(n):
    X = sparse.random(n, d, density=density, format="csr", dtype=np.float32, random_state=0)
    y = (np.asarray(X[:, :500].sum(axis=1)).ravel() > 0).astype(int)
    return X, y


def x_bytes(X):
    if sparse.issparse(X):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return X.nbytes


def peak_fit(X, y, epochs=1):
    est = MLPClassifier(hidden, max_iter=epochs, random_state=0)
    tracemalloc.start()
    t = time.perf_counter()
    est.fit(X, y)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, seconds, est


# warm up (compile) on a small slice
Xw, yw = data(2_000)
MLPClassifier(hidden, max_iter=1, random_state=0).fit(Xw, yw)
MLPClassifier(hidden, max_iter=1, random_state=0).fit(Xw.toarray(), yw)

what = sys.argv[1] if len(sys.argv) > 1 else "all"
if what in ("all", "memory"):
    X, y = data(n_big)
    peak, sec, _ = peak_fit(X, y)
    print(f"{n_big}x{d} density {density} float32: sparse X {x_bytes(X) / 1e6:.1f} MB, "
          f"fit peak (tracemalloc, beyond X) {peak / 1e6:.1f} MB, one epoch {sec:.1f} s; "
          f"densified X would be {n_big * d * 4 / 1e9:.1f} GB (float32)", flush=True)
    Xs, ys = data(n_small)
    peak_s, _, _ = peak_fit(Xs, ys)
    Xd = Xs.toarray()
    peak_d, _, _ = peak_fit(Xd, ys)
    print(f"{n_small}x{d}: sparse X {x_bytes(Xs) / 1e6:.1f} MB + fit peak {peak_s / 1e6:.1f} MB"
          f" = {(x_bytes(Xs) + peak_s) / 1e6:.1f} MB; dense X {Xd.nbytes / 1e6:.1f} MB + fit "
          f"peak {peak_d / 1e6:.1f} MB = {(Xd.nbytes + peak_d) / 1e6:.1f} MB; ratio "
          f"{(Xd.nbytes + peak_d) / (x_bytes(Xs) + peak_s):.1f}x", flush=True)
if what in ("all", "time"):
    Xs, ys = data(n_small)
    Xd = Xs.toarray()
    steps = 3 * (n_small // 200)
    times = {"sparse": [], "dense": []}
    for _ in range(3):
        for name, X in (("sparse", Xs), ("dense", Xd)):
            t = time.perf_counter()
            MLPClassifier(hidden, max_iter=3, tol=0, random_state=0).fit(X, ys)
            times[name].append((time.perf_counter() - t) / steps)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"step time {n_small}x{d} float32, hidden {hidden}, batch 200 (medians of 3 fits of "
          f"3 epochs, alternated): sparse {med['sparse'] * 1e3:.3f} ms, dense "
          f"{med['dense'] * 1e3:.3f} ms, sparse/dense {med['sparse'] / med['dense']:.2f}; "
          f"all: {times}", flush=True)
