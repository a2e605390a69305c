"""mkdocs hooks for the API reference (mkdocs.yml loads them; not part of fastnn).

A public module that declares ``__all__`` and has no page in docs/api/ gets one generated
(``::: module``) and listed under "API reference" in the navigation, so a module added
later appears in the reference without anyone editing the site. A module whose ``__all__``
its package re-exports whole (``fastnn.graph`` into ``fastnn``) is documented there.
"""

from __future__ import annotations

import importlib
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "api"


def documented_modules() -> set[str]:
    """Modules that a hand-written page of docs/api/ documents with ``::: module``."""
    found = set()
    for page in API.glob("*.md"):
        found.update(re.findall(r"^::: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), re.M))
    return found


def undocumented_modules() -> list[str]:
    """Public fastnn modules with ``__all__``, no page of their own, not re-exported whole."""
    documented = documented_modules()
    out = []
    for path in sorted((ROOT / "fastnn").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if any(p.startswith("_") for p in parts) or name in documented:
            continue
        if not re.search(r"^__all__\s*=", path.read_text(encoding="utf-8"), re.M):
            continue
        module = importlib.import_module(name)
        parent = importlib.import_module(name.rpartition(".")[0]) if "." in name else None
        exported = set(getattr(parent, "__all__", ())) if parent else set()
        if parent and parent.__name__ in documented and set(module.__all__) <= exported:
            continue  # fastnn.graph -> fastnn, fastnn.optim.optimizers -> fastnn.optim
        out.append(name)
    return out


def on_config(config, **kwargs):
    extra = undocumented_modules()
    config["_fastnn_extra_api"] = extra
    for item in config["nav"] or []:
        if isinstance(item, dict) and "API reference" in item:
            item["API reference"].extend({m: f"api/{m}.md"} for m in extra)
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for module in config.get("_fastnn_extra_api", []):
        content = (f"# `{module}`\n\nGenerated from the docstrings of the names in "
                   f"`{module}.__all__`.\n\n::: {module}\n")
        files.append(File.generated(config, f"api/{module}.md", content=content))
    return files
