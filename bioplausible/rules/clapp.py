r"""CLAPP: contrastive, local and predictive plasticity (Illing, Ventura, Bellec & Gerstner 2021).

Every block l learns on its own, from what its neurons and synapses can know.  The block's code
z = GAP(block output) of a *target* input is compared with a prediction made from the code c of a
*context* input (another view of the same image after a "saccade", or the patch above in a grid):

    u = zᵀ W_pred c,      L_l = max(0, 1 − y·u),      y = +1 (same image) / −1 (other image).

With the broadcast gate γ = y · H(1 − y·u) (H = Heaviside: learning happens only when the hinge is
active, with the sign telling "same" or "other"), the updates are descent directions of L_l:

    ΔW_pred   = η γ z cᵀ                                           (predictor: Hebbian × γ)
    ΔW_ji     = η γ [ (W_pred c)_j ρ'(a_j) x_i |target + (W_retro z)_j ρ'(a_j) x_i |context ]

for the feed-forward weights of the block: a **three-factor** product of the broadcast modulator γ,
a dendritic prediction ((W_pred c)_j at the target, the retrodiction (W_retro z)_j at the context),
and the Hebbian pre/post term ρ'(a_j) x_i.  For a convolution, unit j is a channel and the product
is summed over positions, routed through the block's max-pool to the winning unit and divided by the
number of pooled positions (the GAP); ``kernels.plasticity.pooled_post`` computes the post-synaptic
factor in one fused numba kernel and the sum over positions is one BLAS product.  W_retro learns
with the same gate: ΔW_retro = η γ c zᵀ.

No gradient crosses a block boundary, no weight is transported: in ``clapp`` the retrodiction uses
its own matrix W_retro.  Variants:

* ``clapp`` -- separate W_pred and W_retro; each sample gets either a positive (y = +1, p = 1/2) or a
  negative (y = −1, target from another image) update.  With view positives the negative's target
  is another image's context view, which is encoded anyway, so only the positives need a second
  view: 1.5 views per image on average.
* ``clapp_s`` -- shared W_pred (W_retro = W_predᵀ); one positive and K negatives per sample, both
  updates at every step: L = hinge(positive) + mean_k hinge(negative_k).  With ``symmetric=True``
  every positive pair also runs backwards (the target view, or the lower patch, predicts the
  context, against K other images' inputs in the context's place), so each encoded input is a
  context once and a target once: L = ½ [L(c → t) + L(t → c)].

With W_retro = W_predᵀ the update is exactly −η ∂L_l/∂θ of the block-local hinge loss
(tests/test_clapp.py checks this against finite differences and torch autograd).  Updates are
applied with Adam (per block), as in the paper's implementation.

Optional, still local, changes to the block's loss (all off by default):

* ``code_norm`` -- the hinge sees the standardised code z̃_j = (z_j − m_j) / s_j, with m_j, s_j the
  unit's mean and standard deviation over the batch, held fixed in the update (a homeostatic offset
  and gain, not differentiated): ∂L/∂z_j = (∂L/∂z̃_j) / s_j.
* ``unit_norm`` -- the hinge sees the code divided by its length, ẑ = z / ‖z‖ (divisive
  normalisation across the block's units), so u = ẑᵀ W_pred ĉ depends on the code's direction, not
  its size (as InfoNCE's cosine similarity does).  The update goes through the normalisation
  exactly: ∂L/∂z = (∂L/∂ẑ − ẑ (ẑᵀ ∂L/∂ẑ)) / ‖z‖ -- each unit's own term minus one scalar per input
  shared by the block's units.
* ``soft_gate`` β -- a graded modulator: the hinge becomes (1/β) log(1 + e^{β(1 − y·u)}) and the
  gate γ = y σ(β (1 − y·u)) instead of y H(1 − y·u), so pairs past the margin still learn, less
  and less (β → ∞ is the hinge).
* ``softmax_tau`` τ (``clapp_s`` only) -- not CLAPP's hinge but CPC's softmax (InfoNCE) contrast,
  still block by block with the same explicit update: each context's positive competes with its
  K negatives, L = −log [e^{u₀/τ} / Σ_k e^{u_k/τ}], and the gate becomes graded and competitive,
  γ₀ = (1 − p₀)/τ for the positive and γ_k = −p_k/τ for negative k (p = softmax(u/τ)): a
  modulator that needs the K + 1 predictions' scores, not one pair's.
* ``head`` n (``clapp_s`` only) -- the hinge compares g(z) = ρ(V z), n rectified units driven by
  the block's code, instead of z itself: u = g(z_t)ᵀ W_pred g(z_c) (like SimCLR's projection head,
  the invariance can be learned in g while z keeps more of its input).  V learns with the same gate
  (ΔV ∝ −(ρ' ⊙ ∂L/∂g) zᵀ) and the block's update receives Vᵀ(ρ' ⊙ ∂L/∂g) -- the weight symmetry
  CLAPP-s already assumes for W_retro = W_predᵀ.
* ``head_out`` m (with ``head`` n) -- a two-layer head like SimCLR's and Greedy InfoMax's MLP:
  g(z) = V₂ ρ(V₁ z), n rectified units then m linear ones, u = g(z_t)ᵀ W_pred g(z_c) (W_pred is
  m × m).  V₂ learns with the gate as W_pred does (ΔV₂ ∝ −(∂L/∂g) hᵀ, h = ρ(V₁ z)); V₁ and the
  block receive the error through V₂ᵀ and then V₁ᵀ (the same symmetry, one layer more).
* ``decorrelate`` ν -- lateral decorrelation inside the block: ν · (1/D) Σ_{i≠j} C_ij² is added to the
  block's loss, C the batch covariance of the (standardised, if ``code_norm``) codes, whose gradient
  (4ν / (D(n−1))) X offdiag(C) (X the centred codes) is an anti-Hebbian lateral term: each unit is
  pushed away from the units it co-varies with, using only activities of its own block.

Silent modulator, no work: an input whose hinges are all inactive (as target and as context) has
δ = 0 in every synapse of the block.  When fewer than ``sparse_below`` (default 0.8) of a block's
inputs are plastic, the update reads only the plastic inputs' pre-synaptic rows (same result; the
fraction is logged as ``plastic_b<l>``).

Per-block learning rates (``block_lr``): block l learns with η_l = s_l · η; s_l = 0 freezes it (it
still encodes for the blocks above; its hinge is not evaluated), e.g. ``block_lr=[0, 0, 1]`` trains
only the top block on two pre-trained (e.g. Hebbian) lower blocks.

Positives (``positives=``): ``views`` -- two augmented views of each image (context = view 1,
target = view 2); ``grid`` -- CPC-style patch grid: overlapping patches (``patch`` pixels, stride
``patch_stride``) encoded separately, the patch ``k`` rows below is predicted from each context patch.
"""
from __future__ import annotations

import numpy as np

from ..encoders import Block
from ..errors import UserError
from ..kernels.plasticity import pooled_post, scatter_scaled_rows, winner_post
from ..layers._blas import one_blas_thread
from ..layers._util import BufferPool, PooledLayer
from .base import Rule, make_optimizer

VARIANTS = ("clapp", "clapp_s")
POSITIVES = ("views", "grid")


class _BlockParts:
    """A block seen as [flatten] -> weights (conv2d | dense) -> activation -> [max-pool], or as
    conv2d -> relu_maxpool2d (the fused, faster form of conv -> ReLU -> max-pool)."""

    def __init__(self, block: Block, index: int, buffers: BufferPool | None = None):
        from ..kernels.plasticity import ACTS
        from ..layers import Conv2d, Dense, Flatten, MaxPool2d, ReLUMaxPool2d

        layers = list(block.layers)
        self.flatten = None
        if layers and isinstance(layers[0], Flatten):
            self.flatten = layers.pop(0)
        self.fused = (len(layers) == 2 and isinstance(layers[0], Conv2d)
                      and isinstance(layers[1], ReLUMaxPool2d))
        ok = self.fused or (len(layers) in (2, 3) and isinstance(layers[0], (Conv2d, Dense)))
        act = "relu" if self.fused else {"ReLU": "relu", "Identity": "identity", "Tanh": "tanh",
                                         "Sigmoid": "sigmoid"}.get(type(layers[1]).__name__) if ok else None
        ok = ok and act in ACTS
        if ok and len(layers) == 3:
            pool = layers[2]
            ok = (type(pool) is MaxPool2d and tuple(pool.stride) == tuple(pool.size)
                  and pool.size[0] == pool.size[1])
        if ok and self.fused:
            ok = tuple(layers[1].stride) == tuple(layers[1].size)
        if not ok:
            raise UserError(f"CLAPP needs blocks of the form [flatten] -> conv2d|dense -> "
                            f"relu|tanh|sigmoid|identity -> [maxpool2d with stride = size], or "
                            f"conv2d -> relu_maxpool2d; block {index} is {block!r}")
        self.weights, self.act = layers[0], act
        self.act_layer = None if self.fused else layers[1]
        self.pool_layer = layers[-1] if (self.fused or len(layers) == 3) else None
        self.pool = self.pool_layer.size[0] if self.pool_layer is not None else 1
        self.layers = block.layers
        # δ has the shape of the pre-pool activity (tens of MB for block 1): a fresh array every
        # step would cost more in page faults than the kernel that fills it, so it is pooled.  With
        # ``buffers`` (CLAPP.__init__: one pool for every block), δ and the block's layers use it.
        if buffers is None:
            self._buffers = BufferPool(max_buffers=1)
        else:
            self._buffers = buffers
            for layer in self.layers:
                if isinstance(layer, PooledLayer):
                    layer.use_pool(buffers)

    def _streamed(self) -> bool:
        """A first block (conv keeping its input -> ReLU + max-pool): forward and update run in
        cache-sized blocks of images (:mod:`bioplausible.layers.fused`), never storing the
        pre-pool activity or δ."""
        from ..layers import fused

        return self.fused and self.flatten is None and fused.fusable([self.weights, self.pool_layer])

    def forward(self, x):
        """Returns (block output, what ``update`` needs, the weights' cache)."""
        if self._streamed():
            from ..layers import fused

            h, (wcache, pcache) = fused.forward(self.weights, self.pool_layer, x)
            return h, pcache, wcache
        if self.flatten is not None:
            x = self.flatten(x)
        a, wcache = self.weights.forward(x)
        if self.fused:
            h, pcache = self.pool_layer.forward(a)
            return h, pcache, wcache
        r = self.act_layer(a)
        h = self.pool_layer(r) if self.pool_layer is not None else r
        return h, r, wcache

    def update(self, wcache, post, dh, rows=None):
        """Gradient (= minus the update) of the block's weights from dL/d(block output) ``dh``:
        post-synaptic factor from the fused kernel, then the Hebbian sum x_i δ_j (one BLAS product).

        ``rows`` (sample indices) restricts the sum to the samples whose modulator is not zero:
        the others have δ = 0 and contribute nothing, so their pre-synaptic rows are not read."""
        from ..layers._parallel import plan, run

        subset = rows is not None
        if self._streamed() and getattr(wcache, "has_x", False):
            # for ReLU + max-pool, δ is the pool's backward of dh: winner · [y > 0] · dh
            from ..layers import fused
            from ..layers.pool import MaxPoolCache

            if subset:
                rows = np.asarray(rows)
                wcache = wcache.take(rows)
                post = MaxPoolCache(np.take(post.arg, rows, axis=0), np.take(post.y, rows, axis=0),
                                    (len(rows),) + tuple(post.x_shape[1:]))
                dh = np.take(dh, rows, axis=0)
            return self._layer_grads(fused.weight_grads(self.weights, self.pool_layer,
                                                        [wcache, post], dh)[0])
        rows = np.asarray(rows) if subset else np.arange(len(dh))
        if self.fused:
            delta = self._buffers.get((len(rows),) + tuple(post.x_shape[1:]), post.y.dtype)

            def part(i, b0, b1):        # slices of samples on every core (the kernel drops the GIL)
                winner_post(post, dh, self.pool_layer.size, self.pool_layer.stride,
                            rows=rows[b0:b1], out=delta[b0:b1])
        else:
            r4 = post if post.ndim == 4 else post[:, None, None, :]
            dh4 = dh if dh.ndim == 4 else dh[:, None, None, :]
            delta = self._buffers.get((len(rows),) + r4.shape[1:], np.result_type(r4.dtype, dh4.dtype))

            def part(i, b0, b1):
                pooled_post(r4, dh4, self.pool, self.act, rows=rows[b0:b1], out=delta[b0:b1])
        run(plan(len(rows), delta.size), part)
        if not self.fused:
            delta = delta.reshape((len(rows),) + post.shape[1:])     # dense: (n, 1, 1, D) -> (n, D)
        if subset:          # conv: the rows' receptive fields gathered chunk by chunk, never copied
            return self._layer_grads(self.weights.weight_grads_rows(wcache, delta, rows))
        return self._layer_grads(self.weights.weight_grads(wcache, delta))

    def _layer_grads(self, g: dict) -> list:
        """One gradient dict per layer of the block: ``g`` for the weights, ``{}`` for the others."""
        grads = [{} for _ in self.layers]
        grads[self.layers.index(self.weights)] = g
        return grads


def hinge_pairs(Z, ci, ti, y, w, W_pred, W_retro=None, soft: float = 0.0, tau: float = 0.0):
    """Block-local CLAPP loss over pairs and its gradients.

    ``Z`` (B, D): codes of every input of the batch; pair p compares target ``Z[ti[p]]`` with the
    prediction from context ``Z[ci[p]]``, label ``y[p]`` = ±1, weight ``w[p]`` (the loss is
    Σ_p w_p max(0, 1 − y_p u_p)).  ``W_retro=None`` means shared weights (W_retro = W_predᵀ).
    ``soft`` β > 0 smooths the hinge into (1/β) log(1 + e^{β(1 − y u)}), whose gate is graded,
    γ = y σ(β (1 − y u)), instead of y H(1 − y u) (β → ∞ gives the hinge back).
    ``tau`` τ > 0 replaces the hinge by the softmax (InfoNCE) contrast of CPC: the pairs must be
    laid out as K + 1 blocks of m (block 0 the positives, block k the k-th negative of the same
    m contexts), and the loss is Σ_j w_j [−log softmax_k(u_kj / τ)]_{k=0}, whose gate is graded and
    competitive: γ = (1 − p_0j)/τ for the positive, −p_kj/τ for negative k (p the softmax).

    Returns ``(loss, dZ, dW_pred, dW_retro or None, u)`` -- gradients of the loss (the retrodiction
    term of dZ uses W_retro, so it is the exact gradient only for shared weights).
    """
    zc, zt = Z[ci], Z[ti]
    pred = zc @ W_pred.T                              # (P, D): W_pred c
    u = np.einsum("pd,pd->p", zt, pred)
    if tau > 0:
        m = int(np.count_nonzero(y > 0))
        if m == 0 or len(u) % m or np.any(y[:m] <= 0) or np.any(y[m:] > 0):
            raise UserError("the softmax contrast needs the pairs as blocks of m: m positives, then "
                            "K blocks of m negatives of the same contexts (CLAPP-s layout)")
        s_ = (u / tau).reshape(-1, m)                 # (K + 1, m): row 0 the positives
        p = np.exp(s_ - s_.max(axis=0))
        p /= p.sum(axis=0)
        wj = w[:m]
        loss = float(np.sum(wj * -np.log(np.maximum(p[0], 1e-300))))
        g = p * wj / tau                              # dL/du_kj = w_j (p_kj − [k = 0]) / τ
        g[0] -= wj / tau
        gu = g.reshape(-1).astype(Z.dtype)
    else:
        margin = 1.0 - y * u
        if soft > 0:
            bm = soft * margin
            loss = float(np.sum(w * np.logaddexp(0.0, bm)) / soft)
            gate = 0.5 * (1.0 + np.tanh(0.5 * bm))    # σ(β·margin), without overflow
        else:
            gate = margin > 0
            loss = float(np.sum(w * np.maximum(margin, 0.0)))
        gu = (-(y * gate) * w).astype(Z.dtype)         # dL/du = −γ·w
    retro = zt @ (W_pred if W_retro is None else W_retro.T)   # (P, D): W_retro z
    dZ = np.zeros_like(Z)
    if dZ.size:
        # dZ[t_p] += gu_p (W_pred c_p), dZ[c_p] += gu_p (W_retro z_p), pair by pair
        scatter_scaled_rows(dZ, np.ascontiguousarray(ti, np.int64), gu,
                            np.ascontiguousarray(pred, Z.dtype))
        scatter_scaled_rows(dZ, np.ascontiguousarray(ci, np.int64), gu,
                            np.ascontiguousarray(retro, Z.dtype))
    dW_pred = (gu[:, None] * zt).T @ zc
    dW_retro = None if W_retro is None else (gu[:, None] * zc).T @ zt
    return loss, dZ, dW_pred, dW_retro, u


def code_terms(Z, ci, ti, y, w, W_pred, W_retro=None, code_norm: bool = False,
               decorrelate: float = 0.0, unit_norm: bool = False, soft: float = 0.0,
               tau: float = 0.0):
    """The block's loss on its codes ``Z`` (B, D): the CLAPP hinge (:func:`hinge_pairs`) on the
    codes, standardised with fixed batch statistics if ``code_norm``, each then divided by its
    length if ``unit_norm`` (ẑ = z / ‖z‖, differentiated exactly), plus ``decorrelate`` ν times the
    off-diagonal covariance penalty (1/D) Σ_{i≠j} C_ij² (on the codes before ``unit_norm``).
    ``soft`` > 0 smooths the hinge, ``tau`` > 0 replaces it by the softmax contrast (see
    :func:`hinge_pairs`).  Returns what ``hinge_pairs`` returns (loss including the penalty; dZ
    with respect to the raw codes)."""
    if code_norm:
        scale = Z.std(axis=0) + 1e-3
        Zs = (Z - Z.mean(axis=0)) / scale
    else:
        scale, Zs = None, Z
    if unit_norm:
        length = np.sqrt(np.einsum("bd,bd->b", Zs, Zs))[:, None] + 1e-6
        Zn = Zs / length
        loss, dZn, dWp, dWr, u = hinge_pairs(Zn, ci, ti, y, w, W_pred, W_retro, soft, tau)
        # d(z/‖z‖) = (I − ẑẑᵀ) dz / ‖z‖: the unit's own error minus one scalar per input, the
        # population's ẑᵀ∂L/∂ẑ (a divisive-normalisation feedback inside the block)
        dZ = (dZn - Zn * np.einsum("bd,bd->b", Zn, dZn)[:, None]) / length
    else:
        loss, dZ, dWp, dWr, u = hinge_pairs(Zs, ci, ti, y, w, W_pred, W_retro, soft, tau)
    if decorrelate:
        from ..losses import covariance_penalty

        if len(Zs) < 2:
            raise UserError("decorrelation needs a batch of at least 2 codes")
        loss_c, dc = covariance_penalty(Zs, decorrelate)
        loss += loss_c
        dZ = dZ + dc
    if scale is not None:
        dZ = dZ / scale
    return loss, dZ.astype(Z.dtype, copy=False), dWp, dWr, u


def head_forward(Z, V, V2=None):
    """g = ρ(V z) for every code (ρ = ReLU), or g = V₂ ρ(V z) with an output layer ``V2``; without
    a head (``V`` None) the codes themselves.  Returns (g, h = ρ(V z) or None) -- h is all the
    backward pass needs (ρ'(V z) = [h > 0])."""
    if V is None:
        return Z, None
    h = np.maximum(Z @ V.T, 0.0)
    return (h if V2 is None else h @ V2.T), h


def head_backward(Z, V, h, dG, V2=None):
    """Gradients through the head, summed over the batch: with g = ρ(V z), ∂L/∂z = Vᵀ (ρ'(V z) ⊙
    ∂L/∂g) and ∂L/∂V = (ρ'(V z) ⊙ ∂L/∂g) zᵀ; with an output layer, g = V₂ h, h = ρ(V z):
    ∂L/∂V₂ = (∂L/∂g) hᵀ and ∂L/∂h = V₂ᵀ ∂L/∂g takes the place of ∂L/∂g.  Returns (∂L/∂z, ∂L/∂V,
    ∂L/∂V₂); without a head (dG, None, None), without an output layer ∂L/∂V₂ is None."""
    if V is None:
        return dG, None, None
    dV2 = None
    if V2 is not None:
        dV2 = dG.T @ h
        dG = dG @ V2
    dpre = dG * (h > 0)
    return (dpre @ V).astype(Z.dtype, copy=False), dpre.T @ Z, dV2


def patch_grid(x: np.ndarray, patch: int, stride: int) -> tuple[np.ndarray, int, int]:
    """(N, H, W, C) -> (N·gh·gw, patch, patch, C) patches in row-major grid order, and gh, gw."""
    n, h, w, c = x.shape
    if patch > min(h, w):
        raise UserError(f"patch size {patch} is larger than the images ({h}x{w})")
    gh, gw = (h - patch) // stride + 1, (w - patch) // stride + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (patch, patch), axis=(1, 2))
    win = win[:, ::stride, ::stride][:, :gh, :gw]          # (N, gh, gw, C, p, p)
    out = np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n * gh * gw, patch, patch, c)
    return out, gh, gw


def _nonnegative(name: str, value, meaning: str) -> float:
    if not (np.isfinite(value) and value >= 0):
        raise UserError(f"{name} ({meaning}) must be >= 0, got {value}")
    return float(value)


def _width(name: str, value, meaning: str) -> int:
    if value < 0 or int(value) != value:
        raise UserError(f"{name} ({meaning}; 0 = none) must be a whole number >= 0, got {value}")
    return int(value)


class CLAPP(Rule):
    """Layer-wise CLAPP with explicit three-factor updates (see the module docstring)."""

    local = True

    def __init__(self, encoder, view_cfg, variant: str = "clapp", positives: str = "views", norm=None,
                 lr: float = 3e-4, optimizer: str = "adam", weight_decay: float = 0.0,
                 negatives: int = 1, patch: int | None = None, patch_stride: int | None = None,
                 k: int = 1, pred_scale: float = 0.1, code_norm: bool = False,
                 decorrelate: float = 0.0, sparse_below: float = 0.8, block_lr=None,
                 symmetric: bool = False, unit_norm: bool = False, soft_gate: float = 0.0,
                 pred_lr: float = 1.0, softmax_tau: float = 0.0, head: int = 0, head_out: int = 0,
                 seed: int = 0):
        """``block_lr`` -- per-block factor s_l on the learning rate: block l (its feed-forward
        weights, W_pred and W_retro) learns with η_l = s_l · ``lr``.  One value applies to every
        block; ``None`` means 1 everywhere.  s_l = 0 freezes block l: it still encodes its input
        for the blocks above, but its hinge is not evaluated and none of its synapses change
        (e.g. ``block_lr=[0, 0, 1]`` keeps two pre-trained lower blocks and trains only the top
        one).  Each block's rule stays local; only how fast it learns differs.  ``pred_lr`` -- the
        predictor's (W_pred, W_retro) rate relative to its block's: η_pred = ``pred_lr`` · η_l (0 keeps
        the initial random predictor fixed)."""
        super().__init__()
        if not 0.0 <= sparse_below <= 1.0:
            raise UserError(f"sparse_below must be in [0, 1], got {sparse_below}")
        self.sparse_below = float(sparse_below)
        if variant not in VARIANTS:
            raise UserError(f"unknown CLAPP variant {variant!r}; allowed: {', '.join(VARIANTS)}")
        if positives not in POSITIVES:
            raise UserError(f"unknown positives {positives!r}; allowed: {', '.join(POSITIVES)}")
        if decorrelate < 0:
            raise UserError(f"decorrelate must be >= 0, got {decorrelate}")
        self.code_norm, self.decorrelate = bool(code_norm), float(decorrelate)
        for name, value, why in (
                ("symmetric", symmetric, "CLAPP's either/or update gives each sample one pair"),
                ("softmax_tau", softmax_tau, "the softmax compares each context's positive with its K negatives"),
                ("head", head, "the head's feedback uses Vᵀ, the symmetry only the shared-weight variant assumes")):
            if value and variant != "clapp_s":
                raise UserError(f"{name} needs variant='clapp_s' ({why}); use clapp_s or turn it off")
        self.symmetric, self.unit_norm = bool(symmetric), bool(unit_norm)
        self.soft_gate = _nonnegative("soft_gate", soft_gate, "β of the smoothed hinge; 0 = the hinge")
        self.softmax_tau = _nonnegative("softmax_tau", softmax_tau, "the softmax contrast's temperature; 0 = the hinge")
        if self.soft_gate and self.softmax_tau:
            raise UserError("soft_gate smooths the hinge and softmax_tau replaces it: set one of them, not both")
        _nonnegative("pred_lr", pred_lr, "W_pred's rate relative to the block's")
        self.head = _width("head", head, "width of the nonlinear layer the contrast compares")
        self.head_out = _width("head_out", head_out, "width of the head's linear output layer")
        if self.head_out and not self.head:
            raise UserError("head_out is the output layer of a head: set head (its rectified "
                            "layer's width) too, or head_out=0")
        if negatives < 1:
            raise UserError(f"negatives must be >= 1, got {negatives}")
        if not (np.isfinite(pred_scale) and pred_scale > 0):
            raise UserError(f"pred_scale (the spread of the initial W_pred / W_retro) must be a "
                            f"positive number, got {pred_scale}")
        if not (np.isfinite(weight_decay) and weight_decay >= 0):
            raise UserError(f"weight_decay must be >= 0, got {weight_decay}")
        self.name, self.variant, self.positives = variant, variant, positives
        self.view_cfg, self.negatives, self.k, self.norm = view_cfg, negatives, k, norm
        size = min(encoder.in_shape[:2]) if len(encoder.in_shape) == 3 else None
        if positives == "grid":
            if size is None:
                raise UserError("grid positives need image inputs")
            self.patch = patch or size // 2
            self.patch_stride = patch_stride or self.patch // 2
        # One buffer pool for every layer of the encoder and every block's δ.  The blocks learn one
        # after another and each drops its caches before the next block runs, so block l + 1 works
        # in block l's buffers: the peak is the largest block's working set, not the sum over blocks
        # (no block keeps another block's activations).  Safe: a pooled buffer is handed out again
        # only when nothing refers to it any more (BufferPool), and CLAPP runs one layer at a time.
        n_blocks = len(encoder.blocks)
        self._pool = BufferPool(max_buffers=8 * n_blocks)
        self.parts = [_BlockParts(b, i, self._pool) for i, b in enumerate(encoder.blocks)]
        scales = [1.0] if block_lr is None else [float(v) for v in np.atleast_1d(block_lr)]
        if len(scales) == 1:
            scales = scales * n_blocks
        if len(scales) != n_blocks or any(not np.isfinite(v) or v < 0 for v in scales):
            raise UserError(f"block_lr needs one value or one per block ({n_blocks}), each >= 0; "
                            f"got {block_lr}")
        if not any(scales):
            raise UserError("block_lr is 0 for every block: nothing would learn")
        self.block_lr = scales
        rng = np.random.default_rng([seed, 8])
        self.preds = []
        rng_head = np.random.default_rng([seed, 9])
        for i, (b, d) in enumerate(zip(encoder.blocks, encoder.code_dims)):
            dp = self.head_out or self.head or d
            mats = {"w_pred": (pred_scale * rng.standard_normal((dp, dp)) / np.sqrt(dp)).astype(np.float32)}
            if variant == "clapp":
                mats["w_retro"] = (pred_scale * rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
            if self.head:      # He init: the head's units start active for about half the codes
                mats["head"] = (rng_head.standard_normal((self.head, d)) * np.sqrt(2.0 / d)).astype(np.float32)
            if self.head_out:  # a linear layer keeps the variance of its input
                mats["head2"] = (rng_head.standard_normal((self.head_out, self.head))
                                 / np.sqrt(self.head)).astype(np.float32)
            self.preds.append(mats)
            self.modules[f"pred{i}"] = [mats]
            if pred_lr == 1.0:
                self.optimizers[f"block{i}"] = make_optimizer(b.params + [mats], optimizer,
                                                              lr * scales[i], weight_decay)
            else:     # the predictor at its own rate (Adam is blind to a scaled gradient)
                self.optimizers[f"block{i}"] = make_optimizer(b.params, optimizer, lr * scales[i],
                                                              weight_decay)
                self.optimizers[f"pred{i}"] = make_optimizer([mats], optimizer,
                                                             lr * scales[i] * pred_lr, weight_decay)

    # -- which inputs, which pairs ----------------------------------------------------------
    def make_inputs(self, x: np.ndarray, rng: np.random.Generator):
        """Returns (inputs, ci, ti, y, w): the batch to encode and the (context, target) pairs."""
        from ..views import derangement
        from .ssl import two_views

        n = len(x)
        if self.positives == "views" and self.variant == "clapp":
            # either/or: a sample with a negative update needs no second view of its own image --
            # its target is the context view of another image, which is encoded anyway.  Only the
            # positives' second views are made: 1.5 views per image on average instead of 2.
            from .ssl import one_view

            y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
            pos = np.flatnonzero(y > 0)
            X = np.concatenate([one_view(x, self.view_cfg, rng, self.norm),
                                one_view(x[pos], self.view_cfg, rng, self.norm)])
            ti = derangement(n, rng)
            ti[pos] = n + np.arange(len(pos))
            return X, np.arange(n), ti, y, np.full(n, 1.0 / n)
        if self.positives == "views":
            X = two_views(x, self.view_cfg, rng, self.norm)
            ctx = np.arange(n)
            tgt_same, others = n + np.arange(n), [n + derangement(n, rng) for _ in range(self.negatives)]
        else:
            flip = rng.random(n) < 0.5           # patches keep their geometry: flips only
            x = x.copy()
            x[flip] = x[flip, :, ::-1]
            X, gh, gw = patch_grid(x, self.patch, self.patch_stride)
            if gh <= self.k:
                raise UserError(f"a {gh}x{gw} patch grid has no patch {self.k} rows below")
            g = gh * gw
            img = np.repeat(np.arange(n), (gh - self.k) * gw)
            pos = np.tile(np.arange((gh - self.k) * gw), n)
            ctx = img * g + pos
            tgt_same = ctx + self.k * gw
            others = [derangement(n, rng)[img] * g + pos + self.k * gw for _ in range(self.negatives)]
        if self.symmetric:
            # each positive pair also runs the other way (the target predicts its context, against
            # K other images at the context's place): twice the pairs from the same encoded inputs
            if self.positives == "views":
                back = [derangement(n, rng) for _ in range(self.negatives)]
            else:
                back = [derangement(n, rng)[img] * g + pos for _ in range(self.negatives)]
            ctx, tgt_same = np.concatenate([ctx, tgt_same]), np.concatenate([tgt_same, ctx])
            others = [np.concatenate([a, b]) for a, b in zip(others, back)]
        m = len(ctx)
        if self.variant == "clapp":
            y = np.where(rng.random(m) < 0.5, 1.0, -1.0)
            ti = np.where(y > 0, tgt_same, others[0])
            return X, ctx, ti, y, np.full(m, 1.0 / m)
        K = len(others)
        ci = np.concatenate([ctx] * (K + 1))
        ti = np.concatenate([tgt_same] + others)
        y = np.concatenate([np.ones(m)] + [-np.ones(m)] * K)
        w = np.concatenate([np.full(m, 1.0 / m)] + [np.full(m, 1.0 / (m * K))] * K)
        return X, ci, ti, y, w

    def step(self, encoder, batch: dict) -> dict:
        X, ci, ti, y, w = self.make_inputs(batch["x"], batch["rng"])
        y, w = y.astype(np.float32), w.astype(np.float32)
        metrics, h = {}, X
        for i, part in enumerate(self.parts):
            out, r, wcache = part.forward(h)
            if self.block_lr[i] == 0:     # frozen block: encodes for the blocks above, learns nothing
                h = out
                del r, wcache
                continue
            Z = Block.code(out)
            P = self.preds[i]
            with one_blas_thread():       # small products: a second BLAS thread only costs waits
                G, hid = head_forward(Z, P.get("head"), P.get("head2"))
                loss, dG, dWp, dWr, u = code_terms(G, ci, ti, y, w, P["w_pred"], P.get("w_retro"),
                                                   self.code_norm, self.decorrelate, self.unit_norm,
                                                   self.soft_gate, self.softmax_tau)
                dZ, dV, dV2 = head_backward(Z, P.get("head"), hid, dG, P.get("head2"))
            # Only inputs whose modulator reaches them (an active hinge, as target or context)
            # change synapses; the others have δ = 0 and are skipped when they are many.
            plastic = np.flatnonzero(np.any(dZ != 0, axis=1))
            rows = plastic if len(plastic) < self.sparse_below * len(Z) else None
            dh = Block.code_backward(out.shape, dZ)
            grads = part.update(wcache, r, dh, rows=rows)
            pg = {"w_pred": dWp}
            if dWr is not None:
                pg["w_retro"] = dWr
            if dV is not None:
                pg["head"] = dV
            if dV2 is not None:
                pg["head2"] = dV2
            if f"pred{i}" in self.optimizers:
                self.optimizers[f"block{i}"].step(grads)
                self.optimizers[f"pred{i}"].step([pg])
            else:
                self.optimizers[f"block{i}"].step(grads + [pg])
            metrics[f"loss_b{i + 1}"] = loss
            metrics[f"acc_b{i + 1}"] = float(np.mean((u > 0) == (y > 0)))
            metrics[f"plastic_b{i + 1}"] = len(plastic) / max(1, len(Z))
            h = out       # the next block sees this block's output; nothing flows back
            # drop this block's caches and gradients: the next block reuses their buffers
            del r, wcache, dh, grads, pg, dZ, Z
        L = max(i + 1 for i, s in enumerate(self.block_lr) if s > 0)     # the top learning block
        metrics["loss"] = metrics[f"loss_b{L}"]
        return metrics
