"""fastnn.nn.PiecewiseLinearEncoding and quantile_bins (Gorishniy et al. 2022) against float64
NumPy formulas and centred differences; a TabularMLP with it, through a state dict."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn.graph import Tensor
from fastnn.nn import PiecewiseLinearEncoding, TabularMLP, quantile_bins


def _ple_reference(x, bins):
    """Equation 1 of the paper, written per value: inside ``[b_0, b_T]`` the components of
    a value in bin t are 1 before t, the fraction in t, 0 after; outside, the first (left)
    or last (right) component extrapolates linearly; a single bin is linear everywhere."""
    out = []
    for j, b in enumerate(bins):
        b = np.asarray(b, np.float64)
        T = len(b) - 1
        for t in range(T):
            col = np.empty(len(x))
            for i, v in enumerate(x[:, j]):
                frac = (v - b[t]) / (b[t + 1] - b[t])
                if T == 1 or (t == 0 and v < b[0]) or (t == T - 1 and v > b[T]):
                    col[i] = frac  # the linear ends
                elif v >= b[t + 1]:
                    col[i] = 1.0
                elif v <= b[t]:
                    col[i] = 0.0
                else:
                    col[i] = frac
            out.append(col)
    return np.stack(out, axis=1)


def test_quantile_bins_dedupe_and_match_numpy_quantiles():
    rng = np.random.default_rng(0)
    n = 1000
    X = np.stack([rng.normal(size=n), (rng.random(n) < 0.3).astype(float),
                  rng.integers(0, 3, n).astype(float), np.full(n, 2.5)], axis=1)
    X[5, 0] = np.nan  # a blank is ignored
    bins = quantile_bins(X, 8)
    col = X[:, 0][~np.isnan(X[:, 0])]
    np.testing.assert_allclose(bins[0], np.quantile(col, np.linspace(0, 1, 9)))
    np.testing.assert_array_equal(bins[1], [0.0, 1.0])  # an indicator: one bin
    np.testing.assert_array_equal(bins[2], [0.0, 1.0, 2.0])  # three values: two bins
    np.testing.assert_array_equal(bins[3], [2.5, 5.0])  # a constant: one bin of width |v|
    b32 = quantile_bins(X, 48, dtype=np.float32)
    assert all(b.dtype == np.float32 and np.all(np.diff(b) > 0) for b in b32)
    with pytest.raises(ValueError, match="n_bins"):
        quantile_bins(X, 0)
    with pytest.raises(ValueError, match="no finite value"):
        quantile_bins(np.full((3, 1), np.nan))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_the_formula_and_reconstructs_x(dtype):
    rng = np.random.default_rng(1)
    train = np.stack([rng.gamma(2.0, 1.0, 500), rng.integers(0, 2, 500)], axis=1)
    bins = quantile_bins(train, 6, dtype=dtype)
    ple = PiecewiseLinearEncoding(bins, dtype=dtype)
    assert ple.n_bins == [6, 1] and ple.out_features == 7
    # values inside, on the edges, left of the first and right of the last
    x = np.concatenate([rng.gamma(2.0, 1.0, (40, 1)), rng.integers(0, 2, (40, 1))], axis=1)
    x = np.concatenate([x, [[bins[0][0] - 3.0, -1.0], [bins[0][-1] + 5.0, 2.0],
                            [bins[0][2], 0.0]]]).astype(dtype)
    got = ple(x)
    assert isinstance(got, Tensor) and got.dtype == dtype and got.shape == (43, 7)
    want = _ple_reference(x.astype(np.float64), [np.asarray(b, np.float64) for b in bins])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got.data, want, rtol=tol, atol=tol)
    # b_0 + sum_t width_t * e_t(x) = x, extrapolation included
    for j, b in enumerate(ple.bins()):
        sl = slice(sum(ple.n_bins[:j]), sum(ple.n_bins[:j + 1]))
        recon = b[0] + got.data[:, sl].astype(np.float64) @ np.diff(b).astype(np.float64)
        np.testing.assert_allclose(recon, x[:, j], rtol=tol * 10, atol=tol * 10)
    # the graph path (an input that wants a gradient) gives the same values
    xt = fnn.tensor(x, requires_grad=True)
    np.testing.assert_allclose(ple(xt).data, got.data, rtol=tol, atol=tol)


def test_gradient_against_centred_differences():
    rng = np.random.default_rng(2)
    bins = [np.array([-1.0, -0.2, 0.5, 1.5]), np.array([0.0, 2.0])]
    ple = PiecewiseLinearEncoding(bins, dtype=np.float64)
    # away from the edges (the encoding has kinks there); outside the range too
    x = np.array([[-0.6, 0.3], [0.1, 1.1], [1.0, -0.5], [-2.0, 3.0], [2.5, 0.9]])
    w = rng.normal(size=(len(x), 4))
    xt = fnn.tensor(x, dtype="float64", requires_grad=True)
    (ple(xt) * fnn.tensor(w)).sum().backward()
    eps = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        hi, lo = x.copy(), x.copy()
        hi[idx] += eps
        lo[idx] -= eps
        num[idx] = ((_ple_reference(hi, bins) - _ple_reference(lo, bins)) * w).sum() / (2 * eps)
    np.testing.assert_allclose(xt.grad, num, rtol=1e-6, atol=1e-8)


def test_bad_bins_and_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"bins\[0\]"):
        PiecewiseLinearEncoding([np.array([0.0, 0.0, 1.0])])
    with pytest.raises(ValueError, match=r"bins\[1\]"):
        PiecewiseLinearEncoding([np.array([0.0, 1.0]), np.array([3.0])])
    with pytest.raises(ValueError, match="non-empty list"):
        PiecewiseLinearEncoding([])
    ple = PiecewiseLinearEncoding([np.array([0.0, 1.0, 2.0])])
    with pytest.raises(ValueError, match=r"shape \(N, 1\)"):
        ple(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="numeric_bins"):
        TabularMLP(2, [4], numeric_bins=[np.array([0.0, 1.0])])


def test_tabular_mlp_with_ple_state_dict_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    x_cont = rng.normal(size=(30, 3))
    bins = quantile_bins(x_cont, 5, dtype=np.float32)
    fnn.manual_seed(0)
    a = TabularMLP(3, [4], hidden=[8], out_features=2, numeric_bins=bins)
    assert a.mlp[0].in_features == sum(len(b) - 1 for b in bins) + a.embedding_dims[0]
    x = np.concatenate([x_cont, rng.integers(0, 4, (30, 1))], axis=1).astype(np.float32)
    a.eval()
    want = a(x).data
    state = a.state_dict()
    assert "numeric_encoding.edges" in state
    # rebuilt from the bin counts (placeholder edges), then the state: the same outputs
    b = TabularMLP(3, [4], hidden=[8], out_features=2, numeric_bins=[len(e) - 1 for e in bins])
    b.load_state_dict(state)
    b.eval()
    np.testing.assert_array_equal(b(x).data, want)
    # safetensors carries the edges
    pytest.importorskip("safetensors")
    fnn.save_safetensors(a, tmp_path / "t.safetensors")
    c = fnn.load_safetensors(tmp_path / "t.safetensors", model=TabularMLP(
        3, [4], hidden=[8], out_features=2, numeric_bins=[len(e) - 1 for e in bins]))
    c.eval()
    np.testing.assert_array_equal(c(x).data, want)
    # no categorical columns: the encoding still applies
    d = TabularMLP(3, [], hidden=[8], out_features=1, numeric_bins=bins)
    assert d(x[:, :3]).shape == (30, 1)
