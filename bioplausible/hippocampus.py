r"""The CA3–CA1 delay model with time: CA3 predicts, CA1 compares with the input that comes later.

The temporal prediction hypothesis (Chen, Zhang, Cameron & Sejnowski, Neuron 2024) and its
machine-learning form PhiNet (Ishikawa, Yamada, Bao & Takezawa, ICLR 2025).  An entorhinal (EC)
input stream x_t drives a DG/CA3 code s_t; the recurrent CA3 collaterals turn it into a
prediction p_t of the code d steps ahead; CA1 receives CA3's output after the transmission delay
d through the Schaffer collaterals and the direct EC input at the same moment, and signals the
mismatch between them:

    s_t = relu(W_f x_t + b_f)                 EC → DG/CA3
    p_t = W_h s_t + b_h                       CA3 prediction of s_{t+d}
    e3_t = p_{t−d} − s_t                      CA3 mismatch
    e1_t = W_g p_{t−d} + b_g − x_t            CA1 mismatch (Schaffer input vs direct EC input)

    L_t = ½‖e3_t‖² + λ·½‖e1_t‖²,  the targets s_t and x_t are fixed when they arrive (the delay is
    the stop-gradient of non-contrastive learning).

Learning is online, one step at a time (numba kernel ``kernels.hippocampus``), by delta rules:
pre-synaptic activity (kept as an eligibility trace over the delay) × the mismatch available at the
synapse.  ΔW_g = −η λ e1 p_{t−d}ᵀ and ΔW_h = −η (e3 + λW_gᵀe1) s_{t−d}ᵀ are the exact gradients of
L_t.  The EC → DG/CA3 weights (``lr_encoder`` > 0) learn in one of two modes on the same network:
``local`` -- the CA3 mismatch fed back through one layer, δ = relu'(a) ⊙ W_hᵀ e3 (CA1's mismatch
would need two layers of weight transport, so it does not reach the encoder); ``backprop`` -- the
full gradient, δ = relu'(a) ⊙ W_hᵀ(e3 + λW_gᵀe1).  With ``lr_encoder = 0`` (default) DG is a fixed
random expansion and both modes coincide.

Inputs: :func:`track_positions` + :func:`place_input` (an animal running laps on a linear or
circular track, EC cells with Gaussian place tuning) and :func:`image_sequence` (a fixed sequence of
images presented in order, repeatedly).  After learning: :meth:`CA3CA1.lead_lag` (CA3's prediction
correlates best with the code d steps *later*: CA3 leads EC) and :meth:`CA3CA1.replay` (cued with
the first element, CA3 iterates its recurrent map alone and replays the sequence; the order is
scored with :func:`replay_order`, a Spearman rank correlation).

The image-view version on a convolutional encoder (two augmented views and the original image, the
PhiNet protocol) is the rule ``rules.phinet.PhiNet``.
"""
from __future__ import annotations

import numpy as np

from .errors import UserError

MODES = ("local", "backprop")
TRACKS = ("linear", "circular")


# ----------------------------------------------------------------------------------------- inputs
def track_positions(laps: int, steps_per_lap: int, track: str = "linear", speed_jitter: float = 0.0,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Positions in [0, 1) of an animal running ``laps`` laps at ``steps_per_lap`` steps per lap.

    ``linear``: the animal runs from 0 to 1 and is returned to the start (unidirectional laps,
    as on a linear track where only one running direction is analysed); ``circular``: it keeps
    going round.  ``speed_jitter`` > 0 multiplies every step by (1 + jitter·N(0, 1)), clipped at 0.
    """
    if track not in TRACKS:
        raise UserError(f"unknown track {track!r}; allowed: {', '.join(TRACKS)}")
    if laps < 1 or steps_per_lap < 2:
        raise UserError(f"need laps >= 1 and steps_per_lap >= 2, got {laps}, {steps_per_lap}")
    T = laps * steps_per_lap
    step = np.full(T, 1.0 / steps_per_lap)
    if speed_jitter > 0:
        if rng is None:
            raise UserError("speed_jitter needs an rng (numpy.random.Generator)")
        step *= np.clip(1.0 + speed_jitter * rng.standard_normal(T), 0.0, None)
    if track == "circular":
        return np.mod(np.concatenate([[0.0], np.cumsum(step[:-1])]), 1.0)
    pos = (np.arange(T) % steps_per_lap) / steps_per_lap        # linear: lap restarts at 0
    if speed_jitter > 0:
        lap = np.arange(T) // steps_per_lap
        pos = np.zeros(T)
        for l in range(laps):
            idx = np.flatnonzero(lap == l)
            pos[idx] = np.clip(np.concatenate([[0.0], np.cumsum(step[idx][:-1])]), 0.0, 1 - 1e-9)
    return pos


def place_input(pos: np.ndarray, n_ec: int = 100, width: float = 0.05, track: str = "linear",
                noise: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """EC rates (T, n_ec): Gaussian place tuning, centres evenly spaced on [0, 1), plus noise.

    x_i(pos) = exp(−dist(pos, c_i)² / (2·width²)) + noise·N(0, 1); dist wraps round on a circular
    track.  float32.
    """
    if n_ec < 2 or width <= 0:
        raise UserError(f"need n_ec >= 2 and width > 0, got {n_ec}, {width}")
    c = (np.arange(n_ec) + 0.5) / n_ec
    d = np.asarray(pos, float)[:, None] - c[None, :]
    if track == "circular":
        d = (d + 0.5) % 1.0 - 0.5
    x = np.exp(-d ** 2 / (2 * width ** 2))
    if noise > 0:
        if rng is None:
            raise UserError("noise needs an rng (numpy.random.Generator)")
        x = x + noise * rng.standard_normal(x.shape)
    return x.astype(np.float32)


def image_sequence(images: np.ndarray, repeats: int, noise: float = 0.0,
                   rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A fixed sequence of K images shown in order ``repeats`` times: (X (K·repeats, D), item ids).

    ``images`` (K, ...) are flattened; each presentation adds noise·N(0, 1) (float32).
    """
    imgs = np.asarray(images, np.float32).reshape(len(images), -1)
    if len(imgs) < 2 or repeats < 1:
        raise UserError(f"need at least 2 images and repeats >= 1, got {len(imgs)}, {repeats}")
    ids = np.tile(np.arange(len(imgs)), repeats)
    X = imgs[ids]
    if noise > 0:
        if rng is None:
            raise UserError("noise needs an rng (numpy.random.Generator)")
        X = X + noise * rng.standard_normal(X.shape).astype(np.float32)
    return np.ascontiguousarray(X, np.float32), ids


# ------------------------------------------------------------------------------------- analysis
def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b) or len(a) < 3:
        raise UserError(f"spearman needs two sequences of equal length >= 3, got {len(a)}, {len(b)}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def decode(states: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Index of the reference pattern with the highest cosine similarity, for every state."""
    def unit(z):
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return np.argmax(unit(np.asarray(states, float)) @ unit(np.asarray(reference, float)).T, axis=1)


def replay_order(decoded: np.ndarray, circular_bins: int | None = None) -> float:
    """Rank correlation between replay step and decoded element (order of the replayed sequence).

    For a circular track give ``circular_bins``: the decoded bins are unwrapped (a step of more
    than half the track counts as crossing the start) before ranking.
    """
    d = np.asarray(decoded, float)
    if circular_bins:
        ang = 2 * np.pi * d / circular_bins
        d = np.unwrap(ang) * circular_bins / (2 * np.pi)
    return spearman(np.arange(len(d)), d)


# ---------------------------------------------------------------------------------------- model
class CA3CA1:
    """EC → DG/CA3 → (recurrent CA3 prediction) → CA1, learnt online with delta rules.

    Parameters: ``n_ec`` EC inputs, ``n_ca3`` DG/CA3 units, ``delay`` d (steps from CA3 to CA1),
    ``lr`` η of the CA3 and CA1 synapses, ``lr_encoder`` η_f of EC → DG/CA3 (0 = fixed random
    expansion), ``ca1_weight`` λ, ``weight_decay`` ρ, ``mode`` local | backprop (how the encoder's
    error is formed; see the module docstring), ``seed``.  Learnt arrays end with ``_``.
    """

    def __init__(self, n_ec: int, n_ca3: int = 200, delay: int = 1, lr: float = 0.01,
                 lr_encoder: float = 0.0, ca1_weight: float = 1.0, weight_decay: float = 0.0,
                 mode: str = "local", init_scale: float = 0.1, seed: int = 0):
        if mode not in MODES:
            raise UserError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
        if delay < 1:
            raise UserError(f"delay must be >= 1 step, got {delay}")
        if n_ec < 1 or n_ca3 < 1:
            raise UserError(f"n_ec and n_ca3 must be >= 1, got {n_ec}, {n_ca3}")
        if lr <= 0 or lr_encoder < 0 or weight_decay < 0 or ca1_weight < 0:
            raise UserError("need lr > 0 and lr_encoder, weight_decay, ca1_weight >= 0")
        self.n_ec, self.n_ca3, self.delay, self.mode = int(n_ec), int(n_ca3), int(delay), mode
        self.lr, self.lr_encoder, self.lam, self.rho = float(lr), float(lr_encoder), float(ca1_weight), \
            float(weight_decay)
        rng = np.random.default_rng([seed, 21])
        f32 = np.float32
        self.W_f_ = (rng.standard_normal((n_ca3, n_ec)) / np.sqrt(n_ec)).astype(f32)
        self.b_f_ = np.zeros(n_ca3, f32)
        self.W_h_ = (init_scale * rng.standard_normal((n_ca3, n_ca3)) / np.sqrt(n_ca3)).astype(f32)
        self.b_h_ = np.zeros(n_ca3, f32)
        self.W_g_ = (init_scale * rng.standard_normal((n_ec, n_ca3)) / np.sqrt(n_ca3)).astype(f32)
        self.b_g_ = np.zeros(n_ec, f32)

    def _check(self, X) -> np.ndarray:
        X = np.ascontiguousarray(X, np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_ec:
            raise UserError(f"EC input must have shape (T, {self.n_ec}), got {X.shape}")
        if len(X) <= self.delay:
            raise UserError(f"the stream must be longer than the delay ({self.delay} steps)")
        if not np.isfinite(X).all():
            raise UserError("EC input contains NaN or inf")
        return X

    def run(self, X, learn: bool = True) -> dict:
        """Feed the stream ``X`` (T, n_ec) step by step (learning if ``learn``).

        Returns ``{"ca1_mismatch": (T,), "ca3_mismatch": (T,)}``: mean squared CA1 / CA3 mismatch at
        every step (NaN for the first d steps, before any delayed CA3 output has arrived).
        """
        from .kernels.hippocampus import ca3ca1_run_kernel

        X = self._check(X)
        e1, e3 = np.empty(len(X)), np.empty(len(X))
        ca3ca1_run_kernel(X, self.W_f_, self.b_f_, self.W_h_, self.b_h_, self.W_g_, self.b_g_,
                          self.delay, np.float32(self.lr), np.float32(self.lr_encoder),
                          np.float32(self.lam), np.float32(self.rho), self.mode == "backprop",
                          bool(learn), e1, e3)
        if not (np.isfinite(self.W_h_).all() and np.isfinite(self.W_g_).all()):
            raise UserError("the CA3/CA1 weights diverged; lower lr")
        return {"ca1_mismatch": e1, "ca3_mismatch": e3}

    # -- read-outs (no learning) --------------------------------------------------------------
    def code(self, X) -> np.ndarray:
        """DG/CA3 code s = relu(W_f x + b_f), (T, n_ca3)."""
        X = np.asarray(X, np.float32)
        return np.maximum(X @ self.W_f_.T + self.b_f_, 0.0)

    def predict(self, S) -> np.ndarray:
        """CA3's prediction p = W_h s + b_h of the code d steps ahead."""
        return np.asarray(S, np.float32) @ self.W_h_.T + self.b_h_

    def lead_lag(self, X, max_lag: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Mean cosine between CA3's prediction p_t and the code s_{t+k}, for k = −max_lag..max_lag.

        A peak at k = d > 0 means CA3 activity leads the input it receives (prediction); a peak at
        0 means it merely follows.  Returns (lags, correlation).
        """
        S = self.code(X)
        Pr = self.predict(S)
        lags = np.arange(-max_lag, max_lag + 1)
        Su = S / np.maximum(np.linalg.norm(S, axis=1, keepdims=True), 1e-12)
        Pu = Pr / np.maximum(np.linalg.norm(Pr, axis=1, keepdims=True), 1e-12)
        T = len(S)
        corr = np.empty(len(lags))
        for i, k in enumerate(lags):
            a, b = (Pu[:T - k], Su[k:]) if k >= 0 else (Pu[-k:], Su[:T + k])
            corr[i] = float(np.mean(np.sum(a * b, axis=1)))
        return lags, corr

    def replay(self, cue, steps: int) -> np.ndarray:
        """CA3 alone after a cue: c₀ = s(cue), c_{k+1} = relu(W_h c_k + b_h) rescaled to ‖c₀‖
        (global inhibition keeps the total activity fixed).  Returns (steps + 1, n_ca3)."""
        c = self.code(np.asarray(cue, np.float32).reshape(1, -1))[0]
        norm0 = max(float(np.linalg.norm(c)), 1e-12)
        out = [c]
        for _ in range(steps):
            c = np.maximum(self.W_h_ @ c + self.b_h_, 0.0)
            c = c * (norm0 / max(float(np.linalg.norm(c)), 1e-12))
            out.append(c)
        return np.array(out, np.float32)
