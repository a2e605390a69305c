"""fastnn.compiled on convolutional networks: every CNN stage (Conv2d, Conv1d, the poolings,
BatchNorm2d, Dropout2d, Flatten, Unflatten, and the elementwise layers on images) gives the
graph path's bits after several steps, at several batch sizes. Tiny shapes: the kernels are
the ones tests/nn/test_conv.py checks against PyTorch; here only the two paths are compared."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn import nn
from fastnn.kernels import conv as K_conv
from fastnn.train import fit

C_IN, SIDE, CLASSES = 2, 6, 3


def images(n=40, shape=(C_IN, SIDE, SIDE), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(dtype), rng.integers(0, CLASSES, n)


#: name -> (layers before the head (a function of dtype), input sample shape). The head is
#: Flatten and a Linear to CLASSES, added by ``model``.
MODELS = {
    "conv-bn-relu-maxpool": (lambda dt: [
        nn.Conv2d(C_IN, 4, 3, padding=1, bias=False, dtype=dt), nn.BatchNorm2d(4, dtype=dt),
        nn.ReLU(), nn.MaxPool2d(2)], (C_IN, SIDE, SIDE)),
    "conv-options": (lambda dt: [  # stride, dilation, non-square, fused by argument, groups
        nn.Conv2d(C_IN, 4, (3, 2), stride=(2, 1), padding=(1, 0), activation="tanh", dtype=dt),
        nn.Conv2d(4, 4, 3, dilation=2, padding="same", groups=2, dtype=dt), nn.GELU(),
        nn.Conv2d(4, 4, 3, groups=4, padding=1, dtype=dt), nn.LeakyReLU(0.1)],
        (C_IN, SIDE, SIDE)),
    "depthwise-first": (lambda dt: [  # the direct kernels, as the first (no dx) stage
        nn.Conv2d(C_IN, C_IN, 3, groups=C_IN, dtype=dt), nn.Conv2d(C_IN, 4, 1, dtype=dt)],
        (C_IN, SIDE, SIDE)),
    "batchnorm2d-options": (lambda dt: [
        nn.BatchNorm2d(C_IN, affine=False, dtype=dt),
        nn.Conv2d(C_IN, 4, 3, dtype=dt), nn.BatchNorm2d(4, momentum=None, dtype=dt),
        nn.ELU(), nn.BatchNorm2d(4, track_running_stats=False, activation="silu", dtype=dt)],
        (C_IN, SIDE, SIDE)),
    "poolings": (lambda dt: [
        nn.Conv2d(C_IN, 3, 3, padding=1, dtype=dt), nn.Sigmoid(),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        nn.Conv2d(3, 3, 1, dtype=dt), nn.AvgPool2d(2, divisor_override=3, ceil_mode=True),
        nn.MaxPool2d(2, stride=1, dilation=1)], (C_IN, SIDE + 1, SIDE)),
    "adaptive": (lambda dt: [
        nn.Conv2d(C_IN, 3, 3, dtype=dt), nn.ReLU(), nn.AdaptiveAvgPool2d((3, None)),
        nn.Conv2d(3, 4, (1, 2), dtype=dt), nn.AdaptiveAvgPool2d(1)], (C_IN, SIDE, SIDE)),
    "dropouts-prelu": (lambda dt: [
        nn.Conv2d(C_IN, 4, 3, dtype=dt), nn.PReLU(dtype=dt), nn.Dropout2d(0.3, seed=1),
        nn.Conv2d(4, 4, 3, dtype=dt), nn.Dropout(0.2, seed=2), nn.Identity()],
        (C_IN, SIDE, SIDE)),
    "unflatten-rows": (lambda dt: [  # rows of pixels, as fastnn's loaders give images
        nn.Unflatten(1, (C_IN, -1, SIDE)), nn.Conv2d(C_IN, 4, 3, padding=1, dtype=dt),
        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 9, 8, dtype=dt),
        nn.BatchNorm1d(8, dtype=dt), nn.ReLU(), nn.Unflatten(1, (2, 4)),
        nn.Conv1d(2, 3, 2, dtype=dt)], (C_IN * SIDE * SIDE,)),
    "conv1d": (lambda dt: [
        nn.Conv1d(C_IN, 4, 3, stride=2, padding=2, dilation=2, dtype=dt), nn.ReLU(),
        nn.Conv1d(4, 4, 3, groups=4, padding="same", dtype=dt), nn.Dropout2d(0.2, seed=3)],
        (C_IN, 11)),
}


def model(name, dtype="float32"):
    make, shape = MODELS[name]
    fnn.manual_seed(0)
    body = make(dtype)
    m = fnn.Sequential(*body)
    with fnn.no_grad():  # the head's width: the body's output on one sample
        m.eval()
        width = m(np.zeros((1, *shape), dtype)).numel()
    m.train()
    return fnn.Sequential(*body, nn.Flatten(), nn.Linear(width, CLASSES, dtype=dtype))


def graph_step(m, opt, x, y):
    opt.zero_grad()
    loss = fnn.losses.cross_entropy(m(x), y)
    value = loss.item()
    loss.backward()
    opt.step()
    return value


def assert_same_training(name, dtype="float32", fuse=False, batches=(16, 8), steps=3):
    shape = MODELS[name][1]
    X, y = images(shape=shape, dtype=np.dtype(dtype))
    a, b = model(name, dtype), model(name, dtype)
    opt_a = fnn.optim.Adam(a.parameters(), lr=1e-2, weight_decay=1e-3)
    opt_b = fnn.optim.Adam(b.parameters(), lr=1e-2, weight_decay=1e-3)
    step = fnn.compile_step(b, fnn.losses.cross_entropy, opt_b, fuse_optimizer=fuse)
    for _ in range(steps):
        lo = 0
        for n in batches:  # a plan per batch size
            xb, yb = X[lo:lo + n], y[lo:lo + n]
            assert step.accepts(xb, yb)
            assert graph_step(a, opt_a, xb, yb) == step(xb, yb)
            lo += n
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        np.testing.assert_array_equal(va, vb, err_msg=key)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(pa.grad, pb.grad)
    sa, sb = opt_a.flat_state_dict(), opt_b.flat_state_dict()
    for key in sa["state"]:
        for u, v in zip(sa["state"][key], sb["state"][key], strict=True):
            np.testing.assert_array_equal(u, v, err_msg=key)
    return step


@pytest.mark.parametrize("name", list(MODELS))
def test_every_cnn_stage_gives_the_graph_bits(name):
    step = assert_same_training(name)
    assert "Conv" in repr(step) or "BatchNorm2d" in repr(step)


@pytest.mark.parametrize("name", ["conv-bn-relu-maxpool", "dropouts-prelu"])
def test_fused_update_and_float64(name):
    assert_same_training(name, fuse=True)
    assert_same_training(name, dtype="float64", batches=(8,), steps=2)


def test_chunked_convolutions_give_the_graph_bits(monkeypatch):
    """A large layer's chunks of images (kernels.conv.chunk_plan), forced on tiny shapes."""
    monkeypatch.setattr(K_conv, "CHUNK_MIN_BYTES", 0)
    monkeypatch.setattr(K_conv, "CHUNK_BYTES", 2 * 4 * C_IN * 9 * SIDE * SIDE)
    assert K_conv.chunk_plan(16, C_IN, SIDE, SIDE, 3, 3, 4) == 2
    assert_same_training("conv-bn-relu-maxpool")
    assert_same_training("conv-options", batches=(16,), steps=2)


def test_another_image_size_gets_its_own_plan_and_a_bad_one_runs_on_the_graph():
    a, b = model("adaptive"), model("adaptive")  # adaptive pooling: any image size
    opt_a, opt_b = fnn.optim.SGD(a.parameters(), lr=0.1), fnn.optim.SGD(b.parameters(), lr=0.1)
    step = fnn.compile_step(b, fnn.losses.cross_entropy, opt_b)
    for shape in ((C_IN, SIDE, SIDE), (C_IN, SIDE + 2, SIDE - 1), (C_IN, SIDE, SIDE)):
        X, y = images(n=8, shape=shape)
        assert step.accepts(X, y)
        assert graph_step(a, opt_a, X, y) == step(X, y)
    np.testing.assert_array_equal(a[0].weight.data, b[0].weight.data)
    X, y = images(n=8, shape=(C_IN, 2, 2))  # smaller than the kernel: the graph's error
    assert not step.accepts(X, y)
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        step(X, y)
    X, y = images(n=8, shape=(C_IN + 1, SIDE, SIDE))
    assert not step.accepts(X, y)
    with pytest.raises(ValueError, match="expected input of shape"):
        step(X, y)


def test_return_indices_does_not_compile():
    m = fnn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, return_indices=True))
    with pytest.raises(fnn.NotCompilable, match="return_indices"):
        fnn.compile_step(m, fnn.losses.cross_entropy, fnn.optim.SGD(m.parameters(), lr=0.1))


def test_fit_compiles_a_cnn_and_gives_the_graphs_history():
    X, y = images(n=60, shape=(C_IN * SIDE * SIDE,))
    runs = []
    for compiled in (True, False):
        m = model("unflatten-rows")
        opt = fnn.optim.Adam(m.parameters(), lr=1e-2)
        step = fnn.train.LocalStep(m, opt, compiled=compiled)
        assert (step.prepare(fnn.losses.cross_entropy) is None) == compiled
        hist = fit(m, fnn.losses.cross_entropy, opt, (X, y), val=(X[:20], y[:20]),
                   epochs=2, batch_size=16, quiet=True, step=step)
        runs.append((hist, m.state_dict()))
    (h1, s1), (h2, s2) = runs
    for r1, r2 in zip(h1, h2, strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert r1[key] == r2[key], key
    for key in s1:
        np.testing.assert_array_equal(s1[key], s2[key])


def test_a_layer_put_in_evaluation_mode_runs_on_the_graph():
    """The plan is training's: a BatchNorm2d or Dropout2d in eval() on its own (the model in
    training) sends the batch to the graph path, which uses the running statistics."""
    X, y = images(n=16)
    a, b = model("dropouts-prelu"), model("conv-bn-relu-maxpool")
    for m in (a, b):
        opt = fnn.optim.SGD(m.parameters(), lr=0.1)
        step = fnn.compile_step(m, fnn.losses.cross_entropy, opt)
        assert step.accepts(X, y)
        for layer in m:
            if isinstance(layer, (nn.BatchNorm2d, nn.Dropout2d)):
                layer.eval()
        assert m.training and not step.accepts(X, y)
        assert np.isfinite(step(X, y))
