"""The tabular recipe's piecewise-linear encoding of continuous features (--numeric-encoding
ple, the default for tables): bin edges from the standardized training rows, the run's
description, the checkpoint (resume, predict), safetensors and the ONNX graph of a table
without categorical columns; --numeric-encoding none keeps the plain MLP."""

import numpy as np
import pytest

from fastnn.cli import main
from fastnn.nn import PiecewiseLinearEncoding, TabularMLP, quantile_bins
from fastnn.recipes import (
    ConfigError,
    export_run,
    load_trained,
    resolve_config,
    run_training,
)

pa = pytest.importorskip("pyarrow")

TINY = {"epochs": 2, "hidden": "16", "patience": 0}


def _numbers_only(n, seed):
    """A table of numbers: a skewed one, a 0/1 flag, one with three values, one with blanks."""
    rng = np.random.default_rng(seed)
    spent = rng.gamma(2.0, 40.0, n)
    flag = (rng.random(n) < 0.3).astype(float)
    level = rng.integers(0, 3, n) * 10.0 + 0.5
    age = rng.normal(40, 10, n)
    age[::9] = np.nan
    y = np.where(np.log(spent) + flag + rng.normal(size=n) > 4.3, "yes", "no")
    return pa.table({"spent": spent, "flag": flag, "level": level, "age": age, "y": y})


def test_bins_from_the_standardized_training_rows(tmp_path, capsys):
    data = _numbers_only(300, 0)
    result = run_training({"data": data, **TINY, "numeric_bins": 8}, target="y",
                          out=str(tmp_path / "run"), quiet=False)
    err = capsys.readouterr().err
    assert "piecewise-linear encoded (8 quantile bins at most)" in err
    arch = result.metrics["config"]["architecture"]
    assert arch["numeric_encoding"] == "ple" and arch["numeric_bins"] == 8
    trained = load_trained(str(tmp_path / "run" / "model.npz"))
    model = trained.model
    assert isinstance(model, TabularMLP) and isinstance(model.numeric_encoding,
                                                         PiecewiseLinearEncoding)
    # the continuous block: spent, flag (a category, also a number), level, age, age's
    # blank indicator
    assert arch["numeric_bin_counts"] == model.numeric_encoding.n_bins
    assert arch["numeric_bin_counts"][1:3] == [1, 2]  # the flag one bin, three values two
    assert arch["numeric_bin_counts"][4] == 1  # the indicator
    # the edges are the quantiles of the standardized training rows
    enc = trained.encoding
    train_rows = np.asarray(enc.table.transform(data.drop_columns(["y"])))
    spent_std = (train_rows[:, 0] - enc.standardizer.mean[0]) / enc.standardizer.std[0]
    edges = model.numeric_encoding.bins()[0]
    assert len(edges) == 9 and edges[0] >= spent_std.min() - 1e-5 \
        and edges[-1] <= spent_std.max() + 1e-5
    # predict from the raw table equals the model on the encoded rows
    out = trained.scores(data)
    assert out.shape == (300, 2) and np.isfinite(out).all()
    # safetensors carries the edges
    pytest.importorskip("safetensors")
    export_run(str(tmp_path / "run" / "model.npz"), safetensors=str(tmp_path / "m.safetensors"))
    again = load_trained(str(tmp_path / "m.safetensors"))
    np.testing.assert_allclose(again.scores(data), out, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(again.model.numeric_encoding.edges,
                                  model.numeric_encoding.edges)


def test_resume_keeps_the_edges(tmp_path):
    import pyarrow.csv as pcsv

    pcsv.write_csv(_numbers_only(200, 1), tmp_path / "t.csv")
    spec = f"csv:{tmp_path / 't.csv'}:y"
    run_training({"data": spec, **TINY}, out=str(tmp_path / "run"), quiet=True)
    ckpt = str(tmp_path / "run" / "model.npz")
    before = np.array(load_trained(ckpt).model.numeric_encoding.edges)
    run_training({"epochs": 3}, resume=ckpt, quiet=True)
    np.testing.assert_array_equal(load_trained(ckpt).model.numeric_encoding.edges, before)


def test_none_keeps_the_plain_mlp_and_options_are_checked(tmp_path, capsys):
    data = _numbers_only(120, 2)
    result = run_training({"data": data, **TINY, "numeric_encoding": "none"}, target="y",
                          out=str(tmp_path / "run"), quiet=True)
    assert "numeric_bin_counts" not in result.metrics["config"]["architecture"]
    model = load_trained(str(tmp_path / "run" / "model.npz")).model
    assert model.numeric_encoding is None  # a TabularMLP (the flag is a category too)
    with pytest.raises(ConfigError, match="--numeric-bins must be a positive integer"):
        run_training({"data": data, **TINY, "numeric_bins": 0}, target="y",
                     out=str(tmp_path / "r2"), quiet=True)
    code = main(["train", "--numeric-encoding", "none", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "r3")])
    assert code == 2 and "--numeric-encoding is for tables" in capsys.readouterr().err


def test_onnx_graph_of_a_numbers_only_table_equals_predict_scores(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    data = _numbers_only(240, 3)
    run_training({"data": data, **TINY}, target="y", out=str(tmp_path / "run"), quiet=True)
    ckpt = str(tmp_path / "run" / "model.npz")
    export_run(ckpt, onnx=str(tmp_path / "m.onnx"))
    test = _numbers_only(50, 4).drop_columns(["y"])
    # outside the training range (clipped by the encoder) and a blank where training had none
    cols = {n: np.array(test.column(n).to_numpy(zero_copy_only=False), np.float64)
            for n in test.column_names}
    cols["spent"][0], cols["level"][1], cols["flag"][2] = 1e6, -40.0, np.nan
    test = pa.table(cols)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert any(n.op_type == "Gather" and "numeric_encoding" in n.name
               for n in __import__("onnx").load(str(tmp_path / "m.onnx")).graph.node)
    got = sess.run(None, {i.name: cols[i.name][:, None] for i in sess.get_inputs()})[0]
    np.testing.assert_allclose(got, load_trained(ckpt).scores(test), rtol=1e-5, atol=1e-5)


def test_quantile_bins_of_a_standardized_column_equal_the_raw_ones_mapped():
    """Standardizing is affine: the encoding with edges on standardized values equals the
    one with edges on the raw values (what the docs say of the recipe's choice)."""
    rng = np.random.default_rng(5)
    x = rng.gamma(2.0, 3.0, (400, 1))
    mean, std = x.mean(), x.std()
    raw = PiecewiseLinearEncoding(quantile_bins(x, 10), dtype=np.float64)
    scaled = PiecewiseLinearEncoding(quantile_bins((x - mean) / std, 10), dtype=np.float64)
    np.testing.assert_allclose(raw(x).data, scaled((x - mean) / std).data, atol=1e-9)


def test_a_checkpoint_from_before_the_encoding_resumes_without_it():
    recorded = {"architecture": {"hidden": [16], "dropout": 0.1}, "data": {"spec": "csv:t.csv:y"},
                "run": {}}
    assert resolve_config({"epochs": 5}, recorded)["numeric_encoding"] == "none"
    assert resolve_config({"data": "csv:t.csv:y"})["numeric_encoding"] == "ple"


def test_a_shown_run_says_which_epoch_early_stopping_kept_and_saves_it(tmp_path, capsys):
    # labels that the features do not predict: the validation loss rises after an epoch or
    # two, so patience 1 stops well before 40 epochs and keeps an earlier epoch's weights
    data = _numbers_only(300, 1)
    rng = np.random.default_rng(1)
    data = data.set_column(4, "y", pa.array(rng.choice(["yes", "no"], 300)))
    result = run_training({"data": data, "epochs": 40, "hidden": "64", "patience": 1,
                           "lr": 0.05}, target="y", out=str(tmp_path / "run"), quiet=False)
    err = capsys.readouterr().err
    kept = result.metrics["config"]["run"]["best_epoch"]
    assert result.metrics["epochs"] < 40 and kept < result.metrics["epochs"]
    assert f"early stopping kept epoch {kept} " in err
    # the checkpoint was written after the kept weights came back, and loads
    trained = load_trained(str(tmp_path / "run" / "model.npz"))
    assert trained.config["run"]["best_epoch"] == kept
    assert np.isfinite(trained.scores(data)).all()
    # and a shown run without early stopping ends as well (it writes its last epoch)
    plain = run_training({"data": _numbers_only(300, 2), **TINY}, target="y",
                         out=str(tmp_path / "plain"), quiet=False)
    assert plain.metrics["epochs"] == 2
    assert "early stopping kept" not in capsys.readouterr().err
