"""kernels/tabular_input.py (the first Linear's input of TabularMLP in one pass) against
tests/naive.py, and TabularMLP's fused path against its graph path (embedding nodes + cat):
the same bits forward, the same embedding gradients backward, the same errors."""

import numpy as np
import pytest

import fastnn as fnn
import naive
from fastnn.graph import Tensor
from fastnn.kernels import tabular_input as K_in
from fastnn.nn import TabularMLP, quantile_bins


def problem(dtype, n=150, seed=0):
    rng = np.random.default_rng(seed)
    cont = rng.standard_normal((n, 3)) * 2
    cont[::7, 1] = 1e6  # beyond the last edge: not clipped from above
    codes = np.stack([rng.integers(0, v, n) for v in (4, 700)], 1)
    x = np.hstack([cont, codes]).astype(dtype)
    enc = fnn.nn.PiecewiseLinearEncoding(quantile_bins(cont[:40], 6, dtype), dtype)
    tables = tuple(rng.standard_normal((v, d)).astype(dtype) for v, d in ((4, 2), (700, 5)))
    return x, enc, tables


@pytest.mark.parametrize("variant", ["serial", "parallel"])
def test_kernel_matches_naive(dtype, variant):
    x, enc, tables = problem(dtype)
    feature, left, width, lower, upper = enc.constants()
    t = len(feature)
    offsets = np.array([t, t + 2], np.int64)
    out = np.full((len(x), t + 7), np.nan, dtype)
    codes = np.full((2, len(x)), -5, np.int64)
    ok = getattr(K_in.tabular_input_forward, variant)(x, 3, feature, left, width, lower, upper,
                                                     tables, offsets, codes, out)
    ref, ref_codes = naive.tabular_input_forward(x, 3, feature, left, width, lower, upper,
                                                 tables, dtype)
    assert ok
    np.testing.assert_array_equal(out, ref)  # the same operations in the same dtype: exact
    np.testing.assert_array_equal(codes, ref_codes)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 2.5, -1.0, 4.0])
def test_kernel_reports_a_bad_code(bad):
    x, enc, tables = problem(np.float32, n=200)
    x[130, 3] = bad  # a row in the last chunk of the parallel loop
    feature, left, width, lower, upper = enc.constants()
    t = len(feature)
    out = np.empty((len(x), t + 7), np.float32)
    codes = np.empty((2, len(x)), np.int64)
    for fn in (K_in.tabular_input_forward.serial, K_in.tabular_input_forward.parallel):
        assert not fn(x, 3, feature, left, width, lower, upper, tables,
                      np.array([t, t + 2], np.int64), codes, out)


def model_and_rows(dtype, ple):
    x, enc, _ = problem(dtype, n=90, seed=1)
    fnn.manual_seed(3)
    model = TabularMLP(3, [4, 700], hidden=(8,), dropout=0.1, dtype=dtype,
                       numeric_bins=enc.bins() if ple else None)
    return model, x


@pytest.mark.parametrize("ple", [True, False], ids=["ple", "plain"])
def test_fused_input_equals_the_graph_path_forward_and_backward(dtype, ple):
    model, x = model_and_rows(dtype, ple)
    fused = model._first_input(x)
    graph = model._first_input_graph(x, x)
    np.testing.assert_array_equal(fused.data, graph.data)
    g = np.random.default_rng(2).standard_normal(fused.shape).astype(dtype)
    grads = []
    for out in (fused, graph):
        for emb in model.embeddings:
            emb.weight.grad = None
        (out * Tensor(g)).sum().backward()
        grads.append([emb.weight.grad.copy() for emb in model.embeddings])
    for a, b in zip(*grads, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.all(grads[0][1][1] == 0)  # the padding row (code 1) gets no gradient


def test_a_whole_training_step_is_the_same_on_both_paths():
    # the fused path against the graph path through the whole model: forward, backward and
    # Adam, with dropout (the same draws: one key per call on both paths)
    results = []
    for fused in (True, False):
        model, x = model_and_rows(np.float32, True)
        model._first_layer = lambda data: None  # (the first layer from runs: its own tests)
        if not fused:
            model._first_input = lambda data: None  # the graph path only
        opt = fnn.optim.Adam(model.parameters(), lr=1e-2)
        y = np.linspace(-1, 1, len(x), dtype=np.float32)[:, None]
        for _ in range(2):
            opt.zero_grad()
            loss = fnn.nn.MSELoss()(model(x), y)
            loss.backward()
            opt.step()
        results.append([p.data.copy() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_codes_raise_the_graph_paths_errors():
    model, x = model_and_rows(np.float32, True)
    x[5, 3] = 1.5
    with pytest.raises(ValueError, match="whole numbers"):
        model(x)
    x[5, 3] = 4
    with pytest.raises(ValueError, match="out of range"):
        model(x)
