"""fnn.draw_graph: the graph of a tensor, with values and gradients, as Graphviz DOT."""

import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fnn

graphviz = pytest.importorskip("graphviz")

NODE = re.compile(r"^\s*(t\d+) \[label=<(.*)>.*\]$")
EDGE = re.compile(r"^\s*(t\d+) -> (t\d+)$")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz's dot program is not installed")


def parse(source: str):
    """{node id: label} and the list of edges (from id, to id) of a DOT text."""
    nodes, edges = {}, []
    for line in source.splitlines():
        if m := NODE.match(line):
            nodes[m[1]] = m[2]
        elif m := EDGE.match(line):
            edges.append((m[1], m[2]))
    return nodes, edges


def by_name(nodes: dict[str, str]) -> dict[str, str]:
    """Labels keyed by the bold name at their start."""
    out = {}
    for label in nodes.values():
        if m := re.match(r"<B>(.*?)</B>", label):
            out[m[1]] = label
    return out


def scalar(v):
    return fnn.Tensor(v, requires_grad=True, dtype="float64")


def add_mul():
    x, y, z = scalar(-2.0), scalar(5.0), scalar(-4.0)
    q = x + y
    f = q * z
    f.backward()
    return f, {"x": x, "y": y, "z": z, "q": q, "f": f}


def neuron():
    w0, x0, w1, x1, w2 = scalar(2.0), scalar(-1.0), scalar(-3.0), scalar(-2.0), scalar(-3.0)
    t = w0 * x0 + w1 * x1 + w2
    f = 1.0 / (fnn.exp(t * -1.0) + 1.0)
    f.backward()
    return f, {"w0": w0, "x0": x0, "w1": w1, "x1": x1, "w2": w2, "t": t, "f": f}


def test_add_mul_circuit_has_five_nodes_and_four_edges_with_values_and_gradients():
    f, names = add_mul()
    nodes, edges = parse(fnn.draw_graph(f, names=names).source)
    assert len(nodes) == 5 and len(edges) == 4
    labels = by_name(nodes)
    ids = {name: next(k for k, v in nodes.items() if v == labels[name]) for name in names}
    assert sorted(edges) == sorted([(ids["x"], ids["q"]), (ids["y"], ids["q"]),
                                    (ids["q"], ids["f"]), (ids["z"], ids["f"])])
    # the notes' numbers: values and gradients, with the operation on the results
    for name, value, grad in (("x", "-2", "-4"), ("y", "5", "-4"), ("z", "-4", "3"),
                              ("q", "3", "-4"), ("f", "-12", "1")):
        assert f">{value}</FONT>" in labels[name], labels[name]
        assert f">grad {grad}</FONT>" in labels[name], labels[name]
    assert "add" in labels["q"] and "mul" in labels["f"]
    assert "add" not in labels["x"]


def test_sigmoid_neuron_circuit_counts_and_labels():
    f, names = neuron()
    nodes, edges = parse(fnn.draw_graph(f, names=names).source)
    # 5 inputs, 3 constants (-1, 1, 1) and 8 gates: mul, mul, add, add, mul, exp, add, div
    assert len(nodes) == 16
    assert len(edges) == 15  # every gate has two inputs except exp
    assert sum("const" in label for label in nodes.values()) == 3
    ops = [re.sub(r"<.*?>", "", label.split("<BR/>")[0]).split()[-1]
           for label in nodes.values()]
    assert sorted(op for op in ops if op in ("mul", "add", "exp", "div")) == sorted(
        ["mul", "mul", "add", "add", "mul", "exp", "add", "div"])
    labels = by_name(nodes)
    s = 1.0 / (1.0 + math.exp(-1.0))
    assert f">{s:.4g}</FONT>" in labels["f"] and "div" in labels["f"]
    assert f">grad {s * (1 - s):.4g}</FONT>" in labels["t"]  # the sigmoid gate's s(1 - s)
    assert f">grad {s * (1 - s) * -1.0:.4g}</FONT>" in labels["w0"]  # dw0 = s(1-s) x0
    assert f">grad {s * (1 - s) * 2.0:.4g}</FONT>" in labels["x0"]  # dx0 = s(1-s) w0


def test_before_backward_there_are_no_gradients_and_digits_are_honoured():
    x = scalar(1.0 / 3.0)
    g = fnn.draw_graph(x * 2.0, digits=3)
    nodes, edges = parse(g.source)
    assert len(nodes) == 3 and len(edges) == 2
    assert not any("grad" in label for label in nodes.values())
    assert any(">0.333</FONT>" in label for label in nodes.values())
    assert any(">0.667</FONT>" in label for label in nodes.values())


def test_a_value_used_twice_is_one_node_with_two_edges():
    x = scalar(3.0)
    y = x * x
    y.backward()
    nodes, edges = parse(fnn.draw_graph(y, names={"x": x}).source)
    assert len(nodes) == 2 and len(edges) == 2
    assert ">grad 6</FONT>" in by_name(nodes)["x"]


def test_tensors_show_their_shape_and_gradient_norm():
    fnn.manual_seed(0)
    layer = fnn.Linear(4, 3, activation="relu", dtype="float64")
    x = np.random.default_rng(0).standard_normal((5, 4))
    loss = fnn.losses.cross_entropy(layer(x), np.array([0, 1, 2, 0, 1]))
    loss.backward()
    names = dict(layer.named_parameters())
    nodes, edges = parse(fnn.draw_graph(loss, names=names).source)
    assert len(nodes) == 5 and len(edges) == 4  # x, W, b -> linear+relu -> loss
    labels = by_name(nodes)
    assert "shape (4, 3) float64" in labels["weight"]
    norm = np.linalg.norm(layer.weight.grad)
    assert f"grad norm {norm:.4g}" in labels["weight"]
    assert any("linear+relu" in v and "shape (5, 3)" in v for v in nodes.values())
    assert any("cross_entropy" in v for v in nodes.values())


def test_a_leaf_without_history_is_one_node():
    nodes, edges = parse(fnn.draw_graph(fnn.Tensor([1.0, 2.0])).source)
    assert len(nodes) == 1 and not edges
    with fnn.no_grad():
        nodes, _ = parse(fnn.draw_graph(scalar(1.0) * 2.0).source)
    assert len(nodes) == 1  # made under no_grad: no parents recorded


def test_op_and_parents_properties():
    f, names = add_mul()
    assert f.op == "mul" and f.parents == (names["q"], names["z"])
    assert names["x"].op == "" and names["x"].parents == ()


def test_bad_arguments_raise():
    with pytest.raises(TypeError, match="tensor must be a fastnn Tensor"):
        fnn.draw_graph(np.ones(2))
    with pytest.raises(TypeError, match=r"names\['x'\]"):
        fnn.draw_graph(scalar(1.0), names={"x": 1.0})
    with pytest.raises(ValueError, match="rankdir"):
        fnn.draw_graph(scalar(1.0), rankdir="up")
    with pytest.raises(ValueError, match="digits"):
        fnn.draw_graph(scalar(1.0), digits=0)


def test_the_result_is_a_graphviz_digraph():
    f, names = add_mul()
    g = fnn.draw_graph(f, names=names, rankdir="TB")
    assert isinstance(g, graphviz.Digraph)
    assert "rankdir=TB" in g.source


@needs_dot
@pytest.mark.parametrize("fmt, magic", [("svg", b"<svg"), ("png", b"\x89PNG")])
def test_render(tmp_path, fmt, magic):
    f, names = neuron()
    path = fnn.draw_graph(f, names=names).render(tmp_path / "neuron", format=fmt)
    data = open(path, "rb").read()
    assert magic in data[:400]
    if fmt == "svg":
        text = data.decode()
        assert text.count('class="node"') == 16 and text.count('class="edge"') == 15
        assert "grad 0.3932" in text  # dx0, as the notes' 0.39


def test_missing_dot_says_how_to_install_it(tmp_path, monkeypatch):
    f, names = add_mul()
    g = fnn.draw_graph(f, names=names)
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    with pytest.raises(graphviz.ExecutableNotFound) as info:
        g.render(tmp_path / "graph", format="svg")
    message = str(info.value)
    assert "apt-get install graphviz" in message and "brew install graphviz" in message
    with pytest.raises(graphviz.ExecutableNotFound, match="apt-get install graphviz"):
        g.pipe(format="svg")
    assert "digraph" in g.source  # the DOT text needs no dot


def test_import_is_lazy_and_a_missing_package_names_the_extra():
    code = (
        "import sys\n"
        "import fastnn as fnn\n"
        "assert 'graphviz' not in sys.modules, 'import fastnn imported graphviz'\n"
        "sys.modules['graphviz'] = None  # as if it were not installed\n"
        "try:\n"
        "    fnn.draw_graph(fnn.Tensor(1.0))\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "pip install 'fastnn[viz]'" in out
