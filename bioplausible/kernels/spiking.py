"""Clock-driven / event-driven spiking-network kernels that reproduce brian2 step by step.

Every kernel advances a network by whole time steps and mirrors brian2's default schedule within
one step (``groups -> thresholds -> synapses -> resets``):

1. **groups**: state updates of all neurons (exponential-Euler / exact, as brian2 generates them;
   variables marked ``(unless refractory)`` are frozen while ``step - lastspike < refractory``),
   then clock-driven synaptic variables (brian2 runs a Synapses state updater after the neuron
   group whose ``order`` is lower);
2. **thresholds**: ``v > threshold`` and not refractory -> spike; ``lastspike = step``;
   precomputed input spikes (brian2 ``SpikeGeneratorGroup``) are emitted here too;
3. **synapses**: all *pre* pathways (brian2 order -1) then all *post* pathways (order +1).
   Event-driven traces are decayed to the current step before they are read (exactly as brian2's
   ``(event-driven)`` variables: ``x <- x * exp(-(t - lastupdate)/tau)``);
4. **resets**: ``v = v_reset`` (+ threshold adaptation) for neurons that spiked in this step.

brian2 makes writes to an ``(unless refractory)`` variable *conditional*: synaptic input
``v_post += w`` onto a refractory neuron (including in the step of its spike) is dropped.  The
kernels do the same.

Precision: float64 throughout (not the float32 of the rate kernels): brian2 computes in float64,
and agreement to one time step over seconds of simulated time needs the same precision.

Input spikes come in CSR form over time steps: the indices of the input neurons that spike at
step ``n`` (relative to the start of the call) are ``in_idx[in_ptr[n]:in_ptr[n + 1]]``.

Kernels import only numba and numpy.  Parameter vectors are float64 arrays whose layouts are the
``*_PARAMS`` tuples below (the checked wrappers in :mod:`bioplausible.spiking.numba_sim` build
them from the parameter dataclasses).
"""
from __future__ import annotations

import math

import numpy as np

from ._config import jit

#: Layout of the parameter vector of :func:`diehl_cook_kernel` (SI units: volt, second).
DC_PARAMS = ("dt", "tau_m", "v_rest", "v_reset", "v_thresh", "e_exc", "e_inh", "tau_ge",
             "tau_gi", "tau_theta", "theta_plus", "refractory_steps", "tau_pre", "tau_post",
             "eta_pre", "eta_post", "wmax", "w_inh")

#: Layout of the parameter vector of :func:`rstdp_kernel` (dimensionless v, seconds, d in Hz).
RSTDP_PARAMS = ("dt", "tau_m", "v_thresh", "v_reset", "refractory_steps", "tau_plus", "tau_minus",
                "a_plus", "a_minus", "tau_c", "tau_d", "wmax", "w_bg", "da", "window_steps")

#: Layout of the parameter vector of :func:`delay_lif_kernel`.
DELAY_PARAMS = ("dt", "tau_m", "v_thresh", "v_reset", "refractory_steps")

NEVER = -(1 << 40)  # "last spike long ago" (brian2 initialises lastspike to -10000 s)
#: Decaying variables below this magnitude are set to 0: their effect is far below float64
#: resolution of anything they are added to, and subnormal numbers make every operation on them
#: ~100x slower (a silent network would otherwise slow down over time).
TINY = 1e-150


@jit
def _flush(x):  # pragma: no cover - compiled
    return x if abs(x) >= TINY else 0.0


_SHIFT = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer kept in the low bits
_SHIFT_BITS = np.array([_SHIFT]).view(np.int64)[0]
_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


@jit
def vexp(x, out, scratch):  # pragma: no cover - compiled
    """``out = exp(x)`` for float64 arrays, in loops that LLVM vectorises (the libm ``exp`` it
    replaces is called one element at a time).  Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2,
    degree-13 Taylor polynomial (truncation < 1e-17), scaling by 2**k built from the exponent bits.
    Accurate to 1 ulp (tested against numpy); x below -700 gives exp(-700) ~ 1e-304.
    ``scratch`` is a float64 work array of the same length."""
    ib = scratch.view(np.int64)
    for j in range(x.shape[0]):
        xj = max(x[j], -700.0)
        t = xj * _INV_LN2 + _SHIFT
        k = t - _SHIFT
        r = (xj - k * _LN2_HI) - k * _LN2_LO
        q = 1.0 / 6227020800.0
        q = q * r + 1.0 / 479001600.0
        q = q * r + 1.0 / 39916800.0
        q = q * r + 1.0 / 3628800.0
        q = q * r + 1.0 / 362880.0
        q = q * r + 1.0 / 40320.0
        q = q * r + 1.0 / 5040.0
        q = q * r + 1.0 / 720.0
        q = q * r + 1.0 / 120.0
        q = q * r + 1.0 / 24.0
        q = q * r + 1.0 / 6.0
        q = q * r + 0.5
        q = q * r + 1.0
        out[j] = q * r + 1.0
        scratch[j] = t
    for j in range(x.shape[0]):
        ib[j] = ((ib[j] - _SHIFT_BITS) + 1023) << 52
    for j in range(x.shape[0]):
        out[j] = out[j] * scratch[j]


@jit(error_model="numpy")  # IEEE division (no ZeroDivisionError branch): loops vectorise
def diehl_cook_kernel(in_ptr, in_idx, step0, w, v, ge, gi, theta, lastspike, xpre, pre_last,
                      xpost, p, lr, adapt, rec_step, rec_idx, counts):  # pragma: no cover
    """Reduced Diehl & Cook (2015): conductance LIF with adaptive threshold, all-to-all lateral
    inhibition and pair-based STDP on the input weights ``w`` (n_in, n_exc).

    State (modified in place): ``v, ge, gi, theta`` (n_exc), ``lastspike`` (int64 step, n_exc),
    ``xpre``/``pre_last`` (event-driven presynaptic traces: value at step ``pre_last``),
    ``xpost`` (postsynaptic traces, decayed every step).  ``lr`` scales plasticity (0 = frozen),
    ``adapt`` scales the threshold increment.  Spikes are appended to ``rec_step``/``rec_idx``
    while there is room; ``counts`` (n_exc) is incremented.  Returns the number of spikes.
    """
    dt = p[0]
    tau_m = p[1]
    v_rest = p[2]
    v_reset = p[3]
    v_thresh = p[4]
    e_exc = p[5]
    e_inh = p[6]
    ref = np.int64(p[11])
    tau_pre = p[12]
    eta_pre = p[14] * lr
    eta_post = p[15] * lr
    wmax = p[16]
    w_inh = p[17]
    dge = math.exp(-dt / p[7])
    dgi = math.exp(-dt / p[8])
    dth = math.exp(-dt / p[9])
    dpost = math.exp(-dt / p[13])
    n_in, n_exc = w.shape
    n_steps = in_ptr.shape[0] - 1
    spk = np.empty(n_exc, np.int64)
    xcur = np.empty(n_in)
    arg = np.empty(n_exc)
    ex = np.empty(n_exc)
    scratch = np.empty(n_exc)
    free = np.empty(n_exc)
    cap = rec_step.shape[0]
    n_rec = 0
    for n in range(n_steps):
        step = step0 + n
        # groups: exponential Euler (conductances and theta exact), v frozen while refractory;
        # written as branch-free loops over neurons so that they vectorise
        for j in range(n_exc):
            arg[j] = -dt * (ge[j] + gi[j] + 1.0) / tau_m
        vexp(arg, ex, scratch)
        for j in range(n_exc):  # few arrays per loop, so that LLVM's alias checks allow SIMD
            free[j] = 1.0 if step - lastspike[j] >= ref else 0.0
        for j in range(n_exc):
            g = ge[j]
            h = gi[j]
            ba = -(e_exc * g + e_inh * h + v_rest) / (g + h + 1.0)
            vn = -ba + (ba + v[j]) * ex[j]
            v[j] = vn if free[j] != 0.0 else v[j]
        for j in range(n_exc):
            ge[j] = _flush(ge[j] * dge)
            gi[j] = _flush(gi[j] * dgi)
        for j in range(n_exc):
            theta[j] = theta[j] * dth
            xpost[j] = _flush(xpost[j] * dpost)
        n_cand = 0.0
        for j in range(n_exc):
            n_cand += free[j] if v[j] > v_thresh + theta[j] else 0.0
        # thresholds (the scan only runs in the rare steps with a spike)
        k = 0
        if n_cand > 0.0:
            for j in range(n_exc):
                if v[j] > v_thresh + theta[j] and step - lastspike[j] >= ref:
                    spk[k] = j
                    k += 1
                    lastspike[j] = step
        # synapses, pre pathways: input -> exc (transmit, then depress), exc -> other exc
        for q in range(in_ptr[n], in_ptr[n + 1]):
            i = in_idx[q]
            xpre[i] = xpre[i] * math.exp(-(step - pre_last[i]) * dt / tau_pre) + 1.0
            pre_last[i] = step
            for j in range(n_exc):  # two branch-free loops: both vectorise
                ge[j] += w[i, j]
            if eta_pre != 0.0:
                for j in range(n_exc):
                    wn = w[i, j] - eta_pre * xpost[j]
                    wn = wn if wn > 0.0 else 0.0
                    w[i, j] = wn if wn < wmax else wmax
        if k > 0:
            for s in range(k):
                free[spk[s]] = -1.0  # marks the spiking neurons (free is recomputed next step)
            for j in range(n_exc):  # inhibition from every *other* neuron that spiked
                gi[j] += w_inh * (k - 1) if free[j] == -1.0 else w_inh * k
            # post pathway: potentiation by the presynaptic traces
            if eta_post != 0.0:
                for i in range(n_in):
                    xcur[i] = xpre[i] * math.exp(-(step - pre_last[i]) * dt / tau_pre)
                for s in range(k):
                    j = spk[s]
                    for i in range(n_in):
                        wn = w[i, j] + eta_post * xcur[i]
                        w[i, j] = min(max(wn, 0.0), wmax)
            # resets
            for s in range(k):
                j = spk[s]
                xpost[j] += 1.0
                v[j] = v_reset
                theta[j] += adapt * p[10]
                counts[j] += 1
                if n_rec < cap:
                    rec_step[n_rec] = step
                    rec_idx[n_rec] = j
                n_rec += 1
    return n_rec


@jit(error_model="numpy")
def rstdp_kernel(in_ptr, in_idx, step0, n_plastic, w, c, v, d, lastspike, apre, pre_last, apost,
                 critic, target, delays, p, rec_step, rec_idx, rew_step):  # pragma: no cover
    """Reward-modulated STDP with eligibility traces and dopamine (Izhikevich 2007).

    Inputs ``0..n_plastic-1`` project to all ``n_post`` LIF neurons through plastic weights ``w``
    (n_plastic, n_post) with eligibility ``c``; input ``n_plastic + j`` is neuron j's background
    source (fixed weight ``w_bg``).  ``d`` (n_post) is the dopamine seen by each post neuron.
    ``critic`` (float64[4]) = [last spike step of the target's pre neuron, step at which the
    pending reward is due (-1 = none), number of rewards scheduled, number delivered].
    ``target`` = (i0, j0).  When j0 fires within ``window_steps`` after i0 and no reward is
    pending, a reward is scheduled ``delays[k]`` steps later (k = rewards scheduled so far).
    Rewards delivered are recorded in ``rew_step``.  Returns the number of post spikes.
    """
    dt = p[0]
    v_thresh = p[2]
    v_reset = p[3]
    ref = np.int64(p[4])
    tau_plus = p[5]
    a_plus = p[7]
    a_minus = p[8]
    tau_c = p[9]
    wmax = p[11]
    w_bg = p[12]
    da = p[13]
    window = np.int64(p[14])
    dm = math.exp(-dt / p[1])
    dd = math.exp(-dt / p[10])
    dmin = math.exp(-dt / p[6])
    n_post = v.shape[0]
    i0 = target[0]
    j0 = target[1]
    n_steps = in_ptr.shape[0] - 1
    spk = np.empty(n_post, np.int64)
    cap = rec_step.shape[0]
    n_rec = 0
    for n in range(n_steps):
        step = step0 + n
        # groups: post neurons (exact), then synapses (Euler, brian2 order 1)
        for j in range(n_post):
            d[j] = _flush(d[j] * dd)
            if step - lastspike[j] >= ref:
                v[j] = _flush(v[j] * dm)
            apost[j] = _flush(apost[j] * dmin)
        for i in range(n_plastic):
            for j in range(n_post):
                cij = c[i, j]
                c[i, j] = _flush(-cij * dt / tau_c + cij)
                if d[j] != 0.0:
                    w[i, j] = cij * d[j] * dt + w[i, j]
        # thresholds: post neurons, critic
        k = 0
        for j in range(n_post):
            if v[j] > v_thresh and step - lastspike[j] >= ref:
                spk[k] = j
                k += 1
                lastspike[j] = step
        reward = critic[1] >= 0 and step >= critic[1]
        # synapses, pre pathways in brian2's name order: detector (pre, post), dopamine, input
        for q in range(in_ptr[n], in_ptr[n + 1]):
            if in_idx[q] == i0:
                critic[0] = step
        for s in range(k):
            if spk[s] == j0 and step - critic[0] <= window and critic[1] < 0:
                kk = min(np.int64(critic[2]), delays.shape[0] - 1)
                critic[1] = step + delays[kk]
                critic[2] += 1
        if reward:
            for j in range(n_post):
                d[j] += da
        for q in range(in_ptr[n], in_ptr[n + 1]):
            i = in_idx[q]
            if i >= n_plastic:
                j = i - n_plastic
                if step - lastspike[j] >= ref and lastspike[j] != step:
                    v[j] += w_bg
                continue
            apre[i] = apre[i] * math.exp(-(step - pre_last[i]) * dt / tau_plus) + a_plus
            pre_last[i] = step
            for j in range(n_post):
                wij = min(max(w[i, j], 0.0), wmax)
                w[i, j] = wij
                if step - lastspike[j] >= ref and lastspike[j] != step:
                    v[j] += wij
                c[i, j] += apost[j]
        # post pathway, then resets
        for s in range(k):
            j = spk[s]
            apost[j] -= a_minus
            for i in range(n_plastic):
                c[i, j] += apre[i] * math.exp(-(step - pre_last[i]) * dt / tau_plus)
            v[j] = v_reset
            if n_rec < cap:
                rec_step[n_rec] = step
                rec_idx[n_rec] = j
            n_rec += 1
        if reward:
            critic[1] = -1.0
            r = np.int64(critic[3])
            if r < rew_step.shape[0]:
                rew_step[r] = step
            critic[3] += 1
    return n_rec


@jit(error_model="numpy")
def delay_lif_kernel(in_ptr, in_idx, step0, w, delay, v, lastspike, buf, p, rec_step,
                     rec_idx):  # pragma: no cover
    """LIF neurons (exact integration, ``dv/dt = -v/tau_m``) driven by delta synapses with
    per-synapse axonal delays: a spike of input i at step n adds ``w[i, j]`` to ``v[j]`` at step
    ``n + delay[i, j]`` (brian2 ``on_pre='v_post += w'`` with ``delay``).  ``buf`` (L, n_post),
    L > max delay, is the ring buffer of pending input, indexed by absolute step modulo L;
    ``w == 0`` means no synapse.  Returns the number of output spikes.
    """
    dt = p[0]
    v_thresh = p[2]
    v_reset = p[3]
    ref = np.int64(p[4])
    dm = math.exp(-dt / p[1])
    n_in, n_post = w.shape
    L = buf.shape[0]
    n_steps = in_ptr.shape[0] - 1
    spk = np.empty(n_post, np.int64)
    cap = rec_step.shape[0]
    n_rec = 0
    for n in range(n_steps):
        step = step0 + n
        for j in range(n_post):
            if step - lastspike[j] >= ref:
                v[j] = _flush(v[j] * dm)
        k = 0
        for j in range(n_post):
            if v[j] > v_thresh and step - lastspike[j] >= ref:
                spk[k] = j
                k += 1
                lastspike[j] = step
        for q in range(in_ptr[n], in_ptr[n + 1]):
            i = in_idx[q]
            for j in range(n_post):
                if w[i, j] != 0.0:
                    buf[(step + delay[i, j]) % L, j] += w[i, j]
        slot = step % L
        for j in range(n_post):
            if buf[slot, j] != 0.0:
                if step - lastspike[j] >= ref and lastspike[j] != step:
                    v[j] += buf[slot, j]
                buf[slot, j] = 0.0
        for s in range(k):
            j = spk[s]
            v[j] = v_reset
            if n_rec < cap:
                rec_step[n_rec] = step
                rec_idx[n_rec] = j
            n_rec += 1
    return n_rec
