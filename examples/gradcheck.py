"""Gradient checking: every layer and loss against centred differences, in float64.

The lecture notes: the numerical gradient (f(x + h) - f(x - h)) / 2h is slow and only
approximate, the analytic gradient of backpropagation is exact and fast, so one trains with
the analytic gradient and checks it against the numerical one. The table does that for
every fastnn layer and loss, in float64, for the input and every parameter: the error is
max |a - n| / max(max |a|, max |n|) over an input's elements, the difference measured
against the gradient's own scale (a correct gradient gives 1e-8 or less, a wrong one 1e-2
or more; an element-by-element relative error would also flag an element whose true
gradient is nearly 0, such as BatchNorm's where its terms cancel, as rounding noise over
a tiny number). The last column is ``fnn.gradcheck``'s verdict for the same function.

The picture shows why the check is done with the centred formula, in float64, and with
h near 1e-6 (fastnn's default): the error of the difference quotient against the analytic
gradient as h sweeps from 1e-1 to 1e-13. Too large an h leaves the truncation error of
the Taylor expansion (proportional to h for the one-sided formula, h^2 for the centred
one); too small an h leaves the rounding error of f, about machine epsilon / h, which in
float32 (epsilon 1.2e-7) swamps the check at any h.

Run: ``uv run python examples/gradcheck.py``. Writes gradcheck.png into the current
directory (or --out DIR, or $FASTNN_EXAMPLES_OUT); FASTNN_EXAMPLES_QUICK=1 sweeps fewer step
sizes.
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
F64 = "float64"
ACTS = ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu")


def layers() -> list[tuple[str, object]]:
    """Every layer, with parameters in float64; random ones re-made with a fixed seed per
    call, so that each evaluation of the check sees the same mask or noise."""
    fnn.manual_seed(0)
    return [
        ("Linear", fnn.Linear(5, 3, dtype=F64)),
        *[(f"Linear(activation={a!r})", fnn.Linear(5, 3, activation=a, dtype=F64))
          for a in ACTS],
        ("BatchNorm1d (training)", fnn.BatchNorm1d(5, dtype=F64)),
        ("BatchNorm1d + ReLU (fused)", fnn.Sequential(fnn.BatchNorm1d(5, dtype=F64),
                                                      fnn.ReLU())),
        ("BatchNorm1d (evaluation)", fnn.BatchNorm1d(5, dtype=F64).eval()),
        ("ReLU", fnn.ReLU()),
        ("LeakyReLU(0.1)", fnn.LeakyReLU(0.1)),
        ("ELU", fnn.ELU()),
        ("Sigmoid", fnn.Sigmoid()),
        ("Tanh", fnn.Tanh()),
        ("GELU", fnn.GELU()),
        ("GELU(approximate='tanh')", fnn.GELU("tanh")),
        ("SiLU", fnn.SiLU()),
        ("PReLU(5)", fnn.PReLU(5, dtype=F64)),
        ("Maxout(5, 3, pieces=3)", fnn.Maxout(5, 3, pieces=3, dtype=F64)),
        ("Dropout(0.5)", lambda x: fnn.Dropout(0.5, seed=1)(x)),
        ("GaussianNoise(0.3)", lambda x: fnn.GaussianNoise(0.3, seed=1)(x)),
        ("Flatten", fnn.Flatten()),
        ("Identity", fnn.Identity()),
    ]


def losses(labels: np.ndarray, shape: tuple[int, int]) -> list[tuple[str, object]]:
    rng = np.random.default_rng(1)
    target = rng.standard_normal(shape)
    probabilities = rng.uniform(0.0, 1.0, shape)
    return [
        ("cross_entropy", lambda z: fnn.losses.cross_entropy(z, labels)),
        ("multiclass_hinge", lambda z: fnn.losses.multiclass_hinge(z, labels)),
        ("mse_loss", lambda z: fnn.losses.mse_loss(z, target)),
        ("binary_cross_entropy_with_logits",
         lambda z: fnn.losses.binary_cross_entropy_with_logits(z, probabilities)),
    ]


def numerical_gradient(f, x: np.ndarray, h: float, centred: bool = True) -> np.ndarray:
    """(f(x + h e_i) - f(x - h e_i)) / 2h for every element i of x (one-sided:
    (f(x + h e_i) - f(x)) / h); ``x`` is nudged in place and restored."""
    flat = x.reshape(-1)  # a view
    grad = np.empty(flat.size)
    f0 = None if centred else f()
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f() if centred else None
        flat[i] = old
        grad[i] = (up - down) / (2 * h) if centred else (up - f0) / h
    return grad.reshape(x.shape)


def scaled_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |a - n| / max(max |a|, max |n|): the error against the gradient's scale."""
    scale = max(np.abs(analytic).max(), np.abs(numeric).max(), 1e-300)
    return float(np.abs(analytic - numeric).max() / scale)


def check(fn, x: np.ndarray, params, h: float = 1e-6) -> tuple[float, bool]:
    """Backpropagation against centred differences for ``fn(x)`` with respect to ``x`` and
    ``params``; a non-scalar output is reduced to sum(out * r) with a fixed random r."""
    x = x.copy()
    with fnn.no_grad():
        shape = fn(x).shape
    r = np.random.default_rng(3).standard_normal(shape)

    def scalar(v):
        out = fn(v)
        return out if out.shape == () or out.data.size == 1 else (out * r).sum()

    xt = fnn.Tensor(x, requires_grad=True)
    for p in params:
        p.grad = None
    scalar(xt).backward()
    analytic = [xt.grad.copy(), *[p.grad.copy() for p in params]]

    def value():
        with fnn.no_grad():
            return scalar(x).item()

    numeric = [numerical_gradient(value, x, h),
               *[numerical_gradient(value, p.data, h) for p in params]]
    error = max(scaled_error(a, n) for a, n in zip(analytic, numeric, strict=True))
    verdict = fnn.gradcheck(lambda v, *ps: fn(v), [x, *params], eps=h,
                            raise_exception=False).ok
    return error, verdict


def check_all() -> dict[str, tuple[float, bool]]:
    """Each layer's and loss's error (input and parameters) and fnn.gradcheck's verdict."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5))
    labels = np.array([0, 1, 2, 0, 1, 2])
    results = {}
    for name, module in layers():
        params = list(module.parameters()) if isinstance(module, fnn.Module) else []
        results[name] = check(module, x, params)
    for name, fn in losses(labels, (6, 3)):
        results[name] = check(fn, rng.standard_normal((6, 3)), [])
    return results


def sweep(hs: np.ndarray) -> dict[str, np.ndarray]:
    """The error of one-sided and centred differences against backpropagation at each
    step size h, for a small network's loss with respect to its input, in float64 and in
    float32 (where the function itself is computed in float32)."""
    labels = np.array([0, 2, 1, 2])
    x64 = np.random.default_rng(2).standard_normal((4, 4))
    curves = {}
    for dtype in ("float64", "float32"):
        fnn.manual_seed(0)
        net = fnn.Sequential(fnn.Linear(4, 5, activation="tanh", dtype=dtype),
                             fnn.Linear(5, 3, dtype=dtype))
        x = x64.astype(dtype)
        xt = fnn.Tensor(x.copy(), requires_grad=True)
        fnn.losses.cross_entropy(net(xt), labels).backward()
        analytic = xt.grad.astype(np.float64)

        def value(net=net, x=x):
            with fnn.no_grad():
                return fnn.losses.cross_entropy(net(x), labels).item()

        for centred in (False, True):
            name = f"{'centred' if centred else 'one-sided'}, {dtype}"
            curves[name] = np.array([
                scaled_error(analytic, numerical_gradient(value, x, float(h), centred))
                for h in hs])
    return curves


def main(out: str | os.PathLike | None = None, quick: bool | None = None) -> dict:
    """Print the table of relative errors and draw the sweep over h.

    Returns ``{"errors": {check: error}, "gradcheck": {check: passed}, "h": hs,
    "sweep": {curve: errors}}``.
    """
    out = pathlib.Path(out or os.environ.get("FASTNN_EXAMPLES_OUT") or OUT)
    out.mkdir(parents=True, exist_ok=True)
    if quick is None:
        quick = os.environ.get("FASTNN_EXAMPLES_QUICK", "") not in ("", "0")
    fnn.set_num_threads(1)  # tiny arrays: one thread beats waking a pool (same bits)
    results = check_all()
    errors = {name: err for name, (err, _) in results.items()}
    width = max(map(len, errors))
    print(f"{'layer / loss (float64, h = 1e-6)':<{width}}  {'error':>8s}  fnn.gradcheck")
    for name, (err, ok) in results.items():
        print(f"{name:<{width}}  {err:8.1e}  {'passed' if ok else 'FAILED'}")

    hs = np.logspace(-1, -13, 7 if quick else 13)
    curves = sweep(hs)
    print("step size h against the error (2-layer net's loss, gradient of its input):")
    print(f"{'h':>8s}" + "".join(f"{k:>20s}" for k in curves))
    for i, h in enumerate(hs):
        print(f"{h:8.0e}" + "".join(f"{v[i]:20.2e}" for v in curves.values()))

    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"one-sided, float64": ("C0", "-", "o"), "centred, float64": ("C3", "-", "o"),
              "one-sided, float32": ("C0", "--", "s"), "centred, float32": ("C3", "--", "s")}
    for name, errs in curves.items():
        color, ls, marker = styles[name]
        ax.loglog(hs, np.maximum(errs, 1e-16), color=color, ls=ls, marker=marker, ms=4,
                  label=name)
    ax.axvline(1e-6, color="0.6", lw=1)
    ax.text(1e-6, 3e-12, " fastnn's default h = 1e-6", fontsize=10, color="0.3")
    ax.text(2e-4, 1.5e-6, "truncation ∝ h", color="C0", fontsize=10)
    ax.text(3e-2, 1e-9, "truncation ∝ h²", color="C3", fontsize=10)
    ax.text(1e-9, 1e-7, "rounding ∝ ε / h", color="0.3", fontsize=10)
    ax.invert_xaxis()
    ax.set_xlabel("step size h")
    ax.set_ylabel("error against backpropagation")
    ax.set_title("numerical against analytic gradient, as h shrinks", fontsize=12)
    ax.set_ylim(1e-12, 10)
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=10, loc="lower right")
    fig.tight_layout()
    path = out / "gradcheck.png"
    fig.savefig(path, dpi=72)
    plt.close(fig)
    print(f"wrote {path}")
    return {"errors": errors, "gradcheck": {k: ok for k, (_, ok) in results.items()},
            "h": hs, "sweep": curves}


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
