"""fastnn/nn/module.py: Module, Parameter, Sequential."""

import numpy as np
import pytest

import fastnn as fnn


def make_mlp():
    fnn.manual_seed(0)
    return fnn.Sequential(fnn.Linear(4, 8), fnn.BatchNorm1d(8), fnn.ReLU(), fnn.Dropout(0.1),
                          fnn.Linear(8, 3))


def test_pytorch_names_indexing_and_iteration():
    m = make_mlp()
    assert [n for n, _ in m.named_parameters()] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]
    assert len(m) == 5 and isinstance(m[1], fnn.BatchNorm1d) and isinstance(m[-1], fnn.Linear)
    assert [type(x).__name__ for x in m] == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    sub = m[:2]
    assert isinstance(sub, fnn.Sequential) and len(sub) == 2 and sub[0] is m[0]
    with pytest.raises(IndexError, match="out of range"):
        m[7]
    assert set(m.state_dict()) == {
        "0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias",
        "1.running_mean", "1.running_var", "1.num_batches_tracked"}
    assert all(not isinstance(p, np.ndarray) for p in m.parameters())
    assert "(1): BatchNorm1d(8" in repr(m)


def test_train_eval_propagate():
    m = make_mlp()
    assert m.training and m[3].training
    assert m.eval() is m and not m[1].training and not m[3].training
    m.train()
    assert m[1].training
    with pytest.raises(TypeError):
        m.train("no")


def test_state_dict_round_trip_and_in_place_load():
    a, b = make_mlp(), make_mlp()
    for p in b.parameters():
        p.data[...] = 0.0
    w_before = b[0].weight.data
    a[1](np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32))
    b.load_state_dict(a.state_dict())
    assert b[0].weight.data is w_before  # loaded in place: views stay valid
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        np.testing.assert_array_equal(v, w, err_msg=k)
    sd = a.state_dict()
    sd["0.weight"][...] = 42.0  # a copy: changing it does not change the model
    assert not (a[0].weight.data == 42.0).any()


def test_load_state_dict_strict_errors_name_keys_and_shapes():
    m = make_mlp()
    sd = m.state_dict()
    bad = dict(sd)
    del bad["0.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['0.bias'\]"):
        m.load_state_dict(bad)
    bad = dict(sd, extra=np.zeros(1))
    with pytest.raises(ValueError, match=r"unexpected keys \['extra'\]"):
        m.load_state_dict(bad)
    bad = dict(sd)
    bad["4.weight"] = np.zeros((3, 8))
    before = m[0].weight.data.copy()
    bad["0.weight"] = np.ones_like(before)
    with pytest.raises(ValueError, match=r"'4.weight'.*\(3, 8\).*\(8, 3\)"):
        m.load_state_dict(bad)
    np.testing.assert_array_equal(m[0].weight.data, before)  # nothing half-loaded
    missing, unexpected = m.load_state_dict({"0.bias": np.zeros(8), "zz": 1}, strict=False)
    assert "0.weight" in missing and unexpected == ["zz"]


def test_custom_module_registers_in_order_and_assigning_data_changes_model():
    class Net(fnn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = fnn.Linear(2, 3, dtype=np.float64)
            self.scale = fnn.Parameter(np.array([2.0]))
            self.fc2 = fnn.Linear(3, 1, dtype=np.float64)

        def forward(self, x):
            return self.fc2(self.fc1(x) * self.scale)

    net = Net()
    # PyTorch's order: a module's own parameters, then its children's, recursively.
    assert [n for n, _ in net.named_parameters()] == [
        "scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    x = np.ones((1, 2))
    y0 = net(x).item()
    net.fc2.bias.data[...] += 1.0
    assert net(x).item() == pytest.approx(y0 + 1.0)
    fnn.gradcheck(lambda *ps: net(x), list(net.parameters()))

    class Forgot(fnn.Module):
        def __init__(self):
            self.fc = fnn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super"):
        Forgot()


def test_to_dtype_and_zero_grad():
    m = make_mlp().double()
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m[1].running_var.dtype == np.float64
    out = m(np.ones((4, 4)))
    assert out.dtype == np.float64
    out.sum().backward()
    assert m[0].weight.grad is not None
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="argument 1"):
        fnn.Sequential(fnn.ReLU(), lambda x: x)
