"""SGD, momentum, Nesterov, Adagrad, RMSprop and Adam on two 2-D loss surfaces.

Each optimizer is ``fastnn.optim``'s, stepping one 2-element Parameter ``p = (x, y)`` whose
loss ``f(p)`` is built from fastnn tensor operations and differentiated by ``backward()``.

- A long narrow valley, f = 0.01 x^2 + y^2 (curvature 100 times larger across than along):
  plain SGD at nearly the largest rate that stays stable across the valley zigzags and
  crawls along it; momentum builds up speed along the floor but keeps swinging across it,
  and Nesterov's look-ahead damps the swing; Adagrad, RMSprop and Adam rescale each
  coordinate by its gradient history (per-parameter rates) and head for the floor at once.
- A saddle point, f = x^2 - y^2, started almost on the ridge (y = 0.001): the gradient
  across the ridge is tiny, so SGD lingers near the saddle; momentum escapes sooner; the
  adaptive methods divide the tiny gradient by its own size and leave at once.

Run: ``uv run python examples/optimizers.py``. Writes optimizers.png and the animation
optimizers.gif into the current directory (or --out DIR, or $FASTNN_EXAMPLES_OUT);
FASTNN_EXAMPLES_QUICK=1 draws a GIF of a few frames only.
"""

from __future__ import annotations

import os
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402

import fastnn as fnn  # noqa: E402

#: where a picture goes without --out or $FASTNN_EXAMPLES_OUT: the current directory
#: (``examples/gallery.py --docs`` regenerates the tracked docs/images/)
OUT = pathlib.Path(".")

#: name -> (optimizer class, options on the valley, options on the saddle). On the valley,
#: SGD's rate is near the largest that is stable across it (2 / curvature 2 = 1); with
#: momentum 0.9 a rate of 0.3 is stable and Nesterov's look-ahead damps the overshoot.
#: On the saddle every method starts with small steps.
OPTIMIZERS = {
    "SGD": (fnn.optim.SGD, dict(lr=0.9), dict(lr=0.05)),
    "Momentum": (fnn.optim.SGD, dict(lr=0.3, momentum=0.9), dict(lr=0.05, momentum=0.9)),
    "Nesterov": (fnn.optim.SGD, dict(lr=0.3, momentum=0.9, nesterov=True),
                 dict(lr=0.05, momentum=0.9, nesterov=True)),
    "Adagrad": (fnn.optim.Adagrad, dict(lr=1.0), dict(lr=0.1)),
    "RMSprop": (fnn.optim.RMSprop, dict(lr=0.05), dict(lr=0.02)),
    "Adam": (fnn.optim.Adam, dict(lr=0.3), dict(lr=0.05)),
}
COLORS = dict(zip(OPTIMIZERS, ["C0", "C1", "C2", "C4", "C5", "C3"], strict=True))

#: name -> (coefficients c of f = c0 x^2 + c1 y^2, start, plot box (x0, x1, y0, y1), steps)
SURFACES = {
    "valley": ((0.01, 1.0), (-9.0, 1.5), (-10.0, 2.0, -2.0, 2.0), 60),
    "saddle": ((1.0, -1.0), (-1.0, 1e-3), (-1.2, 1.2, -1.2, 1.2), 60),
}
TITLES = {"valley": "long narrow valley  f = 0.01 x² + y²",
          "saddle": "saddle point  f = x² − y²"}


def run(name: str, surface: str) -> np.ndarray:
    """The path (steps + 1, 2) of optimizer ``name`` on ``surface``; a path that leaves the
    plot box (the saddle has no minimum) stops there."""
    cls, on_valley, on_saddle = OPTIMIZERS[name]
    options = on_valley if surface == "valley" else on_saddle
    coef, start, box, steps = SURFACES[surface]
    c = fnn.Tensor(np.array(coef))
    p = fnn.Parameter(np.array(start, dtype=np.float64))
    opt = cls([p], **options)
    path = [p.data.copy()]
    for _ in range(steps):
        opt.zero_grad()
        loss = (p * p * c).sum()
        loss.backward()
        opt.step()
        path.append(p.data.copy())
        x, y = p.data
        if not (box[0] <= x <= box[1] and box[2] <= y <= box[3]):
            break
    return np.array(path)


def surface_value(surface: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    (a, b), *_ = SURFACES[surface]
    return a * x * x + b * y * y


def draw_background(ax, surface: str) -> None:
    coef, start, box, _ = SURFACES[surface]
    xs, ys = np.meshgrid(np.linspace(box[0], box[1], 300), np.linspace(box[2], box[3], 200))
    f = surface_value(surface, xs, ys)
    levels = np.linspace(f.min(), f.max(), 25)
    ax.contour(xs, ys, f, levels=levels, cmap="Greys", linewidths=0.7, alpha=0.6)
    ax.plot(*start, "ko", ms=5)
    ax.set_xlim(box[0], box[1])
    ax.set_ylim(box[2], box[3])
    ax.set_title(TITLES[surface], fontsize=12)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def static_picture(paths: dict, path: pathlib.Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, surface in zip(axes, SURFACES, strict=True):
        draw_background(ax, surface)
        for name in OPTIMIZERS:
            xy = paths[surface][name]
            ax.plot(xy[:, 0], xy[:, 1], "-", color=COLORS[name], lw=1.8, marker=".", ms=4,
                    label=name)
    axes[0].plot(0, 0, "k*", ms=12)
    axes[1].legend(loc="lower center", ncol=2, fontsize=11, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def animation(paths: dict, path: pathlib.Path, frames: int, dpi: int = 72) -> None:
    """The paths growing step by step, as a GIF written by matplotlib's PillowWriter.

    Redrawing contours and axes for every frame takes ~0.3 s a frame, so the still parts
    are drawn once into an image and each frame only draws that image and the paths
    (in the image's pixel coordinates).
    """
    still, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=dpi)
    for ax, surface in zip(axes, SURFACES, strict=True):
        draw_background(ax, surface)
    for name in OPTIMIZERS:
        axes[1].plot([], [], color=COLORS[name], lw=2, label=name)
    axes[1].legend(loc="lower center", ncol=2, fontsize=9, framealpha=0.9)
    still.tight_layout()
    still.canvas.draw()
    background = np.asarray(still.canvas.buffer_rgba()).copy()
    pixels = {(surface, name): ax.transData.transform(xy)
              for ax, surface in zip(axes, SURFACES, strict=True)
              for name, xy in paths[surface].items()}
    boxes = [ax.bbox.frozen() for ax in axes]
    plt.close(still)

    height, width = background.shape[:2]
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = fig.add_axes((0, 0, 1, 1))
    canvas.imshow(background, extent=(0, width, 0, height), interpolation="nearest")
    canvas.set_xlim(0, width)
    canvas.set_ylim(0, height)
    canvas.set_axis_off()
    lines = {}
    for surface, name in pixels:
        (line,) = canvas.plot([], [], "-", color=COLORS[name], lw=2)
        line.set_clip_box(boxes[list(SURFACES).index(surface)])
        lines[surface, name] = line
    longest = max(len(xy) for xy in pixels.values())
    ends = np.linspace(1, longest, frames).round().astype(int)

    def update(k):
        for key, line in lines.items():
            xy = pixels[key][: ends[k]]
            line.set_data(xy[:, 0], xy[:, 1])
        return list(lines.values())

    anim = FuncAnimation(fig, update, frames=frames, blit=False)
    anim.save(path, writer=PillowWriter(fps=10), dpi=dpi)
    plt.close(fig)


def main(out: str | os.PathLike | None = None, quick: bool | None = None) -> dict:
    """Run every optimizer on both surfaces, print how far each got, draw the paths.

    Returns ``{surface: {optimizer: path (steps + 1, 2)}}``.
    """
    out = pathlib.Path(out or os.environ.get("FASTNN_EXAMPLES_OUT") or OUT)
    out.mkdir(parents=True, exist_ok=True)
    if quick is None:
        quick = os.environ.get("FASTNN_EXAMPLES_QUICK", "") not in ("", "0")
    paths = {s: {n: run(n, s) for n in OPTIMIZERS} for s in SURFACES}

    print("long narrow valley, f = 0.01 x^2 + y^2, from (-9, 1.5): f after 10, 30, 60 steps")
    for name, (_, options, _) in OPTIMIZERS.items():
        xy = paths["valley"][name]
        f = surface_value("valley", xy[:, 0], xy[:, 1])
        opts = ", ".join(f"{k}={v}" for k, v in options.items())
        print(f"  {name:9s} {opts:36s} {f[10]:9.2e} {f[30]:9.2e} {f[60]:9.2e}")
    print("saddle, f = x^2 - y^2, from (-1, 0.001): steps until |y| > 1.2 (leaving the plot)")
    for name, (_, _, options) in OPTIMIZERS.items():
        xy = paths["saddle"][name]
        left = abs(xy[-1, 1]) > 1.2
        opts = ", ".join(f"{k}={v}" for k, v in options.items())
        print(f"  {name:9s} {opts:36s} {len(xy) - 1 if left else 'stays':>5}   (y after 10 steps: "
              f"{xy[min(10, len(xy) - 1), 1]:.3g})")

    png, gif = out / "optimizers.png", out / "optimizers.gif"
    static_picture(paths, png)
    animation(paths, gif, frames=4 if quick else 30)
    print(f"wrote {png} and {gif}")
    return paths


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
