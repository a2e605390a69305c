"""The small-table rule of the tabular recipe (fastnn.recipes.tabular_recipe): a table with
fewer than SMALL_TABLE_ROWS training rows trains on every row (no validation split) for a
fixed number of epochs on a cosine schedule; asking for early stopping keeps the split. Why
(a 32-row validation split chose epoch 1 to 6 on a 318-row table) is measured by
asv_bench/real_tables.py and stated in tabular_recipe's docstring, not tested here."""

import numpy as np
import pytest

import fastnn.recipes as recipes
from fastnn.recipes import (
    LARGE_TABLE_ROWS,
    REFIT_TABLE_ROWS,
    SMALL_TABLE_ROWS,
    TABLE_VAL_FRACTION,
    run_training,
    tabular_recipe,
)


def _table(path, n, seed=0):
    rng = np.random.default_rng(seed)
    kind = rng.choice(["a", "b", "c"], n)
    x = rng.normal(size=n)
    y = np.where(x + (kind == "a") > 0.5, "yes", "no")
    path.write_text("kind,x,y\n" + "".join(f"{k},{v:.4f},{t}\n"
                                            for k, v, t in zip(kind, x, y, strict=True)))
    return path


def test_size_rule_around_the_small_threshold():
    assert tabular_recipe(SMALL_TABLE_ROWS - 1)["refit"] is False
    assert tabular_recipe(SMALL_TABLE_ROWS)["refit"] is True
    assert tabular_recipe(REFIT_TABLE_ROWS - 1)["refit"] is True
    assert tabular_recipe(REFIT_TABLE_ROWS)["refit"] is False
    assert tabular_recipe(LARGE_TABLE_ROWS)["refit"] is False
    small, medium = tabular_recipe(SMALL_TABLE_ROWS - 1), tabular_recipe(SMALL_TABLE_ROWS)
    large = tabular_recipe(LARGE_TABLE_ROWS)
    assert (small["val_fraction"], small["patience"], small["schedule"]) == (0.0, 0, "cosine")
    assert small["epochs"] == recipes.SMALL_TABLE_EPOCHS
    for bigger in (medium, large):  # early stopping on a 10 % validation split, as before
        assert bigger["val_fraction"] == TABLE_VAL_FRACTION
        assert bigger["patience"] > 0 and bigger["schedule"] == "plateau"
        assert bigger["epochs"] == 200


class _CountingLoader(recipes.DataLoader):
    seen: list = []

    def __init__(self, dataset, *args, **kwargs):
        _CountingLoader.seen.append(len(dataset))
        super().__init__(dataset, *args, **kwargs)


@pytest.fixture
def counting(monkeypatch):
    _CountingLoader.seen = []
    monkeypatch.setattr(recipes, "DataLoader", _CountingLoader)
    return _CountingLoader.seen


def test_small_table_trains_on_every_row_for_the_fixed_epochs(tmp_path, counting):
    train = _table(tmp_path / "train.csv", 150)
    test = _table(tmp_path / "test.csv", 40, seed=1)
    result = run_training({"data": f"csv:{train}:y", "test": str(test), "hidden": "16",
                           "epochs": 3}, out=str(tmp_path / "run"), quiet=True)
    run = result.metrics["config"]["run"]
    assert counting == [150]  # all 150 rows of the training file, none held out
    assert (run["val_fraction"], run["patience"], run["schedule"]) == (0.0, 0, "cosine")
    assert result.metrics["epochs"] == 3 and len(result.metrics["history"]) == 3
    assert result.metrics["history"][-1].get("val_loss") is None  # no validation split
    assert "best_epoch" not in run


def test_small_table_without_a_test_file_keeps_the_test_split(tmp_path, counting):
    train = _table(tmp_path / "t.csv", 200)
    result = run_training({"data": f"csv:{train}:y", "hidden": "16", "epochs": 2},
                          out=str(tmp_path / "run"), quiet=True)
    assert counting == [160]  # 200 rows less the 20 % test split, no validation rows
    assert result.metrics["config"]["run"]["val_fraction"] == 0.0


def test_asking_for_early_stopping_keeps_a_validation_split(tmp_path, counting):
    train = _table(tmp_path / "t.csv", 150)
    result = run_training({"data": f"csv:{train}:y", "hidden": "16", "epochs": 4,
                           "patience": 2}, out=str(tmp_path / "run"), quiet=True)
    run = result.metrics["config"]["run"]
    assert run["val_fraction"] == TABLE_VAL_FRACTION and run["patience"] == 2
    assert counting == [150 - 30 - 12]  # less the 20 % test and 10 % of the rest
    assert "val_loss" in result.metrics["history"][-1]


def test_a_given_validation_share_is_kept(tmp_path, counting):
    train = _table(tmp_path / "t.csv", 150)
    result = run_training({"data": f"csv:{train}:y", "hidden": "16", "epochs": 2,
                           "val_fraction": 0.2}, out=str(tmp_path / "run"), quiet=True)
    assert result.metrics["config"]["run"]["val_fraction"] == 0.2
    assert counting == [150 - 30 - 24]


def test_mid_size_table_early_stops_then_trains_again_on_every_row(tmp_path, counting):
    n = SMALL_TABLE_ROWS + SMALL_TABLE_ROWS // 5  # 600: 540 train and 60 validation rows
    train = _table(tmp_path / "train.csv", n)
    test = _table(tmp_path / "test.csv", 50, seed=1)
    result = run_training({"data": f"csv:{train}:y", "test": str(test), "hidden": "16"},
                          out=str(tmp_path / "run"), quiet=True)
    m = result.metrics
    first = m["refit"]["early_stopping_history"]
    val = [h["val_loss"] for h in first]
    best = m["refit"]["best_epoch"]
    assert counting == [n - n // 10, n]  # the early-stopped run, then every row
    assert best == first[int(np.argmin(val))]["epoch"] and best < len(first)
    run = m["config"]["run"]
    assert (run["val_fraction"], run["patience"], run["schedule"]) == (0.0, 0, "cosine")
    assert run["epochs"] == best and m["epochs"] == best == len(m["history"])
    # the first run's size-dependent settings, not the larger row count's
    assert run["batch_size"] == tabular_recipe(n - n // 10)["batch_size"]


def test_given_patience_on_a_mid_size_table_is_not_refitted(tmp_path, counting):
    n = SMALL_TABLE_ROWS + SMALL_TABLE_ROWS // 5
    train = _table(tmp_path / "train.csv", n)
    result = run_training({"data": f"csv:{train}:y", "hidden": "16", "patience": 2},
                          out=str(tmp_path / "run"), quiet=True)
    assert len(counting) == 1 and "refit" not in result.metrics
    assert result.metrics["config"]["run"]["val_fraction"] == TABLE_VAL_FRACTION
