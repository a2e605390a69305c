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


# ----------------------------------------------------- containers and Module methods
class Tower(fnn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = fnn.ModuleList([fnn.Linear(3, 3) for _ in range(2)])
        self.heads = fnn.ModuleDict({"a": fnn.Linear(3, 1), "b": fnn.Linear(3, 2)})

    def forward(self, x):
        for block in self.blocks:
            x = block(x).relu()
        return {k: head(x) for k, head in self.heads.items()}


def test_module_list_and_dict_register_their_children():
    m = Tower()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias",
                     "heads.a.weight", "heads.a.bias", "heads.b.weight", "heads.b.bias"]
    assert set(m.state_dict()) == set(names)
    out = m(np.ones((4, 3), np.float32))
    assert out["a"].shape == (4, 1) and out["b"].shape == (4, 2)
    (out["a"].sum() + out["b"].sum()).backward()
    assert all(p.grad is not None for p in m.parameters())


def test_module_list_behaves_like_a_list():
    a, b, c = fnn.ReLU(), fnn.Tanh(), fnn.Sigmoid()
    ml = fnn.ModuleList([a, b])
    ml.append(c)
    assert len(ml) == 3 and ml[-1] is c and list(ml) == [a, b, c]
    assert isinstance(ml[1:], fnn.ModuleList) and list(ml[1:]) == [b, c]
    ml.insert(0, c)
    assert [n for n, _ in ml.named_children()] == ["0", "1", "2", "3"] and ml[0] is c
    del ml[0]
    assert list(ml) == [a, b, c] and [n for n, _ in ml.named_children()] == ["0", "1", "2"]
    assert ml.pop() is c and len(ml) == 2
    ml += [c]
    ml[0] = b
    assert list(ml) == [b, b, c]
    with pytest.raises(IndexError, match="out of range"):
        ml[5]
    with pytest.raises(TypeError, match="not a Module"):
        ml.append(3)
    with pytest.raises(NotImplementedError):
        ml(np.ones(2))


def test_module_dict_behaves_like_a_dict():
    md = fnn.ModuleDict([("x", fnn.ReLU())])
    md["y"] = fnn.Linear(2, 2)
    assert list(md) == ["x", "y"] and "y" in md and len(md) == 2
    assert [k for k, _ in md.items()] == ["x", "y"] and len(list(md.parameters())) == 2
    assert isinstance(md.pop("y"), fnn.Linear) and list(md.keys()) == ["x"]
    with pytest.raises(KeyError, match="already exists"):
        md["keys"] = fnn.ReLU()
    with pytest.raises(KeyError):
        md["missing"]
    md.clear()
    assert len(md) == 0


def test_apply_add_module_and_requires_grad_():
    model = fnn.Sequential(fnn.Linear(3, 4), fnn.ReLU(), fnn.Linear(4, 2))
    seen = []

    def init(m):
        seen.append(type(m).__name__)
        if isinstance(m, fnn.Linear):
            fnn.init.zeros_(m.bias)

    assert model.apply(init) is model
    assert seen == ["Linear", "ReLU", "Linear", "Sequential"]  # children first, as PyTorch
    assert not model[0].bias.data.any()
    model.add_module("3", fnn.Softmax(dim=-1))
    assert len(model) == 4 and model.get_submodule("3") is model[3]
    model[0].requires_grad_(False)
    x = fnn.Tensor(np.ones((2, 3), np.float32))
    model(x).sum().backward()
    assert model[0].weight.grad is None and model[2].weight.grad is not None
    assert model.requires_grad_() is model and model[0].weight.requires_grad
    with pytest.raises(KeyError, match="contain '.'"):
        model.add_module("a.b", fnn.ReLU())
    with pytest.raises(TypeError, match="not a Module"):
        model.add_module("x", 3)
    assert model.to("cpu") is model and model.cpu() is model
    with pytest.raises(ValueError, match="CPU only"):
        model.to("cuda:0")


def test_softmax_logsoftmax_softplus_modules():
    x = np.random.default_rng(0).standard_normal((3, 4))
    s = fnn.Softmax(dim=1)(x)
    np.testing.assert_allclose(s.data.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(fnn.LogSoftmax(dim=1)(x).data, np.log(s.data), rtol=1e-12)
    np.testing.assert_allclose(fnn.Softplus()(x).data, np.log1p(np.exp(x)), rtol=1e-12)
    fnn.gradcheck(lambda v: fnn.Softmax(dim=0)(v) * fnn.Tensor(x), [x])
    fnn.gradcheck(lambda v: fnn.Softplus(beta=2.0, threshold=1.0)(v), [x])
    assert repr(fnn.Softmax(dim=1)) == "Softmax(dim=1)"


def test_sequential_from_an_ordered_dict_and_nn_init():
    from collections import OrderedDict

    model = fnn.Sequential(OrderedDict([("fc", fnn.Linear(2, 3)), ("act", fnn.ReLU())]))
    assert [n for n, _ in model.named_parameters()] == ["fc.weight", "fc.bias"]
    assert model[0] is model.fc and len(model) == 2
    assert fnn.nn.init is fnn.init
    fnn.nn.init.zeros_(model.fc.weight)
    assert not model.fc.weight.data.any()


# ------------------------------------------------------------ hooks, buffers, traversal
def test_forward_hooks_and_pre_hooks_with_remove():
    m = make_mlp().eval()
    x = fnn.randn(5, 4)
    ref = m(x).data.copy()
    calls = []
    pre = m[0].register_forward_pre_hook(lambda mod, args: (args[0] * 2.0,))
    post = m[4].register_forward_hook(lambda mod, args, out: calls.append(out.shape) or out * 0)
    out = m(x)
    assert calls == [(5, 3)] and not out.data.any()
    pre.remove()
    post.remove()
    np.testing.assert_allclose(m(x).data, ref)
    with m[2].register_forward_hook(lambda mod, args, out: calls.append("relu")):
        m(x)  # the hooked ReLU runs on its own, not fused into the BatchNorm before it
    m(x)
    assert calls.count("relu") == 1


def test_full_backward_hook_sees_and_replaces_gradients():
    torch = pytest.importorskip("torch")
    fnn.manual_seed(0)
    lin = fnn.nn.Linear(3, 2, dtype=np.float64)
    tl = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(lin.weight.data.T))
        tl.bias.copy_(torch.tensor(lin.bias.data))
    seen_f, seen_t = [], []
    lin.register_full_backward_hook(lambda m, gi, go: seen_f.append((gi, go)))
    tl.register_full_backward_hook(lambda m, gi, go: seen_t.append((gi, go)))
    xv = np.random.default_rng(0).normal(size=(4, 3))
    xf, xt = fnn.tensor(xv, requires_grad=True), torch.tensor(xv, requires_grad=True)
    (lin(xf) ** 2).sum().backward()
    (tl(xt) ** 2).sum().backward()
    (gi_f, go_f), = seen_f
    (gi_t, go_t), = seen_t
    np.testing.assert_allclose(gi_f[0], gi_t[0].numpy())
    np.testing.assert_allclose(go_f[0], go_t[0].numpy())
    # a hook that returns new input gradients replaces them
    h = lin.register_full_backward_hook(lambda m, gi, go: (gi[0] * 0,))
    xf.grad = None
    (lin(xf) ** 2).sum().backward()
    assert not xf.grad.any()
    h.remove()
    # an input that needs no gradient: grad_input is (None,), the hook still runs
    seen_f.clear()
    lin(fnn.tensor(xv)).sum().backward()
    assert seen_f[0][0] == (None,)


def test_buffers_and_persistence():
    m = make_mlp()
    assert [n for n, _ in m.named_buffers()] == [
        "1.running_mean", "1.running_var", "1.num_batches_tracked"]
    m[0].register_buffer("scratch", fnn.zeros(2), persistent=False)
    m[0].register_buffer("kept", np.ones(2))
    assert "0.scratch" in dict(m.named_buffers()) and "0.scratch" not in m.state_dict()
    assert "0.kept" in m.state_dict()
    m.load_state_dict(m.state_dict())
    with pytest.raises(TypeError, match="buffer"):
        m.register_buffer("bad", [1, 2])


def test_traversal_matches_torch():
    torch = pytest.importorskip("torch")
    fm = fnn.nn.Sequential(fnn.nn.Linear(2, 3), fnn.nn.Sequential(fnn.nn.ReLU(),
                                                                   fnn.nn.Linear(3, 1)))
    tm = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Sequential(torch.nn.ReLU(),
                                                                        torch.nn.Linear(3, 1)))
    assert [n for n, _ in fm.named_modules()] == [n for n, _ in tm.named_modules()]
    assert [n for n, _ in fm.named_children()] == [n for n, _ in tm.named_children()]
    assert len(list(fm.modules())) == len(list(tm.modules()))
    shared = fnn.nn.Linear(2, 2)
    twice = fnn.nn.Sequential(shared, shared)
    assert len(list(twice.modules())) == 2
    assert len(list(twice.named_modules(remove_duplicate=False))) == 3


def test_train_mode_zero_grad_apply_requires_grad_and_cuda():
    m = make_mlp()
    assert m.train(False) is m and not m[1].training
    m.train()
    m(fnn.randn(4, 4)).sum().backward()
    m.zero_grad(set_to_none=False)
    assert not m[0].weight.grad.any()
    m.zero_grad()
    assert m[0].weight.grad is None
    names = []
    m.apply(lambda mod: names.append(type(mod).__name__))
    assert names[-1] == "Sequential" and names[0] == "Linear"
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())
    with pytest.raises(RuntimeError, match="CPU only"):
        m.cuda()
    with pytest.raises(ValueError, match="CPU only"):
        m.to("cuda")
    assert "in_features=4" in repr(m[0])


def test_a_hooked_model_is_not_compiled():
    m = make_mlp()
    m[0].register_forward_hook(lambda mod, args, out: None)
    with pytest.raises(fnn.NotCompilable, match="hooks"):
        fnn.compile_step(m, fnn.nn.functional.cross_entropy,
                         fnn.optim.SGD(m.parameters(), lr=0.1))


def test_nn_utils_clip_grad_value_and_vectors():
    m = make_mlp()
    m(fnn.randn(6, 4)).pow(2).sum().backward()
    grads = [p.grad.copy() for p in m.parameters()]
    fnn.nn.utils.clip_grad_value_(m.parameters(), 0.01)
    for p, g in zip(m.parameters(), grads, strict=True):
        np.testing.assert_array_equal(p.grad, np.clip(g, -0.01, 0.01))
    vec = fnn.nn.utils.parameters_to_vector(m.parameters())
    assert vec.shape == (sum(p.numel() for p in m.parameters()),)
    fnn.nn.utils.vector_to_parameters(vec * 0, m.parameters())
    assert not any(p.data.any() for p in m.parameters())
    assert fnn.nn.utils.clip_grad_norm_ is fnn.optim.clip_grad_norm_
