"""Batch normalization: the same network with and without it, at a high learning rate.

A 64-100-100-100-10 network of sigmoid units (the setting of Ioffe and Szegedy's first
figure) learns the bundled 8x8 digits with plain SGD at learning rate 2. Without
BatchNorm the sigmoids of the upper layers start saturated and their gradients vanish
(the lecture notes' problem 1): the loss sits on the plateau of chance, ln 10 = 2.30, for
hundreds of steps. With a BatchNorm1d before each sigmoid, every unit's input is
standardized over the batch (mean 0, variance 1, then the learned gamma and beta), so it
stays where the sigmoid has a slope: the loss falls at once.

The right-hand panels follow one unit of the last hidden layer: the 15th, 50th and 85th
percentiles of its input over each training batch (the paper's figure 1). Without
BatchNorm the distribution drifts as the layers below it change; with it, it stays put.

Run: ``uv run python examples/batchnorm.py``. Writes batchnorm.png into the current
directory (or --out DIR, or $FASTNN_EXAMPLES_OUT); FASTNN_EXAMPLES_QUICK=1 trains 200 steps
instead of 600.
"""

from __future__ import annotations

import os
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import fastnn as fnn  # noqa: E402
from fastnn.data import DataLoader  # noqa: E402
from fastnn.datasets import load_digits  # noqa: E402

#: where a picture goes without --out or $FASTNN_EXAMPLES_OUT: the current directory
#: (``examples/gallery.py --docs`` regenerates the tracked docs/images/)
OUT = pathlib.Path(".")
LR = 2.0
HIDDEN = (100, 100, 100)
UNIT = 0  # the unit of the last hidden layer whose input is followed


def network(batchnorm: bool):
    """The model and the module whose output is the followed unit's input (the sigmoid's)."""
    layers, fan = [], 64
    for width in HIDDEN:
        layers.append(fnn.Linear(fan, width))
        if batchnorm:
            layers.append(fnn.BatchNorm1d(width))
        layers.append(fnn.Sigmoid())
        fan = width
    probe = layers[-2]  # the last Linear, or the last BatchNorm1d
    layers.append(fnn.Linear(fan, 10))
    return fnn.Sequential(*layers), probe


def train(batchnorm: bool, X, y, steps: int):
    """SGD; returns the loss and the followed unit's input percentiles at every step."""
    fnn.manual_seed(0)
    model, probe = network(batchnorm)
    opt = fnn.optim.SGD(model.parameters(), lr=LR)
    loader = DataLoader((X, y), batch_size=64, shuffle=True, drop_last=True, seed=0)
    losses, percentiles = [], []
    while len(losses) < steps:
        for xb, yb in loader:
            opt.zero_grad()
            h = xb
            for layer in model:  # layer by layer, to look at the probe's output
                h = layer(h)
                if layer is probe:
                    percentiles.append(np.percentile(h.data[:, UNIT], [15, 50, 85]))
            loss = fnn.losses.cross_entropy(h, yb)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    return np.array(losses), np.array(percentiles)


def smooth(values: np.ndarray, k: int = 20) -> np.ndarray:
    """Trailing mean over k steps (fewer at the start)."""
    c = np.cumsum(np.insert(values, 0, 0.0))
    n = np.minimum(np.arange(1, len(values) + 1), k)
    return (c[1:] - c[np.arange(1, len(values) + 1) - n]) / n


def main(out: str | os.PathLike | None = None, quick: bool | None = None) -> dict:
    """Train both networks, print the loss every 50 steps, draw the curves.

    Returns ``{"plain": losses, "batchnorm": losses}`` and the percentiles per step under
    ``"plain_unit"`` and ``"batchnorm_unit"`` (arrays (steps, 3)).
    """
    out = pathlib.Path(out or os.environ.get("FASTNN_EXAMPLES_OUT") or OUT)
    out.mkdir(parents=True, exist_ok=True)
    if quick is None:
        quick = os.environ.get("FASTNN_EXAMPLES_QUICK", "") not in ("", "0")
    # These matrices are small: one thread beats waking a pool, and on a busy machine a
    # parallel region waits for every thread to be scheduled (the results are the same
    # bits on any number of threads).
    fnn.set_num_threads(1)
    steps = 200 if quick else 600
    digits = load_digits()
    X, y = (digits.X / 16.0).astype(np.float32), digits.y  # pixels 0..16 to 0..1

    plain, plain_unit = train(False, X, y, steps)
    bn, bn_unit = train(True, X, y, steps)
    sp, sb = smooth(plain), smooth(bn)
    print(f"digits, 64-100-100-100-10 sigmoid, SGD lr={LR}, batch 64: training loss "
          "(mean of the last 20 steps)")
    print(f"{'step':>6s} {'plain':>8s} {'BatchNorm':>10s}   input of unit {UNIT}, last hidden "
          "layer: 15/50/85th percentiles, plain | BatchNorm")
    for s in range(50, steps + 1, 50):
        p, b = plain_unit[s - 1], bn_unit[s - 1]
        print(f"{s:6d} {sp[s - 1]:8.3f} {sb[s - 1]:10.3f}   "
              f"{p[0]:6.2f} {p[1]:6.2f} {p[2]:6.2f} | {b[0]:6.2f} {b[1]:6.2f} {b[2]:6.2f}")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    steps_axis = np.arange(1, steps + 1)
    for losses, smoothed, label, color in ((plain, sp, "without BatchNorm", "C0"),
                                           (bn, sb, "with BatchNorm", "C3")):
        axes[0].plot(steps_axis, losses, color=color, alpha=0.25, lw=0.8)
        axes[0].plot(steps_axis, smoothed, color=color, lw=2, label=label)
    axes[0].axhline(np.log(10), color="0.5", ls=":", lw=1)
    axes[0].text(steps, np.log(10) + 0.05, "chance: ln 10", ha="right", va="bottom",
                 fontsize=10, color="0.4")
    axes[0].set_ylim(0, 3.5)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("training loss (cross-entropy)")
    axes[0].set_title(f"loss, SGD at learning rate {LR:g}", fontsize=12)
    axes[0].legend(fontsize=11)
    for ax, unit, title, color in ((axes[1], plain_unit, "without BatchNorm", "C0"),
                                   (axes[2], bn_unit, "with BatchNorm", "C3")):
        unit = np.stack([smooth(unit[:, k], 10) for k in range(3)], axis=1)
        ax.fill_between(steps_axis, unit[:, 0], unit[:, 2], color=color, alpha=0.25,
                        label="15th to 85th percentile (mean of 10 steps)")
        ax.plot(steps_axis, unit[:, 1], color=color, lw=2, label="median")
        ax.set_xlabel("step")
        ax.set_ylabel("input of the sigmoid")
        ax.set_title(f"one unit's input over training, {title}", fontsize=12)
        ax.legend(fontsize=10, loc="upper right")
    lo = min(plain_unit.min(), bn_unit.min())
    hi = max(plain_unit.max(), bn_unit.max())
    for ax in axes[1:]:
        ax.set_ylim(lo - 0.5, hi + 1.5)
    fig.tight_layout()
    path = out / "batchnorm.png"
    fig.savefig(path, dpi=72)
    plt.close(fig)
    print(f"wrote {path}")
    return {"plain": plain, "batchnorm": bn, "plain_unit": plain_unit, "batchnorm_unit": bn_unit}


def command_line() -> None:
    """``--out DIR`` (default: $FASTNN_EXAMPLES_OUT, else the current directory), ``--quick``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", help="directory for the picture (default: $FASTNN_EXAMPLES_OUT "
                        "or the current directory)")
    parser.add_argument("--quick", action="store_true", default=None,
                        help="reduced sizes (as FASTNN_EXAMPLES_QUICK=1)")
    args = parser.parse_args()
    main(out=args.out, quick=args.quick)


if __name__ == "__main__":
    command_line()
