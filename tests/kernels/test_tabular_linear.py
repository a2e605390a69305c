"""kernels/tabular_linear.py (the continuous features' part of a tabular MLP's first Linear
layer from runs of its piecewise-linear components) against tests/naive.py, and TabularMLP's
path through it against the path that writes the components (``_first_input`` + ``mlp``):
the same numbers to rounding forward and backward, the same training, the same fallbacks."""

import numpy as np
import pytest

import fastnn as fnn
import naive
from fastnn.graph import Tensor
from fastnn.kernels import tabular_linear as K
from fastnn.nn import PiecewiseLinearEncoding, TabularMLP, quantile_bins


def groups_of(feature):
    return np.concatenate([[0], np.cumsum(np.bincount(feature))]).astype(np.int64)


def problem(dtype, n=150, seed=0, units=20):
    """Rows of 4 continuous features: below the first edge, above the last, on edges
    exactly, a 0/1 feature (one bin) and a constant one."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)) * 2
    x[:, 2] = rng.integers(0, 2, n)
    x[:, 3] = 5.0
    enc = PiecewiseLinearEncoding(quantile_bins(x[:60], 7, dtype), dtype)
    edges = enc.bins()[0]
    x[::5, 0] = edges[rng.integers(0, len(edges), len(x[::5]))]  # on an edge
    x[1::11, 0] = edges[0] - 3  # below the first edge: the first component negative
    x[2::13, 1] = 1e6  # beyond the last edge: the last component above 1
    x = x.astype(dtype)
    feature, left, width, lower, upper = enc.constants()
    W = rng.standard_normal((len(feature) + 3, units)).astype(dtype)  # + 3 other rows
    bias = rng.standard_normal(units).astype(dtype)
    return x, (groups_of(feature), left, width, lower, upper), W, bias


def forward(fn, x, consts, W, bias):
    gs, left, width, lower, upper = consts
    n_comp = gs[-1]
    prefix = np.empty((n_comp + len(gs) - 1, W.shape[1]), W.dtype)
    K.group_prefix(W[:n_comp], gs, prefix)
    z = np.full((len(x), W.shape[1]), np.nan, W.dtype)
    runs = np.full((len(x), len(gs) - 1), -1, np.int64)
    fracs = np.full((len(x), len(gs) - 1), np.nan, W.dtype)
    ok = fn(x, gs, left, width, lower, upper, prefix, W[:n_comp], bias, z, runs, fracs)
    return ok, z, runs, fracs


@pytest.mark.parametrize("variant", ["serial", "parallel"])
def test_forward_matches_naive(dtype, tol, variant):
    x, consts, W, bias = problem(dtype)
    ok, z, runs, fracs = forward(getattr(K.ple_linear_forward, variant), x, consts, W, bias)
    ref, ref_runs, ref_fracs = naive.ple_linear_forward(x, *consts, W, bias)
    assert ok
    np.testing.assert_allclose(z, ref, **tol)
    if dtype == np.float64:  # (the twin computes the components in float64)
        np.testing.assert_array_equal(runs, ref_runs)
        np.testing.assert_array_equal(fracs, ref_fracs)
    # runs from none (below the first edge) to the whole group (on the last edge)
    assert runs[:, 0].min() == 0 and runs[:, 0].max() >= consts[0][1] - consts[0][0] - 1


@pytest.mark.parametrize("variant", ["serial", "parallel"])
def test_backward_matches_naive(dtype, tol, variant):
    x, consts, W, bias = problem(dtype, n=300)
    _, _, runs, fracs = forward(K.ple_linear_forward.serial, x, consts, W, bias)
    dz = np.random.default_rng(1).standard_normal((len(x), W.shape[1])).astype(dtype)
    n_comp = consts[0][-1]
    dW = np.full(W.shape, 7.0, dtype)  # rows past the components: not the kernel's
    db = np.full(W.shape[1], np.nan, dtype)
    scratch = np.full((n_comp + len(consts[0]) - 1, W.shape[1]), np.nan, dtype)
    getattr(K.ple_linear_backward, variant)(dz, consts[0], runs, fracs, dW, db, scratch)
    ref_dW, ref_db = naive.ple_linear_backward(x, *consts, dz)
    np.testing.assert_allclose(dW[:n_comp], ref_dW, **tol)
    np.testing.assert_allclose(db, ref_db, **tol)
    assert (dW[n_comp:] == 7.0).all()


def test_backward_same_bits_on_one_and_two_threads():
    x, consts, W, bias = problem(np.float32, n=300)
    _, _, runs, fracs = forward(K.ple_linear_forward.serial, x, consts, W, bias)
    dz = np.random.default_rng(1).standard_normal((len(x), W.shape[1])).astype(np.float32)
    n_comp = consts[0][-1]
    outs = []
    for fn in (K.ple_linear_backward.serial, K.ple_linear_backward.parallel):
        dW, db = np.empty(W.shape, np.float32), np.empty(W.shape[1], np.float32)
        scratch = np.empty((n_comp + len(consts[0]) - 1, W.shape[1]), np.float32)
        fn(dz, consts[0], runs, fracs, dW, db, scratch)
        outs.append((dW[:n_comp], db))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_forward_reports_a_nan_feature():
    x, consts, W, bias = problem(np.float32, n=200)
    x[130, 1] = np.nan  # a row in the last chunk of the parallel loop
    for fn in (K.ple_linear_forward.serial, K.ple_linear_forward.parallel):
        assert not forward(fn, x, consts, W, bias)[0]


# ---------------------------------------------------------------- TabularMLP's first layer
def model_and_rows(dtype, ple=True, cardinalities=(4, 30), n=90, hidden=(8, 6)):
    rng = np.random.default_rng(1)
    cont = rng.standard_normal((n, 3)) * 2
    cont[::9, 2] = 1e5
    codes = np.stack([rng.integers(0, v, n) for v in cardinalities], 1) \
        if cardinalities else np.empty((n, 0))
    x = np.hstack([cont, codes]).astype(dtype)
    fnn.manual_seed(3)
    model = TabularMLP(3, list(cardinalities), hidden=hidden, dropout=0.1, dtype=dtype,
                       numeric_bins=quantile_bins(cont[:40], 6, dtype) if ple else None)
    return model, x


def written(model):
    """``model`` forced onto the path that writes the first input."""
    model._first_layer = lambda data: None
    return model


def make_model(case, dtype=np.float64):
    kw = {"plain": dict(ple=False), "no_codes": dict(cardinalities=())}.get(case, {})
    model, x = model_and_rows(dtype, **kw)
    if case == "no_continuous":
        fnn.manual_seed(3)
        model = TabularMLP(0, [4, 30], hidden=(8, 6), dropout=0.1, dtype=dtype)
        x = x[:, 3:]
    return model, x


@pytest.mark.parametrize("case", ["ple", "plain", "no_codes", "no_continuous"])
def test_first_layer_equals_the_written_input_path(case):
    g = None
    results = []
    for path in ("runs", "written"):
        model, x = make_model(case)  # (the same weights and dropout draws on both)
        if g is None:
            g = np.random.default_rng(2).standard_normal((len(x), 1))
        if path == "runs":  # (called directly: forward takes it only with an encoding)
            z = model._first_layer(x)
            assert z is not None
            out = model._after_first_layer()(z)
        else:
            out = written(model)(x)
        (out * Tensor(g)).sum().backward()
        results.append((out.data.copy(),
                        {k: p.grad.copy() for k, p in model.named_parameters()}))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    for k, grad in results[1][1].items():
        scale = max(1.0, np.abs(grad).max())
        np.testing.assert_allclose(results[0][1][k], grad, rtol=0, atol=1e-11 * scale,
                                   err_msg=k)
    assert np.abs(results[0][1]["mlp.0.weight"]).max() > 0
    if case != "no_codes":
        assert np.all(results[0][1]["embeddings.0.weight"][1] == 0)  # padding row


def test_training_steps_match_the_written_input_path():
    # float32, dropout, BatchNorm: both paths train to the same weights (to rounding). SGD:
    # Adam would blow the rounding noise of the first bias's gradient (zero in exact
    # arithmetic: the BatchNorm after it takes out any shift) up to whole steps
    results = []
    for path in ("runs", "written"):
        model, x = model_and_rows(np.float32)
        if path == "written":
            written(model)
        opt = fnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        y = np.linspace(-1, 1, len(x), dtype=np.float32)[:, None]
        for _ in range(3):
            opt.zero_grad()
            loss = fnn.nn.MSELoss()(model(x), y)
            loss.backward()
            opt.step()
        model.eval()
        with fnn.no_grad():
            pred = model(x).data.copy()
        results.append(([p.data.copy() for p in model.parameters()], pred))
    for a, b in zip(results[0][0], results[1][0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-4, atol=1e-4)


def test_gradients_add_up_over_two_backward_calls():
    model, x = model_and_rows(np.float64)
    model.eval()  # no dropout draws: both calls see the same function
    grads = []
    for calls in (1, 2):
        model.zero_grad()
        for _ in range(calls):
            model(x).sum().backward()
        grads.append({k: p.grad.copy() for k, p in model.named_parameters()})
    for k in grads[0]:
        np.testing.assert_allclose(grads[1][k], 2 * grads[0][k], rtol=1e-12, atol=1e-12)


def test_forward_takes_the_runs_only_with_an_encoding():
    for ple in (True, False):
        model, x = model_and_rows(np.float32, ple=ple)
        calls = []
        first_layer = model._first_layer
        model._first_layer = lambda data, calls=calls, first_layer=first_layer: \
            calls.append(1) or first_layer(data)
        model(x)
        assert calls == ([1] if ple else [])


def test_falls_back_to_the_written_input():
    model, x = model_and_rows(np.float32)
    nan_rows = x.copy()
    nan_rows[3, 0] = np.nan
    assert model._first_layer(nan_rows) is None  # a NaN feature
    assert np.isnan(model(nan_rows).data[3]).all()
    bad = x.copy()
    bad[5, 3] = 1.5
    assert model._first_layer(bad) is None
    with pytest.raises(ValueError, match="whole numbers"):
        model(bad)
    seen = []
    handle = model.mlp[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert model._first_layer(x) is None  # a hook sees the first Linear's own call
    model(x)
    assert seen == [(len(x), 8)]
    handle.remove()
    assert model._first_layer(x) is not None
    # edges the runs cannot follow (not increasing): the written input
    enc = model.numeric_encoding
    edges = enc.edges.data if hasattr(enc.edges, "data") else enc.edges
    edges[1], edges[2] = edges[2], edges[1]
    assert model._first_layer(x) is None
