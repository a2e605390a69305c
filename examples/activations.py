"""Every activation fastnn has, and its derivative as fastnn's kernels compute it.

The lecture notes compare activations by their derivatives: sigmoid's is at most 0.25 and
vanishes where the unit saturates, tanh's reaches 1 but also saturates, ReLU's is 0 or 1
(and 0 for good once a unit "dies"), Leaky ReLU keeps a small slope for z < 0; then ELU,
GELU, Swish (SiLU) and PReLU. The derivatives drawn here are not derived in this script:
they are the local gradients ``d = dy/dz`` that fastnn's forward kernel
(``fastnn.kernels.activations.activation_forward``) writes beside the output, the numbers
the backward pass multiplies by. PReLU's slope is learned, so its kernel forms the local
gradient in the backward pass: it is taken from ``prelu_backward`` with an upstream
gradient of ones.

Run: ``uv run python examples/activations.py``. Writes activations.png into the current
directory (or --out DIR, or $FASTNN_EXAMPLES_OUT).
"""

from __future__ import annotations

import os
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fastnn.kernels import activations as K  # noqa: E402

#: where a picture goes without --out or $FASTNN_EXAMPLES_OUT: the current directory
#: (``examples/gallery.py --docs`` regenerates the tracked docs/images/)
OUT = pathlib.Path(".")

#: (title, kernel name, alpha): every activation of fastnn.kernels.activations.CODES.
ACTIVATIONS = [
    ("identity", "identity", 0.0),
    ("sigmoid", "sigmoid", 0.0),
    ("tanh", "tanh", 0.0),
    ("ReLU", "relu", 0.0),
    ("Leaky ReLU (slope 0.1)", "leaky_relu", 0.1),
    ("ELU (alpha 1)", "elu", 1.0),
    ("GELU", "gelu", 0.0),
    ("GELU (tanh approx.)", "gelu_tanh", 0.0),
    ("SiLU / Swish", "silu", 0.0),
]
PRELU_SLOPE = 0.25  # PyTorch's initial value of PReLU's learned slope


def activation_and_local_gradient(name: str, alpha: float, z: np.ndarray):
    """y = act(z) and d = act'(z), both written by fastnn's forward kernel in one pass."""
    y, d = np.empty_like(z), np.empty_like(z)
    K.activation_forward(z.size)(K.CODES[name], alpha, z, y, d)
    return y, d


def prelu_and_local_gradient(slope: float, z: np.ndarray):
    """PReLU's output (forward kernel) and local gradient (backward kernel, upstream 1)."""
    x = z.reshape(-1, 1)
    w = np.array([slope], dtype=z.dtype)
    y, dx = np.empty_like(x), np.empty_like(x)
    partial = np.empty((-(-x.shape[0] // 64), 1), dtype=z.dtype)  # the kernel's dw scratch
    K.prelu_forward(x.size)(x, w, y)
    K.prelu_backward(x.size)(np.ones_like(x), x, w, dx, partial)
    return y.reshape(-1), dx.reshape(-1)


def main(out: str | os.PathLike | None = None, quick: bool | None = None) -> dict:
    """Draw every activation and its local gradient; print both at a few points.

    Returns ``{title: (z, y, d)}`` (float64 arrays).
    """
    out = pathlib.Path(out or os.environ.get("FASTNN_EXAMPLES_OUT") or OUT)
    out.mkdir(parents=True, exist_ok=True)
    z = np.linspace(-4.0, 4.0, 801)  # float64; includes the kinks at 0 exactly
    curves = {title: (z, *activation_and_local_gradient(name, alpha, z))
              for title, name, alpha in ACTIVATIONS}
    curves[f"PReLU (slope {PRELU_SLOPE})"] = (z, *prelu_and_local_gradient(PRELU_SLOPE, z))

    points = [-3.0, -1.0, 0.0, 1.0, 3.0]
    idx = [int(np.argmin(np.abs(z - p))) for p in points]
    header = "".join(f"{f'z={p:g}':>15s}" for p in points)
    print(f"{'activation':24s}{header}   max dy/dz")
    print(f"{'':24s}" + "".join(f"{'y':>8s}{'dy/dz':>7s}" for _ in points))
    for title, (_, y, d) in curves.items():
        cells = "".join(f"{y[i]:8.3f}{d[i]:7.3f}" for i in idx)
        print(f"{title:24s}{cells}   {d.max():.3f}")

    fig, axes = plt.subplots(2, 5, figsize=(15, 6.2), sharex=True)
    for ax, (title, (zz, y, d)) in zip(axes.flat, curves.items(), strict=True):
        ax.axhline(0, color="0.8", lw=0.8)
        ax.axvline(0, color="0.8", lw=0.8)
        ax.plot(zz, y, color="C0", lw=2, label="y = f(z)")
        ax.plot(zz, d, color="C3", lw=2, ls="--", label="dy/dz (kernel's local gradient)")
        ax.set_title(title, fontsize=12)
        ax.text(0.03, 0.95, f"max dy/dz {d.max():.3g}", transform=ax.transAxes, va="top",
                fontsize=10, color="C3")
        ax.set_ylim(-1.6, 3.2)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("z")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=12, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    path = out / "activations.png"
    fig.savefig(path, dpi=72)
    plt.close(fig)
    print(f"wrote {path}")
    return curves


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
