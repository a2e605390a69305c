"""The documentation site: every ```python block of every page runs as written, the site
builds with warnings as errors, and its API reference documents every public name.

A page fences code that cannot run here as ```text, ```bash or ```py and says why in its
text; everything fenced ```python is executed, page by page, in a fresh directory.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
BLOCKS = [(page, k, code) for page in PAGES
          for k, code in enumerate(FENCE.findall(page.read_text(encoding="utf-8")))]

#: The modules the API reference documents, and the page each is on.
API_PAGES = {
    "fastnn": "fastnn", "fastnn.nn": "nn", "fastnn.nn.functional": "functional",
    "fastnn.losses": "losses", "fastnn.optim": "optim",
    "fastnn.optim.lr_scheduler": "lr_scheduler", "fastnn.init": "init",
    "fastnn.data": "data", "fastnn.train": "train", "fastnn.recipes": "recipes",
    "fastnn.interop": "interop", "fastnn.sklearn": "sklearn", "fastnn.kernels": "kernels",
}


def _generated_api_pages() -> dict[str, str]:
    """The pages docs/api/mkdocs_hooks.py generates for modules without a page of their own."""
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", DOCS / "api" / "mkdocs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return {module: module for module in hooks.undocumented_modules()}


def _block_id(block) -> str:
    page, k, _ = block
    return f"{page.relative_to(DOCS)}#{k}"


def test_the_docs_have_python_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=_block_id)
def test_docs_example_runs(block, tmp_path, monkeypatch):
    page, k, code = block
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    if "import sklearn" in code or "from sklearn" in code or "fastnn.sklearn" in code:
        pytest.importorskip("sklearn")
    exec(compile(code, f"{page.relative_to(ROOT)} example {k}", "exec"),
         {"__name__": "__main__"})
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not left, (f"{page.name} example {k} leaves {left} behind: a reader who runs it "
                      "in their repository gets them too; remove them at the end of the block")


def public_names(module_name: str) -> list[str]:
    """A module's public names: its ``__all__``, or else the classes and functions it
    defines whose names do not start with an underscore."""
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
            and getattr(obj, "__module__", None) == module_name]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built by ``mkdocs build --strict`` (skipped without the docs group)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("material")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_site_builds_with_warnings_as_errors(site):
    assert (site / "index.html").is_file()
    assert (site / "api" / "fastnn" / "index.html").is_file()


@pytest.mark.parametrize("module_name", [*API_PAGES, *_generated_api_pages()])
def test_every_public_name_is_in_the_api_reference(site, module_name):
    page = {**API_PAGES, **_generated_api_pages()}[module_name]
    html = (site / "api" / page / "index.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'id="([\w.]+)"', html))
    missing = []
    for name in public_names(module_name):
        obj = getattr(importlib.import_module(module_name), name)
        if inspect.ismodule(obj):  # a submodule in __all__: documented on its own page
            here = f"{module_name}.{name}" in ids or obj.__name__ in API_PAGES or (
                obj.__name__ in _generated_api_pages())
            if not here and not obj.__name__.startswith("fastnn.kernels."):
                missing.append(name)
        elif f"{module_name}.{name}" not in ids:
            # a function named as its own module (fnn.gradcheck): documented as module.name
            home = getattr(obj, "__module__", "")
            if not (home == f"{module_name}.{name}" and f"{home}.{name}" in ids):
                missing.append(name)
    assert not missing, f"{module_name}: not in the API reference: {missing}"


def test_first_page_reaches_the_three_questions_in_one_click():
    """From Getting started, a new user reaches "train on my CSV", "port my PyTorch
    script" and "export" in one click."""
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in ("tabular", "pytorch", "serving"):
        # page.md, or page/ while the page is on another branch (not link-checked)
        assert re.search(rf"\]\({page}(\.md|/)(#[\w-]+)?\)", index), page
