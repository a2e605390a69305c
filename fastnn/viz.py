"""Pictures of computations: ``draw_graph`` draws the graph that produced a tensor.

The drawing follows the lecture notes' circuit diagrams: the forward pass runs left to
right, each node carries its value (green) and, once ``backward()`` has run, its gradient
(red). It is built from the public :attr:`Tensor.op` and :attr:`Tensor.parents` alone.

The ``graphviz`` Python package (``pip install 'fastnn[viz]'``) is imported when a graph is
drawn, not when fastnn is imported. Building the graph and reading its DOT text
(``.source``) need nothing else; rendering it (``.render``, ``.pipe``, Jupyter's inline
display) runs Graphviz's ``dot`` program, a separate system package.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import numpy as np

from .graph import Tensor

#: How to get the ``dot`` program, for the error raised when it is missing.
DOT_INSTALL_HINT = (
    "Graphviz's `dot` program was not found on PATH; it renders the graph. Install it with "
    "`apt-get install graphviz` (Debian, Ubuntu), `brew install graphviz` (macOS) or "
    "`conda install -c conda-forge graphviz`, or see https://graphviz.org/download/. "
    "Without it, `draw_graph(t).source` still gives the DOT text."
)

_VALUE_COLOR = "#1a7f37"  # the notes draw values in green
_GRAD_COLOR = "#cf222e"  # and gradients in red

_graph_class = None


def _graphviz():
    try:
        import graphviz
    except ImportError as exc:
        raise ImportError(
            "fastnn.draw_graph needs the graphviz Python package: pip install 'fastnn[viz]' "
            "(or pip install graphviz)"
        ) from exc
    return graphviz


def _digraph_class():
    """A ``graphviz.Digraph`` whose rendering says how to install ``dot`` when it is missing.

    Made on first use, so that ``import fastnn`` never imports graphviz.
    """
    global _graph_class
    if _graph_class is not None:
        return _graph_class
    graphviz = _graphviz()

    class DotNotFoundError(graphviz.ExecutableNotFound):
        """``graphviz.ExecutableNotFound`` with the way to install Graphviz in its message."""

        def __init__(self, message: str):
            RuntimeError.__init__(self, message)

    def _explained(method):
        def wrapper(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except graphviz.ExecutableNotFound as exc:
                if isinstance(exc, DotNotFoundError):
                    raise
                raise DotNotFoundError(f"{DOT_INSTALL_HINT} ({exc})") from exc

        wrapper.__name__ = method.__name__
        wrapper.__doc__ = method.__doc__
        return wrapper

    class Digraph(graphviz.Digraph):
        __doc__ = graphviz.Digraph.__doc__
        render = _explained(graphviz.Digraph.render)
        pipe = _explained(graphviz.Digraph.pipe)
        unflatten = _explained(graphviz.Digraph.unflatten)

    Digraph.__module__ = __name__
    Digraph.__qualname__ = "Digraph"
    Digraph.DotNotFoundError = DotNotFoundError
    _graph_class = Digraph
    return Digraph


def _walk(root: Tensor) -> list[Tensor]:
    """Every tensor ``root`` depends on, each after all of its inputs (leaves first)."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for parent in reversed(node.parents):
            if id(parent) not in seen:
                stack.append((parent, False))
    return order


def _number(v: float, digits: int) -> str:
    return f"{v:.{digits}g}"


def _label(t: Tensor, name: str | None, digits: int) -> str:
    """An HTML-like Graphviz label: name and operation, value, gradient."""
    head = []
    if name:
        head.append(f"<B>{html.escape(name)}</B>")
    if t.op and t.op != name:
        head.append(html.escape(t.op))
    elif not name:
        head.append("input" if t.requires_grad else "const")
    lines = [" ".join(head)]
    if t.data.size == 1:
        value = _number(float(t.data.reshape(-1)[0]), digits)
    else:
        value = f"shape {tuple(t.shape)} {t.dtype}"
    lines.append(f'<FONT COLOR="{_VALUE_COLOR}">{html.escape(value)}</FONT>')
    if t.grad is not None:
        g = np.asarray(t.grad)
        if g.size == 1:
            grad = "grad " + _number(float(g.reshape(-1)[0]), digits)
        else:
            grad = "grad norm " + _number(float(np.linalg.norm(g.astype(np.float64))), digits)
        lines.append(f'<FONT COLOR="{_GRAD_COLOR}">{html.escape(grad)}</FONT>')
    return "<" + "<BR/>".join(lines) + ">"


def draw_graph(
    tensor: Tensor,
    names: Mapping[str, Tensor] | None = None,
    rankdir: str = "LR",
    digits: int = 4,
):
    """The graph of operations that produced ``tensor``, as a ``graphviz.Digraph``.

    One node per tensor: per operation (labelled with its name, as :attr:`Tensor.op`) and
    per leaf (an input that requires grad, or a constant), each with its value (for a
    one-element tensor; the shape and dtype otherwise) and, when ``.grad`` is set (after
    ``backward()``), its gradient (its norm for a larger tensor). One edge per input of each
    operation, from the input to the result (an input used twice gives two edges).

    Parameters
    ----------
    tensor : Tensor
        The result whose history to draw (for example a loss).
    names : mapping of str to Tensor, optional
        Names to show on the tensors, such as ``{"x": x, "q": q}`` or
        ``dict(model.named_parameters())``.
    rankdir : "LR" (the forward pass left to right, as in the lecture notes) or "TB".
    digits : significant digits of the values and gradients shown.

    Returns
    -------
    graphviz.Digraph
        Shown inline by Jupyter. ``.source`` is the DOT text; ``.render(path,
        format="svg")`` (or ``"png"``) writes a picture and needs Graphviz's ``dot`` program:
        where it is missing the error (a ``graphviz.ExecutableNotFound``) says how to
        install it.

    Raises
    ------
    ImportError
        If the graphviz Python package is missing (``pip install 'fastnn[viz]'``).
    TypeError
        If ``tensor`` or a value of ``names`` is not a fastnn Tensor.

    Examples
    --------
    >>> import fastnn as fnn
    >>> x, y = fnn.Tensor(-2.0, requires_grad=True), fnn.Tensor(5.0, requires_grad=True)
    >>> z = fnn.Tensor(-4.0, requires_grad=True)
    >>> f = (x + y) * z
    >>> f.backward()
    >>> g = fnn.draw_graph(f, names={"x": x, "y": y, "z": z, "f": f})
    >>> g.source.count("->")
    4
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"draw_graph: tensor must be a fastnn Tensor, got {type(tensor).__name__}")
    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"draw_graph: rankdir must be 'LR', 'TB', 'RL' or 'BT', got {rankdir!r}")
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or digits < 1:
        raise ValueError(f"draw_graph: digits must be a positive integer, got {digits!r}")
    name_of: dict[int, str] = {}
    for key, t in (names or {}).items():
        if not isinstance(t, Tensor):
            raise TypeError(
                f"draw_graph: names[{key!r}] must be a fastnn Tensor, got {type(t).__name__}"
            )
        name_of[id(t)] = str(key)

    order = _walk(tensor)
    node_id = {id(t): f"t{i}" for i, t in enumerate(order)}
    g = _digraph_class()(
        graph_attr={"rankdir": rankdir},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                   "fontsize": "11", "fillcolor": "white"},
        edge_attr={"color": "#57606a"},
    )
    for t in order:
        attrs = {}
        if not t.op:
            attrs = ({"fillcolor": "#ddf4ff"} if t.requires_grad
                     else {"fillcolor": "#f6f8fa", "style": "rounded,filled,dashed"})
        g.node(node_id[id(t)], _label(t, name_of.get(id(t)), digits), **attrs)
    for t in order:
        for parent in t.parents:
            g.edge(node_id[id(parent)], node_id[id(t)])
    return g


__all__ = ["DOT_INSTALL_HINT", "draw_graph"]
