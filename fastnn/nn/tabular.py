"""An MLP for tables: one embedding per categorical column, concatenated with the continuous
features, into Linear -> [BatchNorm1d] -> activation -> [Dropout] layers.

The input is one float matrix (N, n_continuous + n_categorical): the continuous features
first, then one column of integer codes per categorical column (what
:class:`fastnn.tabular.TableEncoder` writes), so the model trains from the same
:class:`fastnn.data.DataLoader` batches as a plain MLP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._buffers import BufferPool
from ..graph import Tensor, cat, node
from ..kernels import blas as K_blas
from ..kernels import embedding as K_emb
from ..kernels import tabular_input as K_in
from ..kernels import tabular_linear as K_lin
from .layers import BatchNorm1d, Dropout, Embedding, Linear, PReLU, make_activation
from .module import Module, ModuleList, Parameter, Sequential
from .numeric_encoding import PiecewiseLinearEncoding

#: The component-to-feature map of a first input with no continuous part.
_NO_FEATURES = np.empty(0, np.int64)


def embedding_size(n_categories: int) -> int:
    """The embedding width of a categorical column with ``n_categories`` codes (blank and
    unknown included): fastai's ``min(600, round(1.6 * n ** 0.56))``, capped at 50
    (pytorch-tabular's cap) and at least 2."""
    return int(max(2, min(50, round(1.6 * n_categories ** 0.56))))


class TabularMLP(Module):
    """Embeddings of categorical codes and continuous features into an MLP.

    Parameters
    ----------
    n_continuous : number of continuous features (the first columns of the input).
    cardinalities : codes per categorical column (the input's last columns hold codes in
        ``[0, cardinality)``).
    embedding_dims : width of each column's embedding (default:
        :func:`fastnn.tabular.embedding_size` of its cardinality).
    hidden : hidden layer sizes.
    out_features : outputs (classes, or regression targets).
    activation : an activation name (``relu``, ``gelu``, ...) or ``prelu``.
    batchnorm, dropout : BatchNorm1d and Dropout(p) after each hidden Linear.
    padding_idx : the code whose embedding row is held at zero and gets no gradient (the
        table encoder's "unknown", 1), or None.
    dtype : float32 (default) or float64.
    numeric_bins : None (default: the continuous features enter the MLP as they are), or
        one array of bin edges per continuous feature: they enter through
        ``PiecewiseLinearEncoding(numeric_bins)`` (Gorishniy et al. 2022), ``T_j``
        components for a feature with ``T_j + 1`` edges (edges from
        :func:`fastnn.nn.quantile_bins` of the training rows, on the same scale as the
        input), or an int list ``T_j`` per feature: placeholder edges that a loaded state
        dict fills (how a checkpoint rebuilds the model).

    ``forward(x)``: x (N, n_continuous + len(cardinalities)) -> (N, out_features). The codes
    must be whole numbers in range (an out-of-range code raises, as Embedding does).
    Submodules: ``embeddings`` (a ModuleList of Embedding), ``numeric_encoding`` (the
    PiecewiseLinearEncoding, or None) and ``mlp`` (a Sequential).
    """

    def __init__(self, n_continuous: int, cardinalities: Sequence[int] = (),
                 embedding_dims: Sequence[int] | None = None, hidden: Sequence[int] = (256, 256),
                 out_features: int = 1, activation: str = "relu", batchnorm: bool = True,
                 dropout: float = 0.0, padding_idx: int | None = 1, dtype=None,
                 numeric_bins: Sequence | None = None):
        super().__init__()
        if isinstance(n_continuous, bool) or not isinstance(n_continuous, (int, np.integer)) \
                or n_continuous < 0:
            raise ValueError(f"TabularMLP: n_continuous must be a non-negative integer, got "
                             f"{n_continuous!r}")
        cardinalities = [int(c) for c in cardinalities]
        if embedding_dims is None:
            embedding_dims = [embedding_size(c) for c in cardinalities]
        embedding_dims = [int(d) for d in embedding_dims]
        if len(embedding_dims) != len(cardinalities):
            raise ValueError(f"TabularMLP: {len(embedding_dims)} embedding_dims for "
                             f"{len(cardinalities)} categorical columns")
        if n_continuous + len(cardinalities) == 0:
            raise ValueError("TabularMLP: no inputs (n_continuous 0 and no cardinalities)")
        self.n_continuous, self.cardinalities = int(n_continuous), cardinalities
        self.embedding_dims = embedding_dims
        # where each table's rows start among the embedding columns (both first-layer paths)
        self._embedding_starts = np.cumsum([0] + embedding_dims)[:-1].astype(np.int64)
        pad = [padding_idx if padding_idx is not None and padding_idx < c else None
               for c in cardinalities]
        self.embeddings = ModuleList([Embedding(c, d, padding_idx=p, dtype=dtype)
                                      for c, d, p in zip(cardinalities, embedding_dims, pad,
                                                         strict=True)])
        if numeric_bins is None:
            self.numeric_encoding = None
        else:
            if len(numeric_bins) != self.n_continuous:
                raise ValueError(f"TabularMLP: {len(numeric_bins)} numeric_bins for "
                                 f"{self.n_continuous} continuous features")
            if not self.n_continuous:
                raise ValueError("TabularMLP: numeric_bins given but no continuous features")
            counts = all(isinstance(b, (int, np.integer)) and not isinstance(b, bool)
                         for b in numeric_bins)
            self.numeric_encoding = (PiecewiseLinearEncoding.from_counts(numeric_bins, dtype)
                                     if counts else PiecewiseLinearEncoding(numeric_bins, dtype))
        layers: list[Module] = []
        n_numeric = self.n_continuous if self.numeric_encoding is None \
            else self.numeric_encoding.out_features
        width = n_numeric + sum(embedding_dims)
        for h in hidden:
            layers.append(Linear(width, h, dtype=dtype))
            if batchnorm:
                layers.append(BatchNorm1d(h, dtype=dtype))
            layers.append(PReLU(h, dtype=dtype) if activation == "prelu"
                          else make_activation(activation))
            if dropout:
                layers.append(Dropout(dropout))
            width = h
        layers.append(Linear(width, out_features, dtype=dtype))
        self.mlp = Sequential(*layers)

    @property
    def in_features(self) -> int:
        return self.n_continuous + len(self.cardinalities)

    def forward(self, x):
        data = x.data if isinstance(x, Tensor) else np.asarray(x)
        if data.ndim != 2 or data.shape[1] != self.in_features:
            raise ValueError(f"TabularMLP: input must have shape (N, {self.in_features}) "
                             f"({self.n_continuous} continuous + {len(self.cardinalities)} "
                             f"code columns), got {data.shape}")
        # the first layer from runs of components when there are components: without an
        # encoding a feature is one column, which BLAS multiplies faster than the runs' adds
        # (measured: fastnn bench --tables' model, 40 plain features and 5 embeddings, an
        # epoch 1.2x slower from runs)
        if not (isinstance(x, Tensor) and x.requires_grad) and data.dtype.kind == "f" \
                and self.numeric_encoding is not None:
            z = self._first_layer(data)
            if z is not None:
                return self._after_first_layer()(z)
        if not self.cardinalities:
            return self.mlp(x if self.numeric_encoding is None else self.numeric_encoding(x))
        if not (isinstance(x, Tensor) and x.requires_grad) and data.dtype.kind == "f":
            first = self._first_input(data)
            if first is not None:
                return self.mlp(first)
        return self.mlp(self._first_input_graph(x, data))

    def _encoding_constants(self, dtype):
        """``(feature, left, width, lower, upper)`` of the continuous columns' part of the
        first input: the piecewise-linear encoding's, or (without one) those that copy the
        ``n_continuous`` features unchanged (left 0, width 1, no clipping)."""
        if self.numeric_encoding is not None:
            return self.numeric_encoding.constants()
        kept = self.__dict__.get("_identity_constants")
        if kept is None or kept[1].dtype != dtype:
            k = self.n_continuous
            kept = (np.arange(k, dtype=np.int64), np.zeros(k, dtype), np.ones(k, dtype),
                    np.full(k, -np.inf, dtype), np.full(k, np.inf, dtype))
            self.__dict__["_identity_constants"] = kept
        return kept

    def _first_input(self, data: np.ndarray) -> Tensor | None:
        """The first Linear's input (N, W) from the float rows ``data`` in one kernel
        (``kernels/tabular_input.py``): the encoded continuous features and the embedding rows
        written into one matrix, no per-column arrays and no concatenation; its backward
        scatters the gradient's columns of each table into that table's gradient. None when a
        code is not a whole number in range (the graph path then raises the error)."""
        weights = tuple(emb.weight for emb in self.embeddings)
        dtype = weights[0].data.dtype
        if any(w.data.dtype != dtype or not w.data.flags.c_contiguous for w in weights):
            return None
        feature, left, width, lower, upper = self._encoding_constants(dtype)
        if left.dtype != dtype:
            return None
        pool = self.__dict__.get("_input_pool")
        if pool is None:
            pool = self.__dict__["_input_pool"] = BufferPool()
        n = data.shape[0]
        dims = self.embedding_dims
        offsets = self._embedding_starts + len(feature)
        out = np.empty((n, len(feature) + sum(dims)), dtype)
        codes = np.empty((len(weights), n), np.int64)
        tables = tuple(w.data for w in weights)
        x = np.ascontiguousarray(data)
        if n and not K_in.tabular_input_forward(out.size)(x, self.n_continuous, feature, left,
                                                          width, lower, upper, tables,
                                                          offsets, codes, out):
            return None
        result = node(out, weights, "tabular_input")
        if result.requires_grad:
            result.set_backward(lambda g: self._embedding_grads(weights, codes, g, offsets,
                                                                pool))
        return result

    def _embedding_grads(self, weights, codes, g, starts, pool) -> None:
        """Scatter the columns ``starts[j] .. starts[j] + D_j`` of the gradient ``g`` (N, W)
        into embedding table j's gradient at its ``codes[j]`` (both first-layer paths)."""
        dtype = weights[0].data.dtype
        for j, (w, emb) in enumerate(zip(weights, self.embeddings, strict=True)):
            if w.requires_grad:
                lo = int(starts[j])
                gj = np.ascontiguousarray(g[:, lo:lo + self.embedding_dims[j]], dtype=dtype)
                pad = -1 if emb.padding_idx is None else emb.padding_idx
                _embedding_grad(w, codes[j], gj, pad, pool, j)

    def _after_first_layer(self) -> Sequential:
        """The layers after ``mlp``'s first Linear, as a Sequential of the same modules (not
        registered: the model's parameters stay ``mlp``'s), remade when ``mlp`` changed."""
        mods = tuple(self.mlp._modules.values())
        kept = self.__dict__.get("_rest")
        if kept is None or len(kept[0]) != len(mods) or \
                any(a is not b for a, b in zip(kept[0], mods, strict=True)):
            kept = self.__dict__["_rest"] = (mods, Sequential(*mods[1:]))
        return kept[1]

    def _groups(self, constants) -> np.ndarray | None:
        """The first component of each continuous feature's group (G + 1,) when the
        continuous part of the first input has the structure ``kernels/tabular_linear.py``
        needs (the features' components in order; within a group of two or more, positive
        widths equal to the differences of the left edges in the dtype, every component but
        the last clipped above at 1, every one but the first clipped below at 0: what
        ``PiecewiseLinearEncoding`` derives); else None."""
        kept = self.__dict__.get("_groups_of")
        if kept is not None and kept[0] is constants:
            return kept[1]
        feature, left, width, lower, upper = constants
        k = self.n_continuous
        sizes = np.bincount(feature, minlength=k) if len(feature) else np.zeros(k, np.int64)
        start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        ok = len(sizes) == k and (sizes > 0).all() and \
            np.array_equal(feature, np.repeat(np.arange(k), sizes))
        if ok:
            for g in range(k):
                s, e = start[g], start[g + 1]
                if e - s < 2:
                    continue
                lf, w = left[s:e], width[s:e]
                if not ((w > 0).all() and np.array_equal(w[:-1], lf[1:] - lf[:-1])
                        and (lower[s + 1:e] == 0).all() and (upper[s:e - 1] == 1).all()):
                    ok = False
                    break
        groups = start if ok else None
        self.__dict__["_groups_of"] = (constants, groups)
        return groups

    def _first_layer(self, data: np.ndarray) -> Tensor | None:
        """The first Linear's output (N, H), before what follows it, without writing the
        continuous features' components (``kernels/tabular_linear.py``: a run of ones and one
        value a feature, summed from prefix sums of the weight's rows) and with the
        embedding rows' part as one product. Its backward writes the weight's gradient from
        the same runs, the bias's, and the embedding rows' gradients (the product with the
        weight's embedding columns); the components get none (data: no gradient).

        None when this path does not apply and the first input is written instead: the
        first module not a plain Linear of the embeddings' dtype, a hook on it or on
        ``mlp``, a continuous part without the structure (:meth:`_groups`), a NaN feature,
        or a code not a whole number in range (the graph path then raises the error)."""
        mlp = self.mlp
        lin = next(iter(mlp._modules.values()))
        if type(lin) is not Linear or lin._hooks is not None or mlp._hooks is not None \
                or lin.activation is not None:
            return None
        W, b = lin.weight, lin.bias
        dtype = W.data.dtype
        weights = tuple(emb.weight for emb in self.embeddings)
        if not W.data.flags.c_contiguous or \
                any(w.data.dtype != dtype or not w.data.flags.c_contiguous for w in weights):
            return None
        constants = self._encoding_constants(dtype)
        feature, left, width, lower, upper = constants
        if left.dtype != dtype:
            return None
        groups = self._groups(constants)
        if groups is None:
            return None
        n = data.shape[0]
        n_comp = len(feature)
        units = W.shape[1]
        x = np.ascontiguousarray(data)
        # the embedding rows (N, D): the first-input kernel with no continuous part
        dims = self.embedding_dims
        n_emb = sum(dims)
        tables = tuple(w.data for w in weights)
        codes = np.empty((len(weights), n), np.int64)
        emb = np.empty((n, n_emb), dtype)
        pool = self.__dict__.get("_input_pool")
        if pool is None:
            pool = self.__dict__["_input_pool"] = BufferPool()
        if weights and n:
            none = np.empty(0, dtype)  # no components: the kernel writes the rows only
            if not K_in.tabular_input_forward(emb.size)(x, self.n_continuous, _NO_FEATURES,
                                                        none, none, none, none, tables,
                                                        self._embedding_starts, codes, emb):
                return None
        Wd = W.data  # (input, units): the continuous part's rows, then the embeddings'
        WT = Wd[:n_comp]
        prefix = pool.get("prefix", (n_comp + len(groups) - 1, units), dtype)
        K_lin.group_prefix(WT, groups, prefix)
        bias = b.data if b is not None else np.zeros(units, dtype)
        z = np.empty((n, units), dtype)
        runs = np.empty((n, len(groups) - 1), np.int64)
        fracs = np.empty((n, len(groups) - 1), dtype)
        if n and not K_lin.ple_linear_forward(n * units * len(groups))(
                x, groups, left, width, lower, upper, prefix, WT, bias, z, runs, fracs):
            return None
        W_emb = Wd[n_comp:]
        if n_emb and n:
            K_blas.gemm(emb, W_emb, z, beta=1.0)
        params = (W, b, *weights) if b is not None else (W, *weights)
        out = node(z, params, "tabular_first_linear")
        if not out.requires_grad:
            return out

        def backward(g):
            g = np.ascontiguousarray(g, dtype=dtype)
            if W.requires_grad or (b is not None and b.requires_grad):
                # written where each gradient goes (an optimizer's buffer), or added into an
                # earlier contribution (``grad_destination``)
                dW, dW_into = W.grad_destination(lambda: np.empty(W.shape, dtype)) \
                    if W.requires_grad else (np.empty(W.shape, dtype), None)
                db, db_into = b.grad_destination(lambda: np.empty(units, dtype)) \
                    if b is not None and b.requires_grad else (np.empty(units, dtype), None)
                scratch = pool.get("binned", (n_comp + len(groups) - 1, units), dtype)
                K_lin.ple_linear_backward(n * units * len(groups))(g, groups, runs, fracs, dW,
                                                                   db, scratch)
                if n_emb:
                    K_blas.gemm(emb, g, dW[n_comp:], trans_a=True)
                if dW_into is not None:
                    dW_into += dW
                if db_into is not None:
                    db_into += db
            if n_emb and any(w.requires_grad for w in weights):
                d_emb = pool.get("d_emb", (n, n_emb), dtype)
                K_blas.gemm(g, W_emb, d_emb, trans_b=True)
                self._embedding_grads(weights, codes, d_emb, self._embedding_starts, pool)

        out.set_backward(backward)
        return out

    def _first_input_graph(self, x, data: np.ndarray) -> Tensor:
        """The first Linear's input as graph ops (embedding nodes and ``cat``): for an input
        that needs a gradient, and to raise the error of a bad code."""
        k = self.n_continuous
        codes = data[:, k:]
        if codes.dtype.kind == "f":
            if not (np.isfinite(codes).all() and (codes == np.round(codes)).all()):
                raise ValueError("TabularMLP: the code columns must hold whole numbers")
            codes = codes.astype(np.int64)
        parts = [x[:, :k] if isinstance(x, Tensor) else data[:, :k]] if k else []
        if parts and self.numeric_encoding is not None:
            # the encoding converts and gathers its input itself: no copy before it
            parts[0] = self.numeric_encoding(parts[0])
        parts = [p if isinstance(p, Tensor) else Tensor(np.ascontiguousarray(
            p, dtype=self.embeddings[0].weight.dtype)) for p in parts]
        parts += [emb(np.ascontiguousarray(codes[:, j]))
                  for j, emb in enumerate(self.embeddings)]
        return cat(parts, dim=1)

    def extra_repr(self) -> str:
        return (f"n_continuous={self.n_continuous}, cardinalities={self.cardinalities}, "
                f"embedding_dims={self.embedding_dims}"
                + ("" if self.numeric_encoding is None else
                   f", numeric_bins={self.numeric_encoding.n_bins}"))


def _embedding_grad(weight: Parameter, codes: np.ndarray, g: np.ndarray, pad: int,
                    pool: BufferPool, j: int) -> None:
    """Add the gradient ``g`` (N, D) of the rows at ``codes`` (N,) into ``weight``'s gradient,
    as ``Embedding``'s backward does (``kernels/embedding.py``: deterministic on any number
    of threads; the ``pad`` row, if >= 0, gets none)."""
    v = weight.shape[0]
    chunk_start = pool.get(f"chunk_start{j}", (K_emb.n_table_chunks(v) + 1,), np.int64)
    order = pool.get(f"order{j}", codes.shape, np.int64)
    dW, add_to = weight.grad_destination()
    if add_to is not None:  # a gradient already there: add into it
        K_emb.embedding_backward(g.size)(codes, g, pad, add_to, True, chunk_start, order)
    else:
        K_emb.embedding_backward(g.size)(codes, g, pad, dW, False, chunk_start, order)
