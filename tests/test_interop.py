"""fastnn.interop: the programs on the other side are the judges.

ONNX files are run by onnxruntime and compared with fastnn's eval-mode outputs; safetensors
files are read by ``safetensors.numpy`` / ``safetensors.torch`` and loaded by PyTorch models
with ``strict=True``; PyTorch's weights come in through ``safetensors.torch.save_file``,
``Sequential.from_torch`` and ``load_state_dict(layout="torch")``.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fnn
from fastnn.interop import SafetensorsFileError, UnsupportedLayerError, torch_state_dict


def _trained(model, x, steps=3, seed=0):
    """A few SGD steps in training mode, so BatchNorm's running statistics are not 0 and 1
    and every weight has moved; returns the model in eval mode."""
    rng = np.random.default_rng(seed)
    params = list(model.parameters())
    opt = fnn.optim.SGD(params, lr=0.05, momentum=0.9) if params else None
    with fnn.no_grad():
        out = model.eval()(x)
    model.train()
    target = rng.standard_normal(out.shape).astype(out.dtype)
    for _ in range(steps):
        if opt is None:  # running statistics only
            model(x)
            continue
        opt.zero_grad()
        fnn.losses.mse_loss(model(x), target).backward()
        opt.step()
    return model.eval()


def _data(shape, seed=1, dtype=np.float32, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + shift).astype(dtype)


# ------------------------------------------------------------------------- the models
def _bn_after_linear():
    return fnn.Sequential(fnn.Linear(6, 5), fnn.BatchNorm1d(5), fnn.Linear(5, 3))


MODELS = {
    "linear": lambda: fnn.Linear(6, 4),
    "linear_no_bias": lambda: fnn.Sequential(fnn.Linear(6, 4, bias=False)),
    "relu": lambda: fnn.Sequential(fnn.Linear(6, 4), fnn.ReLU()),
    "leaky_relu": lambda: fnn.Sequential(fnn.Linear(6, 4), fnn.LeakyReLU(0.2)),
    "elu": lambda: fnn.Sequential(fnn.Linear(6, 4), fnn.ELU(0.7)),
    "sigmoid": lambda: fnn.Sequential(fnn.Linear(6, 4), fnn.Sigmoid()),
    "tanh": lambda: fnn.Sequential(fnn.Linear(6, 4), fnn.Tanh()),
    "silu": lambda: fnn.Sequential(fnn.Linear(6, 4), fnn.SiLU()),
    "gelu": lambda: fnn.Sequential(fnn.Linear(6, 4), fnn.GELU()),
    "gelu_tanh": lambda: fnn.Sequential(fnn.Linear(6, 4), fnn.GELU("tanh")),
    "prelu_shared": lambda: fnn.Sequential(fnn.Linear(6, 4), fnn.PReLU(init=0.1)),
    "prelu_channels": lambda: fnn.Sequential(fnn.Linear(6, 4), fnn.PReLU(4)),
    "maxout": lambda: fnn.Sequential(fnn.Maxout(6, 4, pieces=3)),
    "batchnorm": lambda: fnn.Sequential(fnn.BatchNorm1d(6)),
    "batchnorm_no_affine": lambda: fnn.Sequential(fnn.BatchNorm1d(6, affine=False, eps=1e-3)),
    "bn_after_linear": _bn_after_linear,
    "bn_fused_relu": lambda: fnn.Sequential(fnn.Linear(6, 5, bias=False),
                                            fnn.BatchNorm1d(5, activation="relu")),
    "fused_linear": lambda: fnn.Sequential(fnn.Linear(6, 5, activation="gelu_tanh"),
                                           fnn.Linear(5, 3, activation=fnn.LeakyReLU(0.3))),
    "dropout_noise_identity": lambda: fnn.Sequential(
        fnn.GaussianNoise(0.5), fnn.Linear(6, 5), fnn.Dropout(0.3), fnn.Identity(),
        fnn.Linear(5, 2)),
    "mixed": lambda: fnn.Sequential(
        fnn.Linear(6, 8), fnn.BatchNorm1d(8), fnn.ReLU(), fnn.Dropout(0.2),
        fnn.Maxout(8, 5, pieces=2), fnn.PReLU(5), fnn.Linear(5, 7, activation="silu"),
        fnn.BatchNorm1d(7, activation="elu"), fnn.GELU(),
        fnn.Sequential(fnn.Linear(7, 4), fnn.Tanh()), fnn.Linear(4, 3)),
}


def _ort(path, x):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0]


def _eval_out(model, x):
    with fnn.no_grad():
        return model(x).data


# ======================================================================= ONNX export
@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_onnxruntime_matches_fastnn_eval(kind, opset, fold, tmp_path):
    onnx = pytest.importorskip("onnx")
    fnn.manual_seed(3)
    model = _trained(MODELS[kind](), _data((40, 6), seed=2))
    path = tmp_path / "m.onnx"
    fnn.export_onnx(model, path, opset=opset, fold_batchnorm=fold)
    proto = onnx.load(os.fspath(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == opset
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    for n in (1, 37):  # one dynamic batch dimension for both
        x = _data((n, 6), seed=n)
        np.testing.assert_allclose(_ort(path, x), _eval_out(model, x), rtol=1e-5, atol=1e-5)
    assert model.training is False


def _ops(path):
    onnx = pytest.importorskip("onnx")
    return [node.op_type for node in onnx.load(os.fspath(path)).graph.node]


def test_operators_per_layer(tmp_path):
    pytest.importorskip("onnx")
    p = tmp_path / "m.onnx"
    fnn.export_onnx(MODELS["fused_linear"](), p)
    # gelu_tanh below opset 20 is its formula; the fused LeakyReLU its own node
    assert _ops(p)[0] == "Gemm" and "Gelu" not in _ops(p) and "Tanh" in _ops(p)
    assert _ops(p)[-2:] == ["Gemm", "LeakyRelu"]
    fnn.export_onnx(MODELS["fused_linear"](), p, opset=20)
    assert _ops(p) == ["Gemm", "Gelu", "Gemm", "LeakyRelu"]
    fnn.export_onnx(MODELS["gelu"](), p, opset=17)
    assert "Erf" in _ops(p)
    fnn.export_onnx(MODELS["maxout"](), p, opset=17)
    assert _ops(p) == ["Gemm", "Reshape", "ReduceMax"]
    fnn.export_onnx(MODELS["maxout"](), p, opset=20)  # ReduceMax takes axes as an input
    assert _ops(p) == ["Gemm", "Reshape", "ReduceMax"]
    fnn.export_onnx(MODELS["dropout_noise_identity"](), p)
    assert _ops(p) == ["Gemm", "Gemm"]
    fnn.export_onnx(_bn_after_linear(), p)
    assert _ops(p) == ["Gemm", "BatchNormalization", "Gemm"]
    fnn.export_onnx(_bn_after_linear(), p, fold_batchnorm=True)
    assert _ops(p) == ["Gemm", "Gemm"]
    fnn.export_onnx(MODELS["silu"](), p, probabilities=True)
    assert _ops(p) == ["Gemm", "Sigmoid", "Mul", "Softmax"]


def test_flatten_takes_a_multidimensional_input(tmp_path):
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Flatten(), fnn.Linear(6, 3), fnn.ReLU()).eval()
    p = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match="input_dim"):
        fnn.export_onnx(model, p)
    fnn.export_onnx(model, p, input_dim=(2, 3))
    x = _data((37, 2, 3))
    np.testing.assert_allclose(_ort(p, x), _eval_out(model, x), rtol=1e-5, atol=1e-5)
    # A Flatten over some of the dimensions only: a Reshape, with BatchNorm on (N, C, L)
    model = fnn.Sequential(fnn.Flatten(2, 3), fnn.BatchNorm1d(2), fnn.Flatten(),
                           fnn.Linear(12, 2))
    _trained(model, _data((9, 2, 3, 2)))
    fnn.export_onnx(model, p, input_dim=(2, 3, 2))
    assert "Reshape" in _ops(p)
    x = _data((5, 2, 3, 2))
    np.testing.assert_allclose(_ort(p, x), _eval_out(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("regression", [False, True])
def test_standardization_is_folded_into_the_graph(regression, tmp_path):
    fnn.manual_seed(1)
    d, m = 6, (2 if regression else 4)
    model = _trained(fnn.Sequential(fnn.Linear(d, 8, activation="relu"), fnn.BatchNorm1d(8),
                                    fnn.Linear(8, m)), _data((40, d)))
    raw = _data((37, d), seed=5, scale=20.0, shift=100.0)  # raw features, far from N(0, 1)
    in_mean, in_std = raw.mean(0) + 1.0, raw.std(0) * 1.5
    ref = _eval_out(model, ((raw - in_mean) / in_std).astype(np.float32)).astype(np.float64)
    kw = {"input_mean": in_mean, "input_std": in_std}
    if regression:
        out_mean, out_std = np.array([10.0, -3.0]), np.array([4.0, 0.5])
        kw.update(output_mean=out_mean, output_std=out_std)
        ref = ref * out_std + out_mean
    else:
        kw["probabilities"] = True
        ref = np.exp(ref - ref.max(1, keepdims=True))
        ref /= ref.sum(1, keepdims=True)
    p = tmp_path / "m.onnx"
    for fold in (False, True):
        fnn.export_onnx(model, p, fold_batchnorm=fold, **kw)
        for n in (1, 37):
            np.testing.assert_allclose(_ort(p, raw[:n]), ref[:n], rtol=1e-5, atol=1e-5)


def test_float64_model_exports_as_float32(tmp_path):
    fnn.manual_seed(2)
    model = _trained(MODELS["mixed"]().double(), _data((40, 6), dtype=np.float64))
    p = tmp_path / "m.onnx"
    fnn.export_onnx(model, p, fold_batchnorm=True)
    x = _data((37, 6), dtype=np.float64)
    np.testing.assert_allclose(_ort(p, x), _eval_out(model, x), rtol=1e-5, atol=1e-5)


def test_export_leaves_the_mode_and_the_weights_alone(tmp_path):
    pytest.importorskip("onnx")
    model = MODELS["mixed"]().train()
    before = model.state_dict()
    fnn.export_onnx(model, tmp_path / "m.onnx", fold_batchnorm=True)
    assert all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


class _Custom(fnn.Module):
    def forward(self, x):
        return x


def test_export_refuses_what_it_cannot_export(tmp_path):
    pytest.importorskip("onnx")
    p = tmp_path / "m.onnx"
    with pytest.raises(UnsupportedLayerError, match=r"'1'.*_Custom"):
        fnn.export_onnx(fnn.Sequential(fnn.Linear(3, 3), _Custom()), p)
    with pytest.raises(UnsupportedLayerError, match="track_running_stats=False"):
        fnn.export_onnx(fnn.Sequential(fnn.BatchNorm1d(3, track_running_stats=False)), p)
    with pytest.raises(ValueError, match="opset"):
        fnn.export_onnx(fnn.Linear(3, 3), p, opset=9)
    with pytest.raises(ValueError, match=r"'1' \(Linear\) expects \(4,\)"):
        fnn.export_onnx(fnn.Sequential(fnn.Linear(3, 3), fnn.Linear(4, 2)), p)
    with pytest.raises(ValueError, match="input_std"):
        fnn.export_onnx(fnn.Linear(3, 3), p, input_std=np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="input_mean has shape"):
        fnn.export_onnx(fnn.Linear(3, 3), p, input_mean=np.zeros(4))
    with pytest.raises(ValueError, match="not both"):
        fnn.export_onnx(fnn.Linear(3, 3), p, probabilities=True, output_std=np.ones(3))
    assert not p.exists()


# ======================================================================== safetensors
def _all_layers(dtype=None):
    return fnn.Sequential(
        fnn.GaussianNoise(0.1), fnn.Linear(6, 8, activation="relu", dtype=dtype),
        fnn.BatchNorm1d(8, momentum=None, dtype=dtype), fnn.LeakyReLU(0.2), fnn.Dropout(0.1),
        fnn.Maxout(8, 5, pieces=3, dtype=dtype), fnn.PReLU(5, dtype=dtype), fnn.ELU(0.5),
        fnn.Sequential(fnn.Linear(5, 6, bias=False, activation=fnn.LeakyReLU(0.3), dtype=dtype),
                       fnn.GELU("tanh"), fnn.Identity()),
        fnn.BatchNorm1d(6, affine=False, eps=1e-3, activation="silu", dtype=dtype),
        fnn.Flatten(), fnn.Linear(6, 4, dtype=dtype), fnn.Sigmoid(), fnn.PReLU(dtype=dtype),
        fnn.Tanh(), fnn.GELU(), fnn.SiLU(), fnn.ReLU(),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_safetensors_bit_for_bit_and_rebuilt(dtype, tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    fnn.manual_seed(4)
    model = _trained(_all_layers(dtype), _data((30, 6), dtype=dtype))
    p = tmp_path / "m.safetensors"
    fnn.save_safetensors(model, p, metadata={"task": "demo", "classes": "a,b"})
    loaded = st.load_file(os.fspath(p))
    # PyTorch's names: each fused activation takes an index of its own
    assert loaded["1.weight"].shape == (8, 6)
    assert np.array_equal(loaded["1.weight"], model[1].weight.data.T)
    assert loaded["1.weight"].dtype == dtype
    assert loaded["3.num_batches_tracked"].dtype == np.int64
    assert loaded["3.num_batches_tracked"].shape == () and loaded["3.num_batches_tracked"] == 3
    assert np.array_equal(loaded["6.weight"], model[5].weight.data.T)  # Maxout (out*k, in)
    assert loaded["6.weight"].shape == (15, 8)
    assert loaded["9.0.weight"].shape == (6, 5) and "9.0.bias" not in loaded
    assert "10.weight" not in loaded and loaded["10.running_var"].shape == (6,)
    expected = torch_state_dict(model)
    assert list(loaded) == sorted(expected) or set(loaded) == set(expected)
    for k, v in expected.items():
        assert loaded[k].dtype == v.dtype and np.array_equal(loaded[k], v), k

    meta = fnn.interop.read_safetensors_metadata(p)
    assert meta["task"] == "demo" and meta["classes"] == "a,b" and meta["format"] == "pt"
    assert json.loads(meta["fastnn.architecture"])["type"] == "Sequential"

    rebuilt = fnn.load_safetensors(p).eval()
    assert repr(rebuilt) == repr(model)
    assert all(np.array_equal(a, b) for a, b in zip(rebuilt.state_dict().values(),
                                                     model.state_dict().values(), strict=True))
    x = _data((11, 6), seed=9, dtype=dtype)
    assert np.array_equal(_eval_out(rebuilt, x), _eval_out(model, x))
    assert rebuilt[1].weight.dtype == dtype


def test_load_into_a_model_keeps_its_arrays(tmp_path):
    pytest.importorskip("safetensors")
    fnn.manual_seed(5)
    src = _trained(MODELS["mixed"](), _data((20, 6)))
    p = tmp_path / "m.safetensors"
    fnn.save_safetensors(src, p)
    dst = MODELS["mixed"]()
    opt = fnn.optim.Adam(dst.parameters())  # parameters become views of a flat buffer
    views = [q.data for q in dst.parameters()]
    assert fnn.load_safetensors(p, model=dst) is dst
    assert all(q.data is v for q, v in zip(dst.parameters(), views, strict=True))
    x = _data((7, 6))
    assert np.array_equal(_eval_out(dst.eval(), x), _eval_out(src, x))
    del opt


def test_round_trip_continues_training_exactly(tmp_path):
    pytest.importorskip("safetensors")
    fnn.manual_seed(6)
    x, y = _data((32, 6)), np.random.default_rng(0).integers(0, 3, 32)

    def make():
        return fnn.Sequential(fnn.Linear(6, 8), fnn.BatchNorm1d(8), fnn.ReLU(),
                              fnn.Maxout(8, 4), fnn.PReLU(4), fnn.Linear(4, 3))

    def steps(model, opt, n):
        model.train()
        for i in range(n):
            opt.zero_grad()
            fnn.losses.cross_entropy(model(x[i % 4 * 8:][:8 + i]), y[i % 4 * 8:][:8 + i]).backward()
            opt.step()

    original = make()
    opt = fnn.optim.Adam(original.parameters(), lr=1e-2)
    steps(original, opt, 4)
    p = tmp_path / "m.safetensors"
    fnn.save_safetensors(original, p)
    resumed = fnn.load_safetensors(p)
    opt2 = fnn.optim.Adam(resumed.parameters(), lr=1e-2)
    opt2.load_state_dict(opt.state_dict())
    steps(original, opt, 5)
    steps(resumed, opt2, 5)
    a, b = original.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a), "not the same numbers"


def test_save_is_atomic_and_checks_metadata(tmp_path):
    pytest.importorskip("safetensors")
    p = tmp_path / "m.safetensors"
    fnn.save_safetensors(fnn.Linear(3, 2), p)
    first = p.read_bytes()
    with pytest.raises(ValueError, match="reserved"):
        fnn.save_safetensors(fnn.Linear(3, 2), p, metadata={"fastnn.architecture": "x"})
    with pytest.raises(TypeError, match="str to str"):
        fnn.save_safetensors(fnn.Linear(3, 2), p, metadata={"epochs": 3})
    assert p.read_bytes() == first
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]  # no temporary file left


def _header(path):
    data = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _write(path, header, body):
    raw = json.dumps(header).encode()
    pathlib.Path(path).write_bytes(struct.pack("<Q", len(raw)) + raw + body)


@pytest.fixture
def saved(tmp_path):
    pytest.importorskip("safetensors")
    fnn.manual_seed(7)
    model = _trained(fnn.Sequential(fnn.Linear(4, 3), fnn.BatchNorm1d(3), fnn.Linear(3, 2)),
                     _data((10, 4)))
    p = tmp_path / "good.safetensors"
    fnn.save_safetensors(model, p)
    return p


def _bad_files(good: pathlib.Path):
    data = good.read_bytes()
    header, body = _header(good)
    meta = header["__metadata__"]
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    first, second = sorted(tensors, key=lambda k: tensors[k]["data_offsets"][0])[:2]
    cases = {}

    def case(name, pattern, fn):
        cases[name] = (pattern, fn)

    case("truncated", "truncated", lambda p: p.write_bytes(data[:-5]))
    case("tiny", "truncated", lambda p: p.write_bytes(data[:5]))
    case("header_length", "wrong header length",
         lambda p: p.write_bytes(struct.pack("<Q", len(data)) + data[8:]))
    case("not_json", "not valid JSON",
         lambda p: p.write_bytes(struct.pack("<Q", 4) + b"{{{{" + body))

    def overlap(p):
        h = json.loads(json.dumps(header))
        b0, e0 = h[second]["data_offsets"]
        h[second]["data_offsets"] = [b0 - 4, e0 - 4]
        _write(p, h, body)

    case("overlap", "overlapping offsets", overlap)

    def gap(p):
        h = json.loads(json.dumps(header))
        for k in h:
            if k != "__metadata__" and k != first:
                h[k]["data_offsets"] = [o + 4 for o in h[k]["data_offsets"]]
        _write(p, h, body + b"\0" * 4)

    case("gap", "do not cover the data", gap)
    case("trailing", "do not cover the data", lambda p: _write(p, header, body + b"\0" * 8))

    def f16(p):
        h = json.loads(json.dumps(header))
        h[first]["dtype"] = "F16"
        h[first]["data_offsets"][1] = h[first]["data_offsets"][0] + \
            (h[first]["data_offsets"][1] - h[first]["data_offsets"][0]) // 2
        _write(p, h, body)

    case("f16", "dtype 'F16'", f16)

    def foreign(p):
        h = json.loads(json.dumps(header))
        h["__metadata__"] = {"format": "pt"}
        _write(p, h, body)

    cases["foreign"] = ("no fastnn architecture", foreign)

    def evil_arch(p):
        h = json.loads(json.dumps(header))
        h["__metadata__"] = {**meta, "fastnn.architecture": json.dumps(
            {"type": "Sequential", "layers": [{"type": "os.system", "args": {"command": "x"}}]})}
        _write(p, h, body)

    case("evil_arch", "unknown layer type 'os.system'", evil_arch)
    return cases


CASES = ["truncated", "tiny", "header_length", "not_json", "overlap", "gap", "trailing", "f16",
         "foreign", "evil_arch"]


@pytest.mark.parametrize("case", CASES)
def test_bad_files_are_refused_in_one_line(case, saved, tmp_path):
    pattern, make_bad = _bad_files(saved)[case]
    bad = tmp_path / f"{case}.safetensors"
    make_bad(bad)
    with pytest.raises(SafetensorsFileError, match=re.escape(pattern)) as info:
        fnn.load_safetensors(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)
    if case in ("foreign", "evil_arch"):
        return  # the tensors are fine: with a model they load
    target = fnn.load_safetensors(saved)
    for m in (target, fnn.Sequential(fnn.Linear(4, 3), fnn.BatchNorm1d(3), fnn.Linear(3, 2))):
        before = m.state_dict()
        with pytest.raises(SafetensorsFileError, match=re.escape(pattern)):
            fnn.load_safetensors(bad, model=m)
        after = m.state_dict()
        assert all(np.array_equal(before[k], after[k]) for k in before)


def test_names_and_shapes_that_do_not_fit_are_named(saved):
    wrong_shape = fnn.Sequential(fnn.Linear(4, 3), fnn.BatchNorm1d(3), fnn.Linear(3, 5))
    before = wrong_shape.state_dict()
    with pytest.raises(SafetensorsFileError,
                       match=r"'2.weight' has shape \(2, 3\), the model expects \(5, 3\)"):
        fnn.load_safetensors(saved, model=wrong_shape)
    after = wrong_shape.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before), "loaded half-way"
    shifted = fnn.Sequential(fnn.Linear(4, 3), fnn.ReLU(), fnn.BatchNorm1d(3), fnn.Linear(3, 2))
    with pytest.raises(SafetensorsFileError,
                       match=r"missing \['3.weight', .*; unexpected \['1.bias', '1.num_b"):
        fnn.load_safetensors(saved, model=shifted)
    # a fused activation takes an index in PyTorch's names: the BatchNorm is "2", not "1"
    fused = fnn.Sequential(fnn.Linear(4, 3, activation="relu"), fnn.BatchNorm1d(3))
    with pytest.raises(SafetensorsFileError, match="missing"):
        fnn.load_safetensors(saved, model=fused)


def test_a_file_without_architecture_loads_into_a_model(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    p = tmp_path / "plain.safetensors"
    st.save_file({"0.weight": w, "0.bias": b}, os.fspath(p))
    with pytest.raises(SafetensorsFileError, match="no fastnn architecture"):
        fnn.load_safetensors(p)
    model = fnn.load_safetensors(p, model=fnn.Sequential(fnn.Linear(4, 3, dtype="float64")))
    assert np.array_equal(model[0].weight.data, w.T) and np.array_equal(model[0].bias.data, b)


def test_a_model_of_its_own_classes_saves_tensors_only(tmp_path):
    pytest.importorskip("safetensors")

    class Net(fnn.Module):
        def __init__(self):
            super().__init__()
            self.body = fnn.Sequential(fnn.Linear(3, 4, activation="relu"), fnn.Linear(4, 2))

        def forward(self, x):
            return self.body(x)

    p = tmp_path / "net.safetensors"
    net = Net()
    fnn.save_safetensors(net, p)
    assert "fastnn.architecture" not in fnn.interop.read_safetensors_metadata(p)
    other = fnn.load_safetensors(p, model=Net())
    assert np.array_equal(other.body[1].weight.data, net.body[1].weight.data)
    import safetensors.numpy as st

    assert set(st.load_file(os.fspath(p))) == {"body.0.weight", "body.0.bias", "body.2.weight",
                                               "body.2.bias"}


def test_layout_torch_with_arrays_and_an_unknown_layout():
    fnn.manual_seed(8)
    src = MODELS["mixed"]()
    dst = MODELS["mixed"]()
    missing, unexpected = dst.load_state_dict(torch_state_dict(src), layout="torch")
    assert missing == [] and unexpected == []
    assert all(np.array_equal(a, b) for a, b in zip(src.state_dict().values(),
                                                     dst.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="layout"):
        dst.load_state_dict(src.state_dict(), layout="keras")
    sd = torch_state_dict(src)
    sd["0.weight"] = sd["0.weight"].T
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(6, 8\).*\(8, 6\)"):
        dst.load_state_dict(sd, layout="torch")
    del sd["0.weight"]
    missing, _ = dst.load_state_dict(sd, strict=False, layout="torch")
    assert missing == ["0.weight"]


def test_missing_optional_packages_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'fastnn[export]'")):
        fnn.export_onnx(fnn.Linear(2, 2), tmp_path / "m.onnx")
    with pytest.raises(ImportError, match=re.escape("pip install 'fastnn[export]'")):
        fnn.save_safetensors(fnn.Linear(2, 2), tmp_path / "m.safetensors")


def test_importing_fastnn_imports_no_optional_package():
    code = ("import sys, numpy as np, fastnn as fnn\n"
            "m = fnn.Sequential(fnn.Linear(2, 3))\n"
            "m.load_state_dict({'0.weight': np.ones((3, 2)), '0.bias': np.ones(3)},"
            " layout='torch')\n"
            "print(sorted(k for k in ('torch', 'onnx', 'safetensors', 'onnxruntime')"
            " if k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# ============================================================================= PyTorch
@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _torch_maxout(torch, in_features, out_features, pieces):
    class Maxout(torch.nn.Module):
        """Maxout in the layout of fastnn's safetensors files (docs/serving.md)."""

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.empty(out_features * pieces, in_features))
            self.bias = torch.nn.Parameter(torch.empty(out_features * pieces))

        def forward(self, x):
            z = torch.nn.functional.linear(x, self.weight, self.bias)
            return z.unflatten(-1, (out_features, pieces)).amax(-1)

    return Maxout()


def test_pytorch_loads_a_fastnn_file_strictly(torch, tmp_path):
    st_torch = pytest.importorskip("safetensors.torch")
    nn = torch.nn
    fnn.manual_seed(9)
    model = _trained(_all_layers("float64"), _data((30, 6), dtype=np.float64))
    p = tmp_path / "m.safetensors"
    fnn.save_safetensors(model, p)
    tm = nn.Sequential(
        nn.Identity(), nn.Linear(6, 8), nn.ReLU(), nn.BatchNorm1d(8, momentum=None),
        nn.LeakyReLU(0.2), nn.Dropout(0.1), _torch_maxout(torch, 8, 5, 3), nn.PReLU(5),
        nn.ELU(0.5),
        nn.Sequential(nn.Linear(5, 6, bias=False), nn.LeakyReLU(0.3), nn.GELU("tanh"),
                      nn.Identity()),
        nn.BatchNorm1d(6, affine=False, eps=1e-3), nn.SiLU(), nn.Flatten(), nn.Linear(6, 4),
        nn.Sigmoid(), nn.PReLU(), nn.Tanh(), nn.GELU(), nn.SiLU(), nn.ReLU(),
    ).double()
    tm.load_state_dict(st_torch.load_file(os.fspath(p)), strict=True)
    tm.eval()
    x = _data((13, 6), dtype=np.float64)
    with torch.no_grad():
        expected = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_eval_out(model, x), expected, rtol=1e-6, atol=1e-6)
    assert int(tm[3].num_batches_tracked) == 3


def _torch_model(torch, dtype):
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(6, 8), nn.BatchNorm1d(8), nn.LeakyReLU(0.3), nn.Dropout(0.2),
        nn.Linear(8, 8), nn.PReLU(8, init=0.1), nn.ELU(0.5), nn.Linear(8, 7),
        nn.BatchNorm1d(7, momentum=None, eps=1e-4), nn.GELU("tanh"),
        nn.Sequential(nn.Linear(7, 6), nn.SiLU(), nn.Identity()),
        nn.Linear(6, 5, bias=False), nn.GELU(), nn.PReLU(), nn.Tanh(), nn.Linear(5, 4),
        nn.Sigmoid(), nn.ReLU(),
    ).to(dtype)


def _train_torch(torch, tm, x):
    opt = torch.optim.Adam(tm.parameters(), lr=1e-2)
    xt = torch.from_numpy(x)
    for _ in range(4):
        opt.zero_grad()
        tm(xt).square().mean().backward()
        opt.step()
    return tm.eval()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_from_torch_and_a_torch_file_give_the_same_model(torch, dtype, tmp_path):
    st_torch = pytest.importorskip("safetensors.torch")
    tm = _train_torch(torch, _torch_model(torch, getattr(torch, dtype)),
                      _data((16, 2, 3), dtype=dtype))
    x = _data((9, 2, 3), seed=3, dtype=dtype)
    with torch.no_grad():
        expected = tm(torch.from_numpy(x)).numpy()
    tol = 1e-6 if dtype == "float64" else 1e-5

    model = fnn.Sequential.from_torch(tm)
    assert isinstance(model, fnn.Sequential) and not model.training
    assert model[1].weight.dtype == np.dtype(dtype)
    assert isinstance(model[2], fnn.BatchNorm1d) and model[9].momentum is None
    assert model[6].num_parameters == 8 and model[3].negative_slope == 0.3
    assert model[10].approximate == "tanh" and model[11][1].__class__ is fnn.SiLU
    np.testing.assert_allclose(_eval_out(model, x), expected, rtol=tol, atol=tol)

    p = tmp_path / "torch.safetensors"
    st_torch.save_file(tm.state_dict(), os.fspath(p))
    with pytest.raises(SafetensorsFileError, match="no fastnn architecture"):
        fnn.load_safetensors(p)
    fresh = fnn.Sequential.from_torch(_torch_model(torch, getattr(torch, dtype)))
    fnn.load_safetensors(p, model=fresh).eval()
    np.testing.assert_allclose(_eval_out(fresh, x), expected, rtol=tol, atol=tol)

    again = fnn.Sequential.from_torch(_torch_model(torch, getattr(torch, dtype))).eval()
    again.load_state_dict(tm.state_dict(), layout="torch")  # torch tensors, duck-typed
    np.testing.assert_allclose(_eval_out(again, x), expected, rtol=tol, atol=tol)


def test_a_fused_model_takes_torch_weights(torch):
    nn = torch.nn
    tm = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.Tanh(),
                       nn.Linear(3, 2)).double().eval()
    model = fnn.Sequential(fnn.Linear(4, 6, activation="relu", dtype="float64"),
                           fnn.Linear(6, 3, activation="tanh", dtype="float64"),
                           fnn.Linear(3, 2, dtype="float64"))
    model.load_state_dict(tm.state_dict(), layout="torch")
    x = _data((5, 4), dtype=np.float64)
    with torch.no_grad():
        expected = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_eval_out(model, x), expected, rtol=1e-12, atol=1e-12)


def test_from_torch_takes_named_children(torch):
    from collections import OrderedDict

    nn = torch.nn
    tm = nn.Sequential(OrderedDict([("fc", nn.Linear(3, 4)), ("act", nn.ELU(0.4)),
                                    ("head", nn.Sequential(OrderedDict([
                                        ("out", nn.Linear(4, 2))])))])).double().eval()
    model = fnn.Sequential.from_torch(tm)
    x = _data((6, 3), dtype=np.float64)
    with torch.no_grad():
        expected = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_eval_out(model, x), expected, rtol=1e-12, atol=1e-12)


def test_from_torch_names_what_it_cannot_take(torch):
    nn = torch.nn
    with pytest.raises(UnsupportedLayerError, match=r"'2' is a torch Softplus"):
        fnn.Sequential.from_torch(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Softplus()))
    with pytest.raises(UnsupportedLayerError, match=r"'1.0' is a torch Conv3d"):
        fnn.Sequential.from_torch(nn.Sequential(nn.ReLU(), nn.Sequential(nn.Conv3d(1, 1, 1))))
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        fnn.Sequential.from_torch(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="float16"):
        fnn.Sequential.from_torch(nn.Sequential(nn.Linear(2, 2).half()))


def test_the_serving_page_pytorch_example_runs(torch, tmp_path, monkeypatch):
    """The serving page's PyTorch block (fenced ```py, since torch is optional) runs as
    written."""
    pytest.importorskip("safetensors.torch")
    page = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "serving.md").read_text("utf-8")
    blocks = re.findall(r"```py\n(.*?)```", page, re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "docs/serving.md PyTorch example", "exec"), {"__name__": "__main__"})


@pytest.mark.parametrize("spec, pattern", [
    ({"type": "Linear", "args": {"in_features": "4", "out_features": 2}},
     "'in_features' must be int"),
    ({"type": "Linear", "args": {"in_features": 4, "out_features": 2, "bias": "yes"}},
     "'bias' must be bool"),
    ({"type": "Linear", "args": {"in_features": 4, "out_features": 2, "init": "x"}},
     r"no argument\(s\) \['init'\]"),
    ({"type": "Linear", "args": {"in_features": 4, "out_features": 2,
                                 "activation": {"type": "Linear", "args": {}}}},
     "activation must be an activation layer"),
    ({"type": "Linear", "args": {"in_features": 0, "out_features": 2}}, "positive integer"),
    ({"type": "ReLU", "args": {"dtype": "float16"}}, "'dtype' must be dtype"),
    ({"type": "LeakyReLU", "args": {"negative_slope": float("nan")}}, "must be float"),
    ({"type": "Sequential", "layers": [{"type": "__import__"}]}, "unknown layer type"),
    ({"type": "Sequential"}, "'layers' list"),
    ([1, 2], "expected an object"),
])
def test_the_architecture_is_checked_data(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        fnn.interop.build_architecture(spec)
