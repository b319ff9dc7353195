"""Inputs and read-outs of the spiking experiments, the same for both backends.

* :func:`distal_reward` -- Izhikevich (2007): one synapse among many is rewarded, with dopamine
  arriving 1-3 s after each of its pre-then-post pairings; it alone grows.
* :func:`ca3_ca1_sequence` -- CA3 -> CA1 with axonal delays: CA1 cell m is a coincidence detector
  of the CA3 volleys of the two previous sequence elements (delays ``delay_step`` and
  ``2 * delay_step``, minus a small lead).  When ``delay_step`` equals the sequence step the
  volleys coincide and CA1 fires for the predicted element *before* its EC input arrives;
  otherwise CA1 fires only once EC drives it.
"""
from __future__ import annotations

import numpy as np

from .numba_sim import DelayLIFNumba, RSTDPNumba, SpikeTrain, poisson_train
from .params import CA3CA1Params, RSTDPParams, SpikingError, steps


# ----------------------------------------------------------------------------- distal reward
def distal_reward_setup(n_plastic: int, n_post: int, duration: float, rate: float,
                        bg_rate: float, w_init: float, params: RSTDPParams,
                        rng: np.random.Generator):
    """Initial weights (n_plastic, n_post) = ``w_init``, the rewarded target (0, 0), reward delays
    (uniform in [delay_min, delay_max], in steps) and the input train (Poisson inputs at ``rate``,
    then one background source per post neuron at ``bg_rate``)."""
    if n_plastic < 2 or n_post < 1:
        raise SpikingError("distal_reward needs n_plastic >= 2 and n_post >= 1")
    n_steps = steps(duration, params.dt)
    w0 = np.full((n_plastic, n_post), float(w_init))
    delays = rng.integers(steps(params.delay_min, params.dt),
                          steps(params.delay_max, params.dt) + 1, size=100000)
    rates = np.concatenate([np.full(n_plastic, rate), np.full(n_post, bg_rate)])
    train = poisson_train(rates, n_steps, params.dt, rng)
    return w0, (0, 0), delays, train


def distal_reward(backend: str = "numba", n_plastic: int = 20, n_post: int = 5,
                  duration: float = 3600.0, rate: float = 2.0, bg_rate: float = 35.0,
                  w_init: float = 0.05, params: RSTDPParams = RSTDPParams(), seed: int = 0) -> dict:
    """Run the distal-reward experiment; returns initial/final effective weights, reward steps and
    spike counts.  ``backend``: ``numba`` or ``brian2`` (brian2's target set by
    :func:`bioplausible.spiking.brian.configure`)."""
    rng = np.random.default_rng(seed)
    w0, target, delays, train = distal_reward_setup(n_plastic, n_post, duration, rate, bg_rate,
                                                    w_init, params, rng)
    if backend == "numba":
        sim = RSTDPNumba(w0, target, delays, params)
        st, si, rew = sim.run(train, record=2_000_000)
        w = sim.effective_weights()
    elif backend == "brian2":
        from . import brian

        bn = brian.rstdp(w0, target, delays, train, params)
        bn.run(train.n_steps)
        st, si = brian.spikes_of(bn["spikes"], params.dt)
        rew, _ = brian.spikes_of(bn["rewards"], params.dt)
        w = np.clip(np.asarray(bn["syn"].w[:]).reshape(w0.shape), 0, params.wmax)
    else:
        raise SpikingError(f"backend {backend!r}: choose 'numba' or 'brian2'")
    return dict(w0=w0, w=w, target=target, rewards=rew, spike_steps=st, spike_idx=si,
                duration=duration, dt=params.dt)


# ----------------------------------------------------------------------------- CA3 -> CA1
def ca3_ca1_sequence(n_elements: int = 8, n_cells: int = 10, seq_step: float = 20e-3,
                     delay_step: float | None = None, lead: float = 3e-3, jitter: float = 0.5e-3,
                     w_ca3: float | None = None, w_ec: float | None = None,
                     params: CA3CA1Params = CA3CA1Params(), rng: np.random.Generator | None = None):
    """Inputs and wiring of the CA3 -> CA1 delay experiment.

    Element m (m = 0..n_elements-1) is presented at ``m * seq_step``: its ``n_cells`` CA3 cells
    and ``n_cells`` EC cells fire once each, with uniform jitter in [0, ``jitter``).  CA1 has one
    cell per element.  CA1 cell m receives CA3 element m-1 with delay ``delay_step - lead`` and
    CA3 element m-2 with delay ``2 * delay_step - lead`` (weight ``w_ca3`` per cell, one volley
    sub-threshold: ``n_cells * w_ca3 = 0.6``), and EC element m without delay (EC alone is
    supra-threshold: ``n_cells * w_ec = 1.5``).  Sources: CA3 cells first, then EC cells.
    Returns ``(w, delay_steps, train, onsets_steps)``.
    """
    if rng is None:
        raise SpikingError("ca3_ca1_sequence needs rng=numpy.random.Generator")
    if n_elements < 3 or n_cells < 1:
        raise SpikingError("ca3_ca1_sequence needs n_elements >= 3 and n_cells >= 1")
    delay_step = seq_step if delay_step is None else delay_step
    if delay_step - lead < 0:
        raise SpikingError("delay_step must be >= lead")
    dt = params.dt
    w_ca3 = 0.6 / n_cells if w_ca3 is None else w_ca3
    w_ec = 1.5 / n_cells if w_ec is None else w_ec
    n_src = 2 * n_elements * n_cells
    w = np.zeros((n_src, n_elements))
    dly = np.zeros((n_src, n_elements), np.int64)
    ec0 = n_elements * n_cells
    for m in range(n_elements):
        for back in (1, 2):
            if m - back < 0:
                continue
            rows = slice((m - back) * n_cells, (m - back + 1) * n_cells)
            w[rows, m] = w_ca3
            dly[rows, m] = steps(back * delay_step - lead, dt)
        w[ec0 + m * n_cells: ec0 + (m + 1) * n_cells, m] = w_ec
    onsets = np.array([steps(m * seq_step, dt) for m in range(n_elements)])
    jit = rng.integers(0, max(1, steps(jitter, dt)), size=n_src)
    cell_elem = np.concatenate([np.repeat(np.arange(n_elements), n_cells)] * 2)
    spike_step = onsets[cell_elem] + jit
    n_steps = int(onsets[-1] + steps(3 * seq_step, dt))
    train = SpikeTrain(np.arange(n_src), spike_step, n_src, n_steps)
    return w, dly, train, onsets


def ca3_ca1_readout(spike_steps, spike_idx, onsets, dt: float, window: float = 6e-3) -> dict:
    """Per element m >= 2 (which has two predecessors): the first spike of CA1 cell m relative
    to its EC onset (negative = before EC arrived); ``predicted`` = fraction of elements whose CA1
    cell fired within ``window`` before the onset; ``false`` = spikes of other CA1 cells in that
    window (a prediction of the wrong element)."""
    n = len(onsets)
    lat, pred, false = [], 0, 0
    w = steps(window, dt)
    for m in range(2, n):
        mine = spike_steps[spike_idx == m]
        rel = mine - onsets[m]
        lat.append(float(rel[rel > -w].min() * dt) if (rel > -w).any() else np.nan)
        pred += int(((rel >= -w) & (rel < 0)).any())
        in_win = (spike_steps >= onsets[m] - w) & (spike_steps < onsets[m]) & (spike_idx != m)
        false += int(in_win.sum())
    return dict(first_spike_rel=np.array(lat), predicted=pred / (n - 2), false=false)


def ca3_ca1(backend: str = "numba", delay_step: float | None = None, seed: int = 0,
            params: CA3CA1Params = CA3CA1Params(), **kw) -> dict:
    """Run the CA3 -> CA1 experiment on one backend and read it out (see
    :func:`ca3_ca1_sequence` for the keyword arguments)."""
    rng = np.random.default_rng(seed)
    w, dly, train, onsets = ca3_ca1_sequence(delay_step=delay_step, params=params, rng=rng, **kw)
    if backend == "numba":
        st, si = DelayLIFNumba(w, dly, params).run(train)
    elif backend == "brian2":
        from . import brian

        bn = brian.ca3_ca1(w, dly, train, params)
        bn.run(train.n_steps)
        st, si = brian.spikes_of(bn["spikes"], params.dt)
    else:
        raise SpikingError(f"backend {backend!r}: choose 'numba' or 'brian2'")
    out = ca3_ca1_readout(st, si, onsets, params.dt)
    out.update(spike_steps=st, spike_idx=si, onsets=onsets)
    return out
