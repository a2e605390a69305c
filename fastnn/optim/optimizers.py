"""Optimizers on flat parameter buffers, with torch.optim's names, defaults and formulas.

How the buffers are formed: when an optimizer is created, the parameters it is given are
laid out, group after group, in ONE contiguous buffer per dtype; each Parameter's ``.data``
becomes a view into it (its values are copied in), and so does its ``.grad`` (zero-filled).
Every optimizer state (momentum, squared averages, Adam's m and v) is a buffer of the same
layout. So ``step()`` is one kernel call per dtype over all parameters, ``zero_grad()`` sets
the gradients to None (the next backward writes them into the buffer; no fill), and a
checkpoint a handful of arrays.

Hold on to the Parameter objects, not to arrays taken from ``param.data`` before the
optimizer existed: those arrays are no longer the model's. Assigning into
``param.data[...]`` changes the model as before. Parameters already in another optimizer's
buffer (two optimizers over one model, or a new one after a checkpoint) are laid out anew.
If something replaces ``param.grad`` the next ``step()`` copies it back into the buffer; a
parameter whose ``.grad`` is None at ``step()`` (frozen, or unused by the loss) is not
updated, as in PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .. import kernels as _kernels
from .._dtype import empty_marker
from .._threads import LOOP_CLOCK
from ..graph import Tensor, enable_grad
from ..kernels import blas as _blas
from ..kernels import optim as K
from ..nn.module import Parameter

#: The update kernels' "no squares" marker (writable: a read-only array is another Numba type).
_NO_SQUARES = np.zeros((0, 0))


class FlatBuffer:
    """The parameters of one dtype laid out contiguously, group after group.

    ``data`` and ``grad`` are flat arrays; every parameter's ``.data`` is a view of ``data``
    and its ``grad_buffer`` a view of ``grad`` (see :class:`fastnn.nn.Parameter`).
    :meth:`sync` makes every parameter's ``.data``/``.grad`` those views again (copying in
    what a user assigned; a None gradient becomes zeros): call it before reading ``grad``
    as one array, e.g. to all-reduce it.
    """

    def __init__(self, params: list[Parameter], groups: list[int], dtype: np.dtype):
        self.dtype = dtype
        self.params = params
        sizes = [p.data.size for p in params]
        self.size = int(sum(sizes))
        self.data = np.empty(self.size, dtype)
        self.grad = np.zeros(self.size, dtype)
        self.offsets = np.cumsum([0, *sizes])
        #: (parameter, start, end) in the flat arrays, as Python ints.
        self.spans = [(p, int(lo), int(hi)) for p, lo, hi in
                      zip(params, self.offsets[:-1], self.offsets[1:], strict=True)]
        self.data_views, self.grad_views = [], []
        segments = []
        for p, g, lo, hi in zip(params, groups, self.offsets[:-1], self.offsets[1:], strict=True):
            lo, hi = int(lo), int(hi)
            self.data[lo:hi] = p.data.reshape(-1)
            dv = self.data[lo:hi].reshape(p.data.shape)
            gv = self.grad[lo:hi].reshape(p.data.shape)
            if p.grad is not None:
                gv[...] = p.grad
            p.data, p.grad = dv, gv
            p.grad_buffer = gv
            p.mark_grad_zeroed(not gv.any())
            self.data_views.append(dv)
            self.grad_views.append(gv)
            for t, (a, b) in enumerate(_thread_ranges(p.data.shape, _blas.BLOCKS)):
                if a == b:
                    continue
                if segments and segments[-1][2:] == (g, t) and segments[-1][1] == lo + a:
                    segments[-1] = (segments[-1][0], lo + b, g, t)
                else:
                    segments.append((lo + a, lo + b, g, t))
        self.items = K.work_items(segments)

    def sync(self) -> list[tuple[int, int]]:
        """Make every parameter's ``.data``/``.grad`` the buffer's views again (see module doc).

        Returns the ``(start, end)`` spans of the parameters that had no gradient (their
        part of ``grad`` is now zeros, and marked so: see ``Parameter.mark_grad_zeroed``).
        """
        missing = []
        # (zip without strict and mark_grad_zeroed inlined: this runs at every step, for
        # every parameter; the three lists have one entry per parameter by construction)
        for (p, lo, hi), dv, gv in zip(self.spans, self.data_views, self.grad_views,
                                       strict=False):
            if p.data is not dv:
                if p.data.shape != dv.shape:
                    raise ValueError(
                        f"a parameter's data was replaced by one of shape {p.data.shape}; "
                        f"the optimizer holds it as {dv.shape}"
                    )
                dv[...] = p.data
                p.data = dv
            g = p.grad
            if g is None:
                gv.fill(0)
                missing.append((lo, hi))
                p.grad = p._zeroed_grad = gv
                continue
            if g is not gv:
                gv[...] = g
                p.grad = gv
            p._zeroed_grad = None
        return missing

    def kernel(self, k: _kernels.Kernel):
        return k(self.size)


def _thread_ranges(shape: tuple[int, ...], parts: int) -> list[tuple[int, int]]:
    """Which elements of a parameter of ``shape`` each of ``parts`` threads updates.

    A (D, M) weight is cut as ``blas.gemm_blocks`` cuts its gradient x^T dz (the same
    ``block_bounds``): when that gives thread t a block of rows, thread t updates those rows,
    the ones it computed. Anything else is cut evenly.
    """
    size = int(np.prod(shape, dtype=np.int64))
    ranges = [(size * t // parts, size * (t + 1) // parts) for t in range(parts)]
    if len(shape) == 2:
        rows, cols = shape
        blocks = [_blas.block_bounds.py_func(rows, cols, t, parts) for t in range(parts)]
        if all(c0 == 0 and c1 == cols for _, _, c0, c1 in blocks):
            ranges = [(r0 * cols, r1 * cols) for r0, r1, _, _ in blocks]
    return ranges


def _check(name: str, value, low=0.0, high=None, high_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"Invalid {name}: {value!r} (expected a number)")
    v = float(value)
    if not (v >= low) or (high is not None and (v >= high if high_open else v > high)):
        bound = f"[{low}, {high}{')' if high_open else ']'}" if high is not None else f">= {low}"
        raise ValueError(f"Invalid {name}: {value!r} (expected {bound})")
    return v


class Optimizer:
    """Base class: parameter groups, flat buffers, ``zero_grad``, ``state_dict``.

    Subclasses give their defaults, the names of their state buffers (``state_names``,
    derived from a group's hyperparameters), and ``_update(flat, hp_rows)``: the kernel
    call for one dtype buffer. Hyperparameters live in ``param_groups`` (a list of dicts,
    as in PyTorch), so schedulers and users can change ``group["lr"]`` between steps.
    """

    state_names: tuple[str, ...] = ()

    def __init__(self, params, defaults: dict):
        groups = self._as_groups(params)
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self._steps: list[int] = []
        self._flats: list[FlatBuffer] = []
        self.state: dict[str, list[np.ndarray]] = {}
        #: Per dtype buffer, (pool threads, groups) sums of the squares the update wrote, when
        #: :meth:`track_squares` turned them on (else None).
        self._squares: list[np.ndarray] | None = None
        for gi, group in enumerate(groups):
            self._add_group(group, gi)
        if not any(g["params"] for g in self.param_groups):
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        self._lay_out()

    def _add_group(self, group: dict, gi: int) -> None:
        """Check a parameter group, fill in the defaults and append it (no buffers yet)."""
        g = {k: v for k, v in group.items() if k != "params"}
        unknown = set(g) - set(self.defaults)
        if unknown:
            raise ValueError(f"parameter group {gi} has unknown options {sorted(unknown)} "
                             f"(this optimizer's options: {sorted(self.defaults)})")
        full = {**self.defaults, **g}
        self._validate(full)
        plist = group["params"]
        if isinstance(plist, (set, frozenset)):
            raise TypeError("optimizer parameters need to be organized in ordered "
                            "collections, but the ordering of tensors in sets will change "
                            "between runs. Please use a list instead.")
        plist = [plist] if isinstance(plist, Parameter) else list(plist)
        seen = {id(p) for other in self.param_groups for p in other["params"]}
        mine: set[int] = set()
        for p in plist:
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{type(self).__name__} can only optimize fastnn Parameters, got "
                    f"{type(p).__name__} in parameter group {gi}"
                )
            if id(p) in mine:
                raise ValueError(f"parameter group {gi} lists a parameter twice")
            if id(p) in seen:
                raise ValueError("some parameters appear in more than one parameter group")
            mine.add(id(p))
        full["params"] = plist
        self.param_groups.append(full)
        self._steps.append(0)

    def _initial_state(self, name: str, group: dict) -> float:
        """The value a state buffer starts from for a parameter of ``group`` (0 but Adagrad's
        ``sum``)."""
        return 0.0

    def _lay_out(self) -> None:
        """(Re)build the flat buffers from ``param_groups``: parameters, gradients and state
        move to the new layout (their values kept; a new parameter's state starts fresh)."""
        old = {id(p): (k, lo, hi) for k, f in enumerate(self._flats) for p, lo, hi in f.spans}
        # A laid-out parameter's None gradient stays None (zero_grad's); any other None
        # becomes the buffer's zeros, as when an optimizer is created.
        no_grad = [p for g in self.param_groups for p in g["params"]
                   if p.grad is None and id(p) in old]
        by_dtype: dict[np.dtype, tuple[list, list]] = {}
        for gi, group in enumerate(self.param_groups):
            for p in group["params"]:
                ps, gs = by_dtype.setdefault(p.data.dtype, ([], []))
                ps.append(p)
                gs.append(gi)
        flats = [FlatBuffer(ps, gs, dt) for dt, (ps, gs) in by_dtype.items()]
        for p in no_grad:
            p.grad = None
            p.mark_grad_zeroed(False)
        group_of = {id(p): g for g in self.param_groups for p in g["params"]}
        state = {}
        for name, bufs in self.state.items():
            new = []
            for f in flats:
                b = np.zeros(f.size, f.dtype)
                for p, lo, hi in f.spans:
                    if id(p) in old:
                        k, olo, ohi = old[id(p)]
                        b[lo:hi] = bufs[k][olo:ohi]
                    else:
                        b[lo:hi] = self._initial_state(name, group_of[id(p)])
                new.append(b)
            state[name] = new
        self._flats, self.state = flats, state
        if self._squares is not None:
            self._squares = [np.zeros((_blas.BLOCKS, len(self.param_groups))) for _ in flats]

    def add_param_group(self, param_group: dict) -> None:
        """Add a parameter group with its own options, the others taken from the
        optimizer's defaults (torch.optim.Optimizer.add_param_group), e.g. to unfreeze a
        layer while training.

        A parameter already in another group raises ValueError, as in PyTorch. The flat
        buffers are laid out anew (the existing parameters keep their values, gradients and
        state; the new ones start with fresh state and a step count of 0): a compiled step
        (``fnn.compile_step``) made before must be made again.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("param_group has no 'params' key")
        self._add_group(param_group, len(self.param_groups))
        try:
            self._lay_out()
        except BaseException:
            self.param_groups.pop()
            self._steps.pop()
            raise

    @staticmethod
    def _as_groups(params) -> list[dict]:
        if isinstance(params, Parameter):
            return [{"params": [params]}]
        if not isinstance(params, Iterable):
            raise TypeError(
                f"params must be an iterable of Parameters or of dicts, got {type(params).__name__}"
            )
        params = list(params)
        if params and all(isinstance(p, dict) for p in params):
            for i, g in enumerate(params):
                if "params" not in g:
                    raise ValueError(f"parameter group {i} has no 'params' key")
            return params
        return [{"params": params}]

    def _validate(self, group: dict) -> None:
        _check("lr", group["lr"])
        _check("weight_decay", group.get("weight_decay", 0.0))

    # ----------------------------------------------------------------- the step
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients, as ``torch.optim.Optimizer.zero_grad``.

        ``set_to_none=True`` (the default, as in PyTorch) sets every ``param.grad`` to None:
        no pass over memory; the next backward writes each gradient straight into the flat
        buffer, and a parameter that gets none counts as a zero gradient in ``step()``.
        ``set_to_none=False`` fills the buffer with zeros (one fill per dtype).

        A training step may start here: see ``fastnn._threads.LoopClock`` (the thread count
        of a hand-written loop).
        """
        LOOP_CLOCK.mark()
        for flat in self._flats:
            if set_to_none:
                for p in flat.params:
                    p.grad = None
                    p.mark_grad_zeroed(False)
            else:
                flat.sync()
                flat.grad.fill(0)
                for p in flat.params:
                    p.mark_grad_zeroed()

    @property
    def flat_buffers(self) -> list[FlatBuffer]:
        """One :class:`FlatBuffer` per dtype: all parameters and gradients as flat arrays
        (what data-parallel training all-reduces and broadcasts)."""
        return list(self._flats)

    def _state(self, name: str) -> list[np.ndarray]:
        bufs = self.state.get(name)
        if bufs is None:
            bufs = self.state[name] = [np.zeros(f.size, f.dtype) for f in self._flats]
        return bufs

    def _hp_rows(self) -> list[tuple]:
        """This step's hyperparameters: one tuple per group, in the order of the update
        kernel's columns (``kernels.optim``'s ``*_COLUMNS``); ``begin_step`` copies them into
        the (groups, columns) matrix the kernel reads. Tuples, not writes into the matrix
        one element at a time: the whole copy is one NumPy call (this runs every step)."""
        raise NotImplementedError

    def _squares_buffer(self, k: int) -> np.ndarray:
        """The ``squares`` argument of the update kernels that take one: dtype buffer k's
        (threads, groups) sums, or a (0, 0) marker when not tracked."""
        return self._squares[k] if self._squares is not None else _NO_SQUARES

    def _kernel_buffers(self, k: int, flat: FlatBuffer) -> tuple[_kernels.Kernel, tuple]:
        """The update kernel of this optimizer and the flat buffers it takes before the work
        items (parameters, gradients, state: each (n,) for dtype buffer ``k``, or an empty
        marker for a state no group uses)."""
        raise NotImplementedError

    def _state_options(self) -> list[tuple[bool, bool, bool]]:
        """Which of the options that need a state buffer (momentum, centering, amsgrad) each
        group has on (looked at before every partial update: a comprehension, no generator)."""
        return [(bool(g.get("momentum")), bool(g.get("centered")), bool(g.get("amsgrad")))
                for g in self.param_groups]

    def _update(self, k: int, flat: FlatBuffer, hp: np.ndarray) -> None:
        kern, bufs = self._kernel_buffers(k, flat)
        flat.kernel(kern)(*bufs, *flat.items, hp)

    # ----------------------------------------------------------------- squares
    #: Whether this optimizer's update kernel can add up the squares it writes.
    _reports_squares = False

    def track_squares(self) -> bool:
        """From now on, have each update add up the squares of the parameters it writes, per
        group (:meth:`updated_squares`), at almost no cost: while each work item is still in
        cache (see ``kernels.optim``'s SQUARES). Returns False, doing nothing, for an
        optimizer whose kernel cannot (only SGD and Adam/AdamW can)."""
        if not self._reports_squares:
            return False
        if self._squares is None:
            self._squares = [np.zeros((_blas.BLOCKS, len(self.param_groups)))
                             for _ in self._flats]
        return True

    def updated_squares(self, group: int) -> float:
        """The sum of the squares of ``group``'s parameters as the updates since the last
        :meth:`begin_step` (the last ``step()``) wrote them: after a step that updated every
        parameter of the group once, ``sum(p ** 2)`` over the group, summed in the
        parameters' dtype, in an order fixed by the work split. Needs :meth:`track_squares`.
        """
        total = 0.0
        for sq in self._squares:
            for t in range(sq.shape[0]):
                total += sq[t, group]
        return total

    # ----------------------------------------------------------------- a step in parts
    def begin_step(self) -> np.ndarray:
        """Count a step and return its (groups, columns) hyperparameter matrix, for a compiled
        step that then applies the update in parts (:meth:`partial_update`) as the gradients
        become ready. ``step()`` is ``begin_step()`` followed by the update of every
        parameter; the parts give the same bits (the update is elementwise)."""
        steps = self._steps
        for i in range(len(steps)):
            steps[i] += 1
        if self._squares is not None:  # the update's kernel calls add to them
            for sq in self._squares:
                sq.fill(0.0)
        rows = self._hp_rows()
        hp = getattr(self, "_hp", None)
        if hp is None or hp.shape != (len(rows), len(rows[0])):
            hp = self._hp = np.zeros((len(rows), len(rows[0])))
        hp[:] = rows  # a reused array: the kernel reads it at once
        self._step_hp = hp
        return hp

    def partial_update(self, params: list[Parameter]):
        """A function ``update()`` that applies the step begun by :meth:`begin_step` to
        ``params`` only (parameters of one dtype, anywhere in this optimizer), from their
        gradients in the flat buffer (each must have one: a compiled step writes them all).
        Raises ValueError for a parameter this optimizer does not hold."""
        group_of = {id(p): g for g, group in enumerate(self.param_groups)
                    for p in group["params"]}
        ids = {id(p) for p in params}
        which = next((k for k, f in enumerate(self._flats)
                      if ids and ids <= {id(p) for p in f.params}), None)
        if which is None:
            raise ValueError("partial_update: the parameters are not all in one flat buffer "
                             "of this optimizer")
        flat = self._flats[which]
        index = {id(p): i for i, p in enumerate(flat.params)}
        segments = []
        for p in sorted(params, key=lambda q: index[id(q)]):
            start = int(flat.offsets[index[id(p)]])
            for t, (a, b) in enumerate(_thread_ranges(p.data.shape, _blas.BLOCKS)):
                if a < b:
                    segments.append((start + a, start + b, group_of[id(p)], t))
        items = K.work_items(segments)
        size = sum(p.data.size for p in params)

        cache: list = [None, None, None, None]  # the state dict, its key, kernel, arguments

        def update() -> None:
            # load_state_dict replaces the state dict, a first use adds to it, and the options
            # that need a state buffer may be turned on: look the buffers up again then.
            state = self.state
            key = (len(state), self._state_options(), self._squares is not None)
            if cache[0] is not state or cache[1] != key:
                kern, bufs = self._kernel_buffers(which, flat)  # (may add state buffers)
                cache[:] = [state, (len(state), *key[1:]), kern(size), (*bufs, *items)]
            cache[2](*cache[3], self._step_hp)

        return update

    def step(self, closure=None):
        """Update every parameter from its gradient (one kernel call per dtype).

        ``closure``: a callable that zeroes the gradients, computes the loss, calls
        ``backward()`` and returns the loss, as in PyTorch; it is evaluated (with gradient
        recording on) before the update, and ``step`` returns what it returned (else None).

        A parameter whose ``.grad`` is None (frozen with ``requires_grad_(False)``, or not
        used by the loss) is left as it is, with its optimizer state, as PyTorch skips it:
        no weight decay, no momentum. (Step counts are per group: a parameter that only
        sometimes has a gradient gets the group's Adam bias correction.)"""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        hp = self.begin_step()
        for k, flat in enumerate(self._flats):
            kept = [(lo, hi, flat.data[lo:hi].copy(),
                     {name: bufs[k][lo:hi].copy() for name, bufs in self.state.items()})
                    for lo, hi in flat.sync()]  # parameters without a gradient
            self._update(k, flat, hp)
            for lo, hi, data, state in kept:  # undo their update: PyTorch skips them
                flat.data[lo:hi] = data
                for name, bufs in self.state.items():
                    bufs[k][lo:hi] = state[name] if name in state else 0
        # The end of a hand-written loop's step: its time goes to the process's one thread
        # governor (``fastnn._threads.LoopClock``), as fit's steps go to fit's.
        LOOP_CLOCK.step_done()
        return loss

    # ----------------------------------------------------------------- state
    #: The per-parameter state PyTorch's optimizer keeps, by the names of its state_dict:
    #: ``_torch_state(group)`` lists the buffers a parameter of ``group`` has;
    #: ``_step_in_state``: whether its entries hold a "step"; ``_state_from_start``: whether
    #: a parameter has state before its first step (Adagrad's ``sum``).
    _step_in_state = True
    _state_from_start = False

    def _torch_state(self, group: dict) -> tuple[str, ...]:
        raise NotImplementedError

    def _param_groups_out(self) -> list[dict]:
        groups, index = [], 0
        for g in self.param_groups:
            n = len(g["params"])
            groups.append({**{k: v for k, v in g.items() if k != "params"},
                           "params": list(range(index, index + n))})
            index += n
        return groups

    def state_dict(self) -> dict:
        """The optimizer's state in PyTorch's structure (copies), for a checkpoint:

        ``{"state": {index: {"step": float, "exp_avg": array, ...}}, "param_groups":
        [{option: value, ..., "params": [indices]}]}``, parameters numbered in group order;
        the state arrays have their parameter's shape and PyTorch's names (``momentum_buffer``,
        ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``sum``, ``square_avg``,
        ``grad_avg``). A parameter has an entry once its group has taken a step (Adagrad:
        from the start), as in PyTorch. :meth:`flat_state_dict` is the same state as a few
        flat arrays."""
        state, index = {}, 0
        where = {id(p): (k, lo, hi) for k, f in enumerate(self._flats) for p, lo, hi in f.spans}
        for gi, g in enumerate(self.param_groups):
            steps = self._steps[gi]
            for p in g["params"]:
                if steps > 0 or self._state_from_start:
                    k, lo, hi = where[id(p)]
                    entry = {"step": float(steps)} if self._step_in_state else {}
                    for name in self._torch_state(g):
                        bufs = self.state.get(name)
                        entry[name] = (bufs[k][lo:hi].reshape(p.data.shape).copy()
                                       if bufs is not None else np.zeros_like(p.data))
                    if entry:
                        state[index] = entry
                index += 1
        return {"state": state, "param_groups": self._param_groups_out()}

    def flat_state_dict(self) -> dict:
        """The optimizer's state as flat arrays (copies): what a fastnn checkpoint stores.

        ``{"param_groups": [{option: value, "params": [indices]}], "steps": [int per group],
        "state": {name: [flat array per dtype buffer]}, "layout": [(dtype, size)]}``;
        :meth:`load_state_dict` takes it as it takes :meth:`state_dict`'s.
        """
        return {
            "param_groups": self._param_groups_out(),
            "steps": list(self._steps),
            "state": {name: [b.copy() for b in bufs] for name, bufs in self.state.items()},
            "layout": [(str(f.dtype), f.size) for f in self._flats],
        }

    def _load_options(self, groups: list) -> None:
        """Check the saved groups against this optimizer's and take their options."""
        updated = []
        for mine_g, saved in zip(self.param_groups, groups, strict=True):
            opts = {}
            for k, v in saved.items():
                if k == "params":
                    continue
                if isinstance(v, np.ndarray) and v.ndim == 0:
                    v = v.item()  # a 0-d tensor's .numpy() (a tensor lr)
                if isinstance(mine_g.get(k), tuple) and isinstance(v, (list, np.ndarray)):
                    v = tuple(float(x) for x in v)  # JSON and .numpy() give lists/arrays
                opts[k] = v
            if opts.get("decoupled_weight_decay") and not getattr(self, "decoupled", False):
                raise ValueError(f"the saved {type(self).__name__} state has "
                                 "decoupled_weight_decay=True: load it into fastnn's AdamW")
            self._validate({**mine_g, **opts})
            updated.append(opts)
        for mine_g, opts in zip(self.param_groups, updated, strict=True):
            mine_g.update(opts)

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a :meth:`state_dict` (or :meth:`flat_state_dict`); refuses one made for
        a different set of parameters.

        A state dict of PyTorch's optimizer of the same class loads too, once its tensors
        are arrays (``t.numpy()``): parameters are matched by position, as PyTorch does, and
        each state array must have its parameter's shape (a ``torch.nn.Linear`` weight's
        state is (out, in) where fastnn's weight is (in, out): transpose it). Step counts are
        per parameter group in fastnn: the parameters of a group must have the same
        ``step``. Options fastnn does not use (``foreach``, ``fused``, ...) are kept as
        PyTorch keeps them."""
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict \
                or "state" not in state_dict:
            raise ValueError("not an optimizer state dict (expected the keys 'state' and "
                             "'param_groups')")
        if "layout" in state_dict:
            self._load_flat(state_dict)
        else:
            self._load_torch(state_dict)

    def _load_torch(self, state_dict: dict) -> None:
        groups, saved = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved, dict):
            raise ValueError(f"the state dict's 'state' must be a dict by parameter index, "
                             f"got {type(saved).__name__}")
        # Saved state is keyed by the saved ids; the params are matched by position.
        self._check_group_sizes(groups)
        where = {id(p): (k, lo, hi) for k, f in enumerate(self._flats) for p, lo, hi in f.spans}
        buffers: dict[str, list[np.ndarray]] = {}
        steps = []
        for gi, (mine_g, saved_g) in enumerate(zip(self.param_groups, groups, strict=True)):
            group_steps = set()
            for p, pid in zip(mine_g["params"], saved_g["params"], strict=True):
                entry = saved.get(pid, saved.get(str(pid)))
                if not entry:
                    continue
                if not isinstance(entry, dict):
                    raise ValueError(f"state of parameter {pid} must be a dict, got "
                                     f"{type(entry).__name__}")
                k, lo, hi = where[id(p)]
                for name, value in entry.items():
                    if name == "step":
                        group_steps.add(int(float(np.asarray(value))))
                        continue
                    if value is None:  # PyTorch's SGD before a first momentum step
                        continue
                    arr = np.asarray(value)
                    if arr.shape != p.data.shape:
                        hint = (" (PyTorch's Linear keeps weights as (out, in), fastnn as "
                                "(in, out): transpose it)" if arr.shape[::-1] == p.data.shape
                                else "")
                        raise ValueError(f"state {name!r} of parameter {pid} has shape "
                                         f"{arr.shape}, the parameter has {p.data.shape}{hint}")
                    if name not in buffers:
                        buffers[name] = [self._fresh_buffer(name, f) for f in self._flats]
                    buffers[name][k][lo:hi] = arr.reshape(-1)
                    if not self._step_in_state:
                        group_steps.add(1)  # a buffer that exists: past the first step
            if len(group_steps) > 1:
                raise ValueError(f"parameter group {gi} has parameters at different steps "
                                 f"{sorted(group_steps)}; fastnn counts steps per group")
            steps.append(group_steps.pop() if group_steps else 0)
        self._load_options(groups)
        for name in self.state:
            if name not in buffers and self._state_from_start:
                buffers[name] = [self._fresh_buffer(name, f) for f in self._flats]
        self._steps = steps
        self.state = buffers

    def _fresh_buffer(self, name: str, flat: FlatBuffer) -> np.ndarray:
        group_of = {id(p): g for g in self.param_groups for p in g["params"]}
        b = np.zeros(flat.size, flat.dtype)
        for p, lo, hi in flat.spans:
            b[lo:hi] = self._initial_state(name, group_of[id(p)])
        return b

    def _check_group_sizes(self, groups) -> None:
        mine = [len(g["params"]) for g in self.param_groups]
        try:
            theirs = [len(g["params"]) for g in groups]
        except (KeyError, TypeError):
            raise ValueError("not an optimizer state dict: each of 'param_groups' needs a "
                             "'params' list") from None
        if theirs != mine:
            raise ValueError(f"loaded state dict is for a different set of parameters: "
                             f"groups of {theirs} parameters, this optimizer has {mine}")

    def _load_flat(self, state_dict: dict) -> None:
        try:
            groups, steps, state = (state_dict["param_groups"], state_dict["steps"],
                                    state_dict["state"])
            layout = [(str(d), int(s)) for d, s in state_dict["layout"]]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an optimizer state dict (missing {exc})") from None
        mine = [(str(f.dtype), f.size) for f in self._flats]
        if len(groups) != len(self.param_groups) or layout != mine or \
                [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(
                f"loaded state dict is for a different set of parameters: groups of "
                f"{[len(g['params']) for g in groups]} parameters and buffers {layout}, this "
                f"optimizer has {[len(g['params']) for g in self.param_groups]} and {mine}"
            )
        new_state = {}
        for name, bufs in state.items():
            if len(bufs) != len(self._flats):
                raise ValueError(f"state {name!r} has {len(bufs)} buffers, expected "
                                 f"{len(self._flats)}")
            arrs = []
            for b, f in zip(bufs, self._flats, strict=True):
                b = np.asarray(b)
                if b.shape != (f.size,):
                    raise ValueError(f"state {name!r} has shape {b.shape}, expected ({f.size},)")
                arrs.append(b.astype(f.dtype, copy=True))
            new_state[name] = arrs
        self._load_options(groups)
        self._steps = [int(s) for s in steps]
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines + [")"])


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (torch.optim.SGD).

    ``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
    maximize=False)``; plain SGD is momentum 0. See ``fastnn.kernels.optim.sgd_step``.
    """

    _reports_squares = True

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _validate(self, g):
        super()._validate(g)
        _check("momentum", g["momentum"])
        _check("dampening", g["dampening"])
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    _step_in_state = False

    def _torch_state(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _hp_rows(self):  # K.SGD_COLUMNS
        return [(g["lr"], g["weight_decay"], g["momentum"], g["dampening"], g["nesterov"],
                 s == 1, g["maximize"])
                for g, s in zip(self.param_groups, self._steps, strict=True)]

    def _kernel_buffers(self, k, flat):
        uses_momentum = any(g["momentum"] != 0 for g in self.param_groups)
        buf = self._state("momentum_buffer")[k] if uses_momentum else empty_marker(flat.dtype)
        return K.sgd_step, (flat.data, flat.grad, buf, self._squares_buffer(k))


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad): ``Adagrad(params, lr=1e-2, lr_decay=0,
    weight_decay=0, initial_accumulator_value=0, eps=1e-10, maximize=False)``."""

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, maximize: bool = False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize))
        self.state["sum"] = [self._fresh_buffer("sum", f) for f in self._flats]

    def _validate(self, g):
        super()._validate(g)
        _check("lr_decay", g["lr_decay"])
        _check("initial_accumulator_value", g["initial_accumulator_value"])
        _check("eps", g["eps"])

    _state_from_start = True

    def _torch_state(self, group):
        return ("sum",)

    def _initial_state(self, name, group):
        return group["initial_accumulator_value"] if name == "sum" else 0.0

    def _hp_rows(self):  # K.ADAGRAD_COLUMNS
        return [(g["lr"] / (1 + (s - 1) * g["lr_decay"]), g["weight_decay"], g["eps"],
                 g["maximize"]) for g, s in zip(self.param_groups, self._steps, strict=True)]

    def _kernel_buffers(self, k, flat):
        return K.adagrad_step, (flat.data, flat.grad, self._state("sum")[k])


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop): ``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8,
    weight_decay=0, momentum=0, centered=False, maximize=False)``."""

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 maximize: bool = False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def _validate(self, g):
        super()._validate(g)
        _check("alpha", g["alpha"])
        _check("eps", g["eps"])
        _check("momentum", g["momentum"])

    def _torch_state(self, group):
        return (("square_avg",) + (("momentum_buffer",) if group["momentum"] > 0 else ())
                + (("grad_avg",) if group["centered"] else ()))

    def _hp_rows(self):  # K.RMSPROP_COLUMNS
        return [(g["lr"], g["alpha"], g["eps"], g["weight_decay"], g["momentum"],
                 g["centered"], g["maximize"]) for g in self.param_groups]

    def _kernel_buffers(self, k, flat):
        mom = any(g["momentum"] > 0 for g in self.param_groups)
        cen = any(g["centered"] for g in self.param_groups)
        e = empty_marker(flat.dtype)
        return K.rmsprop_step, (flat.data, flat.grad, self._state("square_avg")[k],
                                self._state("momentum_buffer")[k] if mom else e,
                                self._state("grad_avg")[k] if cen else e)


class Adam(Optimizer):
    """Adam (torch.optim.Adam): ``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
    weight_decay=0, amsgrad=False, maximize=False)``; weight decay is L2 (added to the
    gradient). See ``fastnn.kernels.optim.adam_step``."""

    decoupled = False
    _reports_squares = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    def _validate(self, g):
        super()._validate(g)
        betas = g["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Invalid betas: {betas!r} (expected two numbers)")
        _check("beta parameter at index 0", betas[0], 0.0, 1.0, high_open=True)
        _check("beta parameter at index 1", betas[1], 0.0, 1.0, high_open=True)
        _check("eps", g["eps"])

    def _torch_state(self, group):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def _hp_rows(self):  # K.ADAM_COLUMNS
        rows, decoupled = [], self.decoupled
        for g, t in zip(self.param_groups, self._steps, strict=True):
            (b1, b2), lr, wd = g["betas"], g["lr"], g["weight_decay"]
            rows.append((lr / (1 - b1**t), b1, b2, g["eps"], math.sqrt(1 - b2**t),
                         0.0 if decoupled else wd, 1.0 - lr * wd if decoupled else 1.0,
                         g["amsgrad"], g["maximize"]))
        return rows

    def _kernel_buffers(self, k, flat):
        ams = any(g["amsgrad"] for g in self.param_groups)
        return K.adam_step, (flat.data, flat.grad, self._state("exp_avg")[k],
                             self._state("exp_avg_sq")[k],
                             self._state("max_exp_avg_sq")[k] if ams
                             else empty_marker(flat.dtype), self._squares_buffer(k))


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): Adam with decoupled weight decay, p <- p (1 - lr wd) before
    the Adam step; ``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
    amsgrad=False, maximize=False)``."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


def _norm_order(norm_type) -> float:
    if isinstance(norm_type, str) and norm_type.lower() in ("inf", "-inf"):
        return float(norm_type)
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float, np.number)):
        raise ValueError(f"norm_type must be a number or 'inf', got {norm_type!r}")
    return float(norm_type)


def _as_tensor_list(parameters) -> list:
    if isinstance(parameters, Tensor):
        return [parameters]
    if not isinstance(parameters, Iterable):
        raise TypeError(f"parameters must be a Tensor or an iterable of Tensors, got "
                        f"{type(parameters).__name__}")
    return list(parameters)


def clip_grad_norm_(parameters, max_norm: float, norm_type: float | str = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> float:
    """Scale the gradients so that their total norm is at most ``max_norm``
    (torch.nn.utils.clip_grad_norm_). Returns the total norm before clipping.

    The total norm is the ``norm_type`` norm (2, 1, ``inf`` or ``"inf"``, any p) of the
    gradients' own norms, PyTorch's formula; each gradient is multiplied by
    ``min(1, max_norm / (norm + 1e-6))`` (NaN too, as PyTorch, when the norm is NaN and
    ``error_if_nonfinite`` is False; True raises RuntimeError instead). ``foreach`` is
    accepted and has no effect (the CPU path is already one pass). Returned as a float
    (``np.float64``, so ``.item()`` works as on PyTorch's 0-d tensor).

    With the parameters in an optimizer's flat buffer, the 2-norm is one kernel over the
    buffer and the scaling one more; otherwise it runs gradient by gradient.
    """
    order = _norm_order(norm_type)
    max_norm = _check("max_norm", max_norm)
    params = _as_tensor_list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return np.float64(0.0)
    flats = _covering_buffers(params)
    arrays = flats if flats is not None else [np.ascontiguousarray(g).reshape(-1) for g in grads]
    if order == 2.0:
        norm = math.sqrt(sum(sum_of_squares(a) for a in arrays))
    elif order == math.inf:
        norm = max(float(np.max(np.abs(a))) if a.size else 0.0 for a in arrays)
    else:  # PyTorch's rule: the norm of the per-gradient norms
        each = [np.linalg.norm(np.asarray(g, np.float64).reshape(-1), ord=order) for g in grads]
        norm = float(np.linalg.norm(np.asarray(each), ord=order))
    if error_if_nonfinite and not math.isfinite(norm):
        raise RuntimeError(
            f"The total norm of order {order} for gradients from `parameters` is non-finite, "
            "so it cannot be clipped. To disable this error and scale the gradients by the "
            "non-finite norm anyway, set `error_if_nonfinite=False`")
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0 or math.isnan(coef):  # a factor of 1 changes nothing: skip the pass
        if flats is not None:
            for a in arrays:
                if a.size:
                    K.scale_inplace(a.size)(a, coef)
        else:
            for g in grads:
                g *= g.dtype.type(coef)
    return np.float64(norm)


def clip_grad_value_(parameters, clip_value: float, foreach: bool | None = None) -> None:
    """Clip every gradient elementwise into ``[-clip_value, clip_value]``
    (torch.nn.utils.clip_grad_value_; ``foreach`` accepted, no effect). One ``np.clip`` over
    each flat gradient buffer when the parameters are an optimizer's."""
    if isinstance(clip_value, bool) or not isinstance(clip_value, (int, float, np.number)):
        raise ValueError(f"clip_value must be a number, got {clip_value!r}")
    c = float(clip_value)
    params = _as_tensor_list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flats = _covering_buffers(params)
    for g in (flats if flats is not None else grads):
        np.clip(g, -c, c, out=g)


def sum_of_squares(a: np.ndarray, partial: np.ndarray | None = None) -> float:
    """sum(a ** 2) of a flat contiguous array (n,), in float64, by one kernel over fixed
    chunks (the same value on any thread count; no call into BLAS, whose own threads would
    compete with fastnn's pool). ``partial``: the kernel's scratch, (sum_of_squares_chunks(n),)
    float64, for a caller that sums the same array at every step (default: a new one)."""
    if a.size == 0:
        return 0.0
    if partial is None:
        partial = np.empty(sum_of_squares_chunks(a.size))
    return K.grad_sq_partial(a.size)(a, partial)


def sum_of_squares_chunks(n: int) -> int:
    """The length of :func:`sum_of_squares`'s scratch for n elements."""
    return max(1, -(-n // K.CHUNK))


def _covering_buffers(params) -> list[np.ndarray] | None:
    """The flat gradient buffers of which ``params``' gradients are exactly the views, or None."""
    bases = {}
    for p in params:
        base = p.grad.base if p.grad is not None else None
        if base is None or base.ndim != 1 or not base.flags.c_contiguous:
            return None
        bases[id(base)] = base
    if sum(b.size for b in bases.values()) != sum(p.grad.size for p in params) or \
            len({id(p) for p in params}) != len(params):
        return None
    return list(bases.values())


__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "FlatBuffer", "Optimizer", "RMSprop",
           "clip_grad_norm_", "clip_grad_value_", "sum_of_squares", "sum_of_squares_chunks"]
