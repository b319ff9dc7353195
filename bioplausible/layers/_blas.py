"""Matrix products with a BLAS thread count that fits the product's size.

OpenBLAS splits every product above a tiny threshold over all its threads.  For the small products
of a network (a dense read-out: 256 x 8192 x 10, about 40 MFLOP, 1 ms on one core) the second
thread gains at most half a millisecond, but every call then has to wait for that thread to be
scheduled: on a machine whose cores are busy with other work that wait is a scheduler time slice
(4 ms and more), measured at 10-20 ms per call instead of 1 ms.  :func:`matmul` therefore runs
products below :data:`SMALL_FLOPS` on one BLAS thread and leaves larger ones (the convolutions'
sgemms, 0.3-2 GFLOP each at batch 256) to the library's own thread count.

The thread count is changed through threadpoolctl (a dependency) only around the call and then
restored; a user's own limit (e.g. ``threadpool_limits(1)``) is respected because a count that is
already 1 is left alone.  If threadpoolctl cannot find numpy's BLAS the products run unchanged.
"""
from __future__ import annotations

import os
import threading

import numpy as np

#: products with fewer floating-point operations (2*m*n*k) run on one BLAS thread
SMALL_FLOPS = 1 << 27

_lock = threading.Lock()
_state = {"controllers": None, "depth": 0, "saved": []}


def _controllers():
    """threadpoolctl controllers of the BLAS that numpy uses (found once, lazily)."""
    ctls = _state["controllers"]
    if ctls is None:
        try:
            from threadpoolctl import ThreadpoolController

            libs = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # pragma: no cover - threadpoolctl missing or broken
            libs = []
        site = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
        mine = [c for c in libs
                if os.path.basename(os.path.dirname(c.filepath)) in ("numpy.libs", ".dylibs")
                or os.path.abspath(c.filepath).startswith(os.path.join(site, "numpy"))]
        ctls = _state["controllers"] = mine or libs
    return ctls


class one_blas_thread:
    """Context manager: numpy's BLAS runs on one thread inside; its previous count is restored
    after (re-entrant and safe across Python threads: the first to enter saves, the last
    restores)."""

    def __enter__(self):
        with _lock:
            if _state["depth"] == 0:
                saved = []
                for c in _controllers():
                    n = c.num_threads
                    if n > 1:
                        c.set_num_threads(1)
                        saved.append((c, n))
                _state["saved"] = saved
            _state["depth"] += 1
        return self

    def __exit__(self, *exc):
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                for c, n in _state["saved"]:
                    c.set_num_threads(n)
                _state["saved"] = []
        return False


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` for 2-D arrays, on one BLAS thread when it is small."""
    if 2 * a.shape[0] * a.shape[1] * b.shape[1] >= SMALL_FLOPS:
        return np.matmul(a, b, out=out)
    with one_blas_thread():
        return np.matmul(a, b, out=out)
