"""PyTorch's ``torch.utils.data`` on fastnn: datasets, samplers, ``default_collate`` and
``DataLoader`` with PyTorch 2.13's names, defaults and behaviour.

Batches are fastnn Tensors (``xb.size(0)``, ``xb.to("cpu")``, ``yb.long()``). A map-style
data set that is a :class:`TensorDataset` (or ``fastnn.data.ArrayDataset``, or a
:class:`Subset` of either) with the default collation takes a fast path: each batch's rows are
gathered by one call of the rows kernel (``kernels.rows``) per array into buffers that are
reused once nothing holds the previous batch, with no Python loop over samples; every other
data set goes through ``__getitem__`` and :func:`default_collate` as in PyTorch.

``num_workers > 0`` runs ``__getitem__`` and the collation of several batches at once on
threads (a pool per epoch, or kept with ``persistent_workers``), and yields the batches in
the sampler's order. Threads, not processes: a data set need not be picklable and
nothing is copied between processes; ``__getitem__`` that reads files or calls NumPy
releases the GIL, and pure-Python work gains nothing (measured in the report of issue 26).
The fast path needs no workers: a batch is one kernel call.

Randomness (shuffling, samplers, :func:`random_split`) draws from ``generator=`` (a
``fnn.Generator``) or, without one, from the global generator (``fnn.manual_seed``), as
PyTorch's does; the numbers are NumPy's, not PyTorch's, so a seed reproduces fastnn's split,
not PyTorch's.
"""

from __future__ import annotations

import bisect
import collections.abc
import itertools
import math
import numbers
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as _FutureTimeout

import numpy as np

from .._buffers import BufferPool
from .._threads import LOOP_CLOCK
from ..graph import Tensor, _const
from ..random import Generator, numpy_generator
from ._rows import _row_kernel, take_rows

__all__ = [
    "BatchSampler",
    "ChainDataset",
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "IterableDataset",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "Subset",
    "SubsetRandomSampler",
    "TensorDataset",
    "WeightedRandomSampler",
    "default_collate",
    "default_convert",
    "get_worker_info",
    "random_split",
]


# ---------------------------------------------------------------------------- datasets
class Dataset:
    """A map-style data set: subclasses implement ``__getitem__(index)`` (and usually
    ``__len__``), as PyTorch's ``Dataset``. ``a + b`` is a :class:`ConcatDataset`."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])

    def _gather_rows(self, pool: BufferPool):
        """The fast path's hook: ``(gather, rows)``, or None when samples must go through
        ``__getitem__``. ``gather(idx) -> tuple of batch arrays`` takes int64 rows of the
        underlying arrays (in range, not checked); ``rows`` maps this data set's positions
        to those rows (None: the identity), so that the loader composes a whole epoch's
        order with it once rather than batch by batch. The arrays come from ``pool`` and are
        wrapped as Tensors by the loader."""
        return None


class IterableDataset(Dataset):
    """A data set that is a stream: subclasses implement ``__iter__`` (PyTorch's
    ``IterableDataset``); the DataLoader batches what it yields, in order."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def __add__(self, other: Dataset) -> ChainDataset:
        return ChainDataset([self, other])


def _as_tensor_keep_dtype(t, what: str) -> Tensor:
    if isinstance(t, Tensor):
        return t
    if isinstance(t, np.ndarray) and t.dtype.kind in "biuf":
        return _const(t)
    raise TypeError(f"{what} must be Tensors (or NumPy arrays), got {type(t).__name__}")


class TensorDataset(Dataset):
    """Samples are the rows of the given tensors: ``dataset[i] == (t0[i], t1[i], ...)``.

    Parameters
    ----------
    *tensors : Tensors (or NumPy arrays) that all have the same first dimension.

    Attributes
    ----------
    tensors : tuple of Tensors.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        self.tensors = tuple(_as_tensor_keep_dtype(t, "TensorDataset's arguments")
                             for t in tensors)
        n = self.tensors[0].shape[0] if self.tensors[0].ndim else None
        for i, t in enumerate(self.tensors):
            if t.ndim == 0 or t.shape[0] != n:
                raise ValueError(
                    "Size mismatch between tensors: TensorDataset's tensors must share their "
                    f"first dimension, got shapes {[tuple(t.shape) for t in self.tensors]} "
                    f"(argument {i})")

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def _gather_rows(self, pool: BufferPool):
        arrays = [(f"t{k}", t.data, t.data.shape[1:], t.data.dtype)
                  for k, t in enumerate(self.tensors)]
        # Each array's rows kernel (take_rows's choice) by batch size, chosen at the first
        # batch of that size: the same choice for the same shapes, without its checks at
        # every batch (about 1.5 µs an array).
        kernels: dict[int, list] = {}

        def gather(idx: np.ndarray) -> tuple[np.ndarray, ...]:
            n = len(idx)
            outs = [pool.get(key, (n, *rest), dt) for key, _, rest, dt in arrays]
            chosen = kernels.get(n) if idx.dtype == np.int64 else None
            if chosen is None:
                for (_, a, _, _), out in zip(arrays, outs, strict=True):
                    take_rows(a, idx, out, pool)
                if idx.dtype == np.int64:
                    kernels[n] = [_row_kernel(a, out) for (_, a, _, _), out
                                  in zip(arrays, outs, strict=True)]
                return tuple(outs)
            for (_, a, _, _), out, kern in zip(arrays, outs, chosen, strict=True):
                if kern is None:
                    take_rows(a, idx, out, pool)
                else:
                    kern[0](a, idx, *kern[1], out)
            return tuple(outs)

        return gather, None


class Subset(Dataset):
    """The samples ``indices`` of ``dataset``, in that order (PyTorch's ``Subset``)."""

    def __init__(self, dataset: Dataset, indices):
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices: list[int]) -> list:
        getitems = getattr(self.dataset, "__getitems__", None)
        if getitems is not None:
            return getitems([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def _gather_rows(self, pool: BufferPool):
        inner = self.dataset._gather_rows(pool) if isinstance(self.dataset, Dataset) else None
        if inner is None:
            return None
        gather, inner_rows = inner
        rows = _checked_rows(self.indices, len(self.dataset), "Subset indices")
        return gather, (rows if inner_rows is None else inner_rows[rows])


def _checked_rows(indices, n: int, what: str) -> np.ndarray:
    """``indices`` as int64 positions in [0, n) (negative ones counted from the end)."""
    rows = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if rows.size == 0:
        return np.zeros(0, np.int64)
    if rows.dtype.kind not in "iu" or rows.ndim != 1:
        raise TypeError(f"{what} must be a 1-D sequence of integers, got dtype {rows.dtype} "
                        f"and shape {rows.shape}")
    rows = rows.astype(np.int64)
    if rows.min() < -n or rows.max() >= n:
        bad = rows[(rows < -n) | (rows >= n)][0]
        raise IndexError(f"{what}: index {bad} is out of range for a data set of {n} samples")
    return np.where(rows < 0, rows + n, rows) if rows.min() < 0 else rows


class ConcatDataset(Dataset):
    """Several map-style data sets one after the other (PyTorch's ``ConcatDataset``)."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        if idx < 0:
            if -idx > len(self):
                raise ValueError("absolute value of index should not exceed dataset length")
            idx = len(self) + idx
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][idx - start]


class ChainDataset(IterableDataset):
    """Several iterable data sets one after the other (PyTorch's ``ChainDataset``)."""

    def __init__(self, datasets):
        self.datasets = list(datasets)

    def __iter__(self):
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError("ChainDataset only supports IterableDataset")
            yield from d

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)


def random_split(dataset: Dataset, lengths, generator: Generator | None = None
                 ) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random :class:`Subset` s of the given lengths.

    ``lengths`` are sample counts that add up to ``len(dataset)``, or fractions that add up
    to 1: then each gets ``floor(fraction * n)`` samples and the remainder is handed out one
    sample at a time, round robin from the first split (PyTorch's rounding).
    ``generator``: a ``fnn.Generator`` (the global one when omitted).
    """
    n = len(dataset)
    lengths = list(lengths)
    if lengths and math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        counts = []
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"Fraction at index {i} is not between 0 and 1")
            counts.append(int(math.floor(n * frac)))
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, c in enumerate(counts):
            if c == 0:
                warnings.warn(f"Length of split at index {i} is 0. This might result in an "
                              "empty dataset.", stacklevel=2)
        lengths = counts
    for i, c in enumerate(lengths):
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0:
            raise ValueError(f"random_split: lengths[{i}] = {c!r}; lengths must be "
                             "non-negative integers that add up to len(dataset), or fractions "
                             "that add up to 1")
    if sum(lengths) != n:
        raise ValueError("Sum of input lengths does not equal the length of the input dataset! "
                         f"(lengths {lengths} add up to {sum(lengths)}, the data set has {n})")
    order = numpy_generator(generator).permutation(n).tolist()
    return [Subset(dataset, order[end - c:end])
            for end, c in zip(itertools.accumulate(lengths), lengths, strict=True)]


# ---------------------------------------------------------------------------- samplers
class Sampler:
    """Yields indices into a data set (PyTorch's ``Sampler``): subclasses implement
    ``__iter__`` (and ``__len__`` where they know it)."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def _index_array(self) -> np.ndarray:
        """This epoch's indices as one int64 array (the fast path slices it into batches);
        the same randomness as ``__iter__``."""
        return np.fromiter(iter(self), dtype=np.int64)


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)

    def _index_array(self) -> np.ndarray:
        return np.arange(len(self.data_source), dtype=np.int64)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} should be a positive integer value, but got {name}={value!r}")
    return int(value)


class RandomSampler(Sampler):
    """A random permutation each epoch (``replacement=False``), or ``num_samples`` indices
    drawn with replacement; ``num_samples`` above the data set's size without replacement
    chains several permutations (PyTorch's rule)."""

    def __init__(self, data_source, replacement: bool = False, num_samples: int | None = None,
                 generator: Generator | None = None):
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got "
                            f"replacement={replacement!r}")
        self.data_source, self.replacement = data_source, replacement
        self._num_samples, self.generator = num_samples, generator
        _positive_int(self.num_samples, "num_samples")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __len__(self) -> int:
        return self.num_samples

    def _index_array(self) -> np.ndarray:
        n, k = len(self.data_source), self.num_samples
        rng = numpy_generator(self.generator)
        if self.replacement:
            return rng.integers(0, n, size=k, dtype=np.int64)
        parts = [rng.permutation(n) for _ in range(k // n)]
        if k % n:
            parts.append(rng.permutation(n)[:k % n])
        return np.concatenate(parts).astype(np.int64, copy=False)

    def __iter__(self):
        return iter(self._index_array().tolist())


class SubsetRandomSampler(Sampler):
    """The given indices in a random order each epoch."""

    def __init__(self, indices, generator: Generator | None = None):
        self.indices, self.generator = indices, generator

    def __iter__(self):
        for i in numpy_generator(self.generator).permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """``num_samples`` indices in [0, len(weights)), index i with probability proportional to
    ``weights[i]`` (with replacement by default), as PyTorch's ``torch.multinomial``."""

    def __init__(self, weights, num_samples: int, replacement: bool = True,
                 generator: Generator | None = None):
        self.num_samples = _positive_int(num_samples, "num_samples")
        if not isinstance(replacement, bool):
            raise ValueError(f"replacement should be a boolean value, but got "
                             f"replacement={replacement!r}")
        w = np.asarray(weights.data if isinstance(weights, Tensor) else weights, np.float64)
        if w.ndim != 1:
            raise ValueError(f"weights should be a 1d sequence but given weights have shape "
                             f"{tuple(w.shape)}")
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        if not replacement and num_samples > np.count_nonzero(w):
            raise ValueError(f"cannot draw {num_samples} samples without replacement from "
                             f"{np.count_nonzero(w)} non-zero weights")
        self.weights, self.replacement, self.generator = w, replacement, generator

    def _index_array(self) -> np.ndarray:
        rng = numpy_generator(self.generator)
        return rng.choice(len(self.weights), size=self.num_samples, replace=self.replacement,
                          p=self.weights / self.weights.sum()).astype(np.int64)

    def __iter__(self):
        return iter(self._index_array().tolist())

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` into lists of ``batch_size`` (the last one shorter
    unless ``drop_last``)."""

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        self.batch_size = _positive_int(batch_size, "batch_size")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got "
                             f"drop_last={drop_last!r}")
        self.sampler, self.drop_last = sampler, drop_last

    def __iter__(self):
        it = iter(self.sampler)
        while True:
            batch = list(itertools.islice(it, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


# ---------------------------------------------------------------------------- collation
def _is_numeric_array(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind in "biuf"


def default_convert(data):
    """What the loader does to each sample when ``batch_size=None``: NumPy arrays and
    numbers become Tensors, containers are converted element by element."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return _const(data) if _is_numeric_array(data) else data
    if isinstance(data, np.generic) and data.dtype.kind in "biuf":
        return _const(np.asarray(data))
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, collections.abc.Mapping):
        return type(data)({k: default_convert(v) for k, v in data.items()}) \
            if type(data) is not dict else {k: default_convert(v) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # a namedtuple
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence):
        return [default_convert(d) for d in data]
    return data


def default_collate(batch):
    """Merge a list of samples into a batch, as PyTorch's ``default_collate``.

    Tensors and NumPy arrays are stacked along a new first dimension (dtype kept); Python
    floats become a float64 Tensor, ints int64, bools bool; NumPy scalars a Tensor of their
    dtype; strings stay as given (a tuple or list); dicts are collated key by key,
    namedtuples field by field, and tuples and lists element by element (a tuple sample
    gives a list, as in PyTorch).
    """
    if not isinstance(batch, collections.abc.Sequence) or isinstance(batch, (str, bytes)):
        raise TypeError(f"default_collate: batch must be a sequence of samples, got "
                        f"{type(batch).__name__}")
    if len(batch) == 0:
        raise ValueError("default_collate: the batch is empty")
    elem = batch[0]
    if isinstance(elem, Tensor):
        shapes = {tuple(b.shape) for b in batch}
        if len(shapes) > 1:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got shapes "
                               f"{sorted(shapes)} in the batch")
        return _const(np.stack([b.data for b in batch]))
    if isinstance(elem, np.ndarray):
        if not _is_numeric_array(elem):
            raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, "
                            f"numbers, dicts or lists; found {elem.dtype}")
        return _const(np.stack(batch))
    if isinstance(elem, np.generic):
        if elem.dtype.kind not in "biuf":
            raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, "
                            f"numbers, dicts or lists; found {elem.dtype}")
        return _const(np.array(batch))
    if isinstance(elem, bool):
        return _const(np.array(batch, dtype=np.bool_))
    if isinstance(elem, float):
        return _const(np.array(batch, dtype=np.float64))
    if isinstance(elem, int):
        return _const(np.array(batch, dtype=np.int64))
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        merged = {key: default_collate([d[key] for d in batch]) for key in elem}
        if type(elem) is dict:
            return merged
        try:
            return type(elem)(merged)
        except TypeError:
            return merged
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # a namedtuple
        return type(elem)(*(default_collate(s) for s in zip(*batch, strict=True)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return [default_collate(s) for s in zip(*batch, strict=True)]
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, "
                    f"dicts or lists; found {type(elem).__name__}")


# ---------------------------------------------------------------------------- workers
class WorkerInfo:
    """What :func:`get_worker_info` returns inside a worker: ``id``, ``num_workers``,
    ``seed`` and ``dataset``."""

    def __init__(self, id: int, num_workers: int, seed: int, dataset):
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self) -> str:
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_worker_local = threading.local()


def get_worker_info() -> WorkerInfo | None:
    """Inside a DataLoader worker (a thread), its :class:`WorkerInfo`; None elsewhere."""
    return getattr(_worker_local, "info", None)


class _Workers:
    """A pool of worker threads with their ids, ``worker_init_fn`` called once in each."""

    def __init__(self, loader: DataLoader):
        self.num_workers = loader.num_workers
        self._next_id = itertools.count()
        self._lock = threading.Lock()
        base_seed = int(numpy_generator(loader.generator).integers(0, 2**62))
        dataset, init_fn = loader.dataset, loader.worker_init_fn

        def init():
            with self._lock:
                wid = next(self._next_id)
            _worker_local.info = WorkerInfo(wid, self.num_workers, base_seed + wid, dataset)
            if init_fn is not None:
                init_fn(wid)

        self.pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="fastnn-data",
                                       initializer=init)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------- DataLoader
class DataLoader:
    """Batches of a data set, PyTorch's ``DataLoader`` with its arguments and defaults.

    Parameters
    ----------
    dataset : a map-style :class:`Dataset` (``__getitem__`` and ``__len__``), an
        :class:`IterableDataset`, or any object with ``__getitem__``/``__len__``.
    batch_size : samples per batch (default 1); None yields samples one by one, unbatched.
    shuffle : a new random order every epoch (a :class:`RandomSampler` over ``generator``).
    sampler, batch_sampler : where the indices come from (PyTorch's exclusivity rules).
    num_workers : 0 loads in the calling thread; more runs ``__getitem__`` and collation of
        that many batches at once on threads, the batches still in the sampler's order.
    collate_fn : merges a list of samples into a batch (default :func:`default_collate`).
    pin_memory : accepted and ignored (there is no GPU to copy to).
    drop_last : skip a last batch smaller than ``batch_size``.
    timeout : seconds to wait for a worker's batch (0: forever); a timeout raises
        RuntimeError.
    worker_init_fn : called as ``worker_init_fn(worker_id)`` in each worker thread.
    generator : the ``fnn.Generator`` of the shuffling (default: the global one).
    prefetch_factor : batches in flight per worker (default 2 with workers).
    persistent_workers : keep the worker threads between epochs.

    A :class:`TensorDataset` or ``fastnn.data.ArrayDataset`` (or a :class:`Subset` of one)
    with the default collation is gathered by the rows kernel into reused buffers: a batch
    you keep is never overwritten (a buffer is reused only when nothing holds it), and a
    training loop allocates nothing per batch. Workers are not used on that path (a batch is
    one kernel call, faster than handing it to a thread).
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler=None, batch_sampler=None, num_workers: int = 0, collate_fn=None,
                 pin_memory: bool = False, drop_last: bool = False, timeout: float = 0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True):
        if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral) \
                or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to "
                             f"disable multiprocessing, got {num_workers!r}")
        if timeout < 0:
            raise ValueError(f"timeout option should be non-negative, got {timeout!r}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in "
                             "multiprocessing.let num_workers > 0 to enable multiprocessing, "
                             "otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if generator is not None and not isinstance(generator, (Generator,
                                                                np.random.Generator)):
            raise TypeError(f"generator must be a fastnn.Generator, got "
                            f"{type(generator).__name__}")
        if isinstance(dataset, IterableDataset):
            if shuffle not in (None, False):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified "
                                 f"shuffle option, but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified "
                                 f"sampler option, but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified "
                                 f"batch_sampler option, but got batch_sampler={batch_sampler}")
            if num_workers > 0:
                raise NotImplementedError(
                    "DataLoader(IterableDataset, num_workers > 0): fastnn reads an "
                    "IterableDataset in the calling thread only (num_workers=0); PyTorch "
                    "would give each worker a copy of the stream")
        else:
            if not hasattr(dataset, "__getitem__"):
                raise TypeError(f"dataset must be a Dataset (with __getitem__ and __len__) or "
                                f"an IterableDataset, got {type(dataset).__name__}")
            if sampler is not None and shuffle:
                raise ValueError("sampler option is mutually exclusive with shuffle")
            if batch_sampler is not None:
                if batch_size != 1 or shuffle or sampler is not None or drop_last:
                    raise ValueError("batch_sampler option is mutually exclusive with "
                                     "batch_size, shuffle, sampler, and drop_last")
                batch_size, drop_last = None, False
            elif batch_size is None and drop_last:
                raise ValueError("batch_size=None option disables auto-batching and is "
                                 "mutually exclusive with drop_last")
            if sampler is None:
                sampler = RandomSampler(dataset, generator=generator) if shuffle \
                    else SequentialSampler(dataset)
            if batch_size is not None and batch_sampler is None:
                batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        if batch_size is not None:
            _positive_int(batch_size, "batch_size")
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.num_workers, self.timeout, self.generator = int(num_workers), timeout, generator
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if batch_size is not None or batch_sampler is not None
            else default_convert)
        self.pin_memory, self.worker_init_fn = pin_memory, worker_init_fn
        self.prefetch_factor, self.persistent_workers = prefetch_factor, persistent_workers
        self._pool = BufferPool()
        self._workers: _Workers | None = None

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    def __len__(self) -> int:
        if isinstance(self.dataset, IterableDataset):
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return len(self.sampler)

    def __iter__(self):
        if isinstance(self.dataset, IterableDataset):
            return self._iterable_batches()
        fast = self._fast_batches()
        if fast is not None:
            return fast
        if self.num_workers > 0:
            return self._worker_batches()
        return self._fetched_batches()

    def _fetched_batches(self):
        for indices in self._index_batches():
            batch = self._fetch(indices)
            LOOP_CLOCK.mark()  # a training step may start now (fastnn._threads.LoopClock)
            yield batch

    def __del__(self):
        workers = getattr(self, "_workers", None)
        if workers is not None:
            workers.pool.shutdown(wait=False, cancel_futures=True)

    # -- the fast path: whole batches of rows by the rows kernel
    def _fast_batches(self):
        if self.collate_fn is not default_collate or not isinstance(self.dataset, Dataset):
            return None
        plan = self.dataset._gather_rows(self._pool)
        if plan is None:
            return None
        return self._gathered(*plan)

    def _gathered(self, gather, rows: np.ndarray | None):
        bs = self.batch_sampler
        standard = type(bs) is BatchSampler and type(bs.sampler) in (
            SequentialSampler, RandomSampler, WeightedRandomSampler)
        n = len(self.dataset)
        if standard:  # the epoch's rows at once (one composition), a batch is a slice
            order = bs.sampler._index_array()
            if rows is not None:
                order = rows[order]
            size = bs.batch_size
            stop = len(order) - len(order) % size if bs.drop_last else len(order)
            batches = (order[lo:lo + size] for lo in range(0, stop, size))
        else:
            batches = (_checked_rows(b, n, "sampler indices") for b in self._index_batches())
            if rows is not None:
                batches = (rows[idx] for idx in batches)
        for idx in batches:
            batch = [_const(a) for a in gather(idx)]
            LOOP_CLOCK.mark()  # a training step may start now (fastnn._threads.LoopClock)
            yield batch

    # -- the general path: __getitem__ and collate_fn
    def _index_batches(self):
        if self.batch_sampler is not None:
            yield from self.batch_sampler
        else:
            yield from self.sampler

    def _fetch(self, indices):
        if not self._auto_collation:
            return self.collate_fn(self.dataset[indices])
        getitems = getattr(self.dataset, "__getitems__", None)
        samples = getitems(indices) if getitems is not None else \
            [self.dataset[i] for i in indices]
        return self.collate_fn(samples)

    def _worker_batches(self):
        workers = self._workers or _Workers(self)
        if self.persistent_workers:
            self._workers = workers
        in_flight = collections.deque()
        depth = self.num_workers * max(1, self.prefetch_factor)
        timeout = self.timeout if self.timeout > 0 else None
        try:
            for indices in self._index_batches():
                in_flight.append(workers.pool.submit(self._fetch, indices))
                if len(in_flight) >= depth:
                    yield self._result(in_flight.popleft(), timeout)
            while in_flight:
                yield self._result(in_flight.popleft(), timeout)
        finally:
            for f in in_flight:
                f.cancel()
            if not self.persistent_workers:
                workers.shutdown()

    @staticmethod
    def _result(future, timeout):
        try:
            batch = future.result(timeout=timeout)
        except _FutureTimeout:
            raise RuntimeError(f"DataLoader timed out after {timeout} seconds") from None
        LOOP_CLOCK.mark()  # a training step may start now (fastnn._threads.LoopClock)
        return batch

    # -- iterable data sets
    def _iterable_batches(self):
        it = iter(self.dataset)
        if self.batch_size is None:
            for sample in it:
                yield self.collate_fn(sample)
            return
        while True:
            samples = list(itertools.islice(it, self.batch_size))
            if not samples or (self.drop_last and len(samples) < self.batch_size):
                return
            yield self.collate_fn(samples)
