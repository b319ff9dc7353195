"""Checked wrappers around the numba spiking kernels (:mod:`bioplausible.kernels.spiking`).

Each simulator holds the network state (float64 arrays) and advances it by a :class:`SpikeTrain`
of precomputed input spikes; the brian2 builders in :mod:`bioplausible.spiking.brian` simulate the
same equations, with the same integration scheme and the same update order, from the same trains.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .params import CA3CA1Params, DiehlCookParams, RSTDPParams, SpikingError

NEVER = -(1 << 40)


@dataclasses.dataclass
class SpikeTrain:
    """Input spikes on a time-step grid: source ``idx[k]`` fires at step ``step[k]``.

    ``n_sources`` input neurons, ``n_steps`` steps in total (steps ``0..n_steps-1``, relative to
    the start of the run that consumes the train).  Spikes are sorted by step, then index; a source
    fires at most once per step (as in brian2's ``SpikeGeneratorGroup``).
    """

    idx: np.ndarray
    step: np.ndarray
    n_sources: int
    n_steps: int

    def __post_init__(self):
        self.idx = np.asarray(self.idx, dtype=np.int64).ravel()
        self.step = np.asarray(self.step, dtype=np.int64).ravel()
        if self.idx.shape != self.step.shape:
            raise SpikingError(f"SpikeTrain: idx and step differ in length "
                               f"({self.idx.size} vs {self.step.size})")
        if self.n_sources < 1 or self.n_steps < 0:
            raise SpikingError("SpikeTrain needs n_sources >= 1 and n_steps >= 0")
        if self.idx.size:
            if self.idx.min() < 0 or self.idx.max() >= self.n_sources:
                raise SpikingError(f"SpikeTrain: source index outside 0..{self.n_sources - 1}")
            if self.step.min() < 0 or self.step.max() >= self.n_steps:
                raise SpikingError(f"SpikeTrain: spike step outside 0..{self.n_steps - 1}")
            order = np.lexsort((self.idx, self.step))
            self.idx, self.step = self.idx[order], self.step[order]
            same = (np.diff(self.step) == 0) & (np.diff(self.idx) == 0)
            if same.any():
                raise SpikingError("SpikeTrain: a source fires twice in one time step")

    def __len__(self):
        return int(self.idx.size)

    def csr(self):
        """``(in_ptr, in_idx)``: the spikes of step n are ``in_idx[in_ptr[n]:in_ptr[n+1]]``."""
        ptr = np.zeros(self.n_steps + 1, np.int64)
        np.cumsum(np.bincount(self.step, minlength=self.n_steps), out=ptr[1:])
        return ptr, np.ascontiguousarray(self.idx)

    def times(self, dt: float) -> np.ndarray:
        """Spike times in seconds (``step * dt``)."""
        return self.step * dt

    @staticmethod
    def concat(trains, n_sources=None):
        """Trains one after another in time (their steps are offset by the earlier lengths)."""
        trains = list(trains)
        offs = np.cumsum([0] + [t.n_steps for t in trains])
        return SpikeTrain(np.concatenate([t.idx for t in trains]),
                          np.concatenate([t.step + o for t, o in zip(trains, offs)]),
                          n_sources or trains[0].n_sources, int(offs[-1]))

    @staticmethod
    def stack(trains):
        """Trains side by side (sources of later trains are numbered after the earlier ones)."""
        trains = list(trains)
        offs = np.cumsum([0] + [t.n_sources for t in trains])
        return SpikeTrain(np.concatenate([t.idx + o for t, o in zip(trains, offs)]),
                          np.concatenate([t.step for t in trains]), int(offs[-1]),
                          max(t.n_steps for t in trains))


def poisson_train(rates, n_steps: int, dt: float, rng: np.random.Generator) -> SpikeTrain:
    """Poisson spikes on the step grid: source i fires in each step with probability
    ``rates[i] * dt`` (Bernoulli per step, as brian2's ``PoissonGroup``).  ``rates`` in Hz."""
    rates = np.asarray(rates, dtype=np.float64).ravel()
    if not isinstance(rng, np.random.Generator):
        raise SpikingError("poisson_train needs a numpy.random.Generator (rng=...)")
    if (rates < 0).any() or not np.isfinite(rates).all():
        raise SpikingError("poisson_train: rates must be finite and >= 0 (Hz)")
    if (rates * dt > 1).any():
        raise SpikingError(f"poisson_train: rate * dt > 1 (max rate {rates.max()} Hz, dt {dt} s)")
    active = np.flatnonzero(rates > 0)
    if active.size == 0 or n_steps == 0:
        return SpikeTrain(np.zeros(0, np.int64), np.zeros(0, np.int64), rates.size, n_steps)
    # Bernoulli trials per step == geometric gaps between spikes: draw the gaps (a few per source
    # instead of one number per step and source), extend the rare rows that fall short.
    p = rates[active] * dt
    k = int(np.ceil((p * n_steps).max() + 6 * np.sqrt((p * n_steps).max()) + 4))
    pos = np.cumsum(rng.geometric(p[:, None], size=(active.size, k)), axis=1) - 1
    short = np.flatnonzero(pos[:, -1] < n_steps)
    rows = [pos]
    while short.size:
        more = pos[short, -1:] + np.cumsum(rng.geometric(p[short, None], size=(short.size, k)),
                                           axis=1)
        ext = np.full((active.size, k), n_steps, np.int64)
        ext[short] = more
        rows.append(ext)
        pos = ext
        short = short[more[:, -1] < n_steps]
    pos = np.concatenate(rows, axis=1)
    src, col = np.nonzero(pos < n_steps)
    return SpikeTrain(active[src], pos[src, col], rates.size, n_steps)


def _empty_record(capacity):
    return np.empty(capacity, np.int64), np.empty(capacity, np.int64)


def _check_train(train, n_sources, who):
    if not isinstance(train, SpikeTrain):
        raise SpikingError(f"{who}: expected a SpikeTrain, got {type(train).__name__}")
    if train.n_sources != n_sources:
        raise SpikingError(f"{who}: the train has {train.n_sources} sources, the network "
                           f"{n_sources} inputs")


# ----------------------------------------------------------------------------- Diehl & Cook
class DiehlCookNumba:
    """Reduced Diehl & Cook (2015) network in the numba kernel (see :class:`DiehlCookParams` for
    the equations).  ``w0`` (n_in, n_exc) initial input weights.  State persists across
    :meth:`run` calls; the clock (``self.step``) continues.
    """

    backend = "numba"

    def __init__(self, w0: np.ndarray, params: DiehlCookParams = DiehlCookParams(),
                 v0: float | None = None):
        w0 = np.asarray(w0, dtype=np.float64)
        if w0.ndim != 2 or min(w0.shape) < 1:
            raise SpikingError(f"DiehlCookNumba: w0 must be (n_in, n_exc), got {w0.shape}")
        if (w0 < 0).any() or (w0 > params.wmax).any():
            raise SpikingError(f"DiehlCookNumba: initial weights must lie in [0, {params.wmax}]")
        self.params = params
        self.n_in, self.n_exc = w0.shape
        self.w = np.ascontiguousarray(w0.copy())
        self.v = np.full(self.n_exc, params.v_rest if v0 is None else v0)
        self.ge = np.zeros(self.n_exc)
        self.gi = np.zeros(self.n_exc)
        self.theta = np.zeros(self.n_exc)
        self.lastspike = np.full(self.n_exc, NEVER, np.int64)
        self.xpre = np.zeros(self.n_in)
        self.pre_last = np.zeros(self.n_in, np.int64)
        self.xpost = np.zeros(self.n_exc)
        self.step = 0
        self._p = params.vector()

    def run(self, train: SpikeTrain, lr: float = 1.0, adapt: float = 1.0, record: int = 0):
        """Advance by ``train.n_steps`` steps. Returns spike counts per neuron (n_exc,) and, when
        ``record`` > 0, also ``(steps, idx)`` of the first ``record`` spikes (absolute steps)."""
        from ..kernels.spiking import diehl_cook_kernel

        _check_train(train, self.n_in, "DiehlCookNumba.run")
        ptr, idx = train.csr()
        counts = np.zeros(self.n_exc, np.int64)
        rs, ri = _empty_record(record)
        n = diehl_cook_kernel(ptr, idx, self.step, self.w, self.v, self.ge, self.gi, self.theta,
                              self.lastspike, self.xpre, self.pre_last, self.xpost, self._p,
                              float(lr), float(adapt), rs, ri, counts)
        self.step += train.n_steps
        if record:
            m = min(n, record)
            return counts, (rs[:m].copy(), ri[:m].copy())
        return counts

    def normalize(self):
        """Rescale each neuron's input weights to sum to ``params.norm_total`` (between images)."""
        normalize_columns(self.w, self.params.norm_total)

    def get_weights(self) -> np.ndarray:
        return self.w.copy()

    def set_weights(self, w):
        self.w[...] = w

    def get_theta(self) -> np.ndarray:
        return self.theta.copy()

    def set_theta(self, theta):
        self.theta[...] = theta


def normalize_columns(w: np.ndarray, total: float) -> None:
    """In place: each column (one neuron's inputs) rescaled to sum to ``total``."""
    s = w.sum(axis=0)
    s[s == 0] = 1.0
    w *= total / s


# ----------------------------------------------------------------------------- R-STDP
class RSTDPNumba:
    """Reward-modulated STDP network (see :class:`RSTDPParams`): ``n_plastic`` Poisson inputs ->
    ``n_post`` LIF neurons (plastic ``w0``), one background source per post neuron, a critic that
    schedules delayed dopamine when ``target = (i0, j0)`` fires pre-then-post.

    ``delays_steps``: the delay (in steps) of the k-th scheduled reward.  Trains have
    ``n_plastic + n_post`` sources (inputs first, then backgrounds).
    """

    backend = "numba"

    def __init__(self, w0, target, delays_steps, params: RSTDPParams = RSTDPParams()):
        w0 = np.asarray(w0, dtype=np.float64)
        if w0.ndim != 2:
            raise SpikingError(f"RSTDPNumba: w0 must be (n_plastic, n_post), got {w0.shape}")
        self.n_plastic, self.n_post = w0.shape
        i0, j0 = target
        if not (0 <= i0 < self.n_plastic and 0 <= j0 < self.n_post):
            raise SpikingError(f"RSTDPNumba: target {target} outside the weight matrix {w0.shape}")
        self.delays = np.asarray(delays_steps, dtype=np.int64).ravel()
        if self.delays.size == 0 or (self.delays < 0).any():
            raise SpikingError("RSTDPNumba: delays_steps must be a non-empty array of steps >= 0")
        self.params = params
        self.target = np.array([i0, j0], np.int64)
        self.w = np.ascontiguousarray(w0.copy())
        self.c = np.zeros_like(self.w)
        self.v = np.zeros(self.n_post)
        self.d = np.zeros(self.n_post)
        self.lastspike = np.full(self.n_post, NEVER, np.int64)
        self.apre = np.zeros(self.n_plastic)
        self.pre_last = np.zeros(self.n_plastic, np.int64)
        self.apost = np.zeros(self.n_post)
        self.critic = np.array([float(NEVER), -1.0, 0.0, 0.0])
        self.step = 0
        self._p = params.vector()

    def run(self, train: SpikeTrain, record: int = 100000, max_rewards: int = 100000):
        """Advance by ``train.n_steps``; returns ``(spike_steps, spike_idx, reward_steps)``."""
        from ..kernels.spiking import rstdp_kernel

        _check_train(train, self.n_plastic + self.n_post, "RSTDPNumba.run")
        ptr, idx = train.csr()
        rs, ri = _empty_record(record)
        delivered0 = int(self.critic[3])
        rew = np.empty(delivered0 + max_rewards, np.int64)
        n = rstdp_kernel(ptr, idx, self.step, self.n_plastic, self.w, self.c, self.v, self.d,
                         self.lastspike, self.apre, self.pre_last, self.apost, self.critic,
                         self.target, self.delays, self._p, rs, ri, rew)
        self.step += train.n_steps
        m = min(n, record)
        nr = min(int(self.critic[3]), rew.size)
        return rs[:m].copy(), ri[:m].copy(), rew[delivered0:nr].copy()

    def effective_weights(self) -> np.ndarray:
        """The weights as transmitted: ``clip(w, 0, wmax)``."""
        return np.clip(self.w, 0.0, self.params.wmax)


# ----------------------------------------------------------------------------- CA3 -> CA1
class DelayLIFNumba:
    """LIF neurons driven through delta synapses with per-synapse axonal delays (the CA3 -> CA1
    network; see :class:`CA3CA1Params`).  ``w`` (n_in, n_out), 0 = no synapse; ``delay_steps``
    (n_in, n_out) integer steps >= 0."""

    backend = "numba"

    def __init__(self, w, delay_steps, params: CA3CA1Params = CA3CA1Params()):
        w = np.asarray(w, dtype=np.float64)
        delay_steps = np.asarray(delay_steps)
        if w.ndim != 2 or delay_steps.shape != w.shape:
            raise SpikingError(f"DelayLIFNumba: w and delay_steps must be equal 2-D shapes, got "
                               f"{w.shape} and {delay_steps.shape}")
        if not np.issubdtype(delay_steps.dtype, np.integer) or (delay_steps < 0).any():
            raise SpikingError("DelayLIFNumba: delay_steps must be integers >= 0 (time steps)")
        self.params = params
        self.n_in, self.n_out = w.shape
        self.w = np.ascontiguousarray(w)
        self.delay = np.ascontiguousarray(delay_steps, dtype=np.int64)
        self.v = np.zeros(self.n_out)
        self.lastspike = np.full(self.n_out, NEVER, np.int64)
        self.buf = np.zeros((int(self.delay.max()) + 1, self.n_out))
        self.step = 0
        self._p = params.vector()

    def run(self, train: SpikeTrain, record: int = 100000):
        """Advance by ``train.n_steps``; returns ``(spike_steps, spike_idx)`` (absolute steps)."""
        from ..kernels.spiking import delay_lif_kernel

        _check_train(train, self.n_in, "DelayLIFNumba.run")
        ptr, idx = train.csr()
        rs, ri = _empty_record(record)
        n = delay_lif_kernel(ptr, idx, self.step, self.w, self.delay, self.v, self.lastspike,
                             self.buf, self._p, rs, ri)
        self.step += train.n_steps
        m = min(n, record)
        return rs[:m].copy(), ri[:m].copy()
