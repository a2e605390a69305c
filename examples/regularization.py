"""Overfitting, seen: a network much larger than its data, with and without regularization.

A 64-256-256-10 ReLU network (about 85,000 parameters) learns 100 of the bundled 8x8 digits
with Adam and is validated on 600 others. Without regularization the training loss keeps
falling toward 0 while the validation loss bottoms out after some 20 epochs and then
climbs: the network memorizes its 100 examples, and the growing gap between the curves is
the overfitting. The lecture notes' advice is to keep the large network and control the
overfitting instead:

- L2 (``weight_decay``, the penalty lambda/2 ||W||^2) pulls the weights toward 0 at every
  step: the training loss levels off above 0, the validation loss stops climbing and ends
  the lowest of the four (0.39 against 0.45 without regularization).
- Input noise (GaussianNoise(0.5) on the standardized pixels) shows new versions of the 100
  images every epoch: it reaches the lowest validation loss of all (0.38, at epoch 41), then
  memorization catches up and its curve climbs like the unregularized one.
- Dropout(0.5) after each hidden layer trains a random half-network at every step: here it
  only moves the minimum later (epoch 31 against 21) and ends *above* no regularization.
  On 100 images trained with Adam for 100 epochs it does not help the validation loss:
  the picture shows that, rather than the textbook's promise.

On so little data the validation accuracies stay within about a point of each other.

Run: ``uv run python examples/regularization.py``. Writes regularization.png into the
current directory (or --out DIR, or $FASTNN_EXAMPLES_OUT); FASTNN_EXAMPLES_QUICK=1 trains 20
epochs.
"""

from __future__ import annotations

import os
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import fastnn as fnn  # noqa: E402
from fastnn.data import DataLoader, Standardizer  # noqa: E402
from fastnn.datasets import load_digits  # noqa: E402

#: where a picture goes without --out or $FASTNN_EXAMPLES_OUT: the current directory
#: (``examples/gallery.py --docs`` regenerates the tracked docs/images/)
OUT = pathlib.Path(".")
TRAIN, VAL = 100, 600
SETTINGS = {  # name -> (input noise std, dropout p, weight decay)
    "none": (0.0, 0.0, 0.0),
    "L2 (weight_decay=1e-3)": (0.0, 0.0, 1e-3),
    "Dropout(0.5)": (0.0, 0.5, 0.0),
    "input noise (std 0.5)": (0.5, 0.0, 0.0),
}
COLORS = dict(zip(SETTINGS, ["k", "C0", "C3", "C2"], strict=True))


def network(noise: float, dropout: float):
    fnn.manual_seed(0)
    layers = [fnn.GaussianNoise(noise, seed=0)] if noise else []
    for i, (fan_in, fan_out) in enumerate(((64, 256), (256, 256))):
        layers.append(fnn.Linear(fan_in, fan_out, activation="relu"))
        if dropout:
            layers.append(fnn.Dropout(dropout, seed=i))
    layers.append(fnn.Linear(256, 10))
    return fnn.Sequential(*layers)


def evaluate(model, X, y) -> tuple[float, float]:
    model.eval()
    with fnn.no_grad():
        scores = model(X)
        loss = fnn.losses.cross_entropy(scores, y).item()
    model.train()
    return loss, float((scores.data.argmax(axis=1) == y).mean())


def train(setting: str, data, epochs: int) -> np.ndarray:
    """Per epoch: training loss, validation loss, training and validation accuracy."""
    Xtr, ytr, Xva, yva = data
    noise, dropout, weight_decay = SETTINGS[setting]
    model = network(noise, dropout)
    opt = fnn.optim.Adam(model.parameters(), lr=1e-3, weight_decay=weight_decay)
    loader = DataLoader((Xtr, ytr), batch_size=20, shuffle=True, seed=0)
    history = []
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            fnn.losses.cross_entropy(model(xb), yb).backward()
            opt.step()
        (train_loss, train_acc), (val_loss, val_acc) = evaluate(model, Xtr, ytr), evaluate(
            model, Xva, yva)
        history.append((train_loss, val_loss, train_acc, val_acc))
    return np.array(history)


def main(out: str | os.PathLike | None = None, quick: bool | None = None) -> dict:
    """Train the four settings, print their curves' key numbers, draw them.

    Returns ``{setting: array (epochs, 4)}``: training loss, validation loss, training
    accuracy, validation accuracy per epoch.
    """
    out = pathlib.Path(out or os.environ.get("FASTNN_EXAMPLES_OUT") or OUT)
    out.mkdir(parents=True, exist_ok=True)
    if quick is None:
        quick = os.environ.get("FASTNN_EXAMPLES_QUICK", "") not in ("", "0")
    fnn.set_num_threads(1)  # small matrices: one thread beats waking a pool (same bits)
    epochs = 20 if quick else 100
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.X))
    tr, va = order[:TRAIN], order[TRAIN:TRAIN + VAL]
    scaler = Standardizer().fit(digits.X[tr])
    data = (scaler.transform(digits.X[tr]), digits.y[tr],
            scaler.transform(digits.X[va]), digits.y[va])

    histories = {name: train(name, data, epochs) for name in SETTINGS}
    print(f"digits: {TRAIN} training and {VAL} validation images; 64-256-256-10 ReLU, Adam "
          f"lr=1e-3, batch 20, {epochs} epochs")
    print(f"{'':24s}{'train loss':>11s}{'val loss':>10s}{'best val loss':>15s}"
          f"{'val accuracy':>14s}")
    for name, h in histories.items():
        best = int(h[:, 1].argmin())
        print(f"{name:24s}{h[-1, 0]:11.4f}{h[-1, 1]:10.3f}{h[best, 1]:9.3f} (ep {best + 1:3d})"
              f"{h[-1, 3]:10.3f}")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ep = np.arange(1, epochs + 1)
    for name, h in histories.items():
        axes[0].plot(ep, h[:, 0], color=COLORS[name], lw=2, label=name)
        axes[1].plot(ep, h[:, 1], color=COLORS[name], lw=2, label=name)
        axes[2].plot(ep, h[:, 3], color=COLORS[name], lw=2, label=name)
    axes[0].set_yscale("log")
    axes[0].set_title(f"training loss ({TRAIN} images)", fontsize=12)
    axes[0].set_ylabel("cross-entropy (log scale)")
    axes[1].set_title(f"validation loss ({VAL} other images)", fontsize=12)
    axes[1].set_ylabel("cross-entropy")
    axes[1].set_ylim(0.3, 0.8)
    axes[2].set_title("validation accuracy", fontsize=12)
    axes[2].set_ylim(0.8, 0.95)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=10, loc="lower left")
    fig.tight_layout()
    path = out / "regularization.png"
    fig.savefig(path, dpi=72)
    plt.close(fig)
    print(f"wrote {path}")
    return histories


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
