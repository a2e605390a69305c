"""The graph layer: the lecture notes' worked examples, the gates, broadcasting, errors."""

import math

import numpy as np
import pytest

import fastnn as fnn


def t(v, grad=True):
    return fnn.Tensor(np.asarray(v, dtype=np.float64), requires_grad=grad)


# ----------------------------------------------------- the lecture notes' examples
def test_seed_add_then_mul():
    # f = (x + y) * z at x=-2, y=5, z=-4: q = 3, f = -12; df/dx = df/dy = z = -4, df/dz = q = 3.
    x, y, z = t(-2.0), t(5.0), t(-4.0)
    q = x + y
    f = q * z
    f.backward()
    assert f.item() == -12.0
    assert (x.grad, y.grad, z.grad) == (-4.0, -4.0, 3.0)
    assert q.grad == -4.0  # the global gradient arriving at q is z


def _neuron_expected():
    w0, x0, w1, x1, w2 = 2.0, -1.0, -3.0, -2.0, -3.0
    s = 1.0 / (1.0 + math.exp(-(w0 * x0 + w1 * x1 + w2)))
    local = s * (1.0 - s)  # the sigmoid gate's local gradient
    return s, {"w0": x0 * local, "x0": w0 * local, "w1": x1 * local, "x1": w1 * local,
               "w2": local}


def test_seed_sigmoid_neuron_from_primitive_gates():
    v = {k: t(val) for k, val in dict(w0=2.0, x0=-1.0, w1=-3.0, x1=-2.0, w2=-3.0).items()}
    dot = v["w0"] * v["x0"] + v["w1"] * v["x1"] + v["w2"]
    neg = -dot
    e = fnn.exp(neg)
    denom = e + 1.0
    f = 1.0 / denom
    f.backward()
    s, grads = _neuron_expected()
    assert abs(f.item() - s) < 1e-12 and abs(s - 0.73) < 0.01
    for k, g in grads.items():
        assert abs(v[k].grad - g) < 1e-9, k
    # The seed's intermediate steps: 1/x at 1.37 gives -1/1.37^2 = -0.53, then e^-1 * -0.53.
    assert abs(denom.grad - (-1.0 / (1.0 + math.exp(-1.0)) ** 2)) < 1e-12
    assert abs(neg.grad - denom.grad * math.exp(-1.0)) < 1e-12
    # The rounded numbers of the seed, for the reader: dw0 -0.20, dx0 0.39, dw1 -0.39, ...
    rounded = {"w0": -0.20, "x0": 0.39, "w1": -0.39, "x1": -0.59, "w2": 0.20}
    for k, r in rounded.items():
        assert round(float(v[k].grad), 2) == r, k


def test_seed_sigmoid_neuron_with_the_sigmoid_gate():
    v = {k: t(val) for k, val in dict(w0=2.0, x0=-1.0, w1=-3.0, x1=-2.0, w2=-3.0).items()}
    f = fnn.sigmoid(v["w0"] * v["x0"] + v["w1"] * v["x1"] + v["w2"])
    f.backward()
    s, grads = _neuron_expected()
    assert abs(f.item() - s) < 1e-12
    for k, g in grads.items():
        assert abs(v[k].grad - g) < 1e-9, k


def test_add_gate_distributes():
    a, b = t([1.0, 2.0]), t([3.0, 4.0])
    (a + b).backward(np.array([5.0, -7.0]))
    np.testing.assert_array_equal(a.grad, [5.0, -7.0])
    np.testing.assert_array_equal(b.grad, [5.0, -7.0])
    a.grad[0] = 99.0  # each input owns its gradient: no aliasing between them
    assert b.grad[0] == 5.0


def test_mul_gate_switches():
    a, b = t([2.0, -3.0]), t([5.0, 7.0])
    (a * b).backward(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(a.grad, [5.0, 70.0])  # the other input's value
    np.testing.assert_array_equal(b.grad, [2.0, -30.0])


def test_max_gate_routes_and_splits_ties():
    a, b = t([1.0, 5.0, 2.0]), t([3.0, 4.0, 2.0])
    fnn.maximum(a, b).backward(np.array([10.0, 20.0, 30.0]))
    np.testing.assert_array_equal(a.grad, [0.0, 20.0, 15.0])  # tie: half each, as torch
    np.testing.assert_array_equal(b.grad, [10.0, 0.0, 15.0])


def test_fan_out_sums():
    x = t(3.0)
    (x * x + x).backward()  # d/dx (x^2 + x) = 2x + 1
    assert x.grad == 7.0


def test_leaf_gradients_accumulate_across_calls_intermediates_do_not():
    x, w = t([1.0, 2.0]), t([3.0, -1.0])
    h = x * w
    loss = h.sum()
    loss.backward(retain_graph=True)  # PyTorch's rule: the second call needs it kept
    loss.backward()
    np.testing.assert_array_equal(w.grad, [2.0, 4.0])
    np.testing.assert_array_equal(h.grad, [1.0, 1.0])
    w.grad = None
    (x * w).sum().backward()
    np.testing.assert_array_equal(w.grad, [1.0, 2.0])


def test_no_grad_records_nothing():
    x = t([1.0, 2.0])
    with fnn.no_grad():
        y = fnn.relu(x * 2.0)
    assert not y.requires_grad and y._parents == ()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()
    assert fnn.is_grad_enabled()


def test_deep_graph_has_no_recursion_limit():
    x = t(1.0)
    y = x
    for _ in range(20000):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad == 1.0


def test_two_layer_net_of_the_seeds():
    # f = W2 . max(0, W1 x), the lecture notes' two-layer network, gradient-checked in float64.
    rng = np.random.default_rng(0)
    W1, W2, x = rng.standard_normal((5, 4)), rng.standard_normal((3, 5)), rng.standard_normal(4)
    fnn.gradcheck(lambda W1, W2, x: W2 @ fnn.maximum(0.0, W1 @ x), [W1, W2, x])
    fnn.gradcheck(lambda W1, W2, x: W2 @ fnn.relu(W1 @ x), [W1, W2, x])


# --------------------------------------------------------- every op, with broadcasting
SHAPE_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)), ((5,), ())]


def _pos(shape, rng):
    return rng.uniform(0.5, 2.0, shape)


@pytest.mark.parametrize("sa,sb", SHAPE_PAIRS)
@pytest.mark.parametrize(
    "op",
    [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / b,
     lambda a, b: fnn.maximum(a, b), lambda a, b: b - a * 2.0 + 1.0 / a],
    ids=["add", "sub", "mul", "div", "maximum", "mixed_with_scalars"],
)
def test_binary_ops_gradcheck_with_broadcasting(op, sa, sb):
    rng = np.random.default_rng(1)
    a, b = _pos(sa, rng), _pos(sb, rng)
    fnn.gradcheck(op, [a, b])


@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize(
    "op",
    [fnn.exp, fnn.sigmoid, fnn.tanh, fnn.relu, lambda x: -x, lambda x: x**3,
     lambda x: x**2, lambda x: x.sum(), lambda x: x.mean(), lambda x: 2.0 ** 0 * x.T,
     lambda x: x.reshape(-1), lambda x: fnn.activation(x, "gelu"),
     lambda x: fnn.activation(x, "elu", 0.7), lambda x: fnn.activation(x, "silu")],
    ids=["exp", "sigmoid", "tanh", "relu", "neg", "pow3", "square", "sum", "mean",
         "T", "reshape", "gelu", "elu", "silu"],
)
def test_unary_ops_gradcheck(op, shape):
    rng = np.random.default_rng(2)
    x = rng.uniform(0.3, 2.0, shape) * rng.choice([-1, 1], shape)
    fnn.gradcheck(op, [x])


@pytest.mark.parametrize("shape", [(), (7,), (3, 5)])
@pytest.mark.parametrize("op", [fnn.log, lambda x: x**-0.5, lambda x: x**0.5],
                         ids=["log", "pow-minus-half", "sqrt"])
def test_positive_domain_ops_gradcheck(op, shape):
    fnn.gradcheck(op, [np.random.default_rng(5).uniform(0.3, 2.0, shape)])


@pytest.mark.parametrize("axis", [0, 1, (0, 2), -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_over_axes(axis, keepdims):
    x = np.random.default_rng(3).standard_normal((2, 3, 4))
    fnn.gradcheck(lambda x: x.sum(axis=axis, keepdims=keepdims) * 1.5, [x])
    fnn.gradcheck(lambda x: x.mean(axis=axis, keepdims=keepdims), [x])
    assert fnn.Tensor(x).mean(axis=axis, keepdims=keepdims).data.shape == x.mean(
        axis=axis, keepdims=keepdims).shape


@pytest.mark.parametrize(
    "sa,sb", [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)),
              ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 5))]
)
def test_matmul_gradcheck(sa, sb):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    fnn.gradcheck(lambda a, b: a @ b, [a, b])
    np.testing.assert_allclose((fnn.Tensor(a) @ fnn.Tensor(b)).data, a @ b)


def test_ops_with_arrays_and_numbers_on_either_side():
    x = t([1.0, 2.0])
    y = np.array([3.0, 4.0]) * x + 1.0 - np.ones(2) / x
    y = 2.0 - y
    y.sum().backward()
    np.testing.assert_allclose(x.grad, -(np.array([3.0, 4.0]) + 1.0 / np.array([1.0, 4.0])))


# --------------------------------------------------------------------------- dtypes
def test_float32_stays_float32():
    x = fnn.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = fnn.sigmoid(x * 2.0 + 1) / 3
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_default_dtype_for_numbers_and_ints():
    assert fnn.Tensor(1.5).dtype == np.float32
    assert fnn.Tensor([1, 2]).dtype == np.float32
    assert fnn.Tensor(np.arange(3)).dtype == np.float32
    assert fnn.Tensor(np.arange(3.0)).dtype == np.float64
    fnn.set_default_dtype("float64")
    try:
        assert fnn.Tensor(1.5).dtype == np.float64
    finally:
        fnn.set_default_dtype(np.float32)


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "bad,what",
    [(np.array(["a", "b"]), "string"), (np.array([1 + 2j]), "complex"),
     (np.array([object()]), "object"), (np.array([True]), "bool"), ("text", "string")],
)
def test_non_numeric_data_is_a_type_error(bad, what):
    with pytest.raises(TypeError, match=what):
        fnn.Tensor(bad)


def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 2\)"):
        fnn.Tensor(np.ones((3, 4))) @ fnn.Tensor(np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(3, 4, 5\)"):
        fnn.Tensor(np.ones((2, 3, 4))) @ fnn.Tensor(np.ones((3, 4, 5)))


def test_backward_on_non_scalar_needs_a_gradient():
    x = t([1.0, 2.0])
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2.0).backward(np.ones(3))


def test_bad_dtype_and_exponent():
    with pytest.raises(TypeError, match="float32 or float64"):
        fnn.Tensor([1.0], dtype="int32")
    with pytest.raises(TypeError, match="exponent"):
        t(2.0) ** "3"
    assert (t(2.0) ** t(3.0)).item() == 8.0  # a Tensor exponent, as in PyTorch


@pytest.mark.parametrize(
    "index", [0, -1, (slice(None), 1), (slice(1, 3),), np.array([0, 2, 2]),
              (np.array([0, 1]), np.array([2, 0])), np.s_[..., ::2]],
    ids=["int", "neg", "column", "slice", "repeated", "fancy", "ellipsis-step"],
)
def test_indexing_gradcheck(index):
    x = np.random.default_rng(6).standard_normal((3, 4))
    fnn.gradcheck(lambda x: x[index] * 2.0, [x])
    np.testing.assert_array_equal(fnn.Tensor(x)[index].data, x[index])


def test_permute():
    x = np.random.default_rng(7).standard_normal((2, 3, 4))
    fnn.gradcheck(lambda x: x.permute(2, 0, 1) * np.arange(24.0).reshape(4, 2, 3), [x])
    assert fnn.Tensor(x).permute((1, 0, 2)).shape == (3, 2, 4)
    with pytest.raises(ValueError, match="permutation"):
        fnn.Tensor(x).permute(0, 1)


def test_pytorch_spelling_of_reductions():
    x = np.random.default_rng(8).standard_normal((2, 3, 4))
    t = fnn.Tensor(x)
    np.testing.assert_allclose(t.sum(dim=1, keepdim=True).data, x.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(t.mean(dim=[0, 2]).data, x.mean(axis=(0, 2)))
    fnn.gradcheck(lambda x: x.mean(dim=-1, keepdim=True) * x, [x])
    with pytest.raises(TypeError, match="axis or dim"):
        t.sum(axis=0, dim=1)


def test_interior_node_reached_at_two_depths_gets_its_whole_gradient_first():
    """a feeds the loss directly and through b: a's backward must wait for b's."""
    x = fnn.Tensor(np.array([1.0, -2.0]), requires_grad=True, dtype="float64")
    a = x * 2.0
    b = a * 3.0
    c = b.tanh()
    loss = (a + c + b).sum()
    loss.backward()
    ref = 2.0 * (1.0 + 3.0 * (1.0 - np.tanh(6.0 * x.data) ** 2) + 3.0)
    np.testing.assert_allclose(x.grad, ref, rtol=1e-12)


# ------------------------------------------------------- the PyTorch tensor surface
def r(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("name, fn", [
    ("abs", lambda x: (x + 0.05).abs()),
    ("sqrt", lambda x: (x * x + 0.5).sqrt()),
    ("pow_tensor", lambda x: (x * x + 0.5) ** (x * 0.3)),
    ("rpow", lambda x: 2.0 ** x),
    ("clamp", lambda x: x.clamp(-0.4, 0.3)),
    ("var", lambda x: x.var(dim=1)),
    ("var_all_biased", lambda x: x.var(unbiased=False)),
    ("std_dims_keep", lambda x: x.std(dim=(0, -1), keepdim=True)),
    ("std_correction", lambda x: x.std(0, correction=0)),
    ("amax", lambda x: x.amax(dim=-1)),
    ("max_dim", lambda x: x.max(dim=0).values),
    ("min_dim_keep", lambda x: x.min(1, keepdim=True)[0]),
    ("logsumexp", lambda x: x.logsumexp(dim=1)),
    ("softmax", lambda x: fnn.softmax(x, dim=0)),
    ("log_softmax", lambda x: x.log_softmax(-1)),
    ("softplus", lambda x: fnn.softplus(x * 3, beta=2.0, threshold=4.0)),
    ("cat", lambda x: fnn.cat([x, x * 2], dim=1)),
    ("stack", lambda x: fnn.stack([x, x.exp()], dim=-1)),
    ("where", lambda x: fnn.where(x > 0, x * 3, x.exp())),
    ("masked_fill", lambda x: x.masked_fill(x < 0, 1.0)),
    ("minimum", lambda x: fnn.minimum(x, x.T[:1].T * 0.5)),
    ("views", lambda x: x.view(-1).unsqueeze(0).transpose(0, 1).squeeze().flatten()),
    ("expand_repeat", lambda x: x[:, :1].expand(3, 4) * x.repeat(1, 2)[:, :4]),
    ("split_chunk", lambda x: x.split(1, dim=1)[2] * x.chunk(2, dim=1)[0][:, :1]),
    ("sort_topk", lambda x: x.sort(dim=1).values[:, 1:] + x.topk(3, dim=1).values),
    ("clone_t", lambda x: x.clone().t()),
    ("remainder", lambda x: (x * 3) % 1.7),
    ("clamp_tensor_bounds", lambda x: fnn.clamp(x, x[0] * 0.5, x[1:2] + 0.5)),
    ("max_all_amin", lambda x: x.max() + x.amin() * 2),
    ("mT_unflatten_permute", lambda x: x.mT.unflatten(0, (2, 2)).permute(-1, 0, 1)),
    ("int_promotion", lambda x: x / (fnn.arange(4) + 1) + (x > 0) * x),
    ("square_reciprocal_rsqrt", lambda x: x.square() + (x.abs() + 1).reciprocal()
     + (x.abs() + 1).rsqrt()),
    ("log1p_expm1_sin_cos", lambda x: x.abs().log1p() + x.expm1() + x.sin() * x.cos()),
    ("cumsum", lambda x: x.cumsum(1) * x.cumsum(-2)),
    ("prod", lambda x: x.prod(1) + x.prod(0, keepdim=True).sum() + x[:2].prod()),
    ("norm", lambda x: x.norm() + x.norm(1, dim=0).sum() + x.norm(3, dim=1, keepdim=True)),
    ("gather_index_select_narrow", lambda x: x.gather(1, fnn.tensor([[0, 0], [3, 1], [2, 2]]))
     * x.index_select(1, fnn.tensor([2, 0])) + x.narrow(1, -2, 2)),
])
def test_surface_ops_gradcheck(name, fn):
    fnn.gradcheck(fn, [r(3, 4)])


def test_size_is_a_method_as_in_pytorch():
    x = fnn.Tensor(np.zeros((2, 3, 4)))
    assert x.size() == (2, 3, 4) and x.size(0) == 2 and x.size(-1) == 4 and x.size(-3) == 2
    assert x.numel() == 24 and x.dim() == 3 and x.shape == (2, 3, 4)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.size(3)
    with pytest.raises(IndexError, match=r"range of \[-3, 2\]"):
        x.sum(dim=-4)


def test_comparisons_give_bool_tensors_without_gradient():
    a = t([[1.0, -2.0], [3.0, 0.0]])
    mask = a > 0
    assert mask.dtype == np.bool_ and not mask.requires_grad
    np.testing.assert_array_equal(mask.data, [[True, False], [True, False]])
    assert (a == a).all().item() and not (a != a).any().item()
    assert (a == 3.0).sum().item() == 1 and (a >= 0).float().mean().item() == 0.75
    assert (mask.float() * a).sum().item() == 4.0
    np.testing.assert_array_equal(a[mask].data, [1.0, 3.0])
    assert (a == None) is False and (a != "x") is True  # noqa: E711
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(a > 0)
    with pytest.raises(TypeError, match="bool or integer"):
        a & a


def test_max_without_dim_is_a_scalar_and_with_dim_a_pair():
    a = t([[1.0, 5.0, 5.0], [2.0, 0.0, 7.0]])
    assert a.max().item() == 7.0 and a.min().item() == 0.0
    values, indices = a.max(dim=1)
    np.testing.assert_array_equal(values.data, [5.0, 7.0])
    np.testing.assert_array_equal(indices.data, [1, 2])  # the first maximum
    assert a.max(1).indices.dtype == np.int64 and a.argmax().item() == 5
    b = t([3.0, 3.0, 1.0])
    b.max().backward()
    np.testing.assert_array_equal(b.grad, [0.5, 0.5, 0.0])  # ties share, as torch's max()


def test_var_and_std_are_unbiased_by_default():
    v = np.array([1.0, 2.0, 4.0, 7.0])
    assert t(v).var().item() == pytest.approx(np.var(v, ddof=1))
    assert t(v).std().item() == pytest.approx(np.std(v, ddof=1))
    assert t(v).var(unbiased=False).item() == pytest.approx(np.var(v))
    assert t(v).std(correction=0).item() == pytest.approx(np.std(v))
    with pytest.raises(TypeError, match="floating"):
        fnn.tensor([1, 2]).mean()


def test_integer_tensors_promote_to_the_floating_operand():
    x = fnn.Tensor(np.ones(3, np.float32))
    idx = fnn.tensor([0, 1, 2])
    assert idx.dtype == np.int64 and (x + idx).dtype == np.float32
    assert (idx * 2.5).dtype == np.float32 and (idx / 2).dtype == np.float32
    assert (idx * 2).dtype == np.int64 and ((x > 0) * x).dtype == np.float32
    with pytest.raises(RuntimeError, match="floating point"):
        fnn.tensor([1, 2], requires_grad=True)


def test_in_place_updates_follow_pytorch():
    w = fnn.Tensor(np.ones(3), requires_grad=True)
    (w * 2).sum().backward()
    data = w.data
    with pytest.raises(RuntimeError, match="leaf Tensor that requires grad"):
        w -= 0.1 * w.grad
    with fnn.no_grad():
        w -= 0.5 * w.grad  # a manual SGD step changes the tensor itself
    assert w.data is data
    np.testing.assert_array_equal(w.data, [0.0, 0.0, 0.0])
    h = w * 3.0
    h += 1.0  # inside a graph: a new node, the gradient still flows
    h.sum().backward()
    np.testing.assert_array_equal(w.grad, [5.0, 5.0, 5.0])
    plain = fnn.zeros(3)
    plain[1] = 4.0
    plain.add_(1.0)
    np.testing.assert_array_equal(plain.data, [1.0, 5.0, 1.0])
    assert plain.zero_() is plain and not plain.data.any()


def test_grad_modes():
    x = fnn.Tensor(np.ones(2), requires_grad=True)
    with fnn.no_grad():
        with fnn.enable_grad():
            assert (x * 2).requires_grad
        assert not (x * 2).requires_grad
    with fnn.inference_mode():
        assert not (x * 2).requires_grad
    with fnn.set_grad_enabled(False):
        assert not fnn.is_grad_enabled()
    assert fnn.is_grad_enabled()

    @fnn.no_grad
    def predict(v):
        return v * 2

    @fnn.inference_mode()
    def predict2(v):
        return v * 3

    assert not predict(x).requires_grad and not predict2(x).requires_grad
    assert fnn.is_grad_enabled()


def test_factories_and_conversions():
    fnn.manual_seed(0)
    a = fnn.randn(2, 3)
    fnn.manual_seed(0)
    assert a.equal(fnn.randn((2, 3))) and a.dtype == np.float32
    assert fnn.zeros(2, 3, dtype=fnn.float64).dtype == np.float64 == fnn.float64
    assert fnn.ones_like(a).shape == (2, 3) and fnn.zeros_like(a, dtype="int64").dtype == np.int64
    assert fnn.arange(3).tolist() == [0, 1, 2] and fnn.arange(1.0, 2.0, 0.5).tolist() == [1, 1.5]
    arr = np.arange(4.0)
    shared = fnn.from_numpy(arr)
    arr[0] = 9.0
    assert shared[0].item() == 9.0 and fnn.is_tensor(shared) and not fnn.is_tensor(arr)
    assert fnn.tensor(arr).data is not arr and fnn.tensor([True]).dtype == np.bool_
    assert a.to("cpu") is a and a.cpu() is a and a.to(fnn.float64).dtype == np.float64
    assert a.double().float().dtype == np.float32 and a.long().dtype == np.int64
    with pytest.raises(ValueError, match="CPU only"):
        a.to("cuda")
    assert np.asarray(a).shape == (2, 3) and a.tolist() == a.data.tolist()


def test_absent_pytorch_names_say_what_fastnn_has_instead():
    for obj, name, words in ((fnn, "Conv3d", "no convolution"), (fnn.nn, "Conv3d", "Flatten"),
                             (fnn, "LSTM", "no recurrent"), (fnn.nn, "MultiheadAttention",
                                                             "attention"),
                             (fnn.cuda, "current_device", "CPU only"),
                             (fnn, "save", "without pickle"),
                             (fnn.Tensor(np.ones(1)), "cuda", "CPU only")):
        with pytest.raises(AttributeError, match=words):
            getattr(obj, name)
    with pytest.raises(AttributeError, match="no attribute 'not_a_thing'"):
        fnn.not_a_thing  # noqa: B018


def test_tensors_hash_by_identity_and_optimizers_group_them():
    a = fnn.nn.Parameter(np.zeros(2))
    b = fnn.nn.Parameter(np.zeros(2))  # equal values: == is elementwise, identity differs
    assert len({a, b}) == 2 and {a: 1}[a] == 1
    with pytest.raises(ValueError, match="more than one parameter group"):
        fnn.optim.SGD([{"params": [a]}, {"params": [a, b]}], lr=0.1)
    with pytest.raises(ValueError, match="lists a parameter twice"):
        fnn.optim.SGD([a, b, a], lr=0.1)
    opt = fnn.optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    a.grad, b.grad = np.ones(2), np.ones(2)
    opt.step()
    np.testing.assert_allclose(a.data, [-0.1, -0.1])
    np.testing.assert_allclose(b.data, [-1.0, -1.0])
    model = fnn.Sequential(fnn.Linear(2, 2), fnn.Linear(2, 2))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_products_with_zeros_and_stepwise_functions():
    x = t([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0]])
    x.prod(1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[6.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    y = t([0.4, 1.5, -2.5])
    np.testing.assert_array_equal(y.round().data, [0.0, 2.0, -2.0])  # halves to even
    y.floor().sum().backward()  # piecewise constant: gradient 0, as PyTorch
    np.testing.assert_array_equal(y.grad, [0.0, 0.0, 0.0])
    z = t([[0.0, 0.0]])
    z.norm().backward()  # the gradient of a zero norm is 0, not NaN
    np.testing.assert_array_equal(z.grad, [[0.0, 0.0]])
    assert (fnn.tensor([[0, 3], [2, 0]]).nonzero().tolist() == [[0, 1], [1, 0]])


def test_activation_by_an_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match=r"unknown name 'softmax' \(softmax is not elementwise"
                       r".*relu"):
        fnn.activation(fnn.Tensor([1.0]), "softmax")


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_hands_each_part_its_own_slice_of_the_gradient(dim):
    rng = np.random.default_rng(8)
    parts = [fnn.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=rg)
             for s, rg in (((2, 3, 4), True), ((2, 3, 4), False), ((2, 3, 4), True))]
    out = fnn.cat(parts, dim=dim)
    g = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(g)
    pieces = np.split(g, 3, axis=dim)
    for p, piece in zip(parts, pieces, strict=True):
        if p.requires_grad:
            np.testing.assert_array_equal(p.grad, piece)
            assert p.grad.flags.c_contiguous and not np.shares_memory(p.grad, g)
        else:
            assert p.grad is None
    assert not np.shares_memory(parts[0].grad, parts[2].grad)
