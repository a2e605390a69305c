"""`fastnn export --onnx` of a model trained on a raw table: a graph whose inputs are the raw
columns (fastnn.interop.export_table_onnx), run by onnxruntime against `fastnn predict
--scores` on a test file with blanks and categories never seen in training."""

import csv

import numpy as np
import pytest

from fastnn.cli import main
from fastnn.recipes import export_run, load_trained, run_training

pytest.importorskip("pyarrow")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TINY = {"epochs": 2, "hidden": "16", "patience": 0}


def _write_shop(path, n, seed, test=False, date=False):
    """A mixed table: text with blanks, booleans, whole numbers with few values (a category
    and a number), real numbers with blanks, real numbers without blanks in training; the
    test file adds unseen categories and blanks in the columns that had none."""
    rng = np.random.default_rng(seed)
    header = ["city", "member", "visits", "spent", "age", "came_back", "price"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header + (["since"] if date else []))
        for i in range(n):
            city = str(rng.choice(["Lyon", "Paris", "Nantes"]))
            if i % 11 == 0:
                city = ""  # training had blank cities: code 0
            if test and i % 5 == 1:
                city = "Marseille"  # never seen: unknown
            if test and i % 17 == 4:
                city = "NA"  # a blank marker, as the CSV reader takes it
            member = bool(rng.random() < 0.4)
            visits = int(rng.integers(0, 6))
            spent = rng.gamma(2.0, 40.0)
            age = rng.normal(40, 10)
            y = visits + (city == "Paris") * 2 + member * 2 + rng.normal() > 4
            price = np.exp(1 + 0.01 * spent + 0.3 * member + 0.1 * rng.normal())
            cells = [city, "True" if member else "False", str(visits),
                     "" if i % 13 == 0 else f"{spent:.2f}", f"{age:.1f}",
                     "yes" if y else "no", f"{price:.4f}"]
            if test:
                if i % 7 == 2:
                    cells[1] = ""  # member had no blanks in training
                if i % 6 == 3:
                    cells[2] = "" if i % 12 == 3 else "9"  # visits: a blank; an unseen value
                if i % 8 == 5:
                    cells[4] = ""  # age had no blanks in training
                if i % 9 == 4:
                    cells[4] = "250.0"  # far outside the training range: clipped
            if date:
                cells.append(f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}")
            w.writerow(cells)


def _feeds(session, path, dates=()):
    """onnxruntime's inputs from a CSV, as a user would build them: each input column by
    name, (N, 1); text as it is ("" a blank), numbers as float64 (a blank NaN), ``dates``
    as float64 seconds since 1970 (a blank NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    feeds = {}
    for i in session.get_inputs():
        cells = [r[i.name] for r in rows]
        if i.name in dates:
            when = np.array([c or "NaT" for c in cells], "datetime64[s]")
            feeds[i.name] = np.where(np.isnat(when), np.nan, when.astype(np.int64)).astype(
                np.float64).reshape(-1, 1)
        elif i.type == "tensor(string)":
            feeds[i.name] = np.array(cells, dtype=object).reshape(-1, 1)
        else:
            feeds[i.name] = np.array([float(c) if c else np.nan for c in cells],
                                     np.float64).reshape(-1, 1)
    return feeds


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    d = tmp_path_factory.mktemp("shop")
    _write_shop(d / "train.csv", 240, 1)
    _write_shop(d / "test.csv", 60, 2, test=True)
    return d


def test_classifier_graph_equals_predict_scores(shop, tmp_path):
    run_training({"data": f"csv:{shop / 'train.csv'}:came_back", "drop": "price", **TINY},
                 out=str(tmp_path / "run"), quiet=True)
    ckpt = str(tmp_path / "run" / "model.npz")
    assert main(["export", ckpt, "--onnx", str(tmp_path / "m.onnx")]) == 0
    trained = load_trained(ckpt)
    counts = {}
    want = trained.scores(str(shop / "test.csv"), counts=counts)
    # the test file does hold what the graph must handle
    assert counts["city"]["unknown"] and counts["member"]["filled_unseen_blank"]
    assert counts["age"]["filled_unseen_blank"] and counts["visits"]["unknown"]
    assert counts["age"]["clipped"]
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    types = {i.name: i.type for i in sess.get_inputs()}
    assert types == {"city": "tensor(string)", "member": "tensor(string)",
                     "visits": "tensor(double)", "spent": "tensor(double)",
                     "age": "tensor(double)"}
    assert all(i.shape[1] == 1 for i in sess.get_inputs())
    got = sess.run(None, _feeds(sess, shop / "test.csv"))[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # what `fastnn predict --scores` writes, too
    assert main(["predict", ckpt, str(shop / "test.csv"), "--scores",
                 "--out", str(tmp_path / "s.csv")]) == 0
    written = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(got, written, rtol=1e-5, atol=1e-5)
    # probabilities: the softmax of the same scores
    export_run(ckpt, onnx=str(tmp_path / "p.onnx"), probabilities=True)
    sess = ort.InferenceSession(str(tmp_path / "p.onnx"))
    prob = sess.run(None, _feeds(sess, shop / "test.csv"))[0]
    e = np.exp(want - want.max(axis=1, keepdims=True))
    np.testing.assert_allclose(prob, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_log_target_regression_graph_in_original_units(shop, tmp_path):
    run_training({"data": f"csv:{shop / 'train.csv'}:price", "drop": "came_back",
                  "target_transform": "log", **TINY}, out=str(tmp_path / "run"), quiet=True)
    ckpt = str(tmp_path / "run" / "model.npz")
    export_run(ckpt, onnx=str(tmp_path / "m.onnx"), fold_batchnorm=True)
    want = load_trained(ckpt).scores(str(shop / "test.csv"))
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = sess.run(None, _feeds(sess, shop / "test.csv"))[0]
    assert got.shape == (60, 1)
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-5)


def test_a_date_column_as_seconds(tmp_path):
    _write_shop(tmp_path / "d.csv", 120, 3, date=True)
    _write_shop(tmp_path / "t.csv", 40, 4, test=True, date=True)
    text = (tmp_path / "t.csv").read_text().splitlines()
    text[3] = text[3].rsplit(",", 1)[0] + ","  # a blank date (none in training)
    (tmp_path / "t.csv").write_text("\n".join(text) + "\n")
    run_training({"data": f"csv:{tmp_path / 'd.csv'}:came_back", "drop": "price",
                  **TINY}, out=str(tmp_path / "run"), quiet=True)
    ckpt = str(tmp_path / "run" / "model.npz")
    trained = load_trained(ckpt)
    assert "since" in [c.name for c in trained.encoding.table.of_role("date")]
    export_run(ckpt, onnx=str(tmp_path / "m.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    feeds = _feeds(sess, tmp_path / "t.csv", dates=("since",))
    assert np.isnan(feeds["since"]).sum() == 1
    got = sess.run(None, feeds)[0]
    np.testing.assert_allclose(got, trained.scores(str(tmp_path / "t.csv")), rtol=1e-5,
                               atol=1e-5)


def test_date_parts_in_the_graph_equal_the_encoders():
    """The graph's calendar arithmetic against fastnn.tabular's (NumPy's datetime64) over
    ±1600 years, leap days and times before 1970 included."""
    onnx = pytest.importorskip("onnx")
    from fastnn.interop import _emit_date_parts, _GraphBuilder
    from fastnn.tabular import _date_parts

    h, T = onnx.helper, onnx.TensorProto
    g = _GraphBuilder(onnx, 17)
    g.name("s")
    _emit_date_parts(g, "s", "d")
    g.nodes[-1].output[0] = "parts"
    graph = h.make_graph(g.nodes, "dates", [h.make_tensor_value_info("s", T.DOUBLE, ["N", 1])],
                         [h.make_tensor_value_info("parts", T.DOUBLE, ["N", 6])],
                         initializer=g.initializers)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString())
    rng = np.random.default_rng(0)
    s = np.concatenate([rng.integers(-5 * 10**10, 5 * 10**10, 5000).astype(float),
                        rng.uniform(-3e9, 3e9, 5000),
                        [0, -1, 86399, 86400, 951782400, 951868800, 4107542400, -2203891200]])
    got = sess.run(None, {"s": s.reshape(-1, 1)})[0]
    np.testing.assert_array_equal(got, _date_parts(s))


def test_columns_named_like_the_graphs_tensors(tmp_path):
    pa = pytest.importorskip("pyarrow")
    rng = np.random.default_rng(5)
    n = 80
    x = rng.normal(size=n)
    kind = rng.choice(["u", "v"], n)
    data = pa.table({"input": x, "continuous": kind, "y": np.where(x > 0, "hi", "lo")})
    run_training({"data": data, **TINY}, out=str(tmp_path / "run"), quiet=True, target="y")
    ckpt = str(tmp_path / "run" / "model.npz")
    export_run(ckpt, onnx=str(tmp_path / "m.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert [i.name for i in sess.get_inputs()] == ["input", "continuous"]
    got = sess.run(None, {"input": x[:, None], "continuous": kind.astype(object)[:, None]})[0]
    want = load_trained(ckpt).scores(data)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    bad = pa.table({"output": x, "y": np.where(x > 0, "hi", "lo")})
    run_training({"data": bad, **TINY}, out=str(tmp_path / "r2"), quiet=True, target="y")
    with pytest.raises(ValueError, match="column 'output' has the name of the graph's output"):
        export_run(str(tmp_path / "r2" / "model.npz"), onnx=str(tmp_path / "o.onnx"))
