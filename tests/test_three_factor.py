"""Three-factor rules, eligibility traces and the navigating agents (bioplausible.rl).

Unit tests use synthetic inputs (time series of pre/post activity, tiny arenas); the learning tests
run the real water-maze and maze tasks at reduced size.
"""
import copy
import math

import numpy as np
import pytest

from bioplausible.errors import UserError
from bioplausible.rl import agents, envs, place_cells, reference
from bioplausible.rules import three_factor as tf


# ----------------------------------------------------------------------------- traces

def _trace_reference(pre, post, m, lam, eta, w0):
    w = np.array(w0, float)
    e = np.zeros_like(w)
    hist = []
    for t in range(pre.shape[0]):
        e = lam * e + np.outer(post[t], pre[t])
        w = w + eta * m[t] * e
        hist.append(w.ravel().copy())
    return w, e, np.array(hist).reshape(pre.shape[0], -1)


@pytest.mark.parametrize("T,n_pre,n_post", [(1, 1, 1), (7, 5, 3), (12, 1, 6), (5, 9, 1)])
def test_trace_kernel_matches_numpy(rng, T, n_pre, n_post):
    pre, post = rng.random((T, n_pre)), rng.standard_normal((T, n_post))
    m, w0 = rng.standard_normal(T), rng.standard_normal((n_post, n_pre))
    w, e, h = tf.run_three_factor(pre, post, m, w0, tau_e=3.0, eta=0.1, record=True)
    wr, er, hr = _trace_reference(pre, post, m, math.exp(-1 / 3.0), 0.1, w0)
    np.testing.assert_allclose(w, wr, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(e, er, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h, hr, rtol=1e-12, atol=1e-12)


def test_trace_zeros_and_class_agree(rng):
    w, e = tf.run_three_factor(np.zeros((4, 3)), np.zeros((4, 2)), np.ones(4), np.ones((2, 3)),
                               tau_e=2.0, eta=1.0)
    assert np.all(w == 1.0) and np.all(e == 0.0)
    pre, post, m = rng.random((6, 3)), rng.random((6, 2)), rng.standard_normal(6)
    tr = tf.EligibilityTrace(2, 3, tau_e=4.0, dt=0.5)
    w = np.zeros((2, 3))
    for t in range(6):
        tr.step(pre[t], post[t], m[t], eta=0.3, w=w)
    wk, ek = tf.run_three_factor(pre, post, m, np.zeros((2, 3)), tau_e=4.0, eta=0.3, dt=0.5)
    np.testing.assert_allclose(w, wk, rtol=1e-12)
    np.testing.assert_allclose(tr.e, ek, rtol=1e-12)


@pytest.mark.parametrize("tau_e,dt", [(10.0, 1.0), (0.5, 0.01)])
def test_delayed_reward_credit_is_exponential_in_delay(tau_e, dt):
    """Distal reward (Izhikevich 2007): a reward d after the pairing credits it ∝ exp(−d/τ_e)."""
    delays = np.array([0, 1, 2, 5, 10, 20, 40]) * (tau_e / 10)
    credit = tf.delayed_reward_credit(delays, tau_e=tau_e, dt=dt, eta=0.7, seed=3)
    np.testing.assert_allclose(credit, 0.7 * np.exp(-delays / tau_e), rtol=1e-9)
    # log-credit is linear in the delay with slope -1/tau_e
    slope = np.polyfit(delays, np.log(credit), 1)[0]
    assert slope == pytest.approx(-1 / tau_e, rel=1e-9)
    # only the paired synapse is credited: pre alone and post alone leave no trace
    T = 8
    pre, post, m = np.zeros((T, 4)), np.zeros((T, 3)), np.zeros(T)
    pre[0, 0] = post[0, 0] = pre[1, 1] = post[2, 2] = m[5] = 1.0
    w, _ = tf.run_three_factor(pre, post, m, np.zeros((3, 4)), tau_e=tau_e, eta=1.0, dt=dt)
    assert w[0, 0] == pytest.approx(math.exp(-5 * dt / tau_e)) and np.count_nonzero(w) == 1
    # the wrong time constant is detected: a trace with 2 tau_e credits too much
    wrong = tf.delayed_reward_credit(delays[-1:], tau_e=2 * tau_e, dt=dt, eta=0.7)
    assert wrong[0] > 1.5 * credit[-1]


def test_modulators():
    assert tf.td_error(1.0, 0.5, 2.0, 0.9) == pytest.approx(1 + 1.8 - 0.5)
    assert tf.td_error(1.0, 0.5, 2.0, 0.9, terminal=True) == pytest.approx(0.5)
    base = tf.RewardBaseline(rate=0.5)
    ms = [base(1.0) for _ in range(20)]
    assert ms[0] == 1.0 and abs(ms[-1]) < 1e-5            # an expected reward stops modulating
    assert tf.reward_modulator(3.0, 1.0) == 2.0
    cells = place_cells.grid(10, 0.1)
    nov = tf.Novelty(len(cells))
    a, b = cells.activity([0.2, 0.2]), cells.activity([0.8, 0.8])
    first = nov(a)
    seq = [nov(a) for _ in range(20)]
    assert first == 1.0 and seq[-1] < 0.35 and all(np.diff(seq) < 0)
    assert nov(b, update=False) > 0.9                      # far away: still novel
    assert tf.surprise([0.0, 0.0], [3.0, 4.0], running_mean=1.0) == pytest.approx(4.0)
    with pytest.raises(UserError):
        tf.trace_decay(0.0)
    with pytest.raises(UserError):
        tf.run_three_factor(np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3), np.zeros((2, 2)), 1, 1)


# ----------------------------------------------------------------------------- arenas, cells

def test_place_cells_and_arenas():
    c = place_cells.grid(20, 0.05)
    assert len(c) == 400 and c.activity(c.centres[7])[7] == 1.0
    d = place_cells.disc(493, 1.0, 0.16)
    assert len(d) == 493 and np.hypot(*d.centres.T).max() <= 1.0
    m = envs.Maze("u")
    assert m.inside([0.1, 0.1]) and not m.inside([0.64, 0.5]) and not m.inside([1.01, 0.5])
    assert m.inside([0.5, 0.5])                            # inside the cup is free space
    assert m.shortest_steps() > envs.Maze("open").shortest_steps() >= 30
    wm = envs.WaterMaze()
    g = wm.goals(30)
    assert np.allclose(g[:20, :2], [0.5, 0.5]) and np.allclose(g[20:, :2], [-0.5, -0.5])
    s = wm.starts(np.random.default_rng(0), 5, 30)
    assert np.allclose(np.hypot(s[..., 0], s[..., 1]), 0.95)
    for bad in (dict(layout="zigzag"), dict(obstacles=[[0.2, 0.2, 0.22, 0.5]]),
                dict(layout="u", start=(0.64, 0.5))):
        with pytest.raises(UserError):
            envs.Maze(**bad)
    with pytest.raises(UserError):
        envs.WaterMaze(platform=(0.95, 0.0))
    with pytest.raises(UserError):
        agents.course_preset(alpha=1)
    with pytest.raises(UserError):
        agents.Simulation(m, c, agents.SarsaLambda(), 2, 2, np.random.default_rng(0), "random")
    with pytest.raises(UserError):
        agents.ActorCritic(gamma=1.5)


def test_course_preset_defaults():
    env, cells, ag = agents.course_preset()
    assert len(cells) == 400 and cells.sigma == 0.05 and env.n_actions == 8
    assert env.step == 0.03 and tuple(env.start) == (0.1, 0.1) and tuple(env.goal) == (0.8, 0.8)
    assert env.goal_radius == 0.1 and env.goal_reward == 10 and env.wall_reward == -2
    assert (ag.eta, ag.gamma, ag.lam) == (0.005, 0.95, 0.95)
    eps = ag.eps_schedule(300)
    assert eps[0] > eps[50] > eps[-1] == ag.eps_min


def test_bump_keeps_position_and_costs():
    """An agent that always walks west from x = 0.1 bumps into the wall and stays put."""
    env = envs.Maze("open", max_steps=10)
    cells = place_cells.grid(3, 0.3)
    sim = agents.Simulation(env, cells, agents.SarsaLambda(eta=0.0, eps0=0.0, eps_min=0.0), 1, 1,
                            np.random.default_rng(0), record=[0])
    sim.w_[0, 4] = 1.0                                     # action 4 = west is preferred
    sim.run()
    xy = sim.traj_[0, 0]
    assert np.allclose(xy[:4, 0], [0.1, 0.07, 0.04, 0.01]) and np.allclose(xy[4:11, 0], 0.01)
    assert sim.bumps_[0, 0] == 7 and sim.reward_[0, 0] == pytest.approx(-14.0)


# ----------------------------------------------------------------------------- kernel = reference

CASES = [
    ("ac", lambda: envs.WaterMaze(platform=(0.55, 0.0), platform_radius=0.3, max_steps=40,
                                  moved_platform=(0.0, 0.5), move_after=3,
                                  inertia=0.6),
     lambda: agents.ActorCritic(eta_critic=0.05, eta_actor=0.2, beta=3.0, actor_decay=0.01)),
    ("coord", lambda: envs.WaterMaze(platform=(0.55, 0.0), platform_radius=0.3, max_steps=40,
                                     moved_platform=(0.0, 0.5), move_after=3, inertia=0.6),
     lambda: agents.CoordActorCritic(eta_critic=0.05, eta_actor=0.2, beta=1.0, actor_decay=0.01,
                                     eta_coord=0.02, lam_coord=0.8, coord_bias=0.5)),
    ("coord-dmp", lambda: envs.WaterMaze(platforms=[(0.55, 0.0)] * 2 + [(0.0, 0.5)] * 3,
                                         platform_radius=0.3, max_steps=40, inertia=0.6,
                                         guide_on_timeout=True),
     lambda: agents.CoordActorCritic(eta_critic=0.05, eta_actor=0.2, beta=1.0, actor_decay=0.01,
                                     eta_coord=0.02, lam_coord=0.8, goal_clear=0.5)),
    ("sarsa", lambda: envs.Maze("u", start=(0.72, 0.65), max_steps=40),
     lambda: agents.SarsaLambda(eta=0.05)),
    ("hebb", lambda: envs.Maze("open", start=(0.7, 0.65), max_steps=40),
     lambda: agents.RewardHebbian(eta=0.05, tau_e=5.0)),
]


@pytest.mark.parametrize("modulator", ["normal", "zero", "shuffled"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_navigation_kernel_matches_plain_python(case, modulator):
    _, make_env, make_agent = case
    env = make_env()
    lo = env.extent()
    cells = place_cells.grid(4, 0.25, (lo[0], lo[2], lo[1], lo[3]))
    sim = agents.Simulation(env, cells, make_agent(), 3, 5, np.random.default_rng(7), modulator,
                            record=[0, 4])
    ref = copy.deepcopy(sim)
    ref_np = copy.deepcopy(sim)
    sim.run(2)
    sim.run()
    reference.run_simulation(ref, 3)
    reference.run_simulation(ref)
    reference.run_simulation(ref_np, numpy=True)
    for other in (ref, ref_np):
        for k in ("latency_", "bumps_", "rng_state_", "buf_n_"):
            np.testing.assert_array_equal(getattr(sim, k), getattr(other, k), err_msg=k)
        for k in ("v_", "w_", "b_", "reward_", "traj_", "buf_", "wc_", "gc_"):
            np.testing.assert_allclose(getattr(sim, k), getattr(other, k), rtol=1e-9,
                                       atol=1e-12, err_msg=k)
    if modulator == "normal":
        assert (sim.latency_ < env.max_steps).any()        # the goal was reached: rewards flowed
        assert np.abs(sim.w_).max() > 0
    if modulator == "zero":
        assert np.all(sim.w_ == 0) and np.all(sim.v_ == 0)
    if case[0] == "coord":                   # coordinate cells learn whatever the modulator
        assert sim.w_.shape[1] == env.n_actions + 1 and np.abs(sim.wc_).max() > 0
        if modulator == "normal":
            assert sim.gc_[:, 2].any()       # a goal was stored (and the coord action used it)
        if modulator != "zero":
            assert sim.b_.any()              # the coord action's constant-input weight learned
    elif case[0] == "coord-dmp":             # timeouts happened, so the guide path ran
        assert (sim.latency_ == env.max_steps).any() and sim.gc_[:, 2].all()
    else:
        assert np.all(sim.wc_ == 0) and np.all(sim.gc_ == 0)


def test_checkpoint_resume_gives_the_same_run():
    env, cells, ag = agents.course_preset(max_steps=60)
    make = lambda: agents.Simulation(env, cells, ag, 3, 6, np.random.default_rng(1))
    a = make().run()
    b = make().run(3)
    state = copy.deepcopy(b.state_dict())
    c = make()
    c.load_state_dict(state)
    c.run()
    np.testing.assert_array_equal(a.latency_, c.latency_)
    np.testing.assert_allclose(a.w_, c.w_, rtol=1e-12)


@pytest.mark.slow
def test_parallel_kernel_equals_serial():
    """The prange variant (not cached: ~15 s of compilation) gives the serial results."""
    env, cells, ag = agents.course_preset(max_steps=60)
    a = agents.Simulation(env, cells, ag, 3, 6, np.random.default_rng(1)).run()
    p = agents.Simulation(env, cells, ag, 3, 6, np.random.default_rng(1), parallel=True).run()
    np.testing.assert_array_equal(a.latency_, p.latency_)
    np.testing.assert_allclose(a.w_, p.w_, rtol=1e-12)


# ----------------------------------------------------------------------------- learning

def _water_maze(modulator, n_agents=20, n_trials=20, seed=0):
    """The water_maze experiment's task and agents (its DEFAULTS), first ``n_trials`` trials of a
    40-trial protocol (same random draws as ``python experiments/water_maze.py``)."""
    from bioplausible.experiment import load_experiment

    cfg = load_experiment("water_maze").DEFAULTS
    env = envs.WaterMaze(platform_radius=cfg["platform_radius"], inertia=cfg["inertia"],
                         wall_reward=cfg["wall_reward"], max_steps=cfg["max_steps"])
    cells = place_cells.disc(cfg["n_place_cells"], 1.0, cfg["sigma"])
    ag = agents.ActorCritic(eta_critic=cfg["eta_critic"], eta_actor=cfg["eta_actor"],
                            gamma=cfg["gamma"], lam=cfg["lam"], beta=cfg["beta"],
                            actor_decay=cfg["actor_decay"])
    sim = agents.Simulation(env, cells, ag, n_agents, cfg["n_trials"],
                            np.random.default_rng(seed), modulator)
    return sim.run(n_trials)


def test_actor_critic_learns_water_maze():
    """Must-show: 20 agents, trials 16–20 ≤ 2 × straight-line optimum and ≤ 25 % of trial 1."""
    sim = _water_maze("normal")
    lat, opt = sim.latency_, sim.optimal_steps()
    late = lat[:, 15:20].mean()
    assert late <= 2 * opt[:, 15:20].mean(), (late, opt[:, 15:20].mean())
    assert late <= 0.25 * lat[:, 0].mean()


@pytest.mark.parametrize("modulator", ["zero", "shuffled"])
def test_water_maze_controls_do_not_learn(modulator):
    """The same agents with the third factor zeroed or shuffled stay far from the optimum."""
    sim = _water_maze(modulator, n_agents=10)
    lat, opt = sim.latency_, sim.optimal_steps()
    assert lat[:, 15:20].mean() > 5 * opt[:, 15:20].mean()
    assert lat[:, 15:20].mean() > 0.5 * lat[:, :5].mean()


def test_course_preset_sarsa_learns_open_maze():
    env, cells, ag = agents.course_preset()
    sim = agents.simulate(env, cells, ag, 10, 60, np.random.default_rng(0))
    lat = sim.latency_
    assert lat[:, -10:].mean() < 0.25 * lat[:, :5].mean()
    assert lat[:, -10:].mean() < 3 * env.shortest_steps()


def test_smoke_experiments(tmp_path):
    from bioplausible.experiment import load_experiment, run_experiment

    for name in ("water_maze", "grid_maze"):
        out = tmp_path / name
        rows = run_experiment(load_experiment(name), out=out, smoke=True, progress=False)
        assert rows and all(np.isfinite(r["lat_first10" if name == "grid_maze"
                                          else "lat_trial1_s"]) for r in rows)
        assert len(list(out.glob("*.h5"))) == len(rows)
        assert len(list(out.glob("*.png"))) >= 3


def test_reward_hebbian_learns_open_maze():
    """REINFORCE-style reward-modulated Hebbian learning (no critic) learns the open course maze."""
    env, cells, _ = agents.course_preset()
    ag = agents.RewardHebbian(eta=0.01, tau_e=20.0, beta=2.0, baseline_rate=0.01)
    sim = agents.simulate(env, cells, ag, 10, 60, np.random.default_rng(0))
    lat = sim.latency_
    assert lat[:, -10:].mean() < 0.3 * lat[:, :5].mean()
    assert (lat[:, -10:] < env.max_steps).mean() > 0.9


def test_coord_agent_learns_coordinates_and_the_platform():
    """Foster et al.'s coordinate cells: x̂(p) = wx·f(p) learned from self-motion only becomes a
    linear map of position (slope ≈ 1, small residual), and the actor-critic + coordinates agent
    still meets the first-learning must-show (trials 16–20 ≤ 2 × optimum)."""
    from bioplausible.experiment import load_experiment

    cfg = load_experiment("water_maze").DEFAULTS
    env = envs.WaterMaze(platform_radius=cfg["platform_radius"], inertia=cfg["inertia"],
                         wall_reward=cfg["wall_reward"], max_steps=cfg["max_steps"])
    cells = place_cells.disc(cfg["n_place_cells"], 1.0, cfg["sigma"])
    ag = agents.CoordActorCritic(eta_critic=cfg["eta_critic"], eta_actor=cfg["eta_actor"],
                                 gamma=cfg["gamma"], lam=cfg["lam"], beta=cfg["beta"],
                                 actor_decay=cfg["actor_decay"], eta_coord=0.02,
                                 lam_coord=cfg["lam_coord"])
    sim = agents.Simulation(env, cells, ag, 20, 40, np.random.default_rng(0)).run(20)
    lat, opt = sim.latency_, sim.optimal_steps()
    assert lat[:, 15:20].mean() <= 2 * opt[:, 15:20].mean()
    P = np.random.default_rng(1).uniform(-0.6, 0.6, (300, 2))
    xy = np.einsum("acn,pn->apc", sim.wc_, cells.activity(P))       # (agents, points, 2)
    slopes = [np.polyfit(P[:, c], xy[a, :, c], 1)[0] for a in range(20) for c in (0, 1)]
    assert 0.6 < np.median(slopes) < 1.4, np.median(slopes)
    resid = xy - xy.mean(1, keepdims=True) - (P - P.mean(0))
    assert np.median(np.sqrt((resid ** 2).mean((1, 2)))) < 0.3      # pool radius 1 m
    assert sim.gc_[:, 2].mean() > 0.5                                # most agents hold a goal


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured: the actor-critic + coordinates agent (Foster "
                   "et al.'s coordinate model, eta_coord 0.005) also relearns more slowly than it "
                   "first learned (seed 0: 23.4 s vs 16.4 s); strict: flags when it passes")
def test_coord_agent_relearning_faster_than_first_learning():
    from bioplausible.experiment import load_experiment

    cfg = load_experiment("water_maze").DEFAULTS
    env = envs.WaterMaze(platform_radius=cfg["platform_radius"], inertia=cfg["inertia"],
                         wall_reward=cfg["wall_reward"], max_steps=cfg["max_steps"])
    cells = place_cells.disc(cfg["n_place_cells"], 1.0, cfg["sigma"])
    ag = agents.CoordActorCritic(eta_critic=cfg["eta_critic"], eta_actor=cfg["eta_actor"],
                                 gamma=cfg["gamma"], lam=cfg["lam"], beta=cfg["beta"],
                                 actor_decay=cfg["actor_decay"], eta_coord=cfg["eta_coord"],
                                 lam_coord=cfg["lam_coord"])
    sim = agents.Simulation(env, cells, ag, 20, 40, np.random.default_rng(0)).run()
    assert sim.latency_[:, 20:40].mean() < sim.latency_[:, :20].mean()


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured: the pure actor-critic relearns a moved platform "
                   "more slowly than it first learned it (mean latency 25.7 s vs 17.1 s, "
                   "perseveration; see experiments/water_maze.py); strict: flags when it passes")
def test_water_maze_relearning_faster_than_first_learning():
    sim = _water_maze("normal", n_agents=20, n_trials=40)
    lat = sim.latency_
    assert lat[:, 20:40].mean() < lat[:, :20].mean()


# ----------------------------------------------------------------------------- delayed matching-to-place

def test_dmp_platforms_and_platform_schedule():
    pl = envs.dmp_platforms(np.random.default_rng(3), days=9, trials_per_day=4, max_r=0.6,
                            min_shift=0.6)
    assert pl.shape == (36, 2)
    days = pl.reshape(9, 4, 2)
    assert np.all(days == days[:, :1])                         # one place per day
    assert np.hypot(*pl.T).max() <= 0.6
    assert np.all(np.hypot(*np.diff(days[:, 0], axis=0).T) >= 0.6)   # it really moves
    np.testing.assert_array_equal(pl, envs.dmp_platforms(np.random.default_rng(3), 9, 4))
    wm = envs.WaterMaze(platforms=pl)
    g = wm.goals(36)
    np.testing.assert_array_equal(g[:, :2], pl)
    assert np.all(g[:, 2] == wm.platform_radius)
    with pytest.raises(UserError):
        wm.goals(37)                                            # more trials than platforms
    with pytest.raises(UserError):
        envs.WaterMaze(platforms=[(0.95, 0.0)])                 # not inside the pool
    with pytest.raises(UserError):
        envs.WaterMaze(platforms=np.zeros((3, 3)))
    with pytest.raises(UserError):
        envs.dmp_platforms(np.random.default_rng(0), 0, 4)
    with pytest.raises(UserError):
        envs.dmp_platforms(np.random.default_rng(0), 3, 4, max_r=0.3, min_shift=0.7)


@pytest.mark.parametrize("guide", [False, True])
def test_guide_on_timeout_stores_the_platform_in_goal_memory(guide):
    """A coord agent that times out is placed on the platform (``guide_on_timeout``): its goal
    memory then holds the estimated coordinates of the platform centre, (wx·f(g), wy·f(g), 1);
    without guiding (or for an agent that found it) the memory is whatever it was."""
    env = envs.WaterMaze(platforms=[(0.6, 0.0), (-0.6, 0.0)], max_steps=3,
                         guide_on_timeout=guide)
    cells = place_cells.disc(60, 1.0, 0.25)
    ag = agents.CoordActorCritic(eta_critic=0.0, eta_actor=0.0, eta_coord=0.0, beta=1.0)
    sim = agents.Simulation(env, cells, ag, 2, 2, np.random.default_rng(0))
    sim.wc_[:, 0] = cells.centres[:, 0]                        # a fixed coordinate read-out
    sim.wc_[:, 1] = 2 * cells.centres[:, 1]
    sim.run(1)
    assert np.all(sim.latency_[:, 0] == 3)                     # 3 steps cannot reach it
    if guide:
        fg = cells.activity(np.array([0.6, 0.0]))
        np.testing.assert_allclose(sim.gc_, [[cells.centres[:, 0] @ fg,
                                              2 * cells.centres[:, 1] @ fg, 1.0]] * 2)
        assert sim.gc_[0, 0] > 0                                # east of the centre
    else:
        assert np.all(sim.gc_ == 0)


def _dmp(kind, seed=0, days=12, modulator="normal", n_agents=20):
    """The water_maze experiment's DMP protocol (``--set protocol=dmp``) with its defaults;
    latencies (agents, days, trials per day) in seconds."""
    from bioplausible.experiment import load_experiment

    cfg = load_experiment("water_maze").DEFAULTS
    tpd = cfg["trials_per_day"]
    pl = envs.dmp_platforms(np.random.default_rng((seed, 1)), days, tpd, cfg["dmp_max_r"],
                            cfg["dmp_min_shift"])
    env = envs.WaterMaze(platform_radius=cfg["platform_radius"], inertia=cfg["inertia"],
                         wall_reward=cfg["wall_reward"], max_steps=cfg["max_steps"],
                         platforms=pl, guide_on_timeout=cfg["dmp_guide"])
    cells = place_cells.disc(cfg["n_place_cells"], 1.0, cfg["sigma"])
    ac = dict(eta_critic=cfg["eta_critic"], eta_actor=cfg["dmp_eta_actor"], gamma=cfg["gamma"],
              lam=cfg["lam"], beta=cfg["beta"], actor_decay=cfg["dmp_actor_decay"])
    ag = (agents.CoordActorCritic(**ac, eta_coord=cfg["dmp_eta_coord"],
                                  lam_coord=cfg["lam_coord"], coord_bias=cfg["dmp_coord_bias"])
          if kind == "coord" else agents.ActorCritic(**ac))
    sim = agents.Simulation(env, cells, ag, n_agents, days * tpd, np.random.default_rng(seed),
                            modulator).run()
    return sim.latency_.reshape(n_agents, days, tpd) * cfg["dt"]


def test_dmp_coord_agent_relearns_faster_than_it_first_learned():
    """Must-show "relearning faster than first learning", in Foster, Morris & Dayan (2000)'s
    delayed matching-to-place task (new platform every day, 4 trials a day, 12 days, 20 agents):
    the actor-critic + coordinates agent finds each day's platform faster on trials 2–4 of days
    7–12 than on trials 2–4 of day 1, with one-trial learning (trial 2 near the optimum for the
    median agent) while trial 1 stays slow; the pure actor-critic does not improve across days
    (as Foster et al. report); and the coord agent with its modulator zeroed -- coordinates and
    goal memory intact, no TD learning -- is far slower, so the across-day gain is not only the
    coordinate frame.  Seed 0 measured: coord 17.3 s vs 37.2 s (trial 2: 20.7 s, median 6.7 s,
    vs 51.3 s), td 58.2 s vs 44.3 s, coord with M ≡ 0 31.9 s on days 7–12."""
    co, td = _dmp("coord"), _dmp("td")
    zero = _dmp("coord", modulator="zero", n_agents=10)
    late = slice(6, 12)
    c_first, c_late = co[:, 0, 1:].mean(), co[:, late, 1:].mean()
    assert c_late < 0.7 * c_first, (c_late, c_first)
    assert co[:, late, 1].mean() < 0.6 * co[:, 0, 1].mean()
    assert np.median(co[:, late, 1]) < 10.0                     # seconds; optimum ≈ 3 s
    # trial 1 of a day stays slow: the agent first swims to yesterday's platform
    assert co[:, late, 0].mean() > 2 * co[:, late, 1].mean()
    # the pure actor-critic: no faster on late days than on day 1, and slower than coord
    assert td[:, late, 1:].mean() > td[:, 0, 1:].mean()
    assert td[:, late, 1:].mean() > 2 * c_late
    # without the TD error as third factor the coord agent is much slower
    assert c_late < 0.7 * zero[:, late, 1:].mean()


def test_smoke_water_maze_dmp(tmp_path):
    from bioplausible.experiment import load_experiment, run_experiment

    rows = run_experiment(load_experiment("water_maze"), sets=["protocol=dmp",
                                                               "agents=td,coord",
                                                               "controls=coord_zero"],
                          out=tmp_path, smoke=True, progress=False)
    assert [r["arm"] for r in rows] == ["td", "coord", "coord_zero"]
    assert all(np.isfinite(r["d1_t2on_s"]) and np.isfinite(r["late_t2on_s"]) for r in rows)
    assert {p.name for p in tmp_path.glob("*.png")} >= {"dmp_latency.png",
                                                        "dmp_coord_preference.png",
                                                        "dmp_trajectories_coord.png"}
    assert len(list(tmp_path.glob("*-dmp-s0.h5"))) == 3


def test_u_maze_needs_a_critic_with_a_step_cost():
    """Frémaux, Sprekeler & Gerstner (2013): around the U-shaped obstacle the actor-critic (TD
    error as third factor) learns while reward-modulated Hebbian learning (no critic) does not.
    Needs a small cost per step (−0.05; without it every TD agent settles in a policy "sink" in
    open space near the start, where V ≈ 0 is the best the critic has seen, and fails: measured
    0 % success in 300 trials).  Course geometry, 1000-step trials."""
    ac = agents.ActorCritic(eta_critic=0.002, eta_actor=0.02, gamma=0.95, lam=0.8, beta=2.0)
    heb = agents.RewardHebbian(eta=0.01, tau_e=20.0, beta=2.0, baseline_rate=0.01)
    env, cells, _ = agents.course_preset(layout="u", step_reward=-0.05)
    best = env.shortest_steps()
    a = agents.simulate(env, cells, ac, 10, 150, np.random.default_rng(0)).latency_
    h = agents.simulate(env, cells, heb, 8, 120, np.random.default_rng(0)).latency_
    assert (a[:, -10:] < env.max_steps).mean() >= 0.9
    assert a[:, -10:].mean() < 5 * best and a[:, -10:].mean() < 0.25 * a[:, :10].mean()
    assert (h[:, -10:] < env.max_steps).mean() < 0.6
    assert h[:, -10:].mean() > 3 * a[:, -10:].mean()
