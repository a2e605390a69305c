"""The graph layer: tensors that remember how they were made, and backpropagation.

Each operation computes its output and, right beside it, a closure ``backward(g)`` that
receives the gradient of the loss with respect to that output (the *global* gradient) and
multiplies it by the operation's *local* gradient, which the forward pass computed and the
closure keeps (the lecture notes' recipe):

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

The PyTorch surface: the Tensor methods and functions that PyTorch code reaches for
(``view``, ``unsqueeze``, ``max(dim)``, ``var``, ``softmax``, ``fnn.cat``, ``fnn.where``, ...)
with PyTorch's names, defaults and gradients. Tensors that a user makes with ``Tensor(...)``
are floating (float32 or float64); comparisons (``<``, ``==``, ...), ``argmax`` and the
indices of ``max(dim)`` give Tensors of bool or int64 data, which never require grad and
work as PyTorch's do: ``(a > 0).float()``, ``mask.sum()``, ``x * mask``, ``x[mask]``.
Arithmetic between a floating and an integer or bool operand is done in the floating dtype
(PyTorch's promotion; NumPy would widen float32 to float64). ``fnn.tensor`` and
``fnn.from_numpy`` keep integer and bool data, as ``torch.tensor`` does.
"""

from __future__ import annotations

import numbers
from collections import namedtuple
from contextlib import ContextDecorator

import numpy as np

from ._dtype import as_float_array, get_default_dtype, resolve_dtype
from .kernels import activations as _act
from .random import numpy_generator

_grad_enabled = True


class _GradMode(ContextDecorator):
    """Sets whether operations record a graph inside a ``with`` block or a decorated function.

    Usable as ``with m():``, ``@m()`` and ``@m`` (without parentheses), as PyTorch's are;
    each call of a decorated function gets a fresh context, so recursion restores correctly.
    """

    _mode: bool | None = False  # None: leave the mode as it is

    def __new__(cls, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not isinstance(args[0], bool):
            return cls()(args[0])  # used as a decorator without parentheses
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def _recreate_cm(self):
        return type(self)(*self._args()) if hasattr(self, "_args") else type(self)()

    def __enter__(self):
        global _grad_enabled
        self._prev = _grad_enabled
        if self._mode is not None:
            _grad_enabled = self._mode
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False


class no_grad(_GradMode):
    """Context manager (and decorator) inside which operations record no graph.

    Examples
    --------
    >>> with fnn.no_grad():
    ...     y = model(x)          # y.requires_grad is False; nothing is kept for backward
    """

    _mode = False


class enable_grad(_GradMode):
    """Context manager (and decorator) that records the graph again inside ``no_grad``."""

    _mode = True


class inference_mode(_GradMode):
    """``inference_mode(mode=True)``: like :class:`no_grad` (fastnn has no separate inference
    tensors); ``inference_mode(False)`` changes nothing."""

    def __init__(self, mode: bool = True):
        self._mode = False if mode else None
        self._flag = bool(mode)

    def _args(self):
        return (self._flag,)


class set_grad_enabled:
    """``set_grad_enabled(mode)``: switch graph recording on or off, at once (as PyTorch's);
    used as a context manager, the previous mode comes back at the end of the block."""

    def __init__(self, mode: bool):
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = bool(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False


def is_grad_enabled() -> bool:
    """True unless inside :class:`no_grad` (or switched off by :class:`set_grad_enabled`)."""
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
    # ``==`` is elementwise (as PyTorch's), so hashing stays by identity: a Tensor is a dict
    # key or set member as itself. Membership tests on lists of Tensors (``p in params``)
    # would compare elementwise; fastnn's own code tests identity (``id(p)``, ``is``).
    __hash__ = object.__hash__

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
    def op(self) -> str:
        """The name of the operation that made this tensor ("add", "mul", "linear+relu", ...);
        "" for a leaf and for a result that records no history (no input required grad,
        or it was made under ``no_grad()``)."""
        return self._op

    @property
    def parents(self) -> tuple[Tensor, ...]:
        """The tensors this one was computed from (the operation's inputs, in order);
        ``()`` wherever :attr:`op` is ""."""
        return self._parents

    @property
    def is_leaf(self) -> bool:
        """True for a tensor made by the user (or a Parameter), not by an operation."""
        return self._backward is None

    def __len__(self) -> int:
        return len(self.data)

    def numel(self) -> int:
        """The number of elements (the product of the shape)."""
        return self.data.size

    def dim(self) -> int:
        """The number of dimensions (``ndim``)."""
        return self.data.ndim

    def size(self, dim: int | None = None):
        """The shape (a tuple), or its length along ``dim`` (negative counts from the end),
        as PyTorch's ``size()``; the number of elements is :meth:`numel`."""
        if dim is None:
            return self.data.shape
        return self.data.shape[_dim(dim, self.ndim)]

    nelement = numel

    @property
    def device(self) -> str:
        """Always ``"cpu"``: fastnn computes on the CPU."""
        return "cpu"

    def is_floating_point(self) -> bool:
        return self.data.dtype.kind == "f"

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item(): a Tensor with {self.data.size} elements cannot be "
                             "converted to a Python number")
        return self.data.item()

    def tolist(self):
        """The values as (nested) Python lists, or a number for a 0-d tensor."""
        return self.data.tolist()

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (not a copy)."""
        return self.data

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place (on a leaf) and return the tensor."""
        if self._backward is not None:
            raise RuntimeError("requires_grad_ can only change leaf tensors")
        if requires_grad and self.data.dtype.kind != "f":
            raise RuntimeError(f"only floating point tensors can require gradients, this one "
                               f"is {self.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> Tensor:
        """A tensor sharing ``data`` that records no history."""
        return _const(self.data)

    def retain_grad(self) -> None:
        """Nothing to do: ``backward()`` leaves ``.grad`` readable on every intermediate
        tensor of the graph (fastnn keeps them all, where PyTorch keeps only the leaves')."""

    def __repr__(self) -> str:
        extra = f", grad_fn={self._op}" if self._op else ""
        extra += ", requires_grad=True" if self.requires_grad and not self._op else ""
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        return f"Tensor({body}, dtype={self.dtype}{extra})"

    # ------------------------------------------------------------------ backprop
    def accumulate_grad(self, g: np.ndarray, owned: bool = False) -> None:
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

    def set_backward(self, fn) -> None:
        """Install ``fn(g)``, the closure that applies this node's local gradient: it receives
        d(loss)/d(self) and hands each input its share with ``accumulate_grad`` (see
        :func:`node`)."""
        self._backward = fn

    def backward(self, gradient=None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs=None) -> None:
        """Backpropagate from this tensor to every tensor it depends on.

        Parameters
        ----------
        gradient : array_like, optional
            d(loss)/d(self), same shape as ``self``. May be omitted only when ``self`` has
            one element (a scalar loss), in which case it is 1.
        retain_graph : keep the graph's saved values so that ``backward`` may run through it
            again (default ``create_graph``, i.e. False): as in PyTorch, a second backward
            through a graph that was not retained raises RuntimeError.
        create_graph : must be False: fastnn's backward computes gradients as arrays, not as
            a graph, so higher-order derivatives are not available.
        inputs : a Tensor or a sequence of Tensors: accumulate ``.grad`` into these only
            (the other leaves' ``.grad`` stay as they were).

        Raises
        ------
        RuntimeError
            If ``self`` does not require grad, has more than one element and no
            ``gradient`` is given, or the graph was freed by an earlier ``backward``.
        """
        run_backward((self,), (gradient,), retain_graph, create_graph, inputs)

    def _topological_order(self) -> list[Tensor]:
        """The operation nodes (those with a backward) that this tensor depends on, each
        after all the nodes it was computed from."""
        return _topological_order((self,))

    # ------------------------------------------------------------- binary operators
    def __add__(self, other) -> Tensor:
        other = _lift(other, self)
        x, y = _operands(self, other)
        out = _node(x + y, (self, other), "add")
        if out.requires_grad:
            a_shape, b_shape = x.shape, y.shape

            def backward(g):  # add gate: local gradient 1, g is distributed unchanged
                if self.requires_grad:
                    self.accumulate_grad(_unbroadcast(g, a_shape))
                if other.requires_grad:
                    other.accumulate_grad(_unbroadcast(g, b_shape))

            out._backward = backward
        return out

    def __sub__(self, other) -> Tensor:
        other = _lift(other, self)
        x, y = _operands(self, other)
        out = _node(x - y, (self, other), "sub")
        if out.requires_grad:
            a_shape, b_shape = x.shape, y.shape

            def backward(g):  # local gradients +1 and -1
                if self.requires_grad:
                    self.accumulate_grad(_unbroadcast(g, a_shape))
                if other.requires_grad:
                    other.accumulate_grad(_unbroadcast(-g, b_shape), owned=True)

            out._backward = backward
        return out

    def __mul__(self, other) -> Tensor:
        other = _lift(other, self)
        a, b = _operands(self, other)
        out = _node(a * b, (self, other), "mul")
        if out.requires_grad:

            def backward(g):  # mul gate switches: each input's local gradient is the other
                if self.requires_grad:
                    self.accumulate_grad(_unbroadcast(g * b, a.shape), owned=True)
                if other.requires_grad:
                    other.accumulate_grad(_unbroadcast(g * a, b.shape), owned=True)

            out._backward = backward
        return out

    def __truediv__(self, other) -> Tensor:
        other = _lift(other, self)
        a, b = _operands(self, other)
        if a.dtype.kind != "f":  # integers divide into the default float dtype, as PyTorch's
            a, b = a.astype(get_default_dtype()), b.astype(get_default_dtype())
        q = a / b
        out = _node(q, (self, other), "div")
        if out.requires_grad:
            inv_b = 1.0 / b  # local gradients: d(a/b)/da = 1/b, d(a/b)/db = -(a/b)/b
            local_b = -q * inv_b if other.requires_grad else None

            def backward(g):
                if self.requires_grad:
                    self.accumulate_grad(_unbroadcast(g * inv_b, a.shape), owned=True)
                if other.requires_grad:
                    other.accumulate_grad(_unbroadcast(g * local_b, b.shape), owned=True)

            out._backward = backward
        return out

    def __floordiv__(self, other) -> Tensor:
        """Division rounded down; no gradient flows through it (PyTorch's floor_divide)."""
        x, y = _operands(self, _lift(other, self))
        return _const(np.floor_divide(x, y))

    def __mod__(self, other) -> Tensor:
        """Remainder with the divisor's sign (Python's and PyTorch's ``remainder``);
        local gradients 1 and -floor(a / b)."""
        other = _lift(other, self)
        a, b = _operands(self, other)
        out = _node(np.remainder(a, b), (self, other), "remainder")
        if out.requires_grad:

            def backward(g):
                if self.requires_grad:
                    self.accumulate_grad(_unbroadcast(g, a.shape))
                if other.requires_grad:
                    other.accumulate_grad(_unbroadcast(-g * np.floor(a / b), b.shape), owned=True)

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

    def __rfloordiv__(self, other) -> Tensor:
        return _lift(other, self) // self

    def __rmod__(self, other) -> Tensor:
        return _lift(other, self) % self

    def __neg__(self) -> Tensor:
        if self.dtype.kind == "b":
            raise TypeError("negation of a bool Tensor: use ~mask (logical not)")
        out = _node(-self.data, (self,), "neg")
        if out.requires_grad:
            out._backward = lambda g: self.accumulate_grad(-g, owned=True)
        return out

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return self.abs()

    def __pow__(self, exponent) -> Tensor:
        """``x ** p`` for a number p (local gradient p x^(p-1), 0 where p = 0) or a Tensor
        (its own gradient x^p log x, 0 where x = 0 and p >= 0, as PyTorch)."""
        if isinstance(exponent, numbers.Real) and not isinstance(exponent, (bool, np.bool_)):
            src = self
            if self.dtype.kind != "f" and not isinstance(exponent, numbers.Integral):
                src = self.float()
            x = src.data
            p = x.dtype.type(exponent)
            out = _node(x**p, (src,), "pow")
            if out.requires_grad:
                # d(x^p)/dx; PyTorch's gradient of x^0 is 0 everywhere (not 0 * x^-1 at 0).
                local = p * x ** (p - 1) if p != 0 else np.zeros_like(x)

                def backward(g):
                    src.accumulate_grad(g * local, owned=True)

                out._backward = backward
            return out
        if not isinstance(exponent, (Tensor, np.ndarray, list, tuple)):
            raise TypeError(f"Tensor ** exponent needs a real number or a Tensor exponent, "
                            f"got {type(exponent).__name__}")
        other = _lift(exponent, self)
        a, b = _operands(self, other)
        y = a**b
        out = _node(y, (self, other), "pow")
        if out.requires_grad:

            def backward(g):
                if self.requires_grad:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        local = np.where(b == 0, 0.0, b * a ** (b - 1))
                    self.accumulate_grad(_unbroadcast(g * local, a.shape), owned=True)
                if other.requires_grad:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        local = np.where((a == 0) & (b >= 0), 0.0, y * np.log(a))
                    other.accumulate_grad(_unbroadcast(g * local, b.shape), owned=True)

            out._backward = backward
        return out

    def __rpow__(self, other) -> Tensor:
        return _lift(other, self) ** self

    def __matmul__(self, other) -> Tensor:
        other = _lift(other, self)
        a, b = _operands(self, other)
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
                    self.accumulate_grad(_unbroadcast(da, a.shape), owned=True)
                if other.requires_grad:
                    db = np.swapaxes(a2, -1, -2) @ g2
                    if b.ndim == 1:
                        db = db[..., 0]
                    other.accumulate_grad(_unbroadcast(db, b.shape), owned=True)

            out._backward = backward
        return out

    def __rmatmul__(self, other) -> Tensor:
        return _lift(other, self) @ self

    def matmul(self, other) -> Tensor:
        """``self @ other`` (NumPy's and PyTorch's matmul rules, batched)."""
        return self @ other

    def mm(self, other) -> Tensor:
        """The product of two matrices (2-D only, as PyTorch's ``mm``)."""
        if self.ndim != 2 or np.ndim(other.data if isinstance(other, Tensor) else other) != 2:
            raise ValueError(f"mm: both operands must be 2-D, got {self.shape} and "
                             f"{np.shape(other.data if isinstance(other, Tensor) else other)}")
        return self @ other

    bmm = matmul

    def add(self, other, *, alpha=1) -> Tensor:
        """``self + alpha * other``."""
        return self + (other if alpha == 1 else _lift(other, self) * alpha)

    def sub(self, other, *, alpha=1) -> Tensor:
        """``self - alpha * other``."""
        return self - (other if alpha == 1 else _lift(other, self) * alpha)

    def mul(self, other) -> Tensor:
        return self * other

    def div(self, other) -> Tensor:
        return self / other

    def pow(self, exponent) -> Tensor:
        return self**exponent

    def neg(self) -> Tensor:
        return -self

    # ------------------------------------------------- comparisons and logical operators
    def _compare(self, other, ufunc):
        if not isinstance(other, (Tensor, numbers.Real, np.ndarray, list, tuple)):
            return NotImplemented  # e.g. ``t == None`` is False, as in PyTorch
        x, y = _operands(self, _lift(other, self))
        return _const(ufunc(x, y))

    def __eq__(self, other) -> Tensor:
        """Elementwise ``==``: a bool Tensor (no gradient), as PyTorch's."""
        return self._compare(other, np.equal)

    def __ne__(self, other) -> Tensor:
        return self._compare(other, np.not_equal)

    def __lt__(self, other) -> Tensor:
        return self._compare(other, np.less)

    def __le__(self, other) -> Tensor:
        return self._compare(other, np.less_equal)

    def __gt__(self, other) -> Tensor:
        return self._compare(other, np.greater)

    def __ge__(self, other) -> Tensor:
        return self._compare(other, np.greater_equal)

    def eq(self, other) -> Tensor:
        return self == other

    def ne(self, other) -> Tensor:
        return self != other

    def lt(self, other) -> Tensor:
        return self < other

    def le(self, other) -> Tensor:
        return self <= other

    def gt(self, other) -> Tensor:
        return self > other

    def ge(self, other) -> Tensor:
        return self >= other

    def equal(self, other) -> bool:
        """True when ``other`` has the same shape and the same values (``torch.equal``)."""
        other = _lift(other, self)
        return self.shape == other.shape and bool(np.array_equal(*_operands(self, other)))

    def _logical(self, other, ufunc, symbol: str):
        other = _lift(other, self)
        if self.dtype.kind == "f" or other.dtype.kind == "f":
            raise TypeError(f"{symbol} needs bool or integer tensors, got {self.dtype} and "
                            f"{other.dtype} (compare first: (a > 0) {symbol} (b > 0))")
        return _const(ufunc(self.data, other.data))

    def __and__(self, other) -> Tensor:
        return self._logical(other, np.bitwise_and, "&")

    def __or__(self, other) -> Tensor:
        return self._logical(other, np.bitwise_or, "|")

    def __xor__(self, other) -> Tensor:
        return self._logical(other, np.bitwise_xor, "^")

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def __invert__(self) -> Tensor:
        if self.dtype.kind == "f":
            raise TypeError(f"~ needs a bool or integer tensor, got {self.dtype}")
        return _const(np.logical_not(self.data) if self.dtype.kind == "b" else ~self.data)

    def logical_not(self) -> Tensor:
        return _const(np.logical_not(self.data))

    def any(self, dim=None, keepdim: bool = False) -> Tensor:
        """Whether any element (along ``dim``) is nonzero: a bool Tensor."""
        return _const(np.asarray(np.any(self.data, axis=_dims(dim, self.ndim), keepdims=keepdim)))

    def all(self, dim=None, keepdim: bool = False) -> Tensor:
        """Whether every element (along ``dim``) is nonzero: a bool Tensor."""
        return _const(np.asarray(np.all(self.data, axis=_dims(dim, self.ndim), keepdims=keepdim)))

    def isnan(self) -> Tensor:
        return _const(np.isnan(self.data))

    def isinf(self) -> Tensor:
        return _const(np.isinf(self.data))

    def isfinite(self) -> Tensor:
        return _const(np.isfinite(self.data))

    # ------------------------------------------------------------ Python conversions
    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a Tensor with {self.data.size} elements is "
                               "ambiguous; use .any() or .all()")
        return bool(self.data.reshape(()))

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError(f"only one-element integer tensors can be used as an index, got "
                            f"dtype {self.dtype} with {self.data.size} elements")
        return int(self.item())

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """``np.asarray(t)``: the data (a copy only when a dtype change or ``copy`` asks)."""
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        for i in range(self.shape[0]):
            yield self[i]

    def __contains__(self, value) -> bool:
        v = value.data if isinstance(value, Tensor) else value
        return bool(np.any(self.data == v))

    # ------------------------------------------------------------------- reductions
    def sum(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        """Sum over ``axis`` (an int, a tuple of ints, or None for all).

        ``dim``/``keepdim`` are accepted as PyTorch spells them. Bool and integer tensors sum
        to int64, as in PyTorch."""
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        x = self.data
        axes = _dims(axis, x.ndim)
        out = _node(np.asarray(x.sum(axis=axes, keepdims=keepdims)), (self,), "sum")
        if out.requires_grad:
            kept_shape = _kept_shape(x.shape, axes)

            def backward(g):  # sum distributes like the add gate: local gradient 1
                self.accumulate_grad(np.broadcast_to(np.reshape(g, kept_shape), x.shape))

            out._backward = backward
        return out

    def mean(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        """Mean over ``axis`` (an int, a tuple of ints, or None for all); ``dim``/``keepdim``
        as in PyTorch."""
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        _need_float(self, "mean")
        axes = _dims(axis, self.ndim)
        count = self.data.size if axes is None else int(np.prod([self.shape[a] for a in axes]))
        total = self.sum(axis=axes, keepdims=keepdims)
        return total / count if count else total * np.nan  # divided, as PyTorch (not * 1/n)

    def var(self, dim=None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: float | None = None) -> Tensor:
        """Variance over ``dim`` (int, tuple or None for all), PyTorch's default unbiased:
        sum((x - mean)^2) / (n - correction) with ``correction=1`` (``unbiased=False`` or
        ``correction=0`` divide by n). Local gradient 2 (x - mean) / (n - correction)."""
        return self._moment(dim, unbiased, keepdim, correction, sqrt=False)

    def std(self, dim=None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: float | None = None) -> Tensor:
        """Standard deviation, the square root of :meth:`var` (same arguments); its gradient
        is (x - mean) / ((n - correction) std), 0 where std is 0 (as PyTorch)."""
        return self._moment(dim, unbiased, keepdim, correction, sqrt=True)

    def _moment(self, dim, unbiased, keepdim, correction, sqrt: bool) -> Tensor:
        name = "std" if sqrt else "var"
        _need_float(self, name)
        if isinstance(dim, bool):  # var(unbiased) overload
            dim, unbiased = None, dim
        if unbiased is not None and correction is not None:
            raise TypeError(f"{name}: give unbiased or correction, not both")
        ddof = float(correction) if correction is not None else (0.0 if unbiased is False
                                                                 else 1.0)
        x = self.data
        axes = _dims(dim, x.ndim)
        count = x.size if axes is None else int(np.prod([x.shape[a] for a in axes]))
        dev = x - x.mean(axis=axes, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            denom = x.dtype.type(max(count - ddof, 0.0))
            v = (dev * dev).sum(axis=axes, keepdims=True) / denom
            value = np.sqrt(v) if sqrt else v
        out = _node(np.asarray(value if keepdim else np.reshape(value, _reduced_shape(
            x.shape, axes))), (self,), name)
        if out.requires_grad:

            def backward(g):
                g = np.reshape(g, value.shape)
                with np.errstate(divide="ignore", invalid="ignore"):
                    if sqrt:
                        local = np.where(value == 0, 0.0, g / (denom * value))
                        dx = local * dev
                    else:
                        dx = (2.0 * g / denom) * dev
                self.accumulate_grad(dx.astype(x.dtype, copy=False), owned=True)

            out._backward = backward
        return out

    def amax(self, dim=None, keepdim: bool = False) -> Tensor:
        """The largest value over ``dim`` (int, tuple or None for all); the gradient is shared
        evenly by the elements that reach it (PyTorch's amax and ``max()``)."""
        return self._extreme(dim, keepdim, np.max, "amax")

    def amin(self, dim=None, keepdim: bool = False) -> Tensor:
        """The smallest value over ``dim``; ties share the gradient evenly."""
        return self._extreme(dim, keepdim, np.min, "amin")

    def _extreme(self, dim, keepdim, reduce, name) -> Tensor:
        x = self.data
        axes = _dims(dim, x.ndim)
        if x.size == 0:
            raise ValueError(f"{name}: the tensor of shape {x.shape} is empty")
        kept = reduce(x, axis=axes, keepdims=True)
        out = _node(np.asarray(kept if keepdim else kept.reshape(_reduced_shape(x.shape, axes))),
                    (self,), name)
        if out.requires_grad:
            hit = (x == kept) | (np.isnan(x) & np.isnan(kept))
            share = hit / hit.sum(axis=axes, keepdims=True)

            def backward(g):  # the max gate: routes g to the winners, split evenly on a tie
                self.accumulate_grad((np.reshape(g, kept.shape) * share).astype(x.dtype),
                                     owned=True)

            out._backward = backward
        return out

    def max(self, dim=None, keepdim: bool = False):
        """``max()``: the largest element (a 0-d Tensor); ``max(dim, keepdim=False)``: the
        pair ``(values, indices)`` along ``dim`` (indices of the first maximum, int64);
        ``max(other)``: the elementwise :func:`maximum`. As PyTorch's."""
        if dim is None:
            return self._extreme(None, False, np.max, "max")
        if isinstance(dim, (Tensor, np.ndarray)):
            return maximum(self, dim)
        return self._select(dim, keepdim, np.argmax, "max")

    def min(self, dim=None, keepdim: bool = False):
        """As :meth:`max`, for the smallest elements (``min(other)`` is :func:`minimum`)."""
        if dim is None:
            return self._extreme(None, False, np.min, "min")
        if isinstance(dim, (Tensor, np.ndarray)):
            return minimum(self, dim)
        return self._select(dim, keepdim, np.argmin, "min")

    def _select(self, dim, keepdim, arg, name):
        d = _dim(dim, self.ndim)
        x = self.data
        if x.ndim and x.shape[d] == 0:
            raise ValueError(f"{name}: dimension {dim} of shape {x.shape} is empty")
        idx = np.expand_dims(arg(x, axis=d), d) if x.ndim else np.zeros((), np.int64)
        values = np.take_along_axis(x, idx, axis=d) if x.ndim else x.copy()
        return _RESULTS[name](*self._gathered(values, idx, d, keepdim, name))

    def _gathered(self, values, idx, d, keepdim, name):
        """(values Tensor, indices Tensor) picked at ``idx`` along ``d``; the gradient of the
        values goes back to the picked positions (the router of the max gate)."""
        x = self.data
        if not keepdim and x.ndim:
            values, idx_out = np.squeeze(values, d), np.squeeze(idx, d)
        else:
            idx_out = idx
        out = _node(np.asarray(values), (self,), name)
        if out.requires_grad:

            def backward(g):
                full = np.zeros(x.shape, x.dtype)
                if x.ndim:
                    np.put_along_axis(full, idx, np.reshape(g, idx.shape), axis=d)
                else:
                    full[...] = g
                self.accumulate_grad(full, owned=True)

            out._backward = backward
        return out, _const(np.asarray(idx_out, dtype=np.int64))

    def argmax(self, dim=None, keepdim: bool = False) -> Tensor:
        """Index of the first largest element: over the flattened tensor (``dim=None``, a 0-d
        int64 Tensor) or along ``dim``."""
        if dim is None:
            return _const(np.asarray(np.argmax(self.data), dtype=np.int64))
        return _const(np.asarray(np.argmax(self.data, axis=_dim(dim, self.ndim),
                                           keepdims=keepdim), dtype=np.int64))

    def argmin(self, dim=None, keepdim: bool = False) -> Tensor:
        """Index of the first smallest element (see :meth:`argmax`)."""
        if dim is None:
            return _const(np.asarray(np.argmin(self.data), dtype=np.int64))
        return _const(np.asarray(np.argmin(self.data, axis=_dim(dim, self.ndim),
                                           keepdims=keepdim), dtype=np.int64))

    def sort(self, dim: int = -1, descending: bool = False):
        """``(values, indices)`` sorted along ``dim`` (a stable sort); the gradient of the
        values goes back to where each came from."""
        d = _dim(dim, self.ndim)
        x = self.data
        if x.ndim == 0:
            return _RESULTS["sort"](*self._gathered(x.copy(), np.zeros((), np.int64), 0, True,
                                                    "sort"))
        idx = np.argsort(-x if descending and x.dtype.kind != "b" else x, axis=d, kind="stable")
        values = np.take_along_axis(x, idx, axis=d)
        return _RESULTS["sort"](*self._gathered(values, idx, d, True, "sort"))

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
        """``(values, indices)`` of the ``k`` largest (or smallest) elements along ``dim``."""
        d = _dim(dim, self.ndim)
        n = self.shape[d] if self.ndim else 1
        if not 0 <= k <= n:
            raise ValueError(f"topk: k={k} is out of range for dimension {dim} of size {n}")
        x = self.data
        idx = np.argsort(-x if largest else x, axis=d, kind="stable")
        idx = np.take(idx, np.arange(k), axis=d)
        values = np.take_along_axis(x, idx, axis=d)
        return _RESULTS["topk"](*self._gathered(values, idx, d, True, "topk"))

    def logsumexp(self, dim, keepdim: bool = False) -> Tensor:
        """log(sum(exp(x))) over ``dim``, computed stably; local gradient softmax(x)."""
        _need_float(self, "logsumexp")
        x = self.data
        axes = _dims(dim, x.ndim)
        top = np.max(x, axis=axes, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0).astype(x.dtype)
        kept = np.log(np.sum(np.exp(x - top), axis=axes, keepdims=True)) + top
        out = _node(np.asarray(kept if keepdim else kept.reshape(_reduced_shape(x.shape, axes))),
                    (self,), "logsumexp")
        if out.requires_grad:

            def backward(g):
                self.accumulate_grad(np.reshape(g, kept.shape) * np.exp(x - kept), owned=True)

            out._backward = backward
        return out

    def softmax(self, dim: int) -> Tensor:
        """exp(x) / sum(exp(x)) along ``dim``."""
        return softmax(self, dim)

    def log_softmax(self, dim: int) -> Tensor:
        """x - logsumexp(x) along ``dim``."""
        return log_softmax(self, dim)

    # -------------------------------------------------------------------- reshaping
    def astype(self, dtype) -> Tensor:
        """The values cast to ``dtype`` (float32 or float64); the gradient is cast back."""
        dt = resolve_dtype(dtype)
        if dt == self.dtype:
            return self
        out = _node(self.data.astype(dt), (self,), "cast")
        if out.requires_grad:
            out._backward = lambda g: self.accumulate_grad(g.astype(self.dtype), owned=True)
        return out

    def to(self, *args, dtype=None, **kwargs) -> Tensor:
        """``to(dtype)``, ``to("cpu")``, ``to(other_tensor)``: fastnn computes on the CPU, so a
        device other than the CPU raises; a dtype casts (see :meth:`astype`)."""
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif isinstance(a, str) and not _is_dtype_name(a):
                _check_device(a)
            elif a is not None:
                dtype = a
        if kwargs.get("device") is not None:
            _check_device(kwargs["device"])
        return self if dtype is None else self._cast(dtype)

    def _cast(self, dtype) -> Tensor:
        dt = _tensor_dtype(dtype)
        if dt == self.dtype:
            return self
        if dt.kind == "f":
            return self.astype(dt)
        return _const(self.data.astype(dt))

    def float(self) -> Tensor:
        """Cast to float32."""
        return self._cast(np.float32)

    def double(self) -> Tensor:
        """Cast to float64."""
        return self._cast(np.float64)

    def long(self) -> Tensor:
        """Cast to int64 (no gradient flows through it)."""
        return self._cast(np.int64)

    def int(self) -> Tensor:
        """Cast to int32 (no gradient flows through it)."""
        return self._cast(np.int32)

    def bool(self) -> Tensor:
        """Cast to bool: nonzero is True."""
        return self._cast(np.bool_)

    def type_as(self, other: Tensor) -> Tensor:
        return self._cast(other.dtype)

    def cpu(self) -> Tensor:
        """The tensor itself: fastnn tensors live on the CPU."""
        return self

    def clone(self) -> Tensor:
        """A copy of the data that stays in the graph (the gradient passes through)."""
        out = _node(self.data.copy(), (self,), "clone")
        if out.requires_grad:
            out._backward = lambda g: self.accumulate_grad(g)
        return out

    def contiguous(self) -> Tensor:
        """The tensor itself (kernels make their inputs contiguous as they need)."""
        return self

    def reshape(self, *shape) -> Tensor:
        """The same values in a new shape (a view when NumPy can make one)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        src = self.shape
        out = _node(self.data.reshape(shape), (self,), "reshape")
        if out.requires_grad:
            out._backward = lambda g: self.accumulate_grad(g.reshape(src))
        return out

    def view(self, *shape) -> Tensor:
        """:meth:`reshape` (PyTorch's ``view``; it shares memory whenever NumPy can)."""
        if len(shape) == 1 and not isinstance(shape[0], (tuple, list, numbers.Integral)):
            raise TypeError(f"view(dtype) is not supported; view takes a shape, got {shape[0]!r}")
        return self.reshape(*shape)

    def view_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Dimensions ``start_dim`` to ``end_dim`` (inclusive) merged into one."""
        if self.ndim == 0:
            return self.reshape(1)
        start, end = _dim(start_dim, self.ndim), _dim(end_dim, self.ndim)
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        shape = self.shape[:start] + (int(np.prod(self.shape[start:end + 1])),) \
            + self.shape[end + 1:]
        return self.reshape(shape)

    def unflatten(self, dim: int, sizes) -> Tensor:
        """Dimension ``dim`` split into ``sizes`` (one entry may be -1)."""
        d = _dim(dim, self.ndim)
        return self.reshape(self.shape[:d] + tuple(sizes) + self.shape[d + 1:])

    def unsqueeze(self, dim: int) -> Tensor:
        """A new dimension of size 1 at ``dim`` (in [-ndim-1, ndim])."""
        d = _dim(dim, self.ndim + 1)
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def squeeze(self, dim=None) -> Tensor:
        """Dimensions of size 1 removed: all of them, or ``dim`` (an int or tuple) when its
        size is 1 (a dimension of another size is left as it is, as in PyTorch)."""
        axes = range(self.ndim) if dim is None else _dims(dim, self.ndim)
        if self.ndim == 0:
            return self
        drop = {a for a in axes if self.shape[a] == 1}
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if i not in drop))

    def permute(self, *axes) -> Tensor:
        """The axes reordered (``numpy.transpose(data, axes)``); the gradient is permuted back."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if sorted(_dim(a, self.ndim) for a in axes) != list(range(self.ndim)) \
                or len(axes) != self.ndim:
            raise ValueError(f"permute: {axes} is not a permutation of the {self.ndim} axes")
        axes = tuple(_dim(a, self.ndim) for a in axes)
        inverse = tuple(np.argsort(axes))
        out = _node(self.data.transpose(axes), (self,), "permute")
        if out.requires_grad:
            out._backward = lambda g: self.accumulate_grad(g.transpose(inverse))
        return out

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        """Dimensions ``dim0`` and ``dim1`` swapped."""
        order = list(range(self.ndim))
        a, b = _dim(dim0, self.ndim), _dim(dim1, self.ndim)
        order[a], order[b] = order[b], order[a]
        return self.permute(order) if self.ndim else self

    swapaxes = swapdims = transpose

    def t(self) -> Tensor:
        """The transpose of a matrix; 0-D and 1-D tensors are returned as they are."""
        if self.ndim > 2:
            raise ValueError(f"t() expects a tensor of at most 2 dimensions, got {self.ndim} "
                             "(use transpose(dim0, dim1) or permute)")
        return self.transpose(0, 1) if self.ndim == 2 else self

    def expand(self, *sizes) -> Tensor:
        """A broadcast (read-only) view to ``sizes``; -1 keeps a dimension. The gradient is
        summed back over the broadcast dimensions."""
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        lead = len(sizes) - self.ndim
        if lead < 0:
            raise ValueError(f"expand: {len(sizes)} sizes for a tensor of {self.ndim} dimensions")
        shape = tuple(self.shape[i - lead] if s == -1 and i >= lead else s
                      for i, s in enumerate(sizes))
        src = self.shape
        out = _node(np.broadcast_to(self.data, shape), (self,), "expand")
        if out.requires_grad:
            out._backward = lambda g: self.accumulate_grad(_unbroadcast(g, src))
        return out

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(other.shape)

    def repeat(self, *sizes) -> Tensor:
        """The tensor tiled ``sizes`` times along each dimension (``numpy.tile``)."""
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        if len(sizes) < self.ndim:
            raise ValueError(f"repeat: {len(sizes)} repeat counts for {self.ndim} dimensions")
        src = (1,) * (len(sizes) - self.ndim) + self.shape
        out = _node(np.tile(self.data.reshape(src), sizes), (self,), "repeat")
        if out.requires_grad:
            interleaved = tuple(v for r, n in zip(sizes, src, strict=True) for v in (r, n))

            def backward(g):  # each copy's gradient adds into the original
                summed = g.reshape(interleaved).sum(axis=tuple(range(0, len(interleaved), 2)))
                self.accumulate_grad(summed.reshape(self.shape), owned=True)

            out._backward = backward
        return out

    def split(self, split_size_or_sections, dim: int = 0) -> tuple[Tensor, ...]:
        """Pieces along ``dim`` of ``split_size`` each (the last may be smaller), or of the
        sizes listed."""
        d = _dim(dim, self.ndim)
        n = self.shape[d]
        if isinstance(split_size_or_sections, numbers.Integral):
            step = int(split_size_or_sections)
            if step <= 0:
                raise ValueError(f"split: split_size must be positive, got {step}")
            bounds = list(range(0, n, step)) + [n]
        else:
            sizes = [int(v) for v in split_size_or_sections]
            if sum(sizes) != n:
                raise ValueError(f"split: sizes {sizes} do not add up to {n}, the size of "
                                 f"dimension {dim}")
            bounds = [0, *np.cumsum(sizes).tolist()]
        lead = (slice(None),) * d
        return tuple(self[lead + (slice(lo, hi),)] for lo, hi in zip(bounds[:-1], bounds[1:],
                                                                     strict=True))

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        """``chunks`` pieces along ``dim`` (of ceil(n / chunks) each, the last smaller)."""
        n = self.shape[_dim(dim, self.ndim)]
        return self.split(max(1, -(-n // int(chunks))), dim)

    def __getitem__(self, index) -> Tensor:
        """NumPy indexing and slicing; the gradient is scattered back (repeated indices add).
        Index with ints, slices, bool masks and integer arrays or Tensors."""
        index = _index(index)
        out = _node(np.asarray(self.data[index]), (self,), "index")
        if out.requires_grad:
            shape, dtype = self.shape, self.dtype

            def backward(g):  # the router of the selected elements, like the max gate
                full = np.zeros(shape, dtype)
                np.add.at(full, index, g)
                self.accumulate_grad(full, owned=True)

            out._backward = backward
        return out

    @property
    def T(self) -> Tensor:
        """The tensor with its axes reversed."""
        out = _node(self.data.T, (self,), "transpose")
        if out.requires_grad:
            out._backward = lambda g: self.accumulate_grad(g.T)
        return out

    @property
    def mT(self) -> Tensor:
        """The last two dimensions swapped (a batch of matrices transposed)."""
        return self.transpose(-2, -1)

    # ---------------------------------------------------------------- in place
    def _in_place(self, name: str) -> None:
        """PyTorch's rule: a leaf that requires grad may change in place only under no_grad.
        fastnn also refuses tensors inside a graph (PyTorch tracks their versions)."""
        if _grad_enabled and self.requires_grad:
            what = "a leaf Tensor that requires grad" if self._backward is None \
                else "a Tensor inside the graph"
            raise RuntimeError(
                f"{name}: {what} cannot be changed in place; do it under `with fnn.no_grad():` "
                "(e.g. a manual update step) or build a new tensor (x = x + y)"
            )

    def _update(self, other, ufunc, name: str) -> Tensor:
        self._in_place(name)
        if isinstance(other, Tensor) and other.requires_grad and _grad_enabled:
            raise RuntimeError(f"{name}: the other operand requires grad; fastnn does not "
                               "record in-place operations (use x = x + y)")
        ufunc(self.data, _lift(other, self).data, out=self.data, casting="same_kind")
        return self

    def _augmented(self, other, ufunc, name: str, out_of_place) -> Tensor:
        """``x += y`` and friends: in place when no gradient is involved (a parameter update
        under no_grad changes the parameter, as in PyTorch); inside a graph, a new node
        (the name is rebound to ``x + y``); on a leaf that requires grad, an error."""
        involved = _grad_enabled and (self.requires_grad or (
            isinstance(other, Tensor) and other.requires_grad))
        if not involved:
            return self._update(other, ufunc, name)
        if self._backward is None and self.requires_grad:
            self._in_place(name)
        return out_of_place(self, other)

    def __iadd__(self, other) -> Tensor:
        return self._augmented(other, np.add, "+=", Tensor.__add__)

    def __isub__(self, other) -> Tensor:
        return self._augmented(other, np.subtract, "-=", Tensor.__sub__)

    def __imul__(self, other) -> Tensor:
        return self._augmented(other, np.multiply, "*=", Tensor.__mul__)

    def __itruediv__(self, other) -> Tensor:
        return self._augmented(other, np.true_divide, "/=", Tensor.__truediv__)

    def add_(self, other, *, alpha=1) -> Tensor:
        """In place ``self += alpha * other`` (no gradient; see :meth:`_in_place`)."""
        return self._update(other if alpha == 1 else _lift(other, self).data * alpha, np.add,
                            "add_")

    def sub_(self, other, *, alpha=1) -> Tensor:
        return self._update(other if alpha == 1 else _lift(other, self).data * alpha,
                            np.subtract, "sub_")

    def mul_(self, other) -> Tensor:
        return self._update(other, np.multiply, "mul_")

    def div_(self, other) -> Tensor:
        return self._update(other, np.true_divide, "div_")

    def zero_(self) -> Tensor:
        """Fill with zeros, in place."""
        return self.fill_(0)

    def fill_(self, value) -> Tensor:
        """Fill with ``value``, in place."""
        self._in_place("fill_")
        self.data[...] = value.data if isinstance(value, Tensor) else value
        return self

    def copy_(self, src) -> Tensor:
        """Copy ``src`` (broadcast to this shape) into this tensor, in place."""
        self._in_place("copy_")
        np.copyto(self.data, src.data if isinstance(src, Tensor) else np.asarray(src),
                  casting="same_kind")
        return self

    def clamp_(self, min=None, max=None) -> Tensor:
        self._in_place("clamp_")
        np.copyto(self.data, clamp(_const(self.data), min, max).data)
        return self

    def __setitem__(self, index, value) -> None:
        """``t[index] = value`` in place (on tensors outside a graph, or under no_grad)."""
        self._in_place("item assignment")
        self.data[_index(index)] = value.data if isinstance(value, Tensor) else value

    def masked_fill(self, mask, value) -> Tensor:
        """``value`` where ``mask`` (bool, broadcast) is True, else this tensor's values; the
        gradient flows to the elements kept."""
        return where(mask, value, self)

    # --------------------------------------------------------------- unary functions
    def exp(self) -> Tensor:
        return exp(self)

    def log(self) -> Tensor:
        return log(self)

    def sqrt(self) -> Tensor:
        return sqrt(self)

    def abs(self) -> Tensor:
        """Elementwise |x|; local gradient sign(x) (0 at 0, as PyTorch)."""
        out = _node(np.abs(self.data), (self,), "abs")
        if out.requires_grad:
            local = np.sign(self.data)
            out._backward = lambda g: self.accumulate_grad(g * local, owned=True)
        return out

    def clamp(self, min=None, max=None) -> Tensor:
        return clamp(self, min, max)

    clip = clamp

    def sigmoid(self) -> Tensor:
        return sigmoid(self)

    def tanh(self) -> Tensor:
        return tanh(self)

    def relu(self) -> Tensor:
        return relu(self)

    # ------------------------------------------------ more elementwise and reductions
    def _unary(self, value: np.ndarray, local, op: str) -> Tensor:
        """A node y = f(x) whose local gradient is ``local()`` (computed only if needed)."""
        out = _node(value, (self,), op)
        if out.requires_grad:
            d = local()
            out._backward = lambda g: self.accumulate_grad(g * d, owned=True)
        return out

    def square(self) -> Tensor:
        """x * x; local gradient 2x."""
        x = self.data
        return self._unary(x * x, lambda: 2 * x, "square")

    def reciprocal(self) -> Tensor:
        """1 / x; local gradient -1/x^2."""
        x = _as_float_tensor(self)
        with np.errstate(divide="ignore"):
            y = 1 / x.data
        return x._unary(y, lambda: -y * y, "reciprocal")

    def rsqrt(self) -> Tensor:
        """1 / sqrt(x); local gradient -1/(2 x^1.5)."""
        x = _as_float_tensor(self)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = 1 / np.sqrt(x.data)
        return x._unary(y, lambda: -0.5 * y * y * y, "rsqrt")

    def log1p(self) -> Tensor:
        """log(1 + x), accurate near 0; local gradient 1 / (1 + x)."""
        x = _as_float_tensor(self)
        return x._unary(np.log1p(x.data), lambda: 1 / (1 + x.data), "log1p")

    def expm1(self) -> Tensor:
        """exp(x) - 1, accurate near 0; local gradient exp(x)."""
        x = _as_float_tensor(self)
        return x._unary(np.expm1(x.data), lambda: np.exp(x.data), "expm1")

    def sin(self) -> Tensor:
        x = _as_float_tensor(self)
        return x._unary(np.sin(x.data), lambda: np.cos(x.data), "sin")

    def cos(self) -> Tensor:
        x = _as_float_tensor(self)
        return x._unary(np.cos(x.data), lambda: -np.sin(x.data), "cos")

    def _stepwise(self, fn, op: str) -> Tensor:
        """A piecewise-constant function: its gradient is 0 (as PyTorch's)."""
        return self._unary(fn(self.data), lambda: np.zeros_like(self.data), op)

    def sign(self) -> Tensor:
        return self._stepwise(np.sign, "sign")

    def round(self) -> Tensor:
        """Rounded to the nearest integer, halves to even (as PyTorch)."""
        return self._stepwise(np.round, "round")

    def floor(self) -> Tensor:
        return self._stepwise(np.floor, "floor")

    def ceil(self) -> Tensor:
        return self._stepwise(np.ceil, "ceil")

    def cumsum(self, dim: int) -> Tensor:
        """Running sums along ``dim``; the gradient is the reversed running sum of g."""
        d = _dim(dim, self.ndim)
        out = _node(np.cumsum(self.data, axis=d) if self.ndim else self.data.copy(), (self,),
                    "cumsum")
        if out.requires_grad:

            def backward(g):
                if self.ndim == 0:
                    self.accumulate_grad(g)
                    return
                rev = np.flip(np.cumsum(np.flip(g, axis=d), axis=d), axis=d)
                self.accumulate_grad(np.ascontiguousarray(rev), owned=True)

            out._backward = backward
        return out

    def prod(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """The product of all elements, or along ``dim``; the gradient of each element is the
        product of the others (computed without dividing, so zeros are exact)."""
        x = self.data
        if dim is None:
            flat = self.reshape(-1) if self.ndim != 1 else self
            return flat.prod(0) if x.size else _const(np.asarray(1, x.dtype))
        d = _dim(dim, self.ndim)
        kept = np.prod(x, axis=d, keepdims=True) if x.ndim else x
        out = _node(np.asarray(kept if keepdim or not x.ndim else np.squeeze(kept, d)), (self,),
                    "prod")
        if out.requires_grad:

            def backward(g):
                if x.ndim == 0:
                    self.accumulate_grad(g)
                    return
                ones = np.ones_like(np.take(x, [0], axis=d))
                left = np.cumprod(np.concatenate([ones, np.take(x, np.arange(x.shape[d] - 1),
                                                                axis=d)], axis=d), axis=d)
                right = np.flip(np.cumprod(np.concatenate(
                    [ones, np.take(np.flip(x, axis=d), np.arange(x.shape[d] - 1), axis=d)],
                    axis=d), axis=d), axis=d)
                self.accumulate_grad(np.reshape(g, kept.shape) * left * right, owned=True)

            out._backward = backward
        return out

    def norm(self, p=2, dim=None, keepdim: bool = False) -> Tensor:
        """The p-norm over ``dim`` (None: all elements): p = 2 (default), 1, inf or any
        p > 0; the gradient is 0 where the norm is 0 (as PyTorch)."""
        _need_float(self, "norm")
        if p in ("fro", 2, 2.0):
            ss = (self * self).sum(dim=dim, keepdim=keepdim)
            return ss._safe_root(2.0, self, dim, keepdim)
        if p in (1, 1.0):
            return self.abs().sum(dim=dim, keepdim=keepdim)
        if p == np.inf:
            return self.abs().amax(dim=dim, keepdim=keepdim)
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not p > 0:
            raise ValueError(f"norm: p must be a positive number, inf or 'fro', got {p!r}")
        return (self.abs() ** p).sum(dim=dim, keepdim=keepdim)._safe_root(float(p), self, dim,
                                                                          keepdim)

    def _safe_root(self, p: float, x: Tensor, dim, keepdim) -> Tensor:
        """s ** (1/p) for the sums s of a p-norm, with gradient 0 where s is 0."""
        s = self.data
        y = s ** (1.0 / p)
        out = _node(np.asarray(y), (self,), "norm")
        if out.requires_grad:

            def backward(g):
                with np.errstate(divide="ignore", invalid="ignore"):
                    local = np.where(s == 0, 0.0, y / (p * s))
                self.accumulate_grad(np.asarray(g * local, dtype=s.dtype), owned=True)

            out._backward = backward
        return out

    def narrow(self, dim: int, start: int, length: int) -> Tensor:
        """``length`` entries of dimension ``dim`` from ``start``."""
        d = _dim(dim, self.ndim)
        start = start + self.shape[d] if start < 0 else start
        return self[(slice(None),) * d + (slice(start, start + length),)]

    def index_select(self, dim: int, index) -> Tensor:
        """The entries at the integer ``index`` (1-D) along ``dim``."""
        d = _dim(dim, self.ndim)
        idx = np.asarray(index.data if isinstance(index, Tensor) else index)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise TypeError(f"index_select: index must be a 1-D integer tensor, got dtype "
                            f"{idx.dtype} and shape {idx.shape}")
        return self[(slice(None),) * d + (idx,)]

    def gather(self, dim: int, index) -> Tensor:
        """out[i][j] = self[index[i][j]][j] (for dim 0; likewise for any dim): PyTorch's
        gather, ``index`` an integer tensor of the same number of dimensions."""
        d = _dim(dim, self.ndim)
        idx = np.asarray(index.data if isinstance(index, Tensor) else index)
        if idx.dtype.kind not in "iu" or idx.ndim != self.ndim:
            raise TypeError(f"gather: index must be an integer tensor with {self.ndim} "
                            f"dimensions, got dtype {idx.dtype} and shape {idx.shape}")
        x = self.data
        if any(n > x.shape[k] for k, n in enumerate(idx.shape) if k != d):
            raise ValueError(f"gather: index of shape {idx.shape} is larger than the input "
                             f"{x.shape} outside dimension {dim}")
        grid = list(np.indices(idx.shape, sparse=True))
        grid[d] = idx
        grid = tuple(grid)
        out = _node(x[grid], (self,), "gather")
        if out.requires_grad:

            def backward(g):  # scatter-add back: repeated indices add up
                full = np.zeros(x.shape, x.dtype)
                np.add.at(full, grid, g)
                self.accumulate_grad(full, owned=True)

            out._backward = backward
        return out

    def nonzero(self) -> Tensor:
        """The indices of the nonzero elements, (count, ndim) int64."""
        return _const(np.argwhere(self.data).astype(np.int64))

    def __getattr__(self, name: str):
        hint = _TENSOR_ABSENT.get(name)
        if hint is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        raise AttributeError(f"fastnn's Tensor has no '{name}': {hint}")


# ---------------------------------------------------------------------- helpers
def node(data: np.ndarray, parents: tuple[Tensor, ...], op: str) -> Tensor:
    """A new graph node holding ``data``, computed by ``op`` from ``parents``.

    It records its parents only when a gradient can flow through it (some parent requires
    grad, outside ``no_grad``); then ``out.requires_grad`` is True and the op installs its
    local gradient with ``out.set_backward(fn)``, where ``fn(g)`` receives d(loss)/d(out)
    and passes each parent its share with ``parent.accumulate_grad(...)``. This is how the
    layers and losses outside this module add their ops (the extension protocol).
    """
    out = Tensor.__new__(Tensor)
    out.data = data
    out.grad = None
    out._backward = None
    needs = False
    if _grad_enabled:
        for p in parents:  # (a loop, not any() over a generator: every op pays this)
            if p.requires_grad:
                needs = True
                break
    out.requires_grad = needs
    out._parents = parents if needs else ()
    out._op = op if needs else ""
    return out


_node = node  # the short name used throughout this module


def _const(data) -> Tensor:
    """A Tensor holding ``data`` as it is (any real, integer or bool dtype), outside the
    graph: comparison results, indices, integer tensors."""
    out = Tensor.__new__(Tensor)
    out.data = data if isinstance(data, np.ndarray) else np.asarray(data)
    out.grad = None
    out._backward = None
    out.requires_grad = False
    out._parents = ()
    out._op = ""
    return out


_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward.")


def _freed(g) -> None:
    """The backward of a node whose saved values a non-retaining backward released."""
    raise RuntimeError(_FREED_MESSAGE)


def _topological_order(roots) -> list[Tensor]:
    """The operation nodes (those with a backward) that ``roots`` depend on, each after all
    the nodes it was computed from. Leaves need no place in the order: their gradients
    arrive through their consumers' backward. Iterative, so a deep graph cannot hit Python's
    recursion limit."""
    if len(roots) == 1:
        order = _path_order(roots[0])
        if order is not None:
            return order
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(r, False) for r in reversed(roots)
                                        if r._backward is not None]
    while stack:
        nd, done = stack.pop()
        if done:
            order.append(nd)
            continue
        if id(nd) in visited:
            continue
        visited.add(id(nd))
        stack.append((nd, True))
        for parent in nd._parents:
            if parent._backward is not None and id(parent) not in visited:
                stack.append((parent, False))
    return order


def _path_order(root: Tensor) -> list[Tensor] | None:
    """The order of a graph whose op nodes form one path (each node computed from at most
    one other op node): a training step's ``loss(model(x))`` with its model one fused node,
    or a plain chain of layers. None for any other graph (then the general walk). Why apart:
    this walk needs no visited set and no stack (measured: 1.5 µs against 4 µs a step)."""
    order = []
    nd = root if root._backward is not None else None
    while nd is not None:
        order.append(nd)
        nxt = None
        for parent in nd._parents:
            if parent._backward is not None:
                if nxt is not None:
                    return None
                nxt = parent
        nd = nxt
    order.reverse()
    return order


class _Ones(dict):
    """A 0-d 1 of each dtype (the seed of a scalar's backward, copied)."""

    def __missing__(self, dtype):
        one = self[dtype] = np.ones((), dtype)
        return one


_ONE = _Ones()


def _seed(root: Tensor, gradient) -> np.ndarray:
    if not root.requires_grad:
        raise RuntimeError(
            "backward() on a tensor that does not require grad: no input of the "
            "computation had requires_grad=True (or it ran under no_grad())"
        )
    if gradient is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward() without a gradient needs a scalar (one-element) tensor, got "
                f"shape {root.shape}; pass gradient= of that shape or reduce first (.sum())"
            )
        return np.array(1, dtype=root.data.dtype).reshape(root.data.shape)
    seed = np.asarray(gradient.data if isinstance(gradient, Tensor) else gradient)
    if seed.shape != root.shape:
        raise ValueError(
            f"backward(gradient): gradient has shape {seed.shape}, "
            f"expected the tensor's shape {root.shape}"
        )
    return seed.astype(root.dtype, copy=True)


def _leaves(order: list[Tensor], roots) -> list[Tensor]:
    """The leaves that require grad under the nodes ``order`` (and roots that are leaves)."""
    seen: set[int] = set()
    leaves = []
    for t in [*roots, *(p for nd in order for p in nd._parents)]:
        if t._backward is None and t.requires_grad and id(t) not in seen:
            seen.add(id(t))
            leaves.append(t)
    return leaves


def _as_tensor_list(tensors, what: str) -> list[Tensor]:
    items = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    for t in items:
        if not isinstance(t, Tensor):
            raise TypeError(f"{what} must be Tensors, got {type(t).__name__}")
    return items


def run_backward(roots, gradients, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs=None) -> None:
    """The backward walk behind ``Tensor.backward`` and ``fastnn.autograd``: seed each root
    with its gradient (None: 1 for a one-element root), call every node's backward once in
    reverse topological order, then free the nodes' saved values unless ``retain_graph``.

    ``inputs``: accumulate only into these tensors; every other leaf that requires grad is
    switched off (``requires_grad`` False, which every node's backward checks before it
    hands a leaf its share) for the walk and restored after it.
    """
    if create_graph:
        raise NotImplementedError(
            "backward(create_graph=True): fastnn computes gradients as arrays, not as a "
            "graph, so gradients of gradients (higher-order derivatives) are not available; "
            "fnn.gradcheck checks first derivatives")
    if retain_graph is None:
        retain_graph = create_graph
    roots = list(roots)
    if len(roots) == 1 and inputs is None and gradients[0] is None:
        # ``loss.backward()``, a training loop's every step: the same walk, fewer steps
        root = roots[0]
        if root.requires_grad and root.data.size == 1:
            order = _topological_order(roots)
            for nd in order:
                nd.grad = None  # gradients of intermediate nodes are per call
            seed = _ONE[root.data.dtype].reshape(root.data.shape).copy()
            if root.grad is None and type(root) is Tensor:
                root.grad = seed  # (accumulate_grad's first assignment of an owned array)
            else:
                root.accumulate_grad(seed, owned=True)
            for nd in reversed(order):
                if nd.grad is not None:
                    nd._backward(nd.grad)
            if not retain_graph:
                for nd in order:
                    nd._backward = _freed  # drops the closure and the values it saved
            return
    seeds = [_seed(r, g) for r, g in zip(roots, gradients, strict=True)]
    order = _topological_order(roots)
    switched: list[Tensor] = []
    if inputs is not None:
        wanted = _as_tensor_list(inputs, "backward(inputs=...)")
        if not wanted:
            raise RuntimeError("backward(inputs=...): 'inputs' argument to backward() cannot "
                               "be empty")
        for t in wanted:
            if not t.requires_grad:
                raise RuntimeError("backward(inputs=...): every input must require grad")
        keep = {id(t) for t in wanted}
        switched = [t for t in _leaves(order, roots) if id(t) not in keep]
    for nd in order:
        nd.grad = None  # gradients of intermediate nodes are per call
    for t in switched:
        t.requires_grad = False
    try:
        for root, seed in zip(roots, seeds, strict=True):
            if root.requires_grad:
                root.accumulate_grad(seed, owned=True)
        for nd in reversed(order):
            if nd.grad is not None:
                nd._backward(nd.grad)
    finally:
        for t in switched:
            t.requires_grad = True
    if not retain_graph:
        for nd in order:
            nd._backward = _freed  # drops the closure and the values it saved


_RESULTS = {name: namedtuple(name, ["values", "indices"]) for name in ("max", "min", "sort",
                                                                        "topk")}

#: Tensor attributes that PyTorch has and fastnn does not, with what to use instead.
_TENSOR_ABSENT = {
    "cuda": "fastnn computes on the CPU only (.cpu() and .to('cpu') are accepted)",
    "half": "fastnn computes in float32 or float64 (.float(), .double())",
    "bfloat16": "fastnn computes in float32 or float64 (.float(), .double())",
    "grad_fn": "a tensor made by an operation has is_leaf False; backward() needs no grad_fn",
    "register_hook": "fastnn has no gradient hooks; read .grad of any tensor after backward()",
    "storage": "the values are the NumPy array .data",
    "data_ptr": "the values are the NumPy array .data",
}


def _dim(dim, ndim: int) -> int:
    """``dim`` as a non-negative axis of a tensor of ``ndim`` dimensions (PyTorch's rule: a
    0-d tensor accepts 0 and -1)."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim must be an integer, got {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return int(dim) % n if ndim else 0


def _dims(dim, ndim: int) -> tuple[int, ...] | None:
    """None (all), or the axes ``dim`` names (an int or a sequence) as a tuple, each once."""
    if dim is None:
        return None
    axes = tuple(_dim(d, ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,)))
    if len(set(axes)) != len(axes):
        raise ValueError(f"dim {dim} names a dimension twice")
    if ndim == 0:
        return None
    return axes


def _kept_shape(shape, axes) -> tuple[int, ...]:
    """``shape`` with the reduced ``axes`` (None: all) kept as size 1."""
    return tuple(1 if axes is None or i in axes else n for i, n in enumerate(shape))


def _reduced_shape(shape, axes) -> tuple[int, ...]:
    """``shape`` without the reduced ``axes`` (None: all)."""
    return tuple(n for i, n in enumerate(shape) if axes is not None and i not in axes)


def _axis_args(axis, keepdims, dim, keepdim):
    """NumPy's (axis, keepdims) from either spelling; PyTorch's dim/keepdim win if given."""
    if dim is not None:
        if axis is not None and axis != dim:
            raise TypeError(f"give axis or dim, not both (got axis={axis}, dim={dim})")
        axis = dim
    return (tuple(axis) if isinstance(axis, list) else axis,
            bool(keepdim) if keepdim is not None else keepdims)


def _need_float(x: Tensor, fn: str) -> None:
    if x.dtype.kind != "f":
        raise TypeError(f"{fn}() needs a floating tensor, got {x.dtype} (use .float() first, "
                        "e.g. (pred == y).float().mean())")


def _index(index):
    """An index with Tensors in it (masks, integer indices) as NumPy's."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _lift(value, like: Tensor) -> Tensor:
    """``value`` as a Tensor to combine with ``like``: Python numbers take ``like``'s dtype
    where their kind fits in it (PyTorch's rule for scalars: ``float32_t * 2.5`` is float32,
    ``int_t * 2.5`` the default float dtype); arrays keep their dtype."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (bool, np.bool_)):
        return _const(np.asarray(value, dtype=like.dtype))
    if isinstance(value, numbers.Integral):
        return _const(np.asarray(value, dtype=np.int64 if like.dtype.kind == "b" else like.dtype))
    if isinstance(value, numbers.Real):
        dt = like.dtype if like.dtype.kind == "f" else get_default_dtype()
        return _const(np.asarray(value, dtype=dt))
    arr = np.asarray(value)
    if arr.dtype.kind in "biu":
        return _const(arr)
    return Tensor(value)


def _operands(a: Tensor, b: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The two data arrays of a binary operation; a bool or integer one is cast to the other's
    floating dtype (PyTorch's promotion; NumPy would make float32 and int64 float64)."""
    x, y = a.data, b.data
    fx, fy = x.dtype.kind == "f", y.dtype.kind == "f"
    if fx and not fy:
        y = y.astype(x.dtype)
    elif fy and not fx:
        x = x.astype(y.dtype)
    return x, y


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


def _as_float_tensor(x) -> Tensor:
    """``x`` as a floating Tensor: integer and bool Tensors become the default float dtype."""
    x = _as_tensor(x)
    return x if x.dtype.kind == "f" else _const(x.data.astype(get_default_dtype()))


_DTYPE_NAMES = {"float32", "float64", "float", "double", "int64", "long", "int32", "int", "bool",
                "uint8", "int8", "int16"}


def _is_dtype_name(name: str) -> bool:
    return name in _DTYPE_NAMES


def _check_device(device) -> None:
    name = str(device)
    if name != "cpu" and not name.startswith("cpu:"):
        raise ValueError(f"device {name!r}: fastnn computes on the CPU only ('cpu')")


def _tensor_dtype(dtype) -> np.dtype:
    """A dtype a Tensor may hold: float32, float64, integers or bool."""
    aliases = {"float": np.float32, "double": np.float64, "long": np.int64, "int": np.int32}
    try:
        dt = np.dtype(aliases.get(dtype, dtype) if isinstance(dtype, str) else dtype)
    except TypeError as exc:
        raise TypeError(f"not a dtype: {dtype!r}") from exc
    if dt.kind == "f":
        return resolve_dtype(dt)
    if dt.kind not in "biu":
        raise TypeError(f"dtype must be float32, float64, an integer type or bool, got {dt}")
    return dt


# --------------------------------------------------------------- functions of tensors
def exp(x) -> Tensor:
    """Elementwise e**x; its local gradient is its own output."""
    x = _as_float_tensor(x)
    y = np.exp(x.data)
    out = _node(y, (x,), "exp")
    if out.requires_grad:
        out._backward = lambda g: x.accumulate_grad(g * y, owned=True)
    return out


def log(x) -> Tensor:
    """Elementwise natural logarithm; local gradient 1/x."""
    x = _as_float_tensor(x)
    out = _node(np.log(x.data), (x,), "log")
    if out.requires_grad:
        local = 1.0 / x.data
        out._backward = lambda g: x.accumulate_grad(g * local, owned=True)
    return out


def sqrt(x) -> Tensor:
    """Elementwise square root; local gradient 1 / (2 sqrt(x))."""
    x = _as_float_tensor(x)
    y = np.sqrt(x.data)
    out = _node(y, (x,), "sqrt")
    if out.requires_grad:
        with np.errstate(divide="ignore"):
            local = 0.5 / y
        out._backward = lambda g: x.accumulate_grad(g * local, owned=True)
    return out


def clamp(x, min=None, max=None) -> Tensor:
    """Elementwise ``min(max(x, min), max)``; bounds are numbers or Tensors (broadcast).

    Gradients as PyTorch's: x gets g where min <= x <= max; a Tensor ``min`` gets it where
    x < min (and min < max), a Tensor ``max`` where x > max (or max < min).
    """
    x = _as_tensor(x)
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min and max")
    if x.dtype.kind != "f" and any(isinstance(b, float) or (isinstance(b, Tensor) and
                                                          b.dtype.kind == "f")
                                   for b in (min, max)):
        x = _as_float_tensor(x)  # integers clamped to floating bounds become floating
    lo = None if min is None else _lift(min, x)
    hi = None if max is None else _lift(max, x)
    v = x.data
    lo_v = None if lo is None else _operands(x, lo)[1]
    hi_v = None if hi is None else _operands(x, hi)[1]
    y = v
    if lo_v is not None:
        y = np.maximum(y, lo_v)
    if hi_v is not None:
        y = np.minimum(y, hi_v)
    parents = tuple(t for t in (x, lo, hi) if t is not None)
    out = _node(np.asarray(y, dtype=np.result_type(v, y)), parents, "clamp")
    if out.requires_grad:
        keep = np.ones(v.shape, bool)
        if lo_v is not None:
            keep = keep & (v >= lo_v)
        if hi_v is not None:
            keep = keep & (v <= hi_v)

        def backward(g):
            if x.requires_grad:
                x.accumulate_grad(_unbroadcast(np.where(keep, g, 0.0), v.shape).astype(v.dtype),
                              owned=True)
            if lo is not None and lo.requires_grad:
                hit = v < lo_v if hi_v is None else (v < lo_v) & (lo_v < hi_v)
                lo.accumulate_grad(_unbroadcast(np.where(hit, g, 0.0), lo_v.shape), owned=True)
            if hi is not None and hi.requires_grad:
                hit = v > hi_v if lo_v is None else (v > hi_v) | (hi_v < lo_v)
                hi.accumulate_grad(_unbroadcast(np.where(hit, g, 0.0), hi_v.shape), owned=True)

        out._backward = backward
    return out


clip = clamp


def _max_gate(a, b, op: str, larger: bool) -> Tensor:
    if not isinstance(a, Tensor):
        a = _lift(a, b) if isinstance(b, Tensor) else Tensor(a)
    b = _lift(b, a)
    x, y = _operands(a, b)
    out = _node(np.maximum(x, y) if larger else np.minimum(x, y), (a, b), op)
    if out.requires_grad:
        # The router's switch, computed in the forward pass: the share that goes to ``a``.
        wins = x > y if larger else x < y
        share_a = np.where(wins, 1.0, np.where(x == y, 0.5, 0.0)).astype(out.data.dtype)

        def backward(g):
            if a.requires_grad:
                a.accumulate_grad(_unbroadcast(g * share_a, x.shape), owned=True)
            if b.requires_grad:
                b.accumulate_grad(_unbroadcast(g * (1.0 - share_a), y.shape), owned=True)

        out._backward = backward
    return out


def maximum(a, b) -> Tensor:
    """Elementwise maximum with broadcasting: the max gate, which routes the gradient.

    The whole gradient goes to the larger input; where the inputs are equal it is split
    half and half (PyTorch's ``torch.maximum`` does the same), so that the total that flows
    back is always the gradient that came in.
    """
    return _max_gate(a, b, "maximum", True)


def minimum(a, b) -> Tensor:
    """Elementwise minimum with broadcasting; the gradient goes to the smaller input (split
    half and half on a tie, as ``torch.minimum``)."""
    return _max_gate(a, b, "minimum", False)


def where(condition, input=None, other=None):
    """``input`` where ``condition`` (bool, broadcast) holds, else ``other`` (Tensors or
    numbers); each gets the gradient of the elements it supplied. ``where(condition)``
    alone gives the indices of the True elements (a tuple of int64 Tensors, one per dim)."""
    c = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if c.dtype.kind != "b":
        raise TypeError(f"where: condition must be bool (a comparison or mask), got {c.dtype}")
    if input is None and other is None:
        return tuple(_const(i.astype(np.int64)) for i in np.nonzero(c))
    if input is None or other is None:
        raise TypeError("where: give both input and other, or neither")
    if not isinstance(input, Tensor):
        input = _lift(input, other) if isinstance(other, Tensor) else \
            _lift(input, _const(np.asarray(0.0, get_default_dtype())))
    other = _lift(other, input)
    x, y = _operands(input, other)
    out = _node(np.where(c, x, y), (input, other), "where")
    if out.requires_grad:

        def backward(g):
            zero = np.zeros((), g.dtype)
            if input.requires_grad:
                input.accumulate_grad(_unbroadcast(np.where(c, g, zero), x.shape), owned=True)
            if other.requires_grad:
                other.accumulate_grad(_unbroadcast(np.where(c, zero, g), y.shape), owned=True)

        out._backward = backward
    return out


def _common(tensors, fn: str) -> list[Tensor]:
    """The Tensors of ``tensors`` (numbers and arrays lifted), in one dtype (floating wins)."""
    ts = list(tensors)
    if not ts:
        raise ValueError(f"{fn}: expected a non-empty sequence of tensors")
    first = next((t for t in ts if isinstance(t, Tensor)), None)
    ts = [t if isinstance(t, Tensor) else (_lift(t, first) if first is not None else
                                           Tensor(t)) for t in ts]
    floats = [t.dtype for t in ts if t.dtype.kind == "f"]
    if floats:
        dt = np.result_type(*floats)
        ts = [t if t.dtype == dt else (t.astype(dt) if t.dtype.kind == "f"
                                       else _const(t.data.astype(dt))) for t in ts]
    return ts


def cat(tensors, dim: int = 0) -> Tensor:
    """The tensors joined along the existing dimension ``dim`` (shapes agree elsewhere); each
    gets its slice of the gradient."""
    ts = _common(tensors, "cat")
    if any(t.ndim == 0 for t in ts):
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated (use stack)")
    d = _dim(dim, ts[0].ndim)
    try:
        data = np.concatenate([t.data for t in ts], axis=d)
    except ValueError as exc:
        raise ValueError(f"cat: shapes {[t.shape for t in ts]} do not fit along dim {dim} "
                         f"({exc})") from None
    out = _node(data, tuple(ts), "cat")
    if out.requires_grad:
        bounds = np.cumsum([0] + [t.shape[d] for t in ts]).tolist()
        lead = (slice(None),) * d

        def backward(g):
            for t, lo, hi in zip(ts, bounds[:-1], bounds[1:], strict=True):
                if t.requires_grad:
                    # a copy of the slice (2.5x faster than np.take with a range of indices:
                    # 5 embeddings of TabularMLP, 130 -> 50 µs)
                    t.accumulate_grad(g[(*lead, slice(lo, hi))].copy(), owned=True)

        out._backward = backward
    return out


concat = concatenate = cat


def stack(tensors, dim: int = 0) -> Tensor:
    """The tensors (all of one shape) stacked along a new dimension ``dim``."""
    ts = _common(tensors, "stack")
    d = _dim(dim, ts[0].ndim + 1)
    if len({t.shape for t in ts}) != 1:
        raise ValueError(f"stack: every tensor must have the same shape, got "
                         f"{[t.shape for t in ts]}")
    out = _node(np.stack([t.data for t in ts], axis=d), tuple(ts), "stack")
    if out.requires_grad:

        def backward(g):
            for i, t in enumerate(ts):
                if t.requires_grad:
                    t.accumulate_grad(np.take(g, i, axis=d))

        out._backward = backward
    return out


def softmax(x, dim: int | None = None, dtype=None) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim`` (stable: shifted by the maximum); local gradient
    dx = y (g - sum(g y)). ``dim=None`` picks PyTorch's legacy default (0 for 0-, 1- and
    3-D inputs, else 1) with a warning, as ``F.softmax`` does."""
    x = _softmax_input(x, dtype)
    d = _softmax_dim(x, dim, "softmax")
    v = x.data
    e = np.exp(v - np.max(v, axis=d, keepdims=True))
    y = e / e.sum(axis=d, keepdims=True)
    out = _node(y, (x,), "softmax")
    if out.requires_grad:

        def backward(g):
            gy = g * y
            x.accumulate_grad(gy - y * gy.sum(axis=d, keepdims=True), owned=True)

        out._backward = backward
    return out


def log_softmax(x, dim: int | None = None, dtype=None) -> Tensor:
    """x - logsumexp(x) along ``dim``; local gradient dx = g - softmax(x) sum(g)."""
    x = _softmax_input(x, dtype)
    d = _softmax_dim(x, dim, "log_softmax")
    v = x.data
    shifted = v - np.max(v, axis=d, keepdims=True)
    y = shifted - np.log(np.exp(shifted).sum(axis=d, keepdims=True))
    out = _node(y, (x,), "log_softmax")
    if out.requires_grad:

        def backward(g):
            x.accumulate_grad(g - np.exp(y) * g.sum(axis=d, keepdims=True), owned=True)

        out._backward = backward
    return out


def _softmax_input(x, dtype) -> Tensor:
    x = _as_float_tensor(x)
    return x if dtype is None else x._cast(dtype)


def _softmax_dim(x: Tensor, dim, fn: str) -> int:
    if dim is None:
        import warnings

        warnings.warn(f"Implicit dimension choice for {fn} has been deprecated (in PyTorch); "
                      "pass dim=", UserWarning, stacklevel=3)
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return _dim(dim, x.ndim)


def softplus(x, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (PyTorch's
    ``softplus``); local gradient sigmoid(beta x) (1 above the threshold)."""
    x = _as_float_tensor(x)
    v = x.data
    z = v * v.dtype.type(beta)
    linear = z > threshold
    soft = (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / v.dtype.type(beta)
    out = _node(np.where(linear, v, soft).astype(v.dtype), (x,), "softplus")
    if out.requires_grad:
        local = np.where(linear, 1.0, 0.5 * (1.0 + np.tanh(0.5 * z))).astype(v.dtype)
        out._backward = lambda g: x.accumulate_grad(g * local, owned=True)
    return out


def activation(x, name: str, alpha: float = 0.0) -> Tensor:
    """Apply the activation ``name`` (a key of ``kernels.activations.CODES``) elementwise.

    One kernel pass writes the output and the local gradient; backward multiplies by it.
    """
    x = _as_float_tensor(x)
    code = _act.CODES.get(name)
    if code is None:
        hint = " (softmax is not elementwise: fnn.softmax(x, dim))" if name in (
            "softmax", "log_softmax") else ""
        raise ValueError(f"activation: unknown name {name!r}{hint}; the elementwise "
                         f"activations are {', '.join(sorted(_act.CODES))}")
    src = np.ascontiguousarray(x.data)
    flat = src.reshape(-1)
    y = np.empty_like(flat)
    d = np.empty_like(flat)  # always written by the kernel
    _act.activation_forward(flat.size)(code, float(alpha), flat, y, d)
    out = _node(y.reshape(x.shape), (x,), name)
    if out.requires_grad:
        local = d.reshape(x.shape)
        out._backward = lambda g: x.accumulate_grad(g * local, owned=True)
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


# -------------------------------------------------------------- making tensors
def is_tensor(obj) -> bool:
    """Whether ``obj`` is a fastnn Tensor (or Parameter)."""
    return isinstance(obj, Tensor)


def numel(x: Tensor) -> int:
    return x.numel()


def _factory_dtype(dtype) -> np.dtype:
    return get_default_dtype() if dtype is None else _tensor_dtype(dtype)


def _made(data: np.ndarray, requires_grad: bool) -> Tensor:
    t = _const(data)
    if requires_grad:
        t.requires_grad_(True)
    return t


def tensor(data, dtype=None, requires_grad: bool = False) -> Tensor:
    """A new Tensor holding a copy of ``data``, with ``torch.tensor``'s dtypes: Python floats
    take the default dtype, floating arrays keep theirs, integers become int64 (integer
    arrays keep their type), bools bool; ``dtype`` casts."""
    if isinstance(data, Tensor):
        data = data.data
    arr = np.array(data)
    kind = arr.dtype.kind
    if dtype is not None:
        dt = _tensor_dtype(dtype)
        if kind not in "biuf":
            as_float_array(arr, name="tensor data")  # raises, naming the kind
        arr = arr.astype(dt)
    elif kind == "f" or kind not in "biu":
        arr = np.array(as_float_array(data, name="tensor data"))
    elif kind == "b" or isinstance(data, np.ndarray):
        pass
    else:
        arr = arr.astype(np.int64)
    return _made(arr, requires_grad)


def as_tensor(data, dtype=None) -> Tensor:
    """``data`` as a Tensor without a copy where possible (a Tensor is returned as it is)."""
    if isinstance(data, Tensor) and (dtype is None or _tensor_dtype(dtype) == data.dtype):
        return data
    if isinstance(data, np.ndarray) and data.dtype.kind in "biuf" and data.dtype != np.float16 \
            and (dtype is None or _tensor_dtype(dtype) == data.dtype):
        return from_numpy(data)
    return tensor(data, dtype)


def from_numpy(array: np.ndarray) -> Tensor:
    """A Tensor sharing ``array``'s memory (changes show on both sides); float32, float64,
    integer and bool arrays."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects an ndarray, got {type(array).__name__}")
    if array.dtype.kind not in "biu" and array.dtype not in (np.float32, np.float64):
        raise TypeError(f"from_numpy: dtype {array.dtype} is not supported (float32, float64, "
                        "integers and bool are)")
    return _const(array)


def _shape_args(size) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for n in size:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"sizes must be non-negative integers, got {size}")
    return tuple(int(n) for n in size)


def zeros(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros of shape ``size`` (ints or one tuple)."""
    return _made(np.zeros(_shape_args(size), _factory_dtype(dtype)), requires_grad)


def ones(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones of shape ``size``."""
    return _made(np.ones(_shape_args(size), _factory_dtype(dtype)), requires_grad)


def full(size, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of shape ``size`` filled with ``fill_value`` (its dtype follows the value when
    no dtype is given: bool, int64 or the default float)."""
    if dtype is None:
        dtype = np.bool_ if isinstance(fill_value, bool) else (
            np.int64 if isinstance(fill_value, numbers.Integral) else None)
    return _made(np.full(_shape_args((size,) if isinstance(size, numbers.Integral) else size),
                         fill_value, _factory_dtype(dtype)), requires_grad)


def empty(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """An uninitialised tensor of shape ``size``."""
    return _made(np.empty(_shape_args(size), _factory_dtype(dtype)), requires_grad)


def _like(x, dtype) -> tuple[tuple[int, ...], np.dtype]:
    x = x if isinstance(x, Tensor) else _as_tensor(x)
    return x.shape, (x.dtype if dtype is None else _tensor_dtype(dtype))


def zeros_like(x, dtype=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(x, dtype)
    return _made(np.zeros(shape, dt), requires_grad)


def ones_like(x, dtype=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(x, dtype)
    return _made(np.ones(shape, dt), requires_grad)


def full_like(x, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(x, dtype)
    return _made(np.full(shape, fill_value, dt), requires_grad)


def empty_like(x, dtype=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(x, dtype)
    return _made(np.empty(shape, dt), requires_grad)


def _float_dtype(dtype) -> np.dtype:
    dt = _factory_dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"random floats need a floating dtype, got {dt}")
    return dt


def randn(*size, dtype=None, requires_grad: bool = False, generator=None) -> Tensor:
    """Standard normal samples of shape ``size``, from ``generator`` (a ``fnn.Generator`` or
    a NumPy Generator) or the global one (``fnn.manual_seed``)."""
    gen = numpy_generator(generator)
    dt = _float_dtype(dtype)
    return _made(gen.standard_normal(_shape_args(size), dtype=dt), requires_grad)


def rand(*size, dtype=None, requires_grad: bool = False, generator=None) -> Tensor:
    """Uniform samples in [0, 1) of shape ``size`` (see :func:`randn`)."""
    gen = numpy_generator(generator)
    dt = _float_dtype(dtype)
    return _made(gen.random(_shape_args(size), dtype=dt), requires_grad)


def randint(low, high=None, size=(), dtype=None, generator=None) -> Tensor:
    """Integers uniform in [low, high) (``randint(high, size)`` starts at 0), int64."""
    if high is None:
        low, high = 0, low
    gen = numpy_generator(generator)
    dt = np.dtype(np.int64) if dtype is None else _tensor_dtype(dtype)
    return _const(gen.integers(low, high, _shape_args(tuple(size)), dtype=np.int64).astype(dt))


def randn_like(x, dtype=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(x, dtype)
    return randn(*shape, dtype=dt, requires_grad=requires_grad)


def rand_like(x, dtype=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(x, dtype)
    return rand(*shape, dtype=dt, requires_grad=requires_grad)


def randperm(n: int, dtype=None, generator=None) -> Tensor:
    """A random permutation of 0..n-1 (int64)."""
    gen = numpy_generator(generator)
    return _const(gen.permutation(int(n)).astype(np.int64 if dtype is None
                                                 else _tensor_dtype(dtype)))


def arange(start, end=None, step=1, dtype=None, requires_grad: bool = False) -> Tensor:
    """Values from ``start`` (0 if only one bound is given) up to ``end``, excluded, by
    ``step``; int64 when all three are integers, else the default float dtype."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = np.int64 if ints else get_default_dtype()
    return _made(np.arange(start, end, step).astype(_tensor_dtype(dtype)), requires_grad)


def linspace(start, end, steps: int, dtype=None, requires_grad: bool = False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    return _made(np.linspace(start, end, int(steps)).astype(_factory_dtype(dtype)),
                 requires_grad)


def eye(n: int, m: int | None = None, dtype=None, requires_grad: bool = False) -> Tensor:
    """The n x m identity matrix (m defaults to n)."""
    return _made(np.eye(n, m, dtype=_factory_dtype(dtype)), requires_grad)


__all__ = [
    "Tensor",
    "activation",
    "arange",
    "as_tensor",
    "cat",
    "clamp",
    "clip",
    "concat",
    "concatenate",
    "empty",
    "empty_like",
    "enable_grad",
    "exp",
    "eye",
    "from_numpy",
    "full",
    "full_like",
    "inference_mode",
    "is_grad_enabled",
    "is_tensor",
    "linspace",
    "log",
    "log_softmax",
    "maximum",
    "minimum",
    "no_grad",
    "numel",
    "ones",
    "ones_like",
    "rand",
    "rand_like",
    "randint",
    "randn",
    "randn_like",
    "randperm",
    "relu",
    "set_grad_enabled",
    "sigmoid",
    "softmax",
    "softplus",
    "sqrt",
    "stack",
    "tanh",
    "tensor",
    "where",
    "zeros",
    "zeros_like",
]
