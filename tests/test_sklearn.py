"""fastnn.sklearn: scikit-learn's own estimator checks, then differential tests against
scikit-learn's MLPClassifier / MLPRegressor in float64 from identical initial weights,
interop (Pipeline, GridSearchCV in worker processes, pickle) and bad input."""

import copy
import io
import os
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import joblib  # noqa: E402  (scikit-learn's dependency)
from scipy import sparse  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn as fnn  # noqa: E402
from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

RTOL = 1e-8  # the bound; measured differences are ~1e-15 (rounding only)


# ------------------------------------------------------------ scikit-learn's own checks
@parametrize_with_checks(
    [MLPClassifier(max_iter=100), MLPRegressor(max_iter=100),
     MLPClassifier(batchnorm=True, dropout=0.2, max_iter=100)],
    expected_failed_checks=lambda est: {
        # Repeating a row is not the same as weighting it once BatchNorm and dropout are
        # on: BatchNorm's batch mean and variance count rows (a repeated row counts twice,
        # a weight does not enter them) and dropout draws one mask per row. Without
        # batchnorm and dropout this check passes (the two other estimators above).
        "check_sample_weight_equivalence_on_dense_data":
            "BatchNorm statistics and dropout masks are per row, not per unit of weight",
        "check_sample_weight_equivalence_on_sparse_data":  # sparse X: the same batches
            "BatchNorm statistics and dropout masks are per row, not per unit of weight",
    } if est.batchnorm else {},
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ------------------------------------------------------------------------------- data
def _data(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    score = X[:, 0] + X[:, 1] ** 2 - 0.5 * X[:, 2]
    return X, score


def _multiclass():
    X, s = _data()
    return X, np.digitize(s, [0.0, 1.5])  # 3 classes


def _binary_strings():
    X, s = _data(seed=1)
    return X, np.where(s > 0.8, "yes", "no")


def _multilabel():
    X, s = _data(seed=2)
    return X, np.c_[s > 0.8, X[:, 3] > 0, X[:, 4] + X[:, 5] > 0.3].astype(int)


def _regression(k=1):
    X, s = _data(seed=3)
    y = np.c_[s, X[:, 3] - X[:, 4]]
    return X, y[:, 0] if k == 1 else y


def _poisson():
    X, s = _data(seed=4)
    return X, np.random.default_rng(4).poisson(np.exp(0.3 * s))


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def _fit_both(kind, data, **params):
    ours_cls, theirs_cls = (MLPClassifier, sk.MLPClassifier) if kind == "clf" else \
        (MLPRegressor, sk.MLPRegressor)
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            theirs = theirs_cls(**params).fit(X, y)
        except TypeError as exc:  # scikit-learn 1.7 (Python 3.10's) on string labels
            if params.get("early_stopping") and np.asarray(y).dtype.kind == "U" and \
                    _sklearn_version() < (1, 8):
                pytest.skip(f"scikit-learn {sklearn.__version__} cannot early-stop on string "
                            f"labels ({exc}): nothing to compare with")
            raise
        ours = ours_cls(**params).fit(X, y)
    return X, ours, theirs


def _sklearn_version() -> tuple[int, int]:
    major, minor = sklearn.__version__.split(".")[:2]
    return int(major), int(minor)


def _assert_same(X, ours, theirs):
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    assert ours.n_layers_ == theirs.n_layers_ and ours.n_outputs_ == theirs.n_outputs_
    assert ours.out_activation_ == theirs.out_activation_
    if hasattr(theirs, "loss_curve_"):
        assert len(ours.loss_curve_) == len(theirs.loss_curve_)
        assert _rel(ours.loss_curve_, theirs.loss_curve_) < RTOL
        assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=RTOL) \
            if theirs.best_loss_ is not None else ours.best_loss_ is None
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=RTOL)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_,
                    strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-12)
    if hasattr(theirs, "predict_proba"):
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X),
                                   rtol=RTOL, atol=1e-14)
        np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X)) \
        if hasattr(theirs, "predict_proba") else \
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=RTOL, atol=1e-12)


# ----------------------------------------------------- differential: scikit-learn = us
SMALL = dict(hidden_layer_sizes=(12, 7), random_state=0, max_iter=20)

CASES = {
    # full-batch SGD with Nesterov momentum (scikit-learn's default momentum), and without
    "sgd_nesterov_full_batch": ("clf", _multiclass, dict(
        solver="sgd", learning_rate_init=0.1, batch_size=120, shuffle=False)),
    "sgd_momentum_full_batch": ("clf", _multiclass, dict(
        solver="sgd", learning_rate_init=0.1, batch_size=120, nesterovs_momentum=False)),
    "sgd_no_momentum_tanh": ("reg", _regression, dict(
        solver="sgd", momentum=0.0, learning_rate_init=0.01, activation="tanh",
        batch_size=25)),
    # the learning-rate schedules: invscaling rescales the velocities every epoch
    "sgd_invscaling": ("clf", _binary_strings, dict(
        solver="sgd", learning_rate="invscaling", learning_rate_init=0.5, batch_size=30)),
    # adaptive: tol so large that every epoch fails it; lr / 5 until <= 1e-6, then stop
    "sgd_adaptive": ("reg", _regression, dict(
        solver="sgd", learning_rate="adaptive", learning_rate_init=0.05, tol=10.0,
        n_iter_no_change=1, max_iter=40, batch_size=40)),
    "adam_minibatches_no_shuffle": ("clf", _multiclass, dict(
        solver="adam", batch_size=32, shuffle=False, learning_rate_init=0.01)),
    "adam_shuffled": ("clf", _multiclass, dict(solver="adam", batch_size=50)),
    "adam_logistic_multilabel": ("clf", _multilabel, dict(
        activation="logistic", batch_size=40, learning_rate_init=0.01)),
    "adam_identity_multioutput": ("reg", lambda: _regression(2), dict(
        activation="identity", batch_size=40, alpha=0.1)),
    "adam_poisson": ("reg", _poisson, dict(loss="poisson", batch_size=40)),
    # training loss stops improving by tol for n_iter_no_change epochs
    "adam_tol_stop": ("clf", _binary_strings, dict(
        learning_rate_init=0.05, tol=1e-2, n_iter_no_change=3, max_iter=200)),
    "early_stopping_multiclass": ("clf", _multiclass, dict(
        early_stopping=True, learning_rate_init=0.02, validation_fraction=0.2,
        n_iter_no_change=4, max_iter=200)),
    "early_stopping_binary_stratified": ("clf", _binary_strings, dict(
        early_stopping=True, learning_rate_init=0.05, n_iter_no_change=3, max_iter=200)),
    "early_stopping_regression": ("reg", _regression, dict(
        early_stopping=True, solver="sgd", learning_rate_init=0.01, n_iter_no_change=3,
        max_iter=200, tol=1e-3)),
    "lbfgs_multiclass": ("clf", _multiclass, dict(solver="lbfgs", activation="tanh")),
    "lbfgs_binary": ("clf", _binary_strings, dict(solver="lbfgs", alpha=1e-2)),
    "lbfgs_multioutput": ("reg", lambda: _regression(2), dict(solver="lbfgs")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_scikit_learn(case):
    kind, make, params = CASES[case]
    X, ours, theirs = _fit_both(kind, make(), **{**SMALL, **params})
    _assert_same(X, ours, theirs)
    if params.get("early_stopping"):
        assert ours.n_iter_ < params["max_iter"]  # it stopped early, where scikit-learn did
        assert _rel(ours.validation_scores_, theirs.validation_scores_) < RTOL
        assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_,
                                                            rel=RTOL)
        assert len(ours.validation_loss_curve_) == ours.n_iter_
    if case == "sgd_adaptive":
        assert ours.n_iter_ < 40  # stopped when lr fell below 1e-6


@pytest.mark.parametrize("kind, make", [("clf", _multiclass), ("reg", _regression)])
def test_sample_weight_matches_scikit_learn(kind, make):
    X, y = make()
    sw = np.random.default_rng(5).uniform(0.1, 3.0, len(y))
    ours_cls, theirs_cls = (MLPClassifier, sk.MLPClassifier) if kind == "clf" else \
        (MLPRegressor, sk.MLPRegressor)
    for solver in ("adam", "lbfgs"):
        params = {**SMALL, "solver": solver, "batch_size": 40}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            theirs = theirs_cls(**params).fit(X, y, sample_weight=sw)
            ours = ours_cls(**params).fit(X, y, sample_weight=sw)
        _assert_same(X, ours, theirs)


def test_initial_weights_are_scikit_learns():
    """The Glorot-uniform draw of scikit-learn's _init_coef, in its order: a learning rate
    of 1e-300 leaves the first step's weights as drawn (the update underflows), so the
    fitted coefs_ are the initial ones; compared with scikit-learn's and with the formula."""
    X, y = _multiclass()
    for activation, factor in (("relu", 6.0), ("logistic", 2.0)):
        params = dict(hidden_layer_sizes=(5, 4), activation=activation, solver="sgd",
                      momentum=0.0, alpha=0.0, learning_rate_init=1e-300, max_iter=1,
                      random_state=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours = MLPClassifier(**params).fit(X, y)
            theirs = sk.MLPClassifier(**params).fit(X, y)
        rs = np.random.RandomState(3)
        units = [6, 5, 4, 3]
        for i, (a, b) in enumerate(zip(units[:-1], units[1:], strict=True)):
            bound = np.sqrt(factor / (a + b))
            np.testing.assert_array_equal(ours.coefs_[i], rs.uniform(-bound, bound, (a, b)))
            np.testing.assert_array_equal(ours.intercepts_[i], rs.uniform(-bound, bound, b))
            np.testing.assert_array_equal(ours.coefs_[i], theirs.coefs_[i])


def test_partial_fit_and_warm_start_match_scikit_learn():
    X, y = _multiclass()
    params = dict(hidden_layer_sizes=(10,), random_state=0, batch_size=30)
    ours, theirs = MLPClassifier(**params), sk.MLPClassifier(**params)
    for lo in (0, 40, 80, 0):
        ours.partial_fit(X[lo:lo + 40], y[lo:lo + 40], classes=[0, 1, 2])
        theirs.partial_fit(X[lo:lo + 40], y[lo:lo + 40], classes=[0, 1, 2])
    _assert_same(X, ours, theirs)
    # fit, then continue with warm_start (a new optimizer, the same bookkeeping)
    params = dict(hidden_layer_sizes=(10,), random_state=0, max_iter=5, solver="sgd",
                  learning_rate_init=0.05, warm_start=True)
    ours, theirs = MLPRegressor(**params), sk.MLPRegressor(**params)
    Xr, yr = _regression()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(3):
            ours.fit(Xr, yr)
            theirs.fit(Xr, yr)
    assert len(ours.loss_curve_) == 15
    _assert_same(Xr, ours, theirs)


def test_convergence_warning_at_max_iter_and_verbose(capsys):
    X, y = _multiclass()
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, verbose=True, random_state=0).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Iteration 1, loss = ") and len(lines) == 3
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 2 iter"):
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, solver="lbfgs").fit(X, y)


# ------------------------------------------------------------------- beyond scikit-learn
def test_same_random_state_gives_bit_identical_fits():
    X, y = _multiclass()
    params = dict(hidden_layer_sizes=(16, 8), batchnorm=True, dropout=[0.3, 0.1], max_iter=15,
                  random_state=7, batch_size=25, early_stopping=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(**params).fit(X, y)
        b = MLPClassifier(**params).fit(X, y)
        c = MLPClassifier(**{**params, "random_state": 8}).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def test_extra_solvers_activations_batchnorm_dropout_float32_learn():
    X, y = _multiclass()
    for params in (dict(solver="rmsprop"), dict(solver="adagrad", learning_rate_init=0.05),
                   dict(solver="adamw", alpha=1e-2), dict(activation="gelu", batchnorm=True),
                   dict(activation="prelu", dropout=0.1), dict(activation="leaky_relu"),
                   dict(solver="lbfgs", batchnorm=True, activation="elu"),
                   dict(dtype="float32", activation="silu")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = MLPClassifier(**{"hidden_layer_sizes": (32,), "max_iter": 150,
                                   "random_state": 0, "learning_rate_init": 0.01,
                                   **params}).fit(X, y)
        assert clf.score(X, y) > 0.9, params
        expected = np.float32 if params.get("dtype") == "float32" else np.float64
        assert clf.coefs_[0].dtype == expected and clf.predict_proba(X).dtype == expected
    # float32 input keeps float32, as scikit-learn does
    with pytest.warns(ConvergenceWarning):
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5).fit(X.astype(np.float32), y)
    assert clf.coefs_[0].dtype == np.float32


def test_adamw_decays_weights_only_without_l2_in_the_loss():
    """AdamW's alpha is its decoupled weight decay on the weights (p <- p (1 - lr alpha)
    before the Adam step), not an L2 term: compared with Adam's update on a one-step fit
    against the same gradient (learning_rate_init=1, so the decay is visible)."""
    X, y = _regression()
    common = dict(hidden_layer_sizes=(4,), max_iter=1, batch_size=120, random_state=0,
                  learning_rate_init=1e-3, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = MLPRegressor(solver="adamw", alpha=0.0, **common).fit(X, y)
        decayed = MLPRegressor(solver="adamw", alpha=0.5, **common).fit(X, y)
        init = MLPRegressor(solver="sgd", momentum=0.0, alpha=0.0,
                            **{**common, "learning_rate_init": 1e-300}).fit(X, y)
    assert plain.loss_ == decayed.loss_  # no L2 term in the loss
    for p0, a, b in zip(init.coefs_, plain.coefs_, decayed.coefs_, strict=True):
        np.testing.assert_allclose(b, a - 1e-3 * 0.5 * p0, rtol=1e-12, atol=1e-15)
    for a, b in zip(plain.intercepts_, decayed.intercepts_, strict=True):
        np.testing.assert_array_equal(a, b)  # biases are not decayed


def test_class_weight():
    X, y = _multiclass()
    params = dict(hidden_layer_sizes=(16,), max_iter=60, random_state=0,
                  learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        skewed = MLPClassifier(class_weight={0: 100.0, 1: 0.01, 2: 0.01}, **params).fit(X, y)
        assert np.mean(skewed.predict(X) == 0) > 0.8
        balanced = MLPClassifier(class_weight="balanced", **params).fit(X, y)
        counts = np.bincount(y)
        sw = (len(y) / (3 * counts))[y]
        weighted = MLPClassifier(**params).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(balanced.predict_proba(X), weighted.predict_proba(X),
                               rtol=1e-12)
    # a class whose samples all weigh 0 gets weight 0 (not 'balanced''s infinity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        zero = MLPClassifier(class_weight="balanced", **params).fit(
            X, y, sample_weight=(y != 2).astype(float))
    assert np.isfinite(zero.loss_curve_).all() and not np.any(zero.predict(X) == 2)
    with pytest.raises(ValueError, match="balanced.*partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])


def test_validation_loss_curve_and_string_labels():
    X, y = _binary_strings()
    clf = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, max_iter=30,
                        random_state=0, learning_rate_init=0.02, n_iter_no_change=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert len(clf.validation_loss_curve_) == len(clf.validation_scores_) == clf.n_iter_ == 30
    assert all(np.isfinite(clf.validation_loss_curve_))
    assert clf.validation_loss_curve_[-1] < clf.validation_loss_curve_[0]
    assert set(clf.predict(X)) <= {"yes", "no"} and list(clf.classes_) == ["no", "yes"]
    assert MLPClassifier().get_params()["batchnorm"] is False


# ------------------------------------------------------------------------- interop
def _pipeline_search(n_jobs):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(240, 8)) * [1, 10, 100, 1, 1, 1, 1, 1]
    y = (X[:, 0] + X[:, 1] / 10 - X[:, 2] / 100 > 0).astype(int) + (X[:, 3] > 0.7)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=40, random_state=0,
                                                       learning_rate_init=0.01))
    grid = {"mlpclassifier__alpha": [1e-4, 1.0], "mlpclassifier__hidden_layer_sizes":
            [(8,), (24,)]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GridSearchCV(pipe, grid, cv=3, n_jobs=n_jobs).fit(X, y), X, y


def test_pipeline_gridsearch_in_this_process_and_in_two_workers():
    serial, X, y = _pipeline_search(1)
    assert serial.best_score_ > 0.7
    parallel, _, _ = _pipeline_search(2)
    # the same fits in joblib's (loky) worker processes: the same numbers, bit for bit
    np.testing.assert_array_equal(serial.cv_results_["mean_test_score"],
                                  parallel.cv_results_["mean_test_score"])
    assert serial.best_params_ == parallel.best_params_
    np.testing.assert_array_equal(serial.predict_proba(X), parallel.predict_proba(X))
    # each worker gets its share of the cores: joblib sets NUMBA_NUM_THREADS (and the BLAS
    # limits) to cores // n_jobs in its workers, and fastnn's thread budget follows it
    shares = joblib.Parallel(n_jobs=2)(joblib.delayed(fnn.get_num_threads)() for _ in range(2))
    assert shares == [max(1, (os.cpu_count() or 1) // 2)] * 2


def test_pickle_joblib_clone_deepcopy_round_trips(tmp_path):
    X, y = _multiclass()
    clf = MLPClassifier(hidden_layer_sizes=(12,), batchnorm=True, dropout=0.2, max_iter=5,
                        random_state=0, batch_size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    expected = clf.predict_proba(X)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), expected)
    path = tmp_path / "clf.joblib"
    joblib.dump(clf, path)
    np.testing.assert_array_equal(joblib.load(path).predict_proba(X), expected)
    np.testing.assert_array_equal(copy.deepcopy(clf).predict_proba(X), expected)
    fresh = clone(clf)
    assert fresh.get_params() == clf.get_params() and not hasattr(fresh, "coefs_")
    # training goes on after unpickling exactly as without (optimizer, dropout generators
    # and the RandomState travel in the pickle)
    again.partial_fit(X, y)
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    assert again.loss_curve_ == clf.loss_curve_
    # the pickle holds arrays, not fastnn objects
    buf = io.BytesIO()
    pickle.dump(clf, buf)
    assert b"fastnn.nn" not in buf.getvalue() and b"fastnn.optim" not in buf.getvalue()


def test_coefs_are_the_model():
    X, y = _regression()
    reg = MLPRegressor(hidden_layer_sizes=(6,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y)
    reg.coefs_[1][...] = 0.0  # in place, as with scikit-learn's arrays
    np.testing.assert_allclose(reg.predict(X), reg.intercepts_[1][0])
    reg.intercepts_[1] = np.array([2.5])  # a replaced array is taken too
    np.testing.assert_allclose(reg.predict(X), 2.5)


# --------------------------------------------------------------------------- bad input
def test_bad_input_messages():
    X, y = _multiclass()
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.fit(bad, y)
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        clf.fit(bad, y)
    with pytest.raises(ValueError, match="Complex data not supported"):
        clf.fit(X + 1j, y)
    bad_sparse = sparse.csr_matrix(X)
    bad_sparse.data[5] = np.nan  # sparse X is accepted (tests/test_sklearn_sparse.py), NaN not
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.fit(bad_sparse, y)
    with pytest.raises(ValueError, match="Input y contains NaN"):
        MLPRegressor(max_iter=2).fit(X, np.where(y == 1, np.nan, y))
    with pytest.raises(ValueError, match="1 sample"):
        MLPClassifier(batchnorm=True).fit(X[:1], y[:1])
    with pytest.raises(ValueError, match="Found array with 0 sample"):
        clf.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="The 'solver' parameter of MLPClassifier must be"):
        MLPClassifier(solver="newton").fit(X, y)
    with pytest.raises(ValueError, match=r"dropout must be one rate .* per hidden layer \(2\)"):
        MLPClassifier(hidden_layer_sizes=(4, 4), dropout=[0.1]).fit(X, y)
    with pytest.raises(ValueError, match="dtype must be None, 'float32' or 'float64'"):
        MLPClassifier(dtype="float16").fit(X, y)
    with pytest.raises(ValueError, match="dropout=0.2 needs a stochastic solver"):
        MLPClassifier(solver="lbfgs", dropout=0.2).fit(X, y)
    with pytest.raises(ValueError, match="poisson' needs y >= 0"):
        MLPRegressor(loss="poisson").fit(X, X[:, 0])
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.fit(X, X[:, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features, but MLPClassifier is expecting 6"):
        clf.predict(X[:, :5])
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")  # as scikit-learn's
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'"):
        MLPClassifier(solver="lbfgs").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
    warm = clone(clf).set_params(warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, y)
    with pytest.raises(ValueError, match=r"fitted network has \[6, 4, 3\]"):
        warm.set_params(hidden_layer_sizes=(5,)).fit(X, y)
    with pytest.raises(ValueError, match="non-finite"):
        MLPRegressor(solver="sgd", learning_rate_init=1e3, max_iter=50).fit(X * 1e3, y * 1e3)


# ------------------------------------------------ the extra solvers against PyTorch
@pytest.mark.parametrize("solver", ["rmsprop", "adagrad", "adamw"])
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_extra_solvers_match_torch(solver, kind):
    """rmsprop, adagrad and adamw against torch.optim in float64 from the same initial
    weights (scikit-learn's Glorot draw from the RandomState), the same batches
    (shuffle=False) and scikit-learn's loss: L2 0.5 alpha ||W||^2 / batch in the loss
    (AdamW: decoupled weight decay alpha on the weights instead)."""
    torch = pytest.importorskip("torch")
    X, y = _multiclass() if kind == "clf" else _regression()
    units, alpha, lr, eps, batch, epochs = [6, 9, 3 if kind == "clf" else 1], 0.3, 0.01, 1e-7, \
        25, 6
    params = dict(hidden_layer_sizes=(9,), activation="tanh", solver=solver, alpha=alpha,
                  learning_rate_init=lr, epsilon=eps, batch_size=batch, shuffle=False,
                  max_iter=epochs, random_state=0, beta_1=0.8, beta_2=0.99)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = (MLPClassifier if kind == "clf" else MLPRegressor)(**params).fit(X, y)

    rs = np.random.RandomState(0)
    layers = []
    for a, b in zip(units[:-1], units[1:], strict=True):
        bound = np.sqrt(6.0 / (a + b))
        lin = torch.nn.Linear(a, b, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(rs.uniform(-bound, bound, (a, b)).T))
            lin.bias.copy_(torch.from_numpy(rs.uniform(-bound, bound, b)))
        layers.append(lin)
    model = torch.nn.Sequential(layers[0], torch.nn.Tanh(), layers[1])
    weights, biases = [lin.weight for lin in layers], [lin.bias for lin in layers]
    if solver == "adamw":
        opt = torch.optim.AdamW([{"params": weights, "weight_decay": alpha},
                                 {"params": biases, "weight_decay": 0.0}], lr=lr,
                                betas=(0.8, 0.99), eps=eps)
    elif solver == "rmsprop":
        opt = torch.optim.RMSprop(model.parameters(), lr=lr, eps=eps)
    else:
        opt = torch.optim.Adagrad(model.parameters(), lr=lr, eps=eps)
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y if kind == "clf" else y[:, None].astype(np.float64))
    curve = []
    for _ in range(epochs):
        total = 0.0
        for lo in range(0, len(X), batch):
            xb, yb = Xt[lo:lo + batch], yt[lo:lo + batch]
            out = model(xb)
            loss = torch.nn.functional.cross_entropy(out, yb) if kind == "clf" else \
                0.5 * torch.nn.functional.mse_loss(out, yb)
            if solver != "adamw":
                loss = loss + 0.5 * alpha * sum((w ** 2).sum() for w in weights) / len(xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        curve.append(total / len(X))
    assert _rel(ours.loss_curve_, curve) < RTOL
    for lin, c, b in zip(layers, ours.coefs_, ours.intercepts_, strict=True):
        np.testing.assert_allclose(c, lin.weight.detach().numpy().T, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(b, lin.bias.detach().numpy(), rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0),
    lambda: MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0,
                          batchnorm=True, dropout=0.2, solver="sgd"),
    lambda: MLPRegressor(hidden_layer_sizes=(16,), max_iter=3, random_state=0),
], ids=["adam", "bn-dropout-sgd", "regressor"])
def test_the_compiled_step_trains_as_the_graph_does(make, monkeypatch):
    """The estimators' steps run compiled; forcing the graph gives the same bits."""
    from fastnn import compiled

    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 8))
    y = rng.integers(0, 3, 150)
    if "Regressor" in type(make()).__name__:
        y = X[:, 0] * 2.0 + rng.standard_normal(150) * 0.1
    runs, calls = [], []
    real_run = compiled.CompiledStep.run

    def counting_run(self, x, t):
        calls.append(len(x))
        return real_run(self, x, t)

    monkeypatch.setattr(compiled.CompiledStep, "run", counting_run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        runs.append(make().fit(X, y))
        assert calls, "the compiled step did not run"
        monkeypatch.setattr(compiled.CompiledStep, "accepts", lambda self, x, t: False)
        n_calls = len(calls)
        runs.append(make().fit(X, y))
        assert len(calls) == n_calls
    a, b = runs
    assert a.loss_curve_ == b.loss_curve_
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(ca, cb)


# ------------------------------------------------- the unpickled state is checked (issue 28)
def _fitted_pair():
    X, y = _multiclass()
    clf = MLPClassifier(hidden_layer_sizes=(5,), batchnorm=True, dropout=0.2,
                        activation="prelu", max_iter=2, random_state=0, batch_size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return clf, X, y


def _unpickle(cls, state):
    import copyreg

    class Changed:
        def __reduce__(self):
            return copyreg._reconstructor, (cls, object, None), state

    return pickle.loads(pickle.dumps(Changed()))


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    if hasattr(a, "__dict__") and not isinstance(a, type):
        return type(a) is type(b) and _same(vars(a), vars(b))
    return type(a) is type(b) and a == b


def test_pickle_round_trip_keeps_every_field_of_the_state():
    clf, X, _ = _fitted_pair()
    state = clf.__getstate__()
    again = pickle.loads(pickle.dumps(clf))
    for key, value in state.items():
        if key != "_random_state":  # a RandomState compares by identity: its draws below
            assert _same(value, again.__getstate__()[key]), key
    assert again._random_state.randint(1 << 30) == clf._random_state.randint(1 << 30)


@pytest.mark.parametrize("change, field", [
    (lambda s: s["coefs_"].__setitem__(1, s["coefs_"][1].T), r"coefs_\[1\]"),
    (lambda s: s["intercepts_"].__setitem__(0, s["intercepts_"][0][:-1]), r"intercepts_\[0\]"),
    (lambda s: s["coefs_"][0].__setitem__((0, 0), np.nan), "finite"),
    (lambda s: s.pop("_label_binarizer"), "_label_binarizer"),
    (lambda s: s.__setitem__("n_features_in_", 7), "n_features_in_"),
    (lambda s: s.__setitem__("out_activation_", "identity"), "out_activation_"),
    (lambda s: s["_net_snapshot"]["arch"].__setitem__("activation", "nope"), "activation"),
    (lambda s: s["_net_snapshot"]["extra"].pop("1.running_var"), "extra"),
    (lambda s: s["_net_snapshot"].__setitem__("dropout", []), "dropout"),
    # an array where a name belongs (found by the fuzzer: `in` compared it elementwise)
    (lambda s: s["_net_snapshot"].__setitem__("solver", np.zeros(0)), r"\['solver'\]"),
    (lambda s: s["_net_snapshot"].__setitem__("solver", "lbfgs"), r"\['solver'\]"),
    (lambda s: s["_net_snapshot"]["optimizer"]["state"].__setitem__("exp_avg", [np.ones(3)]),
     "_net_snapshot"),
    (lambda s: s.__setitem__("learning_rate_init", "fast"), "learning_rate_init"),
    (lambda s: s.pop("alpha"), "alpha"),
])
def test_an_inconsistent_state_is_refused_at_unpickle_time(change, field):
    from fastnn.sklearn import EstimatorStateError

    clf, X, _ = _fitted_pair()
    state = pickle.loads(pickle.dumps(clf)).__getstate__()
    change(state)
    with pytest.raises(EstimatorStateError, match=field):
        _unpickle(MLPClassifier, state).predict(X)
    assert issubclass(EstimatorStateError, ValueError)
