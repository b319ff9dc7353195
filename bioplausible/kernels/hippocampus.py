"""The time loop of the CA3–CA1 delay model (``bioplausible.hippocampus``): online delta rules.

At every step t (column vectors; d = transmission delay CA3 → CA1, in steps):

    a_t = W_f x_t + b_f,  s_t = relu(a_t)              EC → DG/CA3 code
    p_t = W_h s_t + b_h                                  CA3 (recurrent collaterals): prediction of s_{t+d}
    q_t = W_g p_{t-d} + b_g                              CA1: CA3's output, arriving d steps later
    e3_t = p_{t-d} − s_t                                 CA3 mismatch (prediction vs the input that came)
    e1_t = q_t − x_t                                     CA1 mismatch (vs the direct EC input)

and, for t ≥ d, simultaneous updates with learning rate η and weight decay ρ:

    W_g ← W_g − η (λ e1_t p_{t-d}ᵀ + ρ W_g)              CA1 delta rule
    W_h ← W_h − η (ε3_t s_{t-d}ᵀ + ρ W_h),  ε3_t = e3_t + λ W_gᵀ e1_t
    W_f ← W_f − η_f (δ_t x_{t-d}ᵀ + ρ W_f), δ_t = relu'(a_{t-d}) ⊙ W_hᵀ e3_t          (local)
                                           δ_t = relu'(a_{t-d}) ⊙ W_hᵀ ε3_t          (backprop)

(biases alike, without decay).  The pre-synaptic factors s_{t-d}, p_{t-d}, x_{t-d} are the
eligibility traces that the delay requires; the kernel keeps them in ring buffers of length d+1.

Kernels import nothing of ours; arrays are float32 (weights, inputs) and float64 (records).
"""
from __future__ import annotations

import numpy as np

from ._config import jit


@jit
def ca3ca1_run_kernel(X, Wf, bf, Wh, bh, Wg, bg, delay, lr, lr_f, lam, rho, backprop, learn,
                      e1_out, e3_out):  # pragma: no cover - compiled
    T, n_ec = X.shape
    n = Wf.shape[0]
    L = delay + 1
    S = np.zeros((L, n), np.float32)        # ring buffers: s, a, p, x of the last d+1 steps
    A = np.zeros((L, n), np.float32)
    P = np.zeros((L, n), np.float32)
    XB = np.zeros((L, n_ec), np.float32)
    e3 = np.empty(n, np.float32)
    e1 = np.empty(n_ec, np.float32)
    eps3 = np.empty(n, np.float32)
    dlt = np.empty(n, np.float32)
    for t in range(T):
        k = t % L
        # forward: encoder and CA3 prediction at t
        for j in range(n):
            acc = bf[j]
            for i in range(n_ec):
                acc += Wf[j, i] * X[t, i]
            A[k, j] = acc
            S[k, j] = acc if acc > 0 else 0.0
        for i in range(n_ec):
            XB[k, i] = X[t, i]
        for j in range(n):
            acc = bh[j]
            for i in range(n):
                acc += Wh[j, i] * S[k, i]
            P[k, j] = acc
        if t < delay:
            e1_out[t] = np.nan
            e3_out[t] = np.nan
            continue
        kd = (t - delay) % L
        # CA3 and CA1 mismatches
        m3 = 0.0
        for j in range(n):
            e3[j] = P[kd, j] - S[k, j]
            m3 += e3[j] * e3[j]
        m1 = 0.0
        for i in range(n_ec):
            acc = bg[i]
            for j in range(n):
                acc += Wg[i, j] * P[kd, j]
            e1[i] = acc - X[t, i]
            m1 += e1[i] * e1[i]
        e1_out[t] = m1 / n_ec
        e3_out[t] = m3 / n
        if not learn:
            continue
        # CA3 error: own mismatch + CA1 mismatch through the Schaffer synapses (one layer)
        for j in range(n):
            acc = 0.0
            for i in range(n_ec):
                acc += Wg[i, j] * e1[i]
            eps3[j] = e3[j] + lam * acc
        # encoder error (before W_h changes): W_hᵀ e3 (local) or W_hᵀ ε3 (backprop)
        if lr_f > 0:
            for i in range(n):
                dlt[i] = 0.0
            for j in range(n):
                ej = eps3[j] if backprop else e3[j]
                for i in range(n):
                    dlt[i] += Wh[j, i] * ej
            for i in range(n):
                if A[kd, i] <= 0:
                    dlt[i] = 0.0
        # CA1 delta rule
        for i in range(n_ec):
            g = lr * lam * e1[i]
            for j in range(n):
                Wg[i, j] -= g * P[kd, j] + lr * rho * Wg[i, j]
            bg[i] -= g
        # CA3 delta rule
        for j in range(n):
            g = lr * eps3[j]
            for i in range(n):
                Wh[j, i] -= g * S[kd, i] + lr * rho * Wh[j, i]
            bh[j] -= g
        # EC → DG/CA3
        if lr_f > 0:
            for j in range(n):
                g = lr_f * dlt[j]
                for i in range(n_ec):
                    Wf[j, i] -= g * XB[kd, i] + lr_f * rho * Wf[j, i]
                bf[j] -= g
