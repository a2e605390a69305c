"""Byte-compile, in the background, the environment's modules that a ``fastnn`` command used.

With ``PYTHONDONTWRITEBYTECODE`` set (as on this project's machines), Python writes no
``.pyc`` files, so every ``fastnn`` process compiles NumPy's, SciPy's and Numba's sources
anew: measured here, ``fastnn --version`` takes 1.2 s instead of 0.5 s. uv's
``compile-bytecode`` setting fixed that but recompiles the whole environment on *every*
``uv run`` (uv issue #12202: 9,806 files, 0.5-2 s each time), and compiling the whole
environment once, after the first command, cost 19 s of CPU time (5,848 files) that the
user waited for. So after its own work the command line hands the sources of the modules
that this process imported (about 1,150 for ``fastnn train``: 3.4 s of CPU) and that have no
current ``.pyc`` to a detached, lower-priority process, and returns at once; the next
command imports them from ``.pyc``. Only in a virtual environment (never a system Python),
only under its site-packages and fastnn's own folders (an editable install keeps them
elsewhere); ``FASTNN_NO_BYTECODE=1`` turns it off. A later command that
imports modules the first did not (``fastnn export`` and onnx) compiles those the same way.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
import tempfile

#: What the background process runs: py_compile each listed file (timestamp-checked .pyc,
#: written atomically, so a process importing meanwhile reads either no .pyc or a whole one),
#: then delete the list.
_COMPILE = (
    "import os, py_compile, sys\n"
    "os.nice(10)\n"
    "listing = sys.argv[1]\n"
    "with open(listing) as f:\n"
    "    files = f.read().splitlines()\n"
    "os.unlink(listing)\n"
    "for path in files:\n"
    "    py_compile.compile(path, doraise=False, quiet=2)\n"
)


def _own_roots(modules) -> list[str]:
    """fastnn's own source folders (``fastnn/`` and the ``kernels/`` shipped as
    ``fastnn.kernels``): outside site-packages in an editable install, such as a clone's
    ``uv run fastnn``, where compiling their ~70 modules at every start cost about 0.5 s."""
    return [os.path.dirname(os.path.abspath(m.__file__)) for name in ("fastnn", "fastnn.kernels")
            if getattr(m := modules.get(name), "__file__", None)]


def stale_sources(modules=None, roots=None) -> list[str]:
    """Source files of the loaded ``modules`` under ``roots`` (default: this environment's
    site-packages) whose ``.pyc`` is missing or older than the source."""
    modules = sys.modules if modules is None else modules
    if roots is None:
        paths = sysconfig.get_paths()
        roots = {paths["purelib"], paths["platlib"], *_own_roots(modules)}
    roots = tuple(os.path.join(os.path.abspath(r), "") for r in roots)
    stale = []
    for module in list(modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py") or not source.startswith(roots):
            continue
        try:
            compiled = os.stat(importlib.util.cache_from_source(source)).st_mtime
            if compiled >= os.stat(source).st_mtime:
                continue
        except (OSError, ValueError, NotImplementedError):
            pass
        stale.append(source)
    return stale


def ensure_bytecode(log=None) -> int | None:
    """Start byte-compiling this process's modules that lack a ``.pyc``, in a detached
    process; returns its process id, or None when there is nothing to do (or it may not).

    ``log`` is accepted for compatibility and unused: nothing waits, so nothing is said.
    """
    if not sys.dont_write_bytecode or sys.prefix == sys.base_prefix \
            or os.environ.get("FASTNN_NO_BYTECODE"):
        return None
    stale = stale_sources()
    if not stale:
        return None
    try:
        fd, listing = tempfile.mkstemp(prefix="fastnn-bytecode-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(stale))
    except OSError:  # no writable temporary directory
        return None
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            # posix_spawn, not subprocess: no Popen object left running at exit (a
            # ResourceWarning) and no fork of a process whose OpenMP pool may be running.
            return os.posix_spawn(
                sys.executable, [sys.executable, "-c", _COMPILE, listing], os.environ,
                file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0),
                              (os.POSIX_SPAWN_DUP2, devnull, 1),
                              (os.POSIX_SPAWN_DUP2, devnull, 2)],
                setsid=True)
        finally:
            os.close(devnull)
    except (OSError, AttributeError):  # no posix_spawn (Windows): leave it
        os.unlink(listing)
        return None
