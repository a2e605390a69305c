"""Module, Parameter and Sequential: PyTorch's containers, on fastnn tensors."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from .. import graph as _graph
from .._dtype import resolve_dtype
from ..graph import Tensor, node

_hook_ids = itertools.count()


class RemovableHandle:
    """What ``register_*_hook`` returns: ``handle.remove()`` unregisters the hook (also as
    a context manager: the hook is removed at the end of the ``with`` block)."""

    def __init__(self, registry: dict, module: Module):
        self.id = next(_hook_ids)
        self._registry, self._module = registry, module

    def remove(self) -> None:
        self._registry.pop(self.id, None)
        self._module._refresh_hooks()

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

#: PyTorch's names and layouts (``load_state_dict(layout="torch")``, ``Sequential.from_torch``)
#: are ``fastnn/nn/_torch_layout.py``'s: it needs the layer classes, which build on this
#: module, so it puts its two entry points here when ``fastnn.nn`` imports it, and this
#: module imports nothing above itself.
TORCH_LAYOUT: dict = {}


def _check_device(device) -> None:
    name = str(device)
    if name != "cpu" and not name.startswith("cpu:"):
        raise ValueError(f"device {name!r}: fastnn computes on the CPU only ('cpu')")


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (``requires_grad=True``).

    ``param.data`` may be a view into a flat buffer shared by all parameters (the optimizers
    arrange that); assigning into ``param.data[...]`` changes the model either way.

    Gradient ownership (the one protocol between parameters, layers and optimizers):

    - ``grad_buffer``: where a new gradient goes when ``grad`` is None. An optimizer sets
      it to the parameter's view of its flat gradient buffer, so that ``zero_grad()``
      (``grad = None``, as in PyTorch) costs nothing and the next backward writes the
      gradient straight into the buffer. That array is reused every step: a ``p.grad``
      kept across ``zero_grad()`` and ``backward()`` is overwritten by the next gradient
      (PyTorch would allocate a new one); keep ``p.grad.copy()`` instead.
    - :meth:`mark_grad_zeroed`: the optimizer says ``grad`` holds zeros (it filled them),
      so a layer may write the next gradient over it instead of adding into it.
    - :meth:`grad_destination` (layers) and :meth:`accumulate_grad` (any op) apply both.
    """

    __slots__ = ("_zeroed_grad", "grad_buffer")

    def __init__(self, data, requires_grad: bool = True, dtype=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype)
        if not self.data.flags.c_contiguous or not self.data.flags.writeable:
            self.data = np.array(self.data, order="C")
        self._zeroed_grad = None  # the grad array known to hold zeros, if any
        self.grad_buffer = None

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def mark_grad_zeroed(self, zeroed: bool = True) -> None:
        """Record that ``grad`` holds zeros now (``zeroed=False``: forget it)."""
        self._zeroed_grad = self.grad if zeroed else None

    def accumulate_grad(self, g, owned: bool = False) -> None:
        if self.grad is None and self.grad_buffer is not None:
            np.copyto(self.grad_buffer, g)  # broadcasts; casts to the parameter's dtype
            self.grad = self.grad_buffer
        elif self._zeroed_grad is not None and self._zeroed_grad is self.grad:
            np.copyto(self.grad, g)
        else:
            super().accumulate_grad(g, owned)
        self._zeroed_grad = None

    def grad_destination(self, scratch=None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Where a layer's backward should write this parameter's gradient.

        Returns ``(out, add_to)``: write the gradient into ``out``; then, if ``add_to`` is
        not None, add ``out`` into it. A missing or freshly zeroed gradient is written in
        place (no extra pass, no scratch; a missing one into ``grad_buffer`` when there is
        one). Only a gradient that holds an earlier contribution needs ``scratch()``, a
        callable returning a work array of its shape; a layer that can add into ``add_to``
        directly (a GEMM with beta = 1) passes no ``scratch`` and gets ``out`` None.
        """
        if self.grad is None:
            home = self.grad_buffer
            self.grad = home if home is not None else np.empty_like(self.data)
            self._zeroed_grad = None
            return self.grad, None
        if self._zeroed_grad is self.grad:
            self._zeroed_grad = None
            return self.grad, None
        return (scratch() if scratch is not None else None), self.grad


class Module:
    """Base class of layers and models, with PyTorch's interface.

    Subclasses assign Parameters and sub-Modules as attributes (they are registered in that
    order) and register non-learned state with :meth:`register_buffer`; they implement
    ``forward``. ``named_parameters`` and ``state_dict`` use PyTorch's dotted names.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "training", True)

    # None while the module has no hooks, so that calling it costs one attribute test.
    _hooks = None

    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before "
                "assigning attributes"
            )
        # Replacing a child keeps its place in the registration order (as in PyTorch).
        target = self._parameters if isinstance(value, Parameter) else \
            self._modules if isinstance(value, Module) else None
        for registry in (self._parameters, self._modules):
            if registry is not target:
                registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
            # Sequential's fusion plan (and its chain) is out of date
            self.__dict__.pop("_plan", None), self.__dict__.pop("_chain", None)
        elif name in self._buffers:
            if value is not None and not isinstance(value, np.ndarray):
                raise TypeError(f"buffer {name!r} must be an ndarray, got {type(value).__name__}")
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        self.__dict__.pop("_plan", None), self.__dict__.pop("_chain", None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value, persistent: bool = True) -> None:
        """Register non-learned state: among ``buffers()``, not ``parameters()``; kept in
        ``state_dict()`` unless ``persistent=False``. fastnn keeps buffers as NumPy arrays
        (a Tensor given here is stored as its ``.data``)."""
        if isinstance(value, Tensor):
            value = value.data
        if value is not None and not isinstance(value, np.ndarray):
            raise TypeError(f"cannot assign '{type(value).__name__}' object to buffer "
                            f"'{name}' (an ndarray, a Tensor or None required)")
        if not isinstance(name, str):
            raise TypeError(f"buffer name should be a string. Got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"buffer name can't be empty or contain '.', got {name!r}")
        if name in self._parameters or name in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        self._buffers[name] = value
        nonpersistent = self.__dict__.setdefault("_non_persistent_buffers_set", set())
        if persistent:
            nonpersistent.discard(name)
        else:
            nonpersistent.add(name)
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------- hooks
    def _hook_registry(self, kind: str) -> dict:
        hooks = self.__dict__.get("_hook_registries")
        if hooks is None:
            hooks = {"pre": {}, "forward": {}, "backward": {}}
            object.__setattr__(self, "_hook_registries", hooks)
        return hooks[kind]

    def _refresh_hooks(self) -> None:
        regs = self.__dict__.get("_hook_registries")
        active = regs if regs is not None and any(regs.values()) else None
        object.__setattr__(self, "_hooks", active)

    def _add_hook(self, kind: str, entry, prepend: bool) -> RemovableHandle:
        registry = self._hook_registry(kind)
        handle = RemovableHandle(registry, self)
        registry[handle.id] = entry
        if prepend:
            registry_items = list(registry.items())
            registry.clear()
            registry.update([registry_items[-1], *registry_items[:-1]])
        self._refresh_hooks()
        return handle

    def register_forward_pre_hook(self, hook, *, prepend: bool = False,
                                  with_kwargs: bool = False) -> RemovableHandle:
        """``hook(module, args)`` runs before ``forward``; it may return new args (a tuple,
        or a single value that becomes a one-tuple). ``with_kwargs=True``:
        ``hook(module, args, kwargs)`` returning None or ``(args, kwargs)``."""
        return self._add_hook("pre", (hook, with_kwargs), prepend)

    def register_forward_hook(self, hook, *, prepend: bool = False, with_kwargs: bool = False,
                              always_call: bool = False) -> RemovableHandle:
        """``hook(module, args, output)`` runs after ``forward``; it may return a new output.
        ``with_kwargs=True``: ``hook(module, args, kwargs, output)``."""
        return self._add_hook("forward", (hook, with_kwargs), prepend)

    def register_full_backward_hook(self, hook, prepend: bool = False) -> RemovableHandle:
        """``hook(module, grad_input, grad_output)`` runs when the gradients with respect to
        the module's Tensor inputs have been computed (``grad_input``: a tuple of arrays, or
        None for an input that needs no gradient; ``grad_output``: the gradients of the
        outputs). It may return a tuple that replaces ``grad_input``.

        A module with hooks runs its layers one by one (a ``Sequential`` does not fuse a
        hooked layer with its activation), and ``fnn.compile_step`` is for models without
        hooks."""
        return self._add_hook("backward", hook, prepend)

    def register_backward_hook(self, hook) -> RemovableHandle:
        """Deprecated in PyTorch: use :meth:`register_full_backward_hook`."""
        return self.register_full_backward_hook(hook)

    def _call_with_hooks(self, args, kwargs):
        hooks = self._hooks
        for hook, with_kwargs in list(hooks["pre"].values()):
            if with_kwargs:
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError("forward pre-hook must return None or a tuple of "
                                           f"(new_args, new_kwargs), but got {result}.")
                    args, kwargs = result
            else:
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        backward_hooks = list(hooks["backward"].values())
        if backward_hooks:
            args, state = _BackwardHookState.wrap_inputs(self, args, backward_hooks)
        output = self.forward(*args, **kwargs)
        for hook, with_kwargs in list(hooks["forward"].values()):
            result = hook(self, args, kwargs, output) if with_kwargs else \
                hook(self, args, output)
            if result is not None:
                output = result
        if backward_hooks:
            output = state.wrap_outputs(output)
        return output

    def _check_name(self, name, what: str) -> str:
        if not isinstance(name, str):
            raise TypeError(f"{what} name must be a str, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"{what} name can't be empty or contain '.', got {name!r}")
        if hasattr(self, name) and name not in self._modules and name not in self._parameters:
            raise KeyError(f"attribute {name!r} already exists on {type(self).__name__}")
        return name

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` as the child ``name`` (as assigning ``self.name = module``)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {type(module).__name__} is not a Module")
        self._check_name(name, "module")
        if module is None:
            self._modules[name] = None
            object.__setattr__(self, name, None)
            self.__dict__.pop("_plan", None), self.__dict__.pop("_chain", None)
        else:
            setattr(self, name, module)

    register_module = add_module

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` as the parameter ``name`` (None: a declared, absent one)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {type(param).__name__} is not a Parameter "
                            "(wrap the data in fnn.nn.Parameter)")
        self._check_name(name, "parameter")
        if param is None:
            self._parameters[name] = None
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def get_submodule(self, target: str) -> Module:
        """The module at the dotted path ``target`` ("" is this module)."""
        mod = self
        for part in target.split(".") if target else ():
            child = mod._modules.get(part)
            if child is None:
                raise AttributeError(f"{type(mod).__name__} has no submodule {part!r} "
                                     f"(in {target!r})")
            mod = child
        return mod

    # ------------------------------------------------------------------- calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def __call__(self, *args, **kwargs):
        if self._hooks is None:
            return self.forward(*args, **kwargs)
        return self._call_with_hooks(args, kwargs)

    # ------------------------------------------------------------------ traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module ("" or ``prefix``) and every submodule,
        depth first; a module reachable twice is listed once unless ``remove_duplicate``
        is False."""
        if isinstance(memo, str):  # named_modules("prefix"), fastnn's older signature
            memo, prefix = None, memo
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self.named_children():
            yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                       remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True
                         ) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs, each parameter once, in registration order."""
        seen: set[int] = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_name, mod in modules:
            for name, p in mod._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, np.ndarray]]:
        """(dotted name, array) of every buffer (BatchNorm's ``running_mean``, ...)."""
        seen: set[int] = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_name, mod in modules:
            for name, b in mod._buffers.items():
                if b is None or (remove_duplicate and id(b) in seen):
                    continue
                seen.add(id(b))
                yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self, recurse: bool = True) -> Iterator[np.ndarray]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def _persistent_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for mod_name, mod in self.named_modules():
            skip = mod.__dict__.get("_non_persistent_buffers_set", ())
            for name, b in mod._buffers.items():
                if b is not None and name not in skip:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    # ---------------------------------------------------------------------- modes
    def train(self, mode: bool = True) -> Module:
        """Set training mode (Dropout drops, BatchNorm uses batch statistics) recursively."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode): mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: to None (default), or fill it with zeros."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.fill(0)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` of every parameter (False freezes them: backward leaves their
        ``.grad`` alone), and return the module."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def apply(self, fn) -> Module:
        """Call ``fn(module)`` on every submodule (children first, as PyTorch), then on this
        module; returns the module. E.g. ``model.apply(init_weights)``."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def cpu(self) -> Module:
        """The module itself: fastnn computes on the CPU."""
        return self

    def cuda(self, device=None) -> Module:
        """Raises: fastnn computes on the CPU only (keep the module where it is, or use
        ``.to("cpu")``, which changes nothing)."""
        raise RuntimeError("cuda(): fastnn computes on the CPU only; there is no GPU to move "
                           "the module to (.to('cpu') and .cpu() are accepted and change "
                           "nothing)")

    def to(self, *args, dtype=None, **kwargs) -> Module:
        """Cast every parameter and floating buffer to ``dtype`` (float32 or float64), in place;
        ``to("cpu")`` (or ``device="cpu"``) is accepted and changes nothing, any other device
        raises.

        Do this before creating an optimizer: it replaces the parameters' arrays.
        """
        for a in args:
            if isinstance(a, str) and a not in ("float32", "float64"):
                _check_device(a)
            elif a is not None:
                dtype = a
        if kwargs.get("device") is not None:
            _check_device(kwargs["device"])
        if dtype is None:
            return self
        dt = resolve_dtype(dtype)
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None and p.data.dtype != dt:
                    p.data = p.data.astype(dt)
                    p.grad = None
            for name, b in list(m._buffers.items()):
                if b is not None and b.dtype.kind == "f" and b.dtype != dt:
                    setattr(m, name, b.astype(dt))
            if hasattr(m, "dtype"):
                object.__setattr__(m, "dtype", dt)
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, by dotted name (PyTorch's names)."""
        state = {name: p.data.copy() for name, p in self.named_parameters()}
        state.update({name: np.array(b, copy=True) for name, b in self._persistent_buffers()})
        return state

    def load_state_dict(self, state_dict, strict: bool = True, layout: str = "fastnn"
                        ) -> tuple[list[str], list[str]]:
        """Copy values into the parameters and buffers, in place (views stay valid).

        Raises ValueError (before changing anything) for a wrong shape, and with
        ``strict=True`` for a missing or unexpected key, naming the key(s) and shapes.
        ``layout="torch"`` takes PyTorch's names and layouts (arrays or torch tensors; see
        ``fastnn.nn._torch_layout.load_torch_state_dict``). Returns (missing_keys,
        unexpected_keys).
        """
        if layout == "torch":
            return TORCH_LAYOUT["load_state_dict"](self, state_dict, strict=strict)
        if layout != "fastnn":
            raise ValueError(f"load_state_dict: layout must be 'fastnn' or 'torch', got {layout!r}")
        if not hasattr(state_dict, "keys"):
            raise TypeError(
                f"load_state_dict expects a mapping of names to arrays, got "
                f"{type(state_dict).__name__}"
            )
        targets: dict[str, tuple[np.ndarray, Module, str]] = {}
        for name, p in self.named_parameters():
            targets[name] = p.data
        for name, b in self._persistent_buffers():
            targets[name] = b
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in targets]
        if strict and (missing or unexpected):
            raise ValueError(
                f"load_state_dict for {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        values = {}
        for k, target in targets.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            v = np.asarray(v.data if isinstance(v, Tensor) else v)
            if v.shape != target.shape:
                raise ValueError(
                    f"load_state_dict: {k!r} has shape {v.shape} in the state dict, "
                    f"but the model expects {target.shape}"
                )
            if v.dtype.kind not in "fiu":
                raise TypeError(f"load_state_dict: {k!r} has non-numeric dtype {v.dtype}")
            values[k] = v
        for k, v in values.items():
            targets[k][...] = v
        return missing, unexpected

    # -------------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({n}): " + repr(m).replace("\n", "\n  ") for n, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


#: ``fastnn/nn/_chain.py`` (a Sequential of Linear layers as one graph node) puts its
#: ``make_chain`` here when ``fastnn.nn`` imports it: it needs the layer classes, which build
#: on this module, and this module imports nothing above itself.
CHAIN: dict = {}


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", ... as in PyTorch (or by the
    keys of one ``OrderedDict`` argument).

    A ``Linear``, ``BatchNorm1d`` or ``LayerNorm`` (without its own activation) followed by a
    parameter-free activation (ReLU, LeakyReLU, ELU, Sigmoid, Tanh, GELU, SiLU, Identity)
    runs as ONE fused kernel call each way; the numbers are those of running the two modules
    one after the other, and the names, indexing and ``state_dict`` are unchanged.
    """

    def __init__(self, *modules: Module):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):  # an (Ordered)dict of names
            for name, m in modules[0].items():
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: {name!r} is a {type(m).__name__}, not a Module")
                self.add_module(name, m)
            return
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    @classmethod
    def from_torch(cls, module) -> Sequential:
        """A fastnn Sequential equal to a ``torch.nn.Sequential`` (weights copied, dtype kept;
        see ``fastnn.nn._torch_layout.sequential_from_torch``)."""
        return TORCH_LAYOUT["from_torch"](module, cls)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(*mods[idx])
        try:
            return mods[idx]
        except (IndexError, TypeError):
            raise IndexError(f"Sequential index {idx!r} out of range for length {len(mods)}"
                             ) from None

    def append(self, module: Module) -> Sequential:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: {type(module).__name__} is not a Module")
        setattr(self, str(len(self)), module)
        return self

    def fused_layers(self) -> list[tuple[Module, Module | None]]:
        """The layers as :meth:`forward` runs them: ``(module, activation fused into it or
        None)`` in order (a ``Linear`` or ``BatchNorm1d`` followed by an activation is one
        kernel call). What the compiled step (``fastnn.compiled``) plans from."""
        return list(self._fusion_plan())

    def _fusion_plan(self) -> list[tuple[Module, Module | None]]:
        """(module, activation fused into it or None), in order; made once per layout."""
        plan = self.__dict__.get("_plan")
        if plan is None:
            mods, plan, i = list(self._modules.values()), [], 0
            while i < len(mods):
                m = mods[i]
                nxt = mods[i + 1] if i + 1 < len(mods) else None
                fuse = getattr(m, "fusable_with", None) is not None and m.fusable_with(nxt)
                plan.append((m, nxt if fuse else None))
                i += 2 if fuse else 1
            object.__setattr__(self, "_plan", plan)
        return plan

    def forward(self, x):
        if _graph._grad_enabled:
            # A chain of Linear layers runs as one graph node (nn/_chain.py), the same bits.
            chain = self.__dict__.get("_chain", False)
            if chain is False:  # made once per layout, with the fusion plan
                make = CHAIN.get("make")
                chain = make(self._fusion_plan()) if make is not None else None
                object.__setattr__(self, "_chain", chain)
            if chain is not None:
                out = chain.forward(x)
                if out is not None:
                    return out
        for m, fused in self._fusion_plan():
            if fused is None:
                x = m(x)
            elif m._hooks is None and fused._hooks is None:
                x = m(x, _fused=fused)
            else:  # a hook sees each module's own call: no fusion
                x = fused(m(x))
        return x


class ModuleList(Module):
    """Modules in a list, registered as children "0", "1", ... (PyTorch's ModuleList): their
    parameters belong to the model. Indexing, slicing (a new ModuleList), ``len``, iteration,
    ``append``, ``extend``, ``insert``, ``pop``, ``+=``. It has no ``forward``: a model's
    forward iterates over it."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, idx: int) -> int:
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise TypeError(f"ModuleList indices must be integers or slices, got "
                            f"{type(idx).__name__}")
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"ModuleList index {idx} out of range for length {n}")
        return int(idx) % n

    def _reset(self, mods: list[Module]) -> None:
        for name in list(self._modules):
            delattr(self, name)
        for i, m in enumerate(mods):
            setattr(self, str(i), m)

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(mods[idx])
        return mods[self._index(idx)]

    def __setitem__(self, idx: int, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: {type(module).__name__} is not a Module")
        setattr(self, str(self._index(idx)), module)

    def __delitem__(self, idx) -> None:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            del mods[idx]
        else:
            del mods[self._index(idx)]
        self._reset(mods)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def __iadd__(self, modules) -> ModuleList:
        return self.extend(modules)

    def __add__(self, other) -> ModuleList:
        return ModuleList([*self, *other])

    def append(self, module: Module) -> ModuleList:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.append: {type(module).__name__} is not a Module")
        setattr(self, str(len(self)), module)
        return self

    def extend(self, modules) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.insert: {type(module).__name__} is not a Module")
        mods = list(self._modules.values())
        mods.insert(index, module)
        self._reset(mods)

    def pop(self, index: int = -1) -> Module:
        mods = list(self._modules.values())
        m = mods.pop(self._index(index))
        self._reset(mods)
        return m


class ModuleDict(Module):
    """Modules by name (PyTorch's ModuleDict), registered as children in insertion order:
    ``md["enc"]``, ``md["enc"] = m``, ``del``, ``in``, ``len``, iteration over the keys,
    ``keys()``, ``values()``, ``items()``, ``update()``, ``pop()``, ``clear()``."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        if key not in self._modules:
            raise KeyError(key)
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        if key not in self._modules:
            raise KeyError(key)
        delattr(self, key)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def __contains__(self, key) -> bool:
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules) -> None:
        """Add (or replace) modules from a mapping or an iterable of (name, module) pairs."""
        pairs = modules.items() if hasattr(modules, "items") else modules
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"ModuleDict.update: expected (name, module) pairs, got {pair!r}")
            self[pair[0]] = pair[1]

    def pop(self, key: str) -> Module:
        m = self[key]
        del self[key]
        return m

    def clear(self) -> None:
        for key in list(self._modules):
            delattr(self, key)


class _BackwardHookState:
    """The full backward hooks of one call of a module: identity nodes around its Tensor
    inputs and outputs catch grad_output and grad_input, and the hooks run once all the
    input gradients of that call have arrived (PyTorch's BackwardHook)."""

    def __init__(self, module: Module, hooks: list, n_args: int):
        self.module, self.hooks = module, hooks
        self.grad_inputs: list = [None] * n_args
        self.grad_outputs: tuple = ()
        self.waiting: set[int] = set()
        self.inputs: dict[int, Tensor] = {}

    @classmethod
    def wrap_inputs(cls, module: Module, args: tuple, hooks: list):
        state = cls(module, hooks, len(args))
        wrapped = list(args)
        for i, a in enumerate(args):
            if isinstance(a, Tensor) and a.requires_grad:
                out = node(a.data, (a,), "backward_hook")
                state.waiting.add(i)
                state.inputs[i] = a
                out.set_backward(state._input_backward(i))
                wrapped[i] = out
        return tuple(wrapped), state

    def _input_backward(self, i: int):
        def backward(g):
            self.grad_inputs[i] = g
            self.waiting.discard(i)
            if not self.waiting:
                self._run_hooks()
                for j, a in self.inputs.items():
                    if self.grad_inputs[j] is not None:
                        a.accumulate_grad(np.asarray(self.grad_inputs[j]))

        return backward

    def _run_hooks(self) -> None:
        grad_input = tuple(self.grad_inputs)
        for hook in self.hooks:
            result = hook(self.module, grad_input, self.grad_outputs)
            if result is not None:
                result = tuple(result) if isinstance(result, (tuple, list)) else (result,)
                if len(result) != len(grad_input):
                    raise RuntimeError(f"backward hook returned {len(result)} gradients, "
                                       f"expected {len(grad_input)}")
                grad_input = tuple(None if r is None else np.asarray(
                    r.data if isinstance(r, Tensor) else r) for r in result)
        self.grad_inputs = list(grad_input)

    def wrap_outputs(self, output):
        outs = output if isinstance(output, tuple) else (output,)
        grads: list = [None] * len(outs)
        self.grad_outputs = tuple(grads)
        wrapped = list(outs)
        for k, o in enumerate(outs):
            if isinstance(o, Tensor) and o.requires_grad:
                out = node(o.data, (o,), "backward_hook")

                def backward(g, k=k, o=o):
                    grads[k] = g
                    self.grad_outputs = tuple(grads)
                    if not self.waiting:  # no input needs a gradient: the hooks run now
                        self._run_hooks()
                    o.accumulate_grad(g)

                out.set_backward(backward)
                wrapped[k] = out
        return tuple(wrapped) if isinstance(output, tuple) else wrapped[0]
