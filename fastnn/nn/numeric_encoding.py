"""Encodings of numerical features for tabular networks.

:class:`PiecewiseLinearEncoding` is the piecewise-linear encoding of Gorishniy, Rubachev &
Babenko, "On Embeddings for Numerical Features in Tabular Deep Learning" (NeurIPS 2022),
Equation 1, with the conventions of their package ``rtdl_num_embeddings``
(``PiecewiseLinearEncoding``, ``compute_bins``): bin edges from quantiles of the training
rows (:func:`quantile_bins`), and for a feature with edges ``b_0 < b_1 < ... < b_T`` the
``T`` components

    e_t(x) = clip((x - b_{t-1}) / (b_t - b_{t-1}), lo_t, hi_t),    t = 1..T

where ``lo_t = 0`` and ``hi_t = 1``, except that the first bin is not clipped from below
(``lo_1 = -inf``) and the last not from above (``hi_T = +inf``): a value left of ``b_0`` or
right of ``b_T`` extrapolates linearly instead of being cut off. A feature with one bin
(``T = 1``, e.g. a 0/1 indicator) is not clipped at all: its encoding is ``(x - b_0) /
(b_1 - b_0)``. In the interior the encoding of ``x`` in bin ``t`` is ``[1, ..., 1, (x -
b_{t-1}) / (b_t - b_{t-1}), 0, ..., 0]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..graph import Tensor, clamp
from .module import Module

__all__ = ["PiecewiseLinearEncoding", "quantile_bins"]


def quantile_bins(X, n_bins: int = 48, dtype=np.float64) -> list[np.ndarray]:
    """Bin edges per column of ``X`` (N, F) from its quantiles, as ``rtdl_num_embeddings``'
    ``compute_bins`` without a target: the quantiles at ``linspace(0, 1, n_bins + 1)``
    (NumPy's default linear interpolation, as ``torch.quantile``), repeated edges removed.

    So a column with few distinct values gets few bins (a 0/1 indicator one bin, a column
    of ``k`` values at most ``k - 1``). A constant column (one distinct value ``v``) gets
    the single bin ``[v, v + max(1, |v|)]``. Blank (NaN) cells are ignored; a column with
    no finite value raises ValueError. ``dtype``: the edges are
    rounded to it before repeated ones are removed (float32 for a float32 model, so that
    they stay strictly increasing there).

    Returns
    -------
    list of F arrays of ``dtype``, each strictly increasing with at least two edges.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"quantile_bins: n_bins must be a positive integer, got {n_bins!r}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"quantile_bins: X must have shape (N, F), got {X.shape}")
    levels = np.linspace(0.0, 1.0, int(n_bins) + 1)
    bins = []
    for j in range(X.shape[1]):
        col = X[:, j]
        col = col[np.isfinite(col)]
        if not len(col):
            raise ValueError(f"quantile_bins: column {j} has no finite value")
        edges = np.unique(np.quantile(col, levels).astype(dtype))
        if len(edges) < 2:
            edges = np.array([edges[0], edges[0] + max(1.0, abs(float(edges[0])))], dtype)
        bins.append(edges)
    return bins


class PiecewiseLinearEncoding(Module):
    """The piecewise-linear encoding of numerical features (Gorishniy et al. 2022): each
    feature ``j`` with bin edges ``bins[j]`` (``T_j + 1`` increasing edges) becomes ``T_j``
    components (formula in the module docstring); no learned parameters.

    Parameters
    ----------
    bins : one 1-D array of strictly increasing, finite edges per feature (at least two
        each), e.g. from :func:`quantile_bins` of the training rows.
    dtype : float32 (default) or float64: the dtype of the edges and of the output.

    ``forward(x)``: x (N, F) -> (N, sum_j T_j), the components of feature 0 first. The
    gradient with respect to ``x`` (when it requires one) is ``1 / (b_t - b_{t-1})`` for
    each component where it is not clipped, 0 where it is.

    The edges are one persistent buffer, ``edges`` (sum_j (T_j + 1),), all features' edges
    one after the other; ``n_bins`` (T_j per feature) is the shape a checkpoint rebuilds
    the module from (:meth:`from_counts`) before loading the buffer.
    """

    def __init__(self, bins: Sequence, dtype=None):
        super().__init__()
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"PiecewiseLinearEncoding: dtype must be float32 or float64, got "
                             f"{dtype}")
        if isinstance(bins, np.ndarray) and bins.ndim == 1 or not len(bins):
            raise ValueError("PiecewiseLinearEncoding: bins must be a non-empty list of 1-D "
                             "edge arrays, one per feature")
        edges, counts = [], []
        for j, b in enumerate(bins):
            b = np.asarray(b, dtype=np.float64)
            b32 = b.astype(dtype)
            if b.ndim != 1 or len(b) < 2 or not np.all(np.isfinite(b32)) \
                    or not np.all(np.diff(b32) > 0):
                raise ValueError(f"PiecewiseLinearEncoding: bins[{j}] must be a 1-D array of "
                                 f"at least two finite, strictly increasing edges (in {dtype}),"
                                 f" got {b!r:.200}")
            edges.append(b32)
            counts.append(len(b) - 1)
        self.n_bins = counts
        self.register_buffer("edges", np.concatenate(edges).astype(dtype))

    @classmethod
    def from_counts(cls, n_bins: Sequence[int], dtype=None) -> PiecewiseLinearEncoding:
        """A module of ``n_bins[j]`` bins per feature with placeholder edges (0, 1, ...),
        to be filled by ``load_state_dict`` (a checkpoint's ``edges``)."""
        counts = [int(t) for t in n_bins]
        if not counts or min(counts) < 1:
            raise ValueError(f"PiecewiseLinearEncoding.from_counts: n_bins must be positive "
                             f"integers, got {list(n_bins)!r:.200}")
        return cls([np.arange(t + 1, dtype=np.float64) for t in counts], dtype=dtype)

    @property
    def in_features(self) -> int:
        return len(self.n_bins)

    @property
    def out_features(self) -> int:
        return int(sum(self.n_bins))

    def bins(self) -> list[np.ndarray]:
        """The edges of each feature (copies)."""
        ends = np.cumsum([0] + [t + 1 for t in self.n_bins])
        return [np.array(self.edges[a:b]) for a, b in zip(ends[:-1], ends[1:], strict=True)]

    def constants(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(feature, left, width, lower, upper)``, each (sum_j T_j,): the input column of
        each component, its bin's left edge and width, and its clipping bounds (-inf/+inf
        where a side is not clipped). Derived from ``edges`` and kept with a copy of the
        edges they came from: a loaded state (new edges) derives them again, a training step
        only compares the edges (sum_j (T_j + 1) values) instead of rebuilding them feature by
        feature. Read-only: the arrays are shared between calls."""
        edges = np.asarray(self.edges)
        kept = self.__dict__.get("_derived")
        if kept is not None and kept[0].dtype == edges.dtype and np.array_equal(kept[0], edges):
            return kept[1]
        derived = self._derive(edges)
        self.__dict__["_derived"] = (edges.copy(), derived)
        return derived

    def _derive(self, edges: np.ndarray):
        dtype = edges.dtype
        feature, left, width, lower, upper = [], [], [], [], []
        start = 0
        for j, t in enumerate(self.n_bins):
            b = edges[start:start + t + 1]
            start += t + 1
            feature.append(np.full(t, j, np.int64))
            left.append(b[:-1])
            width.append(b[1:] - b[:-1])
            lo = np.zeros(t, dtype)
            hi = np.ones(t, dtype)
            lo[0], hi[-1] = -np.inf, np.inf
            lower.append(lo)
            upper.append(hi)
        return tuple(np.concatenate(p) for p in (feature, left, width, lower, upper))

    def forward(self, x):
        data = x.data if isinstance(x, Tensor) else np.asarray(x)
        if data.ndim != 2 or data.shape[1] != self.in_features:
            raise ValueError(f"PiecewiseLinearEncoding: input must have shape (N, "
                             f"{self.in_features}), got {data.shape}")
        feature, left, width, lower, upper = self.constants()
        if not (isinstance(x, Tensor) and x.requires_grad):
            # no gradient wanted (the usual case: the input is data): one NumPy pass
            out = np.asarray(data, dtype=self.edges.dtype)[:, feature]
            out -= left
            out /= width
            np.maximum(out, lower, out=out)
            np.minimum(out, upper, out=out)
            return Tensor(out)
        cols = x[:, feature]
        return clamp((cols - Tensor(left)) / Tensor(width), Tensor(lower), Tensor(upper))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, n_bins={self.n_bins}"
