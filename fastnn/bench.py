"""``fastnn bench``: one training step of an MLP, fastnn against what a user would pick instead.

A step is forward, softmax cross-entropy, backward and an Adam update, in float32. Each
framework runs in its own process (so that thread pools and imports do not interfere), the
processes alternate over several rounds (so that a noisy machine hurts all alike), and the
table reports medians and ratios.

Frameworks: ``fastnn``; ``gemm`` (NumPy's BLAS doing only the matrix products a step needs:
the floor no framework can beat); ``numpy`` (the same step in plain NumPy); ``torch`` (eager,
Adam with foreach) and ``torch-fused`` (Adam fused=True), and ``jax`` (one ``jax.jit`` step),
when installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MODELS = {
    "S": ([784, 128, 10], 32, False),
    "M": ([784, 512, 512, 10], 128, True),
    "L": ([784, 2048, 2048, 2048, 10], 512, True),
}
FRAMEWORKS = ["fastnn", "gemm", "numpy", "torch", "torch-fused", "jax"]


def _data(dims, batch):
    import numpy as np

    rng = np.random.default_rng(0)
    return (rng.standard_normal((batch, dims[0])).astype(np.float32),
            rng.integers(0, dims[-1], batch))


def _fastnn_step(dims, batch, bn):
    import fastnn as fnn

    fnn.manual_seed(0)
    layers = []
    for a, b in zip(dims[:-2], dims[1:-1], strict=True):
        layers += [fnn.Linear(a, b)] + ([fnn.BatchNorm1d(b)] if bn else []) + [fnn.ReLU()]
    model = fnn.Sequential(*layers, fnn.Linear(dims[-2], dims[-1]))
    opt = fnn.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _data(dims, batch)

    def step():
        opt.zero_grad()
        fnn.losses.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def _gemm_step(dims, batch, bn):
    import numpy as np

    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((a, b)).astype(np.float32) for a, b in zip(dims[:-1], dims[1:],
                                                                          strict=True)]
    xs = [rng.standard_normal((batch, a)).astype(np.float32) for a in dims[:-1]]
    ys = [np.empty((batch, b), np.float32) for b in dims[1:]]
    dWs = [np.empty_like(W) for W in Ws]
    dxs = [np.empty((batch, a), np.float32) for a in dims[:-1]]

    def step():
        for i, W in enumerate(Ws):
            np.matmul(xs[i], W, out=ys[i])
        for i in reversed(range(len(Ws))):
            np.matmul(xs[i].T, ys[i], out=dWs[i])
            if i:
                np.matmul(ys[i], Ws[i].T, out=dxs[i])

    return step


def _numpy_step(dims, batch, bn):
    """The textbook NumPy implementation (cs231n style), as a user would write it."""
    import numpy as np

    rng = np.random.default_rng(0)
    Ws = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
          for a, b in zip(dims[:-1], dims[1:], strict=True)]
    bs = [np.zeros(b, np.float32) for b in dims[1:]]
    gammas = [np.ones(b, np.float32) for b in dims[1:-1]]
    betas = [np.zeros(b, np.float32) for b in dims[1:-1]]
    params = Ws + bs + gammas + betas
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    x, y = _data(dims, batch)
    t = [0]

    def step():
        h, caches = x, []
        for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
            z = h @ W + b
            if i == len(Ws) - 1:
                caches.append((h, None))
                h = z
                break
            if bn:
                mu, var = z.mean(0), z.var(0)
                inv = 1 / np.sqrt(var + 1e-5)
                zh = (z - mu) * inv
                z2 = gammas[i] * zh + betas[i]
            else:
                zh = inv = None
                z2 = z
            caches.append((h, (zh, inv, z2)))
            h = np.maximum(z2, 0)
        e = np.exp(h - h.max(1, keepdims=True))
        p = e / e.sum(1, keepdims=True)
        d = p
        d[np.arange(batch), y] -= 1
        d /= batch
        grads_W, grads_b = [None] * len(Ws), [None] * len(Ws)
        grads_g, grads_be = [np.zeros_like(g) for g in gammas], [np.zeros_like(g) for g in betas]
        for i in reversed(range(len(Ws))):
            h_in, cache = caches[i]
            if cache is not None:
                zh, inv, z2 = cache
                d = d * (z2 > 0)
                if bn:
                    grads_g[i], grads_be[i] = (d * zh).sum(0), d.sum(0)
                    dzh = d * gammas[i]
                    d = inv * (dzh - dzh.mean(0) - zh * (dzh * zh).mean(0))
            grads_W[i], grads_b[i] = h_in.T @ d, d.sum(0)
            if i:
                d = d @ Ws[i].T
        t[0] += 1
        for k, (prm, g) in enumerate(zip(params, grads_W + grads_b + grads_g + grads_be,
                                         strict=True)):
            m[k] = 0.9 * m[k] + 0.1 * g
            v[k] = 0.999 * v[k] + 0.001 * g * g
            prm -= 1e-3 * (m[k] / (1 - 0.9 ** t[0])) / (np.sqrt(v[k] / (1 - 0.999 ** t[0]))
                                                          + 1e-8)

    return step


def _torch_step(dims, batch, bn, fused=False):
    import torch

    torch.manual_seed(0)
    layers = []
    for a, b in zip(dims[:-2], dims[1:-1], strict=True):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.BatchNorm1d(b)] if bn else []) + \
            [torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(dims[-2], dims[-1]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
    xn, yn = _data(dims, batch)
    x, y = torch.from_numpy(xn), torch.from_numpy(yn)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def _jax_step(dims, batch, bn):
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    params = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        key, k = jax.random.split(key)
        params.append({"W": jax.random.normal(k, (a, b)) / jnp.sqrt(a), "b": jnp.zeros(b),
                       "g": jnp.ones(b), "be": jnp.zeros(b)})

    def loss(params, x, y):
        h = x
        for i, p in enumerate(params):
            h = h @ p["W"] + p["b"]
            if i < len(params) - 1:
                if bn:
                    mu, var = h.mean(0), h.var(0)
                    h = p["g"] * (h - mu) / jnp.sqrt(var + 1e-5) + p["be"]
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def adam(params, grads, m, v, t):
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - 1e-3 * (m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-8),
            params, m, v)
        return params, m, v

    @jax.jit
    def train_step(params, m, v, t, x, y):
        grads = jax.grad(loss)(params, x, y)
        return adam(params, grads, m, v, t)

    xn, yn = _data(dims, batch)
    x, y = jnp.asarray(xn), jnp.asarray(yn)
    state = [params, jax.tree_util.tree_map(jnp.zeros_like, params),
             jax.tree_util.tree_map(jnp.zeros_like, params), 1.0]

    def step():
        p, m, v = train_step(state[0], state[1], state[2], state[3], x, y)
        jax.block_until_ready(p)
        state[0], state[1], state[2] = p, m, v
        state[3] += 1.0

    return step


_BUILDERS = {"fastnn": _fastnn_step, "gemm": _gemm_step, "numpy": _numpy_step,
             "torch": _torch_step, "torch-fused": lambda d, b, n: _torch_step(d, b, n, True),
             "jax": _jax_step}


def _worker(framework: str, dims, batch, bn, repeats: int, threads: int) -> dict:
    """Runs in its own process: time ``repeats`` steps after a warm-up."""
    if framework == "torch" or framework == "torch-fused":
        import torch

        torch.set_num_threads(threads)
    elif framework == "fastnn":
        import fastnn

        fastnn.set_num_threads(threads)
    else:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    step = _BUILDERS[framework](dims, batch, bn)
    warm = time.perf_counter()
    for _ in range(3):
        step()
    first = time.perf_counter() - warm
    times = []
    deadline = time.perf_counter() + 20.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    return {"times": times, "warmup_seconds": first}


def _available(framework: str) -> bool:
    mod = {"torch": "torch", "torch-fused": "torch", "jax": "jax"}.get(framework)
    if mod is None:
        return True
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def blas_report() -> list[str]:
    """Which BLAS kernels are active, and a warning when the environment forces old ones."""
    import numpy  # noqa: F401  (loads NumPy's BLAS so that threadpoolctl sees it)
    from threadpoolctl import threadpool_info

    lines = []
    for p in threadpool_info():
        if p.get("user_api") == "blas":
            lines.append(f"BLAS: {p.get('internal_api')} {p.get('version')} "
                         f"({p.get('architecture')}, {p.get('num_threads')} threads) "
                         f"{p.get('filepath')}")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            lines.append(f"WARNING: {var}={os.environ[var]} forces an older OpenBLAS kernel; "
                         f"unset it for benchmarks (env -u {var} ...)")
    return lines


def run_bench(models, frameworks, rounds: int = 3, repeats: int = 50, threads: int | None = None,
              log=sys.stderr) -> dict:
    """Alternate one process per (round, model, framework); return all step times."""
    threads = threads or os.cpu_count() or 1
    results: dict = {}
    for r in range(rounds):
        for name, (dims, batch, bn) in models.items():
            for fw in frameworks:
                reps = max(3, repeats // 10) if dims[1] >= 2048 else repeats
                cmd = [sys.executable, "-m", "fastnn.bench", "--worker", fw,
                       json.dumps([dims, batch, bn, reps, threads])]
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                if proc.returncode != 0:
                    tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"  {fw} on {name} failed: {tail}", file=log)
                    continue
                out = json.loads(proc.stdout.strip().splitlines()[-1])
                results.setdefault(name, {}).setdefault(fw, []).extend(out["times"])
                print(f"  round {r + 1}/{rounds} {name} {fw}: "
                      f"{statistics.median(out['times']) * 1e3:.3f} ms", file=log)
    return results


def format_table(results: dict) -> str:
    lines = [f"{'model':<22} {'framework':<12} {'median ms':>10} {'vs fastnn':>10} "
             f"{'vs GEMM floor':>14}"]
    for name, by_fw in results.items():
        med = {fw: statistics.median(t) * 1e3 for fw, t in by_fw.items()}
        ours, floor = med.get("fastnn"), med.get("gemm")
        label = name
        for fw, ms in med.items():
            rel = f"{ms / ours:.2f}x" if ours else "-"
            fl = f"{ms / floor:.2f}x" if floor else "-"
            lines.append(f"{label:<22} {fw:<12} {ms:10.3f} {rel:>10} {fl:>14}")
            label = ""
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fastnn bench", description=__doc__.splitlines()[0])
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--models", default="S,M,L", help="comma-separated among S, M, L")
    p.add_argument("--hidden", help="a custom MLP: hidden sizes (784-...-10), e.g. 1024,1024")
    p.add_argument("--batch", type=int, default=128, help="batch of the custom MLP")
    p.add_argument("--no-batchnorm", action="store_true", help="custom MLP without BatchNorm")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--threads", type=int)
    p.add_argument("--json", help="also write the step times to this JSON file")
    args = p.parse_args(argv)
    if args.worker:
        fw, spec = args.worker
        dims, batch, bn, reps, threads = json.loads(spec)
        print(json.dumps(_worker(fw, dims, batch, bn, reps, threads)))
        return 0
    models = {}
    if args.hidden:
        hidden = [int(v) for v in args.hidden.split(",")]
        models[f"784-{'-'.join(map(str, hidden))}-10 ({args.batch})"] = (
            [784, *hidden, 10], args.batch, not args.no_batchnorm)
    else:
        for m in args.models.split(","):
            if m not in MODELS:
                print(f"fastnn bench: error: unknown model {m!r} (S, M or L)", file=sys.stderr)
                return 2
            dims, batch, bn = MODELS[m]
            models[f"{m} {'-'.join(map(str, dims))} ({batch})"] = MODELS[m]
    frameworks = [f for f in args.frameworks.split(",") if f]
    unknown = set(frameworks) - set(FRAMEWORKS)
    if unknown:
        print(f"fastnn bench: error: unknown frameworks {sorted(unknown)}", file=sys.stderr)
        return 2
    missing = [f for f in frameworks if not _available(f)]
    frameworks = [f for f in frameworks if f not in missing]
    for line in blas_report():
        print(line)
    if missing:
        print(f"not installed, skipped: {', '.join(missing)}")
    results = run_bench(models, frameworks, args.rounds, args.repeats, args.threads)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
