"""One optimizer step over 1M and 10M float32 parameters (memory-bound: see track_*_gbps).

Adam touches 16 bytes read + 12 written per parameter (param, grad, m, v); ``track_gbps``
reports the bandwidth that implies, next to ``track_copy_gbps`` (a large NumPy copy on this
machine) and PyTorch's fused / foreach Adam when torch is installed.
"""

import time

import numpy as np

import fastnn as fnn

SIZES = [1_000_000, 10_000_000]


def _median_seconds(fn, repeats=20):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


class OptimizerStep:
    params = (["SGD", "SGD-momentum", "Adagrad", "RMSprop", "Adam", "AdamW"], SIZES)
    param_names = ["optimizer", "parameters"]
    timeout = 300

    def setup(self, name, n):
        p = fnn.Parameter(np.random.default_rng(0).random(n, dtype=np.float32))
        cls = getattr(fnn.optim, name.split("-")[0])
        kwargs = {"lr": 1e-3, "momentum": 0.9} if name == "SGD-momentum" else {"lr": 1e-3}
        self.opt = cls([p], **kwargs)
        p.grad[...] = 1e-3
        self.opt.step()

    def time_step(self, name, n):
        self.opt.step()


class AdamBandwidth:
    params = SIZES
    param_names = ["parameters"]
    unit = "GB/s"
    timeout = 300

    def setup(self, n):
        rng = np.random.default_rng(0)
        self.p = fnn.Parameter(rng.random(n, dtype=np.float32))
        self.opt = fnn.optim.Adam([self.p], lr=1e-3)
        self.p.grad[...] = rng.random(n, dtype=np.float32)
        self.a, self.b = rng.random(n, dtype=np.float32), np.empty(n, np.float32)

    def track_gbps(self, n):
        return 28 * n / _median_seconds(self.opt.step) / 1e9

    track_gbps.unit = "GB/s"

    def track_copy_gbps(self, n):
        return 8 * n / _median_seconds(lambda: np.copyto(self.b, self.a)) / 1e9

    track_copy_gbps.unit = "GB/s"

    def track_torch_fused_gbps(self, n):
        return self._torch(n, fused=True)

    track_torch_fused_gbps.unit = "GB/s"

    def track_torch_foreach_gbps(self, n):
        return self._torch(n, foreach=True)

    track_torch_foreach_gbps.unit = "GB/s"

    def _torch(self, n, **kw):
        try:
            import torch
        except ImportError:
            return float("nan")
        p = torch.nn.Parameter(torch.rand(n))
        p.grad = torch.rand(n)
        opt = torch.optim.Adam([p], lr=1e-3, **kw)
        return 28 * n / _median_seconds(opt.step) / 1e9
