"""Property-based tests (hypothesis): every layer, loss and optimizer on random shapes
(1, primes, larger), both dtypes, C/F order and strided views, against float64 references;
invalid combinations raise clear errors. CI runs this file again under NUMBA_BOUNDSCHECK=1."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn as fnn
import naive
from fastnn import losses as L

SETTINGS = settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
dims = st.sampled_from([1, 2, 3, 7, 13, 31, 67])
dtypes = st.sampled_from([np.float32, np.float64])
layouts = st.sampled_from(["C", "F", "strided"])
ACTS = ["identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu"]


def make_input(rng, n, d, layout, scale=1.0):
    """An (n, d) float64 array in the given memory layout."""
    if layout == "strided":
        return (rng.standard_normal((2 * n, 3 * d)) * scale)[::2, ::3]
    base = rng.standard_normal((n, d)) * scale
    return np.asfortranarray(base) if layout == "F" else base


def tol(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)


@SETTINGS
@given(n=dims, d=dims, m=dims, act=st.sampled_from(ACTS), dtype=dtypes, layout=layouts,
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_forward_backward(n, d, m, act, dtype, layout, bias, seed):
    rng = np.random.default_rng(seed)
    layer = fnn.Linear(d, m, bias=bias, activation=act, dtype=dtype)
    x = make_input(rng, n, d, layout)
    xt = fnn.Tensor(x.astype(dtype), requires_grad=True)
    y = layer(xt)
    b = layer.bias.data if bias else None
    alpha = layer.activation.alpha
    y_ref, _ = naive.dense_forward(x.astype(dtype), layer.weight.data, b, act, alpha)
    np.testing.assert_allclose(y.data, y_ref, **tol(dtype))
    dy = rng.standard_normal((n, m))
    y.backward(dy)
    dx, dW, db = naive.dense_backward(dy.astype(dtype), x.astype(dtype), layer.weight.data, b,
                                      act, alpha)
    scale = np.sqrt(n * d)
    np.testing.assert_allclose(xt.grad, dx, rtol=tol(dtype)["rtol"],
                               atol=tol(dtype)["atol"] * scale)
    np.testing.assert_allclose(layer.weight.grad, dW, rtol=tol(dtype)["rtol"],
                               atol=tol(dtype)["atol"] * scale)
    if bias:
        np.testing.assert_allclose(layer.bias.grad, db, rtol=tol(dtype)["rtol"],
                                   atol=tol(dtype)["atol"] * scale)


@SETTINGS
@given(n=st.sampled_from([2, 3, 7, 31, 67]), c=dims, dtype=dtypes, layout=layouts,
       act=st.sampled_from(["identity", "relu", "tanh"]), seed=st.integers(0, 2**16),
       offset=st.sampled_from([0.0, 1e3]))
def test_batchnorm_forward_backward(n, c, dtype, layout, act, seed, offset):
    rng = np.random.default_rng(seed)
    bn = fnn.BatchNorm1d(c, activation=act, dtype=dtype)
    bn.weight.data[:] = rng.uniform(0.5, 2, c)
    bn.bias.data[:] = rng.standard_normal(c)
    x = make_input(rng, n, c, layout) + offset
    xt = fnn.Tensor(x.astype(dtype), requires_grad=True)
    y = bn(xt)
    y_ref, _, rm, rv = naive.batchnorm_forward_train(x.astype(dtype), bn.weight.data,
                                                     bn.bias.data, 1e-5, 0.1, np.zeros(c),
                                                     np.ones(c), act)
    t = tol(dtype) if offset == 0 or dtype == np.float64 else dict(rtol=3e-2, atol=3e-2)
    np.testing.assert_allclose(y.data, y_ref, **t)
    np.testing.assert_allclose(bn.running_mean, rm, rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal((n, c))
    y.backward(dy)
    dx, dg, db = naive.batchnorm_backward(dy.astype(dtype), x.astype(dtype), bn.weight.data,
                                          1e-5, act, beta=bn.bias.data)
    scale = 10 * np.sqrt(n)
    np.testing.assert_allclose(bn.weight.grad, dg, rtol=t["rtol"], atol=t["atol"] * scale)
    np.testing.assert_allclose(bn.bias.grad, db, rtol=t["rtol"], atol=t["atol"] * scale)
    if offset == 0:
        np.testing.assert_allclose(xt.grad, dx, rtol=t["rtol"] * 10, atol=t["atol"] * scale)


@SETTINGS
@given(n=dims, c=st.sampled_from([1, 2, 3, 10, 67]), dtype=dtypes, layout=layouts,
       scale=st.sampled_from([1.0, 1e2, 1e4, 3e4]), seed=st.integers(0, 2**16))
def test_losses_finite_and_match_reference(n, c, dtype, layout, scale, seed):
    rng = np.random.default_rng(seed)
    z = make_input(rng, n, c, layout, scale).astype(dtype)
    y = rng.integers(0, c, n)
    zt = fnn.Tensor(z, requires_grad=True)
    loss = L.cross_entropy(zt, y)
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(zt.grad).all()
    ref, g = naive.softmax_cross_entropy(z, y)
    assert loss.item() == pytest.approx(ref, rel=1e-4 if dtype == np.float32 else 1e-10,
                                        abs=1e-4 * scale if dtype == np.float32 else 1e-9)
    np.testing.assert_allclose(zt.grad, g, rtol=1e-3, atol=1e-5)
    h = L.multiclass_hinge(z, y)
    assert h.item() == pytest.approx(naive.multiclass_hinge(z, y)[0], rel=1e-4, abs=1e-3 * scale)
    b = L.binary_cross_entropy_with_logits(z, (z > 0) * 1.0)
    assert np.isfinite(b.item())


@SETTINGS
@given(name=st.sampled_from(["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]),
       sizes=st.lists(st.sampled_from([1, 2, 7, 13, 16385]), min_size=1, max_size=4),
       dtype=dtypes, seed=st.integers(0, 2**16))
def test_optimizers_match_reference(name, sizes, dtype, seed):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in sizes]
    params = [fnn.Parameter(a.copy()) for a in init]
    hp = {"lr": 1e-2}
    if name == "SGD":
        hp["momentum"] = 0.9
    opt = getattr(fnn.optim, name)(params, **hp)
    ref = getattr(naive, f"Naive{name}")([a.astype(np.float64) for a in init], **hp)
    for _ in range(3):
        grads = [rng.standard_normal(s).astype(dtype) for s in sizes]
        for p, g in zip(params, grads, strict=True):
            p.grad[...] = g
        opt.step()
        ref.step(grads)
    for p, r in zip(params, ref.params, strict=True):
        np.testing.assert_allclose(p.data, r, **tol(dtype))


@SETTINGS
@given(shape=st.sampled_from([(0, 3), (3,), (2, 3, 4), ()]), width=dims)
def test_bad_shapes_raise_clear_errors(shape, width):
    layer = fnn.Linear(width, 2)
    x = np.ones(shape)
    if len(shape) in (1, 2) and shape[-1] == width and (len(shape) == 1 or shape[0] > 0):
        return
    with pytest.raises(ValueError, match=r"Linear\(in_features"):
        layer(x)


@SETTINGS
@given(n=dims, c=st.sampled_from([2, 5]), bad=st.sampled_from(["neg", "big", "float", "len"]))
def test_bad_labels_never_reach_a_kernel(n, c, bad):
    z = np.zeros((n, c))
    y = np.zeros(n, np.int64)
    if bad == "neg":
        y[-1] = -1
    elif bad == "big":
        y[0] = c
    elif bad == "float":
        y = y.astype(np.float64) + 0.5
    else:
        y = np.zeros(n + 1, np.int64)
    with pytest.raises((ValueError, TypeError), match="labels"):
        L.cross_entropy(z, y)


@SETTINGS
@given(n=dims, c=dims, dtype=dtypes, layout=layouts, shared=st.booleans(),
       seed=st.integers(0, 2**16))
def test_prelu_and_activation_modules(n, c, dtype, layout, shared, seed):
    rng = np.random.default_rng(seed)
    x = make_input(rng, n, c, layout)
    layer = fnn.PReLU(1 if shared else c, init=0.2, dtype=dtype)
    xt = fnn.Tensor(x.astype(dtype), requires_grad=True)
    y = layer(xt)
    np.testing.assert_allclose(y.data, naive.prelu_forward(x.astype(dtype), layer.weight.data),
                               **tol(dtype))
    dy = rng.standard_normal((n, c))
    y.backward(dy)
    dx, dw = naive.prelu_backward(dy.astype(dtype), x.astype(dtype), layer.weight.data)
    np.testing.assert_allclose(xt.grad, dx, **tol(dtype))
    np.testing.assert_allclose(layer.weight.grad, dw, rtol=tol(dtype)["rtol"],
                               atol=tol(dtype)["atol"] * n * c)
    for name in ACTS:
        module = fnn.nn.make_activation(name) or fnn.Identity()
        out = module(x.astype(dtype))
        ref, _ = naive.activation(name, x.astype(dtype), module.alpha)
        np.testing.assert_allclose(out.data, ref, **tol(dtype))


@SETTINGS
@given(n=dims, d=dims, m=st.sampled_from([1, 2, 7]), pieces=st.sampled_from([1, 2, 3]),
       dtype=dtypes, layout=layouts, seed=st.integers(0, 2**16))
def test_maxout(n, d, m, pieces, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    layer = fnn.Maxout(d, m, pieces=pieces, dtype=dtype)
    x = make_input(rng, n, d, layout).astype(dtype)
    xt = fnn.Tensor(x, requires_grad=True)
    y = layer(xt)
    y_ref, _ = naive.maxout_forward(x, layer.weight.data, layer.bias.data, pieces)
    np.testing.assert_allclose(y.data, y_ref, **tol(dtype))
    dy = rng.standard_normal((n, m))
    y.backward(dy)
    dx, dW, db = naive.maxout_backward(dy.astype(dtype), x, layer.weight.data, layer.bias.data,
                                       pieces)
    scale = np.sqrt(n * d)
    np.testing.assert_allclose(xt.grad, dx, rtol=tol(dtype)["rtol"],
                               atol=tol(dtype)["atol"] * scale)
    np.testing.assert_allclose(layer.weight.grad, dW, rtol=tol(dtype)["rtol"],
                               atol=tol(dtype)["atol"] * scale)


def _dropout_keep_mask(layer, shape, dtype, p):
    """The layer's next mask: u >= p, u the Philox uniforms (tests/naive.py) under the next
    64-bit key of the layer's generator, rows along the first dimension."""
    g = np.random.Generator(type(layer.generator.bit_generator)())
    g.bit_generator.state = layer.generator.bit_generator.state
    key = g.bit_generator.random_raw()
    rows = shape[0]
    return (naive.dropout_uniforms(rows, int(np.prod(shape)) // rows, key, 0, dtype)
            >= p).reshape(shape)


@SETTINGS
@given(n=st.sampled_from([1, 7, 4099]), p=st.sampled_from([0.0, 0.1, 0.5, 0.9]),
       dtype=dtypes, seed=st.integers(0, 2**16))
def test_dropout_matches_its_mask(n, p, dtype, seed):
    layer = fnn.Dropout(p, seed=seed)
    x = np.random.default_rng(seed).standard_normal((n, 3)).astype(dtype)
    # The mask a Dropout of this seed draws, from its own generator's state before the call
    # (not from the output: an output of zeros would then "match" any mask).
    expected_kept = _dropout_keep_mask(layer, x.shape, x.dtype, p)
    xt = fnn.Tensor(x, requires_grad=True)
    y = layer(xt)
    kept = y.data != 0
    np.testing.assert_array_equal(kept, expected_kept & (x != 0))
    np.testing.assert_allclose(y.data[kept], x[kept] / (1 - p), rtol=1e-6)
    y.backward(np.ones_like(x))
    np.testing.assert_allclose(xt.grad, np.where(kept, 1 / (1 - p), 0.0), rtol=1e-6)
    if n == 4099 and 0 < p:
        assert abs((~kept).mean() - p) < 0.05


def test_zero_gradients_keep_every_optimizer_finite():
    for name in ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW"):
        p = fnn.Parameter(np.ones(5))
        opt = getattr(fnn.optim, name)([p], lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            opt.step()
        assert np.isfinite(p.data).all(), name
        if name != "AdamW":  # AdamW decays the weights even without a gradient
            np.testing.assert_array_equal(p.data, 1.0)
