r"""Continuous navigation arenas: the Morris water maze and a box maze with walls and obstacles.

An agent at position p picks one of ``n_actions`` directions (angle 2πk/n, k = 0 east, counter-
clockwise) and moves by ``step``.  A move that would leave the arena or enter an obstacle is a bump:
the agent stays where it is and gets ``wall_reward``.  Entering the goal disc (centre, radius) ends
the trial with ``goal_reward``; otherwise a trial ends after ``max_steps`` steps.  The dynamics run
inside the numba kernel (``bioplausible.kernels.three_factor``); the classes here hold the geometry,
draw start positions and give the straight-line optimum.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError


class Arena:
    """Geometry shared by the arenas.  ``disc``: True for a circular pool with ``bounds`` =
    (cx, cy, R, 0); False for a box with ``bounds`` = (xmin, ymin, xmax, ymax).  ``obstacles``:
    (n, 4) axis-aligned rectangles (xmin, ymin, xmax, ymax)."""

    disc = False

    def __init__(self, bounds, obstacles=(), step=0.03, n_actions=8, goal_reward=10.0,
                 wall_reward=-2.0, max_steps=1000, inertia=0.0, step_reward=0.0,
                 timeout_terminal=False, guide_on_timeout=False):
        self.bounds = np.asarray(bounds, dtype=np.float64).reshape(4)
        obs = np.asarray(obstacles, dtype=np.float64).reshape(-1, 4)
        if np.any(obs[:, 2] <= obs[:, 0]) or np.any(obs[:, 3] <= obs[:, 1]):
            raise UserError("obstacles are (xmin, ymin, xmax, ymax) rectangles with xmax > xmin "
                            "and ymax > ymin")
        if not (np.isfinite(step) and step > 0):
            raise UserError(f"step must be a positive number; got {step}")
        thin = np.minimum(obs[:, 2] - obs[:, 0], obs[:, 3] - obs[:, 1])
        if len(obs) and thin.min() <= step:
            raise UserError(f"an obstacle {thin.min():.3g} thick could be jumped over with step "
                            f"{step}: make walls thicker than one step")
        if int(n_actions) < 2:
            raise UserError(f"n_actions must be at least 2; got {n_actions}")
        if int(max_steps) < 1:
            raise UserError(f"max_steps must be at least 1; got {max_steps}")
        if not (np.isfinite(inertia) and 0 <= inertia < 1):
            raise UserError(f"inertia must lie in [0, 1); got {inertia}")
        self.inertia = float(inertia)
        if not np.isfinite(step_reward):
            raise UserError(f"step_reward must be a number; got {step_reward}")
        self.step_reward = float(step_reward)
        self.timeout_terminal = bool(timeout_terminal)
        self.guide_on_timeout = bool(guide_on_timeout)
        self.obstacles = np.ascontiguousarray(obs)
        self.step = float(step)
        self.n_actions = int(n_actions)
        self.goal_reward = float(goal_reward)
        self.wall_reward = float(wall_reward)
        self.max_steps = int(max_steps)

    @property
    def dirs(self) -> np.ndarray:
        """(n_actions, 2) displacement of each action: ``step`` · (cos 2πk/n, sin 2πk/n)."""
        th = 2 * np.pi * np.arange(self.n_actions) / self.n_actions
        return np.ascontiguousarray(self.step * np.stack([np.cos(th), np.sin(th)], 1))

    def inside(self, p) -> np.ndarray:
        """True where positions ``p`` (..., 2) are free space (in the arena, not in an obstacle)."""
        p = np.asarray(p, dtype=np.float64)
        x, y = p[..., 0], p[..., 1]
        if self.disc:
            ok = (x - self.bounds[0]) ** 2 + (y - self.bounds[1]) ** 2 <= self.bounds[2] ** 2
        else:
            ok = ((x >= self.bounds[0]) & (y >= self.bounds[1]) & (x <= self.bounds[2])
                  & (y <= self.bounds[3]))
        for o in self.obstacles:
            ok &= ~((x >= o[0]) & (x <= o[2]) & (y >= o[1]) & (y <= o[3]))
        return ok

    def extent(self):
        """(xmin, xmax, ymin, ymax) of the arena, for plots."""
        if self.disc:
            cx, cy, r = self.bounds[:3]
            return cx - r, cx + r, cy - r, cy + r
        return self.bounds[0], self.bounds[2], self.bounds[1], self.bounds[3]

    def goals(self, n_trials: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def starts(self, rng: np.random.Generator, n_agents: int, n_trials: int) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - interface

    def optimal_steps(self, starts: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Straight-line optimum in steps: ceil((|start − goal| − goal radius) / step), per agent
        and trial (ignores obstacles)."""
        d = np.hypot(starts[..., 0] - goals[None, :, 0], starts[..., 1] - goals[None, :, 1])
        return np.ceil(np.maximum(d - goals[None, :, 2], 0.0) / self.step)


class WaterMaze(Arena):
    r"""Morris water maze (after Foster, Morris & Dayan 2000): a circular pool of radius
    ``radius`` (m) centred at 0, a hidden platform (disc of ``platform_radius``) at ``platform``
    that moves to ``moved_platform`` from trial ``move_after`` on (0-based; ``None``: never).
    Each trial starts at one of the four cardinal points (N, S, E, W) at ``start_radius`` · R,
    drawn at random per agent and trial.  Swimming speed × time step = ``step`` (0.3 m/s × 0.1 s
    = 0.03 m by default), so ``max_steps`` = 1200 is a 120 s trial; the heading has ``inertia``
    0.7 (momentum, as in Foster et al.).  Bumping the pool wall costs ``wall_reward`` = −0.05
    (without it, agents whose platform moved learn to press against the wall, where the TD error
    is zero, and stop exploring).

    ``platforms`` (optional, (n, 2)): the platform centre of every trial, overriding
    ``platform``/``moved_platform``/``move_after`` (e.g. the delayed matching-to-place protocol,
    :func:`dmp_platforms`); then at most n trials can be run.  ``guide_on_timeout``: a rat that
    has not found the platform when the trial times out is placed on it (the usual watermaze
    procedure); only an agent with a goal memory (:class:`~bioplausible.rl.agents.CoordActorCritic`)
    uses this -- it stores the platform's estimated coordinates -- the TD learners get no reward."""

    disc = True

    def __init__(self, radius=1.0, platform=(0.5, 0.5), platform_radius=0.1,
                 moved_platform=(-0.5, -0.5), move_after=20, start_radius=0.95, step=0.03,
                 n_actions=8, goal_reward=1.0, wall_reward=-0.05, max_steps=1200, inertia=0.7,
                 step_reward=0.0, timeout_terminal=False, platforms=None,
                 guide_on_timeout=False):
        super().__init__((0.0, 0.0, radius, 0.0), (), step, n_actions, goal_reward, wall_reward,
                         max_steps, inertia, step_reward, timeout_terminal, guide_on_timeout)
        self.radius = float(radius)
        self.platform = np.asarray(platform, dtype=np.float64)
        self.moved_platform = (None if moved_platform is None
                               else np.asarray(moved_platform, dtype=np.float64))
        self.platform_radius = float(platform_radius)
        self.move_after = None if move_after is None else int(move_after)
        self.start_radius = float(start_radius)
        fixed = (("platform", self.platform), ("moved_platform", self.moved_platform))
        for name, p in fixed if platforms is None else ():
            if p is not None and np.hypot(*p) + self.platform_radius > self.radius:
                raise UserError(f"{name} {tuple(p)} with radius {platform_radius} is not inside "
                                f"the pool of radius {radius}")
        self.platforms = None
        if platforms is not None:
            pl = np.asarray(platforms, dtype=np.float64)
            if pl.ndim != 2 or pl.shape[1] != 2 or len(pl) == 0 or not np.isfinite(pl).all():
                raise UserError(f"platforms must be an (n_trials, 2) array of platform centres; "
                                f"got shape {pl.shape}")
            if np.any(np.hypot(pl[:, 0], pl[:, 1]) + self.platform_radius > self.radius):
                raise UserError(f"every platform (radius {platform_radius}) must lie inside the "
                                f"pool of radius {radius}")
            self.platforms = np.ascontiguousarray(pl)
        if not 0 < self.start_radius <= 1:
            raise UserError(f"start_radius is a fraction of the pool radius in (0, 1]; got "
                            f"{start_radius}")

    def goals(self, n_trials: int) -> np.ndarray:
        g = np.empty((int(n_trials), 3))
        if self.platforms is not None:
            if int(n_trials) > len(self.platforms):
                raise UserError(f"{n_trials} trials but platforms given for only "
                                f"{len(self.platforms)}")
            g[:, :2] = self.platforms[:int(n_trials)]
            g[:, 2] = self.platform_radius
            return g
        g[:, :2] = self.platform
        if self.move_after is not None and self.moved_platform is not None:
            g[self.move_after:, :2] = self.moved_platform
        g[:, 2] = self.platform_radius
        return g

    def starts(self, rng, n_agents, n_trials):
        card = self.start_radius * self.radius * np.array([[1, 0], [0, 1], [-1, 0], [0, -1.0]])
        return np.ascontiguousarray(card[rng.integers(0, 4, size=(int(n_agents), int(n_trials)))])


def dmp_platforms(rng: np.random.Generator, days: int, trials_per_day: int, max_r: float = 0.6,
                  min_shift: float = 0.6) -> np.ndarray:
    """Platform centres for the delayed matching-to-place (DMP) protocol (Steele & Morris 1999;
    Foster, Morris & Dayan 2000): a new place every day, the same for all ``trials_per_day``
    trials of that day.  Each day's place is drawn uniformly (by area) from the disc of radius
    ``max_r`` (m) around the pool centre, at least ``min_shift`` from the previous day's place
    (rejection sampling with ``rng``).  Returns (days · trials_per_day, 2)."""
    days, tpd = int(days), int(trials_per_day)
    if days < 1 or tpd < 1:
        raise UserError(f"DMP needs days ≥ 1 and trials_per_day ≥ 1; got {days}, {tpd}")
    if not (0 < max_r and 0 <= min_shift < 2 * max_r):
        raise UserError(f"need max_r > 0 and 0 ≤ min_shift < 2·max_r; got {max_r}, {min_shift}")
    out = np.empty((days, 2))
    prev = None
    for d in range(days):
        for _ in range(10000):
            r, th = max_r * np.sqrt(rng.random()), 2 * np.pi * rng.random()
            p = np.array([r * np.cos(th), r * np.sin(th)])
            if prev is None or np.hypot(*(p - prev)) >= min_shift:
                break
        else:  # pragma: no cover - only for min_shift close to 2 max_r
            raise UserError(f"could not place a platform {min_shift} m from the previous one")
        out[d] = prev = p
    return np.ascontiguousarray(np.repeat(out, tpd, axis=0))


#: obstacles of :class:`Maze` layouts in the unit square (walls 0.04 thick, thicker than a step)
LAYOUTS = {
    "open": [],
    # a U-shaped cup whose opening faces the start (0.1, 0.1): an agent heading straight for the
    # goal (0.8, 0.8) runs into the pocket and must learn to go around it (cf. Frémaux et al. 2013)
    "u": [[0.30, 0.62, 0.66, 0.66],    # top bar
          [0.62, 0.30, 0.66, 0.66],    # right bar
          [0.30, 0.42, 0.34, 0.66],    # left lip (hangs down from the top bar)
          [0.42, 0.30, 0.66, 0.34]],   # bottom lip (runs left from the right bar)
}


class Maze(Arena):
    """A box maze: the unit square (``bounds``) with the obstacles of ``layout`` (see
    :data:`LAYOUTS`: ``"open"`` or ``"u"``) or explicit ``obstacles``; fixed start and goal.
    Defaults are the course setting: start (0.1, 0.1), goal (0.8, 0.8) within 0.1, step 0.03,
    8 directions, +10 at the goal, −2 per wall bump."""

    disc = False

    def __init__(self, layout="open", obstacles=None, start=(0.1, 0.1), goal=(0.8, 0.8),
                 goal_radius=0.1, bounds=(0.0, 0.0, 1.0, 1.0), step=0.03, n_actions=8,
                 goal_reward=10.0, wall_reward=-2.0, max_steps=1000, inertia=0.0,
                 step_reward=0.0, timeout_terminal=False):
        if obstacles is None:
            if layout not in LAYOUTS:
                raise UserError(f"unknown maze layout {layout!r}; choose from: "
                                f"{', '.join(LAYOUTS)}")
            obstacles = LAYOUTS[layout]
        super().__init__(bounds, obstacles, step, n_actions, goal_reward, wall_reward, max_steps,
                         inertia, step_reward, timeout_terminal)
        self.layout = layout
        self.start = np.asarray(start, dtype=np.float64)
        self.goal = np.asarray(goal, dtype=np.float64)
        self.goal_radius = float(goal_radius)
        if not self.inside(self.start):
            raise UserError(f"start {tuple(self.start)} is not in free space of the maze")
        if not self.inside(self.goal):
            raise UserError(f"goal {tuple(self.goal)} is not in free space of the maze")
        if np.hypot(*(self.start - self.goal)) <= self.goal_radius:
            raise UserError("the start lies inside the goal region")

    def goals(self, n_trials):
        g = np.empty((int(n_trials), 3))
        g[:, :2] = self.goal
        g[:, 2] = self.goal_radius
        return g

    def starts(self, rng, n_agents, n_trials):
        return np.ascontiguousarray(np.broadcast_to(self.start, (int(n_agents), int(n_trials), 2)))

    def shortest_steps(self, resolution: int = 200) -> float:
        """Shortest obstacle-avoiding path from start to the goal disc, in steps (8-connected
        Dijkstra on a ``resolution``² grid of free cells; a close upper bound of the true
        geodesic).  Equals roughly the straight line for the open box."""
        import heapq

        x0, y0, x1, y1 = self.bounds
        xs = np.linspace(x0, x1, resolution)
        ys = np.linspace(y0, y1, resolution)
        X, Y = np.meshgrid(xs, ys, indexing="ij")
        free = self.inside(np.stack([X, Y], -1))
        h = xs[1] - xs[0]
        si = int(round((self.start[0] - x0) / h)), int(round((self.start[1] - y0) / h))
        goal = (X - self.goal[0]) ** 2 + (Y - self.goal[1]) ** 2 <= self.goal_radius ** 2
        dist = np.full(free.shape, np.inf)
        dist[si] = 0.0
        heap = [(0.0, si)]
        nbrs = [(di, dj, np.hypot(di, dj) * h) for di in (-1, 0, 1) for dj in (-1, 0, 1)
                if di or dj]
        while heap:
            d, (i, j) = heapq.heappop(heap)
            if d > dist[i, j]:
                continue
            if goal[i, j]:
                return float(np.ceil(d / self.step))
            for di, dj, c in nbrs:
                a, b = i + di, j + dj
                if (0 <= a < resolution and 0 <= b < resolution and free[a, b]
                        and d + c < dist[a, b]):
                    dist[a, b] = d + c
                    heapq.heappush(heap, (d + c, (a, b)))
        return float("inf")
