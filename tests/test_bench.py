"""fastnn bench: its pieces run, its tables hold the rows asked for, bad names exit 2.

Nothing here asserts a speed: the machine is shared and the figures are the benchmark's job.
"""

import json
import re
import warnings

import numpy as np
import pytest

import fastnn as fnn
from fastnn import bench

# A problem small enough to fit in well under a second: 416 training rows, so an epoch is
# two batches of 200 and one of 16 (scikit-learn's batch_size='auto').
TINY = {"data": "make_classification", "n_samples": 520, "n_features": 12, "n_informative": 6,
        "n_classes": 3, "hidden": [16, 8], "max_iter": 2}


def _rows(text: str, first_column_width: int) -> dict[str, list[str]]:
    """Table rows keyed by their second column (framework or variant), after the header."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] in (["model", "framework"],
                                                                           ["problem", "variant"]))
    rows = {}
    for line in lines[start + 1:]:
        fields = line[first_column_width:].split()
        if len(fields) < 2 or not re.match(r"^[\d.]+$", fields[1]):
            break
        rows[fields[0]] = fields[1:]
    return rows


def test_models_of_issue_16():
    assert bench.MODELS["T"] == ([100, 256, 256, 5], 200, False)
    assert bench.MODELS["W64"] == ([256, 64, 64, 10], 256, True)
    assert set(bench.DEFAULT_MODELS.split(",")) == set(bench.MODELS)
    assert {"fastnn", "fastnn-graph", "gemm"} <= set(bench.FRAMEWORKS)


def test_step_table_has_a_positive_row_per_framework(capsys):
    code = bench.main(["--models", "S", "--frameworks", "fastnn,fastnn-graph,gemm",
                       "--rounds", "1", "--repeats", "3", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = _rows(out, 27)
    assert set(rows) == {"fastnn", "fastnn-graph", "gemm"}, out
    for fw, (ms, vs_fastnn, vs_floor, peak_mib) in rows.items():
        assert float(ms) > 0, (fw, out)
        assert vs_fastnn.endswith("x") and vs_floor.endswith("x")
        assert float(peak_mib) >= 0, (fw, out)
    assert rows["fastnn"][1] == "1.00x" and rows["gemm"][2] == "1.00x"
    assert "S 784-128-10 (32)" in out
    path = "compiled" if getattr(fnn, "compile_step", None) is not None else "graph"
    assert f"fastnn: the {path} step" in out


def test_custom_hidden_model_takes_its_input_and_class_counts(capsys):
    code = bench.main(["--hidden", "24", "--in-features", "20", "--classes", "3", "--batch",
                       "16", "--no-batchnorm", "--frameworks", "fastnn-graph,gemm",
                       "--rounds", "1", "--repeats", "2", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "20-24-3 (16)" in out
    assert set(_rows(out, 27)) == {"fastnn-graph", "gemm"}


@pytest.mark.parametrize("argv, message", [
    (["--models", "S,XL"], "unknown model 'XL'"),
    (["--models", "S", "--frameworks", "fastnn,caffe"], "unknown frameworks ['caffe']"),
    (["--sklearn", "--problems", "mnist"], "unknown problems ['mnist']"),
    (["--rounds", "0"], "--rounds must be at least 1, got 0"),
    (["--hidden", "64,x"], "--hidden takes comma-separated layer sizes"),
    (["--sklearn", "--max-iter", "0"], "--max-iter must be at least 1, got 0"),
])
def test_bad_names_and_counts_exit_2_with_a_message(argv, message, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("fastnn bench: error:"), err


def test_graph_step_trains_the_model():
    step = bench._fastnn_step([20, 16, 4], 8, True)
    assert step.path == "graph"
    before = {k: v.copy() for k, v in step.model.state_dict().items()}
    step()
    after = step.model.state_dict()
    assert any(not np.array_equal(before[k], after[k]) for k in before)


def test_fastnn_entry_uses_compile_step_when_fastnn_has_one(monkeypatch):
    calls = []

    def fake_compile_step(model, loss_fn, optimizer):
        calls.append((model, loss_fn, optimizer))
        return lambda x, y: calls.append((x.shape, x.dtype, y.shape)) or 1.0

    monkeypatch.setattr(fnn, "compile_step", fake_compile_step, raising=False)
    step = bench._fastnn_compiled_step([20, 16, 4], 8, False)
    assert step.path == "compiled"
    model, loss_fn, optimizer = calls[0]
    assert model is step.model and loss_fn is fnn.losses.cross_entropy
    assert isinstance(optimizer, fnn.optim.Adam)
    step()
    assert calls[1] == ((8, 20), np.dtype("float32"), (8,))


def test_fastnn_entry_falls_back_to_the_graph_step(monkeypatch):
    monkeypatch.delattr(fnn, "compile_step", raising=False)
    assert bench._fastnn_compiled_step([20, 16, 4], 8, False).path == "graph"


def test_compiled_and_graph_entries_train_the_same_model():
    if getattr(fnn, "compile_step", None) is None:
        pytest.skip("this fastnn has no compile_step")
    for dims, batch, bn in ([20, 16, 4], 8, False), ([20, 16, 12, 4], 8, True):
        graph, compiled = (bench._fastnn_step(dims, batch, bn),
                           bench._fastnn_compiled_step(dims, batch, bn))
        for _ in range(3):
            graph()
            compiled()
        want, got = graph.model.state_dict(), compiled.model.state_dict()
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_sklearn_problem_splits_20_percent():
    X_train, X_test, y_train, y_test = bench.sklearn_problem(TINY)
    assert X_train.shape == (416, 12) and X_test.shape == (104, 12)
    assert X_train.dtype == np.float64 and len(y_train) == 416 and len(y_test) == 104
    with pytest.raises(ValueError, match="spec\\['data'\\]"):
        bench.sklearn_problem({"data": "iris"})


def test_sklearn_estimators_get_the_same_settings():
    from sklearn.neural_network import MLPClassifier as Reference

    from fastnn.sklearn import MLPClassifier

    ref = bench.sklearn_estimator("sklearn-float64", [256, 256], 10)
    f64 = bench.sklearn_estimator("fastnn-float64", [256, 256], 10)
    f32 = bench.sklearn_estimator("fastnn-float32", [256, 256], 10)
    assert isinstance(ref, Reference) and isinstance(f64, MLPClassifier)
    for est in (ref, f64, f32):
        p = est.get_params()
        assert (p["hidden_layer_sizes"], p["max_iter"], p["random_state"]) == ((256, 256), 10, 0)
        assert (p["solver"], p["batch_size"]) == ("adam", "auto")
    assert f64.dtype is None and f32.dtype == "float32"
    with pytest.raises(ValueError, match="variant"):
        bench.sklearn_estimator("floor-float64", [8], 1)


@pytest.mark.parametrize("variant", ["sklearn-float64", "fastnn-float64", "fastnn-float32"])
def test_fit_worker_times_a_fit_without_convergence_warnings(variant):
    threads = fnn.get_num_threads()  # the worker sets it; keep this process's as it is
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = bench._fit_worker(TINY, variant, threads)
    assert not [w for w in caught if w.category.__name__ == "ConvergenceWarning"]
    assert out["seconds"] > 0 and out["warmup_seconds"] > 0
    assert out["epochs"] == TINY["max_iter"]
    assert 0.0 <= out["accuracy"] <= 1.0


def test_floor_worker_counts_the_last_short_batch():
    out = bench._floor_worker(TINY, "float64", fnn.get_num_threads())
    assert out["seconds"] > 0
    assert out["steps"] == TINY["max_iter"] * 3  # 200 + 200 + 16 rows an epoch
    assert out["epochs"] == TINY["max_iter"]


def test_sklearn_table_ratios_and_epoch_scaling():
    results = {"p": {
        "sklearn-float64": [{"seconds": 2.0, "epochs": 5, "accuracy": 0.9}] * 3,
        "fastnn-float32": [{"seconds": 1.0, "epochs": 10, "accuracy": 0.8},
                           {"seconds": 3.0, "epochs": 10, "accuracy": 0.8},
                           {"seconds": 0.5, "epochs": 10, "accuracy": 0.8}],
        "floor-float64": [{"seconds": 1.0, "epochs": 10}],
        "floor-float32": [{"seconds": 0.25, "epochs": 10}],
    }}
    rows = _rows(bench.format_sklearn_table(results), 11)
    # sklearn stopped after 5 of 10 epochs: its floor is half of the 10-epoch one.
    assert rows["sklearn-float64"] == ["2.000", "5", "0.9000", "1.00x", "4.00x"]
    assert rows["fastnn-float32"] == ["1.000", "10", "0.8000", "0.50x", "4.00x"]
    assert rows["floor-float64"] == ["1.000", "10", "-", "0.50x", "1.00x"]
    assert rows["floor-float32"][-1] == "1.00x"


def test_step_table_ratios():
    text = bench.format_table({"m": {"fastnn": [2e-3, 1e-3, 3e-3], "gemm": [1e-3]}})
    rows = _rows(text, 27)
    assert rows["fastnn"] == ["2.000", "1.00x", "2.00x"]
    assert rows["gemm"] == ["1.000", "0.50x", "1.00x"]


@pytest.mark.slow
def test_sklearn_command_prints_every_variant(capsys, tmp_path):
    """The --sklearn command end to end; its --json figures are run_sklearn_bench's, one worker
    process per (round, problem, variant) (each worker costs a process start, an import of
    scikit-learn and fastnn and a warm-up fit: one run checks the table and the figures)."""
    code = bench.main(["--sklearn", "--problems", "digits", "--max-iter", "1", "--rounds", "1",
                       "--threads", "1", "--json", str(tmp_path / "figures.json")])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out
    assert "warm-up fit" in out
    rows = _rows(out, 11)
    assert set(rows) == set(bench.SKLEARN_VARIANTS), out
    for variant, (seconds, epochs, acc, _, _) in rows.items():
        assert float(seconds) > 0 and epochs == "1"
        assert (acc == "-") == variant.startswith("floor")
    # run_sklearn_bench's figures: one round of every variant, each from its worker, logged
    results = json.loads((tmp_path / "figures.json").read_text())["sklearn"]["digits"]
    assert set(results) == set(bench.SKLEARN_VARIANTS), captured.err
    fit, = results["fastnn-float32"]
    assert fit["seconds"] > 0 and 0 <= fit["accuracy"] <= 1 and fit["epochs"] == 1
    # digits: 1,437 training rows, an epoch of 7 batches of 200 and one of 37
    assert results["floor-float32"][0]["steps"] == results["floor-float64"][0]["steps"] == 8
    assert "round 1/1 digits fastnn-float32" in captured.err


# ------------------------------------------------------------------ the CNNs of issue 27

def test_cnn_models_of_issue_27():
    assert bench.DEFAULT_MODELS == "S,T,M,W64,L"  # the CNNs only when asked for
    shapes = {name: bench.cnn_shapes(name) for name in bench.CNN_MODELS}
    assert bench.CNN_MODELS["lenet"][:2] == ((1, 28, 28), 64)
    assert bench.CNN_MODELS["cifar"][:2] == ((3, 32, 32), 128)
    # LeNet-5: 6x28x28 after conv1 (pad 2), 16x5x5 = 400 into the 120-84-10 head.
    lenet = [(layer, shape) for layer, shape in shapes["lenet"] if layer[0] in ("conv", "linear")]
    assert [(layer[1], shape) for layer, shape in lenet] == [
        (6, (1, 28, 28)), (16, (6, 14, 14)), (120, (400,)), (84, (120,)), (10, (84,))]
    cifar = shapes["cifar"]
    convs = [(layer[1], shape) for layer, shape in cifar if layer[0] == "conv"]
    assert convs == [(32, (3, 32, 32)), (32, (32, 32, 32)), (64, (32, 16, 16)),
                     (64, (64, 16, 16))]
    assert sum(layer[0] == "bn" for layer, _ in cifar) == 4
    assert cifar[-1] == (("linear", 10), (4096,))
    assert "Conv2d(1, 6, 5, padding=2)" in bench.cnn_describe("lenet")


@pytest.fixture
def tiny_cnn_batches(monkeypatch):
    """The bench's CNNs with batch 4, so that a step takes milliseconds."""
    tiny = {name: (inp, 4, layers) for name, (inp, _, layers) in bench.CNN_MODELS.items()}
    monkeypatch.setattr(bench, "CNN_MODELS", tiny)


@pytest.mark.parametrize("name", ["lenet", "cifar"])
def test_fastnn_cnn_workers_run_a_step_and_train(name, tiny_cnn_batches):
    for fw in ("fastnn", "fastnn-graph", "gemm"):
        out = bench._worker(fw, name, 4, None, 1, 1)
        assert len(out["times"]) == 1 and out["times"][0] > 0, (fw, out)
        assert out["peak_bytes"] >= 0
        if fw.startswith("fastnn"):
            assert out["step_traced_bytes"] > 0
    compiled = bench._fastnn_cnn_compiled_step(name)
    assert compiled.path == "compiled" or compiled.path.startswith(
        "graph (fnn.compile_step raised NotCompilable"), compiled.path
    step = bench._fastnn_cnn_step(name)
    before = {k: v.copy() for k, v in step.model.state_dict().items()}
    step()
    after = step.model.state_dict()
    assert all(not np.array_equal(before[k], after[k])
               for k in before if k.endswith("weight"))


@pytest.mark.slow  # importing torch or jax and jit-compiling take seconds
@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("name", ["lenet", "cifar"])
def test_torch_and_jax_cnn_workers_run_a_step(framework, name, tiny_cnn_batches):
    pytest.importorskip(framework)
    out = bench._worker(framework, name, 4, None, 1, 1)
    assert len(out["times"]) == 1 and out["times"][0] > 0, (framework, name, out)


def test_cnn_table_skips_numpy_and_says_which_fastnn_path_ran(capsys):
    code = bench.main(["--models", "lenet", "--frameworks", "fastnn,gemm,numpy",
                       "--rounds", "1", "--repeats", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert set(_rows(out, 27)) == {"fastnn", "gemm"}, out
    assert "no CNN step in numpy" in out and "lenet 1x28x28 (64)" in out
    assert re.search(r"fastnn: the (compiled|graph) step.* on lenet 1x28x28 \(64\)", out), out
    assert "peak MiB" in out


def test_unknown_model_names_the_cnns_too(capsys):
    assert bench.main(["--models", "resnet"]) == 2
    assert "lenet, cifar" in capsys.readouterr().err


def test_cnn_kernel_profile_names_where_the_time_goes(tiny_cnn_batches):
    from fastnn.kernels import conv

    shifted = conv.conv2d_forward_shifted
    out = bench.cnn_kernel_profile("cifar", threads=1, steps=1)
    assert conv.conv2d_forward_shifted is shifted  # the wrappers are taken off again
    assert out["step"] > 0
    for label in ("conv forward (shifted products)", "conv backward (shifted products)",
                  "BatchNorm2d forward", "BatchNorm2d backward", "max-pool forward",
                  "max-pool backward"):
        assert 0 < out[label] < out["step"], (label, out)
    assert "other" in out


def test_the_tables_report_gives_the_epochs_cpu_time_ratio():
    results = {
        "files": {"csv": "t.csv", "parquet": "t.parquet", "csv_bytes": 2**20,
                  "parquet_bytes": 2**19},
        "epochs": {"TabularMLP": [2.0, 2.2, 9.0], "MLP": [2.0, 2.0, 2.0],
                   "cpu": {"TabularMLP": [1.5, 1.2, 1.4], "MLP": [1.0, 1.1, 0.9]},
                   "steps": {"TabularMLP": "graph (why)", "MLP": "compiled"},
                   "rows": 1000, "batch": 32, "width": 217},
    }
    lines = bench.format_tables_report(results).splitlines()
    assert "TabularMLP 2.20 s" in lines[-2] and "1.10x" in lines[-2]
    assert lines[-1] == "  CPU time of those epochs: TabularMLP 1.40 s, MLP 1.00 s: 1.40x"
