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
