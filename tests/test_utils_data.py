"""fastnn.utils.data: PyTorch's names and behaviour (against torch.utils.data where
installed), the rows-kernel fast path, workers, and fastnn.data's compatibility."""

import collections
import threading

import numpy as np
import pytest

import fastnn as fnn
from fastnn.data import ArrayDataset, Standardizer
from fastnn.utils import data as ud


def _xy(n=23, d=3):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, 4, n)


def test_tensor_dataset_items_and_size_mismatch():
    X, y = _xy()
    ds = ud.TensorDataset(fnn.tensor(X), fnn.tensor(y))
    x0, y0 = ds[2]
    np.testing.assert_array_equal(x0.data, X[2])
    assert y0.item() == y[2] and len(ds) == 23
    with pytest.raises(ValueError, match="Size mismatch"):
        ud.TensorDataset(fnn.tensor(X), fnn.tensor(y[:5]))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_fast_path_equals_getitem_and_collate(shuffle, drop_last):
    X, y = _xy()
    ds = ud.TensorDataset(fnn.tensor(X), fnn.tensor(y))
    sub = ud.Subset(ds, [5, 3, 7, 1, 0, 22, 9, 8, 2, 4, 11])
    fast = ud.DataLoader(sub, batch_size=4, shuffle=shuffle, drop_last=drop_last,
                         generator=fnn.Generator().manual_seed(3))
    slow = ud.DataLoader(sub, batch_size=4, shuffle=shuffle, drop_last=drop_last,
                         generator=fnn.Generator().manual_seed(3),
                         collate_fn=lambda b: ud.default_collate(b))
    a, b = list(fast), list(slow)
    assert len(a) == len(b) == len(fast) == (2 if drop_last else 3)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa.data, xb.data)
        np.testing.assert_array_equal(ya.data, yb.data)
        assert xa.dtype == np.float32 and ya.dtype == np.int64
        assert xa.size(0) == ya.size(0) and xa.to("cpu") is xa


def test_a_kept_batch_is_never_overwritten():
    X, y = _xy(40)
    loader = ud.DataLoader(ud.TensorDataset(X, y), batch_size=8)
    batches = [(xb, xb.data.copy()) for xb, _ in loader]
    for xb, copy in batches:
        np.testing.assert_array_equal(xb.data, copy)


def test_array_dataset_through_the_torch_loader_standardized():
    X, y = _xy(30)
    st = Standardizer().fit(X)
    ds = ArrayDataset(X, y, transform=st)
    xb, yb = next(iter(ud.DataLoader(ud.Subset(ds, [4, 2, 9]), batch_size=3)))
    np.testing.assert_allclose(xb.data, st.transform(X[[4, 2, 9]]), rtol=1e-6)
    np.testing.assert_array_equal(yb.data, y[[4, 2, 9]])
    x4, y4 = ds[4]
    np.testing.assert_allclose(x4.data, xb.data[0], rtol=1e-6)


def test_array_dataset_third_argument_is_rows_not_weights():
    X, y = _xy(10)
    with pytest.raises(TypeError, match="index array of the rows"):
        ArrayDataset(X, y, np.ones(10))


def test_fastnn_data_import_line_of_the_issue():
    from fastnn.data import DataLoader, TensorDataset

    X, y = _xy(10)
    loader = DataLoader(TensorDataset(fnn.tensor(X), fnn.tensor(y)), batch_size=4)
    assert isinstance(loader, ud.DataLoader) and len(loader) == 3
    assert type(DataLoader((X, y), batch_size=4)) is DataLoader  # fit's array loader
    xb, _ = next(iter(DataLoader((X, y), batch_size=4)))
    assert isinstance(xb, np.ndarray)


class Squares(ud.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": np.full(2, i, np.float32), "i": i, "name": f"s{i}"}


def test_custom_dataset_dicts_and_workers_keep_order():
    ref = list(ud.DataLoader(Squares(11), batch_size=3))
    seen = set()
    par = list(ud.DataLoader(Squares(11), batch_size=3, num_workers=3,
                             worker_init_fn=lambda wid: seen.add(threading.get_ident())))
    assert len(ref) == len(par) == 4 and len(seen) >= 1
    for a, b in zip(ref, par, strict=True):
        np.testing.assert_array_equal(a["x"].data, b["x"].data)
        assert a["i"].dtype == np.int64 and a["name"] == b["name"]


class Rendezvous(ud.Dataset):
    """Each __getitem__ waits for a second one to be running at the same time."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=10)

    def __len__(self):
        return 4

    def __getitem__(self, i):
        self.barrier.wait()  # raises BrokenBarrierError if the calls ran one at a time
        return i


def test_workers_run_getitem_concurrently():
    batches = list(ud.DataLoader(Rendezvous(), batch_size=1, num_workers=2))
    assert [b.tolist() for b in batches] == [[0], [1], [2], [3]]


def test_loader_argument_rules():
    X, y = _xy(10)
    ds = ud.TensorDataset(X, y)
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        ud.DataLoader(ds, sampler=ud.SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        ud.DataLoader(ds, batch_size=2, batch_sampler=ud.BatchSampler(range(10), 2, False))
    with pytest.raises(ValueError, match="num_workers"):
        ud.DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="persistent_workers"):
        ud.DataLoader(ds, persistent_workers=True)
    with pytest.raises(ValueError, match="prefetch_factor"):
        ud.DataLoader(ds, prefetch_factor=2)
    bs = ud.DataLoader(ds, batch_sampler=ud.BatchSampler(ud.SequentialSampler(ds), 4, True))
    assert [xb.size(0) for xb, _ in bs] == [4, 4]
    one = list(ud.DataLoader(ds, batch_size=None))
    assert len(one) == 10 and one[0][0].shape == (3,)


def test_custom_sampler_out_of_range_is_an_index_error():
    ds = ud.TensorDataset(*_xy(5))
    with pytest.raises(IndexError, match="out of range"):
        list(ud.DataLoader(ds, sampler=[0, 7], batch_size=2))


def test_random_split_rounding_and_seed():
    ds = ud.TensorDataset(fnn.arange(10))
    parts = ud.random_split(ds, [0.33, 0.33, 0.34], generator=fnn.Generator().manual_seed(1))
    assert [len(p) for p in parts] == [4, 3, 3]  # floor 3, 3, 3; remainder 1 to the first
    again = ud.random_split(ds, [0.33, 0.33, 0.34], generator=fnn.Generator().manual_seed(1))
    assert [p.indices for p in parts] == [p.indices for p in again]
    assert sorted(sum((p.indices for p in parts), [])) == list(range(10))
    with pytest.raises(ValueError, match="Sum of input lengths"):
        ud.random_split(ds, [3, 3])


def test_samplers():
    g = fnn.Generator().manual_seed(0)
    assert sorted(ud.RandomSampler(range(7), generator=g)) == list(range(7))
    assert len(list(ud.RandomSampler(range(3), num_samples=7, generator=g))) == 7
    w = ud.WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], 400, generator=g)
    draws = collections.Counter(w)
    assert set(draws) == {1, 3} and 0.65 < draws[3] / 400 < 0.85
    assert sorted(ud.SubsetRandomSampler([2, 4, 6], generator=g)) == [2, 4, 6]
    assert list(ud.BatchSampler(range(5), 2, False)) == [[0, 1], [2, 3], [4]]
    assert len(ud.BatchSampler(range(5), 2, True)) == 2
    cat = ud.ConcatDataset([ud.TensorDataset(fnn.arange(3)), ud.TensorDataset(fnn.arange(2))])
    assert len(cat) == 5 and cat[3][0].item() == 0 and cat[-1][0].item() == 1


def test_generator_api():
    g = fnn.Generator().manual_seed(7)
    a = fnn.randn(3, generator=g)
    g.manual_seed(7)
    np.testing.assert_array_equal(a.data, fnn.randn(3, generator=g).data)
    assert g.initial_seed() == 7 and isinstance(g.seed(), int)
    state = g.get_state()
    b = fnn.rand(2, generator=g)
    g.set_state(state)
    np.testing.assert_array_equal(b.data, fnn.rand(2, generator=g).data)


class Stream(ud.IterableDataset):
    def __iter__(self):
        return iter(range(7))


def test_iterable_dataset():
    assert [b.tolist() for b in ud.DataLoader(Stream(), batch_size=3)] == \
        [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="shuffle"):
        ud.DataLoader(Stream(), shuffle=True)


def test_default_collate_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as tc

    Point = collections.namedtuple("Point", "a b")
    batches = [
        [(np.ones(2, np.float32), 1), (np.zeros(2, np.float32), 2)],
        [{"a": 1.5, "b": [True, 3]}, {"a": 2.5, "b": [False, 4]}],
        [Point(np.int32(1), "x"), Point(np.int32(2), "y")],
        [[1, 2], [3, 4]],
    ]

    def same(f, t):
        if isinstance(t, torch.Tensor):
            assert isinstance(f, fnn.Tensor) and str(f.dtype) == str(t.dtype).split(".")[1]
            np.testing.assert_array_equal(f.data, t.numpy())
        elif isinstance(t, dict):
            assert f.keys() == t.keys()
            for k in t:
                same(f[k], t[k])
        elif isinstance(t, (list, tuple)):
            assert type(f) is type(t) and len(f) == len(t)
            for a, b in zip(f, t, strict=True):
                same(a, b)
        else:
            assert f == t

    for batch in batches:
        same(ud.default_collate(batch), tc(batch))


def test_random_split_fraction_lengths_match_torch():
    torch = pytest.importorskip("torch")
    for n, fracs in [(10, [0.33, 0.33, 0.34]), (101, [0.8, 0.2]), (7, [0.5, 0.25, 0.25])]:
        t = torch.utils.data.random_split(range(n), fracs)
        f = ud.random_split(list(range(n)), fracs)
        assert [len(p) for p in f] == [len(p) for p in t]


class WhoLoads(ud.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        info = ud.get_worker_info()
        return -1 if info is None else info.id


def test_worker_info_and_persistent_workers():
    assert [b.item() for b in ud.DataLoader(WhoLoads())] == [-1] * 6
    loader = ud.DataLoader(WhoLoads(), num_workers=2, persistent_workers=True)
    first = [b.item() for b in loader]
    pool = loader._workers
    assert set(first) <= {0, 1} and pool is not None
    list(loader)
    assert loader._workers is pool  # the same threads serve the next epoch
