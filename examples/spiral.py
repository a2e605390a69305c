"""The lecture notes' three-arm spiral: a linear classifier cannot separate it, a two-layer
network can; and what L2 regularization does to the network's decision regions.

The data are cs231n's spiral (100 points per class, three classes, two dimensions). A
linear softmax classifier, f = W x + b, draws straight boundaries and stays near 50%
training accuracy; the two-layer network f = W2 max(0, W1 x + b1) + b2 (100 hidden ReLU
units) bends its boundaries around the arms. Then the same network trained with three
L2 strengths lambda (a penalty lambda/2 ||W||^2 on the weights, given to the optimizer as
``weight_decay``): as lambda grows the weights are pulled toward 0 at every step
('gradual forgetting', as the notes put it) and the regions become smoother and simpler.

Run: ``uv run python examples/spiral.py``. Writes spiral.png and spiral_l2.png into the
current directory (or --out DIR, or $FASTNN_EXAMPLES_OUT); FASTNN_EXAMPLES_QUICK=1 trains
fewer steps.
"""

from __future__ import annotations

import os
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

import fastnn as fnn  # noqa: E402

#: where a picture goes without --out or $FASTNN_EXAMPLES_OUT: the current directory
#: (``examples/gallery.py --docs`` regenerates the tracked docs/images/)
OUT = pathlib.Path(".")
COLORS = ["#d62728", "#2ca02c", "#1f77b4"]


def spiral(points_per_class: int = 100, classes: int = 3, seed: int = 0):
    """cs231n's spiral: class k's arm at angles 4k .. 4(k+1) with noise 0.2, radius 0 .. 1."""
    rng = np.random.default_rng(seed)
    n = points_per_class
    X = np.zeros((n * classes, 2))
    y = np.repeat(np.arange(classes), n)
    for k in range(classes):
        r = np.linspace(0.0, 1.0, n)
        t = np.linspace(4.0 * k, 4.0 * (k + 1), n) + rng.standard_normal(n) * 0.2
        X[k * n:(k + 1) * n] = np.c_[r * np.sin(t), r * np.cos(t)]
    return X.astype(np.float32), y


def train(model, X, y, steps: int, weight_decay: float = 0.0, lr: float = 0.01):
    """Full-batch Adam on the softmax cross-entropy; the L2 penalty on weights only."""
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = fnn.optim.Adam([{"params": weights, "weight_decay": weight_decay},
                          {"params": biases, "weight_decay": 0.0}], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = fnn.losses.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
    return loss.item()


def predict(model, X: np.ndarray) -> np.ndarray:
    with fnn.no_grad():
        return model(X).data.argmax(axis=1)


def two_layer(hidden: int = 100):
    return fnn.Sequential(fnn.Linear(2, hidden, activation="relu"), fnn.Linear(hidden, 3))


def draw_regions(ax, model, X, y, title: str) -> None:
    xs, ys = np.meshgrid(np.linspace(-1.1, 1.1, 220), np.linspace(-1.1, 1.1, 220))
    grid = np.c_[xs.ravel(), ys.ravel()].astype(np.float32)
    regions = predict(model, grid).reshape(xs.shape)
    ax.contourf(xs, ys, regions, levels=[-0.5, 0.5, 1.5, 2.5], cmap=ListedColormap(COLORS),
                alpha=0.25)
    ax.scatter(X[:, 0], X[:, 1], c=[COLORS[k] for k in y], s=14, edgecolors="k",
               linewidths=0.3)
    ax.set_title(title, fontsize=12)
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def main(out: str | os.PathLike | None = None, quick: bool | None = None) -> dict:
    """Train the linear classifier, the network, and the network at three L2 strengths.

    Returns training accuracies: ``{"linear": a, "net": a, "l2": {lambda: a}}``.
    """
    out = pathlib.Path(out or os.environ.get("FASTNN_EXAMPLES_OUT") or OUT)
    out.mkdir(parents=True, exist_ok=True)
    if quick is None:
        quick = os.environ.get("FASTNN_EXAMPLES_QUICK", "") not in ("", "0")
    # These matrices are small: one thread beats waking a pool, and on a busy machine a
    # parallel region waits for every thread to be scheduled (the results are the same
    # bits on any number of threads).
    fnn.set_num_threads(1)
    steps = 400 if quick else 1000
    X, y = spiral()

    fnn.manual_seed(0)
    linear = fnn.Linear(2, 3)
    linear_loss = train(linear, X, y, steps, lr=0.05)
    linear_acc = float((predict(linear, X) == y).mean())
    fnn.manual_seed(0)
    net = two_layer()
    net_loss = train(net, X, y, steps)
    net_acc = float((predict(net, X) == y).mean())
    print(f"spiral: {len(X)} points, 3 classes; full-batch Adam, {steps} steps")
    print(f"  linear softmax        loss {linear_loss:.3f}  training accuracy {linear_acc:.3f}")
    print(f"  2-layer net (100 ReLU) loss {net_loss:.3f}  training accuracy {net_acc:.3f}")

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
    draw_regions(axes[0], linear, X, y, f"linear softmax: accuracy {linear_acc:.2f}")
    draw_regions(axes[1], net, X, y, f"2-layer net, 100 ReLU: accuracy {net_acc:.2f}")
    fig.tight_layout()
    path = out / "spiral.png"
    fig.savefig(path, dpi=72, bbox_inches="tight")
    plt.close(fig)

    l2 = {}
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    print("  the same net with an L2 penalty lambda/2 ||W||^2:")
    for ax, lam in zip(axes, (1e-3, 1e-2, 1e-1), strict=True):
        fnn.manual_seed(0)
        model = two_layer()
        loss = train(model, X, y, steps, weight_decay=lam)
        acc = float((predict(model, X) == y).mean())
        norm = float(sum(np.sum(p.data.astype(np.float64) ** 2)
                         for n, p in model.named_parameters() if n.endswith("weight")))
        l2[lam] = acc
        print(f"    lambda {lam:<6g} data loss {loss:.3f}  ||W||^2 {norm:8.2f}  accuracy {acc:.3f}")
        draw_regions(ax, model, X, y, f"λ = {lam:g}: accuracy {acc:.2f}")
    fig.tight_layout()
    path_l2 = out / "spiral_l2.png"
    fig.savefig(path_l2, dpi=72, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path} and {path_l2}")
    return {"linear": linear_acc, "net": net_acc, "l2": l2}


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
