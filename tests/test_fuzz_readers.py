"""Seeded mutational fuzzing of every file reader (issue 28).

Each reader runs on thousands of broken and hostile variants of a valid file, in a worker
process under an address-space limit (2 GiB above the worker's size after its imports) and a
timeout (tests/fuzzkit/sandbox.py). An answer is acceptable only if it is a result or
fastnn's own error naming the file; anything else (another exception, MemoryError, a crash,
a signal, a timeout) fails the test, and the file that did it is kept (the path is in the
failure message).

    uv run pytest -q tests/test_fuzz_readers.py               # the quick run (non-slow)
    uv run pytest -q -m slow tests/test_fuzz_readers.py       # CI's full run
    FASTNN_FUZZ_CASES=20000 FASTNN_FUZZ_SEED=7 uv run pytest -q -m slow tests/test_fuzz_readers.py

FASTNN_FUZZ_CASES sets the cases per reader of the full run (default 400), FASTNN_FUZZ_SEED
the seed (default 0: the same cases every run); FASTNN_FUZZ_FAILURES where failing files go.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time

import pytest
from fuzzkit import mutations
from fuzzkit.sandbox import Sandbox
from fuzzkit.seeds import parquet_supported, write_seeds
from fuzzkit.targets import ENTRY_POINTS
from hypothesis import HealthCheck, given, seed, settings

READERS = list(ENTRY_POINTS)
SMOKE_CASES = 30
FULL_CASES = int(os.environ.get("FASTNN_FUZZ_CASES", "400"))
SEED = int(os.environ.get("FASTNN_FUZZ_SEED", "0"))
FAILURES = os.environ.get("FASTNN_FUZZ_FAILURES",
                          os.path.join(tempfile.gettempdir(), "fastnn-fuzz-failures"))
#: Outcomes per reader of this session, printed at the end (the figure docs/files.md quotes).
TALLY: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return write_seeds(str(tmp_path_factory.mktemp("fuzz-seeds")))


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


def _skip_unsupported(reader: str) -> None:
    if reader == "parquet":
        why = parquet_supported()
        if why is not None:
            pytest.skip(f"parquet: {why}")


def _fuzz(reader: str, cases: int, seeds: dict, sandbox: Sandbox, workdir) -> None:
    sources = [(p, open(p, "rb").read()) for p in seeds[reader]]
    tally = TALLY.setdefault(reader, {})
    counter = iter(range(10**9))

    @seed(SEED)
    @settings(max_examples=cases, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(which=mutations.st.integers(0, len(sources) - 1), plan=mutations.plans(reader))
    def case(which, plan):
        src, data = sources[which]
        data = mutations.mutate(reader, src, data, plan)
        suffix = ".gz" if src.endswith(".gz") else os.path.splitext(src)[1]
        path = os.path.join(workdir, f"case{next(counter)}{suffix}")
        with open(path, "wb") as f:
            f.write(data)
        outcome = sandbox.run(reader, path)
        tally[outcome.kind] = tally.get(outcome.kind, 0) + 1
        if not outcome.acceptable:
            os.makedirs(FAILURES, exist_ok=True)
            keep = os.path.join(FAILURES, f"{reader}-{hashlib.sha1(data).hexdigest()[:12]}{suffix}")
            with open(keep, "wb") as f:
                f.write(data)
            raise AssertionError(f"{reader}: {outcome.kind} on {keep} (from {src}, plan "
                                 f"{plan!r:.300}): {outcome.detail}")
        os.unlink(path)

    case()


@pytest.mark.parametrize("reader", READERS)
def test_seeds_are_read(reader, seeds, sandbox):
    """The unmutated seeds load: the mutations start from files the readers accept."""
    _skip_unsupported(reader)
    for path in seeds[reader]:
        outcome = sandbox.run(reader, path)
        assert outcome.kind == "ok", (path, outcome)


@pytest.mark.parametrize("reader", READERS)
def test_fuzz_smoke(reader, seeds, sandbox, tmp_path):
    """A few dozen mutated files per reader, on every test run."""
    _skip_unsupported(reader)
    _fuzz(reader, SMOKE_CASES, seeds, sandbox, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("reader", READERS)
def test_fuzz(reader, seeds, sandbox, tmp_path):
    """FASTNN_FUZZ_CASES (default 400) mutated files per reader; zero unclear answers."""
    _skip_unsupported(reader)
    start = time.perf_counter()
    _fuzz(reader, FULL_CASES, seeds, sandbox, tmp_path)
    tally = TALLY[reader]
    print(f"\n{reader}: {sum(tally.values())} cases in {time.perf_counter() - start:.1f} s: "
          f"{tally}")


@pytest.mark.slow
def test_files_nobody_on_the_team_made(sandbox, tmp_path):
    """The test data NumPy, SciPy, scikit-learn and CPython ship (object arrays pickled by
    Python 2, zip layouts of other tools, gzipped tables, CSVs of every shape): each file
    through the readers of its kind, each answer a result or fastnn's own error."""
    import shutil

    from fuzzkit.seeds import FOREIGN_READERS, foreign_files

    files = foreign_files()
    if not files:
        pytest.skip("no test data of NumPy, SciPy, scikit-learn or CPython found")
    bad, tally = [], {}
    for i, src in enumerate(files):
        ext = os.path.splitext(src)[1]
        path = str(tmp_path / f"foreign{i}{ext}")  # a copy: the cifar reader links beside it
        shutil.copyfile(src, path)
        for reader in FOREIGN_READERS[ext]:
            outcome = sandbox.run(reader, path)
            tally[outcome.kind] = tally.get(outcome.kind, 0) + 1
            if not outcome.acceptable:
                bad.append(f"{reader} on {src}: {outcome.kind}: {outcome.detail[:300]}")
    print(f"\n{len(files)} foreign files: {tally}")
    assert not bad, "\n".join(bad)


def test_safetensors_architecture_larger_than_its_weights_is_refused(tmp_path):
    """An architecture in the metadata claiming 10^9 units is refused before it is built."""
    import json
    import struct

    import fastnn as fnn
    from fastnn.interop import SafetensorsFileError, load_safetensors, save_safetensors

    pytest.importorskip("safetensors")
    path = tmp_path / "m.safetensors"
    save_safetensors(fnn.Sequential(fnn.Linear(3, 2)), path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    arch = json.loads(header["__metadata__"]["fastnn.architecture"])
    arch["layers"][0]["args"]["in_features"] = 10**9
    header["__metadata__"]["fastnn.architecture"] = json.dumps(arch)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    with pytest.raises(SafetensorsFileError, match="need at least 2000000000 weights"):
        load_safetensors(path)
