"""``fastnn bench``: one training step (MLP or CNN), fastnn against what a user would pick instead.

A step is forward, softmax cross-entropy, backward and an Adam update, in float32. Each
framework runs in its own process (so that thread pools and imports do not interfere), the
processes alternate over several rounds (so that a noisy machine hurts all alike), and the
table reports medians and ratios.

Frameworks: ``fastnn`` (the compiled step, ``fnn.compile_step``, when fastnn has one; the
graph step otherwise); ``fastnn-graph`` (the graph path: ``zero_grad``, ``loss.backward()``,
``step``); ``gemm`` (NumPy's BLAS doing only the matrix products a step needs: the floor no
framework can beat); ``numpy`` (the same step in plain NumPy); ``torch`` (eager, Adam with
foreach) and ``torch-fused`` (Adam fused=True), and ``jax`` (one ``jax.jit`` step), when
installed. Each worker also reports its peak memory (the growth of its peak RSS, see
:func:`_worker`).

``fastnn bench --models lenet,cifar`` times the two CNNs of :data:`CNN_MODELS` (LeNet-5 on
1x28x28 digits, batch 64; a small CIFAR net with BatchNorm2d on 3x32x32, batch 128) in the same
way; there ``gemm`` is the im2col products of the convolutions and the Linear products, and
``numpy`` has no CNN step.

``fastnn bench --tables`` times reading and encoding a generated 1,000,000-row mixed table
(CSV and Parquet) against pandas' ``read_csv`` of the same file, measures the peak memory,
and times an epoch of ``TabularMLP`` against an MLP of the same width (see
:func:`run_tables_bench`).

``fastnn bench --sklearn`` times something else: a whole ``fit`` of
``fastnn.sklearn.MLPClassifier`` against scikit-learn's ``MLPClassifier`` with the same
settings (see :data:`PROBLEMS`), each fit in its own process, alternated over rounds, next to
the matrix products of the same training steps on NumPy's BLAS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

#: name -> (layer sizes, batch, BatchNorm after each hidden Linear); ReLU after each hidden layer.
MODELS = {
    "S": ([784, 128, 10], 32, False),
    # A tabular MLP: the shape of fastnn.sklearn on a 100-feature, 5-class problem.
    "T": ([100, 256, 256, 5], 200, False),
    "M": ([784, 512, 512, 10], 128, True),
    # A small model, where the fixed cost per step dominates.
    "W64": ([256, 64, 64, 10], 256, True),
    "L": ([784, 2048, 2048, 2048, 10], 512, True),
}
DEFAULT_MODELS = "S,T,M,W64,L"
FRAMEWORKS = ["fastnn", "fastnn-graph", "fastnn-fused", "gemm", "numpy", "torch", "torch-fused",
              "jax"]


def _data(dims, batch):
    import numpy as np

    rng = np.random.default_rng(0)
    return (rng.standard_normal((batch, dims[0])).astype(np.float32),
            rng.integers(0, dims[-1], batch))


def _fastnn_model(dims, bn):
    """The MLP of ``dims`` in fastnn, with Adam (lr 1e-3), seeded."""
    import fastnn as fnn

    fnn.manual_seed(0)
    layers = []
    for a, b in zip(dims[:-2], dims[1:-1], strict=True):
        layers += [fnn.Linear(a, b)] + ([fnn.BatchNorm1d(b)] if bn else []) + [fnn.ReLU()]
    model = fnn.Sequential(*layers, fnn.Linear(dims[-2], dims[-1]))
    return model, fnn.optim.Adam(model.parameters(), lr=1e-3)


def _fastnn_step(dims, batch, bn):
    """fastnn's graph path, as a hand-written PyTorch-style loop does it."""
    import fastnn as fnn

    model, opt = _fastnn_model(dims, bn)
    x, y = _data(dims, batch)

    def step():
        opt.zero_grad()
        fnn.losses.cross_entropy(model(x), y).backward()
        opt.step()

    step.path, step.model = "graph", model
    return step


def _fastnn_compiled_step(dims, batch, bn, fuse_optimizer=False):
    """``fnn.compile_step(model, loss_fn, optimizer)`` when fastnn has it; the graph path if not.

    The loss is ``fnn.losses.cross_entropy``, the function ``fastnn train`` passes to ``fit``;
    ``fuse_optimizer``: the ``fastnn-fused`` entry (Adam applied layer by layer in backward).
    """
    import fastnn as fnn

    compile_step = getattr(fnn, "compile_step", None)
    if compile_step is None:
        return _fastnn_step(dims, batch, bn)
    model, opt = _fastnn_model(dims, bn)
    x, y = _data(dims, batch)
    # The option only when asked: asv also runs this against commits whose compile_step
    # has no such keyword.
    compiled = compile_step(model, fnn.losses.cross_entropy, opt,
                            **({"fuse_optimizer": True} if fuse_optimizer else {}))

    def step():
        compiled(x, y)

    step.path, step.model = "compiled", model
    return step


def _gemm_products(dims, batch, dtype="float32"):
    """A step of only the matrix products an MLP's training step needs, on NumPy's BLAS.

    Per layer: the forward ``x @ W`` and the backward ``x.T @ dy`` (the weight gradient) and
    ``dy @ W.T`` (the input gradient, which the first layer does not need).
    """
    import numpy as np

    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((a, b)).astype(dtype) for a, b in zip(dims[:-1], dims[1:],
                                                                     strict=True)]
    xs = [rng.standard_normal((batch, a)).astype(dtype) for a in dims[:-1]]
    ys = [np.empty((batch, b), dtype) for b in dims[1:]]
    dWs = [np.empty_like(W) for W in Ws]
    dxs = [np.empty((batch, a), dtype) for a in dims[:-1]]

    def step():
        for i, W in enumerate(Ws):
            np.matmul(xs[i], W, out=ys[i])
        for i in reversed(range(len(Ws))):
            np.matmul(xs[i].T, ys[i], out=dWs[i])
            if i:
                np.matmul(ys[i], Ws[i].T, out=dxs[i])

    return step


def _gemm_step(dims, batch, bn):
    return _gemm_products(dims, batch, "float32")


def _numpy_step(dims, batch, bn):
    """The textbook NumPy implementation (cs231n style), as a user would write it."""
    import numpy as np

    rng = np.random.default_rng(0)
    Ws = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
          for a, b in zip(dims[:-1], dims[1:], strict=True)]
    bs = [np.zeros(b, np.float32) for b in dims[1:]]
    gammas = [np.ones(b, np.float32) for b in dims[1:-1]]
    betas = [np.zeros(b, np.float32) for b in dims[1:-1]]
    params = Ws + bs + gammas + betas
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    x, y = _data(dims, batch)
    t = [0]

    def step():
        h, caches = x, []
        for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
            z = h @ W + b
            if i == len(Ws) - 1:
                caches.append((h, None))
                h = z
                break
            if bn:
                mu, var = z.mean(0), z.var(0)
                inv = 1 / np.sqrt(var + 1e-5)
                zh = (z - mu) * inv
                z2 = gammas[i] * zh + betas[i]
            else:
                zh = inv = None
                z2 = z
            caches.append((h, (zh, inv, z2)))
            h = np.maximum(z2, 0)
        e = np.exp(h - h.max(1, keepdims=True))
        p = e / e.sum(1, keepdims=True)
        d = p
        d[np.arange(batch), y] -= 1
        d /= batch
        grads_W, grads_b = [None] * len(Ws), [None] * len(Ws)
        grads_g, grads_be = [np.zeros_like(g) for g in gammas], [np.zeros_like(g) for g in betas]
        for i in reversed(range(len(Ws))):
            h_in, cache = caches[i]
            if cache is not None:
                zh, inv, z2 = cache
                d = d * (z2 > 0)
                if bn:
                    grads_g[i], grads_be[i] = (d * zh).sum(0), d.sum(0)
                    dzh = d * gammas[i]
                    d = inv * (dzh - dzh.mean(0) - zh * (dzh * zh).mean(0))
            grads_W[i], grads_b[i] = h_in.T @ d, d.sum(0)
            if i:
                d = d @ Ws[i].T
        t[0] += 1
        for k, (prm, g) in enumerate(zip(params, grads_W + grads_b + grads_g + grads_be,
                                         strict=True)):
            m[k] = 0.9 * m[k] + 0.1 * g
            v[k] = 0.999 * v[k] + 0.001 * g * g
            prm -= 1e-3 * (m[k] / (1 - 0.9 ** t[0])) / (np.sqrt(v[k] / (1 - 0.999 ** t[0]))
                                                          + 1e-8)

    return step


def _torch_step(dims, batch, bn, fused=False):
    import torch

    torch.manual_seed(0)
    layers = []
    for a, b in zip(dims[:-2], dims[1:-1], strict=True):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.BatchNorm1d(b)] if bn else []) + \
            [torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(dims[-2], dims[-1]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
    xn, yn = _data(dims, batch)
    x, y = torch.from_numpy(xn), torch.from_numpy(yn)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def _jax_step(dims, batch, bn):
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    params = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        key, k = jax.random.split(key)
        params.append({"W": jax.random.normal(k, (a, b)) / jnp.sqrt(a), "b": jnp.zeros(b),
                       "g": jnp.ones(b), "be": jnp.zeros(b)})

    def loss(params, x, y):
        h = x
        for i, p in enumerate(params):
            h = h @ p["W"] + p["b"]
            if i < len(params) - 1:
                if bn:
                    mu, var = h.mean(0), h.var(0)
                    h = p["g"] * (h - mu) / jnp.sqrt(var + 1e-5) + p["be"]
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def adam(params, grads, m, v, t):
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - 1e-3 * (m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-8),
            params, m, v)
        return params, m, v

    @jax.jit
    def train_step(params, m, v, t, x, y):
        grads = jax.grad(loss)(params, x, y)
        return adam(params, grads, m, v, t)

    xn, yn = _data(dims, batch)
    x, y = jnp.asarray(xn), jnp.asarray(yn)
    state = [params, jax.tree_util.tree_map(jnp.zeros_like, params),
             jax.tree_util.tree_map(jnp.zeros_like, params), 1.0]

    def step():
        p, m, v = train_step(state[0], state[1], state[2], state[3], x, y)
        jax.block_until_ready(p)
        state[0], state[1], state[2] = p, m, v
        state[3] += 1.0

    return step


# --------------------------------------------------------------------------------------------
# Convolutional networks (issue 27): one architecture spec, built in every framework.

#: name -> (input (C, H, W), batch, layers). A layer is ``("conv", out, k, pad)`` (a square
#: k x k Conv2d, stride 1, bias), ``("bn",)`` (BatchNorm2d, training mode), ``("relu",)``,
#: ``("maxpool", 2)`` (2x2, stride 2), ``("flatten",)`` or ``("linear", out)``.
CNN_MODELS = {
    # LeNet-5 as PyTorch's tutorials write it (ReLU and max-pooling), with conv1 padded by 2
    # so that a 28x28 digit gives conv2 the 14x14 map of the original 32x32 input:
    # conv 6 5x5 pad 2, ReLU, max-pool 2 -> 6x14x14; conv 16 5x5, ReLU, max-pool 2 -> 16x5x5;
    # Linear 400-120, ReLU, Linear 120-84, ReLU, Linear 84-10.
    "lenet": ((1, 28, 28), 64, [
        ("conv", 6, 5, 2), ("relu",), ("maxpool", 2),
        ("conv", 16, 5, 0), ("relu",), ("maxpool", 2),
        ("flatten",), ("linear", 120), ("relu",), ("linear", 84), ("relu",), ("linear", 10)]),
    # The small CIFAR net of issue 27: 3x3 convolutions with padding 1 (and bias), each
    # followed by BatchNorm2d and ReLU: conv 32, conv 32, max-pool 2 -> 32x16x16; conv 64,
    # conv 64, max-pool 2 -> 64x8x8; Linear 4096-10. About 19 GFLOP a training step.
    "cifar": ((3, 32, 32), 128, [
        ("conv", 32, 3, 1), ("bn",), ("relu",), ("conv", 32, 3, 1), ("bn",), ("relu",),
        ("maxpool", 2),
        ("conv", 64, 3, 1), ("bn",), ("relu",), ("conv", 64, 3, 1), ("bn",), ("relu",),
        ("maxpool", 2),
        ("flatten",), ("linear", 10)]),
}
#: The frameworks that have a CNN step here (``numpy`` has none: it is skipped for CNNs).
CNN_FRAMEWORKS = ["fastnn", "fastnn-graph", "fastnn-fused", "gemm", "torch", "torch-fused",
                  "jax"]


def cnn_shapes(name: str):
    """``[(layer, input shape without the batch)]`` of a CNN of :data:`CNN_MODELS`."""
    shape, _, layers = CNN_MODELS[name]
    out = []
    for layer in layers:
        out.append((layer, shape))
        kind = layer[0]
        if kind == "conv":
            _, o, k, pad = layer
            shape = (o, shape[1] + 2 * pad - k + 1, shape[2] + 2 * pad - k + 1)
        elif kind == "maxpool":
            shape = (shape[0], shape[1] // layer[1], shape[2] // layer[1])
        elif kind == "flatten":
            shape = (shape[0] * shape[1] * shape[2],)
        elif kind == "linear":
            shape = (layer[1],)
    return out


def cnn_describe(name: str) -> str:
    """One line: the layers of a CNN of :data:`CNN_MODELS` in PyTorch's names."""
    parts = []
    for layer, shape in cnn_shapes(name):
        kind = layer[0]
        if kind == "conv":
            parts.append(f"Conv2d({shape[0]}, {layer[1]}, {layer[2]}"
                         + (f", padding={layer[3]})" if layer[3] else ")"))
        elif kind == "bn":
            parts.append(f"BatchNorm2d({shape[0]})")
        elif kind == "relu":
            parts.append("ReLU")
        elif kind == "maxpool":
            parts.append(f"MaxPool2d({layer[1]})")
        elif kind == "flatten":
            parts.append("Flatten")
        else:
            parts.append(f"Linear({shape[0]}, {layer[1]})")
    inp, batch, _ = CNN_MODELS[name]
    return f"{name}: {'x'.join(map(str, inp))}, batch {batch}: " + ", ".join(parts)


def _cnn_data(name: str):
    import numpy as np

    inp, batch, layers = CNN_MODELS[name]
    rng = np.random.default_rng(0)
    classes = [layer for layer in layers if layer[0] == "linear"][-1][1]
    return (rng.standard_normal((batch, *inp)).astype(np.float32),
            rng.integers(0, classes, batch))


def _fastnn_cnn_model(name: str):
    """The CNN in fastnn, with Adam (lr 1e-3), seeded."""
    import fastnn as fnn

    fnn.manual_seed(0)
    mods = []
    for layer, shape in cnn_shapes(name):
        kind = layer[0]
        if kind == "conv":
            mods.append(fnn.Conv2d(shape[0], layer[1], layer[2], padding=layer[3]))
        elif kind == "bn":
            mods.append(fnn.BatchNorm2d(shape[0]))
        elif kind == "relu":
            mods.append(fnn.ReLU())
        elif kind == "maxpool":
            mods.append(fnn.MaxPool2d(layer[1]))
        elif kind == "flatten":
            mods.append(fnn.Flatten())
        else:
            mods.append(fnn.Linear(shape[0], layer[1]))
    model = fnn.Sequential(*mods)
    return model, fnn.optim.Adam(model.parameters(), lr=1e-3)


def _fastnn_cnn_step(name: str):
    """fastnn's graph path on a CNN: ``zero_grad``, ``loss.backward()``, ``step``."""
    import fastnn as fnn

    model, opt = _fastnn_cnn_model(name)
    x, y = _cnn_data(name)

    def step():
        opt.zero_grad()
        fnn.losses.cross_entropy(model(x), y).backward()
        opt.step()

    step.path, step.model = "graph", model
    return step


def _fastnn_cnn_compiled_step(name: str, fuse_optimizer: bool = False):
    """``fnn.compile_step`` on a CNN; the graph path when fastnn has none or it raises
    ``NotCompilable`` (``step.path`` then says why)."""
    import fastnn as fnn

    compile_step = getattr(fnn, "compile_step", None)
    if compile_step is None:
        return _fastnn_cnn_step(name)
    from fastnn.compiled import NotCompilable

    model, opt = _fastnn_cnn_model(name)
    x, y = _cnn_data(name)
    try:
        compiled = compile_step(model, fnn.losses.cross_entropy, opt,
                                **({"fuse_optimizer": True} if fuse_optimizer else {}))
    except NotCompilable as e:
        step = _fastnn_cnn_step(name)
        step.path = f"graph (fnn.compile_step raised NotCompilable: {e})"
        return step

    def step():
        compiled(x, y)

    step.path, step.model = "compiled", model
    return step


def _gemm_cnn_step(name: str):
    """Only the matrix products of a CNN's training step (convolutions as im2col products),
    on NumPy's BLAS: the floor of an im2col design.

    Per convolution with input (C, H, W), output (O, OH, OW), P = OH * OW: the forward
    ``W (O, C k k) @ cols (C k k, N P)``, the weight gradient ``dz (O, N P) @ cols.T`` and
    the columns' gradient ``W.T @ dz`` (not for the first layer); per Linear as in
    ``_gemm_products``. No im2col, col2im, pooling, BatchNorm, activation or optimizer.
    """
    import numpy as np

    _, batch, _ = CNN_MODELS[name]
    rng = np.random.default_rng(0)
    ops = []  # (A, B, out) for out = A @ B
    first = True
    for layer, shape in cnn_shapes(name):
        kind = layer[0]
        if kind == "conv":
            _, o, k, pad = layer
            c, h, w = shape
            p = (h + 2 * pad - k + 1) * (w + 2 * pad - k + 1)
            W = rng.standard_normal((o, c * k * k)).astype(np.float32)
            cols = rng.standard_normal((c * k * k, batch * p)).astype(np.float32)
            dz = np.empty((o, batch * p), np.float32)
            ops.append((W, cols, dz))
            ops.append((dz, cols.T, np.empty_like(W)))
            if not first:
                ops.append((W.T, dz, np.empty_like(cols)))
            first = False
        elif kind == "linear":
            d_in, d_out = shape[0], layer[1]
            W = rng.standard_normal((d_in, d_out)).astype(np.float32)
            x = rng.standard_normal((batch, d_in)).astype(np.float32)
            y = np.empty((batch, d_out), np.float32)
            ops.append((x, W, y))
            ops.append((x.T, y, np.empty_like(W)))
            ops.append((y, W.T, np.empty_like(x)))

    def step():
        for a, b, out in ops:
            np.matmul(a, b, out=out)

    return step


def _torch_cnn_step(name: str, fused: bool = False):
    import torch

    torch.manual_seed(0)
    mods = []
    for layer, shape in cnn_shapes(name):
        kind = layer[0]
        if kind == "conv":
            mods.append(torch.nn.Conv2d(shape[0], layer[1], layer[2], padding=layer[3]))
        elif kind == "bn":
            mods.append(torch.nn.BatchNorm2d(shape[0]))
        elif kind == "relu":
            mods.append(torch.nn.ReLU())
        elif kind == "maxpool":
            mods.append(torch.nn.MaxPool2d(layer[1]))
        elif kind == "flatten":
            mods.append(torch.nn.Flatten())
        else:
            mods.append(torch.nn.Linear(shape[0], layer[1]))
    model = torch.nn.Sequential(*mods)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
    xn, yn = _cnn_data(name)
    x, y = torch.from_numpy(xn), torch.from_numpy(yn)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def _jax_cnn_step(name: str):
    """One ``jax.jit`` step: forward (``lax.conv_general_dilated`` NCHW/OIHW,
    ``lax.reduce_window`` max-pool, BatchNorm2d on batch statistics), cross-entropy, grad,
    Adam. BatchNorm's running statistics are not kept (they do not change the step's
    result; PyTorch and fastnn update them, a few passes over (C,) vectors)."""
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    params = []
    for layer, shape in cnn_shapes(name):
        kind = layer[0]
        key, k = jax.random.split(key)
        if kind == "conv":
            _, o, ks, _ = layer
            fan_in = shape[0] * ks * ks
            params.append({"W": jax.random.normal(k, (o, shape[0], ks, ks)) / jnp.sqrt(fan_in),
                           "b": jnp.zeros(o)})
        elif kind == "bn":
            params.append({"g": jnp.ones(shape[0]), "be": jnp.zeros(shape[0])})
        elif kind == "linear":
            params.append({"W": jax.random.normal(k, (shape[0], layer[1])) / jnp.sqrt(shape[0]),
                           "b": jnp.zeros(layer[1])})
        else:
            params.append({})
    layers = [layer for layer, _ in cnn_shapes(name)]

    def loss(params, x, y):
        h = x
        for layer, p in zip(layers, params, strict=True):
            kind = layer[0]
            if kind == "conv":
                pad = layer[3]
                h = jax.lax.conv_general_dilated(h, p["W"], (1, 1), [(pad, pad), (pad, pad)],
                                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
                h = h + p["b"][None, :, None, None]
            elif kind == "bn":
                mu = h.mean((0, 2, 3), keepdims=True)
                var = h.var((0, 2, 3), keepdims=True)
                h = (p["g"][None, :, None, None] * (h - mu) / jnp.sqrt(var + 1e-5)
                     + p["be"][None, :, None, None])
            elif kind == "relu":
                h = jax.nn.relu(h)
            elif kind == "maxpool":
                s = layer[1]
                h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, s, s),
                                          (1, 1, s, s), "VALID")
            elif kind == "flatten":
                h = h.reshape(h.shape[0], -1)
            else:
                h = h @ p["W"] + p["b"]
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def adam(params, grads, m, v, t):
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - 1e-3 * (m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-8),
            params, m, v)
        return params, m, v

    @jax.jit
    def train_step(params, m, v, t, x, y):
        grads = jax.grad(loss)(params, x, y)
        return adam(params, grads, m, v, t)

    xn, yn = _cnn_data(name)
    x, y = jnp.asarray(xn), jnp.asarray(yn)
    state = [params, jax.tree_util.tree_map(jnp.zeros_like, params),
             jax.tree_util.tree_map(jnp.zeros_like, params), 1.0]

    def step():
        p, m, v = train_step(state[0], state[1], state[2], state[3], x, y)
        jax.block_until_ready(p)
        state[0], state[1], state[2] = p, m, v
        state[3] += 1.0

    return step


#: The kernel entry points :func:`cnn_kernel_profile` times: (module, function, label).
CNN_PROFILED = [
    ("conv", "conv2d_forward_shifted", "conv forward (shifted products)"),
    ("conv", "conv2d_backward_shifted", "conv backward (shifted products)"),
    ("conv", "conv2d_forward_chunked", "conv forward (chunked im2col)"),
    ("conv", "conv2d_backward_chunked", "conv backward (chunked im2col)"),
    ("conv", "conv2d_forward", "conv forward (batch-wide im2col)"),
    ("conv", "conv2d_backward", "conv backward (batch-wide im2col)"),
    ("batchnorm", "batchnorm2d_forward_train", "BatchNorm2d forward"),
    ("batchnorm", "batchnorm2d_backward_recompute", "BatchNorm2d backward"),
    ("pool", "max_pool2d_forward", "max-pool forward"),
    ("pool", "max_pool2d_backward", "max-pool backward"),
    ("pool", "max_pool2d_2x2_backward", "max-pool backward"),
]


def cnn_kernel_profile(name: str, threads: int | None = None, steps: int = 5) -> dict:
    """Where the time of a graph step of a CNN of :data:`CNN_MODELS` goes, kernel by kernel.

    Wraps the kernel entry points of :data:`CNN_PROFILED` (in this process only, restored
    afterwards), runs three warm-up steps and ``steps`` timed ones, and returns
    ``{"step": median seconds, label: median seconds per step, ..., "other": the rest}``
    ("other": the Linear layer, the loss, Adam, zero_grad and the graph's bookkeeping).
    The wrappers cost a few microseconds a call; fastnn's own timing of a step is
    ``fastnn bench``. Run it in a fresh process for numbers that mean something::

        python -c "from fastnn.bench import cnn_kernel_profile as p; print(p('cifar', 1))"
    """
    import fastnn
    from fastnn.kernels import batchnorm, conv, pool

    if threads:
        fastnn.set_num_threads(threads)
    modules = {"conv": conv, "batchnorm": batchnorm, "pool": pool}
    spent: dict = {}
    saved = []

    def timed(fn, label):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0
        return wrapper

    class TimedKernel:  # a Kernel is called as kernel(work)(arguments)
        def __init__(self, kernel, label):
            self.kernel, self.label = kernel, label

        def __call__(self, work):
            return timed(self.kernel(work), self.label)

    for mod_name, fn_name, label in CNN_PROFILED:
        mod = modules[mod_name]
        fn = getattr(mod, fn_name, None)
        if fn is None:
            continue
        saved.append((mod, fn_name, fn))
        wrapped = TimedKernel(fn, label) if hasattr(fn, "serial") else timed(fn, label)
        setattr(mod, fn_name, wrapped)
    try:
        step = _fastnn_cnn_step(name)
        for _ in range(3):
            step()
        per: dict = {}
        totals = []
        for _ in range(steps):
            spent.clear()
            t0 = time.perf_counter()
            step()
            totals.append(time.perf_counter() - t0)
            for label, seconds in spent.items():
                per.setdefault(label, []).append(seconds)
    finally:
        for mod, fn_name, fn in saved:
            setattr(mod, fn_name, fn)
    out = {"step": statistics.median(totals)}
    for label, seconds in sorted(per.items(), key=lambda kv: -statistics.median(kv[1])):
        out[label] = statistics.median(seconds)
    out["other"] = out["step"] - sum(v for k, v in out.items() if k != "step")
    return out


_CNN_BUILDERS = {"fastnn": _fastnn_cnn_compiled_step, "fastnn-graph": _fastnn_cnn_step,
                 "fastnn-fused": lambda n: _fastnn_cnn_compiled_step(n, True),
                 "gemm": _gemm_cnn_step, "torch": _torch_cnn_step,
                 "torch-fused": lambda n: _torch_cnn_step(n, True), "jax": _jax_cnn_step}


_BUILDERS = {"fastnn": _fastnn_compiled_step, "fastnn-graph": _fastnn_step,
             "fastnn-fused": lambda d, b, n: _fastnn_compiled_step(d, b, n, True),
             "gemm": _gemm_step, "numpy": _numpy_step,
             "torch": _torch_step, "torch-fused": lambda d, b, n: _torch_step(d, b, n, True),
             "jax": _jax_step}


def _max_rss_bytes() -> int:
    """The process's peak resident set size so far (``ru_maxrss``: KiB on Linux, bytes on
    macOS)."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024


def _worker(framework: str, dims, batch, bn, repeats: int, threads: int) -> dict:
    """Runs in its own process: time ``repeats`` steps after a warm-up.

    ``dims`` is an MLP's layer sizes, or the name of a CNN of :data:`CNN_MODELS` (then
    ``batch`` and ``bn`` are not used). Also measures memory: ``peak_bytes`` is the growth of
    the process's peak resident set (``ru_maxrss``) from after importing the framework and
    setting its threads to the end of the timed steps (model, data, compiled code loaded or
    JIT-compiled, optimizer state, the peak inside a step); for the fastnn entries,
    ``step_traced_bytes`` is the peak of one more steady-state step under ``tracemalloc``
    (NumPy's allocations inside a step).
    """
    if framework == "torch" or framework == "torch-fused":
        import torch

        torch.set_num_threads(threads)
    elif framework.startswith("fastnn"):
        import fastnn

        fastnn.set_num_threads(threads)
    else:
        if framework == "jax":
            import jax  # noqa: F401  (imported before the baseline, as the others are)
        import numpy  # noqa: F401
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    baseline = _max_rss_bytes()
    if isinstance(dims, str):
        step = _CNN_BUILDERS[framework](dims)
    else:
        step = _BUILDERS[framework](dims, batch, bn)
    warm = time.perf_counter()
    for _ in range(3):
        step()
    first = time.perf_counter() - warm
    times = []
    deadline = time.perf_counter() + 20.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    out = {"times": times, "warmup_seconds": first, "path": getattr(step, "path", None),
           "peak_bytes": _max_rss_bytes() - baseline}
    if framework.startswith("fastnn"):
        import tracemalloc

        tracemalloc.start()
        step()
        out["step_traced_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out


def _available(framework: str) -> bool:
    mod = {"torch": "torch", "torch-fused": "torch", "jax": "jax"}.get(framework)
    if mod is None:
        return True
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def blas_report() -> list[str]:
    """Which BLAS kernels are active, and a warning when the environment forces old ones."""
    import numpy  # noqa: F401  (loads NumPy's BLAS so that threadpoolctl sees it)
    from threadpoolctl import threadpool_info

    lines = []
    for p in threadpool_info():
        if p.get("user_api") == "blas":
            lines.append(f"BLAS: {p.get('internal_api')} {p.get('version')} "
                         f"({p.get('architecture')}, {p.get('num_threads')} "
                         f"thread{'s' if p.get('num_threads') != 1 else ''}) "
                         f"{p.get('filepath')}")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            lines.append(f"WARNING: {var}={os.environ[var]} forces an older OpenBLAS kernel; "
                         f"unset it for benchmarks (env -u {var} ...)")
    return lines


def _run_worker(args: list[str], timeout: float, label: str, log) -> dict | None:
    """Run ``python -m fastnn.bench ARGS`` in a fresh process; its last stdout line (JSON), or
    None after printing why it failed."""
    proc = subprocess.run([sys.executable, "-m", "fastnn.bench", *args], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  {label} failed: {tail}", file=log)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_bench(models, frameworks, rounds: int = 3, repeats: int = 50, threads: int | None = None,
              log=None, paths: dict | None = None, memory: dict | None = None) -> dict:
    """Alternate one process per (round, model, framework); return all step times.

    ``models`` maps a label to ``(dims, batch, bn)`` of an MLP or ``(cnn name, batch, None)``
    of a CNN of :data:`CNN_MODELS`; a framework without a CNN step (``numpy``) is skipped
    for CNNs. Returns ``{model label: {framework: [seconds per step, ...]}}``. If ``paths``
    is a dict, it receives ``{model label: {framework: path}}`` for the fastnn entries
    (``"compiled"``, ``"graph"`` or ``"graph (...why...)"``); if ``memory`` is a dict,
    ``{model label: {framework: [peak_bytes per process, ...]}}`` (see :func:`_worker`) and,
    for the fastnn entries, ``{model label: {framework + " traced": [step_traced_bytes]}}``.
    """
    log = sys.stderr if log is None else log
    threads = threads or os.cpu_count() or 1
    results: dict = {}
    for r in range(rounds):
        for name, (dims, batch, bn) in models.items():
            cnn = isinstance(dims, str)
            for fw in frameworks:
                if cnn and fw not in CNN_FRAMEWORKS:
                    continue
                if cnn:  # the CIFAR net's step is ~10x LeNet's
                    reps = max(3, repeats // 5) if dims == "cifar" else repeats
                else:
                    reps = max(3, repeats // 10) if dims[1] >= 2048 else repeats
                out = _run_worker(["--worker", fw, json.dumps([dims, batch, bn, reps,
                                                               threads])],
                                  600, f"{fw} on {name}", log)
                if out is None:
                    continue
                results.setdefault(name, {}).setdefault(fw, []).extend(out["times"])
                if paths is not None and out.get("path"):
                    paths.setdefault(name, {})[fw] = out["path"]
                if memory is not None:
                    mem = memory.setdefault(name, {})
                    mem.setdefault(fw, []).append(out["peak_bytes"])
                    if "step_traced_bytes" in out:
                        mem.setdefault(fw + " traced", []).append(out["step_traced_bytes"])
                print(f"  round {r + 1}/{rounds} {name} {fw}: "
                      f"{statistics.median(out['times']) * 1e3:.3f} ms, peak "
                      f"+{out['peak_bytes'] / 2**20:.1f} MiB", file=log)
    return results


def format_table(results: dict, memory: dict | None = None) -> str:
    """Median step times, their ratios to fastnn and to the GEMM floor, and (with ``memory``
    from :func:`run_bench`) the median growth of each process's peak RSS in MiB."""
    lines = [f"{'model':<26} {'framework':<12} {'median ms':>10} {'vs fastnn':>10} "
             f"{'vs GEMM floor':>14}" + (f" {'peak MiB':>9}" if memory is not None else "")]
    for name, by_fw in results.items():
        med = {fw: statistics.median(t) * 1e3 for fw, t in by_fw.items()}
        ours, floor = med.get("fastnn"), med.get("gemm")
        label = name
        for fw, ms in med.items():
            rel = f"{ms / ours:.2f}x" if ours else "-"
            fl = f"{ms / floor:.2f}x" if floor else "-"
            line = f"{label:<26} {fw:<12} {ms:10.3f} {rel:>10} {fl:>14}"
            if memory is not None:
                peaks = memory.get(name, {}).get(fw)
                line += f" {statistics.median(peaks) / 2**20:9.1f}" if peaks else f" {'-':>9}"
            lines.append(line)
            label = ""
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# fastnn bench --sklearn: whole fits of fastnn.sklearn.MLPClassifier against scikit-learn's.

#: name -> the data and the settings both estimators get (the rest are scikit-learn's
#: defaults: adam, batch_size='auto' = min(200, n), relu, tol=1e-4). 20% of the rows are
#: held out for the test accuracy (train_test_split, random_state=0); random_state=0.
PROBLEMS = {
    "large": {"data": "make_classification", "n_samples": 100_000, "n_features": 100,
              "n_informative": 40, "n_classes": 5, "hidden": [256, 256], "max_iter": 10},
    "digits": {"data": "digits", "hidden": [256, 256], "max_iter": 50},
}
#: The rows of the --sklearn table: three fits and the matrix products of their steps.
SKLEARN_VARIANTS = ["sklearn-float64", "fastnn-float64", "fastnn-float32", "floor-float64",
                    "floor-float32"]
#: scikit-learn's batch_size='auto' is min(200, n_samples).
_SKLEARN_BATCH = 200


def sklearn_problem(spec: dict):
    """``(X_train, X_test, y_train, y_test)`` of a problem spec (see :data:`PROBLEMS`), float64.

    ``spec["data"]`` is ``"digits"`` (scikit-learn's bundled 1,797 8x8 images) or
    ``"make_classification"`` (with ``n_samples``, ``n_features``, ``n_informative``,
    ``n_classes`` as in scikit-learn; random_state=0).
    """
    from sklearn.datasets import load_digits, make_classification
    from sklearn.model_selection import train_test_split

    if spec["data"] == "digits":
        X, y = load_digits(return_X_y=True)
    elif spec["data"] == "make_classification":
        X, y = make_classification(n_samples=spec["n_samples"], n_features=spec["n_features"],
                                   n_informative=spec["n_informative"],
                                   n_classes=spec["n_classes"], random_state=0)
    else:
        raise ValueError(f"sklearn_problem: spec['data'] must be 'digits' or "
                         f"'make_classification', got {spec['data']!r}")
    return train_test_split(X.astype("float64"), y, test_size=0.2, random_state=0)


def sklearn_estimator(variant: str, hidden, max_iter: int):
    """The estimator of a fit variant (``sklearn-float64``, ``fastnn-float64``,
    ``fastnn-float32``), with the benchmark's settings and random_state=0."""
    settings = {"hidden_layer_sizes": tuple(hidden), "max_iter": int(max_iter),
                "random_state": 0}
    if variant == "sklearn-float64":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(**settings)
    if variant in ("fastnn-float64", "fastnn-float32"):
        from fastnn.sklearn import MLPClassifier

        # dtype=None keeps float64 input in float64, as scikit-learn does.
        return MLPClassifier(**settings, dtype="float32" if variant == "fastnn-float32" else None)
    raise ValueError(f"sklearn_estimator: variant must be one of {SKLEARN_VARIANTS[:3]}, "
                     f"got {variant!r}")


def warmup_fit(variant: str, hidden, X_train, y_train) -> float:
    """One untimed ``fit`` for one iteration that loads everything a full fit will use.

    It fits the same estimator (same dtype, layer sizes) on the first 2x200 rows plus as many
    as the last batch of an epoch over all of ``X_train`` has, so that it sees both batch sizes
    of the full fit: fastnn's Numba kernels (whose serial or parallel variant depends on the
    batch) are compiled or loaded from the cache here. Returns its wall seconds.
    """
    batch = min(_SKLEARN_BATCH, len(X_train))
    rows = min(len(X_train), 2 * batch + len(X_train) % batch)
    t0 = time.perf_counter()
    sklearn_estimator(variant, hidden, 1).fit(X_train[:rows], y_train[:rows])
    return time.perf_counter() - t0


def _set_threads(variant: str, threads: int):
    """Returns the threadpool limit object, which must stay alive while it applies."""
    if variant.startswith("fastnn"):
        import fastnn

        fastnn.set_num_threads(threads)
        return None
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads)


def _fit_worker(spec: dict, variant: str, threads: int) -> dict:
    """Runs in its own process: one untimed warm-up fit, then one timed ``fit``.

    The warm-up is :func:`warmup_fit`: fastnn's kernels are compiled or loaded there.
    scikit-learn gets the same warm-up, so that neither pays first-call costs in the timed fit.
    Returns the fit's wall seconds, the test accuracy and the number of epochs it ran.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is meant to stop the fits
    limits = _set_threads(variant, threads)  # noqa: F841  (kept alive for the fits)
    X_train, X_test, y_train, y_test = sklearn_problem(spec)
    warmup_seconds = warmup_fit(variant, spec["hidden"], X_train, y_train)
    est = sklearn_estimator(variant, spec["hidden"], spec["max_iter"])
    t0 = time.perf_counter()
    est.fit(X_train, y_train)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "accuracy": float(est.score(X_test, y_test)),
            "epochs": int(est.n_iter_), "warmup_seconds": warmup_seconds}


def _floor_worker(spec: dict, dtype: str, threads: int) -> dict:
    """Runs in its own process: the matrix products of ``max_iter`` epochs of batch-200 steps.

    Each epoch has ``n_train // 200`` steps of 200 rows and one of the remainder, as
    scikit-learn's batches; each step is the forward and backward products of every layer
    (see ``_gemm_products``), nothing else.
    """
    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(threads)  # noqa: F841
    X_train, _, y_train, _ = sklearn_problem(spec)
    n_train, n_classes = len(X_train), len(set(y_train.tolist()))
    # scikit-learn's output layer: one logistic unit for two classes, one per class otherwise.
    dims = [X_train.shape[1], *spec["hidden"], 1 if n_classes == 2 else n_classes]
    batch = min(_SKLEARN_BATCH, n_train)
    full, rest = divmod(n_train, batch)
    full_step = _gemm_products(dims, batch, dtype)
    rest_step = _gemm_products(dims, rest, dtype) if rest else None
    full_step()  # BLAS threads up, buffers touched
    t0 = time.perf_counter()
    for _ in range(spec["max_iter"]):
        for _ in range(full):
            full_step()
        if rest_step is not None:
            rest_step()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "epochs": int(spec["max_iter"]),
            "steps": spec["max_iter"] * (full + (1 if rest else 0))}


def _sklearn_worker(variant: str, spec: dict, threads: int) -> dict:
    if variant.startswith("floor-"):
        return _floor_worker(spec, variant[len("floor-"):], threads)
    return _fit_worker(spec, variant, threads)


def run_sklearn_bench(problems: dict, variants=SKLEARN_VARIANTS, rounds: int = 3,
                      threads: int | None = None, log=None) -> dict:
    """Alternate one process per (round, problem, variant); return every round's figures.

    ``problems`` maps a name to a spec as in :data:`PROBLEMS`. Returns ``{problem: {variant:
    [{"seconds", "epochs", and for fits "accuracy"}, ...]}}``, one entry per round.
    """
    log = sys.stderr if log is None else log
    threads = threads or os.cpu_count() or 1
    results: dict = {}
    for r in range(rounds):
        for name, spec in problems.items():
            for variant in variants:
                out = _run_worker(["--sklearn-worker", variant, json.dumps([spec, threads])],
                                  3600, f"{variant} on {name}", log)
                if out is None:
                    continue
                results.setdefault(name, {}).setdefault(variant, []).append(out)
                acc = f", test accuracy {out['accuracy']:.4f}" if "accuracy" in out else ""
                print(f"  round {r + 1}/{rounds} {name} {variant}: {out['seconds']:.3f} s"
                      f"{acc}", file=log)
    return results


def format_sklearn_table(results: dict) -> str:
    """The --sklearn table: median seconds, epochs, test accuracy and two ratios.

    "vs sklearn" divides by scikit-learn's float64 fit; "vs floor" by the floor of the same
    dtype, scaled to the row's own number of epochs (a fit that stops early is compared with
    the products of the steps it ran).
    """
    lines = [f"{'problem':<10} {'variant':<16} {'median s':>9} {'epochs':>6} {'test acc':>8} "
             f"{'vs sklearn':>10} {'vs floor':>9}"]
    for name, by_variant in results.items():
        med = {v: statistics.median(o["seconds"] for o in outs)
               for v, outs in by_variant.items()}
        epochs = {v: statistics.median(o["epochs"] for o in outs)
                  for v, outs in by_variant.items()}
        sk = med.get("sklearn-float64")
        label = name
        for variant, seconds in med.items():
            outs = by_variant[variant]
            acc = (f"{statistics.median(o['accuracy'] for o in outs):.4f}"
                   if "accuracy" in outs[0] else "-")
            floor_name = "floor-" + variant.rsplit("-", 1)[1]
            fl = "-"
            if floor_name in med:
                floor = med[floor_name] * epochs[variant] / epochs[floor_name]
                fl = f"{seconds / floor:.2f}x"
            rel = f"{seconds / sk:.2f}x" if sk else "-"
            lines.append(f"{label:<10} {variant:<16} {seconds:9.3f} {epochs[variant]:6g} "
                         f"{acc:>8} {rel:>10} {fl:>9}")
            label = ""
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# fastnn bench --tables: reading and encoding a large mixed table, its memory, and an epoch.

#: The generated table of ``fastnn bench --tables``: real columns (every fourth one skewed,
#: exp of a normal), text columns with these numbers of categories, blanks in every feature
#: column, and a 0/1 target.
TABLE_NUMERIC = 20
TABLE_CATEGORIES = (10, 100, 1_000, 5_000, 10_000)
TABLE_BLANKS = 0.05
TABLE_ROWS = 1_000_000


def make_mixed_table(n_rows: int = TABLE_ROWS, seed: int = 0):
    """The benchmark's table (a ``pyarrow.Table``): ``num0..num19`` (float64, 4 decimals),
    ``cat0..cat4`` (text ``t<j>_<k>``, :data:`TABLE_CATEGORIES` values), 5% blanks in each,
    and ``target`` (0/1, a function of a few columns plus noise)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    cols, score = {}, np.zeros(n_rows)
    for j in range(TABLE_NUMERIC):
        v = rng.standard_normal(n_rows)
        if j < 3:
            score += v
        v = np.exp(v) if j % 4 == 3 else v * (j + 1) + j
        cols[f"num{j}"] = pa.array(np.round(v, 4), mask=rng.random(n_rows) < TABLE_BLANKS)
    for j, k in enumerate(TABLE_CATEGORIES):
        codes = rng.integers(0, k, n_rows).astype(np.int32)
        score += 0.5 * np.sin(codes)
        names = pa.array([f"t{j}_{i}" for i in range(k)])
        cols[f"cat{j}"] = pa.DictionaryArray.from_arrays(
            pa.array(codes, mask=rng.random(n_rows) < TABLE_BLANKS), names).cast(pa.string())
    cols["target"] = pa.array((score + rng.standard_normal(n_rows) > 0).astype(np.int64))
    return pa.table(cols)


def mixed_table_files(directory: str, n_rows: int = TABLE_ROWS, seed: int = 0):
    """(CSV path, Parquet path) of :func:`make_mixed_table` in ``directory``, written once
    (kept for later runs)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    os.makedirs(directory, exist_ok=True)
    stem = os.path.join(directory, f"mixed_{n_rows}_{seed}")
    paths = (stem + ".csv", stem + ".parquet")
    if not all(os.path.isfile(p) for p in paths):
        table = make_mixed_table(n_rows, seed)
        for path, write in zip(paths, (pcsv.write_csv, pq.write_table), strict=True):
            write(table, path + ".part")
            os.replace(path + ".part", path)
    return paths


def read_and_encode(path: str, target: str = "target"):
    """What ``fastnn train --data csv:PATH:TARGET`` (or ``parquet:``) does to a table before
    training: read it (:func:`fastnn.datasets.load_table`), fit the column roles, medians
    and vocabularies on the training rows (the seeded split of a run without a test file)
    and encode every row. Returns (X (N, D) float64, y, encoder, {"read": s, "encode": s,
    "read_cpu": s, "encode_cpu": s}): wall seconds, and the process's CPU seconds (all its
    threads)."""
    from .data import split_rows
    from .datasets import load_table
    from .recipes import TEST_FRACTION
    from .tabular import TableEncoder

    t0, c0 = time.perf_counter(), time.process_time()
    split = load_table(path, target)
    t1, c1 = time.perf_counter(), time.process_time()
    n = split.table.num_rows
    train_rows, _ = split_rows(n, TEST_FRACTION, seed=1, name="test fraction")
    train_rows, _ = split_rows(n, 0.1, seed=0, rows=train_rows, name="val fraction")
    encoder = TableEncoder.fit(split.table, rows=train_rows)
    X = encoder.transform(split.table)
    t2, c2 = time.perf_counter(), time.process_time()
    return X, split.y, encoder, {"read": t1 - t0, "encode": t2 - t1,
                                 "read_cpu": c1 - c0, "encode_cpu": c2 - c1}


def _tables_timing_worker(csv_path: str, parquet_path: str, rounds: int) -> dict:
    """In one process, alternated ``rounds`` times: pandas' ``read_csv`` of the CSV (when
    pandas is installed), then fastnn's read and encode of the CSV and of the Parquet file.
    Returns {entry: [wall seconds, ...]} (fastnn's entries also as ``... read`` and ``...
    encode``) and under "cpu" the same entries' CPU seconds (the process's, all threads:
    on a machine shared with other jobs, the wall time of a multi-threaded reader depends
    on the load more than its CPU time does)."""
    import gc
    import importlib.util

    import numpy  # noqa: F401  (imported before timing, as pandas imports it)

    has_pandas = importlib.util.find_spec("pandas") is not None
    if has_pandas:
        import pandas as pd
    import pyarrow  # noqa: F401

    out: dict = {}
    cpu: dict = {}
    for _ in range(rounds):
        if has_pandas:
            t0, c0 = time.perf_counter(), time.process_time()
            frame = pd.read_csv(csv_path)
            out.setdefault("pandas read_csv", []).append(time.perf_counter() - t0)
            cpu.setdefault("pandas read_csv", []).append(time.process_time() - c0)
            del frame
            gc.collect()
        for label, path in (("fastnn csv", csv_path), ("fastnn parquet", parquet_path)):
            t0, c0 = time.perf_counter(), time.process_time()
            X, _, _, parts = read_and_encode(path)
            out.setdefault(label, []).append(time.perf_counter() - t0)
            cpu.setdefault(label, []).append(time.process_time() - c0)
            for k in ("read", "encode"):
                out.setdefault(f"{label} {k}", []).append(parts[k])
                cpu.setdefault(f"{label} {k}", []).append(parts[f"{k}_cpu"])
            del X
            gc.collect()
    out["cpu"] = cpu
    return out


def _tables_memory_worker(path: str) -> dict:
    """In a fresh process: the growth of the peak RSS (``ru_maxrss``) from after the imports
    and a first read and encode of a 1,000-row table of the same format (which loads
    pyarrow's reader and starts its threads and allocator: a fixed ~55 MB whatever the
    table's size) to the end of reading and encoding ``path`` and building the default
    tabular model, against the bytes of the encoded arrays (X and y) and the model's
    parameters."""
    import tempfile

    import numpy as np
    import pyarrow  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from .nn.tabular import TabularMLP

    with tempfile.TemporaryDirectory() as tmp:
        small = mixed_table_files(tmp, 1000)[0 if path.lower().endswith(".csv") else 1]
        read_and_encode(small)
    baseline = _max_rss_bytes()
    X, y, enc, _ = read_and_encode(path)
    model = TabularMLP(enc.n_continuous, enc.cardinalities, hidden=(256, 256),
                       out_features=2, dropout=0.1)
    model_bytes = sum(p.data.nbytes for p in model.parameters())
    return {"peak_bytes": _max_rss_bytes() - baseline,
            "encoded_bytes": int(X.nbytes + np.asarray(y).nbytes), "model_bytes": model_bytes,
            "shape": list(X.shape)}


def _tables_epoch_worker(parquet_path: str, rounds: int, rows: int | None) -> dict:
    """In one process: epochs of the default tabular model (``TabularMLP``: embeddings of the
    codes, (256, 256), BatchNorm, dropout 0.1, Adam) on the encoded table, alternated with
    epochs of a plain MLP (``fastnn.train.build_mlp``, the same hidden layers) on a numeric
    table of the same width into the first Linear (the continuous columns plus the
    embeddings' widths), the same rows and batch size (``fastnn train``'s for this many
    rows). Returns {model: [seconds per epoch, ...], "cpu": {model: [CPU seconds of the
    process per epoch, ...]}, "steps": {model: "compiled" | "graph (why)"}}. (The CPU time
    is the figure to compare on a busy machine: other processes stretch the wall time.)"""
    import numpy as np

    from . import losses
    from .data import ArrayDataset, Standardizer
    from .nn.tabular import TabularMLP
    from .optim import Adam
    from .random import manual_seed
    from .recipes import tabular_batch_size
    from .train import LocalStep, build_mlp, fit

    X, y, enc, _ = read_and_encode(parquet_path)
    if rows is not None:
        X, y = X[:rows], y[:rows]
    k = enc.n_continuous
    std = Standardizer().fit(X[:, :k])
    X[:, :k] = (X[:, :k] - std.mean) / std.std
    tab_width = k + sum(TabularMLP(k, enc.cardinalities).embedding_dims)
    rng = np.random.default_rng(0)
    X_num = rng.standard_normal((len(X), tab_width))
    batch = tabular_batch_size(len(X))
    manual_seed(0)
    models = {
        "TabularMLP": (TabularMLP(k, enc.cardinalities, hidden=(256, 256), out_features=2,
                                  dropout=0.1), X),
        "MLP": (build_mlp(tab_width, [256, 256], 2, "relu", True, 0.1, "float32"), X_num),
    }
    out: dict = {"steps": {}, "cpu": {}, "batch": batch, "rows": len(X), "width": tab_width}
    for r in range(rounds + 1):  # the first round compiles and warms up: not counted
        for name, (model, data) in models.items():
            opt = Adam(model.parameters(), lr=1e-3)
            step = LocalStep(model, opt)
            t0, c0 = time.perf_counter(), time.process_time()
            fit(model, losses.cross_entropy, opt, ArrayDataset(data, y, check=False),
                epochs=1, batch_size=batch, quiet=True, step=step)
            if r:
                out.setdefault(name, []).append(time.perf_counter() - t0)
                out["cpu"].setdefault(name, []).append(time.process_time() - c0)
            out["steps"][name] = "compiled" if step.compiled_step is not None else \
                f"graph ({step.not_compiled_because})"
    return out


def run_tables_bench(n_rows: int = TABLE_ROWS, rounds: int = 3, directory: str | None = None,
                     epoch_rows: int | None = None, log=None) -> dict:
    """The ``--tables`` benchmark: files made once in ``directory`` (default: a folder in the
    temporary directory), then one process timing the reads (:func:`_tables_timing_worker`),
    one fresh process per format measuring memory, and one timing epochs. Returns the
    workers' results."""
    import tempfile

    log = sys.stderr if log is None else log
    directory = directory or os.path.join(tempfile.gettempdir(), "fastnn-bench-tables")
    print(f"  writing/reusing the {n_rows:,}-row table in {directory}", file=log)
    csv_path, parquet_path = mixed_table_files(directory, n_rows)
    results: dict = {"files": {"csv": csv_path, "parquet": parquet_path,
                               "csv_bytes": os.path.getsize(csv_path),
                               "parquet_bytes": os.path.getsize(parquet_path)}}
    runs = (("timing", ["timing", json.dumps([csv_path, parquet_path, rounds])]),
            ("memory csv", ["memory", json.dumps([csv_path])]),
            ("memory parquet", ["memory", json.dumps([parquet_path])]),
            ("epochs", ["epoch", json.dumps([parquet_path, rounds, epoch_rows])]))
    for label, args in runs:
        print(f"  {label} ...", file=log)
        results[label] = _run_worker(["--tables-worker", *args], 3600, label, log)
    return results


def format_tables_report(results: dict) -> str:
    """The ``--tables`` figures as text: medians, ratios, memory."""
    lines = []
    f = results["files"]
    lines.append(f"files: {f['csv']} ({f['csv_bytes'] / 2**20:.0f} MiB), {f['parquet']} "
                 f"({f['parquet_bytes'] / 2**20:.0f} MiB)")
    timing = results.get("timing")
    if timing:
        cpu = {k: statistics.median(v) for k, v in timing.get("cpu", {}).items()}
        med = {k: statistics.median(v) for k, v in timing.items() if k != "cpu"}
        ref, cpu_ref = med.get("pandas read_csv"), cpu.get("pandas read_csv")
        lines.append(f"{'read (+ encode)':<34} {'median s':>9} {'vs pandas read_csv':>19}"
                     f" {'CPU s':>7} {'CPU vs pandas':>14}")
        for k, v in med.items():
            rel = f"{v / ref:.2f}x" if ref else "-"
            c = cpu.get(k)
            c_text = "-" if c is None else f"{c:.2f}"
            c_rel = f"{c / cpu_ref:.2f}x" if c is not None and cpu_ref else "-"
            lines.append(f"{k:<34} {v:9.2f} {rel:>19} {c_text:>7} {c_rel:>14}")
        if ref is None:
            lines.append("pandas is not installed: no pandas read_csv to compare with")
    for fmt in ("csv", "parquet"):
        mem = results.get(f"memory {fmt}")
        if mem:
            enc, model = mem["encoded_bytes"], mem["model_bytes"]
            lines.append(f"peak memory, {fmt}: {mem['peak_bytes'] / 2**20:.0f} MiB = "
                         f"{mem['peak_bytes'] / (enc + model):.2f}x the encoded arrays "
                         f"({enc / 2**20:.0f} MiB, X {mem['shape'][0]}x{mem['shape'][1]} "
                         f"float64 and y) plus the model ({model / 2**20:.2f} MiB)")
    ep = results.get("epochs")
    if ep:
        tab, mlp = statistics.median(ep["TabularMLP"]), statistics.median(ep["MLP"])
        lines.append(f"epoch of {ep['rows']:,} rows, batch {ep['batch']}: TabularMLP "
                     f"{tab:.2f} s ({ep['steps']['TabularMLP']}), MLP of the same width "
                     f"({ep['width']} inputs) {mlp:.2f} s ({ep['steps']['MLP']}): "
                     f"{tab / mlp:.2f}x")
        cpu = ep.get("cpu")
        if cpu:
            tab, mlp = statistics.median(cpu["TabularMLP"]), statistics.median(cpu["MLP"])
            lines.append(f"  CPU time of those epochs: TabularMLP {tab:.2f} s, MLP {mlp:.2f} s: "
                         f"{tab / mlp:.2f}x")
    return "\n".join(lines)


def _main_tables(args) -> int:
    if args.rows < 1000:
        return _error(f"--rows must be at least 1000, got {args.rows}")
    if args.epoch_rows is not None and args.epoch_rows < 100:
        return _error(f"--epoch-rows must be at least 100, got {args.epoch_rows}")
    print("reading and encoding a generated mixed table (20 real and 5 text columns, "
          f"{', '.join(map(str, TABLE_CATEGORIES))} categories, 5% blanks): "
          "fastnn = load_table + TableEncoder fit (training rows) + transform, what "
          "`fastnn train --data csv:FILE:target` does before training; pandas = "
          f"pandas.read_csv alone; medians of {args.rounds} alternated rounds in one process")
    results = run_tables_bench(args.rows, args.rounds, args.table_dir, args.epoch_rows)
    print(format_tables_report(results))
    print("peak memory: growth of a fresh process's peak RSS (ru_maxrss) from after its "
          "imports and a first 1,000-row read of the same format (pyarrow's reader loaded, "
          "its threads started) to the end of reading, encoding and building the model")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh)
    return 0


def _error(msg: str) -> int:
    print(f"fastnn bench: error: {msg}", file=sys.stderr)
    return 2


def _main_sklearn(args) -> int:
    names = [n for n in args.problems.split(",") if n]
    unknown = [n for n in names if n not in PROBLEMS]
    if unknown or not names:
        return _error(f"unknown problems {unknown or names} (choose among "
                      f"{', '.join(PROBLEMS)})")
    problems = {n: dict(PROBLEMS[n]) for n in names}
    if args.max_iter is not None:
        if args.max_iter < 1:
            return _error(f"--max-iter must be at least 1, got {args.max_iter}")
        for spec in problems.values():
            spec["max_iter"] = args.max_iter
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:
        return _error("--sklearn needs scikit-learn (pip install 'fastnn[sklearn]')")
    for line in blas_report():
        print(line)
    print(f"fit wall time of MLPClassifier (adam, batch 200, random_state=0), median of "
          f"{args.rounds} alternated rounds, each fit in its own process; each worker first "
          f"runs one untimed warm-up fit (max_iter=1 on 400 rows plus the size of an epoch's "
          f"last batch), so fastnn's Numba kernels are compiled before timing. floor: the "
          f"matrix products of the same steps (forward and backward) on NumPy's BLAS, scaled "
          f"to each fit's epochs.")
    for name, spec in problems.items():
        print(f"  {name}: {spec}")
    results = run_sklearn_bench(problems, SKLEARN_VARIANTS, args.rounds, args.threads)
    print(format_sklearn_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sklearn": results, "problems": problems}, f)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fastnn bench", description=__doc__.splitlines()[0])
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--sklearn-worker", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--models", default=DEFAULT_MODELS,
                   help=f"comma-separated among {', '.join(MODELS)} (MLPs) and "
                   f"{', '.join(CNN_MODELS)} (CNNs: LeNet-5 on 1x28x28, batch 64; the small "
                   f"CIFAR net on 3x32x32, batch 128) (default {DEFAULT_MODELS})")
    p.add_argument("--hidden", help="a custom MLP: hidden sizes, e.g. 1024,1024 "
                   "(in-features-...-classes; replaces --models)")
    p.add_argument("--in-features", type=int, default=784, help="inputs of the custom MLP")
    p.add_argument("--classes", type=int, default=10, help="outputs of the custom MLP")
    p.add_argument("--batch", type=int, default=128, help="batch of the custom MLP")
    p.add_argument("--no-batchnorm", action="store_true", help="custom MLP without BatchNorm")
    p.add_argument("--frameworks",
                   default=",".join(f for f in FRAMEWORKS if f != "fastnn-fused"),
                   help=f"comma-separated among {', '.join(FRAMEWORKS)} (default: all but "
                        "fastnn-fused, the compiled step with the optimizer fused into "
                        "backward)")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds (default 3)")
    p.add_argument("--repeats", type=int, default=50, help="timed steps per process")
    p.add_argument("--threads", type=int, help="threads per process (default: all cores)")
    p.add_argument("--json", help="also write the raw times to this JSON file")
    p.add_argument("--sklearn", action="store_true",
                   help="time whole fits of fastnn.sklearn.MLPClassifier against "
                   "scikit-learn's instead of training steps")
    p.add_argument("--problems", default=",".join(PROBLEMS),
                   help=f"with --sklearn: comma-separated among {', '.join(PROBLEMS)}")
    p.add_argument("--max-iter", type=int,
                   help="with --sklearn: override each problem's max_iter (a quick look)")
    p.add_argument("--tables", action="store_true",
                   help="time reading and encoding a generated 1,000,000-row mixed table "
                   "(CSV and Parquet) against pandas' read_csv, its peak memory, and an "
                   "epoch of TabularMLP against an MLP of the same width")
    p.add_argument("--rows", type=int, default=TABLE_ROWS,
                   help=f"with --tables: rows of the table (default {TABLE_ROWS:,})")
    p.add_argument("--table-dir", help="with --tables: where the table's files are kept "
                   "(default: a folder in the temporary directory)")
    p.add_argument("--epoch-rows", type=int,
                   help="with --tables: train the epochs on the first rows only")
    p.add_argument("--tables-worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tables_worker:
        kind, payload = args.tables_worker
        worker = {"timing": _tables_timing_worker, "memory": _tables_memory_worker,
                  "epoch": _tables_epoch_worker}[kind]
        print(json.dumps(worker(*json.loads(payload))))
        return 0
    if args.worker:
        fw, spec = args.worker
        dims, batch, bn, reps, threads = json.loads(spec)
        print(json.dumps(_worker(fw, dims, batch, bn, reps, threads)))
        return 0
    if args.sklearn_worker:
        variant, payload = args.sklearn_worker
        spec, threads = json.loads(payload)
        print(json.dumps(_sklearn_worker(variant, spec, threads)))
        return 0
    for opt in ("rounds", "repeats", "threads", "batch", "in_features", "classes"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            return _error(f"--{opt.replace('_', '-')} must be at least 1, got {value}")
    if args.sklearn:
        return _main_sklearn(args)
    if args.tables:
        return _main_tables(args)
    models = {}
    if args.hidden:
        try:
            hidden = [int(v) for v in args.hidden.split(",")]
        except ValueError:
            return _error(f"--hidden takes comma-separated layer sizes, got {args.hidden!r}")
        if any(h < 1 for h in hidden):
            return _error(f"--hidden sizes must be at least 1, got {args.hidden!r}")
        dims = [args.in_features, *hidden, args.classes]
        models[f"{'-'.join(map(str, dims))} ({args.batch})"] = (
            dims, args.batch, not args.no_batchnorm)
    else:
        for m in args.models.split(","):
            if m in CNN_MODELS:
                inp, batch, _ = CNN_MODELS[m]
                models[f"{m} {'x'.join(map(str, inp))} ({batch})"] = (m, batch, None)
                continue
            if m not in MODELS:
                return _error(f"unknown model {m!r} (choose among "
                              f"{', '.join([*MODELS, *CNN_MODELS])})")
            dims, batch, bn = MODELS[m]
            models[f"{m} {'-'.join(map(str, dims))} ({batch})"] = MODELS[m]
    frameworks = [f for f in args.frameworks.split(",") if f]
    unknown = set(frameworks) - set(FRAMEWORKS)
    if unknown:
        return _error(f"unknown frameworks {sorted(unknown)} (choose among "
                      f"{', '.join(FRAMEWORKS)})")
    missing = [f for f in frameworks if not _available(f)]
    frameworks = [f for f in frameworks if f not in missing]
    for line in blas_report():
        print(line)
    if missing:
        print(f"not installed, skipped: {', '.join(missing)}")
    for dims, _, _ in models.values():
        if isinstance(dims, str):
            print(cnn_describe(dims))
            no_cnn = [f for f in frameworks if f not in CNN_FRAMEWORKS]
            if no_cnn:
                print(f"  no CNN step in {', '.join(no_cnn)}: skipped for {dims}")
    paths: dict = {}
    memory: dict = {}
    results = run_bench(models, frameworks, args.rounds, args.repeats, args.threads,
                        paths=paths, memory=memory)
    print(format_table(results, memory))
    print("peak MiB: growth of the worker process's peak RSS (ru_maxrss) from after importing "
          "the framework to the end of its steps (model, data, compiled code, optimizer "
          "state, the peak inside a step); median over rounds")
    for label, by_fw in paths.items():
        if "fastnn" in by_fw:
            path = by_fw["fastnn"]
            text = ("the compiled step (fnn.compile_step)" if path == "compiled" else
                    "the graph step (this fastnn has no compile_step)" if path == "graph" else
                    "the graph step " + path.removeprefix("graph "))
            print(f"fastnn: {text} on {label}")
    for label, by_fw in memory.items():
        traced = {fw[:-len(" traced")]: statistics.median(b) / 2**20
                  for fw, b in by_fw.items() if fw.endswith(" traced")}
        if traced:
            print(f"{label}: NumPy allocations in one steady-state step (tracemalloc peak): "
                  + ", ".join(f"{fw} {mib:.1f} MiB" for fw, mib in traced.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
