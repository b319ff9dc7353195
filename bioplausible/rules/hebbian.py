r"""Two-factor (Hebbian) plasticity: what pre × post alone can learn.

Every rule here is a function that returns the weight change ``ΔW`` (it never changes its inputs),
with its equation in its docstring.  They all work on the same two matrices:

* ``W`` of shape ``(n_in, K)``: column ``k`` is the weight vector ``w_k`` of post-synaptic unit
  ``k`` (the layout of :class:`~bioplausible.layers.Dense` weights);
* ``X`` of shape ``(n, n_in)``: one pre-synaptic pattern per row.

A convolutional layer is the same thing: its weight ``(kh, kw, c_in, c_out)`` *is* a matrix
``(kh*kw*c_in, c_out)`` (a reshape, no copy), and its pre-synaptic patterns are the im2col rows of
its input (one receptive field per output position).  :class:`Plastic` gives that view of a Dense or
a Conv2d layer, so no rule has a separate implementation per layer type: the same function is
applied to a fully connected layer (rows = samples) and to a convolution (rows = patches, the
weights shared across positions, as in Journé et al. 2023).

Mini-batch rules average the update over the rows of ``X`` (BLAS products); the ``*_online``
variants apply it sample after sample in a numba kernel (``bioplausible.kernels.hebbian``), as a
synapse would, and report divergence (a too-large learning rate) with :class:`HebbianDivergence`
instead of returning NaNs.

Rules
-----
=========================  ====================================================================
:func:`hebb`               ΔW = η Xᵀ Y / n, then each w_k renormalised to unit length
:func:`oja`                Δw_k = η ⟨y_k (x − y_k w_k)⟩                  (Oja 1982)
:func:`sanger`             ΔW = η (⟨x yᵀ⟩ − W UT[⟨y yᵀ⟩])                (Sanger 1989, GHA)
:func:`bcm`                Δw_k = η ⟨x y_k (y_k − θ_k)⟩, τ_θ dθ_k/dt = y_k² − θ_k  (BCM 1982)
:func:`competitive`        hard winner-take-all: Δw_k* = η (x − w_k*)    (online k-means)
:func:`softhebb`           y = softmax(t u), Δw_k = η ⟨y_k (x − u_k w_k)⟩ (Journé et al. 2023)
:func:`krotov_hopfield`    ranked competition, Δw_k = η ⟨g_k (x − I_k w_k)⟩ (Krotov & Hopfield 2019)
:func:`nonlinear_ica`      Δw_k = η σ_k ⟨x g(y_k)⟩ on whitened x + decorrelation (Hyvärinen & Oja 1998)
:func:`anti_hebbian_lateral`  ΔV_jk = η (⟨y_j y_k⟩ − ρ) ≥ 0 lateral inhibition (Földiák 1990)
:func:`homeostatic_bias`   Δb_k = η (p − ⟨1[u_k + b_k > 0]⟩), intrinsic plasticity
:func:`patch_whitening`    m, Z = ⟨x⟩, (C + εI)^{-1/2}: ZCA of a layer's receptive fields
:func:`fold_whitening`     w_k = Z v_k / s_k, b_k = −w_kᵀ m: a rule learned on z = Z(x − m), in the layer
=========================  ====================================================================
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from .base import Rule

__all__ = [
    "HebbianError", "HebbianDivergence", "Plastic",
    "hebb", "normalize_columns", "oja", "sanger", "bcm", "competitive", "softhebb",
    "krotov_hopfield", "nonlinear_ica", "symmetric_decorrelation", "anti_hebbian_lateral",
    "lateral_response", "homeostatic_bias", "patch_whitening", "fold_whitening",
    "oja_online", "sanger_online", "bcm_online", "competitive_online",
    "kh_post", "softmax_post", "RULES", "HebbianBlockwise",
]

#: E[log cosh ν] for a standard Gaussian ν (Hyvärinen's negentropy approximation).
LOGCOSH_GAUSS = 0.3745672075
#: Squared column norm above which a rule is declared divergent.
DIVERGENCE_LIMIT = 1e8


class HebbianError(UserError, ValueError):
    """Bad arguments to a Hebbian rule (shapes, dtypes, learning rate)."""


class HebbianDivergence(UserError, FloatingPointError):
    """The weights left every sane range (a learning rate too large for the input's variance)."""


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------
def _check(W, X, who: str):
    W = np.asarray(W)
    X = np.asarray(X)
    if W.ndim != 2:
        raise HebbianError(f"{who}: W must be 2-D (n_in, K) -- one column per unit; got {W.shape}. "
                           "For a Dense or Conv2d layer use Plastic(layer).W")
    if X.ndim != 2 or X.shape[1] != W.shape[0]:
        raise HebbianError(f"{who}: X must be (n, {W.shape[0]}) to match W {W.shape}; got {X.shape}. "
                           "For a conv layer use Plastic(layer).patches(x)")
    if W.dtype not in (np.float32, np.float64):
        raise HebbianError(f"{who}: W must be float32 or float64, got {W.dtype}")
    if X.shape[0] == 0:
        raise HebbianError(f"{who}: X has no rows")
    return W, X.astype(W.dtype, copy=False)


def _lr(lr, who):
    if not np.isfinite(lr) or lr <= 0:
        raise HebbianError(f"{who}: learning rate must be a positive number, got {lr!r}")
    return float(lr)


def _diverged(Wnew, who: str, lr: float, step=None):
    norms = np.einsum("ij,ij->j", Wnew, Wnew) if np.all(np.isfinite(Wnew)) else None
    if norms is None or norms.max(initial=0.0) > DIVERGENCE_LIMIT:
        where = f" at sample {step}" if step is not None else ""
        size = "non-finite" if norms is None else f"{np.sqrt(norms.max()):.3g}"
        raise HebbianDivergence(
            f"{who} diverged{where}: weight norm {size} with learning rate {lr:g}; lower the "
            "learning rate (for Oja-type rules η·λ_max must be well below 1, λ_max = the largest "
            "input variance) or normalise the input")


def _guard(dW, W, who, lr):
    if not np.all(np.isfinite(dW)) or np.einsum("ij,ij->j", W + dW, W + dW).max() > DIVERGENCE_LIMIT:
        _diverged(W + dW, who, lr)
    return dW


# --------------------------------------------------------------------------------------------
# dense and convolutional layers as (X, W)
# --------------------------------------------------------------------------------------------
class Plastic:
    """A Dense or Conv2d layer seen as a weight matrix ``W`` (n_in, K) and pre-synaptic rows.

    ``W`` is a view of the layer's own array (Conv2d: ``w.reshape(kh*kw*c_in, c_out)``), so
    ``plastic.W += dW`` updates the layer in place.  ``patches(x)`` returns the rows the rules
    take: the input itself for Dense, the im2col receptive fields for Conv2d (computed by the
    layer's numba im2col), optionally a random subset of ``max_rows`` of them.
    """

    def __init__(self, layer):
        from ..layers import Conv2d, Dense

        if not isinstance(layer, (Dense, Conv2d)):
            raise HebbianError(f"Hebbian rules need a Dense or Conv2d layer, got {type(layer).__name__}")
        self.layer = layer
        self.is_conv = isinstance(layer, Conv2d)

    @property
    def W(self) -> np.ndarray:
        w = self.layer.params["w"]
        return w.reshape(-1, w.shape[-1])

    @property
    def b(self):
        return self.layer.params.get("b")

    def patches(self, x, max_rows: int | None = None, rng: np.random.Generator | None = None):
        """Pre-synaptic rows (n_rows, n_in), a fresh C-contiguous array."""
        if not self.is_conv:
            X = np.asarray(x, self.W.dtype).reshape(len(x), -1)
        else:
            from ..kernels.conv import im2col
            L = self.layer
            X = im2col(np.ascontiguousarray(x, self.W.dtype), L.kernel, L.stride, L.padding)
        if max_rows and len(X) > max_rows:
            if rng is None:
                raise HebbianError("patches: subsampling rows needs rng=numpy.random.Generator")
            X = X[np.sort(rng.choice(len(X), max_rows, replace=False))]
        return np.ascontiguousarray(X)


def normalize_columns(W, norm: float = 1.0) -> np.ndarray:
    """Every column (unit) rescaled to Euclidean length ``norm`` (zero columns stay zero)."""
    n = np.sqrt(np.einsum("ij,ij->j", W, W))
    return W * (norm / np.where(n > 0, n, 1.0)).astype(W.dtype)


# --------------------------------------------------------------------------------------------
# mini-batch rules
# --------------------------------------------------------------------------------------------
def hebb(W, X, lr: float, Y=None, normalize: bool = True) -> np.ndarray:
    r"""Plain Hebb with multiplicative normalisation.

    .. math:: \tilde w_k = w_k + η ⟨x\, y_k⟩, \qquad w_k ← \tilde w_k / ‖\tilde w_k‖

    ``x`` pre-synaptic rate, ``y_k = w_kᵀx`` (or ``Y`` given by the caller) post-synaptic rate;
    their product is the Hebbian co-activity term.  Pure Hebb grows without bound; the
    normalisation (a synapse-wide resource limit) keeps ‖w_k‖ = 1 so the direction converges to
    the first principal component of ⟨x xᵀ⟩.  Returns ``ΔW = W_new − W``.
    """
    W, X = _check(W, X, "hebb")
    lr = _lr(lr, "hebb")
    Y = X @ W if Y is None else np.asarray(Y, W.dtype)
    Wt = W + (lr / len(X)) * (X.T @ Y)
    _guard(Wt - W, W, "hebb", lr)
    return (normalize_columns(Wt) if normalize else Wt) - W


def oja(W, X, lr: float) -> np.ndarray:
    r"""Oja's rule (each unit independently).

    .. math:: Δw_k = η ⟨ y_k (x − y_k w_k) ⟩, \qquad y_k = w_kᵀ x

    Hebbian term ``y x`` (pre × post) minus a decay ``y² w`` that only needs the post-synaptic
    rate and the synapse's own weight; to first order in η it is Hebb followed by normalisation.
    Fixed point: ``w`` = ± the unit-norm first principal component of ⟨x xᵀ⟩ (zero-mean x).
    """
    W, X = _check(W, X, "oja")
    lr = _lr(lr, "oja")
    Y = X @ W
    dW = (lr / len(X)) * (X.T @ Y - W * np.einsum("nk,nk->k", Y, Y))
    return _guard(dW, W, "oja", lr)


def sanger(W, X, lr: float) -> np.ndarray:
    r"""Sanger's generalised Hebbian algorithm (GHA).

    .. math:: ΔW = η \big(⟨x yᵀ⟩ − W\, \mathrm{UT}[⟨y yᵀ⟩]\big), \qquad y = Wᵀx

    i.e. ``Δw_k = η ⟨y_k (x − Σ_{j≤k} y_j w_j)⟩``: unit k does Oja on the input from which the
    units before it have been subtracted (``UT`` keeps the upper triangle with the diagonal,
    because our columns are units).  Fixed point: column k = ± the k-th principal component, in
    order of decreasing variance.
    """
    W, X = _check(W, X, "sanger")
    lr = _lr(lr, "sanger")
    Y = X @ W
    dW = (lr / len(X)) * (X.T @ Y - W @ np.triu(Y.T @ Y))
    return _guard(dW, W, "sanger", lr)


def bcm(W, X, theta, lr: float, tau_theta: float = 100.0, Y=None, rectify: bool = True,
        sliding: bool = True):
    r"""Bienenstock–Cooper–Munro rule with a sliding threshold.

    .. math:: Δw_k = η ⟨x\, y_k (y_k − θ_k)⟩, \qquad τ_θ \frac{dθ_k}{dt} = ⟨y_k²⟩ − θ_k

    Post-synaptic activity above the threshold θ potentiates active synapses (LTP), below it
    depresses them (LTD); θ follows the recent mean of y² so that a unit that fires a lot raises
    its own threshold (metaplasticity, a homeostatic stabiliser).  ``y = max(0, wᵀx)``
    (``rectify``) unless the caller passes ``Y`` (e.g. after lateral inhibition).  With
    ``sliding=False`` θ is fixed (the unstable plain-Hebbian-like case the course asks to compare).
    Returns ``(ΔW, Δθ)`` where ``Δθ = (⟨y²⟩ − θ)/τ_θ`` (one time step per batch).
    """
    W, X = _check(W, X, "bcm")
    lr = _lr(lr, "bcm")
    theta = np.asarray(theta, W.dtype)
    if theta.shape != (W.shape[1],):
        raise HebbianError(f"bcm: theta must have shape ({W.shape[1]},), got {theta.shape}")
    if Y is None:
        Y = X @ W
        if rectify:
            Y = np.maximum(Y, 0)
    Y = np.asarray(Y, W.dtype)
    dW = (lr / len(X)) * (X.T @ (Y * (Y - theta)))
    dtheta = ((Y * Y).mean(0) - theta) / tau_theta if sliding else np.zeros_like(theta)
    return _guard(dW, W, "bcm", lr), dtheta.astype(W.dtype)


def competitive(W, X, lr: float) -> np.ndarray:
    r"""Hard winner-take-all competitive learning (mini-batch online k-means).

    .. math:: k^*(x) = \arg\min_k ‖x − w_k‖², \qquad Δw_{k} = η ⟨ 1[k = k^*(x)]\, (x − w_k) ⟩_{x}

    The post-synaptic factor is 1 for the winner (lateral inhibition silences the others), 0 else;
    ``x − w`` is Hebb (x·y) plus a decay of the winner's weights.  With ``η`` = 1 the update
    moves every w_k to the mean of the samples it won: one Lloyd iteration.  Here ⟨·⟩ averages
    over the samples each unit won (units that won nothing do not move).
    """
    W, X = _check(W, X, "competitive")
    lr = _lr(lr, "competitive")
    d = (X * X).sum(1)[:, None] - 2 * X @ W + (W * W).sum(0)[None, :]
    win = np.argmin(d, axis=1)
    Y = np.zeros((len(X), W.shape[1]), W.dtype)
    Y[np.arange(len(X)), win] = 1
    counts = Y.sum(0)
    dW = lr * (X.T @ Y - W * counts) / np.maximum(counts, 1)
    return _guard(dW, W, "competitive", lr)


def softmax_post(U, temperature: float = 1.0, anti_hebbian: bool = False):
    """SoftHebb's post-synaptic factor ``softmax(t·u)`` per row; returns ``(Y, Σ_n y∘u)``.

    Vectorised numpy (its SIMD ``exp`` was measured faster than a fused numba loop, see
    benchmarks/bench_hebbian.py).  ``anti_hebbian``: every non-winner's factor changes sign.
    """
    U = np.asarray(U)
    if U.ndim != 2 or U.dtype not in (np.float32, np.float64):
        raise HebbianError(f"softmax_post: U must be a 2-D float array, got {U.dtype} {U.shape}")
    Y = U - U.max(1, keepdims=True)
    Y *= U.dtype.type(temperature)
    np.exp(Y, out=Y)
    # flush factors below 1e-30 to exactly 0: with a large t most exp() results are subnormal
    # floats, which made the two BLAS products of the rule ~20x slower (measured, t = 200)
    Y[Y < 1e-30] = 0
    Y /= Y.sum(1, keepdims=True)
    if anti_hebbian:
        win = np.argmax(U, axis=1)
        keep = Y[np.arange(len(U)), win].copy()
        Y *= -1
        Y[np.arange(len(U)), win] = keep
    return Y, np.einsum("nk,nk->k", Y, U)


def softhebb(W, X, lr: float, temperature: float = 1.0, anti_hebbian: bool = False,
             average: str = "batch") -> np.ndarray:
    r"""SoftHebb: soft winner-take-all Hebbian learning (Journé, Rodriguez, Guo & Moraitis 2023).

    .. math:: u = Wᵀx,\quad y = \mathrm{softmax}(t\,u),\qquad Δw_k = η ⟨ y_k (x − u_k w_k) ⟩

    ``u_k`` is unit k's membrane potential, ``y_k`` its output after soft lateral inhibition
    (the softmax: units compete for a fixed total activity, ``t`` = inverse temperature); the
    ``−y_k u_k w_k`` decay keeps ‖w_k‖ → 1 (an Oja-like term), so the rule needs no separate
    normalisation.  It minimises the KL divergence between the input and a mixture model whose
    components are the w_k.  ``anti_hebbian=True``: every non-winner gets ``−y_k`` (the soft
    anti-Hebbian variant of the paper, which pushes losers away and spreads the filters).
    ``average``: ``batch`` divides the summed update by the number of rows n (⟨·⟩ above);
    ``unit`` divides unit k's sum by its own total activity Σ_n |y_nk| instead, so each unit moves
    a fraction η of the way to the y-weighted mean of the inputs it responded to, however rarely
    it wins (with many units and a batch average, a unit's step shrinks to ~η/K and learning
    stalls; ``unit`` is what the online rule does per sample, and needs only the unit's own
    activity).
    """
    W, X = _check(W, X, "softhebb")
    lr = _lr(lr, "softhebb")
    if temperature <= 0:
        raise HebbianError(f"softhebb: temperature (inverse, t) must be > 0, got {temperature}")
    U = X @ W
    Y, yu = softmax_post(U, temperature, anti_hebbian)
    if average == "batch":
        scale = W.dtype.type(lr / len(X))
    elif average == "unit":
        scale = (lr / np.maximum(np.abs(Y).sum(0), 1e-3)).astype(W.dtype)
    else:
        raise HebbianError(f"softhebb: average must be 'batch' or 'unit', got {average!r}")
    dW = scale * (X.T @ Y - W * yu)
    return _guard(dW, W, "softhebb", lr)


def kh_post(U, rank: int = 2, delta: float = 0.4) -> np.ndarray:
    """Krotov–Hopfield's factor per row: 1 for the strongest unit, −delta for the rank-th (numba)."""
    from ..kernels.hebbian import kh_post_kernel

    U = np.ascontiguousarray(U)
    if U.ndim != 2 or U.dtype not in (np.float32, np.float64):
        raise HebbianError(f"kh_post: U must be a 2-D float array, got {U.dtype} {U.shape}")
    if not 2 <= rank <= U.shape[1]:
        raise HebbianError(f"kh_post: rank must be in 2..{U.shape[1]} (number of units), got {rank}")
    G = np.empty_like(U)
    kh_post_kernel(U, int(rank), float(delta), G)
    return G


def _kh_currents(W, X, p):
    if p == 2:
        return X @ W
    return X @ (np.sign(W) * np.abs(W) ** (p - 1))


def krotov_hopfield(W, X, lr: float, p: float = 3.0, rank: int = 2, delta: float = 0.4,
                    normalize_update: bool = True) -> np.ndarray:
    r"""Krotov & Hopfield (2019) "unsupervised learning by competing hidden units".

    .. math:: I_k = \sum_i \mathrm{sgn}(W_{ik}) |W_{ik}|^{p-1} x_i,\qquad
              Δw_k = η ⟨ g_k (x − I_k w_k) ⟩

    ``I_k`` is the input current of unit k measured with the Lebesgue p-norm metric; the
    post-synaptic factor ``g`` comes from a ranking of the currents (strong lateral inhibition):
    ``g = 1`` for the most driven unit, ``−Δ`` (anti-Hebbian) for the ``rank``-th, 0 for the
    others.  The decay ``−g I w`` drives ‖w_k‖_p → 1.  ``normalize_update`` divides ΔW by its
    largest entry (as the paper's code does) so ``η`` is the largest weight step per batch.
    """
    W, X = _check(W, X, "krotov_hopfield")
    lr = _lr(lr, "krotov_hopfield")
    if p < 2:
        raise HebbianError(f"krotov_hopfield: p must be >= 2, got {p}")
    U = _kh_currents(W, X, p)
    G = kh_post(U, rank, delta)
    dW = X.T @ G - W * np.einsum("nk,nk->k", G, U)
    if normalize_update:
        m = np.abs(dW).max()
        dW *= lr / m if m > 0 else 0.0
    else:
        dW *= lr / len(X)
    return _guard(dW, W, "krotov_hopfield", lr)


def symmetric_decorrelation(W) -> np.ndarray:
    """``W (WᵀW)^{-1/2}``: the orthonormal matrix closest to W (columns = units)."""
    lam, E = np.linalg.eigh((W.T @ W).astype(np.float64))
    lam = np.clip(lam, 1e-12, None)
    return (W @ ((E / np.sqrt(lam)) @ E.T)).astype(W.dtype)


def nonlinear_ica(W, X, lr: float, nonlinearity: str = "tanh", decorrelation: str = "symmetric",
                  sign=None) -> np.ndarray:
    r"""Nonlinear Hebbian learning for ICA on whitened input (Hyvärinen & Oja 1998).

    .. math:: y_k = w_kᵀx,\qquad Δw_k = η\, σ_k ⟨x\, g(y_k)⟩,\qquad
              σ_k = \mathrm{sgn}\big(E[G(y_k)] − E[G(ν)]\big)

    A Hebbian product of the pre-synaptic rate and a *nonlinear* function of the post-synaptic
    rate; on whitened data its stable points are the independent components (σ picks ascent or
    descent on the non-Gaussianity, estimated from the batch unless ``sign`` is given).
    ``nonlinearity``: ``tanh`` (G = log cosh, robust) or ``pow3`` (g = y³, kurtosis).
    The units are kept apart by decorrelation: ``symmetric`` -- W ← W(WᵀW)^{-1/2} after the step
    (returned ΔW includes it); ``anti_hebbian`` -- an added local term η W(I − ⟨y yᵀ⟩), the
    bigradient/feedback form in which lateral anti-Hebbian interactions decorrelate the outputs.
    """
    W, X = _check(W, X, "nonlinear_ica")
    lr = _lr(lr, "nonlinear_ica")
    Y = X @ W
    if nonlinearity == "tanh":
        g = np.tanh(Y)
        EG = np.log(np.cosh(Y)).mean(0)
        EGn = LOGCOSH_GAUSS
    elif nonlinearity == "pow3":
        g = Y ** 3
        EG = (Y ** 4).mean(0) / 4
        EGn = 0.75
    else:
        raise HebbianError(f"nonlinear_ica: nonlinearity must be 'tanh' or 'pow3', got {nonlinearity!r}")
    s = np.sign(EG - EGn) if sign is None else np.broadcast_to(np.asarray(sign, W.dtype), (W.shape[1],))
    s = np.where(s == 0, 1.0, s).astype(W.dtype)
    dW = (lr / len(X)) * (X.T @ g) * s
    if decorrelation == "symmetric":
        dW = symmetric_decorrelation(W + dW) - W
    elif decorrelation == "anti_hebbian":
        dW = dW + lr * W @ (np.eye(W.shape[1], dtype=W.dtype) - Y.T @ Y / len(X))
    else:
        raise HebbianError("nonlinear_ica: decorrelation must be 'symmetric' or 'anti_hebbian', "
                           f"got {decorrelation!r}")
    return _guard(dW, W, "nonlinear_ica", lr)


def anti_hebbian_lateral(V, Y, lr: float, target: float = 0.0) -> np.ndarray:
    r"""Learned lateral inhibition: anti-Hebbian, non-negative (Földiák 1990).

    .. math:: ΔV_{jk} = η\,(⟨y_j y_k⟩ − ρ),\quad j ≠ k,\qquad V ≥ 0,\ V_{kk} = 0

    ``V_{jk}`` is the strength of the inhibition unit k sends to unit j (the response is
    ``y = f(u − V y)``, see :func:`lateral_response`).  Units that fire together inhibit each
    other more, which decorrelates them and makes them learn different features; ``ρ`` is the
    co-activity tolerated without inhibition.  Returned so that ``V + ΔV`` stays ≥ 0 with a zero
    diagonal (inhibitory synapses cannot turn excitatory).
    """
    V = np.asarray(V)
    Y = np.asarray(Y, V.dtype)
    if V.ndim != 2 or V.shape[0] != V.shape[1] or Y.ndim != 2 or Y.shape[1] != V.shape[0]:
        raise HebbianError(f"anti_hebbian_lateral: V must be (K, K) and Y (n, K); got {V.shape}, {Y.shape}")
    lr = _lr(lr, "anti_hebbian_lateral")
    Vn = np.maximum(V + lr * (Y.T @ Y / len(Y) - target), 0)
    np.fill_diagonal(Vn, 0)
    return Vn - V


def lateral_response(U, V, steps: int = 20, rectify: bool = True, relax: float = 0.5):
    r"""Steady state of ``τ dy/dt = −y + f(u − V y)`` by damped fixed-point iteration.

    ``u`` feed-forward drive (n, K), ``V`` lateral inhibition (K, K, non-negative), ``f`` = ReLU
    (or identity).  ``relax`` is the Euler step dt/τ.
    """
    y = np.maximum(U, 0) if rectify else U.copy()
    for _ in range(int(steps)):
        target = U - y @ V.T
        if rectify:
            target = np.maximum(target, 0)
        y += relax * (target - y)
    return y


def homeostatic_bias(b, U, target: float, lr: float) -> np.ndarray:
    r"""Intrinsic plasticity of a unit's threshold: ``Δb_k = η (p − ⟨1[u_k + b_k > 0]⟩)``.

    A unit active more often than the target probability ``p`` lowers its bias (raises its firing
    threshold), one active less often raises it; only the unit's own activity is needed.
    """
    U = np.asarray(U)
    b = np.asarray(b)
    if U.ndim != 2 or b.shape != (U.shape[1],):
        raise HebbianError(f"homeostatic_bias: need U (n, K) and b (K,); got {U.shape}, {b.shape}")
    return (_lr(lr, "homeostatic_bias") * (target - ((U + b) > 0).mean(0))).astype(b.dtype)


def patch_whitening(X=None, eps: float = 1e-2, *, mean=None, cov=None):
    r"""ZCA whitening of pre-synaptic rows: returns ``(m, Z, C)``.

    .. math:: m = ⟨x⟩,\quad C = ⟨(x − m)(x − m)ᵀ⟩ = E Λ Eᵀ,\quad
              Z = E\,(Λ + ε λ_{max} I)^{-1/2} Eᵀ,\qquad z = Z (x − m)

    ``z`` has (nearly) identity covariance; ``ε`` (relative to the largest eigenvalue) keeps the
    weakest, mostly-noise directions from being blown up.  ZCA (the symmetric choice) is the
    whitening closest to the input itself, so whitened receptive fields still look like patches.
    Give rows ``X`` (n, d), or their ``mean`` and ``cov`` (accumulated elsewhere).  This is a
    linear decorrelation stage computed by eigendecomposition -- what a lateral anti-Hebbian
    circuit converges to, not simulated here.
    """
    if X is not None:
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or len(X) < 2:
            raise HebbianError(f"patch_whitening: X must be (n >= 2, d), got {X.shape}")
        mean = X.mean(0)
        cov = np.cov(X, rowvar=False)
    if mean is None or cov is None:
        raise HebbianError("patch_whitening: give rows X or both mean= and cov=")
    mean, cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
    if cov.shape != (len(mean), len(mean)):
        raise HebbianError(f"patch_whitening: cov must be ({len(mean)}, {len(mean)}), got {cov.shape}")
    if not eps > 0:
        raise HebbianError(f"patch_whitening: eps must be > 0, got {eps}")
    lam, E = np.linalg.eigh((cov + cov.T) / 2)
    lam = np.clip(lam, 0, None)
    Z = (E / np.sqrt(lam + eps * max(lam.max(), 1e-12))) @ E.T
    return mean, Z, cov


def fold_whitening(V, mean, Z, cov=None, gain: str = "var"):
    r"""Weights and biases of a layer whose units compute what a rule learned on whitened rows.

    .. math:: u_k = v_kᵀ Z (x − m) / s_k = w_kᵀ x + b_k,\qquad w_k = Z v_k / s_k,\quad
              b_k = −w_kᵀ m

    ``v_k`` (columns of ``V``) are the rule's weights on ``z = Z(x − m)``; the layer itself sees
    the raw ``x`` and computes the very same potential (Z is symmetric), so nothing outside the
    layer's own weights and bias changes.  Unit k's threshold sits at its mean drive (``b_k``),
    and its gain ``1/s_k`` is set by ``gain``: ``var`` -- ``s_k`` = the std of its drive
    (``sqrt(w̃ᵀ C w̃)``, w̃ = Z v_k, needs ``cov``; every unit then has unit-variance input,
    intrinsic gain homeostasis), ``norm`` -- ``s_k = ‖Z v_k‖`` (unit-norm weight vectors).
    Returns ``(W, b)`` in V's dtype.
    """
    V = np.asarray(V)
    Wt = np.asarray(Z, np.float64) @ V.astype(np.float64)
    if gain == "var":
        if cov is None:
            raise HebbianError("fold_whitening: gain='var' needs cov")
        s = np.sqrt(np.maximum(np.einsum("ik,ij,jk->k", Wt, np.asarray(cov, np.float64), Wt), 0))
    elif gain == "norm":
        s = np.linalg.norm(Wt, axis=0)
    else:
        raise HebbianError(f"fold_whitening: gain must be 'var' or 'norm', got {gain!r}")
    Wt /= np.where(s > 0, s, 1.0)
    return Wt.astype(V.dtype), (-(np.asarray(mean, np.float64) @ Wt)).astype(V.dtype)


# --------------------------------------------------------------------------------------------
# online rules (numba, one sample at a time)
# --------------------------------------------------------------------------------------------
def _online(kernel, who, W, X, lr, *extra, inplace=False):
    """Run an online kernel on W (a copy unless ``inplace``); return ΔW; report divergence."""
    W, X = _check(W, X, who)
    lr = _lr(lr, who)
    if inplace and not (W.flags.c_contiguous and W.flags.writeable):
        raise HebbianError(f"{who}: inplace update needs a C-contiguous writeable W")
    before = W.copy()
    Wk = W if inplace else W.copy()
    status = kernel(Wk, np.ascontiguousarray(X), lr, *extra)
    if status >= 0:             # the kernel stopped after sample `status`
        _diverged(Wk if np.all(np.isfinite(Wk)) else np.full_like(Wk, np.nan), who, lr,
                  step=int(status))
    return Wk - before


def oja_online(W, X, lr: float, inplace: bool = False) -> np.ndarray:
    r"""Oja's rule applied sample after sample (numba): ``w_k ← w_k + η y_k (x − y_k w_k)``.

    Same equation as :func:`oja`, without averaging over a batch.  Returns ΔW over the pass
    (``inplace=True`` also writes it into W).  Raises :class:`HebbianDivergence` naming the
    sample at which the weights blew up when η is too large.
    """
    from ..kernels.hebbian import oja_online_kernel
    return _online(oja_online_kernel, "oja_online", W, X, lr, DIVERGENCE_LIMIT, inplace=inplace)


def sanger_online(W, X, lr: float, inplace: bool = False) -> np.ndarray:
    r"""GHA sample after sample (numba): ``w_k ← w_k + η y_k (x − Σ_{j≤k} y_j w_j)``."""
    from ..kernels.hebbian import sanger_online_kernel
    return _online(sanger_online_kernel, "sanger_online", W, X, lr, DIVERGENCE_LIMIT,
                   inplace=inplace)


def bcm_online(W, X, theta, lr: float, tau_theta: float = 100.0, rectify: bool = True,
               inplace: bool = False):
    r"""BCM sample after sample (numba): ``w_k ← w_k + η x y_k (y_k − θ_k)``, then
    ``θ_k ← θ_k + (y_k² − θ_k)/τ_θ``.  ``theta`` (K,) is updated in place; returns ΔW."""
    from ..kernels.hebbian import bcm_online_kernel
    W, _ = _check(W, X, "bcm_online")
    if not (isinstance(theta, np.ndarray) and theta.dtype == W.dtype and theta.shape == (W.shape[1],)
            and theta.flags.c_contiguous):
        raise HebbianError(f"bcm_online: theta must be a contiguous {W.dtype} array of shape "
                           f"({W.shape[1]},) (it is updated in place)")
    return _online(bcm_online_kernel, "bcm_online", W, X, lr, theta, float(tau_theta),
                   bool(rectify), DIVERGENCE_LIMIT, inplace=inplace)


def competitive_online(W, X, lr: float = 0.0, counts=None, inplace: bool = False) -> np.ndarray:
    r"""Online hard winner-take-all (numba): the closest ``w_k*`` moves ``w_k* ← w_k* + η (x − w_k*)``.

    ``lr = 0`` (default) uses ``η = 1/n_k*`` with ``n_k`` the number of samples unit k has won so
    far (``counts``, int64, updated in place): MacQueen's online k-means, where every w_k is the
    running mean of its samples.
    """
    from ..kernels.hebbian import competitive_online_kernel
    W, X = _check(W, X, "competitive_online")
    if counts is None:
        counts = np.zeros(W.shape[1], np.int64)
    if not (isinstance(counts, np.ndarray) and counts.dtype == np.int64 and counts.shape == (W.shape[1],)):
        raise HebbianError(f"competitive_online: counts must be an int64 array of shape ({W.shape[1]},)")
    if lr < 0 or not np.isfinite(lr):
        raise HebbianError(f"competitive_online: lr must be >= 0 (0 = 1/count), got {lr}")
    Wk = W if inplace else W.copy()
    before = W.copy() if inplace else W
    status = competitive_online_kernel(Wk, np.ascontiguousarray(X), float(lr), counts)
    if status >= 0:
        _diverged(Wk, "competitive_online", lr, step=int(status))
    return Wk - before


# --------------------------------------------------------------------------------------------
# a Hebbian rule on an encoder (the Rule contract), block by block
# --------------------------------------------------------------------------------------------
RULES = {
    "softhebb": softhebb,
    "krotov_hopfield": krotov_hopfield,
    "oja": oja,
    "sanger": sanger,
    "competitive": competitive,
    "hebb": hebb,
}


class HebbianBlockwise(Rule):
    r"""Train the first Dense/Conv2d layer of each block with a two-factor rule, no labels.

    Block ``l`` sees the output of the frozen blocks below it; its layer's pre-synaptic rows
    (:meth:`Plastic.patches`: samples for Dense, im2col patches for Conv2d) and post-synaptic
    potentials ``u = Wᵀx`` are all the rule uses -- nothing crosses a block boundary.  ``active``
    selects the blocks trained at each step (the experiment trains them one after another).
    The bias follows :func:`homeostatic_bias` towards activity ``bias_target`` (``None``: bias
    fixed at 0).  ``max_rows`` subsamples conv patches per step (rng of the batch).
    ``normalize_rows``: the rule sees each receptive field divided by its length (divisive gain
    control), so one learning rate suits every block whatever the scale of its input; the bias
    homeostasis uses the raw drive ``u + b`` the layer actually computes.

    ``whiten=True``: the rule learns on ZCA-whitened receptive fields ``z = Z(x − m)``
    (:func:`patch_whitening`, statistics of the block's own input measured by
    :meth:`fit_whitening`, which must be called before the block's first step) with rule-space
    weights ``v_k`` (started from the layer's random init), and after every step the layer gets
    ``w_k = Z v_k / s_k``, ``b_k = −w_kᵀ m`` (:func:`fold_whitening`, ``gain`` = ``var`` or
    ``norm``): the encoder's forward pass (conv + bias, ReLU, pool) is unchanged and computes
    the potential ``v_kᵀz`` the rule used, times the unit's gain ``1/s_k`` (the rule's own copy
    of each patch is also divided by its length when ``normalize_rows``; the layer's is not).
    The bias then sits at each unit's mean drive (``bias_target`` must be None).
    """

    name = "hebbian"
    local = True

    def __init__(self, encoder, rule: str = "softhebb", lr: float = 0.01, *, max_rows: int = 8192,
                 bias_target: float | None = None, bias_lr: float = 0.05,
                 normalize_rows: bool = True, whiten: bool = False, zca_eps: float = 1e-2,
                 gain: str = "var", **rule_kwargs):
        super().__init__()
        if rule not in RULES:
            raise HebbianError(f"unknown Hebbian rule {rule!r}; allowed: {', '.join(RULES)}")
        if whiten and bias_target is not None:
            raise HebbianError("HebbianBlockwise: with whiten=True the bias is each unit's mean drive; "
                               "pass bias_target=None")
        if gain not in ("var", "norm"):
            raise HebbianError(f"HebbianBlockwise: gain must be 'var' or 'norm', got {gain!r}")
        self.whiten, self.zca_eps, self.gain = bool(whiten), float(zca_eps), gain
        self.white: dict[int, tuple] = {}      # block -> (m, Z, C, V): statistics and rule weights
        self.rule, self.lr, self.kw = rule, _lr(lr, rule), dict(rule_kwargs)
        self.max_rows, self.bias_target, self.bias_lr = max_rows, bias_target, bias_lr
        self.normalize_rows = normalize_rows
        self.plastic = []
        for bi, block in enumerate(encoder.blocks):
            layers = [Plastic(L) for L in block.layers if type(L).__name__ in ("Dense", "Conv2d")]
            if not layers:
                raise HebbianError(f"block {bi} has no Dense or Conv2d layer to train")
            self.plastic.append(layers[0])
        for p in self.plastic:          # start from unit-norm columns, zero bias
            p.W[...] = normalize_columns(p.W)
            if p.b is not None:
                p.b[...] = 0
        self.active = list(range(len(self.plastic)))

    def step(self, encoder, batch: dict) -> dict:
        rng = batch["rng"]
        x = batch["x"]
        out = {}
        top = max(self.active) + 1
        for bi, block in enumerate(encoder.blocks[:top]):
            if bi in self.active:
                p = self.plastic[bi]
                X = p.patches(x, self.max_rows, rng)
                if self.whiten:
                    if bi not in self.white:
                        raise HebbianError(f"HebbianBlockwise: call fit_whitening(encoder, {bi}, x) "
                                           f"before training block {bi + 1} with whiten=True")
                    m, Z, C, V = self.white[bi]
                    X = (X - m.astype(X.dtype)) @ Z.astype(X.dtype)
                    Wr = V
                else:
                    Wr = p.W
                Xr = X
                if self.normalize_rows:
                    Xr = X / (np.sqrt(np.einsum("ij,ij->i", X, X))[:, None] + 1e-6)
                dW = RULES[self.rule](Wr, Xr, self.lr, **self.kw)
                Wr[...] += dW
                if self.whiten:
                    self.fold(bi)
                elif self.bias_target is not None and p.b is not None:
                    U = X @ p.W
                    p.b[...] += homeostatic_bias(p.b, U, self.bias_target, self.bias_lr)
                out[f"dw_b{bi + 1}"] = float(np.abs(dW).mean() / (np.abs(Wr).mean() + 1e-12))
            if bi + 1 < top:
                x = block(x)
        return out

    def fit_whitening(self, encoder, block: int, x, rng: np.random.Generator | None = None,
                      per_image: int = 64, chunk: int = 100):
        """Measure the mean and covariance of block ``block``'s receptive fields on images ``x``
        (through the frozen blocks below it; ``per_image`` random patches per image), set up its
        whitening and rule-space weights (the layer's current weights, unit length) and fold them
        into the layer.  Call it after the blocks below are trained."""
        if not 0 <= block < len(self.plastic):
            raise HebbianError(f"fit_whitening: block must be in 0..{len(self.plastic) - 1}, got {block}")
        rng = np.random.default_rng(0) if rng is None else rng
        p = self.plastic[block]
        d = p.W.shape[0]
        S, SS, n = np.zeros(d), np.zeros((d, d)), 0
        for i in range(0, len(x), chunk):
            h = x[i:i + chunk]
            if block > 0:
                h = encoder.outputs(h, upto=block)[-1]
            X = p.patches(h, per_image * len(h), rng).astype(np.float64)
            S += X.sum(0)
            SS += X.T @ X
            n += len(X)
        if n < 2:
            raise HebbianError("fit_whitening: need at least 2 patches (give more images)")
        mean = S / n
        cov = (SS - n * np.outer(mean, mean)) / (n - 1)
        m, Z, C = patch_whitening(mean=mean, cov=cov, eps=self.zca_eps)
        V = normalize_columns(p.W.copy())
        self.white[block] = (m, Z, C, V)
        self.fold(block)
        return self.white[block]

    def fold(self, block: int):
        """Write the whitened rule weights of ``block`` into its layer (:func:`fold_whitening`)."""
        m, Z, C, V = self.white[block]
        p = self.plastic[block]
        W, b = fold_whitening(V, m, Z, C, self.gain)
        p.W[...] = W
        if p.b is not None:
            p.b[...] = b
        elif np.any(b != 0):
            raise HebbianError("whitening needs a layer with a bias (b = -w.m)")
