"""Parameters of the spiking networks, shared by the brian2 builders and the numba kernels.

Plain dataclasses in SI units (seconds, volts; dimensionless where the model is), so that the
brian2 namespace and the kernels' parameter vectors are built from the same numbers.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import UserError


class SpikingError(UserError, ValueError):
    """Bad input to a spiking network (shapes, spike trains, parameters)."""


def _positive(obj, names):
    for name in names:
        val = getattr(obj, name)
        if not np.isfinite(val) or val <= 0:
            raise SpikingError(f"{type(obj).__name__}.{name} must be a positive number, got {val}")


def steps(duration: float, dt: float) -> int:
    """Number of whole time steps in ``duration`` (brian2 rounds times to steps the same way)."""
    return int(round(duration / dt))


@dataclasses.dataclass(frozen=True)
class DiehlCookParams:
    """Reduced Diehl & Cook (2015) network (defaults are the paper's excitatory population).

    Excitatory neuron j (conductance-based LIF with adaptive threshold)::

        tau_m dv/dt = (v_rest - v) + g_e (E_exc - v) + g_i (E_inh - v)     (frozen while refractory)
        dg_e/dt = -g_e / tau_ge,  dg_i/dt = -g_i / tau_gi,  dtheta/dt = -theta / tau_theta
        spike when v > v_thresh + theta;  then v <- v_reset, theta <- theta + theta_plus

    The paper's inhibitory population is reduced to direct lateral inhibition: a spike of j adds
    ``w_inh`` to g_i of every other excitatory neuron.  Input synapses (Poisson pixels -> exc)
    carry g_e += w_ij and learn by pair-based STDP in trace form (x_pre, x_post jump by 1 at a
    spike and decay with tau_pre, tau_post)::

        pre spike of i:  w_ij <- clip(w_ij - eta_pre  * x_post_j, 0, wmax)   (depression)
        post spike of j: w_ij <- clip(w_ij + eta_post * x_pre_i,  0, wmax)   (potentiation)

    ``norm_total``: between images the input weights of each neuron are rescaled to sum to it
    (Diehl & Cook's 78 for 784 inputs).
    """

    dt: float = 0.5e-3
    tau_m: float = 100e-3
    v_rest: float = -65e-3
    v_reset: float = -65e-3
    v_thresh: float = -52e-3
    e_exc: float = 0.0
    e_inh: float = -100e-3
    tau_ge: float = 1e-3
    tau_gi: float = 2e-3
    tau_theta: float = 1e4
    theta_plus: float = 0.05e-3
    refractory: float = 5e-3
    tau_pre: float = 20e-3
    tau_post: float = 20e-3
    eta_pre: float = 1e-4
    eta_post: float = 1e-2
    wmax: float = 1.0
    w_inh: float = 17.0
    norm_total: float = 78.0

    def __post_init__(self):
        _positive(self, ["dt", "tau_m", "tau_ge", "tau_gi", "tau_theta", "tau_pre", "tau_post",
                         "wmax"])
        if self.refractory < 0 or self.eta_pre < 0 or self.eta_post < 0 or self.w_inh < 0:
            raise SpikingError("refractory, eta_pre, eta_post and w_inh must be >= 0")

    @property
    def refractory_steps(self) -> int:
        return steps(self.refractory, self.dt)

    def vector(self) -> np.ndarray:
        """The float64 parameter vector in the layout of ``kernels.spiking.DC_PARAMS``."""
        from ..kernels.spiking import DC_PARAMS

        return np.array([getattr(self, k) for k in DC_PARAMS], dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class RSTDPParams:
    """Reward-modulated STDP (Izhikevich 2007, "Solving the distal reward problem").

    Post neuron j: ``tau_m dv/dt = -v`` (dimensionless, threshold 1), input spike of i adds
    ``clip(w_ij, 0, wmax)`` to v.  Each synapse has an eligibility trace c and the weight follows
    the product of eligibility and dopamine d::

        dc_ij/dt = -c_ij / tau_c + STDP(pre/post pairings)
        dw_ij/dt = c_ij * d_j
        dd_j/dt  = -d_j / tau_d + da * sum_k delta(t - t_reward_k)

    STDP(...) is pair-based in trace form: a pre spike adds the (negative) post trace to c, a post
    spike adds the pre trace (a_plus at a pre spike, -a_minus at a post spike, decaying with
    tau_plus, tau_minus).  A reward is scheduled when the target synapse's post neuron fires
    within ``window`` after its pre neuron, and delivered after a delay of 1-3 s (the distal
    reward); only one reward is pending at a time.
    """

    dt: float = 1e-3
    tau_m: float = 20e-3
    v_thresh: float = 1.0
    v_reset: float = 0.0
    refractory: float = 2e-3
    tau_plus: float = 20e-3
    tau_minus: float = 20e-3
    a_plus: float = 1.0
    a_minus: float = 1.5
    tau_c: float = 1.0
    tau_d: float = 0.2
    wmax: float = 0.2
    w_bg: float = 0.3
    da: float = 0.2
    window: float = 10e-3
    delay_min: float = 1.0
    delay_max: float = 3.0

    def __post_init__(self):
        _positive(self, ["dt", "tau_m", "tau_plus", "tau_minus", "tau_c", "tau_d", "wmax",
                         "window"])
        if not 0 <= self.delay_min <= self.delay_max:
            raise SpikingError("need 0 <= delay_min <= delay_max")

    @property
    def refractory_steps(self) -> int:
        return steps(self.refractory, self.dt)

    @property
    def window_steps(self) -> int:
        return steps(self.window, self.dt)

    def vector(self) -> np.ndarray:
        from ..kernels.spiking import RSTDP_PARAMS

        return np.array([getattr(self, k) for k in RSTDP_PARAMS], dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class CA3CA1Params:
    """CA3 -> CA1 with axonal delays and coincidence detection in CA1.

    CA1 neuron: ``tau_m dv/dt = -v`` (threshold 1, reset 0); a spike of CA3/EC cell i reaches
    CA1 cell j ``delay_ij`` later and adds ``w_ij`` to v.  One CA3 element's volley alone is
    sub-threshold (``w_ca3 * n_cells < 1``); two volleys arriving within a few tau_m cross it.
    """

    dt: float = 0.1e-3
    tau_m: float = 5e-3
    v_thresh: float = 1.0
    v_reset: float = 0.0
    refractory: float = 2e-3

    def __post_init__(self):
        _positive(self, ["dt", "tau_m"])

    @property
    def refractory_steps(self) -> int:
        return steps(self.refractory, self.dt)

    def vector(self) -> np.ndarray:
        from ..kernels.spiking import DELAY_PARAMS

        return np.array([getattr(self, k) for k in DELAY_PARAMS], dtype=np.float64)
