"""Regenerate every picture of the README's gallery: run each example in its own process.

Run: ``uv run python examples/gallery.py`` (pictures into docs/images/, or
$FASTNN_EXAMPLES_OUT; FASTNN_EXAMPLES_QUICK=1 for the reduced sizes). Prints how long each
example took and stops at the first one that fails.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
EXAMPLES = ["circuits", "activations", "optimizers", "spiral", "initialization", "batchnorm",
            "regularization", "gradcheck", "xor"]


def main() -> int:
    timings = {}
    for name in EXAMPLES:
        print(f"== examples/{name}.py", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(HERE / f"{name}.py")])
        timings[name] = time.perf_counter() - start
        if result.returncode != 0:
            print(f"examples/{name}.py failed (exit code {result.returncode})")
            return result.returncode
    print("== seconds per example (each in a new process, imports and kernel loading included)")
    for name, seconds in timings.items():
        print(f"  {name:15s} {seconds:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
