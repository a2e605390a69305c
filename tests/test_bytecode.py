"""fastnn/_bytecode.py: the modules a command imported get their .pyc in the background."""

import importlib.util
import os
import sys
import time
import types

from fastnn import _bytecode


def _module(path):
    m = types.ModuleType(path.stem)
    m.__file__ = str(path)
    return m


def test_lists_only_loaded_sources_under_the_environment_without_current_pyc(tmp_path):
    site, elsewhere = tmp_path / "site-packages", tmp_path / "project"
    site.mkdir()
    elsewhere.mkdir()
    for p in (site / "fresh.py", site / "done.py", elsewhere / "mine.py"):
        p.write_text("X = 1\n")
    pyc = importlib.util.cache_from_source(str(site / "done.py"))
    os.makedirs(os.path.dirname(pyc))
    open(pyc, "wb").close()  # newer than its source
    modules = {"fresh": _module(site / "fresh.py"), "done": _module(site / "done.py"),
               "mine": _module(elsewhere / "mine.py"), "builtin": types.ModuleType("b")}
    assert _bytecode.stale_sources(modules, [str(site)]) == [str(site / "fresh.py")]
    os.utime(site / "done.py", (time.time() + 10, time.time() + 10))  # edited since
    assert sorted(_bytecode.stale_sources(modules, [str(site)])) == \
        [str(site / "done.py"), str(site / "fresh.py")]


def test_compiles_in_a_detached_process_and_returns_at_once(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "mod.py").write_text("X = 1\n")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.delenv("FASTNN_NO_BYTECODE", raising=False)
    monkeypatch.setattr(_bytecode, "stale_sources", lambda: [str(site / "mod.py")])
    pid = _bytecode.ensure_bytecode()
    assert isinstance(pid, int)
    _, status = os.waitpid(pid, 0)  # the command itself never waits; the test does
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.path.isfile(importlib.util.cache_from_source(str(site / "mod.py")))
    monkeypatch.setenv("FASTNN_NO_BYTECODE", "1")
    assert _bytecode.ensure_bytecode() is None


def test_never_touches_a_system_python_or_a_writing_interpreter(monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert _bytecode.ensure_bytecode() is None
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)
    assert _bytecode.ensure_bytecode() is None
