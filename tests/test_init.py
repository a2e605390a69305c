"""fastnn/init.py: gains and distributions as torch.nn.init (with the (in, out) layout)."""

import math

import numpy as np
import pytest

import fastnn as fnn
from fastnn import init


def test_gains():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("sigmoid") == 1.0
    with pytest.raises(ValueError, match="Unsupported"):
        init.calculate_gain("softmax")


@pytest.mark.parametrize(
    "fn,expected_std",
    [(lambda w: init.xavier_uniform_(w), math.sqrt(2 / (600 + 300))),
     (lambda w: init.xavier_normal_(w, gain=2.0), 2 * math.sqrt(2 / (600 + 300))),
     (lambda w: init.kaiming_uniform_(w, nonlinearity="relu"), math.sqrt(2 / 600)),
     (lambda w: init.kaiming_normal_(w, nonlinearity="relu"), math.sqrt(2 / 600)),
     (lambda w: init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"), math.sqrt(2 / 300)),
     (lambda w: init.normal_(w, 0.0, 0.1), 0.1)],
)
def test_distributions(fn, expected_std):
    fnn.manual_seed(0)
    w = fnn.Parameter(np.empty((600, 300), np.float64))  # (fan_in, fan_out)
    assert fn(w) is w
    assert w.data.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(w.data.mean()) < 0.05 * expected_std + 1e-3


def test_fills_and_arrays():
    a = np.empty((3, 2))
    init.constant_(a, 0.5)
    assert (a == 0.5).all()
    init.zeros_(a)
    assert (a == 0).all()
    init.ones_(a)
    assert (a == 1).all()
    with pytest.raises(ValueError, match="2 dimensions"):
        init.xavier_uniform_(np.empty(3))
    with pytest.raises(TypeError):
        init.zeros_([1, 2])


def test_manual_seed_reproduces_models():
    fnn.manual_seed(7)
    a = fnn.Linear(5, 4).weight.data.copy()
    fnn.manual_seed(7)
    np.testing.assert_array_equal(fnn.Linear(5, 4).weight.data, a)
    with pytest.raises(ValueError):
        fnn.manual_seed(-1)


# ------------------------------------------- orthogonal_, trunc_normal_, eye_, dirac_, sparse_
@pytest.mark.parametrize("shape", [(6, 3), (3, 6), (4, 4)])
def test_orthogonal_is_torch_transposed(shape):
    w = np.empty(shape)
    init.orthogonal_(w, gain=2.0, generator=fnn.Generator().manual_seed(0))
    small = min(shape)
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-10)
    torch = pytest.importorskip("torch")
    t = torch.empty(shape[1], shape[0], dtype=torch.float64)  # PyTorch's (out, in)
    torch.nn.init.orthogonal_(t, gain=2.0)
    tg = t.T.numpy()
    tgram = tg.T @ tg if shape[0] >= shape[1] else tg @ tg.T
    np.testing.assert_allclose(tgram, gram, atol=1e-10)  # the same structure


def test_trunc_normal_moments_against_the_truncated_normal():
    from scipy import stats

    w = np.empty((400, 250))
    init.trunc_normal_(w, mean=0.5, std=1.0, a=-0.5, b=2.0,
                       generator=fnn.Generator().manual_seed(1))
    ref = stats.truncnorm(-1.0, 1.5, loc=0.5, scale=1.0)
    assert w.min() >= -0.5 and w.max() <= 2.0
    assert abs(w.mean() - ref.mean()) < 0.01 and abs(w.std() - ref.std()) < 0.01
    with pytest.raises(ValueError):
        init.trunc_normal_(w, a=1.0, b=0.0)


def test_eye_and_dirac_equal_torch_in_the_layer_layout():
    w = np.empty((3, 5))
    init.eye_(w)
    np.testing.assert_array_equal(w, np.eye(3, 5))
    torch = pytest.importorskip("torch")
    t = torch.empty(5, 3)
    torch.nn.init.eye_(t)
    np.testing.assert_array_equal(w, t.T.numpy())  # y = x @ W equals PyTorch's x @ W_t.T
    for shape, groups in [((4, 2, 3), 2), ((6, 3, 3, 3), 1), ((2, 2, 1, 3, 3), 1)]:
        d = np.empty(shape)
        init.dirac_(d, groups)
        td = torch.empty(shape)
        torch.nn.init.dirac_(td, groups)
        np.testing.assert_array_equal(d, td.numpy())
    with pytest.raises(ValueError, match="3, 4, or 5"):
        init.dirac_(np.empty((2, 2)))


def test_sparse_zeros_per_input_as_torch_per_column():
    w = np.empty((7, 10))  # (in, out)
    init.sparse_(w, sparsity=0.3, std=0.02, generator=fnn.Generator().manual_seed(2))
    assert ((w == 0).sum(axis=1) == 3).all()  # ceil(0.3 * out) zeros per input
    torch = pytest.importorskip("torch")
    t = torch.empty(10, 7)  # PyTorch's (out, in)
    torch.nn.init.sparse_(t, sparsity=0.3)
    assert ((t == 0).sum(dim=0) == 3).all()
