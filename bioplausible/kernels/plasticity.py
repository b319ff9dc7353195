"""Fused post-synaptic factors of local three-factor rules on convolutional blocks.

For a block ``conv -> ρ -> max-pool(s)`` (``s = 1``: no pooling) with conv pre-activation ``a``
(N, Ho, Wo, C) and a per-unit top-down factor ``e`` at the block output (N, Hp, Wp, C) (for CLAPP:
broadcast gate × dendritic prediction, already divided by the number of positions it is spread
over), the post-synaptic term at conv unit (n, q, j) is

    δ[n, q, j] = e[n, p(q), j] · 1[q wins its pooling window p(q)] · ρ'(a[n, q, j]),

and the weight update is the Hebbian sum over positions ``ΔW[i, j] = Σ_{n,q} x_col[n, q, i] δ[n, q, j]``
(one BLAS product, done by the caller).  The winner of a window is the first maximum of ρ(a) in
row-major order (as in PyTorch); for ReLU, ρ'(a) = 1[a > 0], so windows whose units are all silent
pass nothing.  Positions outside every window (when Ho or Wo is not a multiple of s) get δ = 0.

``act`` selects ρ: 0 = ReLU, 1 = identity (ρ' = 1), 2 = tanh (ρ' = 1 − ρ(a)²),
3 = sigmoid (ρ' = ρ(a)(1 − ρ(a))).  ``r`` is ρ(a), which the forward pass has anyway.
"""
from __future__ import annotations

import numpy as np
from ._config import jit

ACTS = {"relu": 0, "identity": 1, "tanh": 2, "sigmoid": 3}


@jit
def pooled_post_kernel(r, e, s, act, rows, delta):  # pragma: no cover - compiled
    """Serial (cached) kernel -- callers run it concurrently on slices of ``rows`` -- in one pass:
    every output element is written once (zeros included), channels innermost so that reads and
    writes are contiguous.  ``delta[m]`` is computed for sample
    ``rows[m]`` of ``r`` and ``e`` (a subset of the batch: the samples whose modulator is not zero)."""
    ho, wo, c = r.shape[1], r.shape[2], r.shape[3]
    hp = e.shape[1]
    wp = e.shape[2]
    if s == 1:       # no pooling: δ = e · ρ'(a) element by element (one branch-free loop per ρ)
        per = ho * wo * c
        r2 = r.reshape(r.shape[0], per)
        e2 = e.reshape(e.shape[0], per)
        d2 = delta.reshape(delta.shape[0], per)
        for m in range(rows.shape[0]):
            rb, eb, db = r2[rows[m]], e2[rows[m]], d2[m]
            if act == 0:
                for t in range(per):
                    db[t] = eb[t] if rb[t] > 0 else 0.0
            elif act == 1:
                for t in range(per):
                    db[t] = eb[t]
            elif act == 2:
                for t in range(per):
                    db[t] = eb[t] * (1.0 - rb[t] * rb[t])
            else:
                for t in range(per):
                    db[t] = eb[t] * (rb[t] * (1.0 - rb[t]))
        return
    best = np.empty(c, r.dtype)
    win = np.empty(c, np.int64)
    for m in range(rows.shape[0]):
        b = rows[m]
        if hp * s < ho or wp * s < wo:           # positions outside every window
            for i in range(ho):
                for j in range(wo):
                    for k in range(c):
                        delta[m, i, j, k] = 0.0
        for pi in range(hp):
            for pj in range(wp):
                for k in range(c):
                    best[k] = r[b, pi * s, pj * s, k]
                    win[k] = 0
                for u in range(s):
                    for v in range(s):
                        if u == 0 and v == 0:
                            continue
                        for k in range(c):
                            val = r[b, pi * s + u, pj * s + v, k]
                            if val > best[k]:
                                best[k] = val
                                win[k] = u * s + v
                for u in range(s):
                    for v in range(s):
                        for k in range(c):
                            delta[m, pi * s + u, pj * s + v, k] = 0.0
                for k in range(c):
                    u = win[k] // s
                    v = win[k] - u * s
                    rv = best[k]
                    if act == 0:
                        d = 1.0 if rv > 0 else 0.0
                    elif act == 1:
                        d = 1.0
                    elif act == 2:
                        d = 1.0 - rv * rv
                    else:
                        d = rv * (1.0 - rv)
                    delta[m, pi * s + u, pj * s + v, k] = e[b, pi, pj, k] * d


def _rows(rows, n):
    if rows is None:
        return np.arange(n, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= n)):
        raise ValueError(f"rows must be a 1-D array of sample indices in [0, {n}); got {rows!r}")
    return rows


def pooled_post(r: np.ndarray, e: np.ndarray, pool: int = 1, act: str = "relu",
                rows=None, out=None) -> np.ndarray:
    """Checked wrapper of :func:`pooled_post_kernel`; returns δ with the shape of ``r``, or, with
    ``rows`` (sample indices), δ of those samples only: ``(len(rows),) + r.shape[1:]`` (written
    into ``out`` if given)."""
    if act not in ACTS:
        raise ValueError(f"unknown activation {act!r} for a local rule; allowed: {', '.join(ACTS)}")
    if r.ndim != 4 or e.ndim != 4 or r.shape[0] != e.shape[0] or r.shape[3] != e.shape[3]:
        raise ValueError(f"pooled_post expects r (N, Ho, Wo, C) and e (N, Hp, Wp, C); got "
                         f"r{r.shape}, e{e.shape}")
    if e.shape[1] != r.shape[1] // pool or e.shape[2] != r.shape[2] // pool:
        raise ValueError(f"with pool {pool}, e must be (N, {r.shape[1] // pool}, "
                         f"{r.shape[2] // pool}, C); got {e.shape}")
    dt = np.result_type(r.dtype, e.dtype)
    if dt not in (np.float32, np.float64):
        dt = np.float32
    r = np.ascontiguousarray(r, dtype=dt)
    e = np.ascontiguousarray(e, dtype=dt)
    rows = _rows(rows, r.shape[0])
    delta = _out(out, (len(rows),) + r.shape[1:], dt)
    pooled_post_kernel(r, e, int(pool), ACTS[act], rows, delta)
    return delta


def _out(out, shape, dtype):
    """``out`` checked (C-contiguous, the right shape and dtype), or a new array."""
    if out is None:
        return np.empty(shape, dtype)
    if out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {np.dtype(dtype).name} array of shape "
                         f"{tuple(shape)}; got {out.dtype.name} {out.shape}")
    return out


@jit
def winner_post_kernel(arg, y, e, kh, kw, sh, sw, rows, delta):  # pragma: no cover - compiled
    """Post-synaptic factor of a fused ReLU + max-pool block from the pool's own winners.

    ``arg[n, p, q, k]`` is the window index ``i*kw + j`` of the maximum of window (p, q) and
    ``y = max(0, max window)`` the pooled output: δ at the winner is ``e[n, p, q, k] · 1[y > 0]``
    (ρ' of the ReLU), zero elsewhere.  Windows must not overlap (stride ≥ size).  One pass:
    each window of δ is written once; ``delta[m]`` belongs to sample ``rows[m]``.
    """
    hp, wp, c = y.shape[1], y.shape[2], y.shape[3]
    H, W = delta.shape[1], delta.shape[2]
    for m in range(rows.shape[0]):
        b = rows[m]
        if hp * kh < H or wp * kw < W or sh > kh or sw > kw:      # pixels outside every window
            for i in range(H):
                for j in range(W):
                    for k in range(c):
                        delta[m, i, j, k] = 0.0
        for p in range(hp):
            for q in range(wp):
                for u in range(kh):
                    for v in range(kw):
                        for k in range(c):
                            delta[m, p * sh + u, q * sw + v, k] = 0.0
                for k in range(c):
                    if y[b, p, q, k] > 0:
                        w = arg[b, p, q, k]
                        u = w // kw
                        v = w - u * kw
                        delta[m, p * sh + u, q * sw + v, k] = e[b, p, q, k]


def winner_post(cache, e: np.ndarray, size: tuple, stride: tuple, rows=None, out=None) -> np.ndarray:
    """Checked wrapper of :func:`winner_post_kernel` for a ``ReLUMaxPool2d`` cache
    (``cache.arg``, ``cache.y``, ``cache.x_shape``); returns δ with the pool input's shape, or, with
    ``rows`` (sample indices), δ of those samples only (written into ``out`` if given)."""
    arg, y = cache.arg, cache.y
    if e.shape != y.shape:
        raise ValueError(f"winner_post: e must have the pooled shape {y.shape}, got {e.shape}")
    if stride[0] < size[0] or stride[1] < size[1]:
        raise ValueError("winner_post needs non-overlapping pooling windows (stride >= size)")
    e = np.ascontiguousarray(e, dtype=y.dtype)
    rows = _rows(rows, y.shape[0])
    delta = _out(out, (len(rows),) + tuple(cache.x_shape[1:]), y.dtype)
    winner_post_kernel(arg, y, e, int(size[0]), int(size[1]), int(stride[0]), int(stride[1]),
                       rows, delta)
    return delta


@jit
def scatter_scaled_rows(out, idx, scale, rows):  # pragma: no cover - compiled
    """``out[idx[p]] += scale[p] * rows[p]`` for p = 0, 1, ... in order (``np.add.at`` with a
    per-row factor, without its temporaries): how every pair's modulated prediction reaches the
    code of the input it came from."""
    d = rows.shape[1]
    for p in range(idx.shape[0]):
        s = scale[p]
        o = out[idx[p]]
        r = rows[p]
        for k in range(d):
            o[k] += s * r[k]
