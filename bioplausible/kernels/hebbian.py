"""Online (sample-by-sample) Hebbian plasticity and the post-synaptic factors of competitive rules.

Layout: a layer's weights are a matrix ``W`` of shape ``(n_in, K)`` -- column ``k`` is the weight
vector ``w_k`` of post-synaptic unit ``k`` (the layout of ``Dense`` weights and of a ``Conv2d``
weight ``(kh, kw, c_in, c_out)`` reshaped to ``(kh*kw*c_in, c_out)``).  ``X`` is ``(n, n_in)``, one
pre-synaptic pattern per row (a sample, or one im2col patch of a convolution).

The online kernels update ``W`` **in place**, one sample after another, in the order of the rows
of ``X`` -- what a synapse does; a mini-batch rule (BLAS products, in ``rules/hebbian.py``) averages
the same update over the batch instead.  They return the index of the first sample after which the
weights stopped being finite or a squared column norm exceeded ``limit`` (the update is then
stopped there, leaving the last finite weights), or ``-1`` when the whole pass was fine.  That is
how a too-large learning rate is detected and reported instead of silently producing NaNs.

Kernels (pure functions on C-contiguous float32/float64 arrays; checked wrappers live in
``bioplausible.rules.hebbian``):

* :func:`oja_online_kernel`     -- ``w_k += η y_k (x − y_k w_k)``, ``y_k = w_kᵀx`` (each unit alone);
* :func:`sanger_online_kernel`  -- ``w_k += η y_k (x − Σ_{j≤k} y_j w_j)`` (GHA);
* :func:`bcm_online_kernel`     -- ``w_k += η x y_k (y_k − θ_k)``, ``θ_k += (y_k² − θ_k)/τ_θ``;
* :func:`competitive_online_kernel` -- the closest ``w_k`` moves towards ``x`` (online k-means);
* :func:`kh_post_kernel`        -- Krotov–Hopfield's ranked post-synaptic factor per sample;
"""
from __future__ import annotations

import numpy as np

from ._config import jit


@jit
def oja_online_kernel(W, X, lr, limit):  # pragma: no cover - compiled
    n_in, k = W.shape
    y = np.empty(k, W.dtype)
    s = np.empty(k, W.dtype)
    for n in range(X.shape[0]):
        for j in range(k):
            y[j] = 0.0
            s[j] = 0.0
        for i in range(n_in):               # rows of W are contiguous: j innermost everywhere
            xi = X[n, i]
            for j in range(k):
                y[j] += xi * W[i, j]
        for i in range(n_in):
            xi = X[n, i]
            for j in range(k):
                w = W[i, j] + lr * y[j] * (xi - y[j] * W[i, j])
                W[i, j] = w
                s[j] += w * w
        for j in range(k):
            if not (s[j] <= limit):         # also catches NaN
                return n
    return -1


@jit
def sanger_online_kernel(W, X, lr, limit):  # pragma: no cover - compiled
    n_in, k = W.shape
    y = np.empty(k, W.dtype)
    s = np.empty(k, W.dtype)
    for n in range(X.shape[0]):
        for j in range(k):
            y[j] = 0.0
            s[j] = 0.0
        for i in range(n_in):
            xi = X[n, i]
            for j in range(k):
                y[j] += xi * W[i, j]
        for i in range(n_in):               # r = x_i − Σ_{l≤j} y_l W_il (old weights), per input i
            r = X[n, i]
            for j in range(k):
                r -= y[j] * W[i, j]
                w = W[i, j] + lr * y[j] * r
                W[i, j] = w
                s[j] += w * w
        for j in range(k):
            if not (s[j] <= limit):
                return n
    return -1


@jit
def bcm_online_kernel(W, X, lr, theta, tau, rectify, limit):  # pragma: no cover - compiled
    n_in, k = W.shape
    y = np.empty(k, W.dtype)
    phi = np.empty(k, W.dtype)
    s = np.empty(k, W.dtype)
    for n in range(X.shape[0]):
        for j in range(k):
            y[j] = 0.0
            s[j] = 0.0
        for i in range(n_in):
            xi = X[n, i]
            for j in range(k):
                y[j] += xi * W[i, j]
        for j in range(k):
            if rectify and y[j] < 0.0:
                y[j] = 0.0
            phi[j] = lr * y[j] * (y[j] - theta[j])
            theta[j] += (y[j] * y[j] - theta[j]) / tau
        for i in range(n_in):
            xi = X[n, i]
            for j in range(k):
                w = W[i, j] + phi[j] * xi
                W[i, j] = w
                s[j] += w * w
        for j in range(k):
            if not (s[j] <= limit):
                return n
    return -1


@jit
def competitive_online_kernel(W, X, lr, counts):  # pragma: no cover - compiled
    """``lr <= 0``: step 1/count_k (MacQueen's online k-means: w_k is the running mean of the
    samples it won); ``lr > 0``: fixed step.  Winner = smallest ‖x − w_k‖² (first on ties)."""
    n_in, k = W.shape
    d = np.empty(k, W.dtype)
    for n in range(X.shape[0]):
        for j in range(k):
            d[j] = 0.0
        for i in range(n_in):
            xi = X[n, i]
            for j in range(k):
                t = xi - W[i, j]
                d[j] += t * t
        best = 0
        for j in range(1, k):
            if d[j] < d[best]:
                best = j
        counts[best] += 1
        eta = lr if lr > 0 else 1.0 / counts[best]
        for i in range(n_in):
            W[i, best] += eta * (X[n, i] - W[i, best])
        if not np.isfinite(d[best]):
            return n
    return -1


@jit
def kh_post_kernel(U, rank, delta, g):  # pragma: no cover - compiled
    """Per row of ``U`` (n, K): ``g = 1`` at the largest current, ``−delta`` at the ``rank``-th
    largest (rank ≥ 2), 0 elsewhere.  Ties go to the lower index.  Partial selection, O(K·rank)."""
    n, k = U.shape
    idx = np.empty(rank, np.int64)
    for b in range(n):
        for j in range(k):
            g[b, j] = 0.0
        m = 0                                  # idx[:m] holds the top-m indices, sorted desc
        for j in range(k):
            v = U[b, j]
            if m < rank:
                pos = m
                m += 1
            elif v > U[b, idx[rank - 1]]:
                pos = rank - 1
            else:
                continue
            while pos > 0 and U[b, idx[pos - 1]] < v:
                idx[pos] = idx[pos - 1]
                pos -= 1
            idx[pos] = j
        g[b, idx[0]] = 1.0
        if m >= rank and rank >= 2:
            g[b, idx[rank - 1]] = -delta
