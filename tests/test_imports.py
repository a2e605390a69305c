"""The house rule of DESIGN.md: imports point down the layers, and no module imports in a circle.

Every module under ``fastnn/`` and ``kernels/`` (shipped as ``fastnn.kernels``) is parsed
with ``ast``, every ``import`` and ``from ... import`` is collected, including those inside
functions and methods (an import in a function is still a dependency: the issue that asked
for this test found three circles closed that way), and the graph of fastnn's modules is
checked: no cycle, and no import of a higher layer. Nothing is imported, so the test is
fast and sees optional code paths too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: DESIGN.md's order of layers, lowest first: kernels <- graph <- nn/losses/optim <-
#: data/tabular <- train/compiled <- sklearn/distributed/interop/recipes <- cli. A module
#: may import its own layer or lower ones (within a layer, the cycle check keeps order).
#: Keys are module names or package prefixes ("fastnn.nn." covers every module of fastnn.nn).
LAYERS = {
    0: ["fastnn.kernels", "fastnn.kernels."],
    1: ["fastnn.graph", "fastnn._dtype", "fastnn._buffers", "fastnn.random",
        "fastnn._functions", "fastnn._threads", "fastnn._bytecode"],
    2: ["fastnn.nn", "fastnn.nn.", "fastnn.losses", "fastnn.optim", "fastnn.optim.",
        "fastnn.init", "fastnn.gradcheck", "fastnn.autograd"],
    3: ["fastnn.data", "fastnn.safeload", "fastnn.datasets", "fastnn.tabular", "fastnn.tasks",
        "fastnn._arrow",
        "fastnn.checkpoint", "fastnn.utils", "fastnn.utils."],
    4: ["fastnn.train", "fastnn._graph_step", "fastnn.compiled", "fastnn._warmup"],
    5: ["fastnn.sklearn", "fastnn.distributed", "fastnn.interop", "fastnn.recipes",
        "fastnn._prewarm", "fastnn.reports", "fastnn.viz", "fastnn.profile"],
    # The command line and what only it uses; the package itself (fastnn/__init__.py, the
    # public face that re-exports every layer) is the top.
    6: ["fastnn.cli", "fastnn.bench", "fastnn.sysinfo", "fastnn.__main__", "fastnn"],
}


def layer_of(module: str) -> int:
    """The layer of ``module``: its exact name first, then the longest package prefix."""
    for layer, names in LAYERS.items():
        if module in names:
            return layer
    best, best_len = None, -1
    for layer, names in LAYERS.items():
        for name in names:
            if name.endswith(".") and module.startswith(name) and len(name) > best_len:
                best, best_len = layer, len(name)
    if best is None:
        raise KeyError(module)
    return best


def discover() -> dict[str, tuple[Path, bool]]:
    """Module name -> (source file, is a package's __init__)."""
    modules = {}
    for base, package in ((ROOT / "fastnn", "fastnn"), (ROOT / "kernels", "fastnn.kernels")):
        for path in sorted(base.rglob("*.py")):
            parts = [package, *path.relative_to(base).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            modules[".".join(parts)] = (path, is_package)
    return modules


def imports_of(name: str, path: Path, is_package: bool, known) -> dict[str, int]:
    """fastnn modules that ``name`` imports (anywhere in the file) -> the first line."""
    package = name.split(".") if is_package else name.split(".")[:-1]
    found: dict[str, int] = {}

    def resolve(target: str) -> str | None:
        while target and target not in known:  # an attribute of a module: the module
            target = target.rpartition(".")[0]
        return target or None

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the importing module's package upwards
                base = package[: len(package) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from PKG import x``: the submodule PKG.x if there is one, else PKG itself
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source
                       for a in node.names]
        for target in targets:
            if target == "kernels" or target.startswith("kernels."):
                target = "fastnn." + target  # the source tree's name of fastnn.kernels
            module = resolve(target) if target.split(".")[0] == "fastnn" else None
            if module is not None and module != name:
                found.setdefault(module, node.lineno)
    return found


MODULES = discover()
GRAPH = {name: imports_of(name, path, is_pkg, MODULES)
         for name, (path, is_pkg) in MODULES.items()}


def test_the_walk_sees_function_level_imports():
    # fastnn/cli.py imports its commands' modules inside the functions that run them.
    assert "fastnn.recipes" in GRAPH["fastnn.cli"]
    assert "fastnn.sysinfo" in GRAPH["fastnn.cli"]
    assert len(MODULES) > 30


def test_every_module_has_a_layer():
    unplaced = [m for m in MODULES if _layer_or_none(m) is None]
    assert not unplaced, (f"modules without a layer in tests/test_imports.py's LAYERS (place "
                          f"them by DESIGN.md's order): {unplaced}")


def _layer_or_none(module):
    try:
        return layer_of(module)
    except KeyError:
        return None


def test_no_import_cycle():
    """Tarjan's strongly connected components: any with two or more modules is a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(v: str) -> None:  # recursion depth is bounded by the number of modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    described = []
    for component in circles:
        edges = [f"{a} -> {b} (line {GRAPH[a][b]})" for a in component for b in GRAPH[a]
                 if b in component]
        described.append("; ".join(edges))
    assert not circles, "import circles (move the shared name down):\n" + "\n".join(described)


def test_imports_point_down_the_layers():
    upward = []
    for module, targets in GRAPH.items():
        mine = _layer_or_none(module)
        for target, line in targets.items():
            theirs = _layer_or_none(target)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{module} (layer {mine}) imports {target} (layer {theirs}) "
                              f"at line {line}")
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("fastnn.kernels")))
def test_kernels_never_import_fastnn(name):
    path, _ = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad = [a.name for a in node.names if a.name.split(".")[0] == "fastnn"]
        elif isinstance(node, ast.ImportFrom):
            bad = [node.module] if node.level == 0 and (node.module or "").split(".")[0] \
                == "fastnn" else []
            if node.level > 1:  # ``from .. import x`` leaves the kernels package
                bad = [f"{'.' * node.level}{node.module or ''}"]
        else:
            continue
        assert not bad, f"{path.name} line {node.lineno} imports {bad}: kernels never " \
                        f"import fastnn (DESIGN.md)"


def test_a_planted_circle_is_found(tmp_path, monkeypatch):
    """The checks fail when they should: two modules that import each other inside
    functions, and a layer-2 module that imports layer 4."""
    fake = {"fastnn.nn.a": (tmp_path / "a.py", False), "fastnn.train": (tmp_path / "t.py", False)}
    fake["fastnn.nn.a"][0].write_text("def f():\n    from .. import train\n")
    fake["fastnn.train"][0].write_text("def g():\n    from .nn import a\n")
    graph = {n: imports_of(n, p, k, fake) for n, (p, k) in fake.items()}
    assert graph == {"fastnn.nn.a": {"fastnn.train": 2}, "fastnn.train": {"fastnn.nn.a": 2}}
    assert layer_of("fastnn.nn.a") < layer_of("fastnn.train")
