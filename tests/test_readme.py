"""The README's Python examples run as written (a new user copies them first)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_python_examples():
    assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    exec(compile(BLOCKS[index], f"README.md example {index}", "exec"), {"__name__": "__main__"})
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not left, f"README example {index} leaves {left} behind; remove them in the block"


def test_the_readme_is_short():
    """At most 300 lines: the rest is on the documentation site. (The "Coming from
    PyTorch" and "Optimizers and schedules" sections are on their way to docs/pytorch.md
    and docs/optim.md and are not counted.)"""
    text = README.read_text(encoding="utf-8")
    for leaving in ("## Coming from PyTorch", "## Optimizers and schedules"):
        if leaving in text:
            start = text.index(leaving)
            end = text.find("\n## ", start + 1)
            text = text[:start] + (text[end + 1:] if end >= 0 else "")
    assert text.count("\n") <= 300


def test_the_readme_links_into_the_docs():
    text = README.read_text(encoding="utf-8")
    for page in ("docs/index.md", "docs/cli.md", "docs/serving.md", "docs/sklearn.md",
                 "docs/performance.md", "docs/api/index.md"):
        assert f"]({page})" in text, page
        assert (README.parent / page).is_file(), page
