"""backward(retain_graph, create_graph, inputs) with PyTorch's rules, and fnn.autograd."""

import numpy as np
import pytest

import fastnn as fnn
import fastnn.nn.functional as F

FREED = "Trying to backward through the graph a second time"


def _net():
    fnn.manual_seed(0)
    return fnn.nn.Sequential(fnn.nn.Linear(3, 4), fnn.nn.BatchNorm1d(4), fnn.nn.ReLU(),
                             fnn.nn.Linear(4, 2))


@pytest.mark.parametrize("loss_fn", [F.cross_entropy, lambda o, y: F.mse_loss(o[:, 0], y * 1.0)])
def test_fused_layers_and_losses_free_their_graph(loss_fn):
    model = _net()
    x, y = fnn.randn(6, 3), fnn.tensor([0, 1, 0, 1, 1, 0])
    loss = loss_fn(model(x), y)
    loss.backward(retain_graph=True)
    first = model[0].weight.grad.copy()
    loss.backward()  # the retained graph runs again, and accumulates
    np.testing.assert_allclose(model[0].weight.grad, 2 * first, rtol=1e-5)
    with pytest.raises(RuntimeError, match=FREED):
        loss.backward()


def test_a_new_graph_over_a_freed_part_raises_as_pytorch():
    x = fnn.tensor([1.0, 2.0], requires_grad=True)
    h = x * x
    h.sum().backward()
    with pytest.raises(RuntimeError, match=FREED):
        (h * 2).sum().backward()


def test_create_graph_is_not_implemented():
    x = fnn.tensor([1.0], requires_grad=True)
    with pytest.raises(NotImplementedError, match="higher-order"):
        (x * x).sum().backward(create_graph=True)
    with pytest.raises(NotImplementedError):
        fnn.autograd.grad((x * x).sum(), x, create_graph=True)


def test_inputs_limits_accumulation():
    model = _net()
    model(fnn.randn(5, 3)).sum().backward(inputs=[model[3].weight])
    assert model[3].weight.grad is not None
    assert model[0].weight.grad is None and model[3].bias.grad is None


def test_grad_matches_backward_and_touches_no_grad():
    model = _net()
    x = fnn.randn(5, 3, requires_grad=True)
    opt = fnn.optim.SGD(model.parameters(), lr=0.1)  # flat gradient buffers
    loss = model(x).pow(2).sum()
    before = model[0].weight.grad  # the optimizer's zeroed view of its flat buffer
    gw, gx = fnn.autograd.grad(loss, [model[0].weight, x], retain_graph=True)
    assert model[0].weight.grad is before and x.grad is None
    assert before is None or not before.any()
    loss.backward()
    np.testing.assert_allclose(gw, model[0].weight.grad, rtol=1e-5)
    np.testing.assert_allclose(gx, x.grad, rtol=1e-5)
    opt.step()


def test_grad_against_torch():
    torch = pytest.importorskip("torch")
    a = np.array([0.5, -1.0, 2.0])
    xf = fnn.tensor(a, requires_grad=True)
    xt = torch.tensor(a, requires_grad=True)
    (gf,) = fnn.autograd.grad((xf.sin() * xf).sum(), xf)
    (gt,) = torch.autograd.grad((xt.sin() * xt).sum(), xt)
    np.testing.assert_allclose(gf, gt.numpy(), rtol=1e-12)


def test_grad_unused_input():
    x = fnn.tensor([1.0], requires_grad=True)
    z = fnn.tensor([2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="allow_unused=True"):
        fnn.autograd.grad((x * 3).sum(), [x, z])
    gx, gz = fnn.autograd.grad((x * 3).sum(), [x, z], allow_unused=True)
    assert gz is None and gx[0] == 3


def test_autograd_backward_of_several_outputs():
    x = fnn.tensor([1.0, 2.0], requires_grad=True)
    a, b = (x * 2).sum(), (x * x).sum()
    fnn.autograd.backward([a, b])
    np.testing.assert_allclose(x.grad, [4.0, 6.0])


def test_compiled_step_still_equals_the_graph_step():
    model = _net()
    twin = _net()
    x, y = fnn.randn(8, 3), fnn.tensor([0, 1] * 4)
    step = fnn.compile_step(model, F.cross_entropy, fnn.optim.SGD(model.parameters(), lr=0.1))
    opt = fnn.optim.SGD(twin.parameters(), lr=0.1)
    for _ in range(2):
        step(x.data, y.data)
        opt.zero_grad()
        F.cross_entropy(twin(x), y).backward()
        opt.step()
    np.testing.assert_array_equal(model[0].weight.data, twin[0].weight.data)
