"""fastnn/nn/layers.py: gradients (float64 gradcheck), fusion, buffers, modes, errors."""

import copy

import numpy as np
import pytest

import fastnn as fnn
import naive
from fastnn.nn.layers import current_dropout_row_offset, dropout_forward_into, dropout_row_offset

F64 = np.float64
ACTS = ["relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu", "identity"]


def rand(*shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def check_module(module, *inputs):
    """gradcheck of module(*inputs) with respect to the inputs and every parameter."""
    params = list(module.parameters())
    n = len(inputs)
    return fnn.gradcheck(lambda *ts: module(*ts[:n]), [*inputs, *params])


# ------------------------------------------------------------------------------ Linear
@pytest.mark.parametrize("act", ACTS)
def test_linear_with_fused_activation_gradcheck(act):
    layer = fnn.Linear(5, 4, activation=act, dtype=F64)
    check_module(layer, rand(3, 5))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_numpy_and_one_dimensional_input_is_one_sample(bias):
    layer = fnn.Linear(7, 13, bias=bias, activation="relu", dtype=F64)
    x = rand(257, 7)
    b = layer.bias.data if bias else np.zeros(13)
    y_ref, _ = naive.dense_forward(x, layer.weight.data, b, "relu")
    np.testing.assert_allclose(layer(x).data, y_ref, rtol=1e-12)
    one = layer(x[3])
    assert one.shape == (13,)
    np.testing.assert_allclose(one.data, y_ref[3], rtol=1e-12)
    check_module(layer, x[0])


@pytest.mark.parametrize("act", ACTS)
def test_linear_without_grad_gives_the_same_values(act):
    layer = fnn.Linear(5, 4, activation=act, dtype=F64)
    x = rand(3, 5)
    with fnn.no_grad():
        y = layer(x).data.copy()
    y_ref, _ = naive.dense_forward(x, layer.weight.data, layer.bias.data, act,
                                   layer.activation.alpha if layer.activation else 0.0)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12)
    np.testing.assert_allclose(layer(x).data, y_ref, rtol=1e-12)


def test_linear_weight_layout_and_default_init():
    fnn.manual_seed(0)
    layer = fnn.Linear(400, 30)
    assert layer.weight.shape == (400, 30) and layer.bias.shape == (30,)
    assert layer.weight.dtype == np.float32
    bound = 1 / np.sqrt(400)  # PyTorch: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), ...)
    assert np.abs(layer.weight.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.95 * bound
    assert abs(layer.weight.data.std() - bound / np.sqrt(3)) < 0.02 * bound


def test_first_layer_skips_input_gradient_and_grads_accumulate():
    layer = fnn.Linear(4, 3, dtype=F64)
    x = rand(6, 4)
    layer(x).sum().backward()
    g1 = layer.weight.grad.copy()
    layer(x).sum().backward()
    np.testing.assert_allclose(layer.weight.grad, 2 * g1)
    np.testing.assert_allclose(g1, x.T @ np.ones((6, 3)))


def test_inputs_of_any_real_dtype_and_layout_are_cast():
    layer = fnn.Linear(4, 2, dtype=np.float32)
    base = rand(4, 6)
    ref = layer(np.ascontiguousarray(base.T).astype(np.float32)).data
    for x in (base.T, np.asfortranarray(base.T), base.T.astype(np.float64),
              fnn.Tensor(base.T, requires_grad=True)):
        y = layer(x)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y.data, ref, rtol=1e-6)
    u8 = np.arange(8, dtype=np.uint8).reshape(2, 4)
    np.testing.assert_allclose(layer(u8).data, layer(u8.astype(np.float32)).data)
    xt = fnn.Tensor(base.T, requires_grad=True)  # float64 input into a float32 layer
    layer(xt).sum().backward()
    assert xt.grad.dtype == np.float64 and xt.grad.shape == (6, 4)


def test_linear_bad_input():
    layer = fnn.Linear(4, 2)
    with pytest.raises(ValueError, match=r"Linear\(in_features=4.*\(N, 4\).*\(3, 5\)"):
        layer(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"\(\*, 4\), got \(2, 3, 5\)"):
        layer(np.ones((2, 3, 5)))
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        layer(1.0)
    with pytest.raises(TypeError, match="bool"):
        layer(np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="in_features"):
        fnn.Linear(0, 3)
    with pytest.raises(ValueError, match="activation"):
        fnn.Linear(3, 3, activation="softmax")


# ------------------------------------------------------------------------- BatchNorm1d
@pytest.mark.parametrize("act", [None, "relu", "tanh"])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_training_gradcheck(act, affine):
    bn = fnn.BatchNorm1d(4, affine=affine, activation=act, dtype=F64)
    if affine:
        bn.weight.data[:] = [0.5, 1.5, -1.0, 2.0]
        bn.bias.data[:] = [0.1, -0.2, 0.3, 0.0]
    check_module(bn, rand(6, 4, scale=2.0) + 1.0)


def test_batchnorm_eval_gradcheck_and_statistics():
    bn = fnn.BatchNorm1d(3, momentum=0.3, dtype=F64)
    x = rand(8, 3, scale=2.0) + 5.0
    bn(x)
    _, _, rm, rv = naive.batchnorm_forward_train(x, np.ones(3), np.zeros(3), 1e-5, 0.3,
                                                 np.zeros(3), np.ones(3))
    np.testing.assert_allclose(bn.running_mean, rm, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, rv, rtol=1e-12)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    y = bn(x)
    np.testing.assert_allclose(y.data, (x - rm) / np.sqrt(rv + 1e-5), rtol=1e-12)
    check_module(bn, x)
    assert int(bn.num_batches_tracked) == 1  # eval does not touch the statistics


def test_batchnorm_cumulative_momentum_none():
    bn = fnn.BatchNorm1d(2, momentum=None, dtype=F64)
    xs = [rand(5, 2, seed=s) for s in range(3)]
    for x in xs:
        bn(x)
    np.testing.assert_allclose(bn.running_mean, np.mean([x.mean(0) for x in xs], axis=0))


def test_batchnorm_bad_input():
    bn = fnn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="more than 1"):
        bn(np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"\(N, 3\).*\(4, 2\)"):
        bn(np.ones((4, 2)))
    with pytest.raises(ValueError, match="2-D or 3-D"):
        bn(np.ones(3))
    bn.eval()
    assert bn(np.ones((1, 3))).shape == (1, 3)  # one sample is fine in eval mode


# ---------------------------------------------------------------------- fusion
def _pair(act_module, with_bn):
    fnn.manual_seed(1)
    first = fnn.BatchNorm1d(5, dtype=F64) if with_bn else fnn.Linear(4, 5, dtype=F64)
    fused = fnn.Sequential(first, act_module)
    return fused, first, act_module


@pytest.mark.parametrize("with_bn", [False, True])
@pytest.mark.parametrize("act", [fnn.ReLU, fnn.GELU, fnn.Sigmoid, lambda: fnn.LeakyReLU(0.2),
                                 fnn.SiLU, fnn.Tanh, lambda: fnn.ELU(0.5)])
def test_fused_equals_unfused(act, with_bn):
    fused, first, act_mod = _pair(act(), with_bn)
    x = rand(6, 5 if with_bn else 4, seed=2)
    xt = fnn.Tensor(x, requires_grad=True)
    y_fused = fused(xt)
    assert "+" in y_fused._op  # one node: the activation ran inside the kernel
    y_fused.backward(np.ones(y_fused.shape))
    grads_fused = [xt.grad.copy()] + [p.grad.copy() for p in fused.parameters()]
    for p in fused.parameters():
        p.grad = None
    xt2 = fnn.Tensor(x, requires_grad=True)
    y_plain = act_mod(first(xt2))
    np.testing.assert_allclose(y_fused.data, y_plain.data, rtol=1e-13, atol=1e-15)
    y_plain.backward(np.ones(y_plain.shape))
    grads_plain = [xt2.grad] + [p.grad for p in fused.parameters()]
    for a, b in zip(grads_fused, grads_plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_seed_two_layer_net_as_sequential():
    # f = W2 . max(0, W1 x) from the lecture notes, with the layer convention y = x @ W.
    net = fnn.Sequential(fnn.Linear(4, 6, bias=False, dtype=F64), fnn.ReLU(),
                         fnn.Linear(6, 3, bias=False, dtype=F64))
    x = rand(4, seed=3)
    W1, W2 = net[0].weight.data, net[2].weight.data
    np.testing.assert_allclose(net(x).data, W2.T @ np.maximum(0, W1.T @ x), rtol=1e-12)
    check_module(net, x)
    check_module(net, rand(5, 4, seed=4))


# --------------------------------------------------------------- activations, PReLU
@pytest.mark.parametrize("module", [fnn.ReLU(), fnn.LeakyReLU(0.1), fnn.ELU(), fnn.Sigmoid(),
                                    fnn.Tanh(), fnn.GELU(), fnn.GELU("tanh"), fnn.SiLU(),
                                    fnn.Swish(), fnn.Identity()])
def test_activation_modules_gradcheck_any_shape(module):
    for shape in ((7,), (3, 4), (2, 3, 2)):
        x = rand(*shape, seed=5) + 0.05
        check_module(module, x)


def test_activation_modules_keep_input_dtype_or_cast():
    x32 = np.ones((2, 2), np.float32)
    assert fnn.ReLU()(x32).dtype == np.float32
    assert fnn.ReLU()(x32.astype(F64)).dtype == F64
    assert fnn.Tanh(dtype=F64)(x32).dtype == F64
    with pytest.raises(ValueError, match="approximate"):
        fnn.GELU("fast")


@pytest.mark.parametrize("num", [1, 4])
def test_prelu_gradcheck(num):
    layer = fnn.PReLU(num, init=0.3, dtype=F64)
    assert layer.weight.shape == (num,)
    np.testing.assert_array_equal(layer.weight.data, 0.3)
    check_module(layer, rand(5, 4, seed=6))
    if num == 1:
        check_module(layer, rand(3, 2, 2, seed=7))
    else:
        with pytest.raises(ValueError, match=r"\(N, 4\)"):
            layer(np.ones((2, 3)))


# ----------------------------------------------------------------------- Maxout
@pytest.mark.parametrize("pieces", [2, 3])
def test_maxout_gradcheck_and_values(pieces):
    layer = fnn.Maxout(5, 3, pieces=pieces, dtype=F64)
    assert layer.weight.shape == (5, 3 * pieces)
    x = rand(4, 5, seed=8)
    y_ref, _ = naive.maxout_forward(x, layer.weight.data, layer.bias.data, pieces)
    np.testing.assert_allclose(layer(x).data, y_ref, rtol=1e-12)
    check_module(layer, x)


@pytest.mark.parametrize("make", [lambda: fnn.Linear(4, 4, activation="tanh", dtype=F64),
                                  lambda: fnn.Maxout(4, 4, pieces=2, dtype=F64)])
def test_a_layer_used_twice_sums_its_weight_gradients(make):
    """The second use adds x^T dz into the gradient the first wrote (a GEMM with beta = 1)."""
    layer = make()
    check_module(fnn.Sequential(layer, layer), rand(3, 4, seed=9))


# ---------------------------------------------------------------- Dropout, noise
def test_dropout_rate_scale_reproducibility_and_eval():
    d = fnn.Dropout(0.3, seed=123)
    x = np.ones((200, 50), np.float32)
    y = d(x).data
    assert abs((y == 0).mean() - 0.3) < 0.02
    np.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-6)
    y2 = fnn.Dropout(0.3, seed=123)(x).data
    np.testing.assert_array_equal(y, y2)  # a seed reproduces the masks
    assert not np.array_equal(d(x).data, y)  # and the next call draws a new mask
    d.eval()
    assert d(x).data is not None and np.array_equal(d(x).data, x)


def test_dropout_gradient_is_the_mask():
    d = fnn.Dropout(0.5, seed=0)
    x = fnn.Tensor(rand(4, 6), requires_grad=True)
    y = d(x)
    y.backward(np.ones(x.shape))
    np.testing.assert_allclose(x.grad, y.data / x.data)


def test_dropout_mask_is_philox_of_the_next_key_the_global_row_and_the_unit():
    x = rand(6, 9, seed=3)
    key = np.random.default_rng(42).bit_generator.random_raw()  # the layer's first key
    y_ref, mask_ref = naive.dropout_counter_based(x, 0.35, key)
    np.testing.assert_array_equal(fnn.Dropout(0.35, seed=42)(x).data, y_ref)
    with dropout_row_offset(1000):  # rows 1000..1005 of a larger batch
        y_far = fnn.Dropout(0.35, seed=42)(x).data
    np.testing.assert_array_equal(y_far, naive.dropout_counter_based(x, 0.35, key, 1000)[0])


@pytest.mark.parametrize("shape", [(37, 10), (16, 3, 5), (9,)])
def test_dropout_of_a_split_batch_is_the_dropout_of_the_batch(shape):
    # what data-parallel ranks do: the same layer state on every part, rows numbered globally
    x = fnn.Tensor(np.ones(shape, np.float32) + rand(*shape), requires_grad=True)
    whole = fnn.Dropout(0.5, seed=7)
    y = whole(x)
    for cut in (1, shape[0] // 2):
        parts = []
        for lo, hi in ((0, cut), (cut, shape[0])):
            with dropout_row_offset(lo):
                parts.append(fnn.Dropout(0.5, seed=7)(x.data[lo:hi]).data)
        np.testing.assert_array_equal(np.concatenate(parts), y.data)


def test_dropout_draws_one_key_per_training_call_and_its_state_resumes_it():
    d = fnn.Dropout(0.5, seed=5)
    x = np.ones((64, 32), np.float32)
    first = d(x).data
    state = copy.deepcopy(d.generator.bit_generator.state)  # what a checkpoint saves
    second, third = d(x).data, d(x).data
    assert not np.array_equal(first, second) and not np.array_equal(second, third)
    d.eval()
    d(x)  # evaluation draws nothing
    d.train()
    fourth = d(x).data
    d.generator.bit_generator.state = state
    np.testing.assert_array_equal(d(x).data, second)  # resuming gives the same next masks
    np.testing.assert_array_equal(d(x).data, third)
    np.testing.assert_array_equal(d(x).data, fourth)
    other = fnn.Dropout(0.5, seed=6)(x).data
    assert not np.array_equal(other, first)  # another seed: another mask
    # the key advances even on an empty batch (a rank with no rows keeps in step)
    e, f = fnn.Dropout(0.5, seed=5), fnn.Dropout(0.5, seed=5)
    e(np.ones((0, 32)))
    f(x)
    assert e.generator.bit_generator.state == f.generator.bit_generator.state


def test_dropout_gives_the_same_bits_on_one_or_two_threads():
    x = fnn.Tensor(rand(300, 700).astype(np.float32), requires_grad=True)  # parallel kernel
    before = fnn.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            fnn.set_num_threads(threads)
            y = fnn.Dropout(0.3, seed=11)(x)
            x.grad = None
            y.backward(np.ones(x.shape, np.float32))
            outs.append((y.data.copy(), x.grad.copy()))
    finally:
        fnn.set_num_threads(before)
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_dropout_row_offset_nests_resets_and_checks_its_argument():
    assert current_dropout_row_offset() == 0
    with dropout_row_offset(5):
        with dropout_row_offset(np.int64(9)):
            assert current_dropout_row_offset() == 9
        assert current_dropout_row_offset() == 5
        with pytest.raises(RuntimeError), dropout_row_offset(20):
            raise RuntimeError
        assert current_dropout_row_offset() == 5
    assert current_dropout_row_offset() == 0
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="offset must be an integer >= 0"), \
                dropout_row_offset(bad):
            pass


def test_dropout_forward_into_checks_rows_and_offset():
    src = np.ones(12)
    y, mask = np.empty(12), np.empty(12)
    g = np.random.default_rng(0)
    dropout_forward_into(src, 0.5, g, y, mask, 4, row_offset=2)
    ref = naive.dropout_counter_based(src.reshape(3, 4), 0.5,
                                      np.random.default_rng(0).bit_generator.random_raw(), 2)
    np.testing.assert_array_equal(y, ref[0].ravel())
    for units in (5, 0, 2.0):
        with pytest.raises(ValueError, match="units must be an integer"):
            dropout_forward_into(src, 0.5, g, y, mask, units)
    with pytest.raises(ValueError, match="row_offset must be an integer >= 0"):
        dropout_forward_into(src, 0.5, g, y, mask, 4, row_offset=-3)


def test_dropout_and_noise_bad_arguments():
    for p in (-0.1, 1.0, 1.5, "0.5"):
        with pytest.raises(ValueError, match="Dropout"):
            fnn.Dropout(p)
    with pytest.raises(ValueError, match="std"):
        fnn.GaussianNoise(-1.0)


def test_gaussian_noise_train_only_and_identity_gradient():
    g = fnn.GaussianNoise(0.5, seed=1)
    x = fnn.Tensor(np.zeros((400, 25)), requires_grad=True)
    y = g(x)
    assert abs(y.data.std() - 0.5) < 0.02
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, 1.0)
    g.eval()
    assert g(x) is x


# ------------------------------------------------------------------- buffers
def test_buffers_are_reused_but_never_overwrite_live_outputs():
    layer = fnn.Linear(3, 4, activation="relu", dtype=F64)
    x1, x2 = rand(5, 3, seed=1), rand(5, 3, seed=2)
    out1 = layer(x1)
    keep = out1.data.copy()
    out2 = layer(x2)  # out1 is alive: must not be overwritten
    np.testing.assert_array_equal(out1.data, keep)
    assert out1.data is not out2.data
    buf2 = id(out2.data)
    del out2
    out3 = layer(x2)  # out2 is gone: its buffer is reused
    assert id(out3.data) == buf2
    held = layer(x1).data  # the user keeps just the array
    layer(x2)
    np.testing.assert_array_equal(held, keep)


def test_steady_state_training_step_reuses_activation_buffers():
    net = fnn.Sequential(fnn.Linear(8, 16), fnn.ReLU(), fnn.Linear(16, 4))
    x = rand(32, 8).astype(np.float32)
    labels = np.arange(32) % 4
    ids = []
    for _ in range(4):  # the layers one by one (each Linear's pool)
        loss = fnn.losses.cross_entropy(net[2](fnn.relu(net[0](x))), labels)
        loss.backward()
        ids.append(id(net[0]._pool._bufs[("y", (32, 16), np.dtype(np.float32))][0]))
    assert len(set(ids)) == 1
    assert len(net[0]._pool._bufs[("y", (32, 16), np.dtype(np.float32))]) <= 2
    for _ in range(4):  # the Sequential as one node (nn/_chain.py): its plans
        loss = fnn.losses.cross_entropy(net(x), labels)
        loss.backward()
    assert len(net._chain.plans[32]) == 1


def test_parameter_free_layers_take_dtype_or_keep_the_input_dtype():
    x64 = np.ones((3, 2))
    for layer in (fnn.Dropout(0.5, seed=0, dtype=np.float32),
                  fnn.GaussianNoise(0.1, dtype="float32"), fnn.ReLU(dtype=np.float32)):
        assert layer(x64).dtype == np.float32
    assert fnn.Dropout(0.5, seed=0)(x64).dtype == np.float64
    assert fnn.GaussianNoise(0.1)(x64.astype(np.float32)).dtype == np.float32


def test_batchnorm_on_three_dimensional_input_normalizes_over_batch_and_length():
    bn = fnn.BatchNorm1d(3, dtype=F64)
    bn.weight.data[:] = [1.0, 2.0, 0.5]
    x = rand(4, 3, 5, seed=11) * 2 + 1
    y = bn(x).data
    mean = x.mean(axis=(0, 2), keepdims=True)
    var = x.var(axis=(0, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * bn.weight.data[:, None],
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * var.ravel() * 20 / 19, rtol=1e-12)
    check_module(bn, x)


def test_flatten_images_into_rows_and_requires_grad_():
    x = fnn.Tensor(rand(2, 1, 4, 3)).requires_grad_()
    net = fnn.Sequential(fnn.Flatten(), fnn.Linear(12, 2, dtype=F64))
    assert fnn.Flatten()(x).shape == (2, 12) and fnn.Flatten(0)(x).shape == (24,)
    net(x).sum().backward()
    assert x.grad.shape == (2, 1, 4, 3)
    check_module(net, rand(2, 1, 4, 3))


# ------------------------------------------------------------- LayerNorm and Embedding
@pytest.mark.parametrize("shape, normalized", [((5, 4), 4), ((2, 3, 4), (3, 4)), ((4,), (4,))])
def test_layernorm_values_gradients_and_gradcheck(shape, normalized):
    rng = np.random.default_rng(0)
    ln = fnn.LayerNorm(normalized, dtype=np.float64)
    ln.weight.data[...] = rng.standard_normal(ln.weight.shape)
    ln.bias.data[...] = rng.standard_normal(ln.bias.shape)
    x = rng.standard_normal(shape) * 2 + 3
    tail = len(ln.normalized_shape)
    rows = x.reshape(-1, int(np.prod(ln.normalized_shape)))
    y_ref, _ = naive.layernorm_forward(rows, ln.weight.data.reshape(-1),
                                       ln.bias.data.reshape(-1), 1e-5)
    np.testing.assert_allclose(ln(x).data, y_ref.reshape(shape), rtol=1e-12, atol=1e-12)
    assert ln(x).shape == shape and x.shape[-tail:] == ln.normalized_shape
    fnn.gradcheck(lambda v, w, b: ln(v), [x, ln.weight, ln.bias])


def test_layernorm_options_dtype_and_fusion_with_a_following_activation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    plain = fnn.LayerNorm(5, elementwise_affine=False)
    assert list(plain.parameters()) == [] and plain(x).dtype == np.float32
    np.testing.assert_allclose(plain(x).data.mean(axis=1), 0.0, atol=1e-6)
    assert fnn.LayerNorm(5, bias=False).bias is None
    fused = fnn.Sequential(fnn.LayerNorm(5, dtype=np.float64), fnn.GELU())
    xt = fnn.Tensor(x.astype(np.float64), requires_grad=True)
    y = fused(xt)
    assert y._op == "layernorm+gelu"  # one kernel call: the fusion plan took both
    ref = fnn.GELU()(fused[0](x.astype(np.float64)))
    np.testing.assert_allclose(y.data, ref.data, rtol=1e-13)
    fnn.gradcheck(lambda v: fused(v), [x.astype(np.float64)])
    direct = fnn.LayerNorm(5, activation="relu", dtype=np.float64)
    fnn.gradcheck(lambda v: direct(v), [x.astype(np.float64) + 0.01])
    with pytest.raises(ValueError, match=r"\(\*, 5\), got \(6, 4\)"):
        fnn.LayerNorm(5)(np.zeros((6, 4)))
    with pytest.raises(ValueError, match="normalized_shape"):
        fnn.LayerNorm(0)


def test_embedding_lookup_gradient_padding_and_errors():
    fnn.manual_seed(0)
    emb = fnn.Embedding(6, 3, padding_idx=1, dtype=np.float64)
    assert emb.weight.shape == (6, 3) and not emb.weight.data[1].any()
    idx = np.array([[0, 1, 5], [5, 5, 2]])
    out = emb(idx)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out.data, emb.weight.data[idx])
    g = np.random.default_rng(2).standard_normal(out.shape)
    out.backward(g)
    expect = naive.embedding_backward(idx.reshape(-1), g.reshape(-1, 3), 6, padding_idx=1)
    np.testing.assert_allclose(emb.weight.grad, expect, rtol=1e-13)
    emb(idx).backward(g)  # a second backward adds
    np.testing.assert_allclose(emb.weight.grad, 2 * expect, rtol=1e-13)
    fnn.gradcheck(lambda w: fnn.nn.functional.embedding(idx, w), [emb.weight.data.copy()])
    assert emb(fnn.tensor([3])).shape == (1, 3) and emb(fnn.Tensor([3.0])).shape == (1, 3)
    with pytest.raises(IndexError, match=r"index 6 .*\[0, 6\)"):
        emb(np.array([0, 6]))
    with pytest.raises(ValueError, match="index -1"):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="integers"):
        emb(np.array([0.5]))
    with pytest.raises(ValueError, match="padding_idx"):
        fnn.Embedding(4, 2, padding_idx=4)
    frozen = fnn.Embedding.from_pretrained(np.eye(3))
    assert not frozen.weight.requires_grad and frozen(np.array([2])).data.tolist() == [[0, 0, 1]]
    assert fnn.Embedding(3, 2, dtype=np.float32)(np.array([1])).dtype == np.float32
