"""The spiking networks in brian2: functions that build and return brian2 objects.

Every builder returns a :class:`BrianNetwork` -- an explicit ``brian2.Network`` holding all the
objects, plus named handles to them -- and never touches brian2's implicit "magic" network or the
global ``defaultclock``: each object gets ``dt`` and an explicit ``namespace``.  Object names
start with a prefix and are chosen so that brian2's within-slot ordering (by ``order``, then by
name) is the one the numba kernels (:mod:`bioplausible.kernels.spiking`) reproduce.

Networks
--------
1. :func:`diehl_cook` -- reduced Diehl & Cook (2015): Poisson-coded image input, conductance LIF
   excitatory neurons with adaptive thresholds, lateral inhibition, pair-based STDP (trace form).
2. :func:`rstdp` -- reward-modulated STDP with eligibility traces and dopamine
   (Izhikevich 2007, distal reward).
3. :func:`ca3_ca1` -- CA3 -> CA1 with axonal delays; CA1 LIF neurons are coincidence detectors.

brian2 is an optional extra and is imported inside functions only.  :func:`configure` picks the
code-generation target and puts brian2's compile caches under :func:`cache_dir`, so repeated runs
and the tests do not recompile.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .numba_sim import SpikeTrain, _check_train, normalize_columns
from .params import CA3CA1Params, DiehlCookParams, RSTDPParams, SpikingError


def _b2():
    try:
        import brian2
    except ImportError:  # pragma: no cover - depends on the environment
        raise SpikingError("the brian2 backend needs brian2: pip install 'bioplausible[spiking]'")\
            from None
    return brian2


def cache_dir() -> Path:
    """Where brian2's compiled code lives: ``$BIOPLAUSIBLE_CACHE/brian2`` or
    ``~/.cache/bioplausible/brian2``."""
    root = os.environ.get("BIOPLAUSIBLE_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "bioplausible"
    return base / "brian2"


def configure(target: str = "cython") -> None:
    """Select brian2's runtime code-generation target (``cython`` or ``numpy``) and point the
    Cython cache to :func:`cache_dir` (C++ standalone is set up by the benchmark).

    brian2's preferences are process-global by design; this is the one place we set them.
    """
    b2 = _b2()
    if target not in ("cython", "numpy"):
        raise SpikingError(f"brian2 runtime target {target!r}; choose 'cython' or 'numpy' "
                           "(C++ standalone: see standalone_run)")
    b2.prefs.codegen.target = target
    d = cache_dir() / "cython"
    d.mkdir(parents=True, exist_ok=True)
    b2.prefs.codegen.runtime.cython.cache_dir = str(d)
    b2.prefs.codegen.runtime.cython.multiprocess_safe = True


@dataclasses.dataclass
class BrianNetwork:
    """An explicit brian2 ``Network`` and named handles to its objects."""

    net: object
    objects: dict
    dt: float

    def __getitem__(self, key):
        return self.objects[key]

    def run(self, duration_steps: int):
        b2 = _b2()
        self.net.run(int(duration_steps) * self.dt * b2.second)


def _spikegen(b2, n, train: SpikeTrain | None, dt, name):
    if train is None:
        return b2.SpikeGeneratorGroup(n, np.zeros(0, int), np.zeros(0) * b2.second,
                                      dt=dt * b2.second, name=name)
    return b2.SpikeGeneratorGroup(n, train.idx, train.step * dt * b2.second, dt=dt * b2.second,
                                  name=name)


# ----------------------------------------------------------------------------- 1. Diehl & Cook
DC_EQS = """
dv/dt = ((v_rest - v) + ge*(e_exc - v) + gi*(e_inh - v)) / tau_m : volt (unless refractory)
dge/dt = -ge/tau_ge : 1
dgi/dt = -gi/tau_gi : 1
dtheta/dt = -theta/tau_theta : volt
adapt : 1 (shared)
"""
DC_SYN = """
w : 1
lr : 1 (shared)
dapre/dt = -apre/tau_pre : 1 (event-driven)
dapost/dt = -apost/tau_post : 1 (event-driven)
"""
DC_ON_PRE = """
ge_post += w
apre += 1.
w = clip(w - lr*eta_pre*apost, 0, wmax)
"""
DC_ON_POST = """
apost += 1.
w = clip(w + lr*eta_post*apre, 0, wmax)
"""


def diehl_cook(w0: np.ndarray, params: DiehlCookParams = DiehlCookParams(),
               train: SpikeTrain | None = None, v0: float | None = None,
               prefix: str = "dc") -> BrianNetwork:
    """Build the reduced Diehl & Cook (2015) network in brian2 (equations:
    :class:`DiehlCookParams`).

    ``w0`` (n_in, n_exc) initial input weights; ``train`` the input spikes (a
    ``SpikeGeneratorGroup``; more can be given later with :class:`DiehlCookBrian`).  Objects:
    ``input``, ``exc``, ``syn`` (input -> exc, STDP), ``inh`` (exc -> other exc), ``spikes``
    (SpikeMonitor of ``exc``).  Integration: exponential Euler (exact for g_e, g_i, theta).
    """
    b2 = _b2()
    w0 = np.asarray(w0, dtype=np.float64)
    if w0.ndim != 2:
        raise SpikingError(f"diehl_cook: w0 must be (n_in, n_exc), got {w0.shape}")
    n_in, n_exc = w0.shape
    p = params
    V, S = b2.volt, b2.second
    ns = dict(v_rest=p.v_rest * V, e_exc=p.e_exc * V, e_inh=p.e_inh * V, tau_m=p.tau_m * S,
              tau_ge=p.tau_ge * S, tau_gi=p.tau_gi * S, tau_theta=p.tau_theta * S,
              v_thresh=p.v_thresh * V, v_reset=p.v_reset * V, theta_plus=p.theta_plus * V,
              tau_pre=p.tau_pre * S, tau_post=p.tau_post * S, eta_pre=p.eta_pre,
              eta_post=p.eta_post, wmax=p.wmax, w_inh=p.w_inh)
    dt = p.dt * S
    if train is not None:
        _check_train(train, n_in, "diehl_cook")
    inp = _spikegen(b2, n_in, train, p.dt, f"{prefix}_input*")
    exc = b2.NeuronGroup(n_exc, DC_EQS, threshold="v > v_thresh + theta",
                         reset="v = v_reset\ntheta += adapt*theta_plus",
                         refractory=p.refractory_steps * dt, method="exponential_euler",
                         namespace=ns, dt=dt, name=f"{prefix}_exc*")
    exc.v = (p.v_rest if v0 is None else v0) * V
    exc.adapt = 1.0
    syn = b2.Synapses(inp, exc, DC_SYN, on_pre=DC_ON_PRE, on_post=DC_ON_POST, namespace=ns,
                      dt=dt, name=f"{prefix}_syn*")
    syn.connect()  # all-to-all, synapse k = i * n_exc + j
    syn.w = w0.ravel()
    syn.lr = 1.0
    inh = b2.Synapses(exc, exc, on_pre="gi_post += w_inh", namespace=ns, dt=dt,
                      name=f"{prefix}_inh*")
    inh.connect(condition="i != j")
    mon = b2.SpikeMonitor(exc, name=f"{prefix}_spikes*")
    net = b2.Network(inp, exc, syn, inh, mon)
    return BrianNetwork(net, dict(input=inp, exc=exc, syn=syn, inh=inh, spikes=mon), p.dt)


class DiehlCookBrian:
    """:func:`diehl_cook` behind the interface of :class:`~.numba_sim.DiehlCookNumba`
    (``run(train, lr, adapt, record)``, ``normalize``, ``get_weights``...), so that experiments
    switch backends with one setting.  Each :meth:`run` loads the train into the
    ``SpikeGeneratorGroup`` (``set_spikes``) and runs the network for ``train.n_steps``."""

    backend = "brian2"

    def __init__(self, w0, params: DiehlCookParams = DiehlCookParams(), v0=None, prefix="dc"):
        self.params = params
        self.n_in, self.n_exc = np.shape(w0)
        self.bn = diehl_cook(w0, params, None, v0, prefix)
        self.step = 0

    def run(self, train: SpikeTrain, lr: float = 1.0, adapt: float = 1.0, record: int = 0):
        b2 = _b2()
        _check_train(train, self.n_in, "DiehlCookBrian.run")
        bn = self.bn
        bn["syn"].lr = float(lr)
        bn["exc"].adapt = float(adapt)
        bn["input"].set_spikes(train.idx, (train.step + self.step) * self.params.dt * b2.second)
        mon = bn["spikes"]
        n0 = mon.num_spikes
        bn.run(train.n_steps)
        self.step += train.n_steps
        idx = np.asarray(mon.i[n0:], dtype=np.int64)
        counts = np.bincount(idx, minlength=self.n_exc).astype(np.int64)
        if record:
            st = np.round(np.asarray(mon.t_[n0:]) / self.params.dt).astype(np.int64)
            return counts, (st[:record], idx[:record])
        return counts

    def get_weights(self) -> np.ndarray:
        return np.asarray(self.bn["syn"].w[:], dtype=np.float64).reshape(self.n_in, self.n_exc)

    def set_weights(self, w):
        self.bn["syn"].w = np.asarray(w, dtype=np.float64).ravel()

    def normalize(self):
        w = self.get_weights()
        normalize_columns(w, self.params.norm_total)
        self.set_weights(w)

    def get_theta(self) -> np.ndarray:
        return np.asarray(self.bn["exc"].theta_[:], dtype=np.float64)

    def set_theta(self, theta):
        self.bn["exc"].theta_ = np.asarray(theta, dtype=np.float64)


# ----------------------------------------------------------------------------- 2. R-STDP
RS_POST = """
dv/dt = -v/tau_m : 1 (unless refractory)
dd/dt = -d/tau_d : Hz
"""
RS_SYN = """
dc/dt = -c/tau_c : 1 (clock-driven)
dw/dt = c*d_post : 1 (clock-driven)
dapre/dt = -apre/tau_plus : 1 (event-driven)
dapost/dt = -apost/tau_minus : 1 (event-driven)
"""
RS_ON_PRE = """
w = clip(w, 0, wmax)
v_post += w
apre += a_plus
c += apost
"""
RS_ON_POST = """
apost -= a_minus
c += apre
"""
RS_CRITIC = """
t_pre_spike : second
t_reward : second
n_ev : 1
"""
RS_DETECT = """
hit = int(t - t_pre_spike_post <= window) * int(t_reward_post < 0*second)
t_reward_post = hit*(t + reward_delay(n_ev_post*second)) + (1 - hit)*t_reward_post
n_ev_post += hit
"""


def rstdp(w0: np.ndarray, target, delays_steps, train: SpikeTrain,
          params: RSTDPParams = RSTDPParams(), prefix: str = "rs") -> BrianNetwork:
    """Build the reward-modulated STDP network (Izhikevich 2007; equations: :class:`RSTDPParams`).

    ``w0`` (n_plastic, n_post); ``train`` has ``n_plastic + n_post`` sources (the plastic inputs,
    then one background source per post neuron); ``target = (i0, j0)`` the rewarded synapse;
    ``delays_steps[k]`` the delay of the k-th reward.  Objects: ``input``, ``background``,
    ``post``, ``syn`` (plastic, Euler for the clock-driven c and w), ``bg``, ``critic`` (a
    one-neuron group whose "spike" is the reward delivery), ``detect_pre``/``detect_post`` (the
    pre-then-post detector of the target synapse), ``dopamine`` (critic -> post: d += da),
    ``spikes``, ``rewards`` (SpikeMonitors).
    """
    b2 = _b2()
    p = params
    w0 = np.asarray(w0, dtype=np.float64)
    n_plastic, n_post = w0.shape
    _check_train(train, n_plastic + n_post, "rstdp")
    S, Hz = b2.second, b2.Hz
    dt = p.dt * S
    delays = np.asarray(delays_steps, dtype=np.int64)
    ns = dict(tau_m=p.tau_m * S, tau_d=p.tau_d * S, tau_c=p.tau_c * S, tau_plus=p.tau_plus * S,
              tau_minus=p.tau_minus * S, a_plus=p.a_plus, a_minus=p.a_minus, wmax=p.wmax,
              w_bg=p.w_bg, da=p.da * Hz, v_thresh=p.v_thresh, v_reset=p.v_reset,
              window=(p.window_steps + 0.5) * dt,
              reward_delay=b2.TimedArray(delays * p.dt * S, dt=1 * S))
    plastic = train.idx < n_plastic
    inp = b2.SpikeGeneratorGroup(n_plastic, train.idx[plastic], train.step[plastic] * dt,
                                 dt=dt, name=f"{prefix}_input*")
    bgsrc = b2.SpikeGeneratorGroup(n_post, train.idx[~plastic] - n_plastic,
                                   train.step[~plastic] * dt, dt=dt, name=f"{prefix}_background*")
    post = b2.NeuronGroup(n_post, RS_POST, threshold="v > v_thresh", reset="v = v_reset",
                          refractory=p.refractory_steps * dt, method="exact", namespace=ns,
                          dt=dt, name=f"{prefix}_post*")
    syn = b2.Synapses(inp, post, RS_SYN, on_pre=RS_ON_PRE, on_post=RS_ON_POST, method="euler",
                      namespace=ns, dt=dt, order=1, name=f"{prefix}_syn*")
    syn.connect()
    syn.w = w0.ravel()
    bg = b2.Synapses(bgsrc, post, on_pre="v_post += w_bg", namespace=ns, dt=dt,
                     name=f"{prefix}_bg*")
    bg.connect(j="i")
    critic = b2.NeuronGroup(1, RS_CRITIC,
                            threshold="t_reward >= 0*second and t >= t_reward - 0.5*dt",
                            reset="t_reward = -1*second", namespace=ns, dt=dt,
                            name=f"{prefix}_critic*")
    critic.t_pre_spike = -1e6 * S
    critic.t_reward = -1 * S
    i0, j0 = (int(x) for x in target)
    det_a = b2.Synapses(inp, critic, on_pre="t_pre_spike_post = t", namespace=ns, dt=dt,
                        name=f"{prefix}_detect_a*")
    det_a.connect(i=i0, j=0)
    det_b = b2.Synapses(post, critic, on_pre=RS_DETECT, namespace=ns, dt=dt,
                        name=f"{prefix}_detect_b*")
    det_b.connect(i=j0, j=0)
    dopa = b2.Synapses(critic, post, on_pre="d_post += da", namespace=ns, dt=dt,
                       name=f"{prefix}_dopamine*")
    dopa.connect()
    spikes = b2.SpikeMonitor(post, name=f"{prefix}_spikes*")
    rewards = b2.SpikeMonitor(critic, name=f"{prefix}_rewards*")
    net = b2.Network(inp, bgsrc, post, syn, bg, critic, det_a, det_b, dopa, spikes, rewards)
    return BrianNetwork(net, dict(input=inp, background=bgsrc, post=post, syn=syn, bg=bg,
                                  critic=critic, detect_pre=det_a, detect_post=det_b,
                                  dopamine=dopa, spikes=spikes, rewards=rewards), p.dt)


# ----------------------------------------------------------------------------- 3. CA3 -> CA1
def ca3_ca1(w: np.ndarray, delay_steps: np.ndarray, train: SpikeTrain,
            params: CA3CA1Params = CA3CA1Params(), prefix: str = "hc") -> BrianNetwork:
    """Build CA3/EC spike sources -> CA1 LIF coincidence detectors with per-synapse axonal delays
    (equations: :class:`CA3CA1Params`).  ``w`` (n_in, n_out): 0 = no synapse; ``delay_steps``
    the same shape, in time steps.  Objects: ``input``, ``ca1``, ``syn``, ``spikes``.
    """
    b2 = _b2()
    p = params
    w = np.asarray(w, dtype=np.float64)
    delay_steps = np.asarray(delay_steps, dtype=np.int64)
    if w.ndim != 2 or delay_steps.shape != w.shape:
        raise SpikingError("ca3_ca1: w and delay_steps must be equal 2-D shapes")
    n_in, n_out = w.shape
    _check_train(train, n_in, "ca3_ca1")
    S = b2.second
    dt = p.dt * S
    ns = dict(tau_m=p.tau_m * S, v_thresh=p.v_thresh, v_reset=p.v_reset)
    inp = _spikegen(b2, n_in, train, p.dt, f"{prefix}_input*")
    ca1 = b2.NeuronGroup(n_out, "dv/dt = -v/tau_m : 1 (unless refractory)",
                         threshold="v > v_thresh", reset="v = v_reset",
                         refractory=p.refractory_steps * dt, method="exact", namespace=ns,
                         dt=dt, name=f"{prefix}_ca1*")
    syn = b2.Synapses(inp, ca1, "w : 1", on_pre="v_post += w", namespace=ns, dt=dt,
                      name=f"{prefix}_syn*")
    ii, jj = np.nonzero(w)
    syn.connect(i=ii, j=jj)
    syn.w = w[ii, jj]
    syn.delay = delay_steps[ii, jj] * dt
    mon = b2.SpikeMonitor(ca1, name=f"{prefix}_spikes*")
    net = b2.Network(inp, ca1, syn, mon)
    return BrianNetwork(net, dict(input=inp, ca1=ca1, syn=syn, spikes=mon), p.dt)


def spikes_of(monitor, dt: float):
    """``(steps, idx)`` of a SpikeMonitor (times rounded to the step grid)."""
    st = np.round(np.asarray(monitor.t_[:]) / dt).astype(np.int64)
    return st, np.asarray(monitor.i[:], dtype=np.int64)
