"""Morris water maze: actor-critic with the TD error as third factor (Foster, Morris & Dayan 2000).

A simulated rat swims in a circular pool (radius 1 m) to a hidden platform (radius 0.1 m at
(0.5, 0.5)); 493 Gaussian place cells (σ = 0.16 m, evenly spread over the pool) feed a critic
V = v·f and 8 action cells (softmax, β = 10).  Both learn with the three-factor rule
Δw = η · δ(t) · e(t), δ = r + γV(p') − V(p) the TD error (reward 1 on the platform), e the
eligibility traces (decay γλ per step); η_v = 0.01, η_W = 0.05, γ = 0.98, λ = 0.8, and the actor's
weights forget slowly (ρ = 3e-4 per step).  Swimming: 0.3 m/s, time step 0.1 s (0.03 m per step)
with heading inertia 0.7, trials of at most 120 s, starts at N/S/E/W drawn per trial; a bump into
the pool wall costs 0.05.  After ``move_after`` trials the platform moves to the opposite quadrant
(−0.5, −0.5).  Controls: the same agents with the modulator set to zero, and with the modulator
shuffled (each M drawn at random from the agent's last 500 TD errors).

Defaults (20 agents, 40 trials, seed 0; measured) give: mean escape latency in trials 16–20 of
5.6 s = 1.51 × the straight-line optimum (3.7 s) and 5.9 % of trial 1 (94 s); the zero- and
shuffled-modulator controls stay at 90 s and 84 s (24× and 23× the optimum).  Over seeds 0–7 the
ratio is 1.49–1.68 (all ≤ 2×).  After the move the agents relearn to 5.5 s = 1.74 × optimum in
trials 36–40, but relearning is *slower* than first learning (mean over the 20 trials after the
move 25.7 s vs 17.1 s before it; slower in all 8 seeds): the agent first perseveres at the old
platform, and a TD critic unlearns a predicted reward only slowly — the weakness of the pure
actor-critic that Foster et al. addressed with a coordinate system.  The actor's slow forgetting
(``actor_decay``, soft-bounded synapses) is what lets it relearn at all: without it (0) trials
36–40 stay at 23 s because some agents never leave the old goal region.

    python experiments/water_maze.py --out runs/water_maze
    bioplausible run water_maze --set n_agents=50 --set controls=zero

``--set agents=td,coord`` adds the coordinate-based model of Foster et al. (``coord``: the same
actor-critic plus coordinate cells x̂(p) = wx·f(p), ŷ(p) = wy·f(p) learned from self-motion by
Δwx = η_c (x̂(p_{t+1}) − x̂(p_t) − Δx_t) e_c, e_c ← λ_c e_c + f(p_t), a goal memory (x̂_g, ŷ_g)
stored at each arrival and cleared when the remembered spot holds no platform, and a ninth action
"coord" heading along (x̂_g − x̂, ŷ_g − ŷ), chosen by the actor like any other; η_c = 0.005,
λ_c = 0.9; see ``bioplausible.rl.agents.CoordActorCritic``).  Measured over seeds 0–4: it learns
the first platform as well (trials 16–20: 1.43–1.66 × optimum) but does *not* relearn faster —
mean over trials 21–40 23.4–35.0 s vs 14.7–21.6 s over trials 1–20 (pure actor-critic 25.7–30.5 s
vs 15.4–17.3 s): the actor keeps its place-specific preferences for the old platform and does not
come to prefer the coord action in 20 trials (the same with perfect coordinates, and with
``coord_bias`` > 0, a constant input to the coord action cell; see the agent's docstring).

``--set protocol=dmp``: Foster et al.'s *delayed matching-to-place* task (Steele & Morris 1999),
"relearning faster than first learning" done the way the paper shows it.  The platform moves to
a new place every day (``days`` = 12 days of ``trials_per_day`` = 4 trials; places drawn
uniformly within 0.6 m of the centre, ≥ 0.6 m from the previous day's, seeded by ``seed``, the
same for every arm); a rat that has not found it after 120 s is placed on it (``dmp_guide``, the
usual procedure; only the coord agent's goal memory uses this).  Both agents use a slower actor
here (``dmp_eta_actor`` 0.01, ``dmp_actor_decay`` 1e-4; the coord agent ``dmp_eta_coord`` 0.02
and a place-independent input to its coord cell, ``dmp_coord_bias`` 2) so that what is learned
is what holds across days.  Measured (20 agents, seeds 0–4): the coord agent's mean latency on
trials 2–4 of days 7–12 is 13.2–17.3 s vs 25.6–40.9 s on trials 2–4 of day 1, and trial 2 alone
16.2–20.7 s (median 4.9–6.7 s, optimum ≈ 3 s) vs 34–73 s on day 1, while trial 1 stays at
72–82 s (it first swims to yesterday's platform): one-trial learning.  Its probability of
choosing the coord action, averaged over the pool, grows from 0.10 after day 1 to 0.43 after
day 12 (seed 0).  The pure actor-critic gets *worse* across days (trials 2–4: 52–58 s on days
7–12 vs 33–44 s on day 1), as Foster et al. report.  Control ``--set controls=coord_zero``: the
coord agent with M ≡ 0 (coordinates and goal memory still learn, actor and critic do not) also
gets faster over days as its coordinate frame improves, but stays at 32–38 s on days 7–12.
Figures ``dmp_latency.png`` (every trial, grouped by day; trial 1 vs 2 per day),
``dmp_trajectories_*.png``, ``dmp_coord_preference.png`` (where the actor picks the coord
action, and the critic's value).

    python experiments/water_maze.py --out runs/dmp --set protocol=dmp --set agents=td,coord --set controls=coord_zero

Each arm (``td``, ``coord``, ``zero``, ``shuffled``, ``coord_zero``) writes ``ARM-sSEED.h5``
(``ARM-dmp-sSEED.h5`` in the DMP protocol) with a checkpoint every ``chunk`` trials; ``--resume
ARM-sSEED.h5`` continues that arm (the other arms run afresh).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULTS = {
    "n_agents": 20,
    "n_trials": 40,
    "move_after": 20,          # trials on the first platform (0 = never move)
    "seed": 0,
    "eta_critic": 0.01,
    "eta_actor": 0.05,
    "gamma": 0.98,
    "lam": 0.8,
    "beta": 10.0,
    "actor_decay": 3e-4,       # actor weights forget by this fraction per step (0 = off)
    "n_place_cells": 493,
    "sigma": 0.16,
    "platform_radius": 0.1,
    "inertia": 0.7,
    "wall_reward": -0.05,
    "max_steps": 1200,         # 120 s at dt = 0.1 s
    "dt": 0.1,                 # seconds per step (for the latency axis only)
    "controls": ["zero", "shuffled"],
    "agents": ["td"],          # "coord": add the actor-critic + coordinates arm (Foster et al.)
    "eta_coord": 0.005,        # coordinate cells' learning rate η_c (coord arm)
    "lam_coord": 0.9,          # their trace decay λ_c (coord arm)
    "coord_bias": 0.0,         # constant input to the coord action cell (coord arm; 0 = off)
    "chunk": 5,                # trials per kernel call (a checkpoint after each)
    "progress": True,
    # -- delayed matching-to-place (``protocol=dmp``): a new platform every day
    "protocol": "move",        # "move": one platform move after move_after trials; "dmp"
    "days": 12,                # dmp: days (n_trials = days · trials_per_day; move_after unused)
    "trials_per_day": 4,
    "dmp_max_r": 0.6,          # dmp: platforms drawn uniformly in the disc of this radius (m) ...
    "dmp_min_shift": 0.6,      # ... at least this far from the previous day's platform
    "dmp_eta_actor": 0.01,     # dmp: actor rate η_W (both agents; replaces eta_actor)
    "dmp_actor_decay": 1e-4,   # dmp: actor forgetting ρ (replaces actor_decay)
    "dmp_eta_coord": 0.02,     # dmp: coordinate rate η_c (replaces eta_coord)
    "dmp_coord_bias": 2.0,     # dmp: constant input to the coord action cell (replaces coord_bias)
    "dmp_guide": True,         # dmp: a rat that times out is placed on the platform
}
SMOKE = {"n_agents": 4, "n_trials": 6, "move_after": 3, "max_steps": 150, "n_place_cells": 120,
         "chunk": 2, "days": 3, "trials_per_day": 2}
CHOICES = {"controls": ["zero", "shuffled", "coord_zero"], "agents": ["td", "coord"],
           "protocol": ["move", "dmp"]}


def _latency_stats(lat, opt, move_after, dt):
    """The must-show numbers from (agents, trials) latencies and optima (in steps)."""
    T = lat.shape[1]
    first = lat[:, :move_after] if move_after else lat
    k = min(5, first.shape[1])
    late = first[:, -k:]
    row = {
        "lat_trial1_s": float(first[:, 0].mean() * dt),
        f"lat_last{k}_s": float(late.mean() * dt),
        f"opt_last{k}_s": float(opt[:, first.shape[1] - k:first.shape[1]].mean() * dt),
    }
    row["ratio_to_opt"] = row[f"lat_last{k}_s"] / row[f"opt_last{k}_s"]
    row["frac_of_trial1"] = row[f"lat_last{k}_s"] / row["lat_trial1_s"]
    if move_after and move_after < T:
        n = min(move_after, T - move_after)
        row["first_mean_s"] = float(lat[:, :n].mean() * dt)
        row["relearn_mean_s"] = float(lat[:, move_after:move_after + n].mean() * dt)
        row["relearn_faster"] = bool(row["relearn_mean_s"] < row["first_mean_s"])
        last = slice(move_after + n - min(5, n), move_after + n)
        row["relearn_last5_s"] = float(lat[:, last].mean() * dt)
        row["relearn_last5_ratio"] = float(lat[:, last].mean() / opt[:, last].mean())
    return row


def _dmp_stats(lat, opt, tpd, dt):
    """Delayed matching-to-place numbers from (agents, days · tpd) latencies and optima (steps):
    day 1 ("first learning") vs the late days (days 7.. when there are ≥ 9 days, else the second
    half): mean latency of trials 2..tpd, of trial 2 and of trial 1."""
    A, T = lat.shape
    D = T // tpd
    L = lat[:, :D * tpd].reshape(A, D, tpd) * dt
    O = opt[:, :D * tpd].reshape(A, D, tpd) * dt
    d0 = 6 if D >= 9 else max(D // 2, 1)
    late = slice(d0, D)
    row = {"lat_trial1_s": float(L[:, 0, 0].mean()),
           "late_days": f"{d0 + 1}-{D}" if D > 1 else "1"}
    if tpd > 1:
        row["d1_t2on_s"] = float(L[:, 0, 1:].mean())
        row["late_t2on_s"] = float(L[:, late, 1:].mean())
        row["d1_t2_s"] = float(L[:, 0, 1].mean())
        row["late_t2_s"] = float(L[:, late, 1].mean())
        row["late_t2_median_s"] = float(np.median(L[:, late, 1]))
        row["late_t2_opt_s"] = float(O[:, late, 1].mean())
        row["late_t1_s"] = float(L[:, late, 0].mean())
        row["relearn_faster"] = bool(row["late_t2on_s"] < row["d1_t2on_s"])
    return row


def _run_arm(arm, cfg, out, resume):
    from bioplausible.experiment import open_run
    from bioplausible.rl import agents, envs, place_cells

    dmp = cfg["protocol"] == "dmp"
    common = dict(platform_radius=cfg["platform_radius"], inertia=cfg["inertia"],
                  wall_reward=cfg["wall_reward"], max_steps=cfg["max_steps"])
    if dmp:
        T, ma, tpd = cfg["days"] * cfg["trials_per_day"], 0, cfg["trials_per_day"]
        # the platforms: one stream per seed, the same for every arm
        pl = envs.dmp_platforms(np.random.default_rng((cfg["seed"], 1)), cfg["days"], tpd,
                                cfg["dmp_max_r"], cfg["dmp_min_shift"])
        env = envs.WaterMaze(**common, platforms=pl, guide_on_timeout=cfg["dmp_guide"])
        prefix = "dmp_"
        record = sorted({0, 1 % T, T - tpd, min(T - tpd + 1, T - 1)})
    else:
        T, ma = cfg["n_trials"], cfg["move_after"]
        env = envs.WaterMaze(**common, move_after=cfg["move_after"] or None)
        prefix = ""
        record = sorted({0, max(ma - 1, 0), min(ma, T - 1), T - 1} if ma else {0, T - 1})
    eta_actor, decay, eta_coord, bias = (cfg[prefix + k] for k in
                                         ("eta_actor", "actor_decay", "eta_coord", "coord_bias"))
    cells = place_cells.disc(cfg["n_place_cells"], env.radius, cfg["sigma"])
    ac = dict(eta_critic=cfg["eta_critic"], eta_actor=eta_actor, gamma=cfg["gamma"],
              lam=cfg["lam"], beta=cfg["beta"], actor_decay=decay)
    agent = (agents.CoordActorCritic(**ac, eta_coord=eta_coord, lam_coord=cfg["lam_coord"],
                                     coord_bias=bias)
             if arm in ("coord", "coord_zero") else agents.ActorCritic(**ac))
    rng = np.random.default_rng(cfg["seed"])
    modulator = {"td": "normal", "coord": "normal", "zero": "zero", "shuffled": "shuffled",
                 "coord_zero": "zero"}[arm]
    sim = agents.Simulation(env, cells, agent, cfg["n_agents"], T, rng, modulator, record)
    run = open_run(out, f"{arm}-{'dmp-' if dmp else ''}s{cfg['seed']}", cfg | {"arm": arm},
                   cfg["seed"], resume=resume)
    if resume is not None:
        ck = run.load_checkpoint()
        if ck is not None:
            sim.load_state_dict(ck[0])
    snaps = {}
    with run:
        while sim.trial < T:
            stop = min(T, sim.trial + cfg["chunk"])
            if ma and sim.trial < ma < stop:
                stop = ma
            sim.run(stop)
            lat = sim.latency_ * cfg["dt"]
            for t in range(run.n_rows("trial"), stop):
                extra = ({"day": t // tpd + 1, "trial_of_day": t % tpd + 1} if dmp else {})
                run.log("trial", trial=t + 1, **extra, latency_mean_s=lat[:, t].mean(),
                        latency_sd_s=lat[:, t].std(ddof=1) if lat.shape[0] > 1 else 0.0)
            if stop == ma or stop == T:
                snaps[stop] = sim.maps(25)
            run.checkpoint(sim.state_dict(), {"trial": stop})
        if T not in snaps:                     # resumed after the end: maps of the final weights
            snaps[T] = sim.maps(25)
        opt = sim.optimal_steps()
        stats = (_dmp_stats(sim.latency_, opt, tpd, cfg["dt"]) if dmp
                 else _latency_stats(sim.latency_, opt, ma, cfg["dt"]))
        run.save_result("latency_steps", sim.latency_)
        run.save_result("optimal_steps", opt)
        if dmp:
            run.save_result("platforms", pl)
        run.save_result("summary", {k: (float(v) if not isinstance(v, (bool, str)) else
                                        (int(v) if isinstance(v, bool) else v))
                                    for k, v in stats.items()})
        run.save_result("agent_steps_per_s", float(sim.latency_.sum() / max(sim.seconds, 1e-9)))
        path = run.path
    return sim, env, stats, snaps, path


def _dmp_figures(sims, cfg, out):
    from bioplausible.rl import plots

    tpd, dt = cfg["trials_per_day"], cfg["dt"]
    sim = sims["td"][0]
    figs = [plots.dmp_latency({a: s.latency_ for a, (s, _) in sims.items()}, tpd,
                              out / "dmp_latency.png", dt=dt,
                              optimum=sim.optimal_steps().mean(0))]
    g = sim.goals
    for arm in ("coord", "td"):
        if arm not in sims:
            continue
        s = sims[arm][0]
        panels = []
        for slot, t in enumerate(s.record):
            marks = [(g[t, 0], g[t, 1], g[t, 2], "r", "platform")]
            if t >= tpd and t % tpd == 0:        # first trial of a day: yesterday's platform
                marks.append((g[t - 1, 0], g[t - 1, 1], g[t - 1, 2], "k", "yesterday"))
            panels.append((f"agents 1–5, day {t // tpd + 1} trial {t % tpd + 1}",
                           s.traj_[:5, slot], marks))
        name = {"coord": "actor-critic + coordinates", "td": "actor-critic"}[arm]
        figs.append(plots.trajectories(s.env, panels, out / f"dmp_trajectories_{arm}.png",
                                       title=f"{name}, delayed matching-to-place"))
    if "coord" in sims:                          # where the actor trusts the coord action
        s, snaps = sims["coord"]
        X, Y, free, V, Q = snaps[max(snaps)]
        z = s.agent.beta * Q
        z[..., -1] += s.agent.beta * s.agent.coord_bias * s.b_[:, None, None]
        pi = np.exp(z - z.max(-1, keepdims=True))
        pi /= pi.sum(-1, keepdims=True)
        last = [(g[-1, 0], g[-1, 1], g[-1, 2], "r", "last platform")]
        figs.append(plots.value_policy(
            s.env, s.env.dirs,
            [(f"P(coord action) after day {cfg['days']}, mean of agents", X, Y, free,
              pi[..., -1].mean(0), Q[0, ..., :-1], last),
             ("critic V (mean of agents)", X, Y, free, V.mean(0), Q[0, ..., :-1], last)],
            out / "dmp_coord_preference.png",
            title="actor-critic + coordinates: colour = P(coord) / V; arrows = agent 0's "
                  "place-action preferences"))
    return figs


def run(cfg: dict, out: Path, resume: Path | None = None) -> list[dict]:
    from bioplausible.rl import plots

    arms = (["td"] + [a for a in cfg["agents"] if a != "td"]
            + [c for c in cfg["controls"] if c != "td"])
    rows, sims = [], {}
    for arm in arms:
        res = resume if (resume is not None and Path(resume).stem.startswith(arm + "-")) else None
        sim, env, stats, snaps, path = _run_arm(arm, cfg, out, res)
        sims[arm] = (sim, snaps)
        rows.append({"arm": arm, "agents": sim.n_agents, "trials": sim.n_trials, **stats,
                     "run": str(path)})
    if cfg["protocol"] == "dmp":
        figs = _dmp_figures(sims, cfg, out)
        for r in rows:
            r["figures"] = ", ".join(f.name for f in figs)
        return rows
    dt, ma = cfg["dt"], cfg["move_after"]
    sim = sims["td"][0]
    opt_curve = sim.optimal_steps().mean(0)
    figs = [plots.latency_curves({a: s.latency_ for a, (s, _) in sims.items()},
                                 out / "latency.png", dt=dt, unit="s", optimum=opt_curve,
                                 move_after=ma or None,
                                 title="water maze: actor-critic (TD error × traces)")]
    if "coord" in sims:
        cs = sims["coord"][0]
        g0 = cs.goals
        panels = [(f"coord agent 0, trial {t + 1}", cs.traj_[0, s],
                   [(g0[t, 0], g0[t, 1], g0[t, 2], "r", "platform")])
                  for s, t in enumerate(cs.record)]
        figs.append(plots.trajectories(cs.env, panels, out / "trajectories_coord.png",
                                       title="actor-critic + coordinates: early and late trials"))
    g = sim.goals
    goal_of = lambda t: [(g[t, 0], g[t, 1], g[t, 2], "r", "platform")]
    panels = [(f"agent 0, trial {t + 1}", sim.traj_[0, s], goal_of(t))
              for s, t in enumerate(sim.record)]
    figs.append(plots.trajectories(sim.env, panels, out / "trajectories.png",
                                   title="actor-critic: early and late trials"))
    snaps = sims["td"][1]
    vp = []
    for t, (X, Y, free, V, Q) in sorted(snaps.items()):
        vp.append((f"after trial {t}: V (mean of agents), agent-0 policy", X, Y, free,
                   V.mean(0), Q[0], goal_of(t - 1)))
    figs.append(plots.value_policy(sim.env, sim.env.dirs, vp, out / "value_policy.png",
                                   title="critic value and actor preferences"))
    for r in rows:
        r["figures"] = ", ".join(f.name for f in figs)
    return rows


if __name__ == "__main__":
    from bioplausible.experiment import main_for

    raise SystemExit(main_for(__name__))
