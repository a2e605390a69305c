"""fastnn/lr_scheduler.py: each schedule's lr sequence against its closed form."""

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
