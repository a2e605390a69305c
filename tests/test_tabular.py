"""Real tables: column roles, missing and unseen values, the TabularMLP, and the main job on
raw CSV and Parquet files (fastnn.tabular, fastnn.nn.tabular, fastnn.recipes)."""

import datetime as dt
import json

import numpy as np
import pytest
from conftest import cli_train, run_metrics

import fastnn as fnn
from fastnn.cli import main
from fastnn.data import DataError
from fastnn.recipes import load_trained, run_training
from fastnn.tabular import BLANK_CODE, FIRST_CODE, UNKNOWN_CODE, TableEncoder

pa = pytest.importorskip("pyarrow")

SMALL = ["--hidden", "16", "--epochs", "6", "--quiet"]


def _table(**cols):
    return pa.table(cols)


def _roles(enc):
    return {c.name: c.role for c in enc.columns}


# ------------------------------------------------------------------------ role rules
def test_each_role_rule():
    n = 40
    rng = np.random.default_rng(0)
    t = _table(
        real=rng.normal(size=n),
        text=pa.array(["a", "b", "c", None] * 10),
        flag=pa.array([True, False] * 20),
        few=pa.array(np.arange(n) % 5),  # whole numbers, 5 distinct: categories
        many=pa.array(rng.integers(0, 1000, n)),  # whole numbers, many distinct: numeric
        wholefloat=pa.array((np.arange(n) % 3).astype(float)),  # whole floats, 3 distinct
        when=pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=int(d)) for d in range(n)]),
        rowid=pa.array(np.arange(1, n + 1)),  # 1..N: an identifier
        name=pa.array([f"person {i}" for i in range(n)]),  # unique text: an identifier
        note=pa.array([f"note {i}" for i in range(n - 3)] + ["x", "x", "x"]),  # free text
        const=pa.array([7.0] * n),
        empty=pa.nulls(n, pa.float64()),
    )
    enc = TableEncoder.fit(t)
    assert _roles(enc) == {
        "real": "numeric", "text": "categorical", "flag": "categorical", "few": "categorical",
        "many": "numeric", "wholefloat": "categorical", "when": "date", "rowid": "dropped",
        "name": "dropped", "note": "dropped", "const": "dropped", "empty": "dropped"}
    why = {c.name: c.why for c in enc.columns}
    assert why["rowid"].startswith("identifier") and why["name"].startswith("identifier")
    assert why["note"].startswith("free text") and why["const"].startswith("constant")
    assert why["empty"].startswith("empty")
    # whole-number categories keep their value as a continuous feature too
    assert enc.continuous_names[:4] == ["real", "few", "many", "wholefloat"]
    text = next(c for c in enc.columns if c.name == "text")
    assert text.distinct == 3 and text.missing == pytest.approx(0.25)
    # the overrides
    enc = TableEncoder.fit(t, categorical=["many"], numeric=["few"], drop=["real"])
    r = _roles(enc)
    assert (r["many"], r["few"], r["real"]) == ("categorical", "numeric", "dropped")
    with pytest.raises(DataError, match="--numeric text: the column holds text"):
        TableEncoder.fit(t, numeric=["text"])
    with pytest.raises(DataError, match="--drop: no column 'nope'"):
        TableEncoder.fit(t, drop=["nope"])
    with pytest.raises(DataError, match="two roles"):
        TableEncoder.fit(t, drop=["few"], numeric=["few"])
    table_text = enc.role_table(None)
    assert "column" in table_text.splitlines()[0] and "identifier" in table_text


def test_date_parts_match_python():
    stamps = [dt.datetime(2021, 3, 7, 10, 30), dt.datetime(1999, 12, 31, 23, 59, 59),
              dt.datetime(2024, 2, 29)] * 10
    enc = TableEncoder.fit(_table(t=pa.array(stamps, pa.timestamp("s")), x=np.arange(30.0)))
    X = enc.transform(_table(t=pa.array(stamps[:3], pa.timestamp("s")), x=np.zeros(3)))
    names = enc.continuous_names
    for i, s in enumerate(stamps[:3]):
        row = dict(zip(names, X[i], strict=True))
        assert row["t_year"] == s.year and row["t_month"] == s.month and row["t_day"] == s.day
        assert row["t_weekday"] == s.weekday()
        assert row["t_dayofyear"] == s.timetuple().tm_yday
        epoch = dt.datetime(1970, 1, 1)
        assert row["t_elapsed_days"] == pytest.approx((s - epoch).total_seconds() / 86400)


# --------------------------------------------------------- missing and unseen values
def test_blanks_and_unknown_categories_never_raise_and_are_counted():
    train = _table(a=pa.array([1.5, None, 3.5, 5.5]), b=pa.array([1.5, 2.5, 3.5, 4.5]),
                   c=pa.array(["x", "y", None, "x"]), d=pa.array(["p", "q", "p", "q"]))
    enc = TableEncoder.fit(train)
    assert enc.continuous_names == ["a", "b", "a_na"]
    later = _table(a=pa.array([None, 2.5]), b=pa.array([None, 2.5]),
                   c=pa.array([None, "zzz"]), d=pa.array([None, "new"]))
    counts = {}
    X = enc.transform(later, counts)
    assert X[0, 0] == 3.5 and X[0, 2] == 1.0 and X[1, 2] == 0.0  # median, indicator
    assert X[0, 1] == 3.0  # b had no blanks in training: filled all the same, no indicator
    assert X[0, 3] == BLANK_CODE  # c had blanks in training: its own category
    assert X[1, 3] == UNKNOWN_CODE and X[1, 4] == UNKNOWN_CODE
    assert X[0, 4] == UNKNOWN_CODE  # d had no blanks: a blank is unknown
    assert counts == {"a": {"blank": 1}, "b": {"blank": 1, "filled_unseen_blank": 1},
                      "c": {"blank": 1, "unknown": 1},
                      "d": {"blank": 1, "filled_unseen_blank": 1, "unknown": 1}}
    X = enc.transform(train)
    np.testing.assert_array_equal(X[:, 4], [FIRST_CODE, FIRST_CODE + 1] * 2)  # p, q
    # the state is JSON and str arrays, and round-trips
    record, arrays = enc.state()
    again = TableEncoder.from_state(json.loads(json.dumps(record)), arrays)
    np.testing.assert_array_equal(again.transform(later), enc.transform(later))
    with pytest.raises(DataError, match="no column 'd', which the model takes"):
        enc.transform(_table(a=[1.5], b=[1.5], c=["x"]))


def test_numbers_typed_differently_in_a_later_file_map_to_the_same_codes():
    enc = TableEncoder.fit(_table(k=pa.array([1, 2, 3] * 10), x=np.arange(30.0)))
    assert _roles(enc)["k"] == "categorical"
    a = enc.transform(_table(k=pa.array([1, 2, 3]), x=np.zeros(3)))
    b = enc.transform(_table(k=pa.array([1.0, 2.0, 3.0]), x=np.zeros(3)))
    c = enc.transform(_table(k=pa.array(["1", "2", "3"]), x=np.zeros(3)))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_row_numbers_of_a_split_table_are_an_identifier_but_spread_unique_numbers_are_not():
    n = 40
    rng = np.random.default_rng(1)
    t = _table(
        split_id=pa.array(rng.permutation(np.arange(1, 61))[:n]),  # 40 of the row numbers 1..60
        year=pa.array(1900 + 2 * np.arange(n)),  # unique, but not row numbers: a feature
        x=rng.normal(size=n))
    enc = TableEncoder.fit(t)
    assert _roles(enc) == {"split_id": "dropped", "year": "numeric", "x": "numeric"}
    assert next(c for c in enc.columns if c.name == "split_id").why.startswith("identifier")


def test_numbers_outside_the_training_range_are_clipped_and_counted():
    train = _table(x=pa.array([0.5, 4.25, 9.5, None] * 6), k=pa.array([1, 2, 3] * 8))
    enc = TableEncoder.fit(train)
    assert enc.continuous_names == ["x", "k", "x_na"]
    later = _table(x=pa.array([-5.0, 20.0, 3.0, None]), k=pa.array([7, 2, 0, 3]))
    counts = {}
    X = enc.transform(later, counts)
    np.testing.assert_array_equal(X[:, 0], [0.5, 9.5, 3.0, 4.25])  # clipped; blank: median
    np.testing.assert_array_equal(X[:, 1], [3.0, 2.0, 1.0, 3.0])  # the whole-number value
    assert X[0, 3] == UNKNOWN_CODE and X[2, 3] == UNKNOWN_CODE  # ...while 7 and 0 are unknown
    assert counts == {"x": {"clipped": 2, "blank": 1}, "k": {"clipped": 2, "unknown": 2}}
    record, arrays = enc.state()
    again = TableEncoder.from_state(json.loads(json.dumps(record)), arrays)
    np.testing.assert_array_equal(again.transform(later), X)
    np.testing.assert_array_equal(enc.transform(train), again.transform(train))


# ---------------------------------------------------------------------- the module
def test_tabular_mlp_forward_backward_and_padding_row():
    fnn.manual_seed(0)
    model = fnn.nn.TabularMLP(2, [5, 4], hidden=[8], out_features=3, dtype="float64")
    assert [e.embedding_dim for e in model.embeddings] == [4, 3]  # round(1.6 n^0.56)
    x = np.array([[0.5, -1.0, 2, 1], [1.0, 0.0, 4, 3], [0.0, 1.0, 1, 0]], np.float64)
    out = model(x)
    assert out.shape == (3, 3)
    out.sum().backward()
    # code 1 (unknown) is the padding row: zero and no gradient
    w = model.embeddings[0].weight
    assert not w.data[1].any() and not w.grad[1].any() and w.grad[2].any()
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        model(x[:, :3])
    with pytest.raises(ValueError, match="whole numbers"):
        model(np.array([[0.0, 0.0, 0.5, 1.0]]))
    # the continuous part keeps its gradient when the input is a Tensor
    xt = fnn.Tensor(x, requires_grad=True)
    model(xt).sum().backward()
    assert xt.grad[:, :2].any() and not xt.grad[:, 2:].any()


def test_tabular_mlp_gradcheck():
    fnn.manual_seed(1)
    model = fnn.nn.TabularMLP(2, [4], embedding_dims=[2], hidden=[3], out_features=1,
                              batchnorm=False, dtype="float64")
    x = np.array([[0.5, -1.0, 2], [1.0, 0.3, 3], [-0.2, 0.1, 0]])
    emb = model.embeddings[0].weight
    model.zero_grad()
    out = model(x).sum()
    out.backward()
    eps, g = 1e-6, emb.grad.copy()
    for i, j in [(2, 0), (3, 1), (0, 1)]:
        emb.data[i, j] += eps
        up = model(x).sum().item()
        emb.data[i, j] -= 2 * eps
        down = model(x).sum().item()
        emb.data[i, j] += eps
        assert g[i, j] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)
    # the continuous inputs, through fnn.gradcheck (the codes are not differentiable)
    codes = x[:, 2:]
    assert fnn.gradcheck(lambda c: model(fnn.cat([c, fnn.Tensor(codes)], dim=1)).sum(),
                         [fnn.Tensor(x[:, :2].copy(), requires_grad=True)])


def test_tabular_mlp_state_dict_and_safetensors_round_trip(tmp_path):
    fnn.manual_seed(2)
    a = fnn.nn.TabularMLP(1, [6], hidden=[4], out_features=2)
    b = fnn.nn.TabularMLP(1, [6], hidden=[4], out_features=2)
    b.load_state_dict(a.state_dict())
    x = np.array([[0.1, 3], [0.2, 5]], np.float32)
    a.eval()
    b.eval()
    np.testing.assert_array_equal(a(x).data, b(x).data)
    pytest.importorskip("safetensors")
    fnn.save_safetensors(a, tmp_path / "t.safetensors")
    c = fnn.load_safetensors(tmp_path / "t.safetensors",
                             model=fnn.nn.TabularMLP(1, [6], hidden=[4], out_features=2))
    c.eval()
    np.testing.assert_array_equal(a(x).data, c(x).data)


# ---------------------------------------------------------------------- the main job
def _mixed_rows(n, seed, unseen=False):
    """A mixed table whose class depends on a text column, a number and a boolean."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(size=n)
    flag = rng.random(n) < 0.5
    score = (colour == "red") * 2.0 + size + flag
    label = np.where(score > 1.0, "yes", "no")
    rows = ["id,colour,size,flag,day,label"]
    for i in range(n):
        c = "purple" if unseen and i % 7 == 0 else colour[i]
        s = "" if i % 11 == 3 else f"{size[i]:.4f}"
        c = "" if i % 13 == 5 else c
        day = f"2024-0{1 + i % 9}-{10 + i % 17}"
        rows.append(f"{i},{c},{s},{'true' if flag[i] else 'false'},{day},{label[i]}")
    return "\n".join(rows) + "\n", label


def test_train_with_a_test_file_then_predict_and_evaluate_raw_files(tmp_path, capsys):
    text, _ = _mixed_rows(300, 0)
    (tmp_path / "train.csv").write_text(text)
    text, labels = _mixed_rows(80, 1, unseen=True)
    (tmp_path / "test.csv").write_text(text)
    code, out = cli_train(tmp_path, "mix", "--data", f"csv:{tmp_path / 'train.csv'}:label",
                          "--test", str(tmp_path / "test.csv"), "--hidden", "32",
                          "--epochs", "30", "--patience", "5")
    assert code == 0
    err = capsys.readouterr().err
    assert "colour" in err and "categorical" in err and "identifier" in err
    assert "colour: 6 blanks filled, 11 unknown categories" in err  # the purple rows
    m = run_metrics(out)
    assert m["test_accuracy"] > 0.8
    roles = {r["name"]: r["role"] for r in json.loads((out / "columns.json").read_text())}
    assert roles == {"id": "dropped", "colour": "categorical", "size": "numeric",
                     "flag": "categorical", "day": "date"}
    assert m["config"]["architecture"]["cardinalities"] == [5, 4]  # 3, 2 values + 2
    # permutation importance: columns, not pieces; the label depends on colour and size
    imp = m["importance"]
    assert set(imp) == {"colour", "size", "flag", "day"} and m["importance_metric"] == "accuracy"
    assert min(imp["colour"], imp["size"]) > imp["day"]
    assert (out / "importance.png").read_bytes()[:4] == b"\x89PNG"
    # predict on the raw test file (its label column ignored), blanks and unseen included
    assert main(["predict", str(out / "model.npz"), str(tmp_path / "test.csv"),
                 "--out", str(tmp_path / "p.npy")]) == 0
    printed = capsys.readouterr().out
    assert "colour: 6 blanks filled, 11 unknown categories" in printed
    pred = np.load(tmp_path / "p.npy")
    assert pred.dtype.kind == "U" and (pred == labels).mean() == pytest.approx(
        m["test_accuracy"])
    # the same through Python, from a pyarrow table without the label column
    trained = load_trained(str(out / "model.npz"))
    import pyarrow.csv as pcsv

    table = pcsv.read_csv(tmp_path / "test.csv").drop_columns(["label"])
    np.testing.assert_array_equal(trained.predict(table), pred)
    # evaluate reads the recorded test file
    assert main(["evaluate", str(out / "model.npz")]) == 0
    printed = capsys.readouterr().out
    assert "test file, 80 samples" in printed
    assert f"accuracy  {m['test_accuracy']:.4f}" in printed


def test_unseen_target_label_in_the_test_file_is_an_error_naming_it(tmp_path, capsys):
    text, _ = _mixed_rows(60, 0)
    (tmp_path / "train.csv").write_text(text)
    (tmp_path / "test.csv").write_text(text.replace(",no\n", ",maybe\n", 1))
    code, _ = cli_train(tmp_path, "bad", "--data", f"csv:{tmp_path / 'train.csv'}:label",
                        "--test", str(tmp_path / "test.csv"), *SMALL)
    assert code == 2
    assert "'maybe' is not one of the model's classes" in capsys.readouterr().err


def test_parquet_log_target_and_checkpoint_round_trip(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(0)
    n = 400
    kind = rng.choice(["a", "b", "c"], n)
    x = rng.normal(size=n)
    price = np.exp(1.0 + 0.8 * x + (kind == "b") * 1.5 + rng.normal(scale=0.1, size=n))
    pq.write_table(pa.table({"kind": kind, "x": x, "price": price}), tmp_path / "p.parquet")
    result = run_training({"data": f"parquet:{tmp_path / 'p.parquet'}:price",
                           "target_transform": "log", "hidden": "32", "epochs": 40,
                           "patience": 10}, out=str(tmp_path / "run"), quiet=True)
    m = result.metrics
    assert m["config"]["task"]["target_transform"] == "log"
    assert m["test_r2"] > 0.8  # in the original units (a log-unit R² would read alike)
    trained = load_trained(str(tmp_path / "run" / "model.npz"))
    pred = trained.predict(str(tmp_path / "p.parquet"))
    assert pred.min() > -1 and abs(np.median(pred) - np.median(price)) < 0.3 * np.median(price)
    with pytest.raises(DataError, match="above -1"):
        run_training({"data": f"parquet:{tmp_path / 'p.parquet'}:x",
                      "target_transform": "log", "epochs": 1}, out=str(tmp_path / "r2"),
                     quiet=True)
    from fastnn.recipes import export_run

    # safetensors carries the table encoding too
    pytest.importorskip("safetensors")

    export_run(str(tmp_path / "run" / "model.npz"), safetensors=str(tmp_path / "m.safetensors"))
    again = load_trained(str(tmp_path / "m.safetensors"))
    np.testing.assert_allclose(again.predict(str(tmp_path / "p.parquet")), pred, rtol=1e-6)


def test_a_dataframe_trains_like_its_file(tmp_path):
    pd = pytest.importorskip("pandas")
    text, _ = _mixed_rows(120, 0)
    (tmp_path / "d.csv").write_text(text)
    df = pd.read_csv(tmp_path / "d.csv")
    a = run_training({"data": df, "hidden": "16", "epochs": 3}, target="label",
                     out=str(tmp_path / "a"), quiet=True)
    assert a.metrics["config"]["data"]["spec"] == "a DataFrame"
    assert 0 <= a.metrics["test_accuracy"] <= 1


def test_table_options_need_a_table(tmp_path, capsys):
    code, _ = cli_train(tmp_path, "x", "--categorical", "a", *SMALL)
    assert code == 2 and "--categorical is for tables" in capsys.readouterr().err
