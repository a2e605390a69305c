"""A Sequential called in grad mode runs as one graph node (fastnn/nn/_chain.py): the same
bits as the layers one by one (Linear, BatchNorm1d, activations, Dropout, PReLU, Identity,
Flatten), and safe buffers."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn import nn


def _model(dtype, acts=("relu", "tanh")):
    fnn.manual_seed(0)
    mods = [nn.Linear(5, 7, dtype=dtype), nn.ReLU(), nn.Linear(7, 6, activation=acts[1],
                                                                   dtype=dtype),
            nn.Linear(6, 3, bias=False, dtype=dtype)]
    return nn.Sequential(*mods)


def _layer_by_layer(model, x):
    """What Sequential.forward did before the chain: one graph node per fused step."""
    for m, fused in model._fusion_plan():
        x = m(x) if fused is None else m(x, _fused=fused)
    return x


def _train(model, forward, dtype, steps=4, sizes=(8, 8, 5, 8)):
    rng = np.random.default_rng(1)
    opt = fnn.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for n in sizes[:steps]:
        x = fnn.tensor(rng.standard_normal((n, 5)).astype(dtype))
        y = fnn.tensor(rng.integers(0, 3, n))
        opt.zero_grad()
        loss = fnn.nn.functional.cross_entropy(forward(model, x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.data.copy() for p in model.parameters()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chain_is_one_node_with_the_bits_of_the_layers(dtype):
    a, b = _model(dtype), _model(dtype)
    out = a(fnn.tensor(np.ones((4, 5), dtype)))
    assert out._op.startswith("sequential(") and len(out._parents) == 5
    la, pa = _train(a, lambda m, x: m(x), dtype, steps=4)
    la2, _ = _train(a, lambda m, x: m(x), dtype, steps=3)
    # one plan, reused: the last loss (still held) keeps only its output array
    assert len(a._chain.plans[8]) == 1
    assert len(a._chain.outputs._bufs[("y", (8, 3), np.dtype(dtype))]) == 2
    a = _model(dtype)
    la, pa = _train(a, lambda m, x: m(x), dtype)
    lb, pb = _train(b, _layer_by_layer, dtype)
    assert la == lb
    for u, v in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(u, v)


def test_accumulated_gradients_and_retain_graph_match():
    a, b = _model("float64"), _model("float64")
    x = fnn.tensor(np.random.default_rng(2).standard_normal((6, 5)))
    for m, fwd in ((a, lambda m, x: m(x)), (b, _layer_by_layer)):
        loss = fwd(m, x).sum()
        loss.backward(retain_graph=True)
        loss.backward()  # accumulates into the gradients of the first
        with pytest.raises(RuntimeError, match="second time"):
            loss.backward()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p.grad, q.grad)


def test_parameter_gradients_match_centred_differences():
    model = _model("float64")
    x = np.random.default_rng(3).standard_normal((4, 5))
    loss = (model(x) ** 2).sum()
    assert model(x)._op.startswith("sequential(")
    loss.backward()
    eps = 1e-6
    for p in model.parameters():
        flat, grad = p.data.reshape(-1), p.grad.reshape(-1)
        for i in range(0, flat.size, 7):
            keep = flat[i]
            with fnn.no_grad():  # the layers one by one
                flat[i] = keep + eps
                up = float((model(x) ** 2).sum().item())
                flat[i] = keep - eps
                down = float((model(x) ** 2).sum().item())
            flat[i] = keep
            np.testing.assert_allclose(grad[i], (up - down) / (2 * eps), rtol=1e-5, atol=1e-7)


def test_an_output_still_held_is_never_overwritten():
    model = _model("float32")
    rng = np.random.default_rng(4)
    x1, x2 = (rng.standard_normal((4, 5)).astype("float32") for _ in range(2))
    out1 = model(x1)
    out1.sum().backward()  # frees the graph: only the output array is still held
    kept = out1.data.copy()
    out2 = model(x2)
    np.testing.assert_array_equal(out1.data, kept)
    assert not np.shares_memory(out1.data, out2.data)
    del out1
    out3 = model(x2)  # nothing holds the first plan now: it is reused
    assert np.array_equal(out3.data, out2.data)


def test_falls_back_to_the_layers_when_it_does_not_apply():
    model = _model("float32")
    assert not model(np.ones((3, 5)))._op.startswith("sequential(")  # a cast: the layers
    with fnn.no_grad():
        assert model(np.ones((3, 5), "float32"))._op == ""
    model[0].weight.requires_grad_(False)
    assert not model(np.ones((3, 5), "float32"))._op.startswith("sequential(")
    with pytest.raises(ValueError, match="expected input"):
        model(np.ones((3, 4), "float32"))
    bn = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert bn(np.ones((3, 5), "float32"))._op == "sequential(linear, batchnorm, linear)"
    bn.eval()  # running statistics: the layers
    assert not bn(np.ones((3, 5), "float32"))._op.startswith("sequential(")
    bn.train()
    with pytest.raises(ValueError, match="more than 1 sample"):  # the layer's own error
        bn(np.ones((1, 5), "float32"))
    drop = nn.Sequential(nn.Linear(5, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    drop.eval()
    assert not drop(np.ones((3, 5), "float32"))._op.startswith("sequential(")
    other = nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    assert not other(np.ones((3, 5), "float32"))._op.startswith("sequential(")


def _mixed(dtype, kind):
    fnn.manual_seed(0)
    f = {"dtype": dtype}
    if kind == "bn":  # fit's MLP: Linear, BatchNorm1d + ReLU
        mods = [nn.Linear(5, 8, **f), nn.BatchNorm1d(8, **f), nn.ReLU(), nn.Linear(8, 6, **f),
                nn.BatchNorm1d(6, momentum=None, **f), nn.Tanh(), nn.Linear(6, 3, **f)]
    elif kind == "bn_plain":  # BatchNorm1d without affine / running statistics, and last
        mods = [nn.Linear(5, 8, **f), nn.BatchNorm1d(8, affine=False, **f), nn.GELU(),
                nn.Linear(8, 3, **f), nn.BatchNorm1d(3, track_running_stats=False, **f)]
    elif kind == "dropout":  # dropout and standalone activations, a no-op or two
        mods = [nn.Flatten(), nn.Dropout(0.2), nn.Linear(5, 8, **f), nn.Identity(),
                nn.Dropout(0.3), nn.ReLU(), nn.SiLU(), nn.Linear(8, 3, activation="elu", **f)]
    else:  # PReLU shared and per unit, last stage not a Linear
        mods = [nn.Linear(5, 8, **f), nn.PReLU(**f), nn.Linear(8, 3, **f),
                nn.PReLU(3, init=0.1, **f)]
    return nn.Sequential(*mods)


@pytest.mark.parametrize("kind", ["bn", "bn_plain", "dropout", "prelu"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mixed_chains_have_the_bits_of_the_layers(kind, dtype):
    a, b = _mixed(dtype, kind), _mixed(dtype, kind)
    out = a(fnn.tensor(np.ones((4, 5), dtype)))
    assert out._op.startswith("sequential(")
    a, b = _mixed(dtype, kind), _mixed(dtype, kind)
    la, pa = _train(a, lambda m, x: m(x), dtype, sizes=(8, 8, 5, 8))
    lb, pb = _train(b, _layer_by_layer, dtype, sizes=(8, 8, 5, 8))
    assert la == lb
    for u, v in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(u, v)
    for (name, u), (_, v) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        np.testing.assert_array_equal(u, v, err_msg=name)  # running statistics too
    for m, n in zip(a, b, strict=True):  # dropout drew as many keys
        if isinstance(m, nn.Dropout):
            assert m.generator.bit_generator.state == n.generator.bit_generator.state


@pytest.mark.parametrize("kind", ["bn", "dropout", "prelu"])
def test_mixed_chains_accumulate_and_retain_as_the_layers(kind):
    a, b = _mixed("float64", kind), _mixed("float64", kind)
    x = fnn.tensor(np.random.default_rng(2).standard_normal((6, 5)))
    for m, fwd in ((a, lambda m, x: m(x)), (b, _layer_by_layer)):
        loss = (fwd(m, x) ** 2).sum()
        loss.backward(retain_graph=True)
        loss.backward()  # accumulates into the gradients of the first
        (fwd(m, x) ** 2).sum().backward()  # and a new forward adds too
    assert a(x)._op.startswith("sequential(")
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p.grad, q.grad)


def test_batchnorm_chain_gradients_match_centred_differences():
    model = _mixed("float64", "bn")
    model[4].momentum = 0.1
    x = np.random.default_rng(3).standard_normal((6, 5))
    loss = (model(x) ** 2).sum()
    assert model(x)._op.startswith("sequential(")
    loss.backward()
    eps = 1e-6
    for p in model.parameters():
        flat, grad = p.data.reshape(-1), p.grad.reshape(-1)
        for i in range(0, flat.size, 5):
            keep = flat[i]
            flat[i] = keep + eps
            up = float((model(x) ** 2).sum().item())
            flat[i] = keep - eps
            down = float((model(x) ** 2).sum().item())
            flat[i] = keep
            np.testing.assert_allclose(grad[i], (up - down) / (2 * eps), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["linear", "bn", "bn_plain", "dropout", "prelu"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_an_input_that_needs_a_gradient_runs_as_the_chain_with_the_bits_of_the_layers(
        kind, dtype):
    make = (lambda: _model(dtype)) if kind == "linear" else (lambda: _mixed(dtype, kind))
    runs = []
    for forward in (lambda m, x: m(x), _layer_by_layer):
        model = make()
        opt = fnn.optim.Adam(model.parameters(), lr=1e-2)
        rng = np.random.default_rng(5)
        grads, ops = [], []
        for n in (8, 8, 5, 8):
            x = fnn.tensor(rng.standard_normal((n, 5)).astype(dtype), requires_grad=True)
            h = x * 2.0  # a graph node that needs a gradient
            y = fnn.tensor(rng.integers(0, 3, n))
            opt.zero_grad()
            out = forward(model, h)
            ops.append(out._op)
            loss = fnn.nn.functional.cross_entropy(out, y)
            loss.backward()
            opt.step()
            grads.append(x.grad)
        runs.append((grads, [p.data.copy() for p in model.parameters()], ops))
    (ga, pa, ops), (gb, pb, _) = runs
    assert all(op.startswith("sequential(") for op in ops)
    for u, v in zip(ga + pa, gb + pb, strict=True):
        np.testing.assert_array_equal(u, v)
    # every step's input gradient is its own array (never the plan's, overwritten later)
    assert len({id(g) for g in ga}) == len(ga)
    assert not any(np.shares_memory(u, v) for i, u in enumerate(ga) for v in ga[i + 1:])


@pytest.mark.parametrize("kind", ["linear", "bn", "dropout"])
def test_an_input_gradient_accumulates_and_follows_backward_inputs(kind):
    make = (lambda: _model("float64")) if kind == "linear" else (lambda: _mixed("float64", kind))
    a, b = make(), make()
    xs = [fnn.tensor(np.random.default_rng(6).standard_normal((6, 5)), requires_grad=True)
          for _ in range(2)]
    for m, fwd, x in ((a, lambda m, x: m(x), xs[0]), (b, _layer_by_layer, xs[1])):
        loss = (fwd(m, x) ** 2).sum()
        loss.backward(retain_graph=True)
        loss.backward()  # accumulates into the gradients of the first
        (fwd(m, x) ** 2).sum().backward()  # and a new forward adds too
    assert a(xs[0])._op.startswith("sequential(")
    np.testing.assert_array_equal(xs[0].grad, xs[1].grad)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p.grad, q.grad)
    x = fnn.tensor(np.ones((6, 5)), requires_grad=True)
    first = next(iter(a.parameters()))
    (a(x) ** 2).sum().backward(inputs=[first])  # the input switched off for this walk
    assert x.grad is None


def test_an_input_gradient_matches_centred_differences():
    model = _mixed("float64", "bn")
    model[4].momentum = 0.1
    x0 = np.random.default_rng(7).standard_normal((6, 5))
    x = fnn.tensor(x0.copy(), requires_grad=True)
    out = model(x)
    assert out._op.startswith("sequential(")
    (out ** 2).sum().backward()
    eps = 1e-6
    flat = x0.reshape(-1)
    for i in range(0, flat.size, 3):
        keep = flat[i]
        flat[i] = keep + eps
        up = float((model(x0) ** 2).sum().item())
        flat[i] = keep - eps
        down = float((model(x0) ** 2).sum().item())
        flat[i] = keep
        np.testing.assert_allclose(x.grad.reshape(-1)[i], (up - down) / (2 * eps), rtol=1e-5,
                                   atol=1e-7)


def test_tabular_mlp_trains_through_the_chain_with_the_bits_of_the_layers():
    """TabularMLP's Sequential after the cat of its embeddings (an input that needs a
    gradient) runs as one chain node; Adam steps give the bits of the layers one by one."""

    def layers_forward(model, x):  # TabularMLP.forward with the Sequential layer by layer
        k = model.n_continuous
        parts = [fnn.tensor(np.ascontiguousarray(x[:, :k]))]
        parts += [e(np.ascontiguousarray(x[:, k + j]).astype(np.int64))
                  for j, e in enumerate(model.embeddings)]
        return _layer_by_layer(model.mlp, fnn.cat(parts, dim=1))

    runs = []
    for forward in (lambda m, x: m(x), layers_forward):
        fnn.manual_seed(3)
        model = nn.TabularMLP(3, [7, 300], hidden=(16, 8), out_features=3, dropout=0.2)
        # the whole Sequential on the written first input (the first layer from runs of
        # components, kernels/tabular_linear.py, has its own tests)
        model._first_layer = lambda data: None
        opt = fnn.optim.Adam(model.parameters(), lr=1e-2)
        rng = np.random.default_rng(9)
        ops = []
        for n in (12, 12, 7):
            x = np.concatenate([rng.standard_normal((n, 3)), rng.integers(0, 7, (n, 1)),
                                rng.integers(0, 300, (n, 1))], axis=1).astype(np.float32)
            opt.zero_grad()
            out = forward(model, x)
            ops.append(out._op)
            fnn.nn.functional.cross_entropy(out, fnn.tensor(rng.integers(0, 3, n))).backward()
            opt.step()
        runs.append((ops, [p.data.copy() for p in model.parameters()]))
    assert all(op.startswith("sequential(") for op in runs[0][0])
    for u, v in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(u, v)
