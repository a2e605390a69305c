"""kernels.chain.dense_chain_step: the calls of the layers one by one, in one call."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn.kernels import chain as K_chain
from fastnn.kernels import dense as K_dense
from fastnn.kernels import losses as K_loss


def plan(dtype, n, widths=(40, 64, 32, 5), acts=("relu", "tanh")):
    fnn.manual_seed(0)
    layers = [fnn.Linear(a, b, activation=act, bias=i != 1, dtype=dtype)
              for i, (a, b, act) in enumerate(zip(widths[:-1], widths[1:], (*acts, None),
                                                  strict=True))]
    model = fnn.Sequential(*layers)
    step = fnn.compile_step(model, fnn.losses.cross_entropy, fnn.optim.SGD(model.parameters()))
    buffers, loss_buffers, chain, _ = step._plan((n, widths[0]))
    return buffers, loss_buffers, chain


def one_by_one(x, labels, fwd, bwd, dlogits, partial, loss_parallel):
    """The twin: planned_forward per layer, the loss kernel, planned_backward per layer."""
    h = x
    inputs = []
    for W, b, code, alpha, y, d, part, parts, pp, ps in fwd:
        inputs.append(h)
        K_dense.planned_forward(h, W, b, code, alpha, y, d, part, parts, pp, ps)
        h = y
    ce = K_loss.softmax_cross_entropy.parallel if loss_parallel \
        else K_loss.softmax_cross_entropy.serial
    bad, total = ce(h, labels, dlogits, partial)
    value = float(x.dtype.type(total / x.shape[0]))
    g = dlogits
    for i in range(len(fwd) - 1, -1, -1):
        K_dense.planned_backward(g, fwd[i][5], inputs[i], fwd[i][0], *bwd[i])
        g = bwd[i][2]
    return bad, value


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [7, 200])
def test_the_chain_makes_the_calls_of_the_layers_one_by_one(dtype, n):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 40)).astype(dtype)
    labels = rng.integers(0, 5, n)
    a, b = plan(dtype, n), plan(dtype, n)
    got = K_chain.dense_chain_step(x, labels, b[2][0], b[2][1], b[1].grad, b[1].partial,
                                   b[2][2])
    want = one_by_one(x, labels, a[2][0], a[2][1], a[1].grad, a[1].partial, a[2][2])
    assert got == want and got[0] == -1
    for fa, fb in zip(a[2][0], b[2][0], strict=True):  # outputs and local gradients
        np.testing.assert_array_equal(fa[4], fb[4])
        np.testing.assert_array_equal(fa[5], fb[5])
    for ba, bb in zip(a[2][1], b[2][1], strict=True):  # dx, dW, db
        for k in (2, 3, 4):
            np.testing.assert_array_equal(ba[k], bb[k])


def test_a_bad_label_or_a_non_finite_loss_stops_before_the_backward():
    n = 16
    x = np.random.default_rng(2).standard_normal((n, 40)).astype(np.float32)
    labels = np.arange(n) % 5
    _, loss_buffers, (fwd, bwd, par) = plan(np.float32, n)
    for W_grad in (b[3] for b in bwd):
        W_grad[...] = 7.0
    bad_labels = labels.copy()
    bad_labels[9] = 5
    assert K_chain.dense_chain_step(x, bad_labels, fwd, bwd, loss_buffers.grad,
                                    loss_buffers.partial, par)[0] == 9
    x[3, 0] = np.nan
    bad, value = K_chain.dense_chain_step(x, labels, fwd, bwd, loss_buffers.grad,
                                          loss_buffers.partial, par)
    assert bad == -1 and np.isnan(value)
    for b in bwd:
        assert (b[3] == 7.0).all()  # no dW written
