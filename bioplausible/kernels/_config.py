"""The one place that decides how numba compiles our kernels.

Policy (see DESIGN.md, "Numba kernels"):

* ``cache=True`` for serial kernels so that users pay compile time once per machine;
* parallel kernels (``prange``) are **not** cached -- cached parallel kernels have been seen to
  segfault (umap / pynndescent experience) -- and are kept few;
* no blanket ``fastmath``: only the flags that cannot turn a NaN into a number
  (``contract`` = fused multiply-add, ``arcp`` = reciprocal, ``reassoc`` = reassociate sums so that
  loops vectorise).  ``nnan``/``ninf``/``nsz`` are never set, so NaNs propagate and are detected.

Kernels import only numba and numpy; nothing else from this package.
"""
from __future__ import annotations

import numba

SAFE_FASTMATH = frozenset({"contract", "arcp", "reassoc"})


def jit(*args, **kwargs):
    """``numba.njit`` with the project's policy: cached, NaN-safe fastmath, no parallel."""
    kwargs.setdefault("cache", True)
    kwargs.setdefault("fastmath", set(SAFE_FASTMATH))
    kwargs.setdefault("nogil", True)
    return numba.njit(*args, **kwargs)


def pjit(*args, **kwargs):
    """Parallel variant (``prange``): never cached, NaN-safe fastmath."""
    kwargs["cache"] = False
    kwargs.setdefault("parallel", True)
    kwargs.setdefault("fastmath", set(SAFE_FASTMATH))
    kwargs.setdefault("nogil", True)
    return numba.njit(*args, **kwargs)
