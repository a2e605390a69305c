"""The lecture notes' two circuits, forward and backward, printed and drawn.

1. f = (x + y) * z at x = -2, y = 5, z = -4: q = x + y = 3, f = -12; backward, the mul gate
   switches (df/dz = q = 3, df/dq = z = -4) and the add gate distributes (df/dx = df/dy = -4).
2. The sigmoid neuron f = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) at w = (2, -3, -3),
   x = (-1, -2), gate by gate as in the notes (values 1.37, 0.37, -1.00 ...; gradients
   -0.53, -0.20 ...), and the same neuron with one sigmoid gate, whose local gradient
   s (1 - s) = 0.20 is all the backward pass needs.

Run: ``uv run python examples/circuits.py``. Writes circuit_add_mul.{svg,png} and
circuit_neuron.{svg,png} into the current directory (or --out DIR, or $FASTNN_EXAMPLES_OUT)
where Graphviz's ``dot`` program exists, and the DOT text (``.gv``) where it does not.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import fastnn as fnn

#: where a picture goes without --out or $FASTNN_EXAMPLES_OUT: the current directory
#: (``examples/gallery.py --docs`` regenerates the tracked docs/images/)
OUT = pathlib.Path(".")


def scalar(value: float) -> fnn.Tensor:
    return fnn.Tensor(value, requires_grad=True, dtype="float64")


def add_mul() -> dict[str, fnn.Tensor]:
    """f = (x + y) * z, the notes' first example."""
    x, y, z = scalar(-2.0), scalar(5.0), scalar(-4.0)
    q = x + y
    f = q * z
    f.backward()
    return {"x": x, "y": y, "z": z, "q": q, "f": f}


def neuron() -> dict[str, fnn.Tensor]:
    """The 2-input sigmoid neuron, one gate per step as the notes draw it."""
    w0, x0, w1, x1, w2 = scalar(2.0), scalar(-1.0), scalar(-3.0), scalar(-2.0), scalar(-3.0)
    w0x0 = w0 * x0
    w1x1 = w1 * x1
    s = w0x0 + w1x1
    t = s + w2  # the neuron's input, w . x + b
    neg = t * -1.0  # the notes' "*-1" gate
    e = fnn.exp(neg)
    den = e + 1.0
    f = 1.0 / den  # the notes' "1/x" gate
    f.backward()
    return {"w0": w0, "x0": x0, "w1": w1, "x1": x1, "w2": w2, "w0*x0": w0x0,
            "w1*x1": w1x1, "sum": s, "t": t, "-t": neg, "exp": e, "1+exp": den, "f": f}


def neuron_sigmoid_gate() -> dict[str, fnn.Tensor]:
    """The same neuron with the four last gates as one sigmoid gate."""
    w0, x0, w1, x1, w2 = scalar(2.0), scalar(-1.0), scalar(-3.0), scalar(-2.0), scalar(-3.0)
    t = w0 * x0 + w1 * x1 + w2
    f = fnn.sigmoid(t)
    f.backward()
    return {"w0": w0, "x0": x0, "w1": w1, "x1": x1, "w2": w2, "t": t, "f": f}


def print_circuit(title: str, tensors: dict[str, fnn.Tensor]) -> None:
    print(title)
    print(f"  {'node':8s} {'value':>9s} {'gradient':>9s}")
    for name, t in tensors.items():
        print(f"  {name:8s} {t.item():9.2f} {t.grad.item():9.2f}")


def draw(tensors: dict[str, fnn.Tensor], out: pathlib.Path, stem: str) -> list[pathlib.Path]:
    """Draw the graph of the last tensor; SVG and PNG where ``dot`` exists, else DOT text."""
    root = list(tensors.values())[-1]
    graph = fnn.draw_graph(root, names=tensors)
    if shutil.which("dot") is None:
        path = out / f"{stem}.gv"
        path.write_text(graph.source, encoding="utf-8")
        print(f"  Graphviz's dot is not installed: wrote the DOT text to {path}")
        return [path]
    paths = []
    for fmt in ("svg", "png"):
        if fmt == "png":
            graph.graph_attr["dpi"] = "110"
        paths.append(pathlib.Path(graph.render(out / stem, format=fmt, cleanup=True)))
    print("  drew " + ", ".join(str(p) for p in paths))
    return paths


def main(out: str | os.PathLike | None = None, quick: bool | None = None) -> dict:
    """Compute, print and draw both circuits. ``quick`` changes nothing here (it is fast).

    Returns the values and gradients by node name, and the files written.
    """
    out = pathlib.Path(out or os.environ.get("FASTNN_EXAMPLES_OUT") or OUT)
    out.mkdir(parents=True, exist_ok=True)
    circuits = {"add_mul": add_mul(), "neuron": neuron(), "sigmoid_gate": neuron_sigmoid_gate()}
    print_circuit("f = (x + y) * z", circuits["add_mul"])
    print_circuit("f = 1 / (1 + exp(-(w0*x0 + w1*x1 + w2))), gate by gate", circuits["neuron"])
    gate = circuits["sigmoid_gate"]
    s = gate["f"].item()
    print_circuit("the same neuron with one sigmoid gate", gate)
    print(f"  sigmoid gate: local gradient s (1 - s) = {s:.4f} * {1 - s:.4f} = {s * (1 - s):.4f}"
          f" = df/dt")
    files = draw(circuits["add_mul"], out, "circuit_add_mul")
    files += draw(circuits["neuron"], out, "circuit_neuron")
    return {
        "values": {c: {k: t.item() for k, t in ts.items()} for c, ts in circuits.items()},
        "grads": {c: {k: t.grad.item() for k, t in ts.items()} for c, ts in circuits.items()},
        "files": files,
    }


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
