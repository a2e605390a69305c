"""fastnn.compiled: the compiled step gives the graph path's bits, for every layer, loss and
optimizer it takes, and hands everything else to the graph."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn.train import NonFiniteLoss, fit

D_IN, WIDTH, C = 256, 64, 5  # 16 x 256 x 64 is a split-k product; 48-row batches run parallel


def data(n=96, dtype=np.float32, regression=False, k=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D_IN)).astype(dtype)
    y = rng.standard_normal((n, k)).astype(dtype) if regression else rng.integers(0, C, n)
    return X, y


def mlp(spec, dtype="float32", seed=0, out=C):
    """A Sequential from a short spec: L (Linear), Lnb (without bias), L:act (fused activation
    argument), B (BN),
    B0 (BN, not affine), Bm (momentum None), Bt (no running statistics), an activation name,
    P (PReLU per unit), P1 (shared), D (dropout 0.3), F (Flatten), I (Identity)."""
    fnn.manual_seed(seed)
    layers, width = [], D_IN
    for tok in spec.split():
        if tok.startswith("L"):
            act = tok.split(":")[1] if ":" in tok else None
            layers.append(fnn.Linear(width, WIDTH, bias=not tok.startswith("Lnb"),
                                     activation=act, dtype=dtype))
            width = WIDTH
        elif tok in ("B", "B0", "Bm", "Bt"):
            layers.append(fnn.BatchNorm1d(width, affine=tok != "B0",
                                          momentum=None if tok == "Bm" else 0.1,
                                          track_running_stats=tok != "Bt", dtype=dtype))
        elif tok in ("P", "P1"):
            layers.append(fnn.PReLU(width if tok == "P" else 1, dtype=dtype))
        elif tok == "D":
            layers.append(fnn.Dropout(0.3))
        elif tok == "F":
            layers.append(fnn.Flatten())
        elif tok == "I":
            layers.append(fnn.Identity())
        else:
            layers.append(fnn.nn.make_activation(tok))
    layers.append(fnn.Linear(width, out, dtype=dtype))
    return fnn.Sequential(*layers)


def graph_step(model, loss_fn, opt, x, y):
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    value = loss.item()
    loss.backward()
    opt.step()
    return value


def assert_same_training(spec, make_opt, loss_fn=fnn.losses.cross_entropy, dtype="float32",
                         regression=False, batches=(48, 32, 16), steps=3, fuse=False, k=C):
    X, y = data(dtype=np.dtype(dtype), regression=regression, k=k)
    a, b = mlp(spec, dtype, out=k), mlp(spec, dtype, out=k)
    opt_a, opt_b = make_opt(a.parameters()), make_opt(b.parameters())
    step = fnn.compile_step(b, loss_fn, opt_b, fuse_optimizer=fuse)
    for _ in range(steps):
        lo = 0
        for n in batches:  # several batch sizes: a plan per size
            xb, yb = X[lo:lo + n], y[lo:lo + n]
            assert step.accepts(xb, yb)
            assert graph_step(a, loss_fn, opt_a, xb, yb) == step(xb, yb)
            lo += n
    for (name, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        np.testing.assert_array_equal(va, vb, err_msg=name)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(pa.grad, pb.grad)
    sa, sb = opt_a.flat_state_dict(), opt_b.flat_state_dict()
    assert sa["steps"] == sb["steps"]
    for name in sa["state"]:
        for u, v in zip(sa["state"][name], sb["state"][name], strict=True):
            np.testing.assert_array_equal(u, v, err_msg=name)


adam = lambda p: fnn.optim.Adam(p, lr=1e-2)  # noqa: E731


@pytest.mark.parametrize("spec", [
    "L relu L", "L:tanh L:gelu", "Lnb relu L", "Lnb B relu Lnb L", "L B relu L",
    "L B0 sigmoid L", "L Bm elu L",
    "L Bt silu L", "L B relu D L", "L P L", "L B P1 D L", "F L gelu_tanh L",
    "L I leaky_relu L", "relu L", "B L", "D L relu L", "L L",
])
@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
def test_every_layer_gives_the_graph_bits(spec, fuse):
    assert_same_training(spec, adam, fuse=fuse)


@pytest.mark.parametrize("make_opt", [
    lambda p: fnn.optim.SGD(p, lr=0.05),
    lambda p: fnn.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p: fnn.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1),
    lambda p: fnn.optim.Adam(p, lr=1e-2, amsgrad=True, weight_decay=1e-3),
    lambda p: fnn.optim.AdamW(p, lr=1e-2),
    lambda p: fnn.optim.RMSprop(p, lr=1e-3, momentum=0.5, centered=True),
    lambda p: fnn.optim.Adagrad(p, lr=1e-2, lr_decay=1e-3),
], ids=["sgd", "nesterov", "dampening", "amsgrad", "adamw", "rmsprop", "adagrad"])
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_every_optimizer_gives_the_graph_bits(make_opt, fuse):
    assert_same_training("L B relu L", make_opt, fuse=fuse)


def test_parameter_groups_with_their_own_hyperparameters():
    def make_opt(params):
        params = list(params)
        return fnn.optim.Adam([{"params": params[:2], "lr": 1e-3},
                               {"params": params[2:], "lr": 3e-2, "weight_decay": 0.1}])

    assert_same_training("L B relu L", make_opt, fuse=True)

    def weights_apart(params):  # as fastnn.sklearn groups them: a layer's parameters apart
        params = list(params)
        weights = [p for p in params if p.ndim == 2]
        rest = [p for p in params if p.ndim != 2]
        return fnn.optim.SGD([{"params": weights, "weight_decay": 1e-2}, {"params": rest}],
                             lr=0.05, momentum=0.9)

    assert_same_training("L B relu L", weights_apart, fuse=True)


@pytest.mark.parametrize("loss_fn,regression,k", [
    (fnn.losses.cross_entropy, False, C),
    (fnn.losses.CrossEntropyLoss(), False, C),
    (fnn.losses.CrossEntropyLoss(label_smoothing=0.1), False, C),  # the graph loss
    (fnn.losses.multiclass_hinge, False, C),
    (fnn.losses.mse_loss, True, 3),
    (fnn.losses.MSELoss(), True, 1),
    (fnn.losses.l1_loss, True, 2),
    (fnn.losses.huber_loss, True, 2),
], ids=["ce", "ce-module", "ce-smoothing", "hinge", "mse", "mse-module", "l1", "huber"])
def test_every_loss_gives_the_graph_bits(loss_fn, regression, k):
    assert_same_training("L B relu L", adam, loss_fn=loss_fn, regression=regression, k=k)


@pytest.mark.parametrize("fuse", [True, False])
def test_float64(fuse):
    assert_same_training("L B tanh D L", adam, dtype="float64", fuse=fuse)


def test_an_ignored_label_goes_through_the_graph_loss():
    X, y = data()
    y = y.copy()
    y[3] = -100  # cross_entropy's ignore_index
    a, b = mlp("L relu L"), mlp("L relu L")
    oa, ob = adam(a.parameters()), adam(b.parameters())
    step = fnn.compile_step(b, fnn.losses.cross_entropy, ob)
    assert graph_step(a, fnn.losses.cross_entropy, oa, X[:32], y[:32]) == step(X[:32], y[:32])
    np.testing.assert_array_equal(a[0].weight.data, b[0].weight.data)


def test_a_bad_label_raises_as_the_graph_does():
    X, y = data()
    y = y.copy()
    y[5] = C
    model = mlp("L relu L")
    step = fnn.compile_step(model, fnn.losses.cross_entropy, adam(model.parameters()))
    with pytest.raises(ValueError, match=r"labels\[5\] = 5 is not a class index"):
        step(X[:32], y[:32])


@pytest.mark.parametrize("spec", ["L relu L", "L relu D L", "L B relu L"],
                         ids=["chain", "stages", "batchnorm"])
def test_a_non_finite_loss_updates_nothing(spec):
    X, y = data()
    model = mlp(spec)
    opt = adam(model.parameters())
    step = fnn.compile_step(model, fnn.losses.cross_entropy, opt)
    step(X[32:64], y[32:64])
    before = {k: v.copy() for k, v in model.state_dict().items()}
    grads = [p.grad.copy() for p in model.parameters()]
    X = X.copy()
    X[0, 0] = np.inf
    with pytest.raises(NonFiniteLoss):
        step(X[:32], y[:32])
    # BatchNorm's running statistics and count excepted: the forward updates them, as on the
    # graph path.
    for k, v in model.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            np.testing.assert_array_equal(v, before[k], err_msg=k)
    for p, g in zip(model.parameters(), grads, strict=True):  # nor did the backward
        np.testing.assert_array_equal(p.grad, g)
    # The graph's loss is not finite either (ReLU once turned BatchNorm's NaN rows into 0s).
    a = mlp(spec)
    assert not np.isfinite(fnn.losses.cross_entropy(a(X[:32]), y[:32]).item())
    assert opt.flat_state_dict()["steps"] == [1]


@pytest.mark.parametrize("spec,chain", [
    ("L relu L", True), ("Lnb L:tanh L", True), ("L L", True), ("L B relu L", False),
    ("L relu D L", False), ("relu L", False),
])
def test_a_plain_mlp_under_cross_entropy_runs_as_one_chain(spec, chain):
    """Linear stages only, the plain cross-entropy, the update not fused: one kernel call for
    forward, loss and backward (kernels.chain); the bits tests above run both ways."""
    X, y = data()
    for loss_fn, fuse, expected in ((fnn.losses.cross_entropy, False, chain),
                                    (fnn.losses.mse_loss, False, False),
                                    (fnn.losses.cross_entropy, True, False)):
        model = mlp(spec, out=1 if loss_fn is fnn.losses.mse_loss else C)
        step = fnn.compile_step(model, loss_fn, adam(model.parameters()), fuse_optimizer=fuse)
        target = X[:32, :1] if loss_fn is fnn.losses.mse_loss else y[:32]
        step(X[:32], target)
        assert (step._plans[32][2] is not None) == expected


def test_the_chain_loaded_from_the_kernel_cache_runs_in_a_fresh_process():
    """The first chain call of a process that has started no thread pool, from a warm cache
    (it crashed: the parallel runtime's symbols are bound only when the pool starts)."""
    import subprocess
    import sys

    code = ("import numpy as np, fastnn as fnn\n"
            "m = fnn.Sequential(fnn.Linear(3, 4, dtype='float32'), fnn.ReLU(),\n"
            "                   fnn.Linear(4, 5, dtype='float32'))\n"
            "s = fnn.compile_step(m, fnn.losses.cross_entropy, fnn.optim.Adam(m.parameters()),\n"
            "                     adaptive_threads=False)\n"
            "x = np.ones((8, 3), np.float32)\n"
            "print(s.run(x, np.arange(8) % 5)[0])\n")
    for _ in range(2):  # the first may compile the chain; the second loads it from the cache
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert np.isfinite(float(done.stdout))


@pytest.mark.parametrize("make,why", [
    (lambda: fnn.Sequential(fnn.Linear(D_IN, 4), fnn.LayerNorm(4)), "LayerNorm"),
    (lambda: fnn.Linear(D_IN, 4), "not a fastnn Sequential"),
    # (an activation fused into the Linear before it computes in the Linear's dtype)
    (lambda: fnn.Sequential(fnn.Linear(D_IN, 4), fnn.Dropout(0.2, dtype="float64"),
                            fnn.Linear(4, 2)), "Dropout computes in float64"),
])
def test_what_does_not_compile_says_why(make, why):
    model = make()
    with pytest.raises(fnn.NotCompilable, match=why):
        fnn.compile_step(model, fnn.losses.cross_entropy, adam(model.parameters()))


def test_frozen_parameters_and_a_partial_optimizer_do_not_compile():
    model = mlp("L relu L")
    with pytest.raises(fnn.NotCompilable, match="exactly the model's parameters"):
        fnn.compile_step(model, fnn.losses.cross_entropy, adam(model[0].parameters()))
    model[0].bias.requires_grad_(False)
    with pytest.raises(fnn.NotCompilable, match="frozen"):
        fnn.compile_step(model, fnn.losses.cross_entropy, adam(model.parameters()))


def test_batches_the_plan_does_not_take_run_on_the_graph_with_the_same_result():
    X, y = data()
    a, b = mlp("L B relu L"), mlp("L B relu L")
    oa, ob = adam(a.parameters()), adam(b.parameters())
    step = fnn.compile_step(b, fnn.losses.cross_entropy, ob)
    for xb in (X[:32].astype(np.float64), np.asfortranarray(X[:32]), fnn.Tensor(X[:32]),
               X[:32, ::1].tolist()):
        assert graph_step(a, fnn.losses.cross_entropy, oa, xb, y[:32]) == step(xb, y[:32])
    np.testing.assert_array_equal(a[0].weight.data, b[0].weight.data)
    with pytest.raises(ValueError, match="more than 1 sample"):
        step(X[:1], y[:1])  # the graph's message
    with pytest.raises(ValueError, match="empty input"):
        fnn.compile_step(a, fnn.losses.cross_entropy, oa)(X[:0], y[:0])


def test_a_weight_assigned_by_the_user_is_used():
    X, y = data()
    a, b = mlp("L relu L"), mlp("L relu L")
    oa, ob = adam(a.parameters()), adam(b.parameters())
    step = fnn.compile_step(b, fnn.losses.cross_entropy, ob)
    step(X[:32], y[:32])
    graph_step(a, fnn.losses.cross_entropy, oa, X[:32], y[:32])
    w = np.full_like(a[0].weight.data, 0.01)
    a[0].weight.data = w.copy()
    b[0].weight.data = w.copy()
    assert graph_step(a, fnn.losses.cross_entropy, oa, X[:32], y[:32]) == step(X[:32], y[:32])
    np.testing.assert_array_equal(a[0].weight.data, b[0].weight.data)


def test_a_loaded_optimizer_state_is_used():
    X, y = data()
    a, b = mlp("L relu L"), mlp("L relu L")
    oa, ob = adam(a.parameters()), adam(b.parameters())
    step = fnn.compile_step(b, fnn.losses.cross_entropy, ob)
    for _ in range(2):
        graph_step(a, fnn.losses.cross_entropy, oa, X[:32], y[:32])
        step(X[:32], y[:32])
    ob.load_state_dict(oa.state_dict())  # replaces the state arrays
    b.load_state_dict(a.state_dict())
    assert graph_step(a, fnn.losses.cross_entropy, oa, X[:32], y[:32]) == step(X[:32], y[:32])
    np.testing.assert_array_equal(a[0].weight.data, b[0].weight.data)


@pytest.mark.parametrize("spec", ["L B relu L", "L relu L"])
def test_same_bits_on_one_and_two_threads(spec):
    X, y = data()
    results = []
    for threads in (1, 2):
        fnn.set_num_threads(threads)
        try:
            model = mlp(spec)
            step = fnn.compile_step(model, fnn.losses.cross_entropy, adam(model.parameters()))
            for _ in range(3):
                step(X[:48], y[:48])
            results.append(model[0].weight.data.copy())
        finally:
            fnn.set_num_threads(2)
    np.testing.assert_array_equal(*results)


@pytest.mark.parametrize("spec", ["L B relu D L", "L P L"])
def test_fit_compiles_and_gives_the_graphs_history(spec):
    X, y = data(n=200)
    runs = []
    for compiled in (True, False):
        model = mlp(spec)
        opt = adam(model.parameters())
        step = fnn.train.LocalStep(model, opt, compiled=compiled)
        assert (step.prepare(fnn.losses.cross_entropy) is None) == compiled
        hist = fit(model, fnn.losses.cross_entropy, opt, (X, y), val=(X[:50], y[:50]),
                   epochs=2, batch_size=64, quiet=True, step=step)
        runs.append((hist, model.state_dict()))
    (h1, s1), (h2, s2) = runs
    for r1, r2 in zip(h1, h2, strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert r1[key] == r2[key], key
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k])


def test_options_turned_on_between_steps_take_effect():
    X, y = data()
    a, b = mlp("L relu L"), mlp("L relu L")
    oa, ob = fnn.optim.SGD(a.parameters(), lr=0.05), fnn.optim.SGD(b.parameters(), lr=0.05)
    step = fnn.compile_step(b, fnn.losses.cross_entropy, ob)
    for i in range(4):
        if i == 2:  # momentum needs a state buffer that did not exist
            oa.param_groups[0]["momentum"] = ob.param_groups[0]["momentum"] = 0.9
        assert graph_step(a, fnn.losses.cross_entropy, oa, X[:32], y[:32]) == \
            step(X[:32], y[:32])
    np.testing.assert_array_equal(a[0].weight.data, b[0].weight.data)


def test_many_batch_sizes_keep_a_few_plans():
    # Tiny batches: (3, 5) logits and their gradient are 60-byte arrays that malloc may place
    # side by side; this test failed in a quarter of runs while the kernels were compiled
    # with LLVM's reassociation (see tests/kernels/test_jit.py).
    from fastnn import compiled

    X, y = data()
    a, b = mlp("L B relu L"), mlp("L B relu L")
    oa, ob = adam(a.parameters()), adam(b.parameters())
    step = fnn.compile_step(b, fnn.losses.cross_entropy, ob)
    for n in range(2, 2 + 3 * compiled._MAX_PLANS):
        assert graph_step(a, fnn.losses.cross_entropy, oa, X[:n], y[:n]) == step(X[:n], y[:n])
        assert len(step._plans) <= compiled._MAX_PLANS
    np.testing.assert_array_equal(a[0].weight.data, b[0].weight.data)


def test_plans_are_capped():
    from fastnn import compiled

    X, y = data()
    model = mlp("L B relu L")
    step = fnn.compile_step(model, fnn.losses.cross_entropy, adam(model.parameters()))
    for n in range(2, 2 + 3 * compiled._MAX_PLANS):
        assert np.isfinite(step(X[:n], y[:n]))
        assert len(step._plans) <= compiled._MAX_PLANS
    assert sorted(step._plans) == list(range(2 + 2 * compiled._MAX_PLANS,
                                              2 + 3 * compiled._MAX_PLANS))


def test_a_loaders_tensors_run_on_the_plan_and_a_tensor_needing_grad_on_the_graph():
    # __call__ and accepts() unwrap and test a batch in one place (CompiledStep._batch)
    X, y = data()
    a, b = mlp("L relu L"), mlp("L relu L")
    oa, ob = adam(a.parameters()), adam(b.parameters())
    step = fnn.compile_step(b, fnn.losses.cross_entropy, ob)
    xt = fnn.Tensor(X[:32])
    assert step.accepts(xt, y[:32])
    assert graph_step(a, fnn.losses.cross_entropy, oa, X[:32], y[:32]) == step(xt, y[:32])
    assert list(step._plans) == [32]  # it ran on the plan
    xg = fnn.Tensor(X[:16], requires_grad=True)
    assert not step.accepts(xg, y[:16])
    assert graph_step(a, fnn.losses.cross_entropy, oa, X[:16], y[:16]) == step(xg, y[:16])
    assert list(step._plans) == [32] and xg.grad is not None  # the graph ran it
    np.testing.assert_array_equal(a[0].weight.data, b[0].weight.data)
