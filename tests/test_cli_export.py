"""fastnn export: a checkpoint served by onnxruntime and read back from safetensors, raw
features in, the run's own labels and units out."""

import json

import numpy as np
import pytest
from conftest import blobs

from fastnn.cli import main

SMALL = ["--hidden", "16,16", "--epochs", "3", "--batch-size", "16", "--quiet"]


def _train(tmp_path, name, X, y, *extra):
    np.savez(tmp_path / f"{name}.npz", X=X, y=y)
    out = tmp_path / name
    assert main(["train", "--data", f"npz:{tmp_path / name}.npz", "--out", str(out), *SMALL,
                 *extra]) == 0
    return out / "model.npz"


def _predict(tmp_path, model, X, *extra):
    np.savez(tmp_path / "in.npz", X=X)
    out = tmp_path / "pred.npy"
    assert main(["predict", str(model), str(tmp_path / "in.npz"), "--out", str(out),
                 *extra]) == 0
    return np.load(out)


@pytest.mark.parametrize("fold", [False, True])
def test_onnx_takes_raw_features_and_gives_what_predict_scores_writes(tmp_path, fold):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    X, idx = blobs(200, 5, 3)
    X = X * 40 + 300  # raw units far from standardized ones: the graph must standardize
    y = np.array(["low", "mid", "high"])[idx]
    ckpt = _train(tmp_path, "c", X, y)
    args = ["export", str(ckpt), "--onnx", str(tmp_path / "m.onnx")]
    assert main(args + (["--fold-batchnorm"] if fold else [])) == 0
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for rows in (X[:1], X[:37]):
        got = sess.run(None, {"input": rows.astype(np.float32)})[0]
        want = _predict(tmp_path, ckpt, rows, "--scores")
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    classes = json.loads(props["fastnn.classes"])
    assert classes == ["high", "low", "mid"]
    labels = np.array(classes)[got.argmax(axis=1)]
    np.testing.assert_array_equal(labels, _predict(tmp_path, ckpt, X[:37]))


def test_onnx_regression_outputs_original_units(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X @ [3.0, -1.0, 2.0, 0.5] * 100 + 5000
    ckpt = _train(tmp_path, "r", X, y)
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "r.onnx")]) == 0
    sess = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": X[:37].astype(np.float32)})[0]
    want = _predict(tmp_path, ckpt, X[:37])
    assert got.shape == (37, 1) and want.shape == (37,)
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-5)
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "p.onnx"),
                 "--probabilities"]) == 2


def test_safetensors_export_predicts_like_the_checkpoint(tmp_path, capsys):
    pytest.importorskip("safetensors")
    X, idx = blobs(120, 4, 2)
    y = np.array([2023, 2024])[idx]
    ckpt = _train(tmp_path, "s", X, y)
    st = tmp_path / "m.safetensors"
    assert main(["export", str(ckpt), "--safetensors", str(st)]) == 0
    np.testing.assert_array_equal(_predict(tmp_path, st, X), _predict(tmp_path, ckpt, X))
    np.testing.assert_array_equal(_predict(tmp_path, st, X, "--scores"),
                                  _predict(tmp_path, ckpt, X, "--scores"))
    assert set(_predict(tmp_path, st, X).tolist()) <= {2023, 2024}
    # A safetensors file without a run's encoding: refused with a way out.
    import fastnn as fnn

    fnn.save_safetensors(fnn.Sequential(fnn.Linear(4, 2)), tmp_path / "bare.safetensors")
    capsys.readouterr()
    np.savez(tmp_path / "in.npz", X=X)
    assert main(["predict", str(tmp_path / "bare.safetensors"), str(tmp_path / "in.npz"),
                 "--out", str(tmp_path / "p.npy")]) == 2
    assert "fastnn export CKPT --safetensors" in capsys.readouterr().err


def test_export_refuses_bad_requests(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.npz"), "--onnx", "x.onnx"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    X, y = blobs(60, 3, 2)
    ckpt = _train(tmp_path, "b", X, y)
    assert main(["export", str(ckpt)]) == 2
    assert "--onnx FILE and/or --safetensors FILE" in capsys.readouterr().err
