"""The optimizers' PyTorch surface: ``step(closure)``, ``add_param_group``, ``state_dict`` in
PyTorch's structure (both ways between fastnn and torch), ``zero_grad(set_to_none)`` with
the flat buffers, and gradient clipping against torch.nn.utils."""

import json

import numpy as np
import pytest

import fastnn as fnn
from fastnn import optim
from fastnn.optim.optimizers import _covering_buffers


def make_model(seed=0):
    fnn.manual_seed(seed)
    return fnn.Sequential(fnn.Linear(5, 8, dtype=np.float64), fnn.Tanh(),
                          fnn.Linear(8, 3, dtype=np.float64))


def data(steps=4, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((12, 5)), rng.integers(0, 3, 12)) for _ in range(steps)]


# ---------------------------------------------------------------------------- closure
def test_step_with_a_closure_returns_its_loss_and_trains_as_the_plain_loop():
    a, b = make_model(), make_model()
    opt_a = optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    opt_b = optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    for x, y in data():
        def closure(x=x, y=y):
            opt_a.zero_grad()
            loss = fnn.losses.cross_entropy(a(x), y)
            loss.backward()
            return loss

        with fnn.no_grad():  # step() evaluates the closure with recording on, as PyTorch
            loss_a = opt_a.step(closure)
        opt_b.zero_grad()
        loss_b = fnn.losses.cross_entropy(b(x), y)
        loss_b.backward()
        assert opt_b.step() is None
        assert loss_a.item() == loss_b.item()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(pa.data, pb.data)


# ---------------------------------------------------------------------------- groups
def test_add_param_group_fills_defaults_and_refuses_a_parameter_twice():
    model = make_model()
    first, second = model[0], model[2]
    opt = optim.Adam(first.parameters(), lr=1e-3, betas=(0.8, 0.9), weight_decay=0.1)
    opt.add_param_group({"params": second.weight, "lr": 0.05})
    g = opt.param_groups[1]
    assert g["lr"] == 0.05 and g["betas"] == (0.8, 0.9) and g["weight_decay"] == 0.1
    assert g["params"] == [second.weight]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [second.bias, first.weight]})
    assert len(opt.param_groups) == 2  # the refused group left nothing behind
    with pytest.raises(ValueError, match="unknown options"):
        opt.add_param_group({"params": [second.bias], "momentum": 0.9})
    with pytest.raises(TypeError, match="ordered collections"):
        opt.add_param_group({"params": {second.bias}})
    with pytest.raises(TypeError, match="dict"):
        opt.add_param_group([second.bias])


def test_a_group_added_while_training_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3,), (3, 2)]
    init = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(8)]
    ours = [fnn.nn.Parameter(v.copy()) for v in init]
    theirs = [torch.tensor(v, requires_grad=True) for v in init]
    o = optim.Adam(ours[:2], lr=0.01, weight_decay=0.1, amsgrad=True)
    t = torch.optim.Adam(theirs[:2], lr=0.01, weight_decay=0.1, amsgrad=True)
    for i, gs in enumerate(grads):
        if i == 3:  # unfreeze the last one with its own lr
            o.add_param_group({"params": [ours[2]], "lr": 0.05, "betas": (0.5, 0.9)})
            t.add_param_group({"params": [theirs[2]], "lr": 0.05, "betas": (0.5, 0.9)})
        for p, q, g in zip(ours, theirs, gs, strict=True):
            p.grad, q.grad = g.copy(), torch.tensor(g)
        if i < 3:  # not in the optimizer yet: its gradient is left as it is
            ours[2].grad = theirs[2].grad = None
        o.step()
        t.step()
        for p, q in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-12, atol=1e-15)
    assert all(np.shares_memory(p.data, o.flat_buffers[0].data) for p in ours)


# ---------------------------------------------------------------------------- state dicts
def torch_case(torch, name):
    return {
        "sgd": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True,
                                                 weight_decay=1e-2)),
        "sgd-damp": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.5, dampening=0.2)),
        "adam": (optim.Adam, torch.optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=1e-3)),
        "adamw": (optim.AdamW, torch.optim.AdamW, dict(lr=0.01, betas=(0.8, 0.95))),
        "rmsprop": (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01, momentum=0.5,
                                                             centered=True)),
        "adagrad": (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.01,
                                                             initial_accumulator_value=0.1)),
    }[name]


def as_numpy(sd):
    """A torch optimizer's state dict with its tensors as arrays (``t.numpy()``)."""
    conv = lambda v: v.numpy() if hasattr(v, "numpy") else v  # noqa: E731
    return {"state": {k: {n: conv(v) for n, v in s.items()} for k, s in sd["state"].items()},
            "param_groups": [dict(g) for g in sd["param_groups"]]}


def as_torch(torch, sd):
    conv = lambda v: torch.tensor(v) if isinstance(v, (np.ndarray, float)) else v  # noqa: E731
    return {"state": {k: {n: conv(v) for n, v in s.items()} for k, s in sd["state"].items()},
            "param_groups": sd["param_groups"]}


@pytest.mark.parametrize("name", ["sgd", "sgd-damp", "adam", "adamw", "rmsprop", "adagrad"])
def test_state_dicts_cross_between_torch_and_fastnn(name):
    """torch runs 3 steps; its state dict (as arrays) loads into fastnn, which runs 3 more
    beside torch; fastnn's state dict then loads into a new torch optimizer, and the two
    run 3 more: the parameters agree throughout."""
    torch = pytest.importorskip("torch")
    ours_cls, theirs_cls, hp = torch_case(torch, name)
    rng = np.random.default_rng(3)
    shapes = [(4, 3), (3,), (2, 2)]
    init = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(9)]
    theirs = [torch.tensor(v, requires_grad=True) for v in init]
    groups = lambda ps: [{"params": ps[:1]}, {"params": ps[1:], "lr": hp["lr"] / 2}]  # noqa
    t = theirs_cls(groups(theirs), **hp)

    def run(opt, params, gs, to):
        for p, g in zip(params, gs, strict=True):
            p.grad = to(g)
        opt.step()

    for gs in grads[:3]:
        run(t, theirs, gs, lambda g: torch.tensor(g))
    ours = [fnn.nn.Parameter(q.detach().numpy().copy()) for q in theirs]
    o = ours_cls(groups(ours), **hp)
    saved = as_numpy(t.state_dict())
    o.load_state_dict(json.loads(json.dumps(saved, default=lambda a: a.tolist()))
                      if name == "sgd" else saved)  # through JSON too: lists for arrays
    for gs in grads[3:6]:
        run(t, theirs, gs, lambda g: torch.tensor(g))
        run(o, ours, gs, np.copy)
        for p, q in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-12, atol=1e-15)
    sd = o.state_dict()
    assert sorted(sd) == ["param_groups", "state"] and sorted(sd["state"]) == [0, 1, 2]
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1, 2]]
    theirs_sd = t.state_dict()
    for k, entry in theirs_sd["state"].items():
        assert sorted(sd["state"][k]) == sorted(entry)
        for n, v in entry.items():
            np.testing.assert_allclose(np.asarray(sd["state"][k][n]), v.numpy(), rtol=1e-12)
    theirs2 = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    t2 = theirs_cls(groups(theirs2), **hp)
    t2.load_state_dict(as_torch(torch, sd))
    for gs in grads[6:]:
        run(t2, theirs2, gs, lambda g: torch.tensor(g))
        run(o, ours, gs, np.copy)
    for p, q in zip(ours, theirs2, strict=True):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-12, atol=1e-15)


def test_state_dict_round_trip_and_refusals():
    model = make_model()
    opt = optim.Adam([{"params": model[0].parameters()},
                      {"params": model[2].parameters(), "lr": 0.01}])
    for x, y in data(2):
        opt.zero_grad()
        fnn.losses.cross_entropy(model(x), y).backward()
        opt.step()
    sd = opt.state_dict()
    assert sd["state"][0]["step"] == 2.0 and sd["state"][0]["exp_avg"].shape == (5, 8)
    other = optim.Adam([{"params": make_model()[0].parameters()},
                        {"params": make_model()[2].parameters()}])
    other.load_state_dict(sd)
    assert other.param_groups[1]["lr"] == 0.01
    assert other.state_dict()["state"][3]["exp_avg_sq"].tolist() == \
        sd["state"][3]["exp_avg_sq"].tolist()
    bad = {**sd, "state": {0: {**sd["state"][0], "exp_avg": np.zeros((8, 5))}}}
    with pytest.raises(ValueError, match=r"\(8, 5\).*transpose"):
        other.load_state_dict(bad)
    mixed = {**sd, "state": {0: {**sd["state"][0], "step": 3.0}, 1: sd["state"][1]}}
    with pytest.raises(ValueError, match="different steps"):
        other.load_state_dict(mixed)
    with pytest.raises(ValueError, match="different set of parameters"):
        optim.Adam(make_model().parameters()).load_state_dict(sd)
    with pytest.raises(ValueError, match="AdamW"):
        groups = [{**g, "decoupled_weight_decay": True} for g in sd["param_groups"]]
        other.load_state_dict({**sd, "param_groups": groups})


def test_flat_state_dict_is_the_same_state_in_few_arrays():
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in data(2):
        opt.zero_grad()
        fnn.losses.cross_entropy(model(x), y).backward()
        opt.step()
    flat = opt.flat_state_dict()
    assert flat["steps"] == [2] and len(flat["state"]["momentum_buffer"]) == 1
    per_param = opt.state_dict()["state"]
    np.testing.assert_array_equal(
        np.concatenate([per_param[i]["momentum_buffer"].ravel() for i in range(4)]),
        flat["state"]["momentum_buffer"][0])
    again = optim.SGD(make_model().parameters(), lr=0.1, momentum=0.9)
    again.load_state_dict(flat)
    assert again.state_dict()["state"][2]["momentum_buffer"].tolist() == \
        per_param[2]["momentum_buffer"].tolist()


# ---------------------------------------------------------------------------- zero_grad
def test_zero_grad_to_none_keeps_the_flat_buffer_path():
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    params = list(model.parameters())
    x, y = data(1)[0]
    fnn.losses.cross_entropy(model(x), y).backward()
    once = [p.grad.copy() for p in params]
    opt.step()
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    for _ in range(2):  # the next backward writes into the buffer, the second adds
        fnn.losses.cross_entropy(model(x), y).backward()
    flat = opt.flat_buffers[0].grad
    assert all(np.shares_memory(p.grad, flat) for p in params)
    assert _covering_buffers(params) is not None  # clipping's one-kernel path
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    fnn.losses.cross_entropy(model(x), y).backward()
    before = [p.data.copy() for p in params]
    opt.step()
    for p, b, g in zip(params, before, once, strict=True):
        assert p.grad.shape == g.shape
        np.testing.assert_allclose(p.data, b - 0.1 * p.grad, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------- clipping
@pytest.mark.parametrize("norm_type", [2.0, 1, float("inf"), "inf", 3.5, 0])
@pytest.mark.parametrize("flat", [True, False])
def test_clip_grad_norm_matches_torch(norm_type, flat):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    shapes = [(4, 3), (3,), (2, 5)]
    grads = [rng.standard_normal(s) * 3 for s in shapes]
    ours = [fnn.nn.Parameter(np.zeros(s)) for s in shapes]
    if flat:
        optim.SGD(ours, lr=0.1).zero_grad(set_to_none=False)
        for p, g in zip(ours, grads, strict=True):
            p.grad[...] = g
        assert _covering_buffers(ours) is not None
    else:
        for p, g in zip(ours, grads, strict=True):
            p.grad = g.copy()
    theirs = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in shapes]
    for q, g in zip(theirs, grads, strict=True):
        q.grad = torch.tensor(g)
    n_ours = optim.clip_grad_norm_(ours, 1.5, norm_type=norm_type, foreach=True)
    n_theirs = torch.nn.utils.clip_grad_norm_(theirs, 1.5, norm_type=norm_type, foreach=False)
    assert n_ours.item() == pytest.approx(n_theirs.item(), rel=1e-12)
    for p, q in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_non_finite_and_clip_grad_value():
    torch = pytest.importorskip("torch")
    p = fnn.nn.Parameter(np.zeros(3))
    p.grad = np.array([1.0, np.nan, 2.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    q = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    q.grad = torch.tensor([1.0, np.nan, 2.0], dtype=torch.float64)
    optim.clip_grad_norm_(p, 1.0)
    torch.nn.utils.clip_grad_norm_(q, 1.0)
    np.testing.assert_array_equal(p.grad, q.grad.numpy())  # NaN everywhere, as torch
    assert optim.clip_grad_norm_([fnn.nn.Parameter(np.zeros(2))], 1.0) == 0.0
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    x, y = data(1)[0]
    fnn.losses.cross_entropy(model(x), y).backward()
    grads = [p.grad.copy() for p in model.parameters()]
    assert optim.clip_grad_value_(model.parameters(), 0.05, foreach=None) is None
    for p, g in zip(model.parameters(), grads, strict=True):
        np.testing.assert_array_equal(p.grad, np.clip(g, -0.05, 0.05))
    assert opt.flat_buffers[0].grad.max() <= 0.05
    with pytest.raises(ValueError, match="norm_type"):
        optim.clip_grad_norm_(model.parameters(), 1.0, norm_type="fro")
    with pytest.raises(ValueError, match="clip_value"):
        optim.clip_grad_value_(model.parameters(), None)
