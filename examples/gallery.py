"""Draw every picture of the lessons gallery: run each example in its own process.

Run: ``uv run python examples/gallery.py`` (pictures into the current directory, or
``--out DIR``, or $FASTNN_EXAMPLES_OUT); ``--docs`` regenerates the gallery's tracked
pictures in docs/images/ instead. ``--quick`` (or FASTNN_EXAMPLES_QUICK=1) for the reduced
sizes. Prints how long each example took and stops at the first one that fails.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
DOCS_IMAGES = HERE.parent / "docs" / "images"
EXAMPLES = ["circuits", "activations", "optimizers", "spiral", "initialization", "batchnorm",
            "regularization", "gradcheck", "xor"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help="directory for the pictures (default: "
                       "$FASTNN_EXAMPLES_OUT or the current directory)")
    where.add_argument("--docs", action="store_true",
                       help=f"regenerate the tracked pictures in {DOCS_IMAGES}")
    parser.add_argument("--quick", action="store_true", help="reduced sizes")
    args = parser.parse_args(argv)
    out = DOCS_IMAGES if args.docs else pathlib.Path(
        args.out or os.environ.get("FASTNN_EXAMPLES_OUT") or ".")
    extra = ["--out", str(out)] + (["--quick"] if args.quick else [])
    print(f"pictures into {out.resolve()}")
    timings = {}
    for name in EXAMPLES:
        print(f"== examples/{name}.py", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *extra])
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
