"""Evaluation on frozen features: linear probes, kNN, and representation diagnostics.

Everything here is numpy/scipy on arrays of features ``X`` of shape ``(n_samples, n_features)``
(see :func:`pool_features` and :func:`gap` to turn a block output into features); labels are
integer arrays.  Randomness (few-label draws) comes from an explicit ``numpy.random.Generator``.

The protocol (PROTOCOL.md, "Evaluation") maps onto this module as:

1. ``linear_probe(pool_features(h_tr), ytr, pool_features(h_te), yte)``  -- the 2x2 probe;
2. ``linear_probe(gap(h_tr), ytr, gap(h_te), yte)``                     -- the code probe;
3. ``few_label_probe(..., per_class=10 or 100, draws=5, rng=rng)``;
4. ``knn_accuracy(gap(h_tr), ytr, gap(h_te), yte, k=20, metric="cosine")``;
and :func:`representation_report` flags collapse, low rank and dead units.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "Standardizer", "SoftmaxProbe", "linear_probe", "few_label_probe", "knn_accuracy",
    "effective_rank", "collapse_std", "dead_units", "representation_report",
    "pool_features", "gap",
]


def _as_2d_features(X, name="X") -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}; "
                         "use pool_features() or gap() on block outputs")
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {X.dtype}")
    return X


def _as_labels(y, n, name="y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name} must be 1-D with {n} labels, got shape {y.shape}")
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    return y


# ----------------------------------------------------------------------------- standardisation

class Standardizer:
    """Per-feature standardisation fitted on training features: ``(x - mean_) / scale_``.

    ``scale_ = sqrt(var + eps)`` so constant features (e.g. dead ReLU units) map to 0 instead of
    dividing by zero.  Statistics are computed in float64; ``transform`` returns float32.
    """

    def __init__(self, eps: float = 1e-8):
        self.eps = eps

    def fit(self, X) -> "Standardizer":
        X = _as_2d_features(X)
        # two-pass, chunked float64 statistics: accurate and without a float64 copy of X
        n, d = X.shape
        if n == 0:
            raise ValueError("cannot fit a Standardizer on zero samples")
        mean = np.zeros(d)
        for s in range(0, n, 8192):
            mean += X[s:s + 8192].sum(axis=0, dtype=np.float64)
        mean /= n
        var = np.zeros(d)
        for s in range(0, n, 8192):
            diff = X[s:s + 8192].astype(np.float64) - mean
            var += np.einsum("ij,ij->j", diff, diff)
        var /= n
        self.mean_ = mean
        self.scale_ = np.sqrt(var + self.eps)
        return self

    def transform(self, X) -> np.ndarray:
        X = _as_2d_features(X)
        if not hasattr(self, "mean_"):
            raise RuntimeError("Standardizer is not fitted: call fit(X_train) first")
        if X.shape[1] != self.mean_.shape[0]:
            raise ValueError(f"X has {X.shape[1]} features, the Standardizer was fitted on "
                             f"{self.mean_.shape[0]}")
        out = X.astype(np.float32, copy=True)
        out -= self.mean_.astype(np.float32)
        out *= (1.0 / self.scale_).astype(np.float32)
        return out

    def fit_transform(self, X) -> np.ndarray:
        return self.fit(X).transform(X)


# ----------------------------------------------------------------------------- linear probe

def _softmax_xent(params, X, y, l2, n_classes, matmul_dtype):
    """Objective and gradient of multinomial logistic regression.

    f(W, b) = (1/n) sum_i [ logsumexp(x_i W + b) - (x_i W + b)_{y_i} ] + (l2/2) ||W||_F^2
    df/dW   = X^T (P - Y) / n + l2 W,    df/db = sum_i (P - Y)_i / n,
    with P the softmax probabilities and Y the one-hot labels (y holds class indices 0..K-1).
    The bias is not regularised.  Logits, softmax and sums are float64; the two matrix products
    run in *matmul_dtype* (the dtype of X).
    """
    n, d = X.shape
    rows = np.arange(n)
    W = params[: d * n_classes].reshape(d, n_classes)
    b = params[d * n_classes:]
    logits = (X @ W.astype(matmul_dtype)).astype(np.float64)
    logits += b
    logits -= logits.max(axis=1, keepdims=True)       # log-sum-exp shift: max logit -> 0
    true_logit = logits[rows, y]
    P = np.exp(logits, out=logits)
    Z = P.sum(axis=1)
    loss = float(np.mean(np.log(Z) - true_logit))     # logsumexp - logit_y, per sample
    P /= Z[:, None]
    P[rows, y] -= 1.0                                  # P - onehot
    P /= n
    gW = (X.T @ P.astype(matmul_dtype)).astype(np.float64)
    gW += l2 * W
    gb = P.sum(axis=0)
    f = loss + 0.5 * l2 * float(np.dot(W.ravel(), W.ravel()))
    return f, np.concatenate([gW.ravel(), gb])


class SoftmaxProbe:
    """Multinomial logistic regression fitted to convergence with L-BFGS (scikit-learn style).

    Objective: mean softmax cross-entropy + ``l2``/2 ||W||^2 (bias unregularised), minimised by
    ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` from W = 0, b = 0.  This is
    scikit-learn's ``LogisticRegression(C=1/(n*l2))`` with the multinomial loss.

    Parameters: ``l2``; ``max_iter`` (L-BFGS iterations); ``tol`` (stop when the largest gradient
    component is below ``tol``, or the relative decrease of the objective is below ``ftol``);
    ``standardize`` (fit a :class:`Standardizer` on the training features); ``float32`` (do the
    two matrix products per evaluation in float32 -- the objective, softmax and the L-BFGS state
    stay float64).

    Learned: ``coef_`` (d, K), ``intercept_`` (K,), ``classes_``, ``n_iter_``, ``converged_``,
    ``loss_``, ``standardizer_`` (or None).
    """

    def __init__(self, l2: float = 1e-4, max_iter: int = 1000, tol: float = 1e-5,
                 ftol: float = 1e-10, standardize: bool = True, float32: bool = True):
        self.l2 = l2
        self.max_iter = max_iter
        self.tol = tol
        self.ftol = ftol
        self.standardize = standardize
        self.float32 = float32

    def _prepare(self, X):
        X = _as_2d_features(X)
        if self.standardizer_ is not None:
            return self.standardizer_.transform(X)
        return X.astype(np.float32 if self.float32 else np.float64)

    def fit(self, X, y) -> "SoftmaxProbe":
        from scipy.optimize import minimize

        X = _as_2d_features(X)
        y = _as_labels(y, X.shape[0])
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2}")
        self.classes_, yi = np.unique(y, return_inverse=True)
        K = len(self.classes_)
        if K < 2:
            raise ValueError(f"need at least 2 classes to fit a probe, got {K}")
        self.standardizer_ = Standardizer().fit(X) if self.standardize else None
        dtype = np.float32 if self.float32 else np.float64
        Xs = self._prepare(X).astype(dtype, copy=False)
        n, d = Xs.shape
        x0 = np.zeros(d * K + K)
        res = minimize(_softmax_xent, x0, args=(Xs, yi.astype(np.intp), float(self.l2), K, dtype),
                       jac=True, method="L-BFGS-B",
                       options={"maxiter": int(self.max_iter), "gtol": self.tol,
                                "ftol": self.ftol, "maxcor": 20})
        self.coef_ = res.x[: d * K].reshape(d, K)
        self.intercept_ = res.x[d * K:].copy()
        self.n_iter_ = int(res.nit)
        self.converged_ = bool(res.success)
        self.message_ = str(res.message)
        self.loss_ = float(res.fun)
        return self

    def decision_function(self, X) -> np.ndarray:
        Xs = self._prepare(X)
        return Xs.astype(np.float64) @ self.coef_ + self.intercept_

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def score(self, X, y) -> float:
        X = _as_2d_features(X)
        y = _as_labels(y, X.shape[0])
        return float(np.mean(self.predict(X) == y))


def linear_probe(Xtr, ytr, Xte, yte, l2: float = 1e-4, max_iter: int = 1000,
                 tol: float = 1e-5, standardize: bool = True) -> dict:
    """Linear probe: standardise with training statistics, fit :class:`SoftmaxProbe`, score.

    Returns ``{"test_acc", "train_acc", "n_iter", "converged", "loss"}`` (accuracies in [0, 1];
    ``loss`` is the final training objective).  Test labels never seen in training count as
    errors.
    """
    probe = SoftmaxProbe(l2=l2, max_iter=max_iter, tol=tol, standardize=standardize).fit(Xtr, ytr)
    return {
        "test_acc": probe.score(Xte, yte),
        "train_acc": probe.score(Xtr, ytr),
        "n_iter": probe.n_iter_,
        "converged": probe.converged_,
        "loss": probe.loss_,
    }


def few_label_probe(Xtr, ytr, Xte, yte, per_class: int, draws: int = 5, *,
                    rng: np.random.Generator | int, l2: float = 1e-4,
                    max_iter: int = 1000, tol: float = 1e-5) -> dict:
    """Few-label probes: *draws* stratified draws of *per_class* labelled samples per class.

    The features are standardised with statistics of the *whole* training set (no labels are
    used for that, the encoder is frozen); each draw fits a :func:`linear_probe`-style probe on
    ``per_class * n_classes`` samples and is scored on the full test set.
    Returns ``{"mean", "sd", "accs"}`` (``sd`` with ddof=1; 0 for a single draw).
    """
    if rng is None:
        raise TypeError("few_label_probe needs rng=np.random.default_rng(seed)")
    rng = np.random.default_rng(rng)
    Xtr = _as_2d_features(Xtr, "Xtr")
    ytr = _as_labels(ytr, Xtr.shape[0], "ytr")
    Xte = _as_2d_features(Xte, "Xte")
    yte = _as_labels(yte, Xte.shape[0], "yte")
    if per_class < 1 or draws < 1:
        raise ValueError(f"per_class and draws must be >= 1, got {per_class}, {draws}")
    classes, counts = np.unique(ytr, return_counts=True)
    if counts.min() < per_class:
        c = classes[np.argmin(counts)]
        raise ValueError(f"class {c} has only {counts.min()} training samples, fewer than "
                         f"per_class={per_class}")
    std = Standardizer().fit(Xtr)
    Str, Ste = std.transform(Xtr), std.transform(Xte)
    by_class = [np.flatnonzero(ytr == c) for c in classes]
    accs = []
    for _ in range(draws):
        idx = np.concatenate([rng.choice(ix, size=per_class, replace=False) for ix in by_class])
        probe = SoftmaxProbe(l2=l2, max_iter=max_iter, tol=tol, standardize=False)
        probe.fit(Str[idx], ytr[idx])
        accs.append(probe.score(Ste, yte))
    accs = np.asarray(accs)
    return {"mean": float(accs.mean()), "sd": float(accs.std(ddof=1)) if draws > 1 else 0.0,
            "accs": accs}


# ----------------------------------------------------------------------------- kNN

def knn_accuracy(Xtr, ytr, Xte, yte, k: int = 20, metric: str = "cosine",
                 batch: int = 256) -> float:
    """k-nearest-neighbour classification accuracy (majority vote, unweighted).

    ``metric``: ``"cosine"`` (rows L2-normalised, similarity = dot product) or ``"euclidean"``
    (similarity = minus squared distance).  Ties between classes with equally many votes go to the
    class whose neighbours have the larger summed similarity, then to the smaller label.
    Test samples are processed in blocks of *batch* rows, so memory is O(batch * n_train).
    """
    Xtr = _as_2d_features(Xtr, "Xtr")
    ytr = _as_labels(ytr, Xtr.shape[0], "ytr")
    Xte = _as_2d_features(Xte, "Xte")
    yte = _as_labels(yte, Xte.shape[0], "yte")
    if Xtr.shape[1] != Xte.shape[1]:
        raise ValueError(f"Xtr has {Xtr.shape[1]} features but Xte has {Xte.shape[1]}")
    if not 1 <= k <= Xtr.shape[0]:
        raise ValueError(f"k must be in [1, n_train={Xtr.shape[0]}], got {k}")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    classes, ytr_i = np.unique(ytr, return_inverse=True)
    C = len(classes)
    A = Xtr.astype(np.float32)
    B = Xte.astype(np.float32)
    if metric == "cosine":
        A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
        B = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-12)
    else:
        a2 = np.einsum("ij,ij->i", A, A)
    correct = 0
    for s in range(0, B.shape[0], batch):
        Bb = B[s:s + batch]
        sim = Bb @ A.T
        if metric == "euclidean":
            sim *= 2.0
            sim -= a2
            sim -= np.einsum("ij,ij->i", Bb, Bb)[:, None]
        m = Bb.shape[0]
        if k < A.shape[0]:
            idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        else:
            idx = np.broadcast_to(np.arange(k), (m, k))
        nn_sim = np.take_along_axis(sim, idx, axis=1).astype(np.float64)
        flat = (np.arange(m)[:, None] * C + ytr_i[idx]).ravel()
        votes = np.bincount(flat, minlength=m * C).reshape(m, C)
        simsum = np.bincount(flat, weights=nn_sim.ravel(), minlength=m * C).reshape(m, C)
        tie_key = np.where(votes == votes.max(axis=1, keepdims=True), simsum, -np.inf)
        pred = classes[np.argmax(tie_key, axis=1)]
        correct += int(np.sum(pred == yte[s:s + batch]))
    return correct / B.shape[0]


# ----------------------------------------------------------------------------- representation metrics

def effective_rank(Z) -> float:
    """Effective rank (Roy & Vetterli 2007) of the centred codes: ``exp(H(p))`` with
    ``p = s / sum(s)`` the normalised singular values and H the Shannon entropy (nats).
    Between 1 (one direction) and min(n, d); 0 for constant codes."""
    Z = _as_2d_features(Z, "Z").astype(np.float64)
    Zc = Z - Z.mean(axis=0)
    s = np.linalg.svd(Zc, compute_uv=False)
    total = s.sum()
    if not np.isfinite(total):
        return float("nan")
    if total <= 0 or total < 1e-12 * max(1.0, np.abs(Z).max()):
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def collapse_std(Z, eps: float = 1e-12) -> float:
    """Mean over dimensions of the std (over samples) of the L2-normalised codes ``z/||z||``
    (SimSiam, Chen & He 2021).  About 1/sqrt(d) for codes spread over the sphere, -> 0 when
    all codes collapse onto one direction.  (Non-centred: codes that are all positive, e.g.
    after ReLU, sit somewhat below 1/sqrt(d) even when healthy.)"""
    Z = _as_2d_features(Z, "Z").astype(np.float64)
    U = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), eps)
    return float(U.std(axis=0).mean())


def dead_units(Z, tol: float = 0.0) -> float:
    """Fraction of units (columns) that are never active: ``|z| <= tol`` on every sample."""
    Z = _as_2d_features(Z, "Z")
    if Z.shape[1] == 0:
        return 0.0
    return float(np.mean(np.all(np.abs(Z) <= tol, axis=0)))


# thresholds of representation_report's warnings
COLLAPSE_RATIO = 0.1     # warn if collapse_std < COLLAPSE_RATIO / sqrt(d)
RANK_FRACTION = 0.05     # warn if effective rank < max(RANK_MIN, RANK_FRACTION * min(n, d))
RANK_MIN = 2.0
DEAD_FRACTION = 0.1      # warn if more than this fraction of units is dead


def representation_report(Z, dead_tol: float = 0.0) -> dict:
    """All representation metrics of codes ``Z`` (n, d) plus human-readable ``warnings``.

    Returns ``{"n", "d", "effective_rank", "effective_rank_fraction", "collapse_std",
    "collapse_ref" (=1/sqrt(d)), "dead_fraction", "nonfinite", "warnings": [str]}``.
    Warnings: non-finite values; collapse (std of normalised code < 0.1/sqrt(d)); low rank
    (effective rank < max(2, 5 % of min(n, d))); dead units (> 10 % never active).
    """
    Z = _as_2d_features(Z, "Z")
    n, d = Z.shape
    warnings = []
    finite = np.isfinite(Z)
    nonfinite = int(Z.size - np.count_nonzero(finite))
    if nonfinite:
        warnings.append(f"nonfinite: {nonfinite} of {Z.size} values are NaN or inf "
                        "(metrics computed on finite rows only)")
        Z = Z[finite.all(axis=1)]
    if Z.shape[0] < 2:
        warnings.append(f"samples: only {Z.shape[0]} usable samples")
        return {"n": n, "d": d, "effective_rank": float("nan"), "effective_rank_fraction": float("nan"),
                "collapse_std": float("nan"), "collapse_ref": 1 / math.sqrt(d) if d else float("nan"),
                "dead_fraction": float("nan"), "nonfinite": nonfinite, "warnings": warnings}
    er = effective_rank(Z)
    cs = collapse_std(Z)
    dead = dead_units(Z, dead_tol)
    ref = 1.0 / math.sqrt(d)
    max_rank = min(Z.shape[0], d)
    if cs < COLLAPSE_RATIO * ref:
        warnings.append(f"collapse: std of normalised code {cs:.3g} << 1/sqrt(d)={ref:.3g}")
    if er < max(RANK_MIN, RANK_FRACTION * max_rank):
        warnings.append(f"rank: effective rank {er:.3g} of {d}")
    if dead > DEAD_FRACTION:
        warnings.append(f"dead: {round(dead * d)} of {d} units ({100 * dead:.0f} %) never active")
    return {"n": n, "d": d, "effective_rank": er, "effective_rank_fraction": er / max_rank,
            "collapse_std": cs, "collapse_ref": ref, "dead_fraction": dead,
            "nonfinite": nonfinite, "warnings": warnings}


# ----------------------------------------------------------------------------- pooling

def _adaptive_bins(size: int, grid: int):
    return [(math.floor(i * size / grid), math.ceil((i + 1) * size / grid)) for i in range(grid)]


def pool_features(h_nhwc, grid: int = 2) -> np.ndarray:
    """Adaptive average pool an NHWC block output to ``grid x grid`` and flatten: (N, grid*grid*C).

    Bin i along an axis of length H covers ``floor(i*H/grid) .. ceil((i+1)*H/grid)`` (as torch's
    ``AdaptiveAvgPool2d``), so sizes not divisible by *grid* work (bins then overlap by one).
    The flattened order is (row, column, channel) -- NHWC row-major.  A 2-D input (N, C) from a
    dense block is returned as float32 unchanged.
    """
    h = np.asarray(h_nhwc)
    if h.ndim == 2:
        return h.astype(np.float32, copy=False)
    if h.ndim != 4:
        raise ValueError(f"pool_features expects an NHWC array (N, H, W, C), got shape {h.shape}")
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    N, H, W, C = h.shape
    out = np.empty((N, grid, grid, C), dtype=np.float32)
    for i, (h0, h1) in enumerate(_adaptive_bins(H, grid)):
        for j, (w0, w1) in enumerate(_adaptive_bins(W, grid)):
            out[:, i, j, :] = h[:, h0:h1, w0:w1, :].mean(axis=(1, 2), dtype=np.float64)
    return out.reshape(N, grid * grid * C)


def gap(h) -> np.ndarray:
    """Global average pool of an NHWC block output: (N, H, W, C) -> (N, C) float32.
    A 2-D input (N, C) is returned unchanged (as float32)."""
    h = np.asarray(h)
    if h.ndim == 2:
        return h.astype(np.float32, copy=False)
    if h.ndim != 4:
        raise ValueError(f"gap expects an NHWC array (N, H, W, C), got shape {h.shape}")
    return h.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)
