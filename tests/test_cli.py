"""The fastnn console script."""

import subprocess
import sys

import fastnn
from fastnn.cli import main


def test_version_and_help(capsys):
    for argv, expect in ((["--version"], fastnn.__version__), (["--help"], "usage: fastnn")):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 0
        assert expect in capsys.readouterr().out


def test_info_reports_versions_threads_and_cache(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("numba threading layer", "kernel cache", "numpy", "blas"):
        assert key in out


def test_console_script_runs_as_a_process():
    proc = subprocess.run([sys.executable, "-m", "fastnn.cli", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("fastnn ")


def test_unknown_command_exits_2(capsys):
    try:
        main(["no-such-command"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "invalid choice" in capsys.readouterr().err
