"""What this machine and installation look like to fastnn (``fastnn info``)."""

from __future__ import annotations

import os
import platform


def system_info() -> list[tuple[str, str]]:
    """What ``fastnn info`` prints: versions, threads, how matrix products run, the kernel
    cache, the BLAS pools and the environment variables that change them."""
    import numba
    import numpy as np
    import scipy
    from threadpoolctl import threadpool_info

    import fastnn

    from .kernels import activations, blas

    # The threading layer is chosen when the first parallel kernel runs.
    x = np.zeros(1 << 16, dtype=np.float32)
    activations.activation_forward.parallel(activations.RELU, 0.0, x, x.copy(), x.copy())
    kernel_dir = os.path.dirname(activations.__file__)
    cache = numba.config.CACHE_DIR or os.path.join(kernel_dir, "__pycache__")
    rows = [
        ("fastnn", fastnn.__version__),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
        ("numba", numba.__version__),
        ("scipy", scipy.__version__),
        ("cores", str(os.cpu_count())),
        ("numba threads", str(numba.get_num_threads())),
        ("numba threading layer", numba.threading_layer()),
        ("matrix products", f"{blas.BLOCKS} blocks on Numba's pool, NumPy's OpenBLAS per block"
         if blas.AVAILABLE else "np.matmul on BLAS's own threads (NumPy's BLAS is not "
         "OpenBLAS with 64-bit CBLAS symbols)"),
        ("kernel cache", cache),
        ("default dtype", str(fastnn.get_default_dtype())),
    ]
    for pool in threadpool_info():
        where = pool.get("filepath", "")
        owner = "numpy" if "numpy" in where else "scipy" if "scipy" in where else where
        rows.append(
            (
                f"{pool.get('user_api')} ({owner})",
                f"{pool.get('internal_api')} {pool.get('version')}, "
                f"{pool.get('num_threads')} thread{'s' if pool.get('num_threads') != 1 else ''}, "
                f"{pool.get('architecture', '?')}",
            )
        )
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        if var in os.environ:
            rows.append((var, os.environ[var]))
    return rows
