"""The graph layer: tensors that remember how they were made, and backpropagation.

Each operation computes its output and, right beside it, a closure ``backward(g)`` that
receives the gradient of the loss with respect to that output (the *global* gradient) and
multiplies it by the operation's *local* gradient, which the forward pass computed and the
closure keeps (the seeds' recipe):

- the add gate distributes: its local gradient is 1, so ``g`` passes unchanged to both inputs;
- the mul gate switches: the local gradient of each input is the *other* input's value;
- the max gate routes: ``g`` goes to the larger input (on a tie, half to each, as PyTorch);
- where a value fans out to several uses, the gradients from each use add up (``+=``).

``Tensor.backward()`` walks the nodes in reverse topological order (iteratively, so a deep
graph cannot hit Python's recursion limit) and calls each closure once. Leaves accumulate
their ``.grad`` across calls until the user zeroes it; nodes made by operations get a fresh
``.grad`` on every call (it stays readable afterwards, as a debugging aid).

Broadcasting follows NumPy; the gradient that reaches a broadcast operand is summed back to
that operand's shape. Arithmetic on arrays is NumPy's (one ufunc per op) or a fused Numba
kernel (the activations, which write their local gradient in the same pass).
"""

from __future__ import annotations

import numbers
from contextlib import ContextDecorator

import numpy as np

from ._dtype import as_float_array, resolve_dtype
from .kernels import activations as _act

_grad_enabled = True


class no_grad(ContextDecorator):
    """Context manager (and decorator) inside which operations record no graph.

    Examples
    --------
    >>> with fnn.no_grad():
    ...     y = model(x)          # y.requires_grad is False; nothing is kept for backward
    """

    def __enter__(self):
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = False
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False


def is_grad_enabled() -> bool:
    """True unless inside :class:`no_grad`."""
    return _grad_enabled


class Tensor:
    """An ndarray with an optional gradient and a link to the operation that made it.

    Parameters
    ----------
    data : array_like of real numbers
        Floating arrays keep their dtype (float32 or float64); Python numbers, lists and
        integer arrays take the default dtype (:func:`fastnn.get_default_dtype`).
        bool, complex, object and string data raise TypeError.
    requires_grad : bool
        Whether ``backward()`` should compute ``.grad`` for this tensor.
    dtype : optional float32 or float64, to cast ``data`` to.

    Attributes
    ----------
    data : ndarray
        The values. Assigning into ``t.data[...]`` changes the tensor in place.
    grad : ndarray or None
        d(loss)/d(data), same shape and dtype as ``data``, after ``backward()``.
    """

    __slots__ = ("data", "grad", "requires_grad", "_backward", "_parents", "_op", "__weakref__")
    # Makes ``ndarray <op> Tensor`` defer to Tensor's reflected operators instead of
    # letting NumPy broadcast over the Tensor as an object.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        self.data = as_float_array(data, dtype=dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._backward = None
        self._parents = ()
        self._op = ""

    # ----------------------------------------------------------------- introspection
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def numel(self) -> int:
        """The number of elements (the product of the shape)."""
        return self.data.size

    def dim(self) -> int:
        """The number of dimensions (``ndim``)."""
        return self.data.ndim

    def item(self) -> float:
        """The value of a one-element tensor as a Python float."""
        return self.data.item()

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (not a copy)."""
        return self.data

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place (on a leaf) and return the tensor."""
        if self._backward is not None:
            raise RuntimeError("requires_grad_ can only change leaf tensors")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> Tensor:
        """A tensor sharing ``data`` that records no history."""
        return Tensor(self.data)

    def __repr__(self) -> str:
        extra = f", grad_fn={self._op}" if self._op else ""
        extra += ", requires_grad=True" if self.requires_grad and not self._op else ""
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        return f"Tensor({body}, dtype={self.dtype}{extra})"

    # ------------------------------------------------------------------ backprop
    def _accumulate(self, g: np.ndarray, owned: bool = False) -> None:
        """Add ``g`` into ``self.grad`` (gradients sum where a value fans out).

        On first assignment the array is copied unless the caller ``owned`` it (made it
        fresh), so that no two tensors ever share one gradient array.
        """
        if self.grad is None:
            if g.dtype != self.data.dtype or not owned or g.shape != self.data.shape:
                g = np.array(np.broadcast_to(g, self.data.shape), dtype=self.data.dtype)
            self.grad = g
        else:
            self.grad += g

    def backward(self, gradient=None) -> None:
        """Backpropagate from this tensor to every tensor it depends on.

        Parameters
        ----------
        gradient : array_like, optional
            d(loss)/d(self), same shape as ``self``. May be omitted only when ``self`` has
            one element (a scalar loss), in which case it is 1.

        Raises
        ------
        RuntimeError
            If ``self`` does not require grad, or has more than one element and no
            ``gradient`` is given.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True (or it ran under no_grad())"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a scalar (one-element) tensor, got "
                    f"shape {self.shape}; pass gradient= of that shape or reduce first (.sum())"
                )
            seed = np.array(1, dtype=self.data.dtype).reshape(self.data.shape)
        else:
            seed = np.asarray(gradient.data if isinstance(gradient, Tensor) else gradient)
            if seed.shape != self.shape:
                raise ValueError(
                    f"backward(gradient): gradient has shape {seed.shape}, "
                    f"expected the tensor's shape {self.shape}"
                )
            seed = seed.astype(self.dtype, copy=True)
        order = self._topological_order()
        for node in order:
            node.grad = None  # gradients of intermediate nodes are per call
        self._accumulate(seed, owned=True)
        for node in reversed(order):
            if node.grad is not None:
                node._backward(node.grad)

    def _topological_order(self) -> list[Tensor]:
        """The operation nodes (those with a backward) that this tensor depends on, each
        after all the nodes it was computed from. Leaves need no place in the order: their
        gradients arrive through their consumers' backward."""
        if self._backward is None:
            return []
        order: list[Tensor] = []
        visited: set[int] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            for parent in node._parents:
                if parent._backward is not None and id(parent) not in visited:
                    stack.append((parent, False))
        return order

    # ------------------------------------------------------------- binary operators
    def __add__(self, other) -> Tensor:
        other = _lift(other, self)
        out = _node(self.data + other.data, (self, other), "add")
        if out.requires_grad:
            a_shape, b_shape = self.shape, other.shape

            def backward(g):  # add gate: local gradient 1, g is distributed unchanged
                if self.requires_grad:
                    self._accumulate(_unbroadcast(g, a_shape))
                if other.requires_grad:
                    other._accumulate(_unbroadcast(g, b_shape))

            out._backward = backward
        return out

    def __sub__(self, other) -> Tensor:
        other = _lift(other, self)
        out = _node(self.data - other.data, (self, other), "sub")
        if out.requires_grad:
            a_shape, b_shape = self.shape, other.shape

            def backward(g):  # local gradients +1 and -1
                if self.requires_grad:
                    self._accumulate(_unbroadcast(g, a_shape))
                if other.requires_grad:
                    other._accumulate(_unbroadcast(-g, b_shape), owned=True)

            out._backward = backward
        return out

    def __mul__(self, other) -> Tensor:
        other = _lift(other, self)
        a, b = self.data, other.data
        out = _node(a * b, (self, other), "mul")
        if out.requires_grad:

            def backward(g):  # mul gate switches: each input's local gradient is the other
                if self.requires_grad:
                    self._accumulate(_unbroadcast(g * b, a.shape), owned=True)
                if other.requires_grad:
                    other._accumulate(_unbroadcast(g * a, b.shape), owned=True)

            out._backward = backward
        return out

    def __truediv__(self, other) -> Tensor:
        other = _lift(other, self)
        a, b = self.data, other.data
        q = a / b
        out = _node(q, (self, other), "div")
        if out.requires_grad:
            inv_b = 1.0 / b  # local gradients: d(a/b)/da = 1/b, d(a/b)/db = -(a/b)/b
            local_b = -q * inv_b if other.requires_grad else None

            def backward(g):
                if self.requires_grad:
                    self._accumulate(_unbroadcast(g * inv_b, a.shape), owned=True)
                if other.requires_grad:
                    other._accumulate(_unbroadcast(g * local_b, b.shape), owned=True)

            out._backward = backward
        return out

    def __radd__(self, other) -> Tensor:
        return _lift(other, self) + self

    def __rsub__(self, other) -> Tensor:
        return _lift(other, self) - self

    def __rmul__(self, other) -> Tensor:
        return _lift(other, self) * self

    def __rtruediv__(self, other) -> Tensor:
        return _lift(other, self) / self

    def __neg__(self) -> Tensor:
        out = _node(-self.data, (self,), "neg")
        if out.requires_grad:
            out._backward = lambda g: self._accumulate(-g, owned=True)
        return out

    def __pow__(self, exponent) -> Tensor:
        if isinstance(exponent, Tensor) or not isinstance(exponent, numbers.Real):
            raise TypeError(
                f"Tensor ** exponent needs a real scalar exponent, got {type(exponent).__name__}"
            )
        x = self.data
        p = x.dtype.type(exponent)
        out = _node(x**p, (self,), "pow")
        if out.requires_grad:
            local = p * x ** (p - 1)  # d(x^p)/dx

            def backward(g):
                self._accumulate(g * local, owned=True)

            out._backward = backward
        return out

    def __matmul__(self, other) -> Tensor:
        other = _lift(other, self)
        a, b = self.data, other.data
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(
                f"matmul: both operands need at least 1 dimension, got shapes {a.shape} @ {b.shape}"
            )
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not align: "
                f"{a.shape[-1]} (last of the left) != "
                f"{b.shape[-2 if b.ndim > 1 else 0]} ({'first' if b.ndim == 1 else 'second-last'} "
                "of the right)"
            )
        try:
            c = a @ b
        except ValueError as exc:  # batch dimensions that do not broadcast
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not align ({exc})"
            ) from None
        out = _node(c, (self, other), "matmul")
        if out.requires_grad:

            def backward(g):  # like the mul gate: each operand's local gradient is the other
                # Promote vectors to matrices, as matmul itself does, then undo it.
                a2 = a[None, :] if a.ndim == 1 else a
                b2 = b[:, None] if b.ndim == 1 else b
                g2 = g[..., None] if b.ndim == 1 else g
                if a.ndim == 1:
                    g2 = g2[..., None, :]
                if self.requires_grad:
                    da = g2 @ np.swapaxes(b2, -1, -2)
                    if a.ndim == 1:
                        da = da[..., 0, :]
                    self._accumulate(_unbroadcast(da, a.shape), owned=True)
                if other.requires_grad:
                    db = np.swapaxes(a2, -1, -2) @ g2
                    if b.ndim == 1:
                        db = db[..., 0]
                    other._accumulate(_unbroadcast(db, b.shape), owned=True)

            out._backward = backward
        return out

    def __rmatmul__(self, other) -> Tensor:
        return _lift(other, self) @ self

    # ------------------------------------------------------------------- reductions
    def sum(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        """Sum over ``axis`` (an int, a tuple of ints, or None for all).

        ``dim``/``keepdim`` are accepted as PyTorch spells them."""
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        x = self.data
        out = _node(np.asarray(x.sum(axis=axis, keepdims=keepdims)), (self,), "sum")
        if out.requires_grad:
            kept_shape = np.sum(x, axis=axis, keepdims=True).shape

            def backward(g):  # sum distributes like the add gate: local gradient 1
                self._accumulate(np.broadcast_to(np.reshape(g, kept_shape), x.shape))

            out._backward = backward
        return out

    def mean(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        """Mean over ``axis`` (an int, a tuple of ints, or None for all); ``dim``/``keepdim``
        as in PyTorch."""
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        if axis is None:
            count = self.data.size
        else:
            axes = axis if isinstance(axis, tuple) else (axis,)
            count = int(np.prod([self.shape[a] for a in axes]))
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / count if count else np.nan)

    # -------------------------------------------------------------------- reshaping
    def astype(self, dtype) -> Tensor:
        """The values cast to ``dtype`` (float32 or float64); the gradient is cast back."""
        dt = resolve_dtype(dtype)
        if dt == self.dtype:
            return self
        out = _node(self.data.astype(dt), (self,), "cast")
        if out.requires_grad:
            out._backward = lambda g: self._accumulate(g.astype(self.dtype), owned=True)
        return out

    def reshape(self, *shape) -> Tensor:
        """The same values in a new shape (a view when NumPy can make one)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        src = self.shape
        out = _node(self.data.reshape(shape), (self,), "reshape")
        if out.requires_grad:
            out._backward = lambda g: self._accumulate(g.reshape(src))
        return out

    def permute(self, *axes) -> Tensor:
        """The axes reordered (``numpy.transpose(data, axes)``); the gradient is permuted back."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"permute: {axes} is not a permutation of the {self.ndim} axes")
        inverse = tuple(np.argsort(axes))
        out = _node(self.data.transpose(axes), (self,), "permute")
        if out.requires_grad:
            out._backward = lambda g: self._accumulate(g.transpose(inverse))
        return out

    def __getitem__(self, index) -> Tensor:
        """NumPy indexing and slicing; the gradient is scattered back (repeated indices add)."""
        if isinstance(index, Tensor):
            index = index.data
        out = _node(np.asarray(self.data[index]), (self,), "index")
        if out.requires_grad:
            shape, dtype = self.shape, self.dtype

            def backward(g):  # the router of the selected elements, like the max gate
                full = np.zeros(shape, dtype)
                np.add.at(full, index, g)
                self._accumulate(full, owned=True)

            out._backward = backward
        return out

    @property
    def T(self) -> Tensor:
        """The tensor with its axes reversed."""
        out = _node(self.data.T, (self,), "transpose")
        if out.requires_grad:
            out._backward = lambda g: self._accumulate(g.T)
        return out

    # --------------------------------------------------------------- unary functions
    def exp(self) -> Tensor:
        return exp(self)

    def log(self) -> Tensor:
        return log(self)

    def sigmoid(self) -> Tensor:
        return sigmoid(self)

    def tanh(self) -> Tensor:
        return tanh(self)

    def relu(self) -> Tensor:
        return relu(self)


# ---------------------------------------------------------------------- helpers
def _node(data: np.ndarray, parents: tuple[Tensor, ...], op: str) -> Tensor:
    """A new graph node; it records its parents only when a gradient can flow through it."""
    out = Tensor.__new__(Tensor)
    out.data = data
    out.grad = None
    out._backward = None
    needs = _grad_enabled and any(p.requires_grad for p in parents)
    out.requires_grad = needs
    out._parents = parents if needs else ()
    out._op = op if needs else ""
    return out


def _axis_args(axis, keepdims, dim, keepdim):
    """NumPy's (axis, keepdims) from either spelling; PyTorch's dim/keepdim win if given."""
    if dim is not None:
        if axis is not None and axis != dim:
            raise TypeError(f"give axis or dim, not both (got axis={axis}, dim={dim})")
        axis = dim
    return (tuple(axis) if isinstance(axis, list) else axis,
            bool(keepdim) if keepdim is not None else keepdims)


def _lift(value, like: Tensor) -> Tensor:
    """``value`` as a Tensor; Python numbers take ``like``'s dtype."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return Tensor(np.asarray(value, dtype=like.dtype))
    return Tensor(value)


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` over the axes that broadcasting added or stretched, back to ``shape``."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g.reshape(shape)


def _as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


# --------------------------------------------------------------- functions of tensors
def exp(x) -> Tensor:
    """Elementwise e**x; its local gradient is its own output."""
    x = _as_tensor(x)
    y = np.exp(x.data)
    out = _node(y, (x,), "exp")
    if out.requires_grad:
        out._backward = lambda g: x._accumulate(g * y, owned=True)
    return out


def log(x) -> Tensor:
    """Elementwise natural logarithm; local gradient 1/x."""
    x = _as_tensor(x)
    out = _node(np.log(x.data), (x,), "log")
    if out.requires_grad:
        local = 1.0 / x.data
        out._backward = lambda g: x._accumulate(g * local, owned=True)
    return out


def maximum(a, b) -> Tensor:
    """Elementwise maximum with broadcasting: the max gate, which routes the gradient.

    The whole gradient goes to the larger input; where the inputs are equal it is split
    half and half (PyTorch's ``torch.maximum`` does the same), so that the total that flows
    back is always the gradient that came in.
    """
    if not isinstance(a, Tensor):
        a = _lift(a, b) if isinstance(b, Tensor) else Tensor(a)
    b = _lift(b, a)
    x, y = a.data, b.data
    out = _node(np.maximum(x, y), (a, b), "maximum")
    if out.requires_grad:
        # The router's switch, computed in the forward pass: the share that goes to ``a``.
        share_a = np.where(x > y, 1.0, np.where(x == y, 0.5, 0.0)).astype(out.data.dtype)

        def backward(g):
            if a.requires_grad:
                a._accumulate(_unbroadcast(g * share_a, x.shape), owned=True)
            if b.requires_grad:
                b._accumulate(_unbroadcast(g * (1.0 - share_a), y.shape), owned=True)

        out._backward = backward
    return out


def activation(x, name: str, alpha: float = 0.0) -> Tensor:
    """Apply the activation ``name`` (a key of ``kernels.activations.CODES``) elementwise.

    One kernel pass writes the output and the local gradient; backward multiplies by it.
    """
    x = _as_tensor(x)
    code = _act.CODES[name]
    src = np.ascontiguousarray(x.data)
    flat = src.reshape(-1)
    y = np.empty_like(flat)
    d = np.empty_like(flat)  # always written by the kernel
    _act.activation_forward(flat.size)(code, float(alpha), flat, y, d)
    out = _node(y.reshape(x.shape), (x,), name)
    if out.requires_grad:
        local = d.reshape(x.shape)
        out._backward = lambda g: x._accumulate(g * local, owned=True)
    return out


def sigmoid(x) -> Tensor:
    """1 / (1 + exp(-x)); local gradient s (1 - s), from the output alone (the sigmoid gate)."""
    return activation(x, "sigmoid")


def tanh(x) -> Tensor:
    """Hyperbolic tangent; local gradient 1 - tanh(x)^2."""
    return activation(x, "tanh")


def relu(x) -> Tensor:
    """max(x, 0); local gradient 1 where x > 0, else 0."""
    return activation(x, "relu")


__all__ = [
    "Tensor",
    "no_grad",
    "is_grad_enabled",
    "exp",
    "log",
    "maximum",
    "sigmoid",
    "tanh",
    "relu",
    "activation",
]
