"""fnn.gradcheck itself: it passes right gradients and reports wrong ones clearly."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn.graph import node


def _wrong_square(x):
    """x**2 with a deliberately wrong local gradient (x instead of 2x)."""
    out = node(x.data**2, (x,), "wrong_square")
    if out.requires_grad:
        out.set_backward(lambda g: x.accumulate_grad(g * x.data, owned=True))
    return out


def test_passes_and_reports_per_input_errors():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    report = fnn.gradcheck(lambda a, b: (a * b).sum(), [a, b])
    assert report.ok and bool(report)
    assert len(report.max_rel_error) == 2 and max(report.max_rel_error) < 1e-6
    assert not report.projected


def test_inputs_are_not_modified_and_float32_is_checked_in_float64():
    x = np.linspace(1, 2, 5, dtype=np.float32)
    before = x.copy()
    fnn.gradcheck(lambda x: fnn.exp(x).sum(), [fnn.Tensor(x)])
    np.testing.assert_array_equal(x, before)


def test_wrong_gradient_raises_with_input_element_and_values():
    x = np.array([1.0, 2.0, 3.0])
    with pytest.raises(fnn.GradcheckError) as info:
        fnn.gradcheck(lambda x: _wrong_square(x).sum(), [x])
    msg = str(info.value)
    assert "FAILED" in msg and "input 0" in msg and "index (2,)" in msg
    assert "analytic 3" in msg and "numeric 6" in msg
    assert info.value.report.max_rel_error[0] == pytest.approx(0.5, rel=1e-6)


def test_wrong_gradient_returns_falsy_report_when_asked():
    report = fnn.gradcheck(lambda x: _wrong_square(x).sum(), [np.array([1.0])],
                           raise_exception=False)
    assert not report and len(report.failures) == 1


def test_non_scalar_output_uses_a_projection():
    x = np.random.default_rng(1).standard_normal((4, 3))
    report = fnn.gradcheck(lambda x: fnn.tanh(x) * 2.0, [x])
    assert report.ok and report.projected
    with pytest.raises(fnn.GradcheckError):
        fnn.gradcheck(lambda x: _wrong_square(x), [x])


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        fnn.gradcheck(lambda: None, [])
    with pytest.raises(TypeError, match="Tensor"):
        fnn.gradcheck(lambda x: 1.0, [np.ones(2)])


def test_a_float32_parameter_is_refused_not_checked_as_zero_equals_zero():
    import fastnn as fnn

    layer = fnn.Linear(3, 2)  # float32: a float64 copy of its weight would go unused
    x = np.ones((2, 3))
    with pytest.raises(TypeError, match="input 1 is a float32 Tensor that requires grad"):
        fnn.gradcheck(lambda x, w: layer(x), [x, layer.weight])
    layer.double()
    assert fnn.gradcheck(lambda x, w: layer(x), [x, layer.weight])
