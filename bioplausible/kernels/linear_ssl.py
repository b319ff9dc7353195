"""Linear non-contrastive networks (SimSiam and PhiNet) trained by gradient descent / SGD.

Data model (Tian, Chen & Ganguli 2021): x₀ ~ N(0, I_d); two augmented views x₁, x₂ = x₀ + σ ε,
ε ~ N(0, I_d) independent.  Networks are square linear maps (d × d):

* SimSiam:  online  h = W_h W_f x₁  (W_h is the predictor, called W_p in Tian et al.),
            target  SG(W_f x₂);
            L = ½ E‖W_h W_f x₁ − SG(W_f x₂)‖²
* PhiNet:   L = ½ E‖W_h W_f x₁ − SG(W_f x₂)‖² + λ/2 E‖W_g W_h W_f x₁ − SG(W_f x₀)‖²
            (W_h: CA3-like predictor, W_g: CA1-like second predictor, compared with the clean x₀)

With a = 1 + σ², F = W_f W_fᵀ, M₁ = a W_h − I, M₂ = a W_g W_h − I the expected gradients are
(x₁x₁ᵀ averages to a·I, x₁x₂ᵀ and x₁x₀ᵀ to I)::

    ∂L/∂W_h = M₁ F + λ W_gᵀ M₂ F
    ∂L/∂W_g = λ M₂ F W_hᵀ
    ∂L/∂W_f = (W_hᵀ M₁ + λ (W_g W_h)ᵀ M₂) W_f

(λ = 0 and no W_g for SimSiam).  Weight decay ρ adds ρW to every gradient.  ``gd_kernel`` takes
steps W ← W − η(∂L/∂W + ρW) with the *expected* gradient (η → 0 is the gradient flow whose
eigenvalue reduction is in ``bioplausible.dynamics``); ``sgd_kernel`` uses minibatch gradients of
fresh samples, either of the L2 loss above or of the cosine loss
ℓ = −⟨u, v⟩ / (‖u‖‖v‖) (u the online output, v the stop-gradient target; per term).

Kernels are float64 (the theory comparisons need it), import only numba and numpy, and record
snapshots of (W_f, W_h, W_g) every ``record_every`` steps (row 0 = initial weights).  ``model``:
0 = SimSiam, 1 = PhiNet; ``loss``: 0 = L2, 1 = cosine.
"""
from __future__ import annotations

import numpy as np

from ._config import jit

MODELS = {"simsiam": 0, "phinet": 1}
BLOWUP = 1e8   # |w| beyond this counts as divergence
LOSSES = {"l2": 0, "cosine": 1}


@jit
def expected_grads(model, wf, wh, wg, a, lam, gwf, gwh, gwg):  # pragma: no cover - compiled
    """Expected gradients of the L2 loss (formulas in the module docstring), written into g*."""
    d = wf.shape[0]
    eye = np.eye(d)
    f = wf @ wf.T
    m1 = a * wh - eye
    gwh[:, :] = m1 @ f
    gwf[:, :] = (wh.T @ m1) @ wf
    if model == 1:
        gh = wg @ wh
        m2 = a * gh - eye
        m2f = m2 @ f
        gwh += lam * (wg.T @ m2f)
        gwg[:, :] = lam * (m2f @ wh.T)
        gwf += lam * ((gh.T @ m2) @ wf)
    else:
        gwg[:, :] = 0.0


@jit
def gd_kernel(model, wf, wh, wg, a, lam, rho, lr, n_steps, record_every,
              rec_wf, rec_wh, rec_wg):  # pragma: no cover - compiled
    """Gradient descent on the expected loss (in place on wf, wh, wg); records snapshots.

    Returns the number of steps taken (stops early if a weight exceeds BLOWUP or is NaN)."""
    gwf = np.zeros_like(wf)
    gwh = np.zeros_like(wh)
    gwg = np.zeros_like(wg)
    r = 0
    rec_wf[0] = wf
    rec_wh[0] = wh
    rec_wg[0] = wg
    for step in range(1, n_steps + 1):
        expected_grads(model, wf, wh, wg, a, lam, gwf, gwh, gwg)
        wf -= lr * (gwf + rho * wf)
        wh -= lr * (gwh + rho * wh)
        if model == 1:
            wg -= lr * (gwg + rho * wg)
        if not (np.abs(wf).max() < BLOWUP and np.abs(wh).max() < BLOWUP
                and np.abs(wg).max() < BLOWUP):
            return step      # diverged (or NaN): stop, later snapshots stay NaN
        if step % record_every == 0:
            r = step // record_every
            rec_wf[r] = wf
            rec_wh[r] = wh
            rec_wg[r] = wg
    return n_steps


@jit
def _output_error(loss, out, tgt, err):  # pragma: no cover - compiled
    """Per-row ∂ℓ/∂out: L2 → out − tgt; cosine → −(v̂ − (û·v̂) û)/‖u‖ (zero for a zero row)."""
    if loss == 0:
        err[:, :] = out - tgt
        return
    n, d = out.shape
    for b in range(n):
        nu = 0.0
        nv = 0.0
        uv = 0.0
        for k in range(d):
            nu += out[b, k] * out[b, k]
            nv += tgt[b, k] * tgt[b, k]
            uv += out[b, k] * tgt[b, k]
        nu = np.sqrt(nu)
        nv = np.sqrt(nv)
        if nu == 0.0 or nv == 0.0:
            for k in range(d):
                err[b, k] = 0.0
            continue
        for k in range(d):
            err[b, k] = -(tgt[b, k] / (nu * nv) - uv * out[b, k] / (nu * nu * nu * nv))


@jit
def minibatch_grads(model, loss, wf, wh, wg, x0, x1, x2, lam, gwf, gwh, gwg):  # pragma: no cover
    """Minibatch gradients (mean over rows of x0, x1, x2; shape (B, d)) written into g*."""
    n = x0.shape[0]
    z = x1 @ wf.T            # online encoder output W_f x₁   (B, d)
    h = z @ wh.T             # predictor output W_h W_f x₁    (B, d)
    t2 = x2 @ wf.T           # target W_f x₂ (stop-gradient)
    e1 = np.empty_like(h)
    _output_error(loss, h, t2, e1)
    gwh[:, :] = (e1.T @ z) / n
    back = e1 @ wh           # ∂ℓ/∂z from the first term   (B, d)
    if model == 1:
        g = h @ wg.T         # second predictor W_g W_h W_f x₁
        t0 = x0 @ wf.T       # target W_f x₀ (stop-gradient)
        e2 = np.empty_like(g)
        _output_error(loss, g, t0, e2)
        e2 *= lam
        gwg[:, :] = (e2.T @ h) / n
        bh = e2 @ wg         # ∂ℓ₂/∂h
        gwh += (bh.T @ z) / n
        back += bh @ wh
    else:
        gwg[:, :] = 0.0
    gwf[:, :] = (back.T @ x1) / n


@jit
def sgd_kernel(model, loss, wf, wh, wg, sigma, lam, rho, lr, n_steps, batch, seed,
               record_every, rec_wf, rec_wh, rec_wg):  # pragma: no cover - compiled
    """Minibatch SGD with fresh samples every step (numba's RNG seeded with ``seed``)."""
    np.random.seed(seed)
    d = wf.shape[0]
    gwf = np.zeros_like(wf)
    gwh = np.zeros_like(wh)
    gwg = np.zeros_like(wg)
    x0 = np.empty((batch, d))
    x1 = np.empty((batch, d))
    x2 = np.empty((batch, d))
    rec_wf[0] = wf
    rec_wh[0] = wh
    rec_wg[0] = wg
    for step in range(1, n_steps + 1):
        for b in range(batch):
            for k in range(d):
                v = np.random.standard_normal()
                x0[b, k] = v
                x1[b, k] = v + sigma * np.random.standard_normal()
                x2[b, k] = v + sigma * np.random.standard_normal()
        minibatch_grads(model, loss, wf, wh, wg, x0, x1, x2, lam, gwf, gwh, gwg)
        wf -= lr * (gwf + rho * wf)
        wh -= lr * (gwh + rho * wh)
        if model == 1:
            wg -= lr * (gwg + rho * wg)
        if not (np.abs(wf).max() < BLOWUP and np.abs(wh).max() < BLOWUP
                and np.abs(wg).max() < BLOWUP):
            return step      # diverged (or NaN): stop, later snapshots stay NaN
        if step % record_every == 0:
            r = step // record_every
            rec_wf[r] = wf
            rec_wh[r] = wh
            rec_wg[r] = wg
    return n_steps


def _check_weights(wf, wh, wg):
    wf = np.ascontiguousarray(wf, dtype=np.float64).copy()
    wh = np.ascontiguousarray(wh, dtype=np.float64).copy()
    wg = np.ascontiguousarray(wg, dtype=np.float64).copy()
    d = wf.shape[0] if wf.ndim == 2 else -1
    for name, w in (("W_f", wf), ("W_h", wh), ("W_g", wg)):
        if w.ndim != 2 or w.shape != (d, d):
            raise ValueError(f"linear SSL kernels need square d×d weights of one size; "
                             f"{name} has shape {w.shape}, W_f {wf.shape}")
    return wf, wh, wg


def _records(n_steps, record_every, d):
    if n_steps < 0 or record_every < 1:
        raise ValueError(f"need n_steps >= 0 and record_every >= 1, got {n_steps}, {record_every}")
    n_rec = n_steps // record_every + 1
    return (np.full((n_rec, d, d), np.nan), np.full((n_rec, d, d), np.nan),
            np.full((n_rec, d, d), np.nan))


def train_gd(model: str, wf, wh, wg, a: float, lam: float, rho: float, lr: float, n_steps: int,
             record_every: int = 1):
    """Checked wrapper of :func:`gd_kernel`.  Returns ``(wf, wh, wg, rec_wf, rec_wh, rec_wg,
    steps_done)``; the input arrays are not modified.  Snapshots after a divergence stay NaN."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; allowed: {', '.join(MODELS)}")
    wf, wh, wg = _check_weights(wf, wh, wg)
    rec = _records(int(n_steps), int(record_every), wf.shape[0])
    done = gd_kernel(MODELS[model], wf, wh, wg, float(a), float(lam), float(rho), float(lr),
                     int(n_steps), int(record_every), *rec)
    return (wf, wh, wg, *rec, int(done))


def train_sgd(model: str, loss: str, wf, wh, wg, sigma: float, lam: float, rho: float, lr: float,
              n_steps: int, batch: int, seed: int, record_every: int = 1):
    """Checked wrapper of :func:`sgd_kernel` (same return value as :func:`train_gd`)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; allowed: {', '.join(MODELS)}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    wf, wh, wg = _check_weights(wf, wh, wg)
    rec = _records(int(n_steps), int(record_every), wf.shape[0])
    done = sgd_kernel(MODELS[model], LOSSES[loss], wf, wh, wg, float(sigma), float(lam),
                      float(rho), float(lr), int(n_steps), int(batch), int(seed) & 0x7FFFFFFF,
                      int(record_every), *rec)
    return (wf, wh, wg, *rec, int(done))
