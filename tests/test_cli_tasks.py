"""fastnn train/evaluate/predict for every kind of target: regression, labels of any kind,
extended runs, whole new files (the main job, as a new user meets it)."""


import numpy as np
import pytest
from conftest import blobs, cli_train, run_metrics

from fastnn.cli import main
from fastnn.recipes import load_trained

SMALL = ["--hidden", "32", "--epochs", "4", "--batch-size", "16", "--quiet"]


def _train(tmp_path, name, *extra):
    return cli_train(tmp_path, name, *SMALL, *extra)


_metrics = run_metrics


def _linear_r2(X, y, train, test):
    A = np.c_[X, np.ones(len(X))]
    coef, *_ = np.linalg.lstsq(A[train], y[train], rcond=None)
    pred = A[test] @ coef
    return 1 - ((pred - y[test]) ** 2).sum() / ((y[test] - y[test].mean()) ** 2).sum()


def test_regression_end_to_end_beats_a_linear_model(tmp_path, capsys):
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.make_friedman1(1200, noise=0.3, random_state=0)
    y = y * 10 + 100  # not standardized units: predictions must come back in them
    np.savez(tmp_path / "f.npz", X=X, y=y)
    code, out = _train(tmp_path, "reg", "--data", f"npz:{tmp_path / 'f.npz'}", "--epochs", "40",
                       "--hidden", "64,64", "--batch-size", "32", "--dropout", "0")
    assert code == 0
    m = _metrics(out)
    assert m["config"]["task"]["kind"] == "regression"
    assert m["config"]["architecture"]["n_outputs"] == 1
    for key in ("test_r2", "test_rmse", "test_mae", "val_r2", "val_rmse", "val_mae"):
        assert np.isfinite(m[key]), key
    assert "test_accuracy" not in m
    # The same split as the run: 20% test (seed 1), of the rest 10% validation.
    rng = np.random.default_rng(1).permutation(len(X))
    test_rows, rest = rng[:240], rng[240:]
    assert m["test_r2"] > _linear_r2(X, y, rest, test_rows) + 0.05  # friedman1 is nonlinear
    assert (out / "pred_vs_true.png").read_bytes()[:4] == b"\x89PNG"
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert "val_r2" in header and "accuracy" not in header
    # predict gives values in the original units, agreeing with metrics.json
    trained = load_trained(str(out / "model.npz"))
    pred = trained.predict(X[test_rows])
    assert pred.shape == (240,)
    rmse = np.sqrt(((pred - y[test_rows]) ** 2).mean())
    assert rmse == pytest.approx(m["test_rmse"], rel=1e-4)
    np.savez(tmp_path / "new.npz", X=X[test_rows])
    assert main(["predict", str(out / "model.npz"), str(tmp_path / "new.npz"), "--out",
                 str(tmp_path / "p.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), pred, rtol=1e-6)
    # evaluate says the same as the run
    capsys.readouterr()
    assert main(["evaluate", str(out / "model.npz")]) == 0
    assert f"rmse  {m['test_rmse']:.4f}" in capsys.readouterr().out


def test_diabetes_is_never_a_many_class_model(tmp_path):
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_diabetes()
    np.savez(tmp_path / "d.npz", X=d.data, y=d.target)  # whole numbers, 214 distinct
    code, out = _train(tmp_path, "dia", "--data", f"npz:{tmp_path / 'd.npz'}")
    assert code == 0
    m = _metrics(out)
    assert m["config"]["task"]["kind"] == "regression"
    assert m["config"]["architecture"]["n_outputs"] == 1
    assert "too many to be classes" in m["config"]["task"]["why"]


def test_auto_refusal_names_task(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(1000, 3))
    np.savez(tmp_path / "a.npz", X=X, y=np.arange(1000) % 200)
    code, _ = _train(tmp_path, "amb", "--data", f"npz:{tmp_path / 'a.npz'}")
    assert code == 2
    assert "--task" in capsys.readouterr().err
    code, out = _train(tmp_path, "amb", "--data", f"npz:{tmp_path / 'a.npz'}", "--task",
                       "regression")
    assert code == 0 and _metrics(out)["config"]["task"]["kind"] == "regression"


def test_two_targets_from_csv(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    Y = np.c_[X @ [1.0, -2.0, 0.5], np.sin(X[:, 0]) * 3]
    rows = ["a,t1,b,c,t2"] + [f"{x[0]},{t[0]},{x[1]},{x[2]},{t[1]}"
                              for x, t in zip(X, Y, strict=True)]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    code, out = _train(tmp_path, "two", "--data", f"csv:{tmp_path / 'm.csv'}:t1,t2",
                       "--epochs", "20", "--dropout", "0")
    assert code == 0
    m = _metrics(out)
    assert m["config"]["architecture"]["n_outputs"] == 2 and m["test_r2"] > 0.8
    assert main(["predict", str(out / "model.npz"), str(tmp_path / "m.csv"), "--out",
                 str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "t1,t2" and len(lines) == 301


@pytest.mark.parametrize("labels", [
    [1, 2, 3], [10, 20, 30], [0, 1000], [-1, 1], [2023, 2024], ["cat", "dog", "emu"],
    [True, False],
])
def test_labels_of_any_kind_give_c_outputs_and_come_back(tmp_path, labels):
    k = len(labels)
    X, idx = blobs(40 * k, 4, k)
    y = np.array(labels)[idx]
    np.savez(tmp_path / "l.npz", X=X, y=y)
    code, out = _train(tmp_path, "l", "--data", f"npz:{tmp_path / 'l.npz'}")
    assert code == 0
    m = _metrics(out)
    assert m["config"]["architecture"]["n_outputs"] == k
    assert m["classes"] == sorted(labels)
    assert set(m["per_class"]) == {str(v) for v in labels}
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    np.savez(tmp_path / "x.npz", X=X)
    assert main(["predict", str(out / "model.npz"), str(tmp_path / "x.npz"), "--out",
                 str(tmp_path / "p.npy")]) == 0
    pred = np.load(tmp_path / "p.npy")
    assert pred.dtype.kind == y.dtype.kind and set(pred.tolist()) <= set(labels)
    assert (pred == y).mean() > 0.6  # blobs are easy; a wrong label map gives <= 1/2


def test_csv_labels_and_empty_label_cell(tmp_path, capsys):
    X, idx = blobs(90, 3, 3)
    names = np.array(["setosa", "versicolor", "virginica"])[idx]
    rows = ["a,b,c,species"] + [f"{r[0]},{r[1]},{r[2]},{n}" for r, n in zip(X, names, strict=True)]
    (tmp_path / "i.csv").write_text("\n".join(rows) + "\n")
    code, out = _train(tmp_path, "iris", "--data", f"csv:{tmp_path / 'i.csv'}:species",
                       "--epochs", "25")
    assert code == 0 and _metrics(out)["config"]["architecture"]["n_outputs"] == 3
    # predict reads the same CSV (its target column is ignored) and answers in names
    assert main(["predict", str(out / "model.npz"), str(tmp_path / "i.csv"), "--out",
                 str(tmp_path / "p.npy")]) == 0
    pred = np.load(tmp_path / "p.npy")
    assert pred.dtype.kind == "U" and (pred == names).mean() > 0.8
    # evaluate --all scores every row of a file
    capsys.readouterr()
    assert main(["evaluate", str(out / "model.npz"), "--data",
                 f"csv:{tmp_path / 'i.csv'}:species", "--all"]) == 0
    assert "all rows, 90 samples" in capsys.readouterr().out
    rows[5] = rows[5].rsplit(",", 1)[0] + ","
    (tmp_path / "e.csv").write_text("\n".join(rows) + "\n")
    # a row without a label is left out of training, and said (pandas' dropna(subset=...))
    code, out = _train(tmp_path, "e", "--data", f"csv:{tmp_path / 'e.csv'}:species",
                       "--epochs", "2")
    assert code == 0
    assert ("fastnn train: left out 1 row of the data whose target (species) is blank (the "
            "first: line 6)") in capsys.readouterr().err
    assert main(["evaluate", str(out / "model.npz"), "--all"]) == 0
    said = capsys.readouterr().out
    assert "all rows, 89 samples" in said and "left out 1 row of the data" in said
    (tmp_path / "b.csv").write_text(rows[0] + "\n" + "1,2,3,\n" * 3)
    code, _ = _train(tmp_path, "b", "--data", f"csv:{tmp_path / 'b.csv'}:species")
    assert code == 2 and "every row's target ('species') is blank" in capsys.readouterr().err


def test_evaluate_a_whole_new_file_and_a_test_only_npz(tmp_path, capsys):
    X, y = blobs(200, 4, 3)
    np.savez(tmp_path / "d.npz", X=X[:150], y=y[:150])
    code, out = _train(tmp_path, "r", "--data", f"npz:{tmp_path / 'd.npz'}")
    assert code == 0
    np.savez(tmp_path / "new.npz", X_test=X[150:], y_test=y[150:])
    capsys.readouterr()
    assert main(["evaluate", str(out / "model.npz"), "--data",
                 f"npz:{tmp_path / 'new.npz'}"]) == 0
    printed = capsys.readouterr().out
    assert "50 samples" in printed and "accuracy" in printed
    np.savez(tmp_path / "new2.npz", X=X[150:], y=y[150:])
    assert main(["evaluate", str(out / "model.npz"), "--data",
                 f"npz:{tmp_path / 'new2.npz'}", "--all"]) == 0
    assert "all rows, 50 samples" in capsys.readouterr().out
    np.savez(tmp_path / "bad.npz", X=X[150:], y=y[150:] + 7)  # labels the model never saw
    assert main(["evaluate", str(out / "model.npz"), "--data",
                 f"npz:{tmp_path / 'bad.npz'}", "--all"]) == 2
    assert "is not one of the model's classes" in capsys.readouterr().err


def test_extending_a_run_continues_the_longer_schedule(tmp_path):
    common = ["--schedule", "cosine", "--dropout", "0"]
    assert _train(tmp_path, "a", *common)[0] == 0  # 4 epochs of a 4-epoch cosine
    ckpt = tmp_path / "a" / "model.npz"
    assert main(["train", "--resume", str(ckpt), "--epochs", "8", "--quiet"]) == 0
    h = _metrics(tmp_path / "a")["history"]  # written into the checkpoint's directory
    assert [r["epoch"] for r in h] == list(range(1, 9))
    lr0 = h[0]["lr"]
    # The 8-epoch cosine from epoch 4 on: lr(e) = lr0 (1 + cos(pi e / 8)) / 2 in epoch e+1.
    for r in h[4:]:
        e = r["epoch"] - 1
        assert r["lr"] == pytest.approx(lr0 * (1 + np.cos(np.pi * e / 8)) / 2, rel=1e-12)
        assert r["lr"] > 0
    # Resuming with the same --epochs stays bit-exact (see test_cli), and a regression run
    # resumes exactly too:
    datasets = pytest.importorskip("sklearn.datasets")
    Xr, yr = datasets.make_friedman1(300, random_state=1)
    np.savez(tmp_path / "f.npz", X=Xr, y=yr)
    spec = ["--data", f"npz:{tmp_path / 'f.npz'}", "--schedule", "none"]
    assert _train(tmp_path, "r1", *spec, "--epochs", "2")[0] == 0
    assert main(["train", "--resume", str(tmp_path / "r1" / "model.npz"), "--epochs", "4",
                 "--quiet"]) == 0
    assert _train(tmp_path, "r2", *spec)[0] == 0
    with np.load(tmp_path / "r1" / "model.npz") as a, np.load(tmp_path / "r2" / "model.npz") as b:
        for k in a.files:
            if k != "__fastnn__":
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("argv, needle", [
    (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
    (["--threads", "0"], "--threads must be a positive integer"),
    (["--sync-batchnorm"], "--sync-batchnorm needs --distributed"),
    (["--loss", "mse"], "--loss mse (a regression loss) does not fit a classification task"),
    (["--loss", "huber"], "--loss huber (a regression loss) does not fit"),
])
def test_small_things_refused_cleanly(tmp_path, argv, needle, capsys):
    out = tmp_path / "x"
    assert main(["train", "--out", str(out), "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (out / "model.npz").exists()


@pytest.mark.parametrize("loss", ["l1", "huber"])
def test_regression_with_l1_and_huber_losses(tmp_path, loss):
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.make_friedman1(400, noise=0.3, random_state=2)
    code, out = _train(tmp_path, loss, "--data", "npz:" + _save(tmp_path, X, y), "--loss", loss,
                       "--epochs", "15", "--dropout", "0")
    assert code == 0
    m = _metrics(out)
    assert m["config"]["run"]["loss"] == loss and m["test_r2"] > 0.3


def _save(tmp_path, X, y):
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=y)
    return str(path)
