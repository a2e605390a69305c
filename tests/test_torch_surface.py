"""The PyTorch surface (tensor methods, functions, fastnn.nn.functional, losses with their
options, new modules) against PyTorch in float64: values and gradients, with broadcasting,
``dim=`` variants, ``keepdim``, negative dims and reductions over several dims.

Skipped when torch is not installed; ``tests/test_graph.py`` and ``tests/test_losses.py``
check the same operations with ``fnn.gradcheck`` and NumPy formulas.
"""

import numpy as np
import pytest

import fastnn as fnn
import fastnn.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _leaves(arrays, grad):
    ours = [fnn.Tensor(a, requires_grad=True) if a.dtype.kind == "f" and i in grad
            else fnn.from_numpy(a) for i, a in enumerate(arrays)]
    theirs = [torch.tensor(a, requires_grad=a.dtype.kind == "f" and i in grad)
              for i, a in enumerate(arrays)]
    return ours, theirs


def _outputs(out):
    return list(out) if isinstance(out, tuple) else [out]


def check(ours_fn, torch_fn, *arrays, rtol=1e-12, atol=1e-13, seed=1, grad=None):
    """ours_fn(*fastnn tensors) against torch_fn(*torch tensors): every output's values, then
    the gradient of sum(out * g) (random g) for every floating input (or those in ``grad``)."""
    ours_in, torch_in = _leaves(arrays, range(len(arrays)) if grad is None else grad)
    ours_out, torch_out = _outputs(ours_fn(*ours_in)), _outputs(torch_fn(*torch_in))
    assert len(ours_out) == len(torch_out)
    scalar = fnn.Tensor(np.zeros((), np.float64))
    scalar_t = torch.zeros((), dtype=torch.float64)
    for k, (o, t) in enumerate(zip(ours_out, torch_out, strict=True)):
        tv = t.detach().numpy()
        assert o.shape == tuple(tv.shape), (k, o.shape, tv.shape)
        if tv.dtype.kind == "f":
            np.testing.assert_allclose(o.data, tv, rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(o.data, tv)
            assert o.dtype.kind == tv.dtype.kind, (o.dtype, tv.dtype)
        if t.requires_grad:
            g = rand(*tv.shape, seed=seed + k)
            scalar = scalar + (o * g).sum()
            scalar_t = scalar_t + (t * torch.from_numpy(g)).sum()
    if not scalar_t.requires_grad:
        return
    scalar.backward()
    scalar_t.backward()
    for i, (o, t) in enumerate(zip(ours_in, torch_in, strict=True)):
        if t.requires_grad:
            expect = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
            got = np.zeros(o.shape) if o.grad is None else o.grad
            np.testing.assert_allclose(got, expect, rtol=rtol, atol=atol, err_msg=f"input {i}")


# ------------------------------------------------------------ elementwise and binary
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)),
                                    ((), (3,))], ids=str)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                "matmul_like", "where", "remainder"])
def test_binary_ops_broadcast(shapes, op):
    a, b = rand(*shapes[0]), rand(*shapes[1], seed=2)
    if op == "pow":
        a = np.abs(a) + 0.5
    if op in ("div", "remainder"):
        b = np.sign(b) * (np.abs(b) + 0.5)
    if op == "matmul_like":  # the product of the broadcast pair with itself, transposed
        check(lambda x, y: (x * y) @ (x * y).transpose(-1, -2) if (x * y).ndim > 1
              else (x * y) @ (x * y), lambda x, y: (x * y) @ (x * y).transpose(-1, -2)
              if (x * y).dim() > 1 else (x * y) @ (x * y), a, b)
        return
    fns = {
        "add": (lambda x, y: x + y, lambda x, y: x + y),
        "sub": (lambda x, y: x - y, lambda x, y: x - y),
        "mul": (lambda x, y: x * y, lambda x, y: x * y),
        "div": (lambda x, y: x / y, lambda x, y: x / y),
        "pow": (lambda x, y: x**y, lambda x, y: x**y),
        "maximum": (fnn.maximum, torch.maximum),
        "minimum": (fnn.minimum, torch.minimum),
        "where": (lambda x, y: fnn.where(x > y, x, y * 2),
                  lambda x, y: torch.where(x > y, x, y * 2)),
        "remainder": (lambda x, y: x % y, lambda x, y: x % y),
    }
    check(*fns[op], a, b)


def test_scalars_on_either_side_and_reflected_operators():
    a = rand(3, 2)
    check(lambda x: (2.0 - x) * 3 / (1.5 + x**2) + 2 ** x - 1 / (x + 4) + abs(x) ** 1.5,
          lambda x: (2.0 - x) * 3 / (1.5 + x**2) + 2 ** x - 1 / (x + 4) + abs(x) ** 1.5, a)
    check(lambda x: x ** 0 + x ** 1 + x ** -2.0 + (-x),
          lambda x: x ** 0 + x ** 1 + x ** -2.0 + (-x), a + 3.0)


@pytest.mark.parametrize("name", ["abs", "sqrt", "exp", "log", "sigmoid", "tanh", "relu",
                                  "clamp", "clamp_min", "clamp_max", "softplus", "square_pow"])
def test_unary_ops(name):
    a = rand(4, 5) * 2
    a[0, 0] = 0.0  # abs at 0: gradient 0
    if name in ("sqrt", "log"):
        a = np.abs(a) + 0.1
    fns = {
        "abs": (lambda x: x.abs(), lambda x: x.abs()),
        "sqrt": (lambda x: x.sqrt(), lambda x: x.sqrt()),
        "exp": (lambda x: x.exp(), lambda x: x.exp()),
        "log": (lambda x: fnn.log(x), lambda x: torch.log(x)),
        "sigmoid": (lambda x: x.sigmoid(), lambda x: x.sigmoid()),
        "tanh": (lambda x: x.tanh(), lambda x: x.tanh()),
        "relu": (lambda x: x.relu(), lambda x: x.relu()),
        "clamp": (lambda x: x.clamp(-0.5, 0.7), lambda x: x.clamp(-0.5, 0.7)),
        "clamp_min": (lambda x: fnn.clamp(x, min=0.2), lambda x: torch.clamp(x, min=0.2)),
        "clamp_max": (lambda x: x.clip(max=0.1), lambda x: x.clip(max=0.1)),
        "softplus": (lambda x: F.softplus(x * 10, beta=2, threshold=5),
                     lambda x: TF.softplus(x * 10, beta=2, threshold=5)),
        "square_pow": (lambda x: x.pow(2), lambda x: x.pow(2)),
    }
    check(*fns[name], a)


def test_clamp_with_tensor_bounds():
    x, lo, hi = rand(4, 3), rand(3, seed=2) - 0.5, rand(4, 1, seed=3) + 0.5
    hi[0, 0] = -1.0  # max below min somewhere: PyTorch's rule decides
    check(lambda x, lo, hi: fnn.clamp(x, lo, hi), lambda x, lo, hi: torch.clamp(x, lo, hi),
          x, lo, hi)


# -------------------------------------------------------------------- reductions
DIMS = [None, 0, 1, -1, (0, 2), (-1, 0)]


@pytest.mark.filterwarnings("ignore:.*degrees of freedom")  # std_c2 over 2 values: n - 2 = 0
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dim", DIMS, ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "var0", "std_c2", "amax",
                                  "amin", "logsumexp"])
def test_reductions(name, dim, keepdim):
    a = rand(3, 4, 2)
    a[1, 2, 1] = a[1, 1, 1]  # a tie for amax/amin to share
    if name == "logsumexp" and dim is None:
        return  # torch.logsumexp needs a dim
    ours_kw = {"keepdim": keepdim, "dim": dim}
    # torch spells "all dimensions" as the tuple of them where we also take dim=None
    theirs_kw = {"keepdim": keepdim, "dim": tuple(range(3)) if dim is None else dim}
    method, extra = {"var0": ("var", {"unbiased": False}),
                     "std_c2": ("std", {"correction": 2})}.get(name, (name, {}))
    check(lambda x: getattr(x, method)(**ours_kw, **extra),
          lambda x: getattr(x, method)(**theirs_kw, **extra), a)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_along_a_dim_return_values_and_indices(dim, keepdim):
    a = rand(3, 4)
    a[2, 1] = a[2, 3] = a.max() + 1  # a tie: the first index, as PyTorch
    check(lambda x: tuple(x.max(dim, keepdim)), lambda x: tuple(x.max(dim, keepdim)), a)
    check(lambda x: tuple(x.min(dim=dim, keepdim=keepdim)),
          lambda x: tuple(x.min(dim=dim, keepdim=keepdim)), a)
    check(lambda x: x.argmax(dim, keepdim), lambda x: x.argmax(dim, keepdim), a)
    check(lambda x: fnn.argmin(x, dim=dim), lambda x: torch.argmin(x, dim=dim), a)
    values, indices = fnn.Tensor(a).max(dim=dim)
    assert fnn.Tensor(a).max(dim=dim).values is not None and indices.dtype == np.int64


def test_full_max_min_share_the_gradient_of_ties():
    a = np.array([[1.0, 3.0], [3.0, -2.0]])
    check(lambda x: x.max(), lambda x: x.max(), a)
    check(lambda x: fnn.min(x), lambda x: torch.min(x), a)
    check(lambda x: x.argmax(), lambda x: x.argmax(), a)
    check(lambda x: x.max(x * 0.5 + 1), lambda x: x.max(x * 0.5 + 1), a)


def test_sort_topk_and_softmax_family():
    a = rand(3, 5)
    check(lambda x: tuple(x.sort(dim=1, descending=True)),
          lambda x: tuple(x.sort(dim=1, descending=True)), a)
    check(lambda x: tuple(x.topk(2, dim=0)), lambda x: tuple(x.topk(2, dim=0)), a)
    for d in (0, 1, -1):
        check(lambda x, d=d: x.softmax(d), lambda x, d=d: x.softmax(d), a)
        check(lambda x, d=d: F.log_softmax(x, dim=d), lambda x, d=d: TF.log_softmax(x, dim=d), a)
        check(lambda x, d=d: fnn.softmax(x * 30, d), lambda x, d=d: torch.softmax(x * 30, d), a)


# ---------------------------------------------------------------------- shapes
def test_shape_methods():
    a = rand(2, 3, 4)
    cases = [
        (lambda x: x.view(6, 4), lambda x: x.view(6, 4)),
        (lambda x: x.view(-1), lambda x: x.view(-1)),
        (lambda x: x.flatten(), lambda x: x.flatten()),
        (lambda x: x.flatten(1), lambda x: x.flatten(1)),
        (lambda x: x.flatten(0, 1), lambda x: x.flatten(0, 1)),
        (lambda x: x.unsqueeze(0).unsqueeze(-1), lambda x: x.unsqueeze(0).unsqueeze(-1)),
        (lambda x: x[:, :1].squeeze(), lambda x: x[:, :1].squeeze()),
        (lambda x: x[:, :1].squeeze(1), lambda x: x[:, :1].squeeze(1)),
        (lambda x: x.squeeze(0), lambda x: x.squeeze(0)),  # size 2: unchanged
        (lambda x: x.transpose(0, 2), lambda x: x.transpose(0, 2)),
        (lambda x: x.transpose(-1, 1), lambda x: x.transpose(-1, 1)),
        (lambda x: x[0].t(), lambda x: x[0].t()),
        (lambda x: x.permute(2, 0, 1), lambda x: x.permute(2, 0, 1)),
        (lambda x: x.permute(-1, 0, 1), lambda x: x.permute(-1, 0, 1)),
        (lambda x: x.mT, lambda x: x.mT),
        (lambda x: x[:, :1].expand(2, 3, 4), lambda x: x[:, :1].expand(2, 3, 4)),
        (lambda x: x[0].expand(5, -1, -1), lambda x: x[0].expand(5, -1, -1)),
        (lambda x: x.repeat(2, 1, 3), lambda x: x.repeat(2, 1, 3)),
        (lambda x: x[0].repeat(2, 1, 2), lambda x: x[0].repeat(2, 1, 2)),
        (lambda x: x.split(2, dim=2), lambda x: x.split(2, dim=2)),
        (lambda x: x.split([1, 2], dim=1), lambda x: x.split([1, 2], dim=1)),
        (lambda x: x.chunk(2, dim=-1), lambda x: x.chunk(2, dim=-1)),
        (lambda x: x.reshape(4, -1).clone(), lambda x: x.reshape(4, -1).clone()),
        (lambda x: x.unflatten(2, (2, 2)), lambda x: x.unflatten(2, (2, 2))),
        (lambda x: x[x > 0], lambda x: x[x > 0]),
        (lambda x: x.masked_fill(x < 0, 0.5), lambda x: x.masked_fill(x < 0, 0.5)),
    ]
    for ours, theirs in cases:
        check(ours, theirs, a)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_and_stack(dim):
    a, b = rand(2, 3), rand(2, 3, seed=2)
    check(lambda x, y: fnn.cat([x, y * 2, x], dim), lambda x, y: torch.cat([x, y * 2, x], dim),
          a, b)
    check(lambda x, y: fnn.stack((x, y), dim=dim), lambda x, y: torch.stack((x, y), dim=dim),
          a, b)


def test_matmul_mm_and_indices():
    a, b, v = rand(2, 3, 4), rand(4, 5, seed=2), rand(4, seed=3)
    check(lambda x, y: x.matmul(y), lambda x, y: x.matmul(y), a, b)
    check(lambda x, y: fnn.mm(x[0], y), lambda x, y: torch.mm(x[0], y), a, b)
    check(lambda x, y: x @ y, lambda x, y: x @ y, a, v)
    idx = np.array([2, 0, 2])
    check(lambda x, i: x[0][i], lambda x, i: x[0][i], a, idx)


# ------------------------------------------------------- comparisons and integers
def test_comparisons_are_bool_and_usable_as_in_pytorch():
    a, b = rand(3, 4), rand(4, seed=2)
    b[1] = a[0, 1]
    for ours, theirs in ((lambda x, y: x == y, lambda x, y: x == y),
                         (lambda x, y: x != y, lambda x, y: x != y),
                         (lambda x, y: x < y, lambda x, y: x < y),
                         (lambda x, y: x <= y, lambda x, y: x <= y),
                         (lambda x, y: x > 0.1, lambda x, y: x > 0.1),
                         (lambda x, y: 0.0 >= x, lambda x, y: 0.0 >= x),
                         (lambda x, y: (x > 0).float() * x, lambda x, y: (x > 0).float() * x),
                         (lambda x, y: (x > 0).sum(), lambda x, y: (x > 0).sum()),
                         (lambda x, y: (x > 0).sum(dim=1), lambda x, y: (x > 0).sum(dim=1)),
                         (lambda x, y: x * (x > y), lambda x, y: x * (x > y)),
                         (lambda x, y: (x > 0) & (y < 0), lambda x, y: (x > 0) & (y < 0)),
                         (lambda x, y: (x > 0) | ~(y < 0), lambda x, y: (x > 0) | ~(y < 0)),
                         (lambda x, y: (x > 0).any(), lambda x, y: (x > 0).any()),
                         (lambda x, y: (x > -5).all(dim=0), lambda x, y: (x > -5).all(dim=0)),
                         (lambda x, y: x.argmax(1) == 2, lambda x, y: x.argmax(1) == 2),
                         (lambda x, y: x.argmax(1).float().mean(),
                          lambda x, y: x.argmax(1).float().mean()),
                         (lambda x, y: x.argmax(-1) + 1.5, lambda x, y: x.argmax(-1) + 1.5),
                         (lambda x, y: x / (x.argmax(1, keepdim=True) + 1),
                          lambda x, y: x / (x.argmax(1, keepdim=True) + 1))):
        check(ours, theirs, a, b)


def test_integer_tensors_and_factories_match_torch_dtypes():
    pairs = [(fnn.tensor([1, 2]), torch.tensor([1, 2])),
             (fnn.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])),
             (fnn.tensor([True, False]), torch.tensor([True, False])),
             (fnn.arange(5), torch.arange(5)),
             (fnn.arange(0, 1, 0.25), torch.arange(0, 1, 0.25)),
             (fnn.zeros(2, 3), torch.zeros(2, 3)),
             (fnn.ones((2,), dtype=fnn.int64), torch.ones((2,), dtype=torch.int64)),
             (fnn.full((2, 2), 7), torch.full((2, 2), 7)),
             (fnn.eye(3), torch.eye(3)),
             (fnn.linspace(0, 1, 5), torch.linspace(0, 1, 5)),
             (fnn.tensor([1, 2]) / 2, torch.tensor([1, 2]) / 2),
             (fnn.tensor([7, -7]) // 2, torch.tensor([7, -7]) // 2),
             (fnn.tensor([3, 4]).float(), torch.tensor([3, 4]).float()),
             (fnn.tensor([0.0, 2.5]).long(), torch.tensor([0.0, 2.5]).long()),
             (fnn.tensor([0.0, 2.5]).bool(), torch.tensor([0.0, 2.5]).bool())]
    for ours, theirs in pairs:
        np.testing.assert_array_equal(ours.data, theirs.numpy())
        assert ours.dtype == np.dtype(str(theirs.dtype).replace("torch.", "")), (ours, theirs)


def test_size_numel_dim_and_conversions():
    x, xt = fnn.zeros(2, 3, 4), torch.zeros(2, 3, 4)
    assert x.size() == tuple(xt.size()) and x.size(0) == xt.size(0) and x.size(-1) == 4
    assert x.numel() == xt.numel() and x.dim() == xt.dim() and len(x) == len(xt)
    s = fnn.tensor(2.5)
    assert float(s) == 2.5 and int(s) == 2 and bool(s) and s.tolist() == 2.5
    assert fnn.tensor([[1, 2]]).tolist() == torch.tensor([[1, 2]]).tolist()


@pytest.mark.filterwarnings("ignore:.*degrees of freedom")
def test_var_std_edge_cases_match_torch():
    one = np.array([3.0])
    for unbiased in (True, False):
        ours = fnn.Tensor(one).var(unbiased=unbiased).item()
        theirs = torch.tensor(one).var(unbiased=unbiased).item()
        assert (np.isnan(ours) and np.isnan(theirs)) or ours == theirs
    const = np.ones((3, 2))
    check(lambda x: x.std(0), lambda x: x.std(0), const)  # std 0: gradient 0, not NaN


check_input = check


# ------------------------------------------------------------ the functional API
def test_functional_activations_and_linear_match_torch():
    a = rand(4, 5) * 2
    for ours, theirs in ((F.relu, TF.relu), (F.gelu, TF.gelu), (F.silu, TF.silu),
                         (F.elu, TF.elu), (F.leaky_relu, TF.leaky_relu),
                         (F.sigmoid, torch.sigmoid), (F.tanh, torch.tanh),
                         (lambda x: F.gelu(x, approximate="tanh"),
                          lambda x: TF.gelu(x, approximate="tanh")),
                         (lambda x: F.elu(x, alpha=0.3), lambda x: TF.elu(x, alpha=0.3)),
                         (lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
                         (F.softplus, TF.softplus)):
        check(ours, theirs, a)
    w, b = rand(5, 3, seed=2), rand(3, seed=3)
    # fastnn's weight is (in, out); torch's F.linear takes (out, in).
    check(lambda x, w, b: F.linear(x, w, b), lambda x, w, b: TF.linear(x, w.T, b), a, w, b)
    check(lambda x, w: F.linear(x, w), lambda x, w: TF.linear(x, w.T), a, w)


def test_functional_dropout_off_and_on():
    a = rand(50, 40)
    x = fnn.Tensor(a)
    assert F.dropout(x, 0.5, training=False) is x
    fnn.manual_seed(0)
    y = F.dropout(x, 0.3).data
    kept = y != 0
    np.testing.assert_allclose(y[kept], a[kept] / 0.7, rtol=1e-12)
    assert 0.6 < kept.mean() < 0.8


@pytest.mark.parametrize("red", ["mean", "sum", "none"])
def test_losses_match_torch_with_every_option(red):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((9, 5)) * 3
    y = rng.integers(0, 5, 9)
    y[2] = -100
    y_ignore = np.where(y < 0, 0, y)
    w = rng.uniform(0.2, 2, 5)
    p = rng.uniform(0, 1, (9, 5))
    p /= p.sum(1, keepdims=True)
    z4, y4 = rng.standard_normal((3, 5, 2, 4)), rng.integers(0, 5, (3, 2, 4))
    t = rng.standard_normal((9, 5))
    tb = rng.uniform(0, 1, (9, 5))
    pw, wb = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, (9, 1))
    pr = rng.uniform(0.01, 0.99, (9, 5))

    def check(*args, **kw):  # the losses' gradients reach the input, not the target
        return check_input(*args, grad=(0,), **kw)

    wt, pwt, wbt = torch.from_numpy(w), torch.from_numpy(pw), torch.from_numpy(wb)
    check(lambda x, y: F.cross_entropy(x, y, weight=w, ignore_index=3, reduction=red,
                                       label_smoothing=0.2),
          lambda x, y: TF.cross_entropy(x, y, weight=wt, ignore_index=3, reduction=red,
                                        label_smoothing=0.2), z, y_ignore)
    check(lambda x, y: fnn.CrossEntropyLoss(reduction=red)(x, y),
          lambda x, y: torch.nn.CrossEntropyLoss(reduction=red)(x, y), z, y)
    check(lambda x, y: F.nll_loss(F.log_softmax(x, 1), y, weight=w, reduction=red),
          lambda x, y: TF.nll_loss(TF.log_softmax(x, 1), y, weight=wt, reduction=red), z, y)
    check(lambda x, t: F.cross_entropy(x, t, weight=w, reduction=red, label_smoothing=0.1),
          lambda x, t: TF.cross_entropy(x, t, weight=wt, reduction=red,
                                        label_smoothing=0.1), z, p)
    check(lambda x, y: F.cross_entropy(x, y, reduction=red, label_smoothing=0.3),
          lambda x, y: TF.cross_entropy(x, y, reduction=red, label_smoothing=0.3), z4, y4)
    for ours, theirs, opts in ((F.mse_loss, TF.mse_loss, {}), (F.l1_loss, TF.l1_loss, {}),
                               (F.huber_loss, TF.huber_loss, {"delta": 0.4}),
                               (F.smooth_l1_loss, TF.smooth_l1_loss, {"beta": 0.4}),
                               (F.smooth_l1_loss, TF.smooth_l1_loss, {"beta": 0.0})):
        check(lambda x, t, o=ours, opts=opts: o(x, t, reduction=red, **opts),
              lambda x, t, th=theirs, opts=opts: th(x, t, reduction=red, **opts), z, t)
        check(lambda x, t, o=ours: o(x[:, 0], t[:, 0], reduction=red),  # (N,) targets
              lambda x, t, th=theirs: th(x[:, 0], t[:, 0], reduction=red), z, t)
    check(lambda x, t: F.binary_cross_entropy_with_logits(x, t, weight=wb, reduction=red,
                                                          pos_weight=pw),
          lambda x, t: TF.binary_cross_entropy_with_logits(x, t, weight=wbt, reduction=red,
                                                           pos_weight=pwt), z, tb)
    check(lambda x, t: F.binary_cross_entropy(x, t, weight=wb, reduction=red),
          lambda x, t: TF.binary_cross_entropy(x, t, weight=wbt, reduction=red), pr, tb,
          rtol=1e-11)


def test_cross_entropy_weight_ignore_index_and_label_smoothing_together():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((12, 4)) * 2
    y = rng.integers(0, 4, 12)
    y[[1, 5, 6]] = -100
    w = np.array([0.3, 1.0, 2.5, 0.7])
    check(lambda x, y: fnn.CrossEntropyLoss(weight=w, ignore_index=-100, label_smoothing=0.15)(
              x, y),
          lambda x, y: torch.nn.CrossEntropyLoss(weight=torch.from_numpy(w), ignore_index=-100,
                                                 label_smoothing=0.15)(x, y), z, y)


# ----------------------------------------------------------------- the new modules
@pytest.mark.parametrize("normalized, affine", [(5, True), ((3, 5), True), (5, False)])
def test_layernorm_matches_torch(normalized, affine):
    rng = np.random.default_rng(4)
    ours = fnn.LayerNorm(normalized, elementwise_affine=affine, dtype=np.float64)
    ref = torch.nn.LayerNorm(normalized, elementwise_affine=affine).double()
    if affine:
        ours.weight.data[...] = rng.standard_normal(ours.weight.shape)
        ours.bias.data[...] = rng.standard_normal(ours.bias.shape)
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(ours.weight.data))
            ref.bias.copy_(torch.from_numpy(ours.bias.data))
    x = rng.standard_normal((4, 3, 5)) * 3 + 2
    check(lambda v: ours(v), lambda v: ref(v), x)
    if affine:
        xt = fnn.Tensor(x, requires_grad=True)
        g = rand(4, 3, 5, seed=9)
        ours(xt).backward(g)
        ref(torch.tensor(x)).backward(torch.from_numpy(g))
        np.testing.assert_allclose(ours.weight.grad, ref.weight.grad.numpy(), rtol=1e-12,
                                   atol=1e-13)
        np.testing.assert_allclose(ours.bias.grad, ref.bias.grad.numpy(), rtol=1e-12)
        w, b = ours.weight.data, ours.bias.data
        check(lambda v, w, b: F.layer_norm(v, ours.normalized_shape, w, b, eps=1e-3),
              lambda v, w, b: TF.layer_norm(v, ours.normalized_shape, w, b, eps=1e-3), x, w, b)


def test_layernorm_with_fused_activation_matches_torch():
    ours = fnn.Sequential(fnn.LayerNorm(6, dtype=np.float64), fnn.SiLU())
    ref = torch.nn.Sequential(torch.nn.LayerNorm(6).double(), torch.nn.SiLU())
    check(lambda v: ours(v), lambda v: ref(v), rand(5, 6, seed=5))


def test_embedding_matches_torch():
    ours = fnn.Embedding(7, 4, padding_idx=3, dtype=np.float64)
    ref = torch.nn.Embedding(7, 4, padding_idx=3).double()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(ours.weight.data))
    idx = np.array([[0, 3, 6, 6], [1, 1, 3, 2]])
    y, yr = ours(idx), ref(torch.from_numpy(idx))
    np.testing.assert_array_equal(y.data, yr.detach().numpy())
    g = rand(2, 4, 4, seed=6)
    y.backward(g)
    yr.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ours.weight.grad, ref.weight.grad.numpy(), rtol=1e-13)
    w = rand(7, 4, seed=7)
    check(lambda w: F.embedding(fnn.from_numpy(idx), w, padding_idx=1),
          lambda w: TF.embedding(torch.from_numpy(idx), w, padding_idx=1), w)


def test_softmax_modules_and_containers_match_torch():
    x = rand(3, 4, seed=8)
    for ours, ref in ((fnn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
                      (fnn.LogSoftmax(dim=0), torch.nn.LogSoftmax(dim=0)),
                      (fnn.Softplus(beta=3, threshold=2), torch.nn.Softplus(beta=3, threshold=2))):
        check(lambda v, m=ours: m(v), lambda v, m=ref: m(v), x)
    ours = fnn.ModuleList([fnn.Linear(4, 4, dtype=np.float64) for _ in range(2)])
    ref = torch.nn.ModuleList([torch.nn.Linear(4, 4).double() for _ in range(2)])
    with torch.no_grad():
        for a, b in zip(ours, ref, strict=True):
            b.weight.copy_(torch.from_numpy(a.weight.data.T.copy()))
            b.bias.copy_(torch.from_numpy(a.bias.data))
    check(lambda v: ours[1](ours[0](v).tanh()), lambda v: ref[1](ref[0](v).tanh()), x)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    ours_d = fnn.ModuleDict({"a": fnn.Linear(2, 2)})
    ref_d = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2)})
    assert list(ours_d.state_dict()) == list(ref_d.state_dict())


@pytest.mark.parametrize("name, fn", [
    ("square", lambda x: x.square()),
    ("reciprocal", lambda x: (x.abs() + 0.5).reciprocal()),
    ("rsqrt", lambda x: (x.abs() + 0.5).rsqrt()),
    ("log1p", lambda x: x.abs().log1p()),
    ("expm1", lambda x: x.expm1()),
    ("sin_cos", lambda x: x.sin() + x.cos()),
    ("sign_round_floor_ceil", lambda x: x.sign() + (x * 3).round() + x.floor() + x.ceil() + x),
    ("cumsum", lambda x: x.cumsum(1) + x.cumsum(dim=-2)),
    ("prod", lambda x: x.prod()),
    ("prod_dim", lambda x: x.prod(dim=1, keepdim=True)),
    ("norm", lambda x: x.norm()),
    ("norm_p1_dim", lambda x: x.norm(p=1, dim=0)),
    ("norm_p3", lambda x: x.norm(p=3, dim=1, keepdim=True)),
    ("norm_inf", lambda x: x.norm(p=float("inf"))),
    ("narrow", lambda x: x.narrow(1, 1, 2)),
])
def test_more_elementwise_and_reductions(name, fn):
    a = rand(3, 4, seed=11)
    a[0, 1] = 0.0
    check(fn, fn, a)


def test_gather_index_select_nonzero():
    a = rand(3, 4, seed=12)
    idx = np.array([[0, 0, 3], [1, 2, 2], [3, 3, 0]])
    check(lambda x, i: x.gather(1, i), lambda x, i: x.gather(1, i), a, idx)
    check(lambda x, i: x.gather(0, i[:, :2] % 3), lambda x, i: x.gather(0, i[:, :2] % 3), a, idx)
    check(lambda x, i: x.index_select(1, i[0]), lambda x, i: x.index_select(1, i[0]), a, idx)
    check(lambda x: (x > 0).nonzero(), lambda x: (x > 0).nonzero(), a)
