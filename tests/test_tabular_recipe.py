"""The tabular default recipe (fastnn.recipes: TABULAR_DEFAULTS, tabular_batch_size, the
``plateau`` schedule): the rules as stated in docs/tabular.md, and that a table run uses
them. The recipe's quality is measured by asv_bench/real_tables.py, not here."""

import numpy as np
import pytest

from fastnn.recipes import (
    DEFAULTS,
    LARGE_TABLE_MIN_DELTA,
    LARGE_TABLE_ROWS,
    PLATEAU_FACTOR,
    PLATEAU_PATIENCE,
    TABULAR_DEFAULTS,
    make_schedule,
    resolve_config,
    run_training,
    tabular_batch_size,
    tabular_recipe,
)


def test_batch_size_rule():
    # about 1/64 of the training rows as a power of two, between 32 and 512
    assert [tabular_batch_size(n) for n in (10, 1_000, 2_400, 8_000, 26_048, 38_837, 10**6)] \
        == [32, 32, 32, 128, 512, 512, 512]


def test_size_rule():
    small, large = tabular_recipe(LARGE_TABLE_ROWS - 1), tabular_recipe(LARGE_TABLE_ROWS)
    # (below SMALL_TABLE_ROWS: tests/test_recipes_small_tables.py)
    assert small == {"hidden": [256, 256], "weight_decay": 1e-3, "patience": 10,
                     "batch_size": tabular_batch_size(LARGE_TABLE_ROWS - 1), "numeric_bins": 8,
                     "val_fraction": 0.1, "epochs": 200, "schedule": "plateau",
                     "refit": False, "min_delta": 0.0}
    assert large == {"hidden": [128, 128], "weight_decay": 1e-4, "patience": 8,
                     "min_delta": LARGE_TABLE_MIN_DELTA,
                     "batch_size": 256, "numeric_bins": 48,
                     "val_fraction": 0.1, "epochs": 200, "schedule": "plateau",
                     "refit": False}


def test_large_table_run_stops_on_a_relative_threshold(tmp_path, monkeypatch):
    # A table of LARGE_TABLE_ROWS and more stops early on a 1 % relative threshold; a
    # smaller one, and data that is not a table, on any lower loss (min_delta 0).
    import fastnn.recipes as recipes

    rng = np.random.default_rng(0)
    n = 700  # a mid-size table: early stopping (not a small one's fixed epochs)
    x = rng.normal(size=n)
    path = tmp_path / "t.csv"
    path.write_text("x,y\n" + "".join(f"{v:.4f},{2 * v + rng.normal():.4f}\n" for v in x))
    given = {"data": f"csv:{path}:y", "hidden": "8", "epochs": 2, "numeric_bins": 4}
    small = run_training(given, out=str(tmp_path / "small"), quiet=True)
    assert small.metrics["config"]["run"]["min_delta"] == 0.0
    monkeypatch.setattr(recipes, "LARGE_TABLE_ROWS", 100)  # 630 training rows count as many
    large = run_training(given, out=str(tmp_path / "large"), quiet=True)
    run = large.metrics["config"]["run"]
    assert (run["min_delta"], run["patience"]) == (LARGE_TABLE_MIN_DELTA, 8)
    plain = run_training({"data": "digits", "hidden": "8", "epochs": 1, "patience": 2},
                         out=str(tmp_path / "digits"), quiet=True)
    assert plain.metrics["config"]["run"]["min_delta"] == 0.0


def test_table_data_gets_the_tabular_defaults():
    table = resolve_config({"data": "csv:t.csv:y"})
    for key, value in TABULAR_DEFAULTS.items():
        assert table[key] == value, key  # None: chosen by the table's size at training
    assert resolve_config({"data": "csv:t.csv:y", "hidden": "32"})["hidden"] == [32]
    plain = resolve_config({"data": "digits"})
    assert plain["schedule"] == DEFAULTS["schedule"] and plain["patience"] == DEFAULTS["patience"]
    # what the user gives wins over the table default
    assert resolve_config({"data": "csv:t.csv:y", "schedule": "none"})["schedule"] == "none"


def test_plateau_schedule_follows_the_validation_loss():
    import fastnn as fnn

    layer = fnn.nn.Linear(2, 1)
    opt = fnn.optim.Adam(layer.parameters(), lr=1.0)
    sched = make_schedule("plateau", opt, epochs=100)
    sched.step(1.0)  # the best loss
    for _ in range(PLATEAU_PATIENCE):  # bad epochs up to the patience: no change
        sched.step(2.0)
        assert opt.param_groups[0]["lr"] == 1.0
    sched.step(2.0)  # one more: the lr drops
    assert opt.param_groups[0]["lr"] == pytest.approx(PLATEAU_FACTOR)


def test_table_run_steps_the_plateau_schedule(tmp_path):
    rng = np.random.default_rng(0)
    n = 240
    kind = rng.choice(["a", "b", "c"], n)
    x = rng.normal(size=n)
    y = rng.choice(["yes", "no"], n)  # noise: the validation loss cannot keep falling
    path = tmp_path / "t.csv"
    rows = [f"{k},{v:.4f},{t}\n" for k, v, t in zip(kind, x, y, strict=True)]
    path.write_text("kind,x,y\n" + "".join(rows))
    # a large lr on a target of noise: the validation loss stops falling within a few epochs
    # (240 rows is a small table, whose default is a cosine schedule without a validation
    # split: both asked for here)
    result = run_training({"data": f"csv:{path}:y", "hidden": "32", "epochs": 12,
                           "patience": 0, "lr": 0.05, "schedule": "plateau",
                           "val_fraction": 0.1}, out=str(tmp_path / "run"), quiet=True)
    lrs = [h["lr"] for h in result.metrics["history"]]
    run = result.metrics["config"]["run"]
    assert run["schedule"] == "plateau"
    # the size rule filled in what was not given (240 rows: a small table)
    assert (run["weight_decay"], run["batch_size"]) == (1e-3, 32)
    assert result.metrics["config"]["architecture"]["hidden"] == [32]
    assert lrs[0] == pytest.approx(0.05)
    assert min(lrs) < 0.05 and all(b <= a for a, b in zip(lrs, lrs[1:], strict=False))


def test_auto_target_transform_rule():
    from fastnn.recipes import auto_target_transform

    rng = np.random.default_rng(0)
    prices = np.exp(rng.normal(12, 0.5, 500))  # positive, skewness about 1.7
    assert auto_target_transform(prices) == "log"
    assert auto_target_transform(np.stack([prices, prices], axis=1)) == "log"
    assert auto_target_transform(rng.normal(size=500)) == "none"  # symmetric
    assert auto_target_transform(np.append(prices, -1.0)) == "none"  # not all positive
    assert auto_target_transform(np.full(10, 3.0)) == "none"  # constant
    large = np.exp(rng.normal(0, 0.5, LARGE_TABLE_ROWS))
    assert auto_target_transform(large) == "none"  # measured: the log hurt large tables


def test_auto_target_transform_in_a_run(tmp_path):
    rng = np.random.default_rng(1)
    n = 200
    x = rng.normal(size=n)
    price = np.exp(1.0 + 0.8 * x + rng.normal(scale=0.1, size=n))
    path = tmp_path / "p.csv"
    path.write_text("x,price\n" + "".join(f"{a:.4f},{b:.4f}\n"
                                          for a, b in zip(x, price, strict=True)))
    result = run_training({"data": f"csv:{path}:price", "hidden": "8", "epochs": 2},
                          out=str(tmp_path / "run"), quiet=True)
    assert result.metrics["config"]["task"]["target_transform"] == "log"
    kinds = run_training({"data": f"csv:{path}:price", "hidden": "8", "epochs": 1,
                          "target_transform": "none"}, out=str(tmp_path / "r2"), quiet=True)
    assert kinds.metrics["config"]["task"]["target_transform"] == "none"
