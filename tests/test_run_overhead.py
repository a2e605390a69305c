"""What a training run does around its epochs, made cheaper without changing a number:
pictures drawn in a background thread (fastnn.reports.Drawing), the permutation
importance's passes in the batches TrainedModel.outputs uses, fastnn.interop imported at
its first use, fastnn's own modules byte-compiled."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from fastnn import _bytecode, reports


def test_drawing_fills_notes_and_hands_back_the_drawing_error():
    drawn = []

    def draws(tag):
        drawn.append(tag)

    def declines():
        return "not drawn: no matplotlib"

    notes: dict = {}
    drawing = reports.Drawing([("a", draws, ("a",)), ("b", declines, ())], notes)
    drawing.wait()
    assert drawn == ["a"] and notes == {"b": "not drawn: no matplotlib"}

    def fails():
        raise RuntimeError("the disk is full")

    drawing = reports.Drawing([("c", fails, ())], {})
    with pytest.raises(RuntimeError, match="the disk is full"):
        drawing.wait()
    drawing = reports.Drawing([("c", fails, ())], {})
    drawing.wait(reraise=False)  # the caller is raising an error of its own
    with pytest.raises(RuntimeError, match="the disk is full"):  # in the foreground too
        reports.Drawing([("c", fails, ())], {}, background=False)


def test_write_run_in_the_background_writes_the_same_files(tmp_path):
    pytest.importorskip("matplotlib")
    from fastnn.data import Standardizer
    from fastnn.recipes import Encoding
    from fastnn.tasks import TargetScaler

    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 1))
    enc = Encoding("regression", Standardizer().fit(rng.normal(size=(50, 2))),
                   target_scaler=TargetScaler().fit(y), target_names=["t"])
    history = [{"epoch": e, "loss": 1.0 / e, "accuracy": None, "val_loss": 1.2 / e,
                "val_r2": 1 - 1.0 / e, "lr": 1e-3, "seconds": 0.1,
                "samples_per_second": 500.0} for e in (1, 2, 3)]
    args = (history, {"loss": 0.5, "r2": 0.5}, {"run": {}}, 0.3, 0, enc,
            y + 0.1 * rng.normal(size=y.shape), y)
    (tmp_path / "fg").mkdir()
    (tmp_path / "bg").mkdir()
    fg = reports.write_run(str(tmp_path / "fg"), *args)
    bg, drawing = reports.write_run(str(tmp_path / "bg"), *args, background=True)
    drawing.wait()
    assert fg.metrics == bg.metrics and fg.notes == bg.notes == {}
    for name in ("metrics.json", "history.csv", "pred_vs_true.png", "curves.png"):
        assert (tmp_path / "bg" / name).read_bytes() == (tmp_path / "fg" / name).read_bytes()


def test_importance_batches_give_the_numbers_of_whole_passes():
    """permutation_importance runs its passes 1,024 rows at a time (timed for a thread
    governor); TrainedModel.outputs on the whole array cuts the same batches."""
    from fastnn import recipes
    from fastnn.data import ArrayDataset
    from fastnn.tabular import TableEncoder
    from fastnn.tasks import Classes

    pa = pytest.importorskip("pyarrow")
    rng = np.random.default_rng(1)
    n = 2500  # three batches, the last one short
    table = pa.table({"a": rng.normal(size=n), "b": rng.normal(size=n),
                      "c": rng.choice(["x", "y", "z"], size=n)})
    enc_table = TableEncoder.fit(table)
    X = enc_table.transform(table)
    labels = (X[:, 0] + (X[:, -1] == 1) > 0).astype(np.int64)
    classes = Classes.fit(labels)
    encoding = recipes.Encoding("classification", recipes._table_standardizer(X, None, enc_table),
                                classes=classes,
                                table=enc_table)
    arch = {"input_dim": X.shape[1], "hidden": [16], "n_outputs": 2, "activation": "relu",
            "batchnorm": True, "dropout": 0.0, "dtype": "float32",
            "n_continuous": enc_table.n_continuous, "cardinalities": enc_table.cardinalities,
            "embedding_dims": [3] * len(enc_table.cardinalities), "embedding_dim": None}
    model = recipes.build_model(arch)
    trained = recipes.TrainedModel(model, encoding, {"architecture": arch, "run": {}})
    data = ArrayDataset(X, classes.encode(labels), check=False)
    got = recipes.permutation_importance(trained, data, seed=3)

    # the same shuffles, each pass scored on the whole array at once
    rng = np.random.default_rng(3)
    y = data.y

    def score(features):
        return float((trained.outputs(features).argmax(axis=1) == y).mean())

    base, want = score(X), {}
    for name, idx in enc_table.column_indices().items():
        shuffled = X.copy()
        shuffled[:, idx] = X[rng.permutation(len(X))][:, idx]
        want[name] = base - score(shuffled)
    assert got == want


def test_own_sources_are_byte_compiled_too():
    """An editable install keeps fastnn/ and kernels/ outside site-packages."""
    import fastnn

    roots = _bytecode._own_roots(sys.modules)
    assert os.path.dirname(os.path.abspath(fastnn.__file__)) in roots
    assert os.path.dirname(os.path.abspath(fastnn.kernels.__file__)) in roots
    assert _bytecode._own_roots({}) == []


def _runs_ok(code: str) -> None:
    """Run ``code`` in a fresh interpreter (what it imports is its own); it prints ok."""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("ok")


def test_interop_is_imported_at_its_first_use():
    code = ("import sys, fastnn\n"
            "assert 'fastnn.interop' not in sys.modules\n"
            "assert {'export_onnx', 'save_safetensors', 'load_safetensors'} <= set(dir(fastnn))\n"
            "from fastnn import *\n"
            "assert save_safetensors is fastnn.save_safetensors\n"
            "assert fastnn.export_onnx.__module__ == 'fastnn.interop'\n"
            "import fastnn.cli\n"
            "assert fastnn.cli.main(['info']) == 0\n"
            "print('ok')\n")
    _runs_ok(code)


def test_a_quiet_fit_does_not_import_tqdm():
    # tqdm.auto imports asyncio (80 ms of a run's start): only a shown progress bar needs it
    code = ("import sys, numpy as np, fastnn as fnn\n"
            "from fastnn.train import build_mlp, fit\n"
            "m = build_mlp(3, [4], 2)\n"
            "X = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)\n"
            "fit(m, fnn.losses.cross_entropy, fnn.optim.SGD(m.parameters(), lr=0.1),\n"
            "    (X, (X[:, 0] > 0).astype(np.int64)), epochs=1, batch_size=16, quiet=True)\n"
            "assert 'tqdm' not in sys.modules, 'tqdm imported'\n"
            "print('ok')\n")
    _runs_ok(code)
