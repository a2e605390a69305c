"""griffe extensions for the API reference (mkdocs.yml loads them; not part of fastnn).

- ``AttachKernels``: the wheel ships the repository's ``kernels/`` directory as
  ``fastnn.kernels`` (setuptools' package-dir); griffe reads packages from their directories,
  where ``fastnn/`` has no ``kernels`` folder, so without this the reference could not
  document ``fastnn.kernels``.
- ``ProseAfterParameters``: many of fastnn's docstrings end their Parameters section with a
  paragraph of prose (what the function does with them, what it returns) without a section
  header of its own. numpydoc's grammar would read each such line as another parameter; this
  gives the paragraph a "Notes" header, so it renders as text and nothing is dropped. It
  also escapes indexing written outside code spans (``out[i][j]``), which Markdown would
  read as a reference link.
- ``MadeFunctions``: functions made at import time (``sum = _method("sum", "doc")`` in
  ``fastnn._functions``) are attributes to a static reader; this gives them the docstring
  they are made with, and another name for a function (``clip = clamp``) a line saying so.
"""

from __future__ import annotations

import ast
import pathlib
import re

import griffe

KERNELS = pathlib.Path(__file__).resolve().parents[2] / "kernels"

#: numpydoc sections whose items start with a name (``x : type`` or ``a, b : type`` or ``x``)
NAMED_SECTIONS = {"parameters", "other parameters", "attributes", "keyword arguments",
                  "params", "args", "arguments"}
ITEM = re.compile(r"^\*{0,2}[A-Za-z_]\w*(\s*,\s*\*{0,2}[A-Za-z_]\w*)*\s*(:.*)?$")
UNDERLINE = re.compile(r"^\s*-{3,}\s*$")


def give_prose_a_header(text: str) -> str:
    """Insert a Notes header before a prose paragraph that follows a named-item section."""
    lines = text.split("\n")
    out: list[str] = []
    section = None
    for k, line in enumerate(lines):
        if k + 1 < len(lines) and UNDERLINE.match(lines[k + 1]) and line.strip():
            section = line.strip().lower()
        elif (section in NAMED_SECTIONS and line.strip() and not line[:1].isspace()
              and k > 0 and not lines[k - 1].strip() and not ITEM.match(line.strip())):
            out += ["Notes", "-----"]
            section = "notes"
        out.append(line)
    return "\n".join(out)


def escape_indexing(text: str) -> str:
    """``a[i][j]`` outside code spans -> ``a[i]\\[j]`` (not a Markdown reference link)."""
    parts = re.split(r"(`+[^`]*`+)", text)
    return "".join(p if p.startswith("`") else p.replace("][", "]\\[") for p in parts)


class ProseAfterParameters(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = escape_indexing(give_prose_a_header(obj.docstring.value))


class AttachKernels(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        if pkg.name != "fastnn" or "kernels" in pkg.members and not pkg["kernels"].is_alias:
            return
        kernels = griffe.load(KERNELS, docstring_parser=loader.docstring_parser,
                              docstring_options=loader.docstring_options,
                              extensions=griffe.load_extensions(ProseAfterParameters))
        pkg.set_member("kernels", kernels)


class MadeFunctions(griffe.Extension):
    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs) -> None:
        if attr.docstring is not None or attr.value is None:
            return
        try:
            value = ast.parse(str(attr.value), mode="eval").body
        except SyntaxError:
            return
        text = None
        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id == "_method" and len(value.args) == 2
                and isinstance(value.args[1], ast.Constant)):
            text = value.args[1].value
        elif isinstance(value, ast.Name) and value.id != attr.name:
            text = f"Another name for `{value.id}`."
        if text:
            attr.docstring = griffe.Docstring(text, parent=attr)
