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

Each arm (``td``, ``coord``, ``zero``, ``shuffled``) writes ``ARM-sSEED.h5`` with a checkpoint every ``chunk``
trials; ``--resume ARM-sSEED.h5`` continues that arm (the other arms run afresh).
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
}
SMOKE = {"n_agents": 4, "n_trials": 6, "move_after": 3, "max_steps": 150, "n_place_cells": 120,
         "chunk": 2}
CHOICES = {"controls": ["zero", "shuffled"], "agents": ["td", "coord"]}


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


def _run_arm(arm, cfg, out, resume):
    from bioplausible.experiment import open_run
    from bioplausible.rl import agents, envs, place_cells

    env = envs.WaterMaze(platform_radius=cfg["platform_radius"], inertia=cfg["inertia"],
                         wall_reward=cfg["wall_reward"], max_steps=cfg["max_steps"],
                         move_after=cfg["move_after"] or None)
    cells = place_cells.disc(cfg["n_place_cells"], env.radius, cfg["sigma"])
    ac = dict(eta_critic=cfg["eta_critic"], eta_actor=cfg["eta_actor"], gamma=cfg["gamma"],
              lam=cfg["lam"], beta=cfg["beta"], actor_decay=cfg["actor_decay"])
    agent = (agents.CoordActorCritic(**ac, eta_coord=cfg["eta_coord"], lam_coord=cfg["lam_coord"],
                                     coord_bias=cfg["coord_bias"])
             if arm == "coord" else agents.ActorCritic(**ac))
    T, ma = cfg["n_trials"], cfg["move_after"]
    record = sorted({0, max(ma - 1, 0), min(ma, T - 1), T - 1} if ma else {0, T - 1})
    rng = np.random.default_rng(cfg["seed"])
    modulator = {"td": "normal", "coord": "normal", "zero": "zero", "shuffled": "shuffled"}[arm]
    sim = agents.Simulation(env, cells, agent, cfg["n_agents"], T, rng, modulator, record)
    run = open_run(out, f"{arm}-s{cfg['seed']}", cfg | {"arm": arm}, cfg["seed"], resume=resume)
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
                run.log("trial", trial=t + 1, latency_mean_s=lat[:, t].mean(),
                        latency_sd_s=lat[:, t].std(ddof=1) if lat.shape[0] > 1 else 0.0)
            if stop == ma or stop == T:
                snaps[stop] = sim.maps(25)
            run.checkpoint(sim.state_dict(), {"trial": stop})
        if T not in snaps:                     # resumed after the end: maps of the final weights
            snaps[T] = sim.maps(25)
        opt = sim.optimal_steps()
        stats = _latency_stats(sim.latency_, opt, ma, cfg["dt"])
        run.save_result("latency_steps", sim.latency_)
        run.save_result("optimal_steps", opt)
        run.save_result("summary", {k: (float(v) if not isinstance(v, bool) else int(v))
                                    for k, v in stats.items()})
        run.save_result("agent_steps_per_s", float(sim.latency_.sum() / max(sim.seconds, 1e-9)))
        path = run.path
    return sim, env, stats, snaps, path


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
