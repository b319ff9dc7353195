"""Batch-parallel layer work: one task per core, each on its own slice of the images.

A layer's heavy work (im2col + sgemm, the direct convolution, pooling, activations) is split into
``k`` contiguous slices of the batch that run at the same time on ``k`` Python threads (numba
kernels and BLAS release the GIL), with BLAS on one thread inside each task.  Compared with one
multi-threaded BLAS call per product this

* also runs the numba kernels (im2col, col2im, pooling, ...) on every core, not one;
* synchronises once per layer call instead of inside every BLAS call: a multi-threaded sgemm
  waits for its slowest thread at every block, which costs a whole scheduler time slice each
  time a thread is preempted on a machine that is busy with other work.

``k`` is the number of threads numpy's BLAS is allowed to use (``threadpool_limits(1)`` or
``OPENBLAS_NUM_THREADS=1`` therefore also makes the layers serial), at most ``os.cpu_count()``.
Work smaller than :data:`MIN_SPLIT` elements is not split.

A whole training step can also be split over the batch (:class:`DataParallel`): each slice runs
the forward and backward pass of *every* layer on its own replica of the blocks (the replicas
share the parameter arrays, each has its own work buffers), and the slices' gradients are summed
once at the end.  That synchronises once per step instead of once per layer and keeps each core on
its own images from the first layer to the last.
"""
from __future__ import annotations

import os
import threading

from ._blas import _controllers, one_blas_thread

#: a layer call is split over the batch only if its largest array has at least this many elements
MIN_SPLIT = 1 << 20

_lock = threading.Lock()
_pool = {"executor": None, "pid": None}
_local = threading.local()  # .busy: this thread is running a part (nested calls run inline)


def n_workers() -> int:
    """How many slices to run at once: numpy's BLAS thread count, capped by the cpu count."""
    ctls = _controllers()
    if not ctls:
        return 1
    return max(1, min(max(c.num_threads for c in ctls), os.cpu_count() or 1))


def plan(n: int, work: int) -> list[tuple[int, int]]:
    """Contiguous slices ``[(b0, b1), ...]`` of ``range(n)``: one per worker if ``work`` (elements)
    is at least :data:`MIN_SPLIT`, else the whole range."""
    k = min(n_workers(), n) if work >= MIN_SPLIT else 1
    if k <= 1:
        return [(0, n)]
    return [(i * n // k, (i + 1) * n // k) for i in range(k)]


def _executor():
    with _lock:
        ex = _pool["executor"]
        if ex is None or _pool["pid"] != os.getpid():  # (re)create after a fork
            from concurrent.futures import ThreadPoolExecutor

            ex = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1),
                                    thread_name_prefix="bioplausible-layer")
            _pool["executor"], _pool["pid"] = ex, os.getpid()
        return ex


def _part(fn, i, b0, b1):
    _local.busy = True
    try:
        return fn(i, b0, b1)
    finally:
        _local.busy = False


def run(parts: list[tuple[int, int]], fn) -> list:
    """``[fn(i, b0, b1) for i, (b0, b1) in enumerate(parts)]``, the parts at the same time.

    With one part, ``fn`` runs directly (BLAS keeps its own threads).  With several, the calling
    thread runs part 0, pool threads the others, BLAS on one thread each; every part has finished
    when this returns (or raises the first error)."""
    if len(parts) == 1:
        return [fn(0, *parts[0])]
    if getattr(_local, "busy", False):  # called from inside a part: no nested fan-out
        return [fn(i, b0, b1) for i, (b0, b1) in enumerate(parts)]
    with one_blas_thread():
        ex = _executor()
        futures = [ex.submit(_part, fn, i, b0, b1) for i, (b0, b1) in enumerate(parts) if i > 0]
        try:
            first = _part(fn, 0, *parts[0])
        finally:
            for f in futures:  # never return while a task still writes into shared arrays
                f.exception()
        return [first] + [f.result() for f in futures]


def replicate(blocks: list) -> list:
    """Shallow replicas of ``blocks`` (objects with a ``layers`` list): every layer is copied
    without its work buffers, and shares its ``params`` dict -- so an optimiser's in-place update,
    or a dtype change, reaches every replica -- with the original."""
    import copy

    out = []
    for b in blocks:
        rb = copy.copy(b)
        rb.layers = [copy.copy(layer) for layer in b.layers]   # PooledLayer drops its pool
        for layer, rl in zip(b.layers, rb.layers):
            rl.params = layer.params
        out.append(rb)
    return out


class DataParallel:
    """Run one step on slices of the batch, one slice per core, each on its own replica of the
    blocks (slice 0 on the blocks themselves).

    ``slices(n, work)`` plans the slices (one per worker if the step's largest array, ``work``
    elements, is at least :data:`MIN_SPLIT`; else a single slice: the caller then runs its
    ordinary path); ``run(blocks, slices, fn)`` calls ``fn(replica_blocks, b0, b1)`` for every
    slice at the same time and returns the results in slice order.  Replicas are made once per
    set of blocks and remade if the blocks change (other layer objects)."""

    def __init__(self):
        self._key = None
        self._replicas = []

    @staticmethod
    def slices(n: int, work: int) -> list[tuple[int, int]]:
        return plan(n, work)

    def _blocks_for(self, blocks: list, k: int) -> list:
        key = [layer for b in blocks for layer in b.layers]    # the layers themselves, not ids:
        if (self._key is None or len(key) != len(self._key)      # a freed layer's id can be reused
                or any(a is not b for a, b in zip(key, self._key))):
            self._key, self._replicas = key, []
        while len(self._replicas) < k - 1:
            self._replicas.append(replicate(blocks))
        return [blocks] + self._replicas[:k - 1]

    def run(self, blocks: list, slices: list[tuple[int, int]], fn) -> list:
        reps = self._blocks_for(blocks, len(slices))
        return run(slices, lambda i, b0, b1: fn(reps[i], b0, b1))

    def __getstate__(self):     # replicas are work objects: never pickled
        return {"_key": None, "_replicas": []}

    def __setstate__(self, state):
        self.__dict__.update(state)


def weighted_sum(grads: list, weights: list) -> list:
    """Σ_i weights[i] · grads[i] for per-slice gradient lists (a list of ``{name: array}`` per
    layer, ``{}`` for layers without parameters)."""
    out = []
    for per_layer in zip(*grads):
        acc = {}
        for k in per_layer[0]:
            g = per_layer[0][k] * weights[0]
            for gi, w in zip(per_layer[1:], weights[1:]):
                g += gi[k] * w
            acc[k] = g
        out.append(acc)
    return out
