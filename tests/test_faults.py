"""Fault injection, concurrency and determinism: nothing is lost, nothing differs."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from fastnn.checkpoint import load_checkpoint, save_checkpoint
from fastnn.cli import main
from fastnn.train import build_mlp

pytestmark = pytest.mark.slow

WRITER = textwrap.dedent("""
    import sys
    import fastnn as fnn
    from fastnn.checkpoint import save_checkpoint
    from fastnn.train import build_mlp
    path = sys.argv[1]
    big = build_mlp(784, [1024, 1024], 10)
    print("ready", flush=True)
    while True:
        save_checkpoint(path, model=big, epoch=7)
""")


def test_sigkill_while_writing_a_checkpoint_leaves_a_loadable_one(tmp_path):
    path = str(tmp_path / "model.npz")
    save_checkpoint(path, model=build_mlp(4, [3], 2), epoch=1)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = np.random.default_rng(0)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, str(script), path], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = load_checkpoint(path)  # old or new, never half-written
        assert ckpt.meta["epoch"] in (1, 7)


def _mount_small_tmpfs(where):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    os.makedirs(where, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(where)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")


def test_full_disk_gives_a_clear_error_and_keeps_the_old_checkpoint(tmp_path, capsys):
    disk = tmp_path / "disk"
    _mount_small_tmpfs(disk)
    try:
        path = str(disk / "model.npz")
        save_checkpoint(path, model=build_mlp(4, [3], 2), epoch=1)
        before = open(path, "rb").read()
        with pytest.raises(OSError, match="No space left"):
            save_checkpoint(path, model=build_mlp(64, [512], 10), epoch=2)
        assert open(path, "rb").read() == before
        assert load_checkpoint(path).meta["epoch"] == 1
        assert sorted(os.listdir(disk)) == ["model.npz"]  # no temporary file left behind
        # Through the CLI: exit 2 and one line, no traceback.
        code = main(["train", "--out", str(disk), "--hidden", "512", "--epochs", "1",
                     "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "No space left" in err and "Traceback" not in err
    finally:
        subprocess.run(["umount", str(disk)], check=False)


RUN = textwrap.dedent("""
    import sys, json, numpy as np
    import fastnn as fnn
    from fastnn.kernels import _jit
    threads = int(sys.argv[1])
    fnn.set_num_threads(threads)
    for k in _jit.all_kernels():
        k.min_parallel = 0          # every kernel takes its parallel path
    states = []
    for n, d in json.loads(sys.argv[2]):  # a new model for each shape, this process's threads
        fnn.manual_seed(0)
        model = fnn.Sequential(fnn.Linear(d, 300), fnn.BatchNorm1d(300), fnn.ReLU(),
                               fnn.Dropout(0.1), fnn.Linear(300, 5))
        opt = fnn.optim.Adam(model.parameters(), lr=1e-2)
        rng = np.random.default_rng(1)
        x = rng.standard_normal((n, d)).astype(np.float32)
        y = rng.integers(0, 5, n)
        for _ in range(5):
            opt.zero_grad()
            loss = fnn.losses.cross_entropy(model(x), y)
            loss.backward()
            fnn.optim.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        states.append({k: v.tobytes().hex() for k, v in model.state_dict().items()})
    print(json.dumps(states))
""")

#: (rows, features): the products split by rows; a forward product split over its inputs.
SHAPES = [(200, 20), (32, 784)]


def test_same_seed_bit_identical_on_one_and_two_threads(tmp_path):
    # One process per thread count (the count is set once, before anything runs, as a user
    # would), each training a new model for every shape: two cold starts, not four.
    script = tmp_path / "run.py"
    script.write_text(RUN)
    outs = []
    for threads in (1, 2):
        proc = subprocess.run([sys.executable, str(script), str(threads), json.dumps(SHAPES)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert len(outs[0]) == len(SHAPES)
    for shape, one, two in zip(SHAPES, outs[0], outs[1], strict=True):
        assert one == two, f"(rows, features) = {shape}: the bits differ on 1 and 2 threads"


def test_two_processes_compiling_into_one_cold_cache_both_succeed(tmp_path):
    # Each process runs what ``fastnn.warmup(dtypes=("float32",))`` runs (the tiny training
    # step through every layer kind and loss, and the compiled steps) under shared
    # compilation, on the serial variants only (the parallel ones are the same functions
    # behind the same lock and cache, tests/kernels/test_jit.py; compiling them too doubled
    # the test's time), in opposite orders (as ``fastnn warmup``'s helper process takes the
    # dtypes): the two compile different kernels into the cache at once until they meet,
    # then each waits for and loads the kernels that the other compiled.
    cache = tmp_path / "cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from fastnn import _warmup
        from fastnn.kernels import _jit
        _jit.share_compilation(True)
        for k in _jit.all_kernels():
            k.min_parallel = 1 << 62
        if sys.argv[1] == "compiled-first":
            _warmup._tiny_compiled_steps(np.dtype("float32"))
        _warmup._tiny_training_step(np.dtype("float32"))  # the layers, then compiled steps
        print("ok")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, order], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for order in ("layers-first", "compiled-first")]
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    # A third process finds the cache warm and correct.
    t0 = time.perf_counter()
    check = ("import numpy as np, fastnn as fnn; "
             "print(fnn.relu(fnn.Tensor(np.array([-1.0, 2.0], np.float32))).data.tolist())")
    out = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.stdout.strip() == "[0.0, 2.0]", out.stderr[-2000:]
    assert time.perf_counter() - t0 < 60


def test_read_only_install_imports_and_computes_without_a_cache(tmp_path):
    """The built wheel installed into a directory mounted read-only, with no writable cache
    directory anywhere: fastnn imports, warns once, and computes (kernels compiled in memory)."""
    if os.geteuid() != 0:
        pytest.skip("bind-mounting read-only needs root")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dist, site, ro, cache = (tmp_path / d for d in ("dist", "site", "ro", "cache"))
    for d in (ro, cache):
        d.mkdir()
    subprocess.run(["uv", "build", "--wheel", "--out-dir", str(dist), repo], check=True,
                   capture_output=True)
    wheel = next(dist.glob("fastnn-*.whl"))
    subprocess.run(["uv", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    mounted = []
    try:
        for src, dst in ((site, ro), (cache, cache)):
            r = subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True)
            if r.returncode != 0:
                pytest.skip(f"cannot bind-mount here: {r.stderr.decode().strip()}")
            mounted.append(dst)
            r = subprocess.run(["mount", "-o", "remount,ro,bind", str(dst)], capture_output=True)
            if r.returncode != 0:
                pytest.skip(f"cannot remount read-only here: {r.stderr.decode().strip()}")
        code = ("import numpy as np, fastnn as fnn; "
                "print(fnn.__file__); "
                "print(fnn.relu(fnn.Tensor(np.array([-1.0, 3.0], np.float32))).data.tolist())")
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        env.update(PYTHONPATH=str(ro), HOME=str(cache), XDG_CACHE_HOME=str(cache))
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=600, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = proc.stdout.strip().splitlines()
        assert lines[0].startswith(str(ro)) and lines[-1] == "[0.0, 3.0]"
        assert proc.stderr.count("no writable directory for Numba's kernel cache") == 1
    finally:
        for dst in reversed(mounted):
            subprocess.run(["umount", str(dst)], check=False)


FORKED = textwrap.dedent("""
    import multiprocessing as mp
    import numpy as np
    import fastnn as fnn

    def step(seed):
        fnn.manual_seed(seed)
        model = fnn.Sequential(fnn.Linear(784, 128), fnn.BatchNorm1d(128), fnn.ReLU(),
                               fnn.Linear(128, 10))
        opt = fnn.optim.Adam(model.parameters())
        x = np.random.default_rng(0).standard_normal((256, 784)).astype(np.float32)
        for _ in range(2):
            opt.zero_grad()
            fnn.losses.cross_entropy(model(x), np.arange(256) % 10).backward()
            opt.step()
        return model[0].weight.data.tobytes()

    def child(q):
        q.put(step(1))

    if __name__ == "__main__":
        parent = step(1)  # starts Numba's OpenMP pool in the parent
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        got = q.get(timeout=120)
        p.join(60)
        print("exit", p.exitcode, "same", got == parent)
""")


def test_a_child_forked_after_training_trains_serially_with_the_same_bits(tmp_path):
    """libgomp cannot restart its pool in a forked child (Numba would terminate it): the
    child runs every kernel serially and gets the parent's bits."""
    script = tmp_path / "forked.py"
    script.write_text(FORKED)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "exit 0 same True", proc.stderr[-2000:]
