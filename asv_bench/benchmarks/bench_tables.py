"""A mixed table (fastnn.bench.make_mixed_table: 20 real and 5 text columns, 10 to 10,000
categories, 5% blanks), 100,000 rows: reading and encoding it as ``fastnn train`` does
(CSV and Parquet) next to pandas' ``read_csv`` of the same CSV, its peak memory, and an
epoch of TabularMLP next to an MLP of the same width.

The million-row figures of docs/tabular.md ("Scale") are ``fastnn bench --tables``; this
suite stays quick.
"""

import importlib.util
import os
import tempfile

from fastnn.bench import mixed_table_files, read_and_encode

ROWS = 100_000


def _files():
    directory = os.path.join(tempfile.gettempdir(), "fastnn-asv-tables")
    return dict(zip(("csv", "parquet"), mixed_table_files(directory, ROWS), strict=True))


class ReadAndEncode:
    """``load_table`` + ``TableEncoder.fit`` (training rows) + ``transform``."""

    params = ["csv", "parquet"]
    param_names = ["format"]
    timeout = 300

    def setup_cache(self):
        return _files()

    def setup(self, files, fmt):
        self.path = files[fmt]
        read_and_encode(self.path)  # pyarrow's reader and threads started before timing

    def time_read_and_encode(self, files, fmt):
        read_and_encode(self.path)

    def peakmem_read_and_encode(self, files, fmt):
        read_and_encode(self.path)

    def track_encoded_mib(self, files, fmt):
        return read_and_encode(self.path)[0].nbytes / 2**20

    track_encoded_mib.unit = "MiB"


class PandasReadCsv:
    """What a pandas user starts with (the CSV only; skipped without pandas)."""

    timeout = 300

    def setup_cache(self):
        return _files()

    def setup(self, files):
        if importlib.util.find_spec("pandas") is None:
            raise NotImplementedError("pandas is not installed")
        self.path = files["csv"]

    def time_read_csv(self, files):
        import pandas as pd

        pd.read_csv(self.path)


class TabularEpoch:
    """One epoch of the default tabular model on the encoded table, and of an MLP of the
    same width into its first Linear on a numeric table (fastnn.bench's epoch worker)."""

    params = ["TabularMLP", "MLP"]
    param_names = ["model"]
    timeout = 600

    def setup_cache(self):
        return _files()

    def setup(self, files, model):
        import numpy as np

        from fastnn import losses
        from fastnn.data import ArrayDataset
        from fastnn.nn.tabular import TabularMLP
        from fastnn.optim import Adam
        from fastnn.train import build_mlp, fit

        X, y, enc, _ = read_and_encode(files["parquet"])
        k = enc.n_continuous
        X[:, :k] = (X[:, :k] - X[:, :k].mean(0)) / X[:, :k].std(0)
        width = k + sum(TabularMLP(k, enc.cardinalities).embedding_dims)
        if model == "TabularMLP":
            net = TabularMLP(k, enc.cardinalities, hidden=(256, 256), out_features=2,
                             dropout=0.1)
        else:
            net = build_mlp(width, [256, 256], 2, "relu", True, 0.1, "float32")
            X = np.random.default_rng(0).standard_normal((len(X), width))
        data = ArrayDataset(X, y, check=False)

        def epoch():
            opt = Adam(net.parameters(), lr=1e-3)
            fit(net, losses.cross_entropy, opt, data, epochs=1, batch_size=512, quiet=True)

        self.epoch = epoch
        epoch()  # compiles and warms up

    def time_epoch(self, files, model):
        self.epoch()
