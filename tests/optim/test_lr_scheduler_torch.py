"""fastnn.optim.lr_scheduler against torch.optim.lr_scheduler (PyTorch 2.13), step by step:
each schedule, on two parameter groups with their own learning rates, for 50 steps, the
rates (and the cycled momentum or beta1) of every group compared after every step; then
compositions, resumption (state dicts and ``last_epoch``) and ReduceLROnPlateau's modes."""

import json
import math
import warnings

import numpy as np
import pytest

import fastnn as fnn
from fastnn import optim
from fastnn.optim import lr_scheduler as S

torch = pytest.importorskip("torch")

# No optimizer steps: the rates do not depend on them (and torch's first step costs seconds);
# torch warns that its schedule steps before its optimizer.
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
T = torch.optim.lr_scheduler

LRS = (0.1, 0.03)


def make_pair(kind="sgd"):
    """A fastnn and a torch optimizer with two groups of learning rates LRS."""
    ours = [fnn.nn.Parameter(np.zeros(2)), fnn.nn.Parameter(np.zeros(3))]
    theirs = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    if kind == "sgd":
        return (optim.SGD([{"params": [ours[0]]}, {"params": [ours[1]], "lr": LRS[1]}],
                          lr=LRS[0], momentum=0.9),
                torch.optim.SGD([{"params": [theirs[0]]}, {"params": [theirs[1]], "lr": LRS[1]}],
                                lr=LRS[0], momentum=0.9))
    return (optim.Adam([{"params": [ours[0]]}, {"params": [ours[1]], "lr": LRS[1]}], lr=LRS[0]),
            torch.optim.Adam([{"params": [theirs[0]]}, {"params": [theirs[1]], "lr": LRS[1]}],
                             lr=LRS[0]))


def momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


def assert_same(o, t, so, st, what=""):
    np.testing.assert_allclose([g["lr"] for g in o.param_groups],
                               [g["lr"] for g in t.param_groups], rtol=1e-12, atol=0,
                               err_msg=what)
    np.testing.assert_allclose(so.get_last_lr(), st.get_last_lr(), rtol=1e-12, err_msg=what)
    np.testing.assert_allclose(momenta(o), momenta(t), rtol=1e-12, err_msg=what)


def run_pair(o, t, so, st, steps=50, what=""):
    assert_same(o, t, so, st, f"{what} at creation")
    for i in range(steps):
        so.step()
        st.step()
        assert_same(o, t, so, st, f"{what} after step {i + 1}")


class Halving:
    """A callable object: its state is saved by LambdaLR's state_dict (PyTorch's rule)."""

    def __init__(self):
        self.every = 7

    def __call__(self, epoch):
        return 0.5 ** (epoch // self.every)


# (name, fastnn schedule, torch schedule, optimizer kind), each made on its optimizer.
SCHEDULES = [
    ("lambda", lambda o, m: m.LambdaLR(o, lambda e: 1 / (1 + 0.1 * e)), "sgd"),
    ("lambda-per-group", lambda o, m: m.LambdaLR(o, [lambda e: 0.95**e, Halving()]), "sgd"),
    ("multiplicative", lambda o, m: m.MultiplicativeLR(o, lambda e: 0.97), "sgd"),
    ("step", lambda o, m: m.StepLR(o, step_size=6, gamma=0.5), "sgd"),
    ("multistep", lambda o, m: m.MultiStepLR(o, milestones=[5, 12, 12, 30], gamma=0.3), "sgd"),
    ("exponential", lambda o, m: m.ExponentialLR(o, gamma=0.93), "sgd"),
    ("linear", lambda o, m: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=20),
     "sgd"),
    ("linear-decay", lambda o, m: m.LinearLR(o, start_factor=1.0, end_factor=0.05,
                                             total_iters=40), "adam"),
    ("constant", lambda o, m: m.ConstantLR(o, factor=0.25, total_iters=8), "sgd"),
    ("polynomial", lambda o, m: m.PolynomialLR(o, total_iters=30, power=2.0), "sgd"),
    ("cosine", lambda o, m: m.CosineAnnealingLR(o, T_max=15, eta_min=1e-3), "sgd"),
    ("warm-restarts", lambda o, m: m.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2,
                                                                 eta_min=1e-4), "sgd"),
    ("warm-restarts-1", lambda o, m: m.CosineAnnealingWarmRestarts(o, T_0=7), "adam"),
    ("cyclic-triangular", lambda o, m: m.CyclicLR(o, base_lr=[0.01, 0.002], max_lr=0.2,
                                                  step_size_up=6, step_size_down=4), "sgd"),
    ("cyclic-triangular2-adam", lambda o, m: m.CyclicLR(o, 0.001, [0.05, 0.02], step_size_up=5,
                                                        mode="triangular2"), "adam"),
    ("cyclic-exp-range", lambda o, m: m.CyclicLR(o, 0.01, 0.1, step_size_up=4, mode="exp_range",
                                                 gamma=0.97, base_momentum=0.7,
                                                 max_momentum=0.95), "sgd"),
    ("cyclic-scale-fn", lambda o, m: m.CyclicLR(o, 0.01, 0.1, step_size_up=3,
                                                scale_fn=lambda x: 1 / (1 + x),
                                                scale_mode="iterations",
                                                cycle_momentum=False), "adam"),
    ("onecycle", lambda o, m: m.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=50), "sgd"),
    ("onecycle-3phase-linear", lambda o, m: m.OneCycleLR(
        o, max_lr=0.3, epochs=5, steps_per_epoch=10, pct_start=0.2, anneal_strategy="linear",
        three_phase=True, div_factor=10.0, final_div_factor=100.0), "adam"),
    ("sequential", lambda o, m: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.2, total_iters=5), m.ExponentialLR(o, gamma=0.9)],
        milestones=[5]), "sgd"),
    ("sequential-3", lambda o, m: m.SequentialLR(
        o, [m.ConstantLR(o, factor=0.5, total_iters=3), m.CosineAnnealingLR(o, T_max=12),
            m.StepLR(o, step_size=4, gamma=0.5)], milestones=[4, 20]), "adam"),
    ("chained", lambda o, m: m.ChainedScheduler(
        [m.ConstantLR(o, factor=0.1, total_iters=4), m.ExponentialLR(o, gamma=0.95)]), "sgd"),
    ("chained-warmup-multistep", lambda o, m: m.ChainedScheduler(
        [m.LinearLR(o, start_factor=0.05, total_iters=10),
         m.MultiStepLR(o, milestones=[15, 35], gamma=0.2)], optimizer=o), "adam"),
]


@pytest.mark.parametrize("make,kind", [s[1:] for s in SCHEDULES], ids=[s[0] for s in SCHEDULES])
def test_fifty_steps_match_torch(make, kind):
    o, t = make_pair(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "step the optimizer first" at creation
        so, st = make(o, S), make(t, T)
    run_pair(o, t, so, st)


def to_json(state):
    return json.loads(json.dumps(state))


@pytest.mark.parametrize("make,kind", [s[1:] for s in SCHEDULES], ids=[s[0] for s in SCHEDULES])
def test_resuming_from_state_dicts_continues_torchs_run(make, kind):
    """20 steps, then both optimizers' and schedules' states saved (fastnn's through JSON,
    as a checkpoint stores them) and loaded into new ones, then 30 more steps."""
    o, t = make_pair(kind)
    so, st = make(o, S), make(t, T)
    for _ in range(20):
        so.step()
        st.step()
    o_state, s_state = o.state_dict(), to_json(so.state_dict())
    o2, _ = make_pair(kind)
    so2 = make(o2, S)
    o2.load_state_dict(o_state)
    so2.load_state_dict(s_state)
    assert_same(o2, t, so2, st, "after loading")
    run_pair(o2, t, so2, st, steps=30, what="resumed")


@pytest.mark.parametrize("name", ["step", "multistep", "exponential", "linear", "constant",
                                  "polynomial", "cosine", "warm-restarts", "cyclic-triangular",
                                  "onecycle"])
def test_resuming_with_last_epoch_as_torch_does(name):
    """PyTorch's other way to resume: the optimizer's state (which holds ``initial_lr``),
    then a new schedule made with ``last_epoch`` = the epochs done."""
    make, kind = next(s[1:] for s in SCHEDULES if s[0] == name)
    o, t = make_pair(kind)
    so, st = make(o, S), make(t, T)
    for _ in range(20):
        so.step()
        st.step()
    o_new, t_new = make_pair(kind)
    o_new.load_state_dict(o.state_dict())
    t_new.load_state_dict(t.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        so2, st2 = make_last(name, o_new, S, 19), make_last(name, t_new, T, 19)
    run_pair(o_new, t_new, so2, st2, steps=25, what=f"{name} resumed at last_epoch=19")


def make_last(name, opt, m, last_epoch):
    return {
        "step": lambda: m.StepLR(opt, 6, 0.5, last_epoch=last_epoch),
        "multistep": lambda: m.MultiStepLR(opt, [5, 12, 12, 30], 0.3, last_epoch=last_epoch),
        "exponential": lambda: m.ExponentialLR(opt, 0.93, last_epoch=last_epoch),
        "linear": lambda: m.LinearLR(opt, 0.1, 0.9, 20, last_epoch=last_epoch),
        "constant": lambda: m.ConstantLR(opt, 0.25, 8, last_epoch=last_epoch),
        "polynomial": lambda: m.PolynomialLR(opt, 30, 2.0, last_epoch=last_epoch),
        "cosine": lambda: m.CosineAnnealingLR(opt, 15, 1e-3, last_epoch=last_epoch),
        "warm-restarts": lambda: m.CosineAnnealingWarmRestarts(opt, 5, 2, 1e-4,
                                                               last_epoch=last_epoch),
        "cyclic-triangular": lambda: m.CyclicLR(opt, [0.01, 0.002], 0.2, 6, 4,
                                                last_epoch=last_epoch),
        "onecycle": lambda: m.OneCycleLR(opt, [0.5, 0.2], total_steps=50, last_epoch=last_epoch),
    }[name]()


def test_a_fresh_schedule_cannot_resume_without_initial_lr():
    o, _ = make_pair()
    with pytest.raises(KeyError, match="initial_lr"):
        S.StepLR(o, 3, last_epoch=4)


def test_warm_restarts_with_fractional_epochs():
    o, t = make_pair()
    so = S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.001)
    st = T.CosineAnnealingWarmRestarts(t, T_0=3, T_mult=2, eta_min=0.001)
    for epoch in range(12):
        for batch in range(4):
            so.step(epoch + batch / 4)
            st.step(epoch + batch / 4)
            assert_same(o, t, so, st, f"epoch {epoch} batch {batch}")


def test_step_with_an_epoch_uses_the_closed_form_and_warns():
    o, t = make_pair()
    so, st = S.ExponentialLR(o, 0.9), T.ExponentialLR(t, 0.9)
    for epoch in (3, 7, 2):
        with pytest.warns(UserWarning, match="deprecated"):
            so.step(epoch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st.step(epoch)
        assert_same(o, t, so, st, f"epoch {epoch}")


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
@pytest.mark.parametrize("kw", [dict(), dict(factor=0.5, patience=2, cooldown=2, threshold=0.05),
                                dict(factor=0.3, patience=0, min_lr=[0.01, 0.005], eps=1e-3),
                                dict(factor=0.9, patience=1, cooldown=1, min_lr=0.02)])
def test_reduce_on_plateau_matches_torch(mode, threshold_mode, kw):
    o, t = make_pair()
    so = S.ReduceLROnPlateau(o, mode=mode, threshold_mode=threshold_mode, **kw)
    st = T.ReduceLROnPlateau(t, mode=mode, threshold_mode=threshold_mode, **kw)
    rng = np.random.default_rng(len(kw))
    # A noisy curve that improves, stalls and creeps, in both directions.
    metrics = np.concatenate([np.linspace(1, 0.5, 10), np.full(8, 0.5), 0.5 - 0.001
                              * np.arange(12), rng.uniform(0.4, 0.6, 20)])
    if mode == "max":
        metrics = -metrics
    for i, m in enumerate(metrics):
        so.step(m)
        st.step(m)
        assert_same(o, t, so, st, f"metric {i}")
        assert (so.num_bad_epochs, so.cooldown_counter) == (st.num_bad_epochs, st.cooldown_counter)
        if i == 25:  # resume halfway through a fresh scheduler from the saved state
            state = to_json(so.state_dict())
            so = S.ReduceLROnPlateau(o, mode=mode, threshold_mode=threshold_mode, **kw)
            so.load_state_dict(state)


def test_reduce_on_plateau_takes_array_and_tensor_metrics():
    o, _ = make_pair()
    s = S.ReduceLROnPlateau(o, patience=0)
    s.step(np.float32(1.0))
    s.step(np.array(2.0))
    s.step(fnn.Tensor(np.array(3.0)))
    assert s.get_last_lr() == pytest.approx([0.001, 0.0003])


def test_a_lambda_schedule_saves_callable_objects_state():
    o, _ = make_pair()
    half = Halving()
    s = S.LambdaLR(o, [lambda e: 1.0, half])
    half.every = 3
    state = to_json(s.state_dict())
    assert state["lr_lambdas"] == [None, {"every": 3}]
    half2 = Halving()
    S.LambdaLR(make_pair()[0], [lambda e: 1.0, half2]).load_state_dict(state)
    assert half2.every == 3


def test_a_resumed_run_may_extend_its_schedule():
    """fastnn's one difference: the constructor's settings win over the saved ones, and
    the rate moves to the new curve (the CLI resumes a longer run this way)."""
    o, _ = make_pair()
    s = S.CosineAnnealingLR(o, T_max=10)
    for _ in range(6):
        s.step()
    o2, _ = make_pair()
    s2 = S.CosineAnnealingLR(o2, T_max=20)
    o2.load_state_dict(o.state_dict())
    s2.load_state_dict(s.state_dict())
    assert s2.T_max == 20 and s2.last_epoch == 6
    expected = [b * (1 + math.cos(math.pi * 6 / 20)) / 2 for b in LRS]
    np.testing.assert_allclose(s2.get_last_lr(), expected, rtol=1e-12)
    s2.step()
    np.testing.assert_allclose(s2.get_last_lr(), [b * (1 + math.cos(math.pi * 7 / 20)) / 2
                                                  for b in LRS], rtol=1e-12)


@pytest.mark.parametrize("make,match,exc", [
    (lambda o: S.LambdaLR(o, [lambda e: 1.0]), "lr_lambdas", ValueError),
    (lambda o: S.MultiplicativeLR(o, 0.5), "function", TypeError),
    (lambda o: S.MultiStepLR(o, [2.5]), "milestones", ValueError),
    (lambda o: S.ConstantLR(o, factor=2.0), "factor", ValueError),
    (lambda o: S.LinearLR(o, start_factor=0.0), "start_factor", ValueError),
    (lambda o: S.PolynomialLR(o, total_iters=0), "total_iters", ValueError),
    (lambda o: S.CosineAnnealingWarmRestarts(o, T_0=0), "T_0", ValueError),
    (lambda o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=0), "T_mult", ValueError),
    (lambda o: S.CyclicLR(o, 0.1, 1.0, mode="sawtooth"), "mode", ValueError),
    (lambda o: S.CyclicLR(o, [0.1], 1.0), "base_lr", ValueError),
    (lambda o: S.CyclicLR(optim.Adagrad([fnn.nn.Parameter(np.zeros(1))]), 0.1, 1.0),
     "momentum", ValueError),
    (lambda o: S.ReduceLROnPlateau(o, mode="up"), "mode", ValueError),
    (lambda o: S.ReduceLROnPlateau(o, threshold_mode="pct"), "threshold_mode", ValueError),
    (lambda o: S.ReduceLROnPlateau(o, min_lr=[0.1]), "min_lrs", ValueError),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 2)], milestones=[3]), "milestone", ValueError),
    (lambda o: S.SequentialLR(o, [S.StepLR(make_pair()[0], 2)], []), "same optimizer",
     ValueError),
    (lambda o: S.ChainedScheduler([S.ReduceLROnPlateau(o)]), "ReduceLROnPlateau", ValueError),
    (lambda o: S.ChainedScheduler([]), "at least one", ValueError),
    (lambda o: S.StepLR(o, 2, last_epoch=-2), "last_epoch", ValueError),
])
def test_bad_arguments_say_what_they_got(make, match, exc):
    with pytest.raises(exc, match=match):
        make(make_pair()[0])


def test_every_pytorch_schedule_name_exists():
    for name in T.__all__:
        assert hasattr(S, name), name
