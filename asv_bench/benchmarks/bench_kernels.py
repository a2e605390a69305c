"""Kernels at the shapes of the MLPs of fastnn.bench.MODELS (batch, in, out of a hidden layer)."""

import numpy as np

import fastnn as fnn
from fastnn.kernels import activations as A
from fastnn.kernels import batchnorm as BN
from fastnn.kernels import blas
from fastnn.kernels import dense as D
from fastnn.kernels import losses as L

SHAPES = {"S": (32, 784, 128), "T": (200, 256, 256), "M": (128, 512, 512),
          "W64": (256, 64, 64), "L": (512, 2048, 2048)}


class Gemm:
    """The three products of a dense layer on fastnn's pool (``blas.gemm``; the forward one
    also split over its inner dimension, ``blas.gemm_split_k``, as mid-sized layers are) and,
    for comparison, with ``np.matmul`` on NumPy's BLAS threads."""

    params = (list(SHAPES), ["x@W", "x@W split over D", "x.T@dz", "dz@W.T"], ["fastnn", "numpy"])
    param_names = ["shape", "product", "via"]

    def setup(self, shape, product, via):
        fnn.warmup(dtypes=("float32",), verbose=False)
        n, d, m = SHAPES[shape]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, d)).astype(np.float32)
        W = rng.standard_normal((d, m)).astype(np.float32)
        dz = rng.standard_normal((n, m)).astype(np.float32)
        self.partial = np.empty((blas.BLOCKS - 1, n, m), np.float32)
        self.split = product == "x@W split over D"
        self.args = {"x@W": (x, W, np.empty((n, m), np.float32), False, False),
                     "x@W split over D": (x, W, np.empty((n, m), np.float32), False, False),
                     "x.T@dz": (x, dz, np.empty((d, m), np.float32), True, False),
                     "dz@W.T": (dz, W, np.empty((n, d), np.float32), False, True)}[product]
        self.time_product(shape, product, via)

    def time_product(self, shape, product, via):
        a, b, c, ta, tb = self.args
        if via == "fastnn" and self.split:
            blas.gemm_split_k(c.size * a.shape[1])(a, b, c, self.partial, blas.BLOCKS)
        elif via == "fastnn":
            blas.gemm(a, b, c, trans_a=ta, trans_b=tb)
        else:
            np.matmul(a.T if ta else a, b.T if tb else b, out=c)


class Dense:
    params = (list(SHAPES), ["identity", "relu", "gelu", "tanh"])
    param_names = ["shape", "activation"]

    def setup(self, shape, act):
        fnn.warmup(dtypes=("float32",), verbose=False)
        n, d, m = SHAPES[shape]
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((n, d)).astype(np.float32)
        self.W = rng.standard_normal((d, m)).astype(np.float32)
        self.b = np.zeros(m, np.float32)
        self.y, self.d = np.empty((n, m), np.float32), np.empty((n, m), np.float32)
        self.dy, self.dz = rng.standard_normal((n, m)).astype(np.float32), np.empty((n, m),
                                                                                   np.float32)
        self.partial = np.empty((D.n_chunks(n), m), np.float64)
        self.dx, self.dW, self.db = np.empty_like(self.x), np.empty_like(self.W), np.empty(
            m, np.float32)
        self.code = A.CODES[act]
        D.dense_forward(self.x, self.W, self.b, self.code, 0.0, self.y, self.d)

    def time_forward(self, shape, act):
        D.dense_forward(self.x, self.W, self.b, self.code, 0.0, self.y, self.d)

    def time_backward(self, shape, act):
        d = self.d if self.code else self.d[:0]
        D.dense_backward(self.dy, d, self.x, self.W, self.dz, self.partial, self.dx, self.dW,
                         self.db)


class BatchNormReLU:
    params = list(SHAPES)
    param_names = ["shape"]

    def setup(self, shape):
        fnn.warmup(dtypes=("float32",), verbose=False)
        n, _, c = SHAPES[shape]
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((n, c)).astype(np.float32)
        self.g, self.b = np.ones(c, np.float32), np.zeros(c, np.float32)
        self.rm, self.rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        self.buf = [np.empty((n, c), np.float32) for _ in range(3)]
        self.mean, self.inv = np.empty(c, np.float32), np.empty(c, np.float32)
        self.partial = np.empty((BN.n_chunks(n), 2, c))
        self.dy = rng.standard_normal((n, c)).astype(np.float32)
        self.dx, self.dg, self.db = np.empty_like(self.x), np.empty(c, np.float32), np.empty(
            c, np.float32)
        self.time_forward(shape)

    def time_forward(self, shape):
        y, xhat, d = self.buf
        BN.batchnorm_forward_train(self.x, self.g, self.b, 1e-5, 0.1, self.rm, self.rv,
                                   A.RELU, 0.0, y, xhat, d, self.mean, self.inv, self.partial)

    def time_backward(self, shape):
        _, xhat, d = self.buf
        BN.batchnorm_backward(self.dy, d, xhat, self.g, self.inv, self.dx, self.dg, self.db,
                              self.partial)


class SoftmaxCrossEntropy:
    params = [32, 128, 512]
    param_names = ["batch"]

    def setup(self, n):
        fnn.warmup(dtypes=("float32",), verbose=False)
        rng = np.random.default_rng(0)
        self.z = rng.standard_normal((n, 10)).astype(np.float32)
        self.y = rng.integers(0, 10, n)
        self.g, self.partial = np.empty_like(self.z), np.empty(L.n_chunks(n))

    def time_forward_backward(self, n):
        L.softmax_cross_entropy(self.z.size)(self.z, self.y, self.g, self.partial)
