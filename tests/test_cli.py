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
    for key in ("numba threading layer", "kernel cache", "numpy", "blas", "matrix products"):
        assert key in out


def test_process_command_line_freezes_the_collector_a_call_with_a_list_does_not(
        monkeypatch, capsys):
    import gc

    gc.unfreeze()
    try:
        assert main(["info"]) == 0 and gc.get_freeze_count() == 0
        monkeypatch.setattr(sys, "argv", ["fastnn", "info"])
        assert main() == 0 and gc.get_freeze_count() > 0  # the process ends next
    finally:
        gc.unfreeze()
    capsys.readouterr()


def test_the_readme_main_command_runs_as_a_process_and_shows_its_run(tmp_path):
    # `fastnn train` as the README gives it (default data, progress shown), fewer epochs: a
    # process of its own, so its end (the collector frozen, the last checkpoint) is the real one
    proc = subprocess.run([sys.executable, "-m", "fastnn.cli", "train", "--epochs", "2",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and "epoch   2/2" in proc.stderr
    from fastnn.checkpoint import load_checkpoint

    assert load_checkpoint(str(tmp_path / "run" / "model.npz")).meta["epoch"] == 2


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


# ----------------------------------------------------------------- fastnn train, end to end
import os  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import blobs, cli_train, run_metrics  # noqa: E402

SMALL = ["--hidden", "16", "--epochs", "3", "--batch-size", "16", "--quiet"]


def _train(tmp_path, name, *extra):
    return cli_train(tmp_path, name, *SMALL, *extra)


_metrics = run_metrics


def test_default_run_on_digits_reaches_97_percent(tmp_path, capsys):
    out = tmp_path / "default"
    assert main(["train", "--out", str(out), "--quiet"]) == 0
    m = _metrics(out)
    assert m["test_accuracy"] >= 0.97
    for key in ("val_accuracy", "train_loss", "epochs", "seconds", "samples_per_second",
                "history"):
        assert key in m
    assert (out / "model.npz").is_file() and (out / "history.csv").is_file()
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and str(out / "model.npz") in printed
    # evaluate reproduces the accuracy the run reported
    assert main(["evaluate", str(out / "model.npz")]) == 0
    assert f"accuracy  {m['test_accuracy']:.4f}" in capsys.readouterr().out


def test_every_data_format_through_the_cli(tmp_path, mnist_dir):
    X, y = blobs(150, 6, 3)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    rows = ["f1,f2,f3,f4,f5,f6,target"] + [",".join(map(str, r)) + f",{c}"
                                            for r, c in zip(X, "abc" * 50, strict=False)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1.bin", 40), ("test_batch.bin", 10)):
        rec = np.zeros((n, 3073), np.uint8)
        rec[:, 0] = rng.integers(0, 10, n)
        rec[:, 1:] = rng.integers(0, 256, (n, 3072))
        rec.tofile(cifar / name)
    specs = [f"mnist:{mnist_dir}", f"fashion-mnist:{mnist_dir}", f"npz:{tmp_path / 'd.npz'}",
             f"csv:{tmp_path / 'd.csv'}:target", f"cifar10:{cifar}"]
    for i, spec in enumerate(specs):
        code, out = _train(tmp_path, f"run{i}", "--data", spec)
        assert code == 0, spec
        m = _metrics(out)
        assert 0 <= m["test_accuracy"] <= 1 and m["config"]["data"]["spec"] == spec
    # the MNIST stand-in is easy: far above chance (0.1) on its 40 test images
    assert _metrics(tmp_path / "run0")["test_accuracy"] >= 0.8


def test_resume_continues_bit_for_bit(tmp_path):
    common = ["--schedule", "none", "--dropout", "0.3"]
    assert _train(tmp_path, "a", *common)[0] == 0  # 3 epochs
    code = main(["train", "--resume", str(tmp_path / "a" / "model.npz"), "--epochs", "6",
                 "--out", str(tmp_path / "b"), "--quiet"])
    assert code == 0
    code = main(["train", "--out", str(tmp_path / "c"), *SMALL[:2], "--epochs", "6",
                 "--batch-size", "16", "--quiet", *common])
    assert code == 0
    with np.load(tmp_path / "b" / "model.npz") as b, np.load(tmp_path / "c" / "model.npz") as c:
        for k in b.files:
            if k != "__fastnn__":
                np.testing.assert_array_equal(b[k], c[k], err_msg=k)
    assert _metrics(tmp_path / "b")["epochs"] == 6
    assert len(_metrics(tmp_path / "b")["history"]) == 6


def test_nan_stop_keeps_the_last_good_checkpoint(tmp_path, capsys):
    code, out = _train(tmp_path, "run")
    good = (out / "model.npz").read_bytes()
    code = main(["train", "--out", str(out), *SMALL, "--lr", "1e9", "--optimizer", "sgd",
                 "--no-batchnorm"])
    err = capsys.readouterr().err
    assert code == 1
    assert "epoch 1, step" in err and "learning rate" in err and "Traceback" not in err
    assert str(out / "model.npz") in err  # it says where the last good checkpoint is
    assert (out / "model.npz").read_bytes() == good


def test_resume_refuses_changed_settings(tmp_path, capsys):
    code, out = _train(tmp_path, "r")
    assert main(["train", "--resume", str(out / "model.npz"), "--epochs", "5", "--lr", "0.5",
                 "--quiet"]) == 2
    assert "--lr 0.5 does not fit the checkpoint" in capsys.readouterr().err
    assert main(["train", "--resume", str(out / "model.npz"), "--epochs", "2", "--quiet"]) == 2
    assert "epochs already" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,needle",
    [(["train", "--data", "mnist:/no/such/dir"], "no such directory"),
     (["train", "--data", "tfrecord:x"], "unknown data spec"),
     (["train", "--hidden", "a,b"], "--hidden"),
     (["evaluate", "/no/such.npz"], "no such checkpoint"),
     (["predict", "/no/such.npz", "x.npz", "--out", "y.npy"], "no such checkpoint")],
)
def test_bad_input_exits_2_with_one_line(argv, needle, capsys):
    assert main(argv + (["--quiet"] if argv[0] == "train" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_truncated_checkpoint_and_mismatched_architecture(tmp_path, capsys):
    code, out = _train(tmp_path, "t")
    raw = (out / "model.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    assert main(["evaluate", str(tmp_path / "trunc.npz")]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    assert main(["train", "--resume", str(out / "model.npz"), "--hidden", "32", "--epochs", "5",
                 "--quiet"]) == 2
    assert "does not fit the checkpoint" in capsys.readouterr().err
    X, y = blobs(30, 5, 2)
    np.savez(tmp_path / "other.npz", X=X, y=y)
    assert main(["evaluate", str(out / "model.npz"), "--data",
                 f"npz:{tmp_path / 'other.npz'}"]) == 2
    assert "features" in capsys.readouterr().err


def test_predict_and_gradcheck(tmp_path, capsys):
    code, out = _train(tmp_path, "p")
    from sklearn.datasets import load_digits

    np.savez(tmp_path / "in.npz", X=load_digits().data[:12])
    pred = tmp_path / "pred.npy"
    assert main(["predict", str(out / "model.npz"), str(tmp_path / "in.npz"), "--out",
                 str(pred)]) == 0
    p = np.load(pred)
    assert p.shape == (12,) and p.dtype == np.int64
    assert (p == load_digits().target[:12]).mean() > 0.5
    capsys.readouterr()
    assert main(["gradcheck"]) == 0
    table = capsys.readouterr().out
    assert "BatchNorm1d" in table and "cross_entropy" in table and "FAILED" not in table
    assert os.path.isfile(pred)


def test_cold_cache_is_announced(tmp_path):
    # one process (a cold start costs seconds): the check alone, then the announcement
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "empty-cache")}
    code = ("import io; from fastnn._warmup import announce_compilation, cache_is_warm; "
            "print(cache_is_warm()); s = io.StringIO(); "
            "print(announce_compilation(s)); print(s.getvalue())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    lines = out.stdout.splitlines()
    assert lines[:2] == ["False", "True"], out.stdout + out.stderr
    assert "compiling the kernels for the first time" in out.stdout
