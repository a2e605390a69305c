"""fastnn/optim/lr_scheduler.py: each schedule's lr sequence against its closed form."""

import math

import numpy as np
import pytest

import fastnn as fnn
from fastnn import optim
from fastnn.optim import lr_scheduler as S


def make_opt(lr=0.1):
    return optim.SGD(fnn.Linear(2, 2).parameters(), lr=lr)


def run(sched, opt, epochs=25):
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    return lrs


@pytest.mark.parametrize(
    "make,closed",
    [(lambda o: S.StepLR(o, step_size=7, gamma=0.5), lambda e: 0.1 * 0.5 ** (e // 7)),
     (lambda o: S.ExponentialLR(o, gamma=0.9), lambda e: 0.1 * 0.9**e),
     (lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.01),
      lambda e: 0.01 + 0.09 * (1 + math.cos(math.pi * e / 10)) / 2),
     (lambda o: S.LinearLR(o, start_factor=0.1, total_iters=4),
      lambda e: 0.1 * (0.1 + 0.9 * min(e, 4) / 4))],
    ids=["step", "exponential", "cosine", "linear_warmup"],
)
def test_closed_forms(make, closed):
    opt = make_opt()
    sched = make(opt)
    np.testing.assert_allclose(run(sched, opt), [closed(e) for e in range(25)], rtol=1e-12)
    assert sched.get_last_lr() == [opt.param_groups[0]["lr"]]


def test_warmup_then_cosine_and_state_round_trip():
    opt = make_opt()
    warm = S.LinearLR(opt, start_factor=0.25, total_iters=3)
    cos = S.CosineAnnealingLR(opt, T_max=5)
    seq = S.SequentialLR(opt, [warm, cos], milestones=[3])
    lrs = run(seq, opt, 8)
    expected = [0.1 * (0.25 + 0.75 * e / 3) for e in range(3)] + \
        [0.05 * (1 + math.cos(math.pi * e / 5)) for e in range(5)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    opt2 = make_opt()
    step2 = S.StepLR(opt2, 2)
    for _ in range(3):
        step2.step()
    state = step2.state_dict()
    opt3 = make_opt()
    step3 = S.StepLR(opt3, 2)
    opt3.load_state_dict(opt2.state_dict())  # the optimizer's state carries the lr, as in PyTorch
    step3.load_state_dict(state)
    step3.step()
    step2.step()
    assert opt3.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]


def test_reduce_on_plateau():
    opt = make_opt()
    sched = S.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1)
    lrs = []
    for metric in [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.5]:
        sched.step(metric)
        lrs.append(opt.param_groups[0]["lr"])
    # PyTorch's rule by hand: bad epochs 1, 2, 3 (> patience 2) -> halve at the 5th step;
    # the cooldown step resets the count; two more bad epochs do not reach patience again;
    # 0.5 is an improvement.
    assert lrs == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05]
    with pytest.raises(ValueError, match="factor"):
        S.ReduceLROnPlateau(opt, factor=1.5)


def test_bad_arguments():
    with pytest.raises(TypeError):
        S.StepLR(object(), 3)
    with pytest.raises(ValueError, match="step_size"):
        S.StepLR(make_opt(), 0)
    with pytest.raises(ValueError, match="T_max"):
        S.CosineAnnealingLR(make_opt(), T_max=-1)


# -------------------------------------------------------------------------- OneCycleLR
def one_cycle_reference(step, total, max_lr, pct, div, final_div, three_phase, cos):
    """The 1cycle lr at ``step`` from its definition (phase boundaries as PyTorch's)."""
    lo, hi = max_lr / div, max_lr
    low = lo / final_div
    if three_phase:
        phases = [(pct * total - 1, lo, hi), (2 * pct * total - 2, hi, lo), (total - 1, lo, low)]
    else:
        phases = [(pct * total - 1, lo, hi), (total - 1, hi, low)]
    start = 0.0
    for i, (end, a, b) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            t = (step - start) / (end - start)
            return b + (a - b) / 2 * (math.cos(math.pi * t) + 1) if cos else a + (b - a) * t
        start = end


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_against_its_definition(strategy, three_phase):
    opt = make_opt()
    sched = S.OneCycleLR(opt, max_lr=0.5, total_steps=40, pct_start=0.25,
                         anneal_strategy=strategy, three_phase=three_phase, div_factor=10,
                         final_div_factor=100)
    lrs = run(sched, opt, epochs=40)
    expect = [one_cycle_reference(s, 40, 0.5, 0.25, 10, 100, three_phase, strategy == "cos")
              for s in range(40)]
    np.testing.assert_allclose(lrs, expect, rtol=1e-12)
    assert lrs[0] == pytest.approx(0.05) and max(lrs) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="total_steps=40"):
        sched.step()


def test_one_cycle_cycles_momentum_or_beta1_and_checks_its_arguments():
    opt = make_opt()
    S.OneCycleLR(opt, max_lr=1.0, epochs=2, steps_per_epoch=5)
    assert opt.param_groups[0]["momentum"] == 0.95  # starts at max_momentum, as PyTorch
    adam = optim.Adam(fnn.Linear(2, 2).parameters())
    sched = S.OneCycleLR(adam, max_lr=1e-2, total_steps=10, pct_start=0.5)
    betas = []
    for _ in range(9):
        sched.step()
        betas.append(adam.param_groups[0]["betas"][0])
    assert min(betas) == pytest.approx(0.85) and betas[-1] == pytest.approx(0.95)
    assert adam.param_groups[0]["betas"][1] == 0.999
    with pytest.raises(ValueError, match="momentum nor betas"):
        S.OneCycleLR(optim.Adagrad(fnn.Linear(2, 2).parameters()), max_lr=0.1, total_steps=5)
    with pytest.raises(ValueError, match="total_steps, or epochs"):
        S.OneCycleLR(make_opt(), max_lr=0.1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        S.OneCycleLR(make_opt(), max_lr=0.1, total_steps=5, anneal_strategy="exp")


def test_one_cycle_matches_torch_and_resumes():
    torch = pytest.importorskip("torch")
    for opts in ({}, {"three_phase": True, "anneal_strategy": "linear"},
                 {"pct_start": 0.1, "div_factor": 5.0, "final_div_factor": 50.0}):
        w = torch.nn.Parameter(torch.zeros(2))
        t_opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
        t_sched = torch.optim.lr_scheduler.OneCycleLR(t_opt, max_lr=0.3, total_steps=23, **opts)
        opt = optim.SGD(fnn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
        sched = S.OneCycleLR(opt, max_lr=0.3, total_steps=23, **opts)
        for _ in range(22):
            assert opt.param_groups[0]["lr"] == pytest.approx(t_opt.param_groups[0]["lr"],
                                                              rel=1e-12)
            assert opt.param_groups[0]["momentum"] == pytest.approx(
                t_opt.param_groups[0]["momentum"], rel=1e-12)
            t_opt.step()
            t_sched.step()
            sched.step()
    state = sched.state_dict()
    opt2 = optim.SGD(fnn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
    resumed = S.OneCycleLR(opt2, max_lr=0.3, total_steps=23, pct_start=0.1, div_factor=5.0,
                           final_div_factor=50.0)
    resumed.load_state_dict(state)
    assert resumed.get_last_lr() == sched.get_last_lr()
