"""Weight initialization: each layer's activations in a 10-layer net, four ways to start.

The lecture notes' experiment: push a batch of unit-Gaussian data through ten layers of
250 units (cs231n used 500) and look at the distribution of each layer's output.

- tanh, weights N(0, 0.01^2) (too small): every layer shrinks the signal, and by layer 3
  the outputs are all near 0 (so are the gradients of the weights, which are x * dy).
- tanh, weights N(0, 1) (too large): every unit saturates at -1 or +1, where tanh's
  derivative is 0.
- tanh, Xavier (Glorot) N(0, 1/fan_avg), here 1/250: the variance that keeps a *linear*
  layer's spread. tanh shrinks every input it does not pass through unchanged, so each layer
  loses a little: 0.63 at layer 1, 0.22 at layer 10 (cs231n's notes show the same slow decay).
- tanh, Xavier with PyTorch's gain for tanh, 5/3 (``fnn.init.calculate_gain("tanh")``): the
  gain makes up for tanh's shrinking and the spread holds (0.76 at layer 1, 0.65 at 10).
- ReLU, Xavier: ReLU zeroes half its inputs, so the variance halves with each layer (the
  standard deviation shrinks by 1/sqrt(2): 0.59 at layer 1, 0.024 at layer 10).
- ReLU, He (Kaiming) N(0, 2/fan_in): the factor 2 makes up for that half, and the spread
  holds (between 0.75 and 0.98 over the ten layers).

Run: ``uv run python examples/initialization.py``. Writes initialization.png into the
current directory (or --out DIR, or $FASTNN_EXAMPLES_OUT); FASTNN_EXAMPLES_QUICK=1 uses 100
units and 200 samples.
"""

from __future__ import annotations

import os
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import fastnn as fnn  # noqa: E402

#: where a picture goes without --out or $FASTNN_EXAMPLES_OUT: the current directory
#: (``examples/gallery.py --docs`` regenerates the tracked docs/images/)
OUT = pathlib.Path(".")
LAYERS = 10

#: (row title, activation, initializer of one weight (fan_in, fan_out))
SETTINGS = [
    ("tanh, N(0, 0.01²)", "tanh", lambda w: fnn.init.normal_(w, 0.0, 0.01)),
    ("tanh, N(0, 1)", "tanh", lambda w: fnn.init.normal_(w, 0.0, 1.0)),
    ("tanh, Xavier", "tanh", lambda w: fnn.init.xavier_normal_(w)),
    ("tanh, Xavier, gain 5/3", "tanh",
     lambda w: fnn.init.xavier_normal_(w, gain=fnn.init.calculate_gain("tanh"))),
    ("ReLU, N(0, 0.01²)", "relu", lambda w: fnn.init.normal_(w, 0.0, 0.01)),
    ("ReLU, N(0, 1)", "relu", lambda w: fnn.init.normal_(w, 0.0, 1.0)),
    ("ReLU, Xavier", "relu", lambda w: fnn.init.xavier_normal_(w)),
    ("ReLU, He", "relu", lambda w: fnn.init.kaiming_normal_(w, nonlinearity="relu")),
]


def layer_outputs(activation: str, init, x: np.ndarray, width: int) -> list[np.ndarray]:
    """The output of each of the 10 layers (Linear without bias, then the activation)."""
    fnn.manual_seed(0)
    layers = []
    for _ in range(LAYERS):
        linear = fnn.Linear(width, width, bias=False, activation=activation)
        init(linear.weight)
        layers.append(linear)
    outputs = []
    h = fnn.Tensor(x)
    with fnn.no_grad():
        for layer in layers:
            h = layer(h)
            outputs.append(h.data.copy())  # a layer reuses its output buffer on the next call
    return outputs


def main(out: str | os.PathLike | None = None, quick: bool | None = None) -> dict:
    """Run every setting, print each layer's mean and standard deviation, draw histograms.

    Returns ``{row title: array (10,) of each layer's output standard deviation}``.
    """
    out = pathlib.Path(out or os.environ.get("FASTNN_EXAMPLES_OUT") or OUT)
    out.mkdir(parents=True, exist_ok=True)
    if quick is None:
        quick = os.environ.get("FASTNN_EXAMPLES_QUICK", "") not in ("", "0")
    # These matrices are small: one thread beats waking a pool, and on a busy machine a
    # parallel region waits for every thread to be scheduled (the results are the same
    # bits on any number of threads).
    fnn.set_num_threads(1)
    width, samples = (100, 200) if quick else (250, 500)
    x = np.random.default_rng(0).standard_normal((samples, width)).astype(np.float32)

    stds = {}
    fig, axes = plt.subplots(len(SETTINGS), LAYERS, figsize=(16, 12))
    print(f"{samples} samples, {LAYERS} layers of {width} units: the standard deviation of "
          "each layer's output")
    print(f"{'':24s}" + "".join(f"{f'layer {i + 1}':>10s}" for i in range(LAYERS)))
    for row, (title, activation, init) in enumerate(SETTINGS):
        outputs = layer_outputs(activation, init, x, width)
        stds[title] = np.array([o.std() for o in outputs])
        print(f"{title:24s}" + "".join(f"{s:10.3g}" for s in stds[title]))
        for k, h in enumerate(outputs):
            ax = axes[row, k]
            if activation == "tanh":
                values, bins = h.ravel(), np.linspace(-1, 1, 41)
            else:  # half of ReLU's outputs are exactly 0: draw the positive ones, and pile
                # everything beyond the range into the last bin (where N(0, 1) explodes)
                values, bins = np.minimum(h[h > 0], 3.0), np.linspace(0, 3, 41)
            counts, _ = np.histogram(values, bins=bins)  # one outline: ax.hist's bars are slow
            ax.stairs(counts, bins, fill=True, color="C0" if activation == "tanh" else "C1")
            ax.set_yticks([])
            ax.set_xticks([-1, 0, 1] if activation == "tanh" else [0, 1, 2, 3])
            ax.tick_params(labelsize=9)
            ax.text(0.97, 0.92, f"σ {stds[title][k]:.2g}", transform=ax.transAxes,
                    ha="right", va="top", fontsize=10,
                    bbox=dict(facecolor="white", alpha=0.85, edgecolor="none", pad=1))
            if row == 0:
                ax.set_title(f"layer {k + 1}", fontsize=11)
        axes[row, 0].set_ylabel(title, fontsize=11, rotation=0, ha="right", va="center")
    fig.suptitle("histograms of each layer's outputs (ReLU: the positive ones, values above 3 "
                 "in the last bin); σ: the standard deviation of all of them", fontsize=12)
    # tight_layout over 80 axes takes seconds; fixed margins do as well here
    fig.subplots_adjust(left=0.11, right=0.99, bottom=0.03, top=0.93, wspace=0.12, hspace=0.45)
    path = out / "initialization.png"
    fig.savefig(path, dpi=68)
    plt.close(fig)
    print(f"wrote {path}")
    return stds


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
