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

from ..graph import Tensor, cat
from .layers import BatchNorm1d, Dropout, Embedding, Linear, PReLU, make_activation
from .module import Module, ModuleList, Sequential
from .numeric_encoding import PiecewiseLinearEncoding


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
        k = self.n_continuous
        if not self.cardinalities:
            return self.mlp(x if self.numeric_encoding is None else self.numeric_encoding(x))
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
        return self.mlp(cat(parts, dim=1))

    def extra_repr(self) -> str:
        return (f"n_continuous={self.n_continuous}, cardinalities={self.cardinalities}, "
                f"embedding_dims={self.embedding_dims}"
                + ("" if self.numeric_encoding is None else
                   f", numeric_bins={self.numeric_encoding.n_bins}"))
