"""Benchmark: Hebbian rules, numba kernel against a vectorised numpy implementation of the same rule.

    python benchmarks/bench_hebbian.py [--n 4000] [--d 256] [--k 64] [--reps 3]

For each rule both implementations compute the *same* update on the same data (checked: the final
weights agree to float32 precision) and the table gives samples per second and the ratio
numba / numpy (> 1: numba is faster), measured in one process so that the ratio is fair on a busy
machine.  The first call (numba compilation, or loading it from numba's on-disk cache) is timed
separately and not included in the steady state.

* online rules (one sample after another, as a synapse does): Oja, Sanger's GHA, BCM, and hard
  winner-take-all (online k-means).  numpy: a loop over samples with every per-sample update
  vectorised over the weight matrix (outer products, matrix-vector products).  numba: the fused
  loops of ``bioplausible.kernels.hebbian``.
* the mini-batch Krotov–Hopfield rule, whose post-synaptic factor is a per-sample ranking (numba:
  partial insertion selection; numpy: ``argpartition`` + ``argsort`` of the top ranks).  Both sides
  share the BLAS products (Xᵀ G).  (SoftHebb's softmax is not in numba: numpy's SIMD ``exp`` beat
  a fused numba loop by ~1.5x when we tried, so the rule uses numpy.)
Synthetic Gaussian data (timing only; the rules' quality is tested on real images elsewhere).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

# both sides single-threaded (numba kernels are serial; BLAS would otherwise use every core), so
# that CPU time measures the work of each implementation
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


# ------------------------------------------------------------------------ numpy implementations
def np_oja(W, X, lr):
    for x in X:
        y = x @ W
        W += lr * (np.outer(x, y) - W * (y * y))


def np_sanger(W, X, lr):
    for x in X:
        y = x @ W
        W += lr * (np.outer(x, y) - W @ np.triu(np.outer(y, y)))


def np_bcm(W, X, lr, theta, tau):
    for x in X:
        y = np.maximum(x @ W, 0)
        W += lr * np.outer(x, y * (y - theta))
        theta += (y * y - theta) / tau


def np_competitive(W, X, counts):
    wn = (W * W).sum(0)
    for x in X:
        j = int(np.argmin(wn - 2 * (x @ W)))       # argmin ‖x − w‖² (‖x‖² is common to all)
        counts[j] += 1
        W[:, j] += (x - W[:, j]) / counts[j]
        wn[j] = W[:, j] @ W[:, j]


def np_kh_post(U, rank, delta):
    n = len(U)
    top = np.argpartition(-U, rank - 1, axis=1)[:, :rank]
    order = np.argsort(-np.take_along_axis(U, top, 1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, 1)
    G = np.zeros_like(U)
    G[np.arange(n), top[:, 0]] = 1
    G[np.arange(n), top[:, rank - 1]] = -delta
    return G


def np_kh_step(W, X, lr, rank=2, delta=0.4):
    U = X @ (W * np.abs(W))                 # p = 3: sign(W)|W|^2
    G = np_kh_post(U, rank, delta)
    dW = X.T @ G - W * np.einsum("nk,nk->k", G, U)
    W += dW * (lr / np.abs(dW).max())


# ------------------------------------------------------------------------ timing
def timed_pair(fa, fb, reps):
    """Median CPU times (``time.process_time``) of ``fa`` and ``fb``, measured alternately.

    CPU time, not wall time: on a shared machine a process is descheduled for tens of ms at a
    time, which made wall-clock timings of short calls differ 10x depending only on their order.
    Both sides run single-threaded, so CPU time is their work."""
    ta, tb = [], []
    for _ in range(reps):
        for fn, ts in ((fa, ta), (fb, tb)):
            t = time.process_time()
            fn()
            ts.append(time.process_time() - t)
    return float(np.median(ta)), float(np.median(tb))


def main(argv=None):
    from bioplausible.rules import hebbian as H

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4000, help="samples per pass")
    p.add_argument("--d", type=int, default=256, help="inputs (16x16 patches)")
    p.add_argument("--k", type=int, default=64, help="units")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--batch", type=int, default=100, help="mini-batch of the batch rules")
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(a.n, a.d)) / np.sqrt(a.d)).astype(np.float32)
    W0 = H.normalize_columns(rng.normal(size=(a.d, a.k)).astype(np.float32))
    lr = 0.01
    rows = []

    def bench(name, numba_fn, numpy_fn, n_samples):
        Wa, Wb = W0.copy(), W0.copy()
        t = time.perf_counter()
        numba_fn(Wa, X[:max(8, a.batch)])   # first call: compile or load from cache
        first = time.perf_counter() - t
        Wa, Wb = W0.copy(), W0.copy()
        numba_fn(Wa, X)
        numpy_fn(Wb, X)
        agree = np.allclose(Wa, Wb, rtol=1e-3, atol=1e-4)
        ta, tb = timed_pair(lambda: numba_fn(W0.copy(), X), lambda: numpy_fn(W0.copy(), X), a.reps)
        rows.append((name, n_samples / ta, n_samples / tb, tb / ta, first, agree))

    bench("Oja (online)", lambda W, X: H.oja_online(W, X, lr, inplace=True),
          lambda W, X: np_oja(W, X, lr), a.n)
    bench("Sanger GHA (online)", lambda W, X: H.sanger_online(W, X, lr, inplace=True),
          lambda W, X: np_sanger(W, X, lr), a.n)
    bench("BCM (online)",
          lambda W, X: H.bcm_online(W, X, np.ones(a.k, np.float32), lr, 50.0, inplace=True),
          lambda W, X: np_bcm(W, X, lr, np.ones(a.k, np.float32), 50.0), a.n)
    bench("competitive / k-means (online)",
          lambda W, X: H.competitive_online(W, X, 0.0, np.zeros(a.k, np.int64), inplace=True),
          lambda W, X: np_competitive(W, X, np.zeros(a.k, np.int64)), a.n)
    B = a.batch

    def kh_numba(W, X):
        for i in range(0, len(X) - B + 1, B):
            W += H.krotov_hopfield(W, X[i:i + B], lr, p=3.0)

    def kh_numpy(W, X):
        for i in range(0, len(X) - B + 1, B):
            np_kh_step(W, X[i:i + B], lr)

    bench(f"Krotov-Hopfield (batch {B})", kh_numba, kh_numpy, a.n)

    print(f"d = {a.d} inputs, K = {a.k} units, {a.n} samples, median CPU time of {a.reps}; float32, 1 thread")
    print("| rule | numba samples/s | numpy samples/s | ratio numba/numpy | first call (s) | same weights |")
    print("|---|---|---|---|---|---|")
    for name, sa, sb, r, first, agree in rows:
        print(f"| {name} | {sa:,.0f} | {sb:,.0f} | **{r:.1f}** | {first:.2f} | {'yes' if agree else 'NO'} |")
    return rows


if __name__ == "__main__":
    main()
