"""fastnn/optim/optimizers.py: 50 steps on a real model against float64 transcriptions of
torch.optim."""

import numpy as np
import pytest

import fastnn as fnn
import naive
from fastnn import optim

CASES = [
    (optim.SGD, naive.NaiveSGD, dict(lr=0.1)),
    (optim.SGD, naive.NaiveSGD, dict(lr=0.05, momentum=0.9)),
    (optim.SGD, naive.NaiveSGD, dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-3)),
    (optim.SGD, naive.NaiveSGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-2)),
    (optim.SGD, naive.NaiveSGD, dict(lr=0.01, maximize=True)),
    (optim.Adagrad, naive.NaiveAdagrad, dict(lr=0.1)),
    (optim.Adagrad, naive.NaiveAdagrad, dict(lr=0.1, lr_decay=0.01, weight_decay=1e-3,
                                             initial_accumulator_value=0.1)),
    (optim.RMSprop, naive.NaiveRMSprop, dict(lr=0.01)),
    (optim.RMSprop, naive.NaiveRMSprop, dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True,
                                             weight_decay=1e-3)),
    (optim.Adam, naive.NaiveAdam, dict(lr=1e-2)),
    (optim.Adam, naive.NaiveAdam, dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2,
                                       amsgrad=True)),
    (optim.AdamW, naive.NaiveAdamW, dict(lr=1e-2)),
    (optim.AdamW, naive.NaiveAdamW, dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
]


def make_model(seed=0, dtype=np.float64):
    fnn.manual_seed(seed)
    return fnn.Sequential(fnn.Linear(6, 12, dtype=dtype), fnn.BatchNorm1d(12, dtype=dtype),
                          fnn.Tanh(), fnn.Linear(12, 3, dtype=dtype))


def batches(steps, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((16, 6)), rng.integers(0, 3, 16)) for _ in range(steps)]


def train(model, opt, data):
    for x, y in data:
        opt.zero_grad()
        fnn.losses.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("ours,ref,hp", CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
def test_fifty_steps_follow_the_torch_formula(ours, ref, hp):
    model = make_model()
    opt = ours(model.parameters(), **hp)
    params = list(model.parameters())
    reference = ref([p.data for p in params], **hp)
    for x, y in batches(50):
        opt.zero_grad()
        fnn.losses.cross_entropy(model(x), y).backward()
        grads = [p.grad.copy() for p in params]
        opt.step()
        reference.step(grads)
        for p, r in zip(params, reference.params, strict=True):
            np.testing.assert_allclose(p.data, r, rtol=1e-9, atol=1e-12)
        for p, r in zip(params, reference.params, strict=True):
            p.data[...] = r  # keep the two on exactly the same trajectory


@pytest.mark.parametrize("cls,hp", [(optim.Adam, dict(lr=1e-2)),
                                    (optim.SGD, dict(lr=0.1, momentum=0.9)),
                                    (optim.RMSprop, dict(centered=True, momentum=0.3))])
def test_state_dict_round_trip_continues_bit_for_bit(cls, hp):
    data = batches(10)
    straight = make_model()
    opt = cls(straight.parameters(), **hp)
    train(straight, opt, data)

    first = make_model()
    opt1 = cls(first.parameters(), **hp)
    train(first, opt1, data[:4])
    model_state, opt_state = first.state_dict(), opt1.state_dict()
    resumed = make_model(seed=5)  # different initial weights: everything comes from the state
    resumed.load_state_dict(model_state)
    opt2 = cls(resumed.parameters(), **hp)
    opt2.load_state_dict(opt_state)
    train(resumed, opt2, data[4:])
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_parameter_groups_with_their_own_options_and_no_decay_recipe():
    model = make_model()
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim == 2]
    no_decay = [p for n, p in model.named_parameters() if not (n.endswith("weight")
                                                                and p.ndim == 2)]
    opt = optim.AdamW([{"params": decay, "weight_decay": 0.1},
                       {"params": no_decay, "weight_decay": 0.0, "lr": 5e-3}], lr=1e-2)
    ref_decay = naive.NaiveAdamW([p.data for p in decay], lr=1e-2, weight_decay=0.1)
    ref_plain = naive.NaiveAdamW([p.data for p in no_decay], lr=5e-3, weight_decay=0.0)
    for x, y in batches(20):
        opt.zero_grad()
        fnn.losses.cross_entropy(model(x), y).backward()
        g1, g2 = [p.grad.copy() for p in decay], [p.grad.copy() for p in no_decay]
        opt.step()
        ref_decay.step(g1)
        ref_plain.step(g2)
    for p, r in zip(decay + no_decay, ref_decay.params + ref_plain.params, strict=True):
        np.testing.assert_allclose(p.data, r, rtol=1e-8, atol=1e-11)
    assert opt.param_groups[1]["lr"] == 5e-3 and opt.param_groups[0]["lr"] == 1e-2


def test_parameters_become_views_of_one_flat_buffer_per_dtype():
    model = make_model()
    w = model[0].weight
    before = w.data.copy()
    opt = optim.SGD(model.parameters(), lr=0.1)
    assert w.data.base is not None and all(p.data.base is w.data.base for p in model.parameters())
    np.testing.assert_array_equal(w.data, before)
    w.data[0, 0] = 123.0  # assigning into param.data still changes the model
    assert opt.flat_buffers[0].data[0] == 123.0
    opt.zero_grad(set_to_none=False)
    assert all((p.grad == 0).all() for p in model.parameters())
    opt.zero_grad()  # PyTorch's default: set to None, no pass over the buffer
    assert all(p.grad is None for p in model.parameters())
    fnn.losses.cross_entropy(model(np.ones((4, 6))), np.array([0, 1, 2, 0])).backward()
    # the backward wrote every gradient straight into the flat buffer
    assert all(p.grad.base is opt.flat_buffers[0].grad for p in model.parameters())
    model.zero_grad()  # PyTorch-style set-to-None: the next step still sees the new grads
    fnn.losses.cross_entropy(model(np.ones((4, 6))), np.array([0, 1, 2, 0])).backward()
    g = w.grad.copy()
    old = w.data.copy()
    opt.step()
    np.testing.assert_allclose(w.data, old - 0.1 * g)


def test_float32_and_float64_parameters_in_one_optimizer():
    a = fnn.Linear(3, 2, dtype=np.float32)
    b = fnn.Linear(2, 1, dtype=np.float64)
    opt = optim.Adam([*a.parameters(), *b.parameters()], lr=0.1)
    assert len(opt.flat_buffers) == 2
    x = np.ones((2, 3), np.float32)
    (b(a(x).astype(np.float64)).sum()).backward()
    opt.step()
    assert a.weight.dtype == np.float32 and b.weight.dtype == np.float64


@pytest.mark.parametrize(
    "make,match",
    [(lambda ps: optim.SGD(ps, lr=-1), "lr"),
     (lambda ps: optim.Adam(ps, betas=(1.0, 0.9)), "beta parameter at index 0"),
     (lambda ps: optim.Adam(ps, betas=(0.9, -0.1)), "beta parameter at index 1"),
     (lambda ps: optim.Adam(ps, eps=-1e-8), "eps"),
     (lambda ps: optim.AdamW(ps, weight_decay=-1), "weight_decay"),
     (lambda ps: optim.RMSprop(ps, alpha=-0.5), "alpha"),
     (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), "Nesterov"),
     (lambda ps: optim.SGD([], lr=0.1), "empty"),
     (lambda ps: optim.SGD([{"params": ps}, {"params": ps[:1]}], lr=0.1), "more than one")],
)
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make(list(make_model().parameters()))


def test_non_parameters_are_a_type_error():
    with pytest.raises(TypeError, match="Parameter"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="Parameter"):
        optim.Adam([fnn.Tensor(np.zeros(3), requires_grad=True)])


def test_loading_state_for_other_parameters_is_refused():
    opt = optim.Adam(make_model().parameters())
    train(make_model(), optim.Adam(make_model().parameters()), batches(1))
    other = optim.Adam(fnn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="different set of parameters"):
        other.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="not an optimizer state dict"):
        opt.load_state_dict({"foo": 1})


def test_clip_grad_norm_on_flat_buffer_and_loose_parameters():
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    fnn.losses.cross_entropy(model(np.ones((4, 6)) * 3), np.array([0, 1, 2, 0])).backward()
    grads = [p.grad.copy() for p in model.parameters()]
    total = np.sqrt(sum((g**2).sum() for g in grads))
    norm = optim.clip_grad_norm_(model.parameters(), max_norm=total / 4)
    assert norm == pytest.approx(total, rel=1e-12)
    coef = (total / 4) / (total + 1e-6)
    for p, g in zip(model.parameters(), grads, strict=True):
        np.testing.assert_allclose(p.grad, g * coef, rtol=1e-12)
    loose = fnn.Linear(3, 2, dtype=np.float64)
    loose(np.ones((2, 3))).sum().backward()
    g0 = loose.weight.grad.copy()
    n2 = optim.clip_grad_norm_(loose.parameters(), max_norm=1e9)  # no clipping needed
    np.testing.assert_array_equal(loose.weight.grad, g0)
    assert n2 == pytest.approx(np.sqrt((g0**2).sum() + (loose.bias.grad**2).sum()))


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_then_fan_out_unused_and_graph_op_gradients(set_to_none):
    """After zero_grad (either form), a weight used twice gets the sum of both uses, a
    parameter used through a generic graph op gets its gradient, and an unused one counts as
    zero: the same step as freshly computed float64 gradients give."""
    fnn.manual_seed(0)
    shared = fnn.Linear(3, 3, dtype="float64")
    scale = fnn.nn.Parameter(np.array([2.0]), dtype="float64")
    unused = fnn.nn.Parameter(np.ones(4), dtype="float64")
    params = [*shared.parameters(), scale, unused]
    opt = optim.SGD(params, lr=0.1)
    x = np.arange(6.0).reshape(2, 3) / 6
    for _ in range(3):  # stale gradients from earlier steps must not leak into later ones
        opt.zero_grad(set_to_none=set_to_none)
        before = [p.data.copy() for p in params]
        out = (shared(shared(x)) * scale).sum()
        out.backward()
        grads = [p.grad.copy() if p.grad is not None else np.zeros_like(p.data)
                 for p in params]
        W, b, s = before[0], before[1], before[2][0]
        h = x @ W + b
        dout = np.full((2, 3), s)
        dh = dout @ W.T
        dW = h.T @ dout + x.T @ dh
        db = dout.sum(0) + dh.sum(0)
        ds = (h @ W + b).sum()
        for g, ref in zip(grads, [dW, db, [ds], np.zeros(4)], strict=True):
            np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-12)
        opt.step()
        for p, p0, g in zip(params, before, grads, strict=True):
            np.testing.assert_allclose(p.data, p0 - 0.1 * g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"])
def test_a_parameter_without_gradient_is_skipped_as_pytorch_skips_it(name):
    kwargs = {"lr": 0.1, "weight_decay": 0.1}
    if name in ("SGD", "RMSprop"):
        kwargs["momentum"] = 0.9
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(4, 5, dtype=np.float64), fnn.Tanh(),
                           fnn.Linear(5, 2, dtype=np.float64))
    model[0].requires_grad_(False)  # frozen: backward leaves its .grad None
    frozen = [p.data.copy() for p in model[0].parameters()]
    opt = getattr(fnn.optim, name)(model.parameters(), **kwargs)
    ref = fnn.Sequential(fnn.Linear(4, 5, dtype=np.float64), fnn.Tanh(),
                         fnn.Linear(5, 2, dtype=np.float64))
    ref.load_state_dict(model.state_dict())
    ref_opt = getattr(fnn.optim, name)(ref[2].parameters(), **kwargs)  # trainable ones only
    x = np.random.default_rng(1).standard_normal((8, 4))
    for _ in range(3):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            (m(x) ** 2).mean().backward()
            o.step()
    for p, before in zip(model[0].parameters(), frozen, strict=True):
        np.testing.assert_array_equal(p.data, before)
    for a, b in zip(model[2].parameters(), ref[2].parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_a_kept_grad_is_the_reused_buffer_as_documented():
    """After zero_grad() (grad = None, as PyTorch) the next backward writes into the same
    flat-buffer view: an array kept from p.grad shows the new gradient (PyTorch would have
    allocated a new one), and a copy keeps the old one."""
    fnn.manual_seed(0)
    lin = fnn.Linear(3, 2, dtype=np.float64)
    opt = fnn.optim.SGD(lin.parameters(), lr=0.1)
    x = np.ones((4, 3))
    (lin(x).sum()).backward()
    kept, copied = lin.weight.grad, lin.weight.grad.copy()
    assert kept.base is opt.flat_buffers[0].grad
    opt.step()
    opt.zero_grad()
    assert lin.weight.grad is None
    (lin(2 * x).sum()).backward()
    assert lin.weight.grad is kept  # the same array...
    np.testing.assert_array_equal(kept, 2 * copied)  # ...now holding the new gradient
    np.testing.assert_array_equal(copied, np.full((3, 2), 4.0))


@pytest.mark.parametrize("n", [0, 1, 3, 5, 4095, 4096, 4099, 3 * 4096 + 2, 70001])
def test_sum_of_squares_is_the_float64_sum_on_any_thread_count(n):
    from fastnn.kernels import optim as K

    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    expect = float(np.sum(x.astype(np.float64) ** 2))
    got = optim.optimizers.sum_of_squares(x)
    assert got == pytest.approx(expect, rel=1e-13, abs=0.0)
    if n == 0:
        return
    partial = np.empty(-(-n // K.CHUNK))
    total = K.grad_sq_partial.serial(x, partial)
    serial = partial.copy()
    assert K.grad_sq_partial.parallel(x, partial) == total == got
    np.testing.assert_array_equal(partial, serial)


def _weights_and_rest(model):
    weights = [p for p in model.parameters() if p.ndim == 2]
    rest = [p for p in model.parameters() if p.ndim != 2]
    return [{"params": weights}, {"params": rest}]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make_opt", [
    lambda g: optim.Adam(g, lr=1e-2, weight_decay=1e-3),
    lambda g: optim.AdamW(g, lr=1e-2),
    lambda g: optim.SGD(g, lr=0.1, momentum=0.9, nesterov=True),
    lambda g: optim.SGD(g, lr=0.1),
], ids=["adam", "adamw", "nesterov", "sgd"])
@pytest.mark.parametrize("path", ["step", "compiled", "fused"])
def test_the_update_adds_up_the_squares_it_wrote(dtype, make_opt, path):
    """track_squares: after a step, updated_squares(g) is sum(p ** 2) over group g, on the
    graph's step(), the compiled step and the fused one (several kernel calls adding up)."""
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((300, 9)).astype(dtype), rng.integers(0, 4, 300)
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(9, 200, dtype=dtype), fnn.ReLU(),
                           fnn.Linear(200, 4, dtype=dtype))
    opt = make_opt(_weights_and_rest(model))
    assert opt.track_squares()
    step = fnn.compile_step(model, fnn.losses.cross_entropy, opt,
                            fuse_optimizer=path == "fused") if path != "step" else None
    for lo in (0, 100, 200):
        xb, yb = X[lo:lo + 100], y[lo:lo + 100]
        if step is None:
            opt.zero_grad()
            fnn.losses.cross_entropy(model(xb), yb).backward()
            opt.step()
        else:
            step(xb, yb)
        for g, group in enumerate(opt.param_groups):
            expect = sum(float(np.sum(p.data.astype(np.float64) ** 2)) for p in group["params"])
            assert opt.updated_squares(g) == pytest.approx(
                expect, rel=1e-6 if dtype == np.float32 else 1e-13)


def test_the_squares_do_not_depend_on_the_thread_count():
    sums = []
    for threads in (1, 2):
        fnn.set_num_threads(threads)
        try:
            fnn.manual_seed(0)
            model = fnn.Sequential(fnn.Linear(300, 300, dtype=np.float32))
            opt = optim.Adam(model.parameters(), lr=1e-2)
            opt.track_squares()
            for p in model.parameters():
                p.grad = np.ones_like(p.data)
            opt.step()
            sums.append(opt.updated_squares(0))
        finally:
            fnn.set_num_threads(2)
    assert sums[0] == sums[1]


def test_optimizers_whose_kernel_cannot_add_squares_say_so():
    model = make_model()
    for opt in (optim.RMSprop(model.parameters()), optim.Adagrad(model.parameters())):
        assert opt.track_squares() is False
