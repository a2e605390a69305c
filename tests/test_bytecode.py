"""fastnn/_bytecode.py: the environment is byte-compiled once per change, not every run."""

import importlib.util
import io
import sys
import sysconfig

from fastnn import _bytecode


def test_compiles_once_per_change_of_site_packages(tmp_path, monkeypatch):
    site, prefix = tmp_path / "site-packages", tmp_path / "venv"
    site.mkdir()
    prefix.mkdir()
    (site / "mod.py").write_text("X = 1\n")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"purelib": str(site)})
    monkeypatch.delenv("FASTNN_NO_BYTECODE", raising=False)
    log = io.StringIO()
    assert _bytecode.ensure_bytecode(log) is True
    assert "byte-compiling" in log.getvalue()
    pyc = importlib.util.cache_from_source(str(site / "mod.py"))
    assert (site / "__pycache__").is_dir() and __import__("os").path.isfile(pyc)
    assert _bytecode.ensure_bytecode(log) is False  # unchanged: nothing to do
    (site / "new.py").write_text("Y = 2\n")  # a package installed: compile again
    assert _bytecode.ensure_bytecode(log) is True
    monkeypatch.setenv("FASTNN_NO_BYTECODE", "1")
    (site / "third.py").write_text("Z = 3\n")
    assert _bytecode.ensure_bytecode(log) is False


def test_never_touches_a_system_python_or_a_writing_interpreter(monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert _bytecode.ensure_bytecode() is False
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)
    assert _bytecode.ensure_bytecode() is False
