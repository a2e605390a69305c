"""fastnn/tasks.py: which task a target means, class labels of any kind, target scaling and
the metrics, against scikit-learn's own metrics where it has them."""

import numpy as np
import pytest

from fastnn.data import DataError
from fastnn.tasks import (
    Classes,
    TargetScaler,
    TaskError,
    classification_metrics,
    infer_task,
    regression_metrics,
)


@pytest.mark.parametrize("y, task", [
    (np.array(["a", "b", "a"]), "classification"),
    (np.array([True, False, True]), "classification"),
    (np.array([1, 2, 3] * 10), "classification"),
    (np.array([0, 1000] * 5), "classification"),
    (np.array([2023, 2024] * 5), "classification"),
    (np.array([-1, 1] * 5), "classification"),
    (np.array([1.0, 2.0, 1.0]), "classification"),       # whole-number floats are labels
    (np.array([0.5, 1.25, 3.0]), "regression"),
    (np.arange(12.0).reshape(6, 2), "regression"),          # two target columns
    (np.arange(442) % 214, "regression"),                  # diabetes: 214 values in 442 rows
    (np.arange(100_000) % 1000, "classification"),         # 1000 classes, 100 rows each
    (np.arange(43_152) % 10_500 + 326, "regression"),      # diamonds-like prices: > 1000
    # counts: 363 values with gaps over 1..977, 12 rows each (10 per value would make
    # them classes without the gap rule; the bike-share riders' shape)
    (np.repeat(np.unique(np.round(np.geomspace(1, 977, 800))), 12), "regression"),
    (np.arange(6916) % 570 + 1, "classification"),         # 570 labels 1..570, no gaps
    (np.repeat(np.arange(0, 60, 2), 20), "regression"),    # 30 even values: half the range
    (np.repeat(np.r_[0:20, 100], 20), "regression"),       # 21 values over 0..100
    (np.repeat(np.r_[0:40, 41:45], 20), "classification"),  # one label missing: 44 of 45
])
def test_auto_task(y, task):
    got, why = infer_task(y)
    assert got == task and why


def test_auto_refuses_to_guess_between_and_names_task():
    y = np.arange(1000) % 200  # 200 values, 5 rows each: neither rule applies
    with pytest.raises(TaskError, match="--task classification or --task regression"):
        infer_task(y)
    # 40 labels without gaps, 12 rows each on average, but half of them seen twice: a
    # count's long tail or rare classes: asked
    tailed = np.r_[np.repeat(np.arange(20), 22), np.repeat(np.arange(20, 40), 2)]
    with pytest.raises(TaskError, match="--task classification or --task regression"):
        infer_task(tailed)
    assert infer_task(y, "regression")[0] == "regression"
    assert infer_task(y, "classification")[0] == "classification"


def test_explicit_task_checked_against_the_data():
    with pytest.raises(TaskError, match="needs numeric targets"):
        infer_task(np.array(["a", "b"]), "regression")
    with pytest.raises(TaskError, match="fractional values"):
        infer_task(np.array([0.5, 1.0]), "classification")
    with pytest.raises(TaskError, match="must be one of"):
        infer_task(np.array([1, 2]), "clustering")
    with pytest.raises(DataError, match="NaN or Inf"):
        infer_task(np.array([0.5, np.nan]))
    with pytest.raises(DataError, match=r"y\[1\] is an empty label"):
        infer_task(np.array(["a", " "]))


@pytest.mark.parametrize("labels, expected", [
    ([3, 1, 2, 1], [1, 2, 3]),
    ([10, 30, 20], [10, 20, 30]),
    ([-1, 1, -1], [-1, 1]),
    (["b", "a", "c"], ["a", "b", "c"]),
    ([True, False], [False, True]),
    ([2.0, 1.0], [1, 2]),
    ([0, 1000], [0, 1000]),
])
def test_classes_sorted_and_round_trip(labels, expected):
    c = Classes.fit(np.array(labels))
    assert c.labels.tolist() == expected and len(c) == len(expected)
    idx = c.encode(np.array(labels))
    assert idx.dtype == np.int64 and idx.min() >= 0 and idx.max() < len(c)
    np.testing.assert_array_equal(c.decode(idx), np.array(labels).astype(c.labels.dtype))


def test_classes_refuse_unknown_and_mixed_labels():
    c = Classes.fit(np.array(["cat", "dog"]))
    with pytest.raises(DataError, match=r"y\[1\] = 'emu' is not one of the model's classes"):
        c.encode(np.array(["cat", "emu"]))
    with pytest.raises(DataError, match="holds int64 labels"):
        c.encode(np.array([0, 1]))
    with pytest.raises(DataError, match="different kinds"):
        Classes.fit(np.array([1, 2]), np.array(["a"]))
    with pytest.raises(DataError, match="fractional"):
        Classes.fit(np.array([0.5, 1.0]))
    # Labels of the test part join the classes (every reader's classes come from all labels).
    assert Classes.fit(np.array([1, 2]), np.array([3])).labels.tolist() == [1, 2, 3]


def test_target_scaler_standardizes_with_training_rows_and_decodes():
    rng = np.random.default_rng(0)
    y = rng.normal(50, 7, 200)
    rows = np.arange(150)
    s = TargetScaler().fit(y, rows=rows)
    np.testing.assert_allclose(s.mean, [y[:150].mean()])
    np.testing.assert_allclose(s.std, [y[:150].std()])
    z = s.encode(y)
    assert z.shape == (200, 1)
    np.testing.assert_allclose(s.decode(z), y, rtol=1e-12)
    assert s.decode(z).shape == (200,)  # 1-D targets come back 1-D
    Y = np.stack([y, np.ones(200)], axis=1)  # a constant column gets std 1
    s2 = TargetScaler().fit(Y)
    assert s2.std[1] == 1.0 and s2.decode(s2.encode(Y)).shape == (200, 2)


def test_regression_metrics_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.normal(size=(50, 3))
    pred = y + rng.normal(scale=0.3, size=(50, 3))
    m = regression_metrics(pred, y)
    assert m["r2"] == pytest.approx(metrics.r2_score(y, pred))
    assert m["rmse"] == pytest.approx(np.sqrt(metrics.mean_squared_error(y, pred)))
    assert m["mae"] == pytest.approx(metrics.mean_absolute_error(y, pred))


def test_classification_metrics_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    y, pred = rng.integers(0, 4, 80), rng.integers(0, 4, 80)
    pred[:3] = 3
    m = classification_metrics(pred, y, 5)  # class 4 has no samples: precision/recall 0
    np.testing.assert_array_equal(m["confusion"],
                                  metrics.confusion_matrix(y, pred, labels=range(5)))
    np.testing.assert_allclose(m["precision"], metrics.precision_score(
        y, pred, labels=range(5), average=None, zero_division=0))
    np.testing.assert_allclose(m["recall"], metrics.recall_score(
        y, pred, labels=range(5), average=None, zero_division=0))
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
