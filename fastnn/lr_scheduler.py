"""Learning-rate schedules with torch.optim.lr_scheduler's names and formulas.

Each epoch-based schedule is its closed form ``lr(epoch) = f(base_lr, epoch)``; ``step()``
advances the epoch and writes ``lr`` into every parameter group, as PyTorch does (creating a
schedule already applies epoch 0). ``ReduceLROnPlateau.step(metric)`` follows PyTorch's
algorithm. ``state_dict()``/``load_state_dict()`` resume a schedule exactly.
"""

from __future__ import annotations

import math

from .optim import Optimizer


class LRScheduler:
    """Base class: ``lr_at(epoch, base_lr)`` defines the schedule."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a fastnn Optimizer")
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def lr_at(self, epoch: int, base_lr: float) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch, b) for b in self.base_lrs]

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step()`` set, one per parameter group."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch and set each group's learning rate."""
        self.last_epoch += 1
        self._last_lr = self.get_lr()
        for g, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            g["lr"] = lr

    def state_dict(self) -> dict:
        """Where the schedule is (not its settings, which come from its constructor, so a
        resumed run may extend ``T_max`` and the like)."""
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs),
                "_last_lr": list(self._last_lr)}

    def load_state_dict(self, state: dict) -> None:
        """Resume at the saved epoch and set each group's learning rate by *this* schedule's
        formula there: the same rate when the settings are the saved run's, and the rate of
        the new curve when a resumed run extends it (a larger ``T_max``, say)."""
        self.last_epoch = int(state["last_epoch"])
        self.base_lrs = list(state["base_lrs"])
        self._last_lr = self.get_lr()
        for g, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            g["lr"] = lr


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return v


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size, self.gamma = _positive_int("step_size", step_size), float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch, base_lr):
        return base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """lr = base_lr * gamma ** epoch."""

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch, base_lr):
        return base_lr * self.gamma**epoch


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.T_max, self.eta_min = _positive_int("T_max", T_max), float(eta_min)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch, base_lr):
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch
                                                                       / self.T_max)) / 2


class LinearLR(LRScheduler):
    """Linear warm-up (or decay).

    lr = base_lr * (start + (end - start) * min(epoch, total) / total)
    """

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError("start_factor must be in (0, 1] and end_factor in [0, 1], got "
                             f"{start_factor!r} and {end_factor!r}")
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
        self.total_iters = _positive_int("total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch, base_lr):
        frac = min(epoch, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * frac)


class SequentialLR(LRScheduler):
    """Schedules one after another: ``schedulers[i]`` runs from ``milestones[i-1]`` on, its
    epochs counted from 0 there (e.g. LinearLR warm-up, then CosineAnnealingLR)."""

    def __init__(self, optimizer, schedulers: list[LRScheduler], milestones: list[int],
                 last_epoch: int = -1):
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR needs len(schedulers) - 1 = {len(schedulers) - 1} "
                             f"milestones, got {len(milestones)}")
        if any(s.optimizer is not optimizer for s in schedulers):
            raise ValueError("SequentialLR: every scheduler must belong to the same optimizer")
        self.schedulers, self.milestones = list(schedulers), list(milestones)
        for g, b in zip(optimizer.param_groups, schedulers[0].base_lrs, strict=True):
            g["initial_lr"] = b
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch, base_lr):
        i = sum(epoch >= m for m in self.milestones)
        start = self.milestones[i - 1] if i else 0
        return self.schedulers[i].lr_at(epoch - start, base_lr)


class ReduceLROnPlateau:
    """Reduce the learning rate by ``factor`` when a metric stops improving (PyTorch's rule).

    ``step(metric)`` after each epoch; ``mode="min"`` (loss) or ``"max"`` (accuracy).
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float = 0.0, eps: float = 1e-8):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a fastnn Optimizer")
        if not 0 <= factor < 1:
            raise ValueError(f"factor should be in [0, 1), got {factor!r}")
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise ValueError(f"mode must be 'min'/'max' and threshold_mode 'rel'/'abs', got "
                             f"{mode!r}, {threshold_mode!r}")
        self.optimizer = optimizer
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        self.threshold, self.threshold_mode = float(threshold), threshold_mode
        self.cooldown, self.min_lr, self.eps = int(cooldown), float(min_lr), float(eps)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [g["lr"] for g in optimizer.param_groups]

    def _is_better(self, a: float) -> bool:
        if self.mode == "min":
            return a < (self.best * (1 - self.threshold) if self.threshold_mode == "rel"
                        else self.best - self.threshold)
        return a > (self.best * (1 + self.threshold) if self.threshold_mode == "rel"
                    else self.best + self.threshold)

    def step(self, metric: float) -> None:
        current = float(metric)
        self.last_epoch += 1
        if self._is_better(current):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for g in self.optimizer.param_groups:
                new = max(g["lr"] * self.factor, self.min_lr)
                if g["lr"] - new > self.eps:
                    g["lr"] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    _STATE = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch", "_last_lr")

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self._STATE}

    def load_state_dict(self, state: dict) -> None:
        for k in self._STATE:
            setattr(self, k, state[k])


__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRScheduler", "LinearLR", "ReduceLROnPlateau",
           "SequentialLR", "StepLR"]
