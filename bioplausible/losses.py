"""Losses with explicit, hand-derived gradients (numpy only, no autograd).

Every loss is a plain function that returns ``(loss, *grads)``:

* ``loss`` is a Python ``float`` (the batch mean unless the docstring says otherwise);
* each gradient has the shape of the input it belongs to and the floating dtype of the inputs
  (float32 in -> float32 out, float64 in -> float64 out; integer inputs are promoted to float64);
* gradients are returned in the order of the differentiable arguments, and only for arguments
  that the loss is a function of *in the method's own sense*: the targets of SimSiam/BYOL are
  constants (stop-gradient), so those losses return the prediction's gradient only.

Embeddings are 2-D arrays ``(batch, dim)``.  Wrong shapes raise :class:`ShapeError` (a
``ValueError``) with a message that states the expected shapes.

Where a loss normalises embeddings (``info_nce``, ``supcon``, the cosine losses) the norm is
guarded as ``h = z / max(||z||, eps)`` (the convention of ``torch.nn.functional.normalize``): an
all-zero embedding gives ``h = 0`` and a finite gradient, never NaN.  The returned gradient is
the exact gradient of this guarded function.

Overview (``LOSSES`` maps these names to the functions):

============================  ===============================================  ====================
name                          paper                                            returns
============================  ===============================================  ====================
``cross_entropy``             --                                               loss, dlogits
``info_nce``                  Chen et al. 2020 (SimCLR, NT-Xent)               loss, dz1, dz2
``clapp_hinge``               Illing, Ventura, Bellec & Gerstner 2021 (CLAPP)  loss, dz, dc, dW
``clapp_hinge_multi``         idem, K negatives per anchor                     loss, dz_pos, dz_negs, dc, dW
``contrastive_margin``        Hadsell, Chopra & LeCun 2006                     loss, dz1, dz2
``triplet``                   Schroff, Kalenichenko & Philbin 2015 (FaceNet)   loss, da, dp, dn
``n_pair``                    Sohn 2016                                        loss, da, dp
``supcon``                    Khosla et al. 2020 (L^sup_out)                   loss, dz
``vicreg``                    Bardes, Ponce & LeCun 2022                       loss, dz1, dz2
``simsiam_cosine``            Chen & He 2021 (SimSiam)                         loss, dp
``byol_l2``                   Grill et al. 2020 (BYOL)                         loss, dp
``simsiam_l2``                Tian, Chen & Ganguli 2021 (eigen-dynamics)       loss, dp
============================  ===============================================  ====================

``accuracy(logits, y)`` is a metric (no gradient) and is not in ``LOSSES``.
"""
from __future__ import annotations

import numpy as np

from bioplausible.layers.base import ShapeError

__all__ = [
    "LOSSES", "get_loss", "accuracy", "cross_entropy", "info_nce", "clapp_hinge",
    "clapp_hinge_multi", "contrastive_margin", "triplet", "n_pair", "supcon", "vicreg",
    "covariance_penalty",
    "simsiam_cosine", "byol_l2", "simsiam_l2", "NORM_EPS",
]

#: Guard of the L2 normalisation: ``z / max(||z||, NORM_EPS)`` (as torch's F.normalize uses).
NORM_EPS = 1e-12


# --------------------------------------------------------------------------------------------
# helpers: validation, dtype, normalisation, log-softmax
# --------------------------------------------------------------------------------------------

def _float_dtype(*arrays) -> np.dtype:
    """The floating dtype the computation runs in: float32 stays float32, the rest -> float64."""
    dt = np.result_type(*[np.asarray(a).dtype for a in arrays])
    if dt == np.float32 or dt == np.float16:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _as_2d(x, name: str, dtype) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ShapeError(f"{name} must be a 2-D array (batch, dim); got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ShapeError(f"{name} must have at least one sample and one feature; got shape {x.shape}")
    return x.astype(dtype, copy=False)


def _check_same(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ShapeError(f"{na} and {nb} must have the same shape (batch, dim); "
                         f"got {na}{a.shape} and {nb}{b.shape}")


def _l2_normalize(z: np.ndarray, eps: float):
    """Return (h, norm_clamped, small) with h = z / max(||z||, eps) row-wise."""
    norm = np.sqrt(np.sum(z * z, axis=1, keepdims=True))
    small = norm < eps
    nc = np.where(small, np.asarray(eps, dtype=z.dtype), norm)
    return z / nc, nc, small


def _l2_normalize_backward(dh: np.ndarray, h: np.ndarray, nc: np.ndarray, small: np.ndarray):
    """Gradient through h = z / max(||z||, eps).

    Where ||z|| >= eps: dz = (dh - h (h.dh)) / ||z||  (projection onto the tangent plane).
    Where ||z|| <  eps: h = z / eps is linear, dz = dh / eps.
    """
    proj = dh - h * np.sum(h * dh, axis=1, keepdims=True)
    return np.where(small, dh, proj) / nc


def _log_softmax_rows(s: np.ndarray):
    """Stable row-wise log-softmax; entries equal to -inf (masked) get probability 0."""
    m = np.max(s, axis=1, keepdims=True)
    e = np.exp(s - m)
    tot = np.sum(e, axis=1, keepdims=True)
    lse = m + np.log(tot)
    return s - lse, e / tot


# --------------------------------------------------------------------------------------------
# supervised
# --------------------------------------------------------------------------------------------

def _check_labels(y, n: int, n_classes: int | None, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise ShapeError(f"{name} must have shape ({n},) (one integer label per sample); got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class labels; got dtype {y.dtype}")
    if n_classes is not None and n and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}); got min {y.min()}, max {y.max()}")
    return y.astype(np.intp, copy=False)


def cross_entropy(logits, y):
    """Softmax cross-entropy, mean over the batch.

    L = (1/N) sum_n [ log sum_k exp(l_nk) - l_{n,y_n} ]      (stable: the row max is subtracted)

    dL/dl_nk = (softmax(l_n)_k - [k == y_n]) / N

    Parameters
    ----------
    logits : (N, K) float array
    y : (N,) integer labels in [0, K)

    Returns
    -------
    (loss, dlogits) with dlogits of shape (N, K).
    """
    dt = _float_dtype(logits)
    logits = _as_2d(logits, "logits", dt)
    n, k = logits.shape
    y = _check_labels(y, n, k)
    logp, p = _log_softmax_rows(logits)
    rows = np.arange(n)
    loss = -float(np.mean(logp[rows, y]))
    d = p.copy()
    d[rows, y] -= 1.0
    d /= n
    return loss, d.astype(dt, copy=False)


def accuracy(logits, y) -> float:
    """Fraction of rows whose arg-max logit equals the label (ties -> the lowest index)."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ShapeError(f"logits must be a 2-D array (batch, classes); got shape {logits.shape}")
    y = _check_labels(y, logits.shape[0], logits.shape[1])
    if logits.shape[0] == 0:
        raise ValueError("accuracy of an empty batch is undefined")
    return float(np.mean(np.argmax(logits, axis=1) == y))


# --------------------------------------------------------------------------------------------
# contrastive with negatives from the batch
# --------------------------------------------------------------------------------------------

def info_nce(z1, z2, temperature: float = 0.1, normalize: bool = True, eps: float = NORM_EPS):
    """SimCLR's NT-Xent loss over the 2N views (Chen, Kornblith, Norouzi & Hinton 2020, eq. 1).

    Stack the views, h = [z1; z2] (2N rows), with h_i <- h_i / max(||h_i||, eps) when
    ``normalize`` (cosine similarity), and s_ik = h_i . h_k / tau.  The positive of row i is its
    other view p(i) = (i + N) mod 2N; the other 2N - 2 rows are its negatives:

        l_i = -s_{i,p(i)} + log sum_{k != i} exp(s_ik)
        L   = (1 / 2N) sum_i l_i

    Gradient: with P_ik the softmax of row i over k != i (P_ii = 0),
        dL/ds_ik = (P_ik - [k == p(i)]) / 2N,   dL/dh = (G + G^T) h / tau,
    then through the normalisation (see ``_l2_normalize_backward``).

    Parameters
    ----------
    z1, z2 : (N, D) arrays, the two views; row n of z1 and row n of z2 are a positive pair.
        N >= 2 (with N = 1 there is no negative and the loss is identically 0).
    temperature : tau > 0.
    normalize : use cosine similarity (True, SimCLR) or raw dot products (False).

    Returns
    -------
    (loss, dz1, dz2).
    """
    dt = _float_dtype(z1, z2)
    z1 = _as_2d(z1, "z1", dt)
    z2 = _as_2d(z2, "z2", dt)
    _check_same(z1, z2, "z1", "z2")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    n = z1.shape[0]
    if n < 2:
        raise ValueError("info_nce needs a batch of at least 2 pairs (N >= 2): with N = 1 a view "
                         f"has no negative; got z1{z1.shape}, z2{z2.shape}")
    z = np.concatenate([z1, z2], axis=0)
    if normalize:
        h, nc, small = _l2_normalize(z, eps)
    else:
        h = z
    m = 2 * n
    s = (h @ h.T) / dt.type(temperature)
    np.fill_diagonal(s, -np.inf)
    logp, p = _log_softmax_rows(s)
    pos = (np.arange(m) + n) % m
    rows = np.arange(m)
    loss = -float(np.mean(logp[rows, pos]))
    g = p
    g[rows, pos] -= 1.0
    g /= m  # diagonal of p is exactly 0, so g_ii = 0
    dh = ((g + g.T) @ h) / dt.type(temperature)
    dz = _l2_normalize_backward(dh, h, nc, small) if normalize else dh
    dz = dz.astype(dt, copy=False)
    return loss, dz[:n], dz[n:]


def supcon(z, labels, temperature: float = 0.1, eps: float = NORM_EPS):
    """Supervised contrastive loss L^sup_out (Khosla et al. 2020, eq. 2).

    All views are rows of ``z`` (stack the views yourself; label each row with its class).
    With h_i = z_i / max(||z_i||, eps), s_ia = h_i . h_a / tau, A(i) = all rows but i and
    P(i) = {p in A(i): label_p = label_i}:

        l_i = -(1/|P(i)|) sum_{p in P(i)} [ s_ip - log sum_{a in A(i)} exp(s_ia) ]
        L   = mean of l_i over the anchors with |P(i)| > 0

    The paper sums over anchors; we take the mean over anchors that have a positive (anchors
    without a positive are excluded, as the brief and common implementations do), and we do not
    multiply by tau / base_tau (a factor found in the authors' code, not in the equation).
    With labels = sample index, repeated for each view, this is SimCLR's NT-Xent (``info_nce``).

    Gradient: dL/ds_ik = (P_ik - [k in P(i)] / |P(i)|) / M for valid anchors (M of them),
    0 for the others; then as in ``info_nce``.

    Parameters
    ----------
    z : (M, D) embeddings; labels : (M,) integer labels.

    Returns
    -------
    (loss, dz).  Raises ValueError if no anchor has a positive.
    """
    dt = _float_dtype(z)
    z = _as_2d(z, "z", dt)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    m = z.shape[0]
    labels = _check_labels(labels, m, None, "labels")
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    npos = same.sum(axis=1)
    valid = npos > 0
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise ValueError("supcon: no anchor has a positive (every label occurs once); "
                         f"labels has shape {labels.shape}")
    h, nc, small = _l2_normalize(z, eps)
    s = (h @ h.T) / dt.type(temperature)
    np.fill_diagonal(s, -np.inf)
    logp, p = _log_softmax_rows(s)
    w = np.zeros_like(s)
    w[valid] = same[valid] / npos[valid, None]
    # the diagonal of logp is -inf and is never a positive: where() avoids 0 * inf = nan
    per_anchor = -np.sum(w * np.where(same, logp, 0.0), axis=1)
    loss = float(np.sum(per_anchor[valid]) / n_valid)
    g = (p - w) * valid[:, None]
    g /= n_valid
    dh = ((g + g.T) @ h) / dt.type(temperature)
    dz = _l2_normalize_backward(dh, h, nc, small)
    return loss, dz.astype(dt, copy=False)


def n_pair(anchor, pos, l2_reg: float = 0.0):
    """Multi-class N-pair loss (Sohn 2016, eq. 6 with in-batch positives as negatives).

    With dot products f_i . f+_j between anchors a_i and positives p_j:

        L = (1/N) sum_i log(1 + sum_{j != i} exp(a_i . p_j - a_i . p_i))
          + l2_reg * (1/N) sum_i (||a_i||^2 + ||p_i||^2)

    The first term is the softmax cross-entropy of the logits S = A P^T with targets on the
    diagonal; the second is the embedding-norm regulariser of the paper (off by default).

    Gradient: G = (softmax_rows(S) - I) / N;  dA = G P + 2 l2_reg A / N;  dP = G^T A + 2 l2_reg P / N.

    Parameters
    ----------
    anchor, pos : (N, D); N = 1 is allowed (the loss is then log 1 = 0 plus the regulariser).

    Returns
    -------
    (loss, danchor, dpos).
    """
    dt = _float_dtype(anchor, pos)
    a = _as_2d(anchor, "anchor", dt)
    p = _as_2d(pos, "pos", dt)
    _check_same(a, p, "anchor", "pos")
    n = a.shape[0]
    s = a @ p.T
    logp, prob = _log_softmax_rows(s)
    rows = np.arange(n)
    loss = -float(np.mean(logp[rows, rows]))
    g = prob
    g[rows, rows] -= 1.0
    g /= n
    da = g @ p
    dp = g.T @ a
    if l2_reg:
        loss += float(l2_reg * (np.sum(a * a) + np.sum(p * p)) / n)
        da = da + (2.0 * l2_reg / n) * a
        dp = dp + (2.0 * l2_reg / n) * p
    return loss, da.astype(dt, copy=False), dp.astype(dt, copy=False)


# --------------------------------------------------------------------------------------------
# CLAPP
# --------------------------------------------------------------------------------------------

def _check_clapp(z, c, W, dt):
    z = _as_2d(z, "z", dt)
    c = _as_2d(c, "c", dt)
    W = np.asarray(W)
    if W.ndim != 2 or z.shape[0] != c.shape[0] or W.shape != (z.shape[1], c.shape[1]):
        raise ShapeError("clapp: expected z (N, Dz), c (N, Dc), W (Dz, Dc); got "
                         f"z{z.shape}, c{c.shape}, W{W.shape}")
    return z, c, W.astype(dt, copy=False)


def clapp_hinge(z, c, W, y):
    """CLAPP's layer-local hinge loss (Illing, Ventura, Bellec & Gerstner, NeurIPS 2021, eq. 2-3).

    The score of sample n compares a (future / other-view) activity z_n with the prediction
    W c_n made from the context c_n:

        u_n = z_n^T W c_n,      L = (1/N) sum_n max(0, 1 - y_n u_n),   y_n = +1 (positive
        pair, "same") or -1 (negative pair, "other").

    Gradients, with the broadcast gate gamma_n = y_n H(1 - y_n u_n) (H(x) = 1 if x > 0 else 0,
    the subgradient 0 is used at the kink):

        dL/dz_n = -(gamma_n / N) W c_n      dL/dc_n = -(gamma_n / N) W^T z_n
        dL/dW   = -(1/N) sum_n gamma_n z_n c_n^T

    The dW term is the local, three-factor form used by the CLAPP rule: a broadcast factor
    gamma_n times post-synaptic z_n times pre-synaptic c_n.

    Parameters
    ----------
    z : (N, Dz); c : (N, Dc); W : (Dz, Dc); y : scalar or (N,) array of +1 / -1.

    Returns
    -------
    (loss, dz, dc, dW).
    """
    dt = _float_dtype(z, c, W)
    z, c, W = _check_clapp(z, c, W, dt)
    n = z.shape[0]
    y = np.asarray(y)
    if y.ndim == 0:
        y = np.full(n, y.item())
    if y.shape != (n,):
        raise ShapeError(f"y must be a scalar or have shape ({n},); got {y.shape}")
    if not np.all(np.abs(y) == 1):
        raise ValueError("y must hold +1 (positive pair) or -1 (negative pair)")
    y = y.astype(dt)
    pred = c @ W.T                      # (N, Dz): W c_n
    u = np.sum(z * pred, axis=1)
    margin = 1.0 - y * u
    loss = float(np.mean(np.maximum(margin, 0.0)))
    gate = (y * (margin > 0)).astype(dt) / dt.type(n)
    dz = -gate[:, None] * pred
    dc = -gate[:, None] * (z @ W)
    dW = -(z * gate[:, None]).T @ c
    return loss, dz.astype(dt, copy=False), dc.astype(dt, copy=False), dW.astype(dt, copy=False)


def clapp_hinge_multi(z_pos, z_negs, c, W):
    """CLAPP hinge with one positive and K negatives per anchor (Illing et al. 2021).

    With u+_n = z_pos_n^T W c_n and u-_nk = z_negs_nk^T W c_n:

        L = (1/N) sum_n [ max(0, 1 - u+_n) + (1/K) sum_k max(0, 1 + u-_nk) ]

    Gradients (H as in ``clapp_hinge``), a+_n = H(1 - u+_n), a-_nk = H(1 + u-_nk):

        dL/dz_pos_n   = -(a+_n / N) W c_n
        dL/dz_negs_nk = (a-_nk / (N K)) W c_n
        dL/dc_n       = (1/N) W^T ( -a+_n z_pos_n + (1/K) sum_k a-_nk z_negs_nk )
        dL/dW         = sum_n (dL/du+_n) z_pos_n c_n^T + sum_nk (dL/du-_nk) z_negs_nk c_n^T

    Parameters
    ----------
    z_pos : (N, Dz); z_negs : (N, K, Dz); c : (N, Dc); W : (Dz, Dc).

    Returns
    -------
    (loss, dz_pos, dz_negs, dc, dW).
    """
    dt = _float_dtype(z_pos, z_negs, c, W)
    z_pos, c, W = _check_clapp(z_pos, c, W, dt)
    zn = np.asarray(z_negs)
    n, dz_dim = z_pos.shape
    if zn.ndim != 3 or zn.shape[0] != n or zn.shape[2] != dz_dim or zn.shape[1] == 0:
        raise ShapeError(f"z_negs must have shape (N, K, Dz) = ({n}, K>=1, {dz_dim}); got {zn.shape}")
    zn = zn.astype(dt, copy=False)
    k = zn.shape[1]
    pred = c @ W.T                                   # (N, Dz)
    u_pos = np.sum(z_pos * pred, axis=1)             # (N,)
    u_neg = np.einsum("nkd,nd->nk", zn, pred)        # (N, K)
    m_pos = 1.0 - u_pos
    m_neg = 1.0 + u_neg
    loss = float(np.mean(np.maximum(m_pos, 0.0)) + np.mean(np.maximum(m_neg, 0.0)))
    du_pos = -(m_pos > 0).astype(dt) / dt.type(n)        # dL/du+
    du_neg = (m_neg > 0).astype(dt) / dt.type(n * k)      # dL/du-
    dz_pos = du_pos[:, None] * pred
    dz_negs = du_neg[:, :, None] * pred[:, None, :]
    zeff = du_pos[:, None] * z_pos + np.einsum("nk,nkd->nd", du_neg, zn)   # (N, Dz)
    dc = zeff @ W
    dW = zeff.T @ c
    return (loss, dz_pos.astype(dt, copy=False), dz_negs.astype(dt, copy=False),
            dc.astype(dt, copy=False), dW.astype(dt, copy=False))


# --------------------------------------------------------------------------------------------
# metric learning: pairs and triplets
# --------------------------------------------------------------------------------------------

def contrastive_margin(z1, z2, same, margin: float = 1.0, eps: float = NORM_EPS):
    """Contrastive (margin) loss of Hadsell, Chopra & LeCun (CVPR 2006, eq. 4), batch mean.

    With d_n = ||z1_n - z2_n|| (Euclidean) and Y_n = 0 for a similar pair, 1 for a dissimilar one
    (here ``same[n] = True`` means similar):

        L = (1/N) sum_n [ same_n * 1/2 d_n^2 + (1 - same_n) * 1/2 max(0, m - d_n)^2 ]

    (the paper's 1/2 factors are kept).  Gradient w.r.t. z1_n (dz2 = -dz1):
        same:  (z1_n - z2_n) / N
        other: -(max(0, m - d_n) / d_n) (z1_n - z2_n) / N     (0 when d_n < eps: no direction)

    Parameters
    ----------
    z1, z2 : (N, D); same : (N,) bool; margin : m > 0.

    Returns
    -------
    (loss, dz1, dz2).
    """
    dt = _float_dtype(z1, z2)
    z1 = _as_2d(z1, "z1", dt)
    z2 = _as_2d(z2, "z2", dt)
    _check_same(z1, z2, "z1", "z2")
    n = z1.shape[0]
    same = np.asarray(same)
    if same.shape != (n,):
        raise ShapeError(f"same must have shape ({n},) (one bool per pair); got {same.shape}")
    same = same.astype(bool)
    diff = z1 - z2
    d = np.sqrt(np.sum(diff * diff, axis=1))
    hinge = np.maximum(margin - d, 0.0)
    per = np.where(same, 0.5 * d * d, 0.5 * hinge * hinge)
    loss = float(np.mean(per))
    coef_other = np.where(d >= eps, -hinge / np.maximum(d, eps), 0.0)
    coef = np.where(same, 1.0, coef_other).astype(dt) / dt.type(n)
    dz1 = coef[:, None] * diff
    return loss, dz1.astype(dt, copy=False), (-dz1).astype(dt, copy=False)


def triplet(anchor, pos, neg, margin: float = 1.0):
    """Triplet loss of FaceNet (Schroff, Kalenichenko & Philbin, CVPR 2015, eq. 3), batch mean.

        L = (1/N) sum_n max(0, ||a_n - p_n||^2 - ||a_n - n_n||^2 + margin)

    (squared Euclidean distances; FaceNet sums over triplets and puts the embeddings on the unit
    sphere -- normalise upstream if you want that).  With the active set A_n = [hinge > 0]:

        dL/da_n = (2 A_n / N) (n_n - p_n)    dL/dp_n = -(2 A_n / N) (a_n - p_n)
        dL/dn_n = (2 A_n / N) (a_n - n_n)

    Returns
    -------
    (loss, danchor, dpos, dneg).
    """
    dt = _float_dtype(anchor, pos, neg)
    a = _as_2d(anchor, "anchor", dt)
    p = _as_2d(pos, "pos", dt)
    q = _as_2d(neg, "neg", dt)
    if not (a.shape == p.shape == q.shape):
        raise ShapeError("anchor, pos and neg must all have the same shape (batch, dim); got "
                         f"anchor{a.shape}, pos{p.shape}, neg{q.shape}")
    n = a.shape[0]
    dap = a - p
    daq = a - q
    h = np.sum(dap * dap, axis=1) - np.sum(daq * daq, axis=1) + margin
    loss = float(np.mean(np.maximum(h, 0.0)))
    act = (h > 0).astype(dt)[:, None] * dt.type(2.0 / n)
    da = act * (q - p)
    dp = -act * dap
    dq = act * daq
    return loss, da.astype(dt, copy=False), dp.astype(dt, copy=False), dq.astype(dt, copy=False)


# --------------------------------------------------------------------------------------------
# non-contrastive
# --------------------------------------------------------------------------------------------

def covariance_penalty(z, nu: float = 1.0):
    """ν · c(Z), VICReg's covariance term on its own (Bardes, Ponce & LeCun 2022, eq. 4):

        c(Z) = 1/d sum_{i != j} C_ij^2,   C = 1/(n-1) sum_i (z_i - zbar)(z_i - zbar)^T,
        dc/dZ = (4 / (d (n - 1))) X offdiag(C),   X = Z - zbar

    (the centring adds nothing to the gradient: X's columns sum to zero).  ``z`` (n, d), n >= 2.
    Returns (loss, dz) in ``z``'s dtype.
    """
    n, d = z.shape
    x = z - z.mean(axis=0, keepdims=True)
    cov = (x.T @ x) / (n - 1)
    off = cov - np.diag(np.diag(cov))
    return float(nu * np.sum(off * off) / d), (4.0 * nu / (d * (n - 1))) * (x @ off)


def vicreg(z1, z2, lam: float = 25.0, mu: float = 25.0, nu: float = 1.0, gamma: float = 1.0,
           eps: float = 1e-4):
    """VICReg (Bardes, Ponce & LeCun, ICLR 2022, eq. 1-6 and Algorithm 1).

    For Z (n x d) with column variance Var_j (unbiased, 1/(n-1)) and covariance
    C(Z) = 1/(n-1) sum_i (z_i - zbar)(z_i - zbar)^T:

        s(Z, Z') = 1/(n d) sum_i ||z_i - z'_i||^2                  invariance (mse_loss)
        v(Z)     = 1/d sum_j max(0, gamma - sqrt(Var_j + eps))     variance hinge
        c(Z)     = 1/d sum_{i != j} C_ij^2                          covariance
        L        = lam s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')]

    Normalisations: the invariance term is averaged over samples *and* dimensions as in the
    paper's Algorithm 1 (``F.mse_loss``), which is what lam = 25 was tuned for (eq. 5 prints
    1/n sum ||.||^2, i.e. d times larger).  The variance terms are not halved, as in eq. 6 and
    Algorithm 1 (the authors' repository halves them; pass mu = 12.5 to match it).

    Gradients (per view; S_j = sqrt(Var_j + eps), X = Z - zbar):
        ds/dZ  = 2 (Z - Z') / (n d)
        dv/dZ  = -(1/d) [gamma > S_j] X_ij / ((n - 1) S_j)
        dc/dZ  = (4 / (d (n - 1))) X offdiag(C)

    Parameters
    ----------
    z1, z2 : (n, d) with n >= 2 (variance and covariance need two samples).

    Returns
    -------
    (loss, dz1, dz2).
    """
    dt = _float_dtype(z1, z2)
    z1 = _as_2d(z1, "z1", dt)
    z2 = _as_2d(z2, "z2", dt)
    _check_same(z1, z2, "z1", "z2")
    n, d = z1.shape
    if n < 2:
        raise ValueError(f"vicreg needs a batch of at least 2 samples (variance and covariance "
                         f"use 1/(n-1)); got z1{z1.shape}, z2{z2.shape}")
    diff = z1 - z2
    loss_inv = np.sum(diff * diff) / (n * d)
    loss = lam * loss_inv
    g1 = (2.0 * lam / (n * d)) * diff
    grads = [g1, -g1]
    for i, z in enumerate((z1, z2)):
        x = z - z.mean(axis=0, keepdims=True)
        var = np.sum(x * x, axis=0) / (n - 1)
        std = np.sqrt(var + eps)
        act = gamma - std > 0
        loss_var = np.sum(np.maximum(gamma - std, 0.0)) / d
        loss_cov, dcov = covariance_penalty(z, nu)
        loss = loss + mu * loss_var + loss_cov
        dvar = -(mu / d) * (act / ((n - 1) * std))[None, :] * x
        dx = dvar + dcov
        # backward through the centring x = z - mean(z): subtract the column mean of dx
        grads[i] = grads[i] + dx - dx.mean(axis=0, keepdims=True)
    return float(loss), grads[0].astype(dt, copy=False), grads[1].astype(dt, copy=False)


def _pred_target(p, z_target):
    dt = _float_dtype(p, z_target)
    p = _as_2d(p, "p", dt)
    z = _as_2d(z_target, "z_target", dt)
    _check_same(p, z, "p", "z_target")
    return p, z, dt


def simsiam_cosine(p, z_target, eps: float = NORM_EPS):
    """SimSiam's negative cosine similarity with stop-gradient (Chen & He, CVPR 2021, eq. 1-2).

        D(p, z) = -(1/N) sum_n  p_n . z_n / (||p_n|| ||z_n||)

    ``z_target`` is a constant (stop-gradient): only dL/dp is returned,
        dL/dp_n = -(1/N) (zh_n - ph_n (ph_n . zh_n)) / ||p_n||,   ph, zh the unit vectors.
    The symmetric SimSiam loss is 1/2 D(p1, z2) + 1/2 D(p2, z1): call this twice.
    Norms are guarded by ``max(||.||, eps)``.

    Returns
    -------
    (loss, dp).
    """
    p, z, dt = _pred_target(p, z_target)
    n = p.shape[0]
    ph, nc, small = _l2_normalize(p, eps)
    zh = _l2_normalize(z, eps)[0]
    loss = -float(np.mean(np.sum(ph * zh, axis=1)))
    dp = _l2_normalize_backward(-zh / dt.type(n), ph, nc, small)
    return loss, dp.astype(dt, copy=False)


def byol_l2(p, z_target, eps: float = NORM_EPS):
    """BYOL's normalised L2 loss with stop-gradient (Grill et al., NeurIPS 2020, eq. 2).

        L = (1/N) sum_n || ph_n - zh_n ||^2 = (1/N) sum_n (2 - 2 cos(p_n, z_n))   (for nonzero rows)

    ``z_target`` (the target network's projection) is a constant: only dL/dp is returned,
        dL/dp_n = -(2/N) (zh_n - ph_n (ph_n . zh_n)) / ||p_n||.

    Returns
    -------
    (loss, dp).
    """
    p, z, dt = _pred_target(p, z_target)
    n = p.shape[0]
    ph, nc, small = _l2_normalize(p, eps)
    zh = _l2_normalize(z, eps)[0]
    diff = ph - zh
    loss = float(np.mean(np.sum(diff * diff, axis=1)))
    dp = _l2_normalize_backward((2.0 / n) * diff, ph, nc, small)
    return loss, dp.astype(dt, copy=False)


def simsiam_l2(p, z_target):
    """Unnormalised SimSiam/BYOL-style L2 loss with stop-gradient, batch mean.

        L = (1/N) sum_n 1/2 ||p_n - z_n||^2,        dL/dp_n = (p_n - z_n) / N

    This is the loss of the eigenvalue-dynamics analysis of non-contrastive learning
    (Tian, Chen & Ganguli, ICML 2021, "Understanding self-supervised learning dynamics without
    contrastive pairs"); ``z_target`` is a constant (stop-gradient).

    Returns
    -------
    (loss, dp).
    """
    p, z, dt = _pred_target(p, z_target)
    n = p.shape[0]
    diff = p - z
    loss = float(0.5 * np.sum(diff * diff) / n)
    return loss, (diff / dt.type(n)).astype(dt, copy=False)


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

LOSSES = {
    "cross_entropy": cross_entropy,
    "info_nce": info_nce,
    "clapp_hinge": clapp_hinge,
    "clapp_hinge_multi": clapp_hinge_multi,
    "contrastive_margin": contrastive_margin,
    "triplet": triplet,
    "n_pair": n_pair,
    "supcon": supcon,
    "vicreg": vicreg,
    "simsiam_cosine": simsiam_cosine,
    "byol_l2": byol_l2,
    "simsiam_l2": simsiam_l2,
}


def get_loss(name: str):
    """Look a loss up by name; an unknown name raises KeyError listing the known ones."""
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}") from None
