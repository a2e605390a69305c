"""Byte-compile the environment once per change when nothing else will.

With ``PYTHONDONTWRITEBYTECODE`` set (as on this project's machines), Python writes no
``.pyc`` files, so every ``fastnn`` process compiles NumPy's, SciPy's and Numba's sources
anew: measured here, ``fastnn --version`` takes 1.2 s instead of 0.5 s. uv's
``compile-bytecode`` setting fixed that but recompiles the whole environment on *every*
``uv run`` (uv issue #12202: 9,806 files, 0.5-2 s each time). So the command line does it
itself, once: in a virtual environment (never a system Python), when the site-packages
directory changed since the last time (its modification time moves when a package is
installed or removed), after the command's own work. ``FASTNN_NO_BYTECODE=1`` turns it off.
"""

from __future__ import annotations

import os
import sys
import sysconfig

STAMP = ".fastnn-bytecode"


def ensure_bytecode(log=sys.stderr) -> bool:
    """Compile the environment's sources to ``.pyc`` if needed; True when it compiled."""
    if not sys.dont_write_bytecode or sys.prefix == sys.base_prefix \
            or os.environ.get("FASTNN_NO_BYTECODE"):
        return False
    site = sysconfig.get_paths()["purelib"]
    stamp = os.path.join(sys.prefix, STAMP)
    try:
        key = str(os.stat(site).st_mtime_ns)
        with open(stamp) as f:
            if f.read().strip() == key:
                return False
    except FileNotFoundError:
        pass
    except OSError:
        return False
    import compileall

    print("fastnn: byte-compiling the environment once (PYTHONDONTWRITEBYTECODE is set; "
          "FASTNN_NO_BYTECODE=1 skips this)", file=log)
    try:
        compileall.compile_dir(site, quiet=2, workers=1)  # no fork after OpenMP
        with open(stamp, "w") as f:
            f.write(str(os.stat(site).st_mtime_ns))
    except OSError:  # a read-only environment: nothing to be done
        return False
    return True
