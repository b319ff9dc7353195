r"""Navigating agents that learn with three-factor rules, and the vectorised simulation loop.

Every agent reads Gaussian place cells f(p) (``place_cells``) and drives ``n_actions`` action
cells with weights W (n_actions × n_place).  All synaptic updates have the three-factor form

    ΔW_ji = η · M(t) · e_ji(t),      e_ji(t) = κ e_ji(t−1) + post_j(t) · f_i(p_t),

with a broadcast modulator M and an eligibility trace e that decays by κ per step.

* :class:`ActorCritic` -- Foster, Morris & Dayan (2000) with eligibility traces.  M = δ, the
  critic's TD error δ = r + γ V(p') − V(p), V(p) = v·f(p), is the third factor for **both** the
  critic (post = 1: e_v ← γλ e_v + f) and the actor (post_j = g_j − π_j: chosen-action indicator
  minus its softmax probability π = softmax(β W f), the policy gradient of the softmax; Foster et
  al. used g_j alone).  κ = γλ.
* :class:`CoordActorCritic` -- the coordinate-based model of Foster, Morris & Dayan (2000): the
  actor-critic plus coordinate cells x̂(p) = wx·f(p), ŷ(p) = wy·f(p) learned from self-motion,
  a stored goal estimate (x̂_g, ŷ_g) and one more action cell, ``coord``, that heads along
  (x̂_g − x̂, ŷ_g − ŷ); the actor learns (with δ as third factor, like any action) where to trust
  it.  Made for fast relearning after the platform moves.
* :class:`RewardHebbian` -- reward-modulated Hebbian learning without a critic (REINFORCE / node
  perturbation): post_j = g_j − π_j is the action "noise", M = r − b with a running reward
  baseline b ← b + α_b (r − b); κ = λ = exp(−1/τ_e) with τ_e in steps.
* :class:`SarsaLambda` -- SARSA(λ) on Q_k(p) = W_k·f(p), ε-greedy with a per-trial decaying ε,
  accumulating traces (post = chosen-action indicator), M = δ = r + γ Q(p', a') − Q(p, a).

:func:`simulate` / :class:`Simulation` run ``n_agents`` independent agents (agents × seeds) for
many trials in **one** numba call (``kernels.three_factor.run_agents_kernel``).
``modulator="zero"`` and ``"shuffled"`` are the controls (M ≡ 0; M drawn at random from the
agent's recent modulator values, which keeps its distribution but destroys its timing).

:func:`course_preset` is the classic course miniproject setting (see its docstring).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import UserError

MODULATORS = {"normal": 0, "zero": 1, "shuffled": 2}
SHUFFLE_BUFFER = 500


def _check_positive(name, x, allow_zero=False):
    if not np.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        raise UserError(f"{name} must be {'≥ 0' if allow_zero else '> 0'}; got {x}")


def _check_unit(name, x):
    if not (np.isfinite(x) and 0 <= x <= 1):
        raise UserError(f"{name} must lie in [0, 1]; got {x}")


@dataclass
class ActorCritic:
    """Actor-critic, TD error as the third factor (Foster, Morris & Dayan 2000), with traces.

    ``eta_critic`` η_v and ``eta_actor`` η_W: learning rates; ``gamma`` γ: discount per step;
    ``lam`` λ: trace parameter (traces decay by γλ per step; λ = 0 is Foster's TD(0));
    ``beta`` β: inverse temperature of the softmax policy; ``eps``: extra uniform exploration;
    ``actor_decay`` ρ: the actor's weights forget, W ← (1 − ρ) W + η_W δ e_W each step
    (soft-bounded synapses; 0 = off).  Parameters of ``experiments/water_maze.py``:
    η_v = 0.01, η_W = 0.05, γ = 0.98, λ = 0.8, β = 10, ρ = 3e-4.
    """

    eta_critic: float = 0.05
    eta_actor: float = 0.05
    gamma: float = 0.98
    lam: float = 0.8
    beta: float = 2.0
    eps: float = 0.0
    actor_decay: float = 0.0
    kind: int = field(default=0, init=False, repr=False)

    def __post_init__(self):
        _check_positive("eta_critic", self.eta_critic, True)
        _check_positive("eta_actor", self.eta_actor, True)
        _check_unit("gamma", self.gamma)
        _check_unit("lam", self.lam)
        _check_positive("beta", self.beta, True)
        _check_unit("eps", self.eps)
        _check_unit("actor_decay", self.actor_decay)

    def eps_schedule(self, n_trials):
        return np.full(int(n_trials), float(self.eps))

    def kernel_args(self):
        return dict(eta_v=self.eta_critic, eta_w=self.eta_actor, gamma=self.gamma, lam=self.lam,
                    beta=self.beta, baseline_rate=0.0, w_decay=self.actor_decay)


@dataclass
class CoordActorCritic(ActorCritic):
    r"""Actor-critic + coordinates (Foster, Morris & Dayan 2000, "coordinate-based navigation").

    Everything of :class:`ActorCritic` (critic V = v·f, TD error δ = r + γV(p') − V(p) as the
    third factor of critic and actor, traces decaying by γλ), plus:

    * coordinate cells x̂(p) = Σ_i wx_i f_i(p), ŷ(p) = Σ_i wy_i f_i(p), learned from the agent's
      own displacement (Δx_t, Δy_t) = p_{t+1} − p_t by a TD-like rule with trace
      e_c ← λ_c e_c + f(p_t) (reset at each trial start)::

          Δwx_i = η_c (x̂(p_{t+1}) − x̂(p_t) − Δx_t) e_c,i     (the same for ŷ with Δy_t)

      so x̂(p_{t+1}) − x̂(p_t) → Δx_t: x̂ ≈ x + const, a path-integration coordinate frame
      (Foster et al.'s rule, written for x̂ rather than their negated coordinate);
    * the goal's estimated coordinates (x̂_g, ŷ_g) = (x̂, ŷ)(p_goal), stored whenever the platform is
      reached (overwritten at every arrival, so after a move the first arrival re-targets it);
    * one extra action cell ``coord`` (the last row of W), chosen by the same softmax
      π = softmax(β W f) and learned by the same rule (post = g − π, M = δ), which moves along
      (x̂_g − x̂(p), ŷ_g − ŷ(p)) (before the first arrival it adds no heading).

    ``eta_coord`` η_c and ``lam_coord`` λ_c: rate and trace decay of the coordinate rule.  The
    coordinate rule does not use the modulator (the controls zero/shuffle only δ).
    ``coord_bias`` c_b (0 = off, Foster's place-only actor): a constant input unit of amplitude
    c_b to the coord action cell alone, with weight b (stored in ``Simulation.b_``), learned by
    the same rule (e_b ← γλ e_b + (g_coord − π_coord) c_b, b ← (1 − ρ) b + η_W δ e_b): the
    coord preference W_coord·f(p) + c_b b can then generalise over the whole pool.
    ``goal_clear`` κ: reaching the remembered goal, |(x̂_g, ŷ_g) − (x̂, ŷ)(p)| ≤ κ · platform
    radius, without finding the platform clears the memory (the coord action then heads in a
    random direction until the next arrival); κ = 0: never cleared.  With an environment's
    ``guide_on_timeout`` a trial that times out stores the platform centre's coordinates (the rat
    is placed on the platform), so a failed first trial of a day still sets the day's goal.

    In the delayed matching-to-place task (``experiments/water_maze.py --set protocol=dmp``)
    this agent learns over days to find each new platform on the second trial of the day
    (Foster et al.'s one-trial learning), while :class:`ActorCritic` does not; see there.
    """

    eta_coord: float = 0.005
    lam_coord: float = 0.9
    coord_bias: float = 0.0
    goal_clear: float = 1.0
    kind: int = field(default=3, init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        _check_positive("eta_coord", self.eta_coord, True)
        _check_unit("lam_coord", self.lam_coord)
        _check_positive("coord_bias", self.coord_bias, True)
        _check_positive("goal_clear", self.goal_clear, True)

    def kernel_args(self):
        return super().kernel_args() | dict(eta_c=self.eta_coord, lam_c=self.lam_coord,
                                            coord_bias=self.coord_bias,
                                            clear_frac=self.goal_clear)


@dataclass
class RewardHebbian:
    """Reward-modulated Hebbian learning with a reward baseline (REINFORCE / node perturbation).

    ``eta`` η; ``tau_e`` τ_e: eligibility time constant in steps (trace decay λ = exp(−1/τ_e));
    ``beta`` β: softmax inverse temperature; ``baseline_rate`` α_b of the running reward
    baseline; ``eps``: extra uniform exploration.
    """

    eta: float = 0.05
    tau_e: float = 20.0
    beta: float = 2.0
    baseline_rate: float = 0.01
    eps: float = 0.0
    kind: int = field(default=2, init=False, repr=False)

    def __post_init__(self):
        _check_positive("eta", self.eta, True)
        _check_positive("tau_e", self.tau_e)
        _check_positive("beta", self.beta, True)
        _check_unit("baseline_rate", self.baseline_rate)
        _check_unit("eps", self.eps)

    def eps_schedule(self, n_trials):
        return np.full(int(n_trials), float(self.eps))

    def kernel_args(self):
        return dict(eta_v=0.0, eta_w=self.eta, gamma=1.0, lam=math.exp(-1.0 / self.tau_e),
                    beta=self.beta, baseline_rate=self.baseline_rate, w_decay=0.0)


@dataclass
class SarsaLambda:
    """SARSA(λ) with linear Q on place cells and ε-greedy actions.

    ``eta`` η, ``gamma`` γ, ``lam`` λ; ε in trial n (0-based) is
    ε_n = max(eps_min, eps0 · eps_decay^n).
    """

    eta: float = 0.005
    gamma: float = 0.95
    lam: float = 0.95
    eps0: float = 0.9
    eps_min: float = 0.05
    eps_decay: float = 0.97
    kind: int = field(default=1, init=False, repr=False)

    def __post_init__(self):
        _check_positive("eta", self.eta, True)
        _check_unit("gamma", self.gamma)
        _check_unit("lam", self.lam)
        _check_unit("eps0", self.eps0)
        _check_unit("eps_min", self.eps_min)
        _check_unit("eps_decay", self.eps_decay)

    def eps_schedule(self, n_trials):
        n = np.arange(int(n_trials))
        return np.maximum(self.eps_min, self.eps0 * self.eps_decay ** n)

    def kernel_args(self):
        return dict(eta_v=0.0, eta_w=self.eta, gamma=self.gamma, lam=self.lam, beta=1.0,
                    baseline_rate=0.0, w_decay=0.0)


AGENTS = {"actor_critic": ActorCritic, "coord_actor_critic": CoordActorCritic,
          "reward_hebbian": RewardHebbian, "sarsa": SarsaLambda}


def make_agent(name: str, **params):
    """Agent by name (``actor_critic``, ``coord_actor_critic``, ``reward_hebbian``, ``sarsa``)
    with its parameters."""
    if name not in AGENTS:
        raise UserError(f"unknown agent {name!r}; choose from: {', '.join(AGENTS)}")
    try:
        return AGENTS[name](**params)
    except TypeError as exc:
        raise UserError(f"agent {name!r}: {exc}") from None


class Simulation:
    """``n_agents`` independent agents (one splitmix64 stream each, seeded from ``rng``) in ``env``
    with place cells ``cells``; run trials with :meth:`run`.  Learned arrays (per agent):
    ``v_`` (critic), ``w_`` (actor / Q weights; one more row, ``coord``, for
    :class:`CoordActorCritic`), ``b_`` (reward baseline), ``wc_`` (coordinate cells' weights wx,
    wy), ``gc_`` (stored goal estimate x̂_g, ŷ_g and 1 once set); results per agent and
    trial: ``latency_`` (steps), ``reward_`` (summed), ``bumps_``; ``traj_`` (agent, recorded trial,
    step, 2) positions (NaN after the trial ended) of the trials in ``record``.
    """

    def __init__(self, env, cells, agent, n_agents: int, n_trials: int,
                 rng: np.random.Generator, modulator: str = "normal", record=(),
                 parallel: bool = False):
        if modulator not in MODULATORS:
            raise UserError(f"unknown modulator {modulator!r}; choose from: "
                            f"{', '.join(MODULATORS)}")
        if int(n_agents) < 1 or int(n_trials) < 1:
            raise UserError(f"need n_agents ≥ 1 and n_trials ≥ 1; got {n_agents}, {n_trials}")
        if not isinstance(rng, np.random.Generator):
            raise UserError("rng must be a numpy.random.Generator (np.random.default_rng(seed))")
        self.env, self.cells, self.agent = env, cells, agent
        self.modulator = modulator
        self.parallel = bool(parallel)
        A, T, K, N = (int(n_agents), int(n_trials), env.n_actions + (agent.kind == 3),
                      len(cells))
        self.n_agents, self.n_trials = A, T
        self.goals = np.ascontiguousarray(env.goals(T))
        self.starts = np.ascontiguousarray(env.starts(rng, A, T), dtype=np.float64)
        self.eps = np.ascontiguousarray(agent.eps_schedule(T), dtype=np.float64)
        record = sorted({int(t) for t in record})
        if any(t < 0 or t >= T for t in record):
            raise UserError(f"record trials must lie in 0..{T - 1}; got {record}")
        self.record = record
        self.rec_slot = np.full(T, -1, np.int64)
        for s, t in enumerate(record):
            self.rec_slot[t] = s
        self.v_ = np.zeros((A, N))
        self.w_ = np.zeros((A, K, N))
        self.b_ = np.zeros(A)
        self.wc_ = np.zeros((A, 2, N))
        self.gc_ = np.zeros((A, 3))
        self.rng_state_ = rng.integers(0, 2 ** 63, size=A, dtype=np.uint64)
        self.buf_ = np.zeros((A, SHUFFLE_BUFFER))
        self.buf_n_ = np.zeros(A, np.int64)
        self.latency_ = np.zeros((A, T), np.int64)
        self.reward_ = np.zeros((A, T))
        self.bumps_ = np.zeros((A, T), np.int64)
        self.traj_ = np.full((A, max(len(record), 1), env.max_steps + 1, 2), np.nan)
        self.trial = 0
        self.seconds = 0.0

    # the mutable state, for checkpoints
    _STATE = ("v_", "w_", "b_", "rng_state_", "buf_", "buf_n_", "latency_", "reward_", "bumps_",
              "traj_", "wc_", "gc_")
    _OPTIONAL = ("wc_", "gc_")        # absent from checkpoints written before the coord agent

    def state_dict(self) -> dict:
        return {k.rstrip("_"): getattr(self, k) for k in self._STATE} | {
            "trial": np.asarray(self.trial)}

    def load_state_dict(self, state: dict) -> None:
        for k in self._STATE:
            if k in self._OPTIONAL and k.rstrip("_") not in state and self.agent.kind != 3:
                continue
            cur = getattr(self, k)
            new = np.asarray(state[k.rstrip("_")], dtype=cur.dtype)
            if new.shape != cur.shape:
                raise UserError(f"checkpoint array {k} has shape {new.shape}, expected "
                                f"{cur.shape}: the checkpoint belongs to another configuration")
            cur[...] = new
        self.trial = int(state["trial"])

    def run(self, until: int | None = None) -> "Simulation":
        """Run trials ``self.trial .. until-1`` (default: all remaining) in one kernel call."""
        import time

        from ..kernels.three_factor import run_agents_kernel, run_agents_kernel_parallel

        until = self.n_trials if until is None else int(until)
        if not self.trial <= until <= self.n_trials:
            raise UserError(f"run(until={until}): must lie in {self.trial}..{self.n_trials}")
        if until == self.trial:
            return self
        env, ka = self.env, self.agent.kernel_args()
        kern = run_agents_kernel_parallel if self.parallel else run_agents_kernel
        t = time.perf_counter()
        kern(self.agent.kind, MODULATORS[self.modulator], env.disc, env.bounds, env.obstacles,
             self.cells.centres, self.cells.sigma, env.dirs, self.goals, self.starts, self.eps,
             self.trial, until, env.max_steps, env.goal_reward, env.wall_reward, env.step_reward,
             env.inertia, env.timeout_terminal, ka["eta_v"], ka["eta_w"], ka["gamma"], ka["lam"],
             ka["beta"], ka["baseline_rate"], ka["w_decay"], self.v_,
             self.w_, self.b_, self.rng_state_, self.buf_, self.buf_n_, self.latency_,
             self.reward_, self.bumps_, self.traj_, self.rec_slot, ka.get("eta_c", 0.0),
             ka.get("lam_c", 0.0), self.wc_, self.gc_, ka.get("coord_bias", 0.0),
             env.guide_on_timeout, ka.get("clear_frac", 1.0))
        self.seconds += time.perf_counter() - t
        self.trial = until
        return self

    # -- read-outs ------------------------------------------------------------------------------
    def optimal_steps(self) -> np.ndarray:
        """(agents, trials) straight-line optimum in steps (see ``Arena.optimal_steps``)."""
        return self.env.optimal_steps(self.starts, self.goals)

    def maps(self, n: int = 25):
        """Value and policy on an ``n × n`` grid over the arena, per agent::

            X, Y (n, n), free (n, n) bool, V (A, n, n), Q (A, n, n, K) action preferences.

        V is the critic (actor-critic) or max_k Q (SARSA); for the reward-modulated Hebbian agent
        (no critic) V is NaN."""
        x0, x1, y0, y1 = self.env.extent()
        xs, ys = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
        X, Y = np.meshgrid(xs, ys, indexing="xy")
        P = np.stack([X, Y], -1)
        F = self.cells.activity(P)                        # (n, n, N)
        Q = np.einsum("akn,ijn->aijk", self.w_, F)
        if self.agent.kind in (0, 3):
            V = np.einsum("an,ijn->aij", self.v_, F)
        elif self.agent.kind == 1:
            V = Q.max(-1)
        else:
            V = np.full(Q.shape[:3], np.nan)
        return X, Y, self.env.inside(P), V, Q

    def summary(self) -> dict:
        """Hyper-parameters and sizes as plain data (for run files)."""
        return {"agent": type(self.agent).__name__, **{k: v for k, v in asdict(self.agent).items()
                                                       if k != "kind"},
                "modulator": self.modulator, "n_agents": self.n_agents,
                "n_trials": self.n_trials, "n_place_cells": len(self.cells),
                "sigma": self.cells.sigma}


def simulate(env, cells, agent, n_agents, n_trials, rng, modulator="normal", record=(),
             parallel=False) -> Simulation:
    """Build a :class:`Simulation` and run all its trials (one numba call)."""
    return Simulation(env, cells, agent, n_agents, n_trials, rng, modulator, record,
                      parallel).run()


def course_preset(**overrides):
    """The classic course miniproject setting, as ``(env, cells, agent)``.

    Arena: the unit square, no obstacles (``Maze("open")``); 20 × 20 Gaussian place cells
    (σ = 0.05) on a grid spanning the square; 8 action cells (directions 0°, 45°, …); step 0.03;
    start (0.1, 0.1); goal (0.8, 0.8) reached within radius 0.1; reward +10 at the goal and −2 for
    each wall bump (the agent stays in place); at most 1000 steps per trial.  Learning: SARSA(λ)
    with η = 0.005, γ = 0.95, λ = 0.95, accumulating traces reset at each trial start, weights
    initialised to 0, ε-greedy with ε_n = max(0.05, 0.9 · 0.97ⁿ) in trial n (0-based), ties
    broken at random.

    ``overrides`` may set ``layout``, ``max_steps``, ``step_reward`` (a cost per step, ≤ 0; 0 in
    the course preset), ``n_cells``, ``sigma`` and any
    :class:`SarsaLambda` field (``eta``, ``gamma``, ``lam``, ``eps0``, ``eps_min``, ``eps_decay``).
    """
    from .envs import Maze
    from .place_cells import grid

    env_keys = {"layout": "open", "max_steps": 1000, "step_reward": 0.0}
    cell_keys = {"n_cells": 20, "sigma": 0.05}
    agent_keys = {"eta": 0.005, "gamma": 0.95, "lam": 0.95, "eps0": 0.9, "eps_min": 0.05,
                  "eps_decay": 0.97}
    unknown = set(overrides) - set(env_keys) - set(cell_keys) - set(agent_keys)
    if unknown:
        raise UserError(f"course_preset: unknown keys {sorted(unknown)}; allowed: "
                        f"{sorted(env_keys | cell_keys | agent_keys)}")
    pick = lambda d: {k: overrides.get(k, v) for k, v in d.items()}
    e, c, a = pick(env_keys), pick(cell_keys), pick(agent_keys)
    env = Maze(e["layout"], start=(0.1, 0.1), goal=(0.8, 0.8), goal_radius=0.1, step=0.03,
               n_actions=8, goal_reward=10.0, wall_reward=-2.0, max_steps=e["max_steps"],
               step_reward=e["step_reward"])
    return env, grid(c["n_cells"], c["sigma"]), SarsaLambda(**a)
