"""Reinforcement learning with three-factor rules: arenas, place cells and navigating agents.

* ``envs`` -- :class:`~bioplausible.rl.envs.WaterMaze` (continuous Morris water maze: circular pool,
  hidden platform that can move) and :class:`~bioplausible.rl.envs.Maze` (box with walls and
  obstacles, e.g. the U-shaped barrier of Frémaux, Sprekeler & Gerstner 2013);
* ``place_cells`` -- Gaussian place-cell populations over an arena;
* ``agents`` -- actor-critic with the TD error as third factor (Foster, Morris & Dayan 2000),
  the same plus Foster et al.'s coordinate cells and "coord" action (``CoordActorCritic``),
  reward-modulated Hebbian learning with a reward baseline (REINFORCE / node perturbation),
  SARSA(λ); :func:`~bioplausible.rl.agents.simulate` runs many agents × seeds in one numba call;
  :func:`~bioplausible.rl.agents.course_preset` is the classic course setting;
* ``reference`` -- the same agents as a plain-Python loop (for tests and the speed benchmark).

Submodules load on first use: importing this package compiles nothing.
"""
from __future__ import annotations

import importlib

_SUBMODULES = {"envs", "place_cells", "agents", "reference", "plots"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
