r"""Three-factor learning rules: eligibility traces × a broadcast neuromodulator.

A synapse i → j keeps a decaying memory of coincident pre- and postsynaptic activity, the
**eligibility trace**, and changes only when a third, broadcast factor M(t) arrives:

    τ_e de_ij/dt = −e_ij + pre_i(t) · post_j(t)        (flag set by a Hebbian coincidence)
    Δw_ij(t)     = η · M(t) · e_ij(t)                   (consolidated by the neuromodulator)

In discrete time with step Δt the trace is e ← λ e + pre ⊗ post with λ = exp(−Δt/τ_e)
(Gerstner, Lehmann, Liakoni, Corneil & Brea 2018, "Eligibility traces and plasticity on
behavioral time scales").  A pairing at time 0 followed by a modulator pulse at time d therefore
changes the weight by η · M · exp(−d/τ_e): the trace bridges the delay between an action and its
reward (the distal reward problem, Izhikevich 2007).

Modulators (what M(t) stands for):

* :func:`reward_modulator` -- reward minus a running baseline, M = r − b̄ (dopamine-like reward
  signal of REINFORCE / node perturbation; the baseline removes the bias of always-positive
  reward);
* :func:`td_error` -- reward prediction error δ = r + γ V(s') − V(s) of a critic (phasic dopamine,
  Schultz, Dayan & Montague 1997);
* :class:`Novelty` -- novelty of the current input (1/√(1 + visit count) of the familiarity-weighted
  place code; noradrenaline/acetylcholine-like), and :func:`surprise` -- a prediction error
  magnitude relative to its running mean.

The hot loops are numba kernels in ``bioplausible.kernels.three_factor``; the functions here check
inputs and hold the state.  The navigating agents that use these rules are in
``bioplausible.rl.agents``.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UserError


def trace_decay(tau_e: float, dt: float = 1.0) -> float:
    """λ = exp(−Δt/τ_e), the per-step decay factor of an eligibility trace."""
    if not (np.isfinite(tau_e) and tau_e > 0):
        raise UserError(f"the eligibility time constant tau_e must be > 0; got {tau_e}")
    if not (np.isfinite(dt) and dt > 0):
        raise UserError(f"the time step dt must be > 0; got {dt}")
    return math.exp(-dt / tau_e)


def three_factor_dw(e: np.ndarray, m: float, eta: float) -> np.ndarray:
    r"""The three-factor update Δw_ij = η · M · e_ij (a new array).

    ``e``: eligibility traces (the Hebbian flags of each synapse); ``m``: the broadcast modulator
    at this moment (reward, TD error, novelty…); ``eta``: learning rate."""
    return (eta * float(m)) * np.asarray(e)


class EligibilityTrace:
    r"""Eligibility traces of an (n_post × n_pre) weight matrix.

    :meth:`step` does one time step of e ← λ e + post ⊗ pre and returns Δw = η · M · e (the
    three-factor update, also added to ``w`` when given).  λ = exp(−Δt/τ_e).
    """

    def __init__(self, n_post: int, n_pre: int, tau_e: float, dt: float = 1.0):
        if int(n_post) < 1 or int(n_pre) < 1:
            raise UserError(f"trace shape must be positive; got ({n_post}, {n_pre})")
        self.decay = trace_decay(tau_e, dt)
        self.tau_e, self.dt = float(tau_e), float(dt)
        self.e = np.zeros((int(n_post), int(n_pre)))

    def reset(self):
        self.e[...] = 0.0

    def step(self, pre, post, m: float = 0.0, eta: float = 1.0, w: np.ndarray | None = None):
        pre = np.asarray(pre, dtype=np.float64).reshape(-1)
        post = np.asarray(post, dtype=np.float64).reshape(-1)
        if pre.shape[0] != self.e.shape[1] or post.shape[0] != self.e.shape[0]:
            raise UserError(f"trace of shape {self.e.shape} got pre {pre.shape} and post "
                            f"{post.shape}")
        self.e *= self.decay
        self.e += np.outer(post, pre)
        dw = three_factor_dw(self.e, m, eta)
        if w is not None:
            w += dw
        return dw


def run_three_factor(pre, post, m, w0, tau_e: float, eta: float, dt: float = 1.0,
                     record: bool = False):
    r"""Run the three-factor rule over a time series in one numba call.

    For t = 0 … T−1:  e ← λ e + post(t) ⊗ pre(t);   w ← w + η · M(t) · e   (λ = exp(−Δt/τ_e)).

    ``pre`` (T, n_pre) and ``post`` (T, n_post): activities; ``m`` (T,): the modulator;
    ``w0`` (n_post, n_pre): initial weights.  Returns ``(w, e)`` at the end, plus the weight
    history (T, n_post · n_pre) when ``record``.
    """
    from ..kernels.three_factor import trace_run_kernel

    pre = np.ascontiguousarray(pre, dtype=np.float64)
    post = np.ascontiguousarray(post, dtype=np.float64)
    m = np.ascontiguousarray(m, dtype=np.float64).reshape(-1)
    w = np.array(w0, dtype=np.float64, order="C", copy=True)
    if (pre.ndim != 2 or post.ndim != 2 or pre.shape[0] != post.shape[0]
            or m.shape[0] != pre.shape[0]):
        raise UserError(f"run_three_factor needs pre (T, n_pre), post (T, n_post) and m (T,) with "
                        f"the same T; got {pre.shape}, {post.shape}, {m.shape}")
    if w.shape != (post.shape[1], pre.shape[1]):
        raise UserError(f"w0 must have shape (n_post, n_pre) = {(post.shape[1], pre.shape[1])}; "
                        f"got {w.shape}")
    lam = trace_decay(tau_e, dt)
    e = np.zeros_like(w)
    hist = np.zeros((pre.shape[0] if record else 0, w.size))
    trace_run_kernel(pre, post, m, lam, float(eta), w, e, hist)
    return (w, e, hist) if record else (w, e)


def delayed_reward_credit(delays, tau_e: float, dt: float = 1.0, eta: float = 1.0,
                          n_pre: int = 4, n_post: int = 3, seed: int | None = None):
    r"""The distal reward problem: weight change caused by a reward arriving ``d`` after a pairing.

    Synapse (0, 0) sees one pre/post coincidence at t = 0; a unit modulator pulse arrives at
    t = d (one step).  Every other synapse sees pre or post alone (no coincidence) — and, when
    ``seed`` is given, random unrelated coincidences *after* the reward, which must not be
    credited.  Returns the change of w_00 for each delay: η · exp(−d/τ_e) in theory.
    """
    rng = np.random.default_rng(seed) if seed is not None else None
    out = []
    for d in np.atleast_1d(delays):
        k = int(round(float(d) / dt))
        if k < 0:
            raise UserError(f"delays must be ≥ 0; got {d}")
        T = k + 3
        pre = np.zeros((T, n_pre))
        post = np.zeros((T, n_post))
        pre[0, 0] = 1.0
        post[0, 0] = 1.0
        pre[1, 1] = 1.0                       # pre alone, then post alone: no coincidence,
        post[2, 2] = 1.0                      # so no trace and no credit for those synapses
        if rng is not None:                   # unrelated coincidences after the reward
            pre[k + 1:, 1:] = rng.random((T - k - 1, n_pre - 1))
            post[k + 1:, 1:] = rng.random((T - k - 1, n_post - 1))
        m = np.zeros(T)
        m[k] = 1.0
        w, _ = run_three_factor(pre, post, m, np.zeros((n_post, n_pre)), tau_e, eta, dt)
        out.append(w[0, 0])
    return np.asarray(out)


# ----------------------------------------------------------------------------- modulators

def td_error(r, v, v_next, gamma: float, terminal=False):
    r"""Reward prediction error δ = r + γ · V(s') · (1 − terminal) − V(s).

    The third factor of the actor-critic: positive when things turn out better than the critic
    predicted (phasic dopamine burst), negative when worse (dip)."""
    if not 0 <= gamma <= 1:
        raise UserError(f"gamma must lie in [0, 1]; got {gamma}")
    r, v, v_next = (np.asarray(x, dtype=np.float64) for x in (r, v, v_next))
    return r + gamma * v_next * (1.0 - np.asarray(terminal, dtype=np.float64)) - v


def reward_modulator(r, baseline):
    r"""M = r − b̄: reward relative to the expected reward (REINFORCE with baseline)."""
    return np.asarray(r, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)


class RewardBaseline:
    r"""Running reward baseline b̄ ← b̄ + α (r − b̄); :meth:`__call__` returns M = r − b̄ (with the
    baseline from *before* this reward) and then updates b̄."""

    def __init__(self, rate: float = 0.01, b0: float = 0.0):
        if not 0 < rate <= 1:
            raise UserError(f"baseline rate must lie in (0, 1]; got {rate}")
        self.rate, self.b = float(rate), float(b0)

    def __call__(self, r: float) -> float:
        m = float(r) - self.b
        self.b += self.rate * m
        return m


class Novelty:
    r"""Novelty of a population code x (e.g. place-cell rates) from visit counts:

        c ← c + x   (after each visit),      N(x) = 1 / √(1 + c·x / Σx)

    N = 1 for a never-seen input and decays as 1/√(visits) with repetition; an input overlapping
    only unvisited cells stays novel.  Used as a modulator M = N(x) − N̄ it gates plasticity by
    novelty (novelty-driven exploration, Gerstner et al. 2018)."""

    def __init__(self, n: int):
        if int(n) < 1:
            raise UserError(f"Novelty needs n ≥ 1 input units; got {n}")
        self.counts = np.zeros(int(n))

    def __call__(self, x, update: bool = True) -> float:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape[0] != self.counts.shape[0]:
            raise UserError(f"Novelty over {self.counts.shape[0]} units got {x.shape[0]}")
        s = x.sum()
        fam = float(self.counts @ x / s) if s > 0 else 0.0
        if update:
            self.counts += x
        return 1.0 / math.sqrt(1.0 + fam)


def surprise(prediction, observation, running_mean: float = 0.0):
    r"""Surprise modulator: the prediction error magnitude |o − p| (Euclidean over the last axis)
    minus its running mean, so that M > 0 only for more-than-usual surprise."""
    p = np.asarray(prediction, dtype=np.float64)
    o = np.asarray(observation, dtype=np.float64)
    if p.shape != o.shape:
        raise UserError(f"surprise: prediction {p.shape} and observation {o.shape} differ")
    err = np.sqrt(((o - p) ** 2).sum(-1)) if p.ndim else np.abs(o - p)
    return err - running_mean
