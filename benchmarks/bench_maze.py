"""Benchmark: agent-steps per second of the vectorised numba navigation loop against a plain-Python
loop of the same agent (``bioplausible.rl.reference``: same arithmetic, same random streams).

    python benchmarks/bench_maze.py [--agents 20] [--trials 20] [--py-steps 300] [--parallel]

Two settings: the course preset (SARSA(λ), 400 place cells, 8 actions, open maze) and the
water-maze actor-critic (493 place cells, 8 actions).  For each, the numba loop runs all agents and
trials in one call (first call = compilation or cache load + run, reported separately; then the
steady state, best of 3); the plain-Python loop (``reference.run_agents``: math + lists) and the
NumPy-per-step loop (``reference.run_agents_numpy``: array expressions per step, a tougher
baseline) run 2 agents × 1 trial capped at ``--py-steps`` steps.  All are measured in this one
process, so their ratios are fair on a busy machine (absolute numbers are not).
Goal: ratio (vs plain Python) ≥ 100.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def settings(max_py_steps):
    from bioplausible.rl import agents, envs, place_cells

    env, cells, sarsa = agents.course_preset()
    wm = envs.WaterMaze(inertia=0.7)
    ac = agents.ActorCritic(eta_critic=0.01, eta_actor=0.05, gamma=0.98, lam=0.8, beta=10.0,
                            actor_decay=3e-4)
    return {"course SARSA(lambda), 400 cells": (env, cells, sarsa),
            "water-maze actor-critic, 493 cells": (wm, place_cells.disc(493, 1.0, 0.16), ac)}


def bench(name, env, cells, agent, n_agents, n_trials, py_steps, parallel):
    from bioplausible.rl import agents, reference

    def make(A, T, env_=env):
        return agents.Simulation(env_, cells, agent, A, T, np.random.default_rng(0),
                                 parallel=parallel)

    t = time.perf_counter()
    make(1, 1).run()
    first = time.perf_counter() - t
    rates = []
    for _ in range(3):
        sim = make(n_agents, n_trials)
        sim.run()
        rates.append(sim.latency_.sum() / sim.seconds)
    nb = max(rates)
    env_py = copy.copy(env)
    env_py.max_steps = py_steps
    ref = make(2, 1, env_py)
    reference.run_simulation(ref)
    py = ref.latency_.sum() / ref.seconds
    ref_np = make(2, 1, env_py)
    reference.run_simulation(ref_np, numpy=True)
    npy = ref_np.latency_.sum() / ref_np.seconds
    return {"setting": name, "first_call_s": first, "numba_steps_per_s": nb,
            "python_steps_per_s": py, "ratio": nb / py, "numpy_steps_per_s": npy,
            "ratio_vs_numpy": nb / npy, "numba_steps": int(sim.latency_.sum()),
            "python_steps": int(ref.latency_.sum())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--py-steps", type=int, default=300)
    p.add_argument("--parallel", action="store_true", help="use the prange kernel (not cached)")
    a = p.parse_args(argv)
    from bioplausible.experiment import format_table

    rows = [bench(n, *s, a.agents, a.trials, a.py_steps, a.parallel)
            for n, s in settings(a.py_steps).items()]
    print(format_table(rows, floatfmt=".4g"))
    print("goal: ratio >= 100 ->", "met" if min(r["ratio"] for r in rows) >= 100 else "NOT met")
    return rows


if __name__ == "__main__":
    main()
