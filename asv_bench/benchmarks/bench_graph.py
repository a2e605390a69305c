"""The graph layer's per-op overhead, and the activation kernels."""

import numpy as np

import fastnn as fnn


class TinyGraph:
    """``a * b + c`` on one-element arrays: the fixed cost of recording and backprop."""

    def setup(self):
        self.a = fnn.Tensor(np.array([2.0]), requires_grad=True)
        self.b = fnn.Tensor(np.array([3.0]), requires_grad=True)
        self.c = fnn.Tensor(np.array([1.0]), requires_grad=True)

    def time_forward(self):
        self.a * self.b + self.c

    def time_forward_backward(self):
        (self.a * self.b + self.c).backward()


class Activation:
    params = (["relu", "sigmoid", "gelu"], [128 * 512, 512 * 2048])
    param_names = ["activation", "elements"]

    def setup(self, name, n):
        fnn.warmup(dtypes=("float32",), verbose=False)
        self.x = fnn.Tensor(np.random.default_rng(0).standard_normal(n).astype(np.float32),
                            requires_grad=True)

    def time_forward(self, name, n):
        fnn.activation(self.x, name)
