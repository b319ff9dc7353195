"""Helpers shared by the layer modules: input checks, parameter init, reusable buffers."""
from __future__ import annotations

import sys

import numpy as np

from .base import ShapeError

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def require_rng(rng, who: str) -> np.random.Generator:
    """Return ``rng`` if it is a numpy Generator, else raise a TypeError saying how to make one."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{who} needs rng=numpy.random.Generator (e.g. np.random.default_rng(seed)) so that "
            f"initial weights are reproducible; got {type(rng).__name__}")
    return rng


def uniform_init(rng, shape, fan_in: int) -> np.ndarray:
    """PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), float32, C-contiguous."""
    bound = 1.0 / np.sqrt(fan_in)
    return np.ascontiguousarray(rng.uniform(-bound, bound, size=shape).astype(np.float32))


def positive_int(v, name: str, who: str) -> int:
    if isinstance(v, (bool, np.bool_)) or int(v) != v or int(v) < 1:
        raise ValueError(f"{who}: {name} must be a positive int, got {v!r}")
    return int(v)


def pair(v, name: str, who: str, minimum: int = 1) -> tuple:
    """An int or a pair of ints -> (along H, along W), each >= minimum."""
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(vals) != 2:
        raise ValueError(f"{who}: {name} must be an int or a pair of ints, got {v!r}")
    out = []
    for a in vals:
        if isinstance(a, (bool, np.bool_)) or int(a) != a or int(a) < minimum:
            raise ValueError(f"{who}: {name} must be int(s) >= {minimum}, got {v!r}")
        out.append(int(a))
    return tuple(out)


def check_float(x, who: str, expected: str, dtype=None) -> np.ndarray:
    """Validate dtype (float32/float64, or exactly ``dtype``); return a C-contiguous writeable array."""
    if not isinstance(x, np.ndarray):
        raise ShapeError(f"{who} expects {expected} as a numpy array, got {type(x).__name__}")
    if dtype is not None and x.dtype != dtype:
        raise ShapeError(f"{who} expects {expected} with dtype {np.dtype(dtype).name} (the dtype of its "
                         f"parameters), got dtype {x.dtype} and shape {x.shape}")
    if x.dtype not in FLOATS:
        raise ShapeError(f"{who} expects {expected} (float32, or float64 for gradient checks), "
                         f"got dtype {x.dtype} and shape {x.shape}")
    if not x.flags.c_contiguous or not x.flags.writeable:
        x = np.array(x, order="C", copy=True)
    return x


def check_grad(dy, shape, dtype, who: str) -> np.ndarray:
    """The upstream gradient must have the layer output's shape and dtype."""
    if not isinstance(dy, np.ndarray) or dy.shape != tuple(shape):
        got = dy.shape if isinstance(dy, np.ndarray) else type(dy).__name__
        raise ShapeError(f"{who}.backward expects dy of the output's shape {tuple(shape)}, got {got}")
    if dy.dtype != dtype:
        raise ShapeError(f"{who}.backward expects dy with dtype {np.dtype(dtype).name} like its "
                         f"output, got {dy.dtype}")
    if not dy.flags.c_contiguous or not dy.flags.writeable:
        dy = np.array(dy, order="C", copy=True)
    return dy


def _refs(lst, i):
    item = lst[i]
    return sys.getrefcount(item)


_FREE_REFS = _refs([np.empty(0, np.uint8)], 0)  # references to a buffer held by the pool only


class BufferPool:
    """Large arrays that a layer hands out again once nobody else holds them.

    Allocating a fresh 50 MB array for every im2col, output and gradient costs more than the kernels
    that fill it (page faults on first touch).  ``get`` returns a view of a pooled byte buffer; the
    view keeps its buffer alive, so the buffer is reused only when every view of it -- every output,
    cache or gradient given to a caller -- has been dropped (CPython reference counting).  Keeping a
    cache or an output therefore stays safe: the pool just allocates another buffer.  At most
    ``max_buffers`` are kept; beyond that arrays are allocated normally.

    Not thread-safe: one layer object must not run two forward/backward calls at the same time.
    """

    def __init__(self, max_buffers: int = 6):
        self.max_buffers = max_buffers
        self._bufs = []

    def get(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        best = -1
        for i in range(len(self._bufs)):
            if _refs(self._bufs, i) == _FREE_REFS and self._bufs[i].nbytes >= nbytes:
                if best < 0 or self._bufs[i].nbytes < self._bufs[best].nbytes:
                    best = i
        if best < 0:
            # free buffers that this request has outgrown (at least half its size) are almost
            # surely earlier, smaller versions of it (a batch whose size varies from step to
            # step, e.g. CLAPP's 1.5 views per image): drop them rather than keep them all
            outgrown = [_refs(self._bufs, i) == _FREE_REFS and nbytes // 2 <= self._bufs[i].nbytes
                        for i in range(len(self._bufs))]
            self._bufs = [b for b, drop in zip(self._bufs, outgrown) if not drop]
            if len(self._bufs) >= self.max_buffers:
                # drop a free (too small) buffer if there is one, else do not pool this array
                free = [i for i in range(len(self._bufs)) if _refs(self._bufs, i) == _FREE_REFS]
                if not free:
                    return np.empty(shape, dtype)
                del self._bufs[free[0]]
            # 1/8 headroom, so that a request that grows a little next time still fits
            self._bufs.append(np.empty(max(nbytes + nbytes // 8, 1), np.uint8))
            best = len(self._bufs) - 1
        return self._bufs[best][:nbytes].view(dtype).reshape(shape)

    def clear(self):
        self._bufs = []


class PooledLayer:
    """Mixin: a lazily created :class:`BufferPool` that is never pickled or deep-copied."""

    def _get(self, shape, dtype):
        pool = self.__dict__.get("_pool")
        if pool is None:
            pool = self.__dict__["_pool"] = BufferPool()
        return pool.get(shape, dtype)

    def use_pool(self, pool: "BufferPool"):
        """Take work arrays from ``pool`` (e.g. one pool shared by layers that never run at the same
        time, so that they reuse each other's buffers)."""
        self.__dict__["_pool"] = pool

    def release_buffers(self):
        """Forget pooled work arrays (they are freed once callers drop their outputs/caches)."""
        self.__dict__.pop("_pool", None)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_pool", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)


class ParamLayer(PooledLayer):
    """Mixin for layers with parameters: dtype switching for float64 gradient checks."""

    def astype(self, dtype):
        """Convert every parameter to ``dtype`` (float32 or float64) in place; returns self.

        float64 exists for finite-difference and autograd checks; training uses float32.
        """
        dtype = np.dtype(dtype)
        if dtype not in FLOATS:
            raise TypeError(f"parameters must be float32 or float64, got {dtype}")
        for k, v in self.params.items():
            self.params[k] = np.ascontiguousarray(v, dtype=dtype)
        return self

    @property
    def dtype(self):
        return next(iter(self.params.values())).dtype
