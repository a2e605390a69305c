"""fastnn/nn/functional.py: the functional face shares the layers' kernels and numbers."""

import numpy as np
import pytest

import fastnn as fnn
import fastnn.nn.functional as F
import naive


def r(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("name, module, fn", [
    ("relu", fnn.ReLU(), F.relu),
    ("leaky_relu", fnn.LeakyReLU(0.2), lambda x: F.leaky_relu(x, 0.2)),
    ("elu", fnn.ELU(0.5), lambda x: F.elu(x, alpha=0.5)),
    ("gelu", fnn.GELU(), F.gelu),
    ("gelu_tanh", fnn.GELU("tanh"), lambda x: F.gelu(x, approximate="tanh")),
    ("silu", fnn.SiLU(), F.silu),
    ("sigmoid", fnn.Sigmoid(), F.sigmoid),
    ("tanh", fnn.Tanh(), F.tanh),
    ("softplus", fnn.Softplus(), F.softplus),
    ("softmax", fnn.Softmax(dim=1), lambda x: F.softmax(x, dim=1)),
    ("log_softmax", fnn.LogSoftmax(dim=0), lambda x: F.log_softmax(x, dim=0)),
])
def test_activations_equal_their_modules_and_gradcheck(name, module, fn):
    x = r(4, 5) + 0.01
    np.testing.assert_array_equal(fn(x).data, module(x).data)
    ref, _ = naive.activation(name, x, {"leaky_relu": 0.2, "elu": 0.5}.get(name, 0.0)) \
        if name not in ("softplus", "softmax", "log_softmax") else (None, None)
    if ref is not None:
        np.testing.assert_allclose(fn(x).data, ref, rtol=1e-12, atol=1e-15)
    fnn.gradcheck(fn, [x])


def test_linear_uses_fastnn_layout_and_matches_the_layer():
    layer = fnn.Linear(5, 3, dtype=np.float64)
    x = r(4, 5)
    np.testing.assert_array_equal(F.linear(x, layer.weight, layer.bias).data, layer(x).data)
    np.testing.assert_allclose(F.linear(x, layer.weight.data).data, x @ layer.weight.data,
                               rtol=1e-12)
    w, b = r(5, 3, seed=1), r(3, seed=2)
    fnn.gradcheck(lambda x, w, b: F.linear(x, w, b), [x, w, b])
    x3 = r(2, 4, 5, seed=3)  # (*, D): every leading index is a row
    np.testing.assert_allclose(F.linear(x3, w, b).data, x3 @ w + b, rtol=1e-12)
    fnn.gradcheck(lambda x, w: F.linear(x, w), [x3, w])
    np.testing.assert_allclose(layer(x3).data, x3 @ layer.weight.data + layer.bias.data,
                               rtol=1e-12)
    with pytest.raises(ValueError, match=r"last dimension must be 5"):
        F.linear(r(4, 3), w)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        F.linear(x, w, r(5))


def test_dropout_layer_norm_embedding_one_hot():
    x = fnn.Tensor(r(30, 20))
    assert F.dropout(x, 0.4, training=False) is x and F.dropout(x, 0.0) is x
    assert not F.dropout(x, 1.0).data.any()
    fnn.manual_seed(1)
    y = F.dropout(x, 0.4).data
    kept = y != 0
    np.testing.assert_allclose(y[kept], x.data[kept] / 0.6, rtol=1e-12)
    # one key per call from the global generator: a seed reproduces the masks
    key = np.random.default_rng(1).bit_generator.random_raw()
    np.testing.assert_array_equal(y, naive.dropout_counter_based(x.data, 0.4, key)[0])
    assert not np.array_equal(F.dropout(x, 0.4).data, y)
    fnn.manual_seed(1)
    np.testing.assert_array_equal(F.dropout(x, 0.4).data, y)
    with pytest.raises(ValueError, match="probability"):
        F.dropout(x, 1.5)
    v, w, b = r(3, 4) * 2 + 1, r(4, seed=1), r(4, seed=2)
    ref, _ = naive.layernorm_forward(v, w, b, 1e-5)
    np.testing.assert_allclose(F.layer_norm(v, 4, w, b).data, ref, rtol=1e-12)
    fnn.gradcheck(lambda v, w, b: F.layer_norm(v, (4,), w, b), [v, w, b])
    fnn.gradcheck(lambda v: F.layer_norm(v, (3, 4)), [v])
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        F.layer_norm(v, 4, r(3))
    table, idx = r(5, 2), np.array([[4, 0], [0, 2]])
    np.testing.assert_array_equal(F.embedding(idx, table).data, table[idx])
    fnn.gradcheck(lambda t: F.embedding(idx, t), [table])
    tt = fnn.Tensor(table, requires_grad=True)
    F.embedding(idx, tt, padding_idx=0).sum().backward()  # the padding row gets no gradient
    np.testing.assert_array_equal(tt.grad[:, 0], [0, 0, 1, 0, 1])
    hot = F.one_hot(fnn.tensor([2, 0]), num_classes=3)
    assert hot.dtype == np.int64 and hot.tolist() == [[0, 0, 1], [1, 0, 0]]
    assert F.one_hot(np.array([1])).tolist() == [[0, 1]]
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        F.one_hot(np.array([2]), 2)


def test_absent_functions_name_what_to_use_instead():
    with pytest.raises(AttributeError, match="conv2d"):
        F.conv3d  # noqa: B018
    with pytest.raises(AttributeError, match="clamp"):
        F.relu6  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        F.nope  # noqa: B018
