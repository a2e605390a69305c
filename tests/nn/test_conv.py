"""fastnn/nn/conv.py: PyTorch parity in float64 (values and gradients), gradcheck rows,
fusion, modes, errors, and random configurations (hypothesis)."""

import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn as fnn
import fastnn.nn.functional as F

F64 = np.float64


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def check_module(module, *inputs):
    params = list(module.parameters())
    n = len(inputs)
    return fnn.gradcheck(lambda *ts: module(*ts[:n]), [*inputs, *params])


# ------------------------------------------------------------------------------ gradcheck
@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=(2, 3), stride=(2, 1), padding="valid", dilation=(1, 2), bias=False),
    dict(kernel_size=2, padding="same", groups=2, activation="tanh"),
])
def test_conv2d_gradcheck(kwargs):
    layer = fnn.Conv2d(2, 4, dtype=F64, **kwargs)
    check_module(layer, fnn.Tensor(rand(2, 2, 5, 6), requires_grad=True))


def test_conv1d_gradcheck():
    layer = fnn.Conv1d(3, 2, 3, stride=2, padding=1, dtype=F64)
    check_module(layer, fnn.Tensor(rand(2, 3, 7), requires_grad=True))


@pytest.mark.parametrize("layer", [
    fnn.MaxPool2d(2, stride=1, padding=1),
    fnn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    fnn.AdaptiveAvgPool2d((2, 3)),
], ids=["max", "avg", "adaptive"])
def test_pool_gradcheck(layer):
    # distinct values keep max pooling away from ties, where it has no derivative
    x = np.random.default_rng(0).permutation(2 * 2 * 5 * 5).reshape(2, 2, 5, 5) * 0.1
    check_module(layer, fnn.Tensor(x.astype(F64), requires_grad=True))


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm2d_gradcheck(training):
    bn = fnn.BatchNorm2d(3, activation="tanh", dtype=F64)
    bn.running_mean[:] = [0.1, -0.2, 0.3]
    bn.running_var[:] = [1.5, 0.5, 2.0]
    bn.train(training)
    bn.momentum = 0.0  # the running statistics stay put while gradcheck calls it many times
    check_module(bn, fnn.Tensor(rand(3, 3, 2, 3), requires_grad=True))


def test_dropout2d_drops_whole_channels_and_gradcheck():
    drop = fnn.Dropout2d(0.5, seed=3, dtype=F64)
    x = fnn.Tensor(rand(4, 6, 3, 3) + 5.0, requires_grad=True)
    y = drop(x).data
    kept = (y != 0).reshape(4, 6, 9)
    assert np.all(kept.all(axis=2) | ~kept.any(axis=2))  # a channel is kept or dropped whole
    np.testing.assert_allclose(y[y != 0], 2 * x.data[y != 0])
    drop.eval()
    assert drop(x) is x


# --------------------------------------------------------------------- PyTorch parity
torch = pytest.importorskip("torch")


def _grads(module_t, x):
    xt = torch.tensor(x, requires_grad=True)
    yt = module_t(xt)
    g = rand(*yt.shape, seed=7)
    yt.backward(torch.tensor(g))
    return yt.detach().numpy(), xt.grad.numpy(), g


def _parity(ours, theirs, x, rtol=1e-10, atol=1e-11):
    y_t, dx_t, g = _grads(theirs, x)
    xf = fnn.Tensor(x, requires_grad=True)
    y = ours(xf)
    y.backward(g)
    np.testing.assert_allclose(y.data, y_t, rtol=rtol, atol=atol)
    np.testing.assert_allclose(xf.grad, dx_t, rtol=rtol, atol=atol)
    for (name, p), (_, pt) in zip(ours.named_parameters(), theirs.named_parameters(),
                                  strict=True):
        np.testing.assert_allclose(p.grad, pt.grad.numpy(), rtol=rtol, atol=atol, err_msg=name)


def _torch_conv(layer, cls):
    t = cls(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
            padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
            bias=layer.bias is not None, dtype=torch.float64)
    with torch.no_grad():
        t.weight.copy_(torch.tensor(layer.weight.data))
        if layer.bias is not None:
            t.bias.copy_(torch.tensor(layer.bias.data))
    return t


CONV_CASES = [  # (C, O, kernel, stride, padding, dilation, groups, bias, input H, W)
    (3, 4, 3, 1, 0, 1, 1, True, 7, 7),
    (2, 6, (3, 2), (2, 1), (1, 2), 1, 1, False, 8, 5),
    (4, 6, 3, 2, 1, (2, 1), 2, True, 9, 10),
    (4, 4, 3, 1, "same", 1, 4, True, 6, 5),  # depthwise
    (2, 3, 4, "same" and 1, "same", (1, 2), 1, True, 6, 7),  # even kernel: asymmetric
    (3, 2, (1, 3), 1, "valid", 1, 1, True, 4, 6),
    (6, 4, 1, 1, 0, 1, 1, True, 3, 3),  # 1x1
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_conv2d_matches_torch(case):
    c, o, k, s, p, d, g, bias, h, w = case
    layer = fnn.Conv2d(c, o, k, stride=s, padding=p, dilation=d, groups=g, bias=bias,
                       dtype=F64)
    _parity(layer, _torch_conv(layer, torch.nn.Conv2d), rand(2, c, h, w, seed=1))



def test_conv2d_in_chunks_of_images_matches_torch(monkeypatch):
    # the chunked path of large layers, forced at a small shape by lowering its thresholds
    from fastnn.kernels import conv as K_conv

    monkeypatch.setattr(K_conv, "CHUNK_MIN_BYTES", 0)
    monkeypatch.setattr(K_conv, "CHUNK_BYTES", 1)  # one image per chunk
    layer = fnn.Conv2d(3, 4, 3, padding=1, groups=1, dtype=F64)
    assert K_conv.chunk_plan(5, 3, 6, 7, 3, 3, 8) == 1
    _parity(layer, _torch_conv(layer, torch.nn.Conv2d), rand(5, 3, 6, 7, seed=3))


def test_conv2d_with_fused_relu_matches_torch_sequence():
    layer = fnn.Conv2d(2, 3, 3, padding=1, dtype=F64)
    ours = fnn.Sequential(layer, fnn.ReLU())
    assert ours.fused_layers()[0][1] is ours[1]
    theirs = torch.nn.Sequential(_torch_conv(layer, torch.nn.Conv2d), torch.nn.ReLU())
    _parity(ours, theirs, rand(2, 2, 5, 5, seed=2))


@pytest.mark.parametrize("case", [(3, 4, 3, 1, 1, 1, 1), (4, 2, 2, 2, "same" and 0, 2, 2),
                                  (2, 2, 4, 1, "same", 1, 2)])
def test_conv1d_matches_torch(case):
    c, o, k, s, p, d, g = case
    layer = fnn.Conv1d(c, o, k, stride=s, padding=p, dilation=d, groups=g, dtype=F64)
    _parity(layer, _torch_conv(layer, torch.nn.Conv1d), rand(3, c, 9, seed=3))


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1)),
    dict(kernel_size=2, stride=2, ceil_mode=True),
])
def test_max_pool2d_matches_torch(kwargs):
    x = rand(2, 3, 7, 6, seed=4)
    x[0, 0, :2, :2] = 1.0  # a tie
    _parity(fnn.MaxPool2d(**kwargs), torch.nn.MaxPool2d(**kwargs), x)
    y, idx = F.max_pool2d(x, **kwargs, return_indices=True)
    _, idx_t = torch.nn.functional.max_pool2d(torch.tensor(x), **kwargs, return_indices=True)
    np.testing.assert_array_equal(idx.data, idx_t.numpy())


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), divisor_override=3),
])
def test_avg_pool2d_matches_torch(kwargs):
    _parity(fnn.AvgPool2d(**kwargs), torch.nn.AvgPool2d(**kwargs), rand(2, 3, 7, 6, seed=5))


@pytest.mark.parametrize("size", [1, (3, 2), (5, None), (4, 7)])
def test_adaptive_avg_pool2d_matches_torch(size):
    _parity(fnn.AdaptiveAvgPool2d(size), torch.nn.AdaptiveAvgPool2d(size),
            rand(2, 3, 5, 7, seed=6))


@pytest.mark.parametrize("affine,momentum", [(True, 0.1), (False, None)])
def test_batchnorm2d_matches_torch_in_training_and_eval(affine, momentum):
    ours = fnn.BatchNorm2d(3, momentum=momentum, affine=affine, dtype=F64)
    theirs = torch.nn.BatchNorm2d(3, momentum=momentum, affine=affine, dtype=torch.float64)
    if affine:
        with torch.no_grad():
            ours.weight.data[:] = [0.5, 1.5, 2.0]
            ours.bias.data[:] = [0.1, -0.2, 0.3]
            theirs.weight.copy_(torch.tensor(ours.weight.data))
            theirs.bias.copy_(torch.tensor(ours.bias.data))
    for step in range(2):
        x = rand(4, 3, 3, 5, seed=10 + step) * 2 + 1
        _parity(ours, theirs, x, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)
        for p in (*ours.parameters(), *theirs.parameters()):
            p.grad = None
    ours.eval()
    theirs.eval()
    _parity(ours, theirs, rand(2, 3, 4, 4, seed=20), rtol=1e-9, atol=1e-10)


def test_functional_forms_match_torch():
    x, w, b = rand(2, 4, 6, 6), rand(6, 2, 3, 3, seed=1), rand(6, seed=2)
    tf = torch.nn.functional
    xt, wt, bt = (torch.tensor(a) for a in (x, w, b))
    np.testing.assert_allclose(F.conv2d(x, w, b, stride=2, padding=1, groups=2).data,
                               tf.conv2d(xt, wt, bt, stride=2, padding=1, groups=2).numpy(),
                               rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(F.conv1d(x[:, :, 0], w[:, :, 0], None, padding="same",
                                        groups=2).data,
                               tf.conv1d(xt[:, :, 0], wt[:, :, 0], None, padding="same",
                                         groups=2).numpy(), rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(F.avg_pool2d(x, 2).data, tf.avg_pool2d(xt, 2).numpy())
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, 1).data,
                               tf.adaptive_avg_pool2d(xt, 1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.max_pool2d(x[0], 3, 2, 1).data,  # one image (C, H, W)
                               tf.max_pool2d(xt[0], 3, 2, 1).numpy())
    assert F.dropout2d(x, 0.5, training=False).data is not None


def test_default_initialization_has_pytorchs_bounds():
    layer = fnn.Conv2d(4, 8, (3, 5), groups=2)
    bound = 1 / np.sqrt(2 * 15)
    assert layer.weight.shape == (8, 2, 3, 5)
    largest = np.abs(layer.weight.data).max()
    assert 0.8 * bound < largest <= bound
    assert np.abs(layer.bias.data).max() <= bound
    assert fnn.init.calculate_fan_in_and_fan_out(layer.weight) == (30, 120)


def test_errors_name_the_argument():
    with pytest.raises(NotImplementedError, match="padding_mode='reflect'"):
        fnn.Conv2d(1, 1, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding_mode"):
        fnn.Conv2d(1, 1, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="strided"):
        fnn.Conv2d(1, 1, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="divisible by groups"):
        fnn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="kernel_size"):
        fnn.Conv2d(1, 1, 0)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 2, H, W\)"):
        fnn.Conv2d(2, 1, 3)(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        fnn.Conv2d(1, 1, 5)(np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="at most half"):
        fnn.MaxPool2d(2, padding=2)(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        fnn.BatchNorm2d(2)(np.zeros((1, 2, 1, 1)))
    with pytest.raises(ValueError, match="4-D"):
        fnn.BatchNorm2d(2)(np.zeros((3, 2)))


def test_one_image_and_integer_input_and_float32():
    conv = fnn.Conv2d(1, 2, 3, padding=1)
    img = np.arange(25, dtype=np.uint8).reshape(1, 5, 5)
    y = conv(img)
    assert y.shape == (2, 5, 5) and y.dtype == np.float32
    np.testing.assert_allclose(y.data, conv(img[None]).data[0], rtol=1e-6)


# ------------------------------------------------------ configurations nobody wrote down
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_conv_and_pool_configurations_match_torch(data):
    g = data.draw(st.sampled_from([1, 2]))
    c = g * data.draw(st.integers(1, 2))
    o = g * data.draw(st.integers(1, 2))
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    sh, sw = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    dh, dw = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    same = sh == sw == 1 and data.draw(st.booleans())
    padding = "same" if same else (data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
    h = data.draw(st.integers(dh * (kh - 1) + 1, 7))
    w = data.draw(st.integers(dw * (kw - 1) + 1, 7))
    layer = fnn.Conv2d(c, o, (kh, kw), stride=(sh, sw), padding=padding, dilation=(dh, dw),
                       groups=g, bias=data.draw(st.booleans()), dtype=F64)
    seed = data.draw(st.integers(0, 100))
    _parity(layer, _torch_conv(layer, torch.nn.Conv2d), rand(2, c, h, w, seed=seed))
    pk = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    kwargs = dict(kernel_size=pk, stride=(data.draw(st.integers(1, 3)), 1),
                  padding=(data.draw(st.integers(0, pk[0] // 2)), 0),
                  ceil_mode=data.draw(st.booleans()))
    x = rand(1, 2, 6, 5, seed=seed)
    _parity(fnn.MaxPool2d(**kwargs), torch.nn.MaxPool2d(**kwargs), x)
    _parity(fnn.AvgPool2d(**kwargs), torch.nn.AvgPool2d(**kwargs), x)


# ------------------------------------------------------------------- training a CNN
def lenet5(dtype=np.float32):
    return fnn.Sequential(
        fnn.Unflatten(1, (1, 28, 28)),
        fnn.Conv2d(1, 6, 5, padding=2, dtype=dtype), fnn.ReLU(), fnn.MaxPool2d(2),
        fnn.Conv2d(6, 16, 5, dtype=dtype), fnn.ReLU(), fnn.MaxPool2d(2), fnn.Flatten(),
        fnn.Linear(400, 120, dtype=dtype), fnn.ReLU(), fnn.Linear(120, 84, dtype=dtype),
        fnn.ReLU(), fnn.Linear(84, 10, dtype=dtype))


@pytest.mark.slow
def test_lenet5_adam_steps_match_torch(monkeypatch):
    # Every kernel on its serial variant: the float64 kernels this test would otherwise
    # compile in parallel (the shifted convolutions, max pooling, the dense layers: ~25 s
    # on a cold cache) are used by no other test, while the serial ones are the gradcheck
    # and parity tests'. The parallel variants compute the same blocks in the same order
    # (tests/kernels: the same bits on one and two threads), so torch's values are the check.
    for k in fnn.kernels.all_kernels():
        monkeypatch.setattr(k, "min_parallel", sys.maxsize)
    fnn.manual_seed(0)
    ours = lenet5(F64)
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10)).double()
    with torch.no_grad():
        for p, pt in zip(ours.parameters(), theirs.parameters(), strict=True):
            pt.copy_(torch.tensor(p.data.T if p.ndim == 2 else p.data))  # Linear: (in, out)
    opt = fnn.optim.Adam(ours.parameters(), lr=1e-3)
    opt_t = torch.optim.Adam(theirs.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, y = rng.standard_normal((8, 784)), rng.integers(0, 10, 8)
        opt.zero_grad()
        fnn.losses.cross_entropy(ours(x), y).backward()
        opt.step()
        opt_t.zero_grad()
        torch.nn.functional.cross_entropy(theirs(torch.tensor(x).reshape(8, 1, 28, 28)),
                                          torch.tensor(y)).backward()
        opt_t.step()
    for p, pt in zip(ours.parameters(), theirs.parameters(), strict=True):
        ref = pt.detach().numpy()
        np.testing.assert_allclose(p.data.T if p.ndim == 2 else p.data, ref, rtol=1e-7,
                                   atol=1e-9)


def test_fit_trains_a_cnn_on_the_compiled_step():
    """fit's default step compiles the CNN (tests/test_compiled_cnn.py: the graph's bits) and
    learns which half of an 8x8 image is brighter."""
    rng = np.random.default_rng(1)
    X = rng.random((256, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 2, 256)
    X[y == 1, :, :4] += 0.5
    X[y == 0, :, 4:] += 0.5
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Unflatten(1, (1, 8, 8)), fnn.Conv2d(1, 4, 3, padding=1),
                           fnn.BatchNorm2d(4), fnn.ReLU(), fnn.MaxPool2d(2), fnn.Flatten(),
                           fnn.Linear(64, 2))
    opt = fnn.optim.Adam(model.parameters(), lr=1e-2)
    import fastnn.train  # noqa: F401  (a submodule: imported, not only reached as fnn.train)

    step = fnn.train.LocalStep(model, opt)
    assert step.prepare(fnn.losses.cross_entropy) is None  # None: no reason not to compile
    history = fnn.train.fit(model, fnn.losses.cross_entropy, opt, (X, y), epochs=3,
                            batch_size=32, quiet=True, step=step)
    assert history[-1]["accuracy"] > 0.95


# -------------------------------------------------- checkpoints, PyTorch import, ONNX
def _torch_cnn():
    nn = torch.nn
    return nn.Sequential(
        nn.Unflatten(1, (3, 8, 8)), nn.Conv2d(3, 4, 3, padding="same"), nn.BatchNorm2d(4),
        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False),
        nn.AvgPool2d(2), nn.Dropout2d(0.1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 3))


def test_from_torch_safetensors_and_torch_names(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.torch import load_file

    torch.manual_seed(0)
    theirs = _torch_cnn()
    x = torch.randn(5, 192)
    theirs(x)  # running statistics move off their initial values
    theirs.eval()
    ours = fnn.Sequential.from_torch(theirs)
    assert isinstance(ours[1], fnn.Conv2d) and ours[1].padding == "same"
    np.testing.assert_allclose(ours(x.numpy()).data, theirs(x).detach().numpy(), atol=1e-6)
    path = tmp_path / "cnn.safetensors"
    fnn.save_safetensors(ours, path)
    again = fnn.load_safetensors(path).eval()  # rebuilt from the file's architecture
    np.testing.assert_array_equal(again(x.numpy()).data, ours(x.numpy()).data)
    fresh = _torch_cnn()
    fresh.load_state_dict(load_file(path), strict=True)  # PyTorch's names and layouts
    fresh.eval()
    np.testing.assert_allclose(fresh(x).detach().numpy(), theirs(x).detach().numpy())
    fused = fnn.Sequential(fnn.Unflatten(1, (3, 8, 8)), fnn.Conv2d(3, 4, 3, activation="relu"),
                           fnn.Flatten(), fnn.Linear(144, 2))
    assert list(fnn.interop.torch_state_dict(fused)) == ["1.weight", "1.bias", "4.weight",
                                                         "4.bias"]
    fused.load_state_dict(fnn.interop.torch_state_dict(fused), layout="torch")


@pytest.mark.parametrize("fold", [False, True])
def test_onnx_export_runs_in_onnxruntime(fold, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    fnn.manual_seed(0)
    bn = fnn.BatchNorm2d(4)
    bn.running_mean[:] = np.arange(4) * 0.1
    bn.running_var[:] = 1 + np.arange(4) * 0.2
    model = fnn.Sequential(
        fnn.Unflatten(1, (3, 9, 9)), fnn.Conv2d(3, 4, 3, padding="same"), bn, fnn.ReLU(),
        fnn.MaxPool2d(3, 2, 1), fnn.Conv2d(4, 4, 2, padding="same", groups=2, activation="tanh"),
        fnn.AvgPool2d(2, ceil_mode=True), fnn.Dropout2d(), fnn.AdaptiveAvgPool2d(1),
        fnn.Flatten(), fnn.Linear(4, 3)).eval()
    x = np.random.default_rng(0).standard_normal((5, 243)).astype(np.float32)
    path = tmp_path / "cnn.onnx"
    proto = fnn.export_onnx(model, path, fold_batchnorm=fold)
    ops = [n.op_type for n in proto.graph.node]
    assert ("BatchNormalization" in ops) != fold and "GlobalAveragePool" in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(out, model(x).data, atol=1e-5)
    with pytest.raises(fnn.interop.UnsupportedLayerError, match="divisor_override"):
        fnn.export_onnx(fnn.Sequential(fnn.AvgPool2d(2, divisor_override=3)),
                        tmp_path / "x.onnx", input_dim=(1, 4, 4))


# ------------------------------------------------------------------- fastnn train --arch cnn
def test_build_cnn_fits_each_image_shape():
    from fastnn.recipes import build_cnn, image_shape

    assert image_shape("digits", 64) == (1, 8, 8)
    assert image_shape("cifar10:/nowhere", 3072) == (3, 32, 32)
    assert image_shape("npy:a.npy,b.npy", 49) == (1, 7, 7)
    with pytest.raises(ValueError, match="--arch cnn needs images"):
        image_shape("csv:f.csv:y", 10)
    for shape, convs in (((1, 8, 8), 2), ((1, 28, 28), 4), ((3, 32, 32), 6)):
        model = build_cnn(shape, [16], 10, dtype="float32")
        assert sum(isinstance(m, fnn.Conv2d) for m in model) == convs
        assert model(np.zeros((2, int(np.prod(shape))), np.float32)).shape == (2, 10)


def test_cnn_inputs_are_standardized_per_channel():
    """--arch cnn: one mean and one scale per channel over the training images' pixels
    (docs/cnn.md, "Digits"), in the per-pixel arrays a checkpoint keeps."""
    from fastnn.data import Standardizer
    from fastnn.recipes import standardize_per_channel

    rng = np.random.default_rng(0)
    X = (rng.random((30, 2 * 3 * 4)) * np.repeat([1.0, 50.0], 12) + np.repeat([0.0, 7.0], 12))
    X = X.astype(np.float32)
    rows = np.array([5, 1, 20, 7, 3, 11])
    std = Standardizer().fit(X, rows=rows)
    standardize_per_channel(std, X, rows, (2, 3, 4))
    planes = X[rows].astype(np.float64).reshape(len(rows), 2, 12)
    assert std.mean.shape == std.std.shape == (24,)
    np.testing.assert_allclose(std.mean, np.repeat(planes.mean(axis=(0, 2)), 12), rtol=1e-12)
    np.testing.assert_allclose(std.std, np.repeat(planes.std(axis=(0, 2)), 12), rtol=1e-12)
    out = std.transform(X[rows], dtype="float64").reshape(len(rows), 2, 12)
    np.testing.assert_allclose(out.mean(axis=(0, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(out.std(axis=(0, 2)), 1, rtol=1e-6)
    constant = Standardizer().fit(np.ones((4, 8)))
    standardize_per_channel(constant, np.ones((4, 8)), None, (2, 2, 2))
    assert (constant.std == 1).all() and (constant.mean == 1).all()


@pytest.mark.slow
def test_train_digits_with_a_cnn(tmp_path):
    from fastnn.checkpoint import load_checkpoint
    from fastnn.recipes import build_model, run_training

    result = run_training({"data": "digits", "arch": "cnn", "epochs": 2, "hidden": "32"},
                          out=str(tmp_path), quiet=True)
    assert result.metrics["test_accuracy"] > 0.9
    arch = load_checkpoint(result.files["checkpoint"]).meta["config"]["architecture"]
    assert arch["arch"] == "cnn" and arch["image_shape"] == [1, 8, 8]
    assert isinstance(build_model(arch)[1], fnn.Conv2d)


def test_augmented_batches_crop_and_flip_each_training_batch_from_the_seed():
    from fastnn.data import DataLoader
    from fastnn.recipes import AugmentedBatches

    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 2 * 6 * 6)).astype(np.float32)
    y = rng.integers(0, 3, 10)

    def epoch(seed):
        batches = AugmentedBatches(DataLoader((X, y), batch_size=4, shuffle=True, seed=seed,
                                              dtype="float32"), (2, 6, 6))
        assert len(batches) == 3 and batches.dataset.X is X
        return [(xb.copy(), yb.copy()) for xb, yb in batches]

    first, again, other = epoch(0), epoch(0), epoch(1)
    for (xa, ya), (xb, yb) in zip(first, again, strict=True):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=False))
    # every augmented image is a shifted, maybe mirrored copy of its original: zero padding
    # or pixels of the original, the pixel values drawn from it
    plain = DataLoader((X, y), batch_size=4, shuffle=True, seed=0, dtype="float32")
    order = plain.generator.permutation(10)
    seen = np.concatenate([xb for xb, _ in first])
    for row, src in zip(seen, order, strict=True):
        assert np.isin(row[row != 0], X[src]).all()


@pytest.mark.slow
def test_train_with_augment_is_deterministic_per_seed(tmp_path):
    from fastnn.recipes import run_training

    args = {"data": "digits", "arch": "cnn", "epochs": 1, "hidden": "16", "augment": True}
    a = run_training(args, out=str(tmp_path / "a"), quiet=True)
    b = run_training(args, out=str(tmp_path / "b"), quiet=True)
    assert a.metrics["test_accuracy"] == b.metrics["test_accuracy"]
