"""PyTorch training scripts written for PyTorch (tests/ported_scripts/) run on fastnn with only
their imports changed (``torch`` -> ``fastnn``), and reach the validation accuracy that
PyTorch reaches on the same script (checked when PyTorch is installed)."""

import pathlib
import re

import pytest

SCRIPTS = sorted((pathlib.Path(__file__).parent / "ported_scripts").glob("*.py"))
#: The accuracy each script must reach on fastnn (PyTorch's, run here, is about the same).
FLOOR = {"mlp_custom_module": 0.95, "sequential_custom_dataset": 0.9,
         "regression_dict_batches": 0.6}


def ported(source: str) -> str:
    """The script with its imports pointed at fastnn, and nothing else changed."""
    source = re.sub(r"^import torch$", "import fastnn as torch", source, flags=re.M)
    source = re.sub(r"^import torch\.([\w.]+) as", r"import fastnn.\1 as", source, flags=re.M)
    source = re.sub(r"^from torch(\.[\w.]+)? import", r"from fastnn\1 import", source,
                    flags=re.M)
    return source


def run(source: str, name: str) -> float:
    scope = {"__name__": "__main__"}
    exec(compile(source, name, "exec"), scope)
    return scope["accuracy"]


def test_the_scripts_are_there():
    assert {s.stem for s in SCRIPTS} == set(FLOOR)


def test_only_import_lines_change():
    for script in SCRIPTS:
        before = script.read_text().splitlines()
        after = ported(script.read_text()).splitlines()
        changed = [a for a, b in zip(before, after, strict=True) if a != b]
        assert changed and all(line.startswith(("import torch", "from torch"))
                               for line in changed)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_script_runs_on_fastnn(script, capsys):
    accuracy = run(ported(script.read_text()), f"{script.name} (fastnn)")
    assert accuracy >= FLOOR[script.stem], accuracy


@pytest.mark.slow  # PyTorch's import and its DataLoader's worker processes take a while
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_pytorch_reaches_the_same_accuracy_on_the_same_script(script, capsys):
    torch = pytest.importorskip("torch")
    source = script.read_text()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tests share the machine; one thread is PyTorch's fastest here
    try:
        torch_accuracy = run(source, f"{script.name} (PyTorch)")
    finally:
        torch.set_num_threads(threads)
    accuracy = run(ported(source), f"{script.name} (fastnn)")
    assert abs(accuracy - torch_accuracy) <= 0.1, (accuracy, torch_accuracy)
