"""fastnn/train.py: the fit loop, callbacks, evaluate, predict."""

import io

import numpy as np
import pytest
from conftest import blobs

import fastnn as fnn
from fastnn.train import (
    EarlyStopping,
    ModelCheckpoint,
    TrainingDiverged,
    build_mlp,
    evaluate,
    fit,
    predict,
)


def setup(seed=0, **kw):
    fnn.manual_seed(seed)
    model = build_mlp(5, [16], 3, **kw)
    return model, fnn.optim.Adam(model.parameters(), lr=1e-2)


def test_fit_learns_and_records_history():
    X, y = blobs(300, 5, 3)
    model, opt = setup()
    log = io.StringIO()
    hist = fit(model, fnn.losses.cross_entropy, opt, (X[:240], y[:240]), val=(X[240:], y[240:]),
               epochs=5, batch_size=32, log=log)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5]
    assert hist[-1]["loss"] < hist[0]["loss"] and hist[-1]["val_accuracy"] > 0.9
    assert all(h["samples_per_second"] > 0 and h["seconds"] > 0 for h in hist)
    assert log.getvalue().count("epoch") == 5
    loss, acc = evaluate(model, fnn.losses.cross_entropy, (X[240:], y[240:]))
    assert acc == pytest.approx(hist[-1]["val_accuracy"]) and model.training
    out = predict(model, X[:7])
    assert out.shape == (7, 3)


def test_nan_loss_stops_with_epoch_step_and_lr():
    X, y = blobs(64, 5, 3)
    model, _ = setup(batchnorm=False)
    opt = fnn.optim.SGD(model.parameters(), lr=1e8)
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged,
                                                  match=r"epoch 1, step \d+.*learning rate"):
        fit(model, fnn.losses.cross_entropy, opt, (X, y), epochs=3, batch_size=8, quiet=True)


def test_early_stopping_and_checkpoint_callbacks():
    X, y = blobs(200, 5, 3, spread=3.0)
    model, opt = setup()
    saved = []
    stop = EarlyStopping(model, monitor="val_loss", patience=1, restore_best=True)
    hist = fit(model, fnn.losses.cross_entropy, opt, (X[:100], y[:100]), val=(X[100:], y[100:]),
               epochs=60, batch_size=10, quiet=True,
               callbacks=[stop, ModelCheckpoint(lambda e, logs: saved.append(e))])
    assert len(hist) < 60 and saved == [h["epoch"] for h in hist]
    best = min(h["val_loss"] for h in hist)
    assert evaluate(model, fnn.losses.cross_entropy, (X[100:], y[100:]))[0] == \
        pytest.approx(best, rel=1e-5)
    with pytest.raises(KeyError, match="val_loss"):
        fit(model, fnn.losses.cross_entropy, opt, (X, y), epochs=1, quiet=True,
            callbacks=[EarlyStopping()])


def test_checkpoint_min_seconds_saves_by_the_clock_and_flush_saves_the_last_epoch(
        monkeypatch):
    import fastnn.train as train_mod

    now = [100.0]
    monkeypatch.setattr(train_mod.time, "perf_counter", lambda: now[0])
    saved = []
    cb = ModelCheckpoint(lambda e, logs: saved.append((e, logs["loss"])), min_seconds=1.0)
    for epoch, seconds in enumerate([0.4, 0.4, 0.4, 0.3, 1.5, 0.2], start=1):
        now[0] += seconds
        assert cb.on_epoch_end(epoch, {"loss": float(epoch)}) is False
    # 1.2 s after the start at epoch 3, 1.8 s after that at epoch 5; epoch 6 waits
    assert saved == [(3, 3.0), (5, 5.0)] and cb.pending[0] == 6
    assert cb.flush() is True and saved[-1] == (6, 6.0) and cb.pending is None
    assert cb.flush() is False and len(saved) == 3
    # the default saves every epoch; a clock with a monitor could lose the best epoch
    every = []
    cb = ModelCheckpoint(lambda e, logs: every.append(e))
    for epoch in (1, 2):
        cb.on_epoch_end(epoch, {})
    assert every == [1, 2] and cb.flush() is False
    with pytest.raises(ValueError, match="monitor"):
        ModelCheckpoint(print, monitor="val_loss", min_seconds=1.0)
    with pytest.raises(ValueError, match="min_seconds"):
        ModelCheckpoint(print, min_seconds=-1.0)


def test_early_stopping_counts_bad_epochs_as_reduce_lr_on_plateau_does():
    # It stops at the (patience + 1)-th epoch in a row without an improvement by more than
    # min_delta (PyTorch's ReduceLROnPlateau counts so; Keras and Lightning stop one epoch
    # earlier), and says which epoch was best.
    stop = EarlyStopping(patience=2, min_delta=0.1)
    losses = [1.0, 0.95, 0.5, 0.45, 0.42, 0.41, 0.3]
    epochs = []
    for epoch, value in enumerate(losses, start=1):
        epochs.append(epoch)
        if stop.on_epoch_end(epoch, {"val_loss": value}):
            break
    # 0.95, 0.45, 0.42 and 0.41 are lower but not by more than 0.1: bad epochs
    assert epochs == [1, 2, 3, 4, 5, 6]
    assert (stop.best, stop.best_epoch) == (0.5, 3)
    high = EarlyStopping(monitor="val_accuracy", mode="max", patience=0)
    assert [high.on_epoch_end(e, {"val_accuracy": a}) for e, a in
            enumerate([0.5, 0.6, 0.6], start=1)] == [False, False, True]


def test_early_stopping_relative_threshold_keeps_the_lowest_value():
    # min_delta_mode="rel": an improvement must beat best * (1 - min_delta). With
    # restore_best="value" the weights kept are the lowest loss's, even when it was lower
    # by less than that; with True, the last improvement's (Keras).
    losses = [1.0, 0.5, 0.496, 0.497, 0.4955, 0.498, 0.6]
    kept = {}
    for restore in (True, "value"):
        layer = fnn.nn.Linear(1, 1)
        stop = EarlyStopping(layer, patience=3, min_delta=0.01, min_delta_mode="rel",
                             restore_best=restore)
        epochs = []
        for epoch, value in enumerate(losses, start=1):
            layer.weight.data[...] = epoch  # marks whose weights are kept
            epochs.append(epoch)
            if stop.on_epoch_end(epoch, {"val_loss": value}):
                break
        assert epochs == [1, 2, 3, 4, 5, 6]  # 0.496, 0.497, 0.4955, 0.498: not below 0.495
        assert (stop.best, stop.best_epoch) == (0.5, 2)
        kept[restore] = (stop.kept_epoch, float(layer.weight.data[0, 0]))
    assert kept == {True: (2, 2.0), "value": (5, 5.0)}
    with pytest.raises(ValueError, match="min_delta_mode"):
        EarlyStopping(min_delta_mode="relative")
    with pytest.raises(ValueError, match="restore_best"):
        EarlyStopping(restore_best="lowest")
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStopping(min_delta=-0.1)


def test_schedules_step_per_epoch_and_plateau_gets_val_loss():
    X, y = blobs(64, 5, 3)
    model, opt = setup()
    sched = fnn.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    hist = fit(model, fnn.losses.cross_entropy, opt, (X, y), epochs=3, quiet=True,
               schedule=sched)
    assert [h["lr"] for h in hist] == [1e-2, 5e-3, 2.5e-3]
    plateau = fnn.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0)
    hist = fit(model, fnn.losses.cross_entropy, opt, (X[:40], y[:40]), val=(X[40:], y[40:]),
               epochs=2, quiet=True, schedule=plateau)
    # It was stepped with the validation loss (not the training loss) every epoch.
    assert plateau.best == min(h["val_loss"] for h in hist)
    assert plateau.best not in [h["loss"] for h in hist]
    plateau = fnn.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0)
    hist = fit(model, fnn.losses.cross_entropy, opt, (X, y), epochs=2, quiet=True,
               schedule=plateau)
    assert plateau.best == min(h["loss"] for h in hist)  # without val: the training loss


def test_a_nan_loss_stops_before_the_step_updates_anything():
    import fastnn as fnn
    from fastnn.train import TrainingDiverged, fit

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(4, 8), fnn.ReLU(), fnn.Linear(8, 3))
    opt = fnn.optim.Adam(model.parameters(), lr=1e-2)
    calls, kept = [], []

    def loss_fn(out, yb):  # the third batch's loss is NaN
        calls.append(1)
        loss = fnn.losses.cross_entropy(out, yb)
        if len(calls) == 3:
            kept.extend(v.copy() for v in model.state_dict().values())
            return loss * float("nan")
        return loss

    with pytest.raises(TrainingDiverged, match="epoch 1, step 3"):
        fit(model, loss_fn, opt, (X, y), epochs=1, batch_size=16, quiet=True)
    for before, after in zip(kept, model.state_dict().values(), strict=True):
        np.testing.assert_array_equal(before, after)  # the NaN step changed nothing
    assert opt.flat_state_dict()["steps"] == [2]  # two updates, not three


def test_a_cnn_is_evaluated_in_small_batches_with_the_same_numbers():
    # A CNN's activations are its images times their channels: evaluation caps its batches
    # (IMAGE_EVAL_ROWS) and the numbers are those of one batch of every row.
    import fastnn as fnn
    from fastnn.train import IMAGE_EVAL_ROWS, eval_batch_size, evaluate_metrics, predict

    fnn.manual_seed(0)
    cnn = fnn.nn.Sequential(fnn.nn.Unflatten(1, (1, 4, 4)),
                            fnn.nn.Conv2d(1, 2, 3, padding=1, dtype="float64"),
                            fnn.nn.MaxPool2d(2), fnn.nn.Flatten(),
                            fnn.nn.Linear(8, 3, dtype="float64"))
    mlp = fnn.nn.Sequential(fnn.nn.Linear(4, 3))
    assert eval_batch_size(cnn, 4096) == IMAGE_EVAL_ROWS
    assert eval_batch_size(cnn, 100) == 100
    assert eval_batch_size(mlp, 4096) == 4096
    rng = np.random.default_rng(0)
    n = IMAGE_EVAL_ROWS + 7
    X, y = rng.standard_normal((n, 1, 4, 4)), rng.integers(0, 3, n)
    loss_fn = fnn.nn.CrossEntropyLoss()
    m = evaluate_metrics(cnn, loss_fn, (X, y), batch_size=4096)
    cnn.eval()
    with fnn.no_grad():
        out = cnn(fnn.tensor(X.reshape(len(X), -1))).data
    ref = -np.log(np.exp(out - out.max(1, keepdims=True))
                  / np.exp(out - out.max(1, keepdims=True)).sum(1, keepdims=True))
    assert m["loss"] == pytest.approx(ref[np.arange(len(y)), y].mean(), rel=1e-12)
    assert m["accuracy"] == pytest.approx((out.argmax(1) == y).mean())
    np.testing.assert_allclose(predict(cnn, X, batch_size=4096).reshape(out.shape), out,
                               rtol=1e-12)
