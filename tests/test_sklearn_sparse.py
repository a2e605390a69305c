"""fastnn.sklearn on sparse X (SciPy CSR/CSC, matrices and arrays): the same fit, bit for
bit, as on ``X.toarray()``; batches densified one at a time, never the whole matrix; a
ColumnTransformer with a sparse OneHotEncoder in a Pipeline, as with scikit-learn's MLP."""

import tracemalloc
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from scipy import sparse  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

import fastnn.sklearn as fsk  # noqa: E402
from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


def _sparse_data(n=240, d=30, density=0.15, seed=0):
    rng = np.random.default_rng(seed)
    X = sparse.random(n, d, density=density, format="csr", random_state=seed)
    X.data = rng.normal(size=X.nnz) * 2
    dense = X.toarray()
    score = dense[:, 0] + dense[:, 1] - dense[:, 2] + dense[:, 3:6].sum(axis=1)
    return X, score


def _fit_both(make, X_sparse, y, **fit_kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = make().fit(X_sparse, y, **fit_kw)
        b = make().fit(X_sparse.toarray(), y, **fit_kw)
    return a, b


def _assert_same_fit(a, b):
    if hasattr(b, "loss_curve_"):
        assert a.loss_curve_ == b.loss_curve_
    else:
        assert a.loss_ == b.loss_
    assert a.n_iter_ == b.n_iter_
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(ca, cb)


@pytest.mark.parametrize("convert", [
    sparse.csr_matrix, sparse.csc_matrix, sparse.csr_array, sparse.csc_array,
    sparse.coo_matrix,  # converted to CSR by scikit-learn's validation
])
def test_classifier_on_sparse_equals_dense(convert):
    X, score = _sparse_data()
    y = np.digitize(score, [-1.0, 1.0])  # three classes
    X = convert(X)
    a, b = _fit_both(lambda: MLPClassifier((12,), max_iter=6, random_state=0), X, y)
    _assert_same_fit(a, b)
    dense = X.toarray()
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(dense))
    np.testing.assert_array_equal(a.predict(X), b.predict(dense))
    assert a.score(X, y) == b.score(dense, y)
    assert a.__sklearn_tags__().input_tags.sparse


@pytest.mark.parametrize("options", [
    dict(solver="sgd", early_stopping=True, batch_size=32),  # the validation rows, shuffled
    dict(solver="adam", shuffle=False, dtype="float32"),  # consecutive rows, float32
    dict(solver="adam", batchnorm=True, dropout=0.1, batch_size=50),
])
def test_regressor_on_sparse_equals_dense(options):
    X, score = _sparse_data(seed=1)
    make = lambda: MLPRegressor(hidden_layer_sizes=(10,), max_iter=5,  # noqa: E731
                                random_state=3, **options)
    a, b = _fit_both(make, X, score)
    _assert_same_fit(a, b)
    if options.get("early_stopping"):
        assert a.validation_scores_ == b.validation_scores_
    np.testing.assert_array_equal(a.predict(X), b.predict(X.toarray()))


def test_sample_weight_and_partial_fit_on_sparse():
    X, score = _sparse_data(seed=2)
    y = (score > 0).astype(int)
    w = np.random.default_rng(0).uniform(0.2, 2.0, X.shape[0])
    a, b = _fit_both(lambda: MLPClassifier((8,), max_iter=4, random_state=1), X, y,
                     sample_weight=w)
    _assert_same_fit(a, b)
    a.partial_fit(X, y)
    b.partial_fit(X.toarray(), y)
    _assert_same_fit(a, b)


def test_lbfgs_on_sparse():
    X, score = _sparse_data(seed=3)
    make = lambda: MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs",  # noqa: E731
                                max_iter=30, random_state=0)
    a, b = _fit_both(make, X, score)  # small: densified once, so lbfgs is dense lbfgs
    _assert_same_fit(a, b)


def test_lbfgs_on_sparse_in_blocks(monkeypatch):
    # A sparse X larger than one block: the loss and gradient are summed block by block (a
    # weighted mean of the blocks' means), the same objective up to rounding.
    X, score = _sparse_data(seed=4)
    monkeypatch.setattr(fsk, "_LBFGS_BLOCK_ELEMENTS", 70 * X.shape[1])  # 4 blocks of <= 70
    w = np.random.default_rng(1).uniform(0.5, 1.5, X.shape[0])
    w[:70] = 0.0  # a block whose samples all weigh 0
    make = lambda: MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs",  # noqa: E731
                                max_iter=15, random_state=0)
    a, b = _fit_both(make, X, score, sample_weight=w)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.loss_, b.loss_, rtol=1e-9)
    for ca, cb in zip(a.coefs_, b.coefs_, strict=True):
        np.testing.assert_allclose(ca, cb, rtol=1e-6, atol=1e-9)
    with pytest.raises(NotImplementedError, match="batchnorm=True with solver='lbfgs'"):
        MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", batchnorm=True,
                     max_iter=2).fit(X, score)


def test_duplicate_entries_are_summed_and_the_input_is_not_changed():
    X, score = _sparse_data(n=60, seed=5)
    coo = X.tocoo()
    # every stored value split into two halves: the same matrix, non-canonical CSR
    dup = sparse.csr_matrix((np.concatenate([coo.data / 2, coo.data / 2]),
                             (np.concatenate([coo.row, coo.row]),
                              np.concatenate([coo.col, coo.col]))), shape=X.shape)
    dup = sparse.csr_matrix((dup.data.copy(), dup.indices.copy(), dup.indptr.copy()),
                            shape=X.shape)
    dup.has_canonical_format = False
    before = (dup.data.copy(), dup.indices.copy(), dup.indptr.copy())
    dense = dup.toarray()
    make = lambda: MLPRegressor(hidden_layer_sizes=(6,), max_iter=3, random_state=0)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a, b = make().fit(dup, score), make().fit(dense, score)
    _assert_same_fit(a, b)
    for got, kept in zip((dup.data, dup.indices, dup.indptr), before, strict=True):
        np.testing.assert_array_equal(got, kept)


def test_a_sparse_one_hot_column_transformer_in_a_pipeline():
    # The pipeline of issue 25: scikit-learn's MLP takes the sparse one-hot output of a
    # ColumnTransformer; fastnn's now does too, with scikit-learn's numbers (float64).
    rng = np.random.default_rng(0)
    n = 300
    colour = rng.choice([f"c{i}" for i in range(40)], n)
    size = rng.normal(size=(n, 2))
    X = np.empty((n, 3), dtype=object)
    X[:, 0], X[:, 1:] = colour, size
    y = ((np.char.str_len(colour.astype(str)) == 3) ^ (size[:, 0] > 0)).astype(int)

    def pipeline(mlp):
        columns = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), [0]),
                                     ("num", StandardScaler(), [1, 2])])
        return make_pipeline(columns, mlp)

    ours = pipeline(MLPClassifier((16,), max_iter=8, random_state=0))
    theirs = pipeline(sk.MLPClassifier((16,), max_iter=8, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
        theirs.fit(X, y)
    assert sparse.issparse(ours[0].transform(X))  # the estimator did get sparse X
    np.testing.assert_allclose(ours[-1].loss_curve_, theirs[-1].loss_curve_, rtol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-7,
                               atol=1e-12)


def test_a_wide_sparse_x_is_never_densified_whole():
    # 10,000 x 2,000 float64 is 160 MB dense; the fit and predict hold one batch at a time
    # (predict: blocks of 1,024 rows, 16 MB).
    X = sparse.random(10_000, 2_000, density=0.001, format="csr", random_state=0)
    y = (np.asarray(X[:, :50].sum(axis=1)).ravel() > 0.01).astype(int)
    est = MLPClassifier((8,), max_iter=1, random_state=0)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        est.predict_proba(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB: the sparse X was densified"
