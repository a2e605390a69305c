"""Number-for-number agreement with PyTorch (skipped when torch is not installed).

torch is an optional test dependency: `.ci/run` installs the local CPU wheel when the machine
has it (never through uv's resolver, which would fetch a CUDA build).
"""

import numpy as np
import pytest

import fastnn as fnn
from fastnn import losses as L

torch = pytest.importorskip("torch")
F = torch.nn.functional

ACTS = {
    "relu": (fnn.ReLU, torch.nn.ReLU), "leaky": (lambda: fnn.LeakyReLU(0.1),
                                                 lambda: torch.nn.LeakyReLU(0.1)),
    "elu": (lambda: fnn.ELU(0.7), lambda: torch.nn.ELU(0.7)),
    "sigmoid": (fnn.Sigmoid, torch.nn.Sigmoid), "tanh": (fnn.Tanh, torch.nn.Tanh),
    "gelu": (fnn.GELU, torch.nn.GELU),
    "gelu_tanh": (lambda: fnn.GELU("tanh"), lambda: torch.nn.GELU(approximate="tanh")),
    "silu": (fnn.SiLU, torch.nn.SiLU),
}


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def tt(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("name", list(ACTS))
def test_linear_plus_activation_matches_torch(name):
    ours_act, torch_act = ACTS[name]
    model = fnn.Sequential(fnn.Linear(6, 5, dtype=np.float64), ours_act())
    ref = torch.nn.Sequential(torch.nn.Linear(6, 5).double(), torch_act())
    with torch.no_grad():
        ref[0].weight.copy_(torch.from_numpy(model[0].weight.data.T.copy()))
        ref[0].bias.copy_(torch.from_numpy(model[0].bias.data))
    x = rand(7, 6)
    xt, xr = fnn.Tensor(x, requires_grad=True), tt(x)
    y, yr = model(xt), ref(xr)
    np.testing.assert_allclose(y.data, yr.detach().numpy(), rtol=1e-12, atol=1e-14)
    g = rand(7, 5, seed=1)
    y.backward(g)
    yr.backward(torch.from_numpy(g))
    np.testing.assert_allclose(xt.grad, xr.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(model[0].weight.grad, ref[0].weight.grad.numpy().T, rtol=1e-11,
                               atol=1e-13)
    np.testing.assert_allclose(model[0].bias.grad, ref[0].bias.grad.numpy(), rtol=1e-11,
                               atol=1e-13)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_matches_torch_over_steps_and_in_eval(momentum):
    ours = fnn.Sequential(fnn.BatchNorm1d(4, momentum=momentum, dtype=np.float64), fnn.ReLU())
    ref = torch.nn.Sequential(torch.nn.BatchNorm1d(4, momentum=momentum).double(),
                              torch.nn.ReLU())
    with torch.no_grad():
        ref[0].weight.copy_(torch.tensor([0.5, 1.0, 2.0, -1.0], dtype=torch.float64))
        ref[0].bias.copy_(torch.tensor([0.0, 0.1, -0.3, 0.2], dtype=torch.float64))
    ours[0].weight.data[:] = [0.5, 1.0, 2.0, -1.0]
    ours[0].bias.data[:] = [0.0, 0.1, -0.3, 0.2]
    for step in range(3):
        x = rand(9, 4, seed=step) * 2 + step
        xt, xr = fnn.Tensor(x, requires_grad=True), tt(x)
        y, yr = ours(xt), ref(xr)
        np.testing.assert_allclose(y.data, yr.detach().numpy(), rtol=1e-11, atol=1e-13)
        g = rand(9, 4, seed=10 + step)
        y.backward(g)
        yr.backward(torch.from_numpy(g))
        np.testing.assert_allclose(xt.grad, xr.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours[0].weight.grad, ref[0].weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(ours[0].bias.grad, ref[0].bias.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(ours[0].running_mean, ref[0].running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours[0].running_var, ref[0].running_var.numpy(), rtol=1e-12)
    assert int(ours[0].num_batches_tracked) == int(ref[0].num_batches_tracked)
    ours.eval()
    ref.eval()
    x = rand(3, 4, seed=99)
    np.testing.assert_allclose(ours(x).data, ref(tt(x)).detach().numpy(), rtol=1e-12)


def test_prelu_matches_torch():
    for num in (1, 3):
        ours, ref = fnn.PReLU(num, dtype=np.float64), torch.nn.PReLU(num).double()
        x = rand(5, 3, seed=num)
        xt, xr = fnn.Tensor(x, requires_grad=True), tt(x)
        y, yr = ours(xt), ref(xr)
        np.testing.assert_allclose(y.data, yr.detach().numpy(), rtol=1e-13)
        g = rand(5, 3, seed=7)
        y.backward(g)
        yr.backward(torch.from_numpy(g))
        np.testing.assert_allclose(xt.grad, xr.grad.numpy(), rtol=1e-13)
        np.testing.assert_allclose(ours.weight.grad, ref.weight.grad.numpy(), rtol=1e-12)


def test_losses_match_torch():
    z, y = rand(8, 5) * 4, np.array([0, 1, 2, 3, 4, 0, 1, 2])
    for ours, theirs in ((L.cross_entropy(fnn.Tensor(z, requires_grad=True), y),
                          F.cross_entropy(tt(z), torch.from_numpy(y))),):
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    t = rand(8, 5, seed=1)
    assert L.mse_loss(z, t).item() == pytest.approx(
        F.mse_loss(tt(z), torch.from_numpy(t)).item(), rel=1e-12)
    tb = (t > 0) * 1.0
    assert L.binary_cross_entropy_with_logits(z, tb).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(tt(z), torch.from_numpy(tb)).item(), rel=1e-12)
    # torch's multi_margin_loss also divides by the number of classes C.
    assert L.multiclass_hinge(z, y).item() == pytest.approx(
        5 * F.multi_margin_loss(tt(z), torch.from_numpy(y)).item(), rel=1e-12)


def test_default_linear_init_distribution_matches_torch():
    fnn.manual_seed(0)
    torch.manual_seed(0)
    ours = fnn.Linear(300, 200, dtype=np.float64).weight.data
    theirs = torch.nn.Linear(300, 200).weight.detach().numpy()
    assert ours.std() == pytest.approx(theirs.std(), rel=0.02)
    assert np.abs(ours).max() == pytest.approx(np.abs(theirs).max(), rel=0.01)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_fan_matches_torch_for_transposed_layout(mode):
    ours = np.empty((300, 100))  # (in, out)
    fnn.init.kaiming_normal_(ours, mode=mode, nonlinearity="relu")
    theirs = torch.empty(100, 300)  # (out, in)
    torch.nn.init.kaiming_normal_(theirs, mode=mode, nonlinearity="relu")
    assert ours.std() == pytest.approx(theirs.std().item(), rel=0.03)


OPTIMIZERS = [
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=1e-3, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=1e-3)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
]


@pytest.mark.parametrize("name,hp", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in
                                                     enumerate(OPTIMIZERS)])
def test_optimizers_match_torch_over_30_steps(name, hp):
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3,), (5,)]
    init = [rng.standard_normal(s) for s in shapes]
    ours = [fnn.Parameter(a.copy()) for a in init]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt = getattr(fnn.optim, name)(ours, **hp)
    ref = getattr(torch.optim, name)(theirs, **hp, foreach=False)
    for _ in range(30):
        grads = [rng.standard_normal(s) for s in shapes]
        for p, g in zip(ours, grads, strict=True):
            p.grad[...] = g
        for t, g in zip(theirs, grads, strict=True):
            t.grad = torch.from_numpy(g.copy())
        opt.step()
        ref.step()
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_schedules_match_torch():
    def pair(make_ours, make_theirs, epochs=30):
        o = fnn.optim.SGD(fnn.Linear(2, 2).parameters(), lr=0.1)
        t = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        so, st = make_ours(o), make_theirs(t)
        a, b = [], []
        for _ in range(epochs):
            a.append(o.param_groups[0]["lr"])
            b.append(t.param_groups[0]["lr"])
            o.step()
            t.step()
            so.step()
            st.step()
        np.testing.assert_allclose(a, b, rtol=1e-9)

    S, T = fnn.optim.lr_scheduler, torch.optim.lr_scheduler
    pair(lambda o: S.StepLR(o, 4, 0.5), lambda t: T.StepLR(t, 4, 0.5))
    pair(lambda o: S.ExponentialLR(o, 0.9), lambda t: T.ExponentialLR(t, 0.9))
    pair(lambda o: S.CosineAnnealingLR(o, 10, 0.001), lambda t: T.CosineAnnealingLR(t, 10, 0.001))
    pair(lambda o: S.LinearLR(o, 0.2, 1.0, 6), lambda t: T.LinearLR(t, 0.2, 1.0, 6))


def test_reduce_on_plateau_matches_torch():
    o = fnn.optim.SGD(fnn.Linear(2, 2).parameters(), lr=0.1)
    t = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    so = fnn.optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=2, cooldown=1)
    st = torch.optim.lr_scheduler.ReduceLROnPlateau(t, factor=0.5, patience=2, cooldown=1)
    metrics = np.random.default_rng(0).uniform(0.5, 1.0, 40).cumsum()[::-1] % 1.3
    for m in metrics:
        so.step(m)
        st.step(m)
        assert o.param_groups[0]["lr"] == pytest.approx(t.param_groups[0]["lr"])


def test_batchnorm_three_dimensional_matches_torch():
    x = rand(4, 3, 5, seed=3)
    ours, ref = fnn.BatchNorm1d(3, dtype=np.float64), torch.nn.BatchNorm1d(3).double()
    xt, xr = fnn.Tensor(x, requires_grad=True), tt(x)
    y, yr = ours(xt), ref(xr)
    np.testing.assert_allclose(y.data, yr.detach().numpy(), rtol=1e-12, atol=1e-13)
    g = rand(4, 3, 5, seed=4)
    y.backward(g)
    yr.backward(torch.from_numpy(g))
    np.testing.assert_allclose(xt.grad, xr.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ours.running_var, ref.running_var.numpy(), rtol=1e-12)
