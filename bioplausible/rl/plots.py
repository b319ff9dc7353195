"""Figures of navigation experiments: escape-latency curves, trajectories, value maps with policy
arrows.  Matplotlib with the Agg backend; each function writes one PNG and returns its path."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plots import _plt, _save  # one Agg backend and save policy for every figure


def _arena(ax, env, goals=()):
    """Draw the arena outline, obstacles and goal discs (list of (x, y, r, colour, label))."""
    import matplotlib.patches as mp

    if env.disc:
        cx, cy, r = env.bounds[:3]
        ax.add_patch(mp.Circle((cx, cy), r, fill=False, lw=1.5, color="k"))
    else:
        x0, y0, x1, y1 = env.bounds
        ax.add_patch(mp.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.5, color="k"))
    for o in env.obstacles:
        ax.add_patch(mp.Rectangle((o[0], o[1]), o[2] - o[0], o[3] - o[1], color="0.3"))
    for gx, gy, gr, col, lab in goals:
        ax.add_patch(mp.Circle((gx, gy), gr, fill=False, lw=1.8, ls="--", color=col, label=lab,
                               zorder=5))
    x0, x1, y0, y1 = env.extent()
    pad = 0.03 * (x1 - x0)
    ax.set_xlim(x0 - pad, x1 + pad)
    ax.set_ylim(y0 - pad, y1 + pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def latency_curves(curves: dict, out_png, dt: float = 1.0, unit: str = "steps",
                   optimum: np.ndarray | None = None, move_after: int | None = None,
                   title: str = "escape latency") -> Path:
    """``curves``: label -> (agents, trials) latencies in steps; drawn as mean ± sd over agents
    (times ``dt``).  ``optimum`` (trials,) draws the straight-line optimum; ``move_after`` a
    vertical line where the goal moved."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=120)
    for label, lat in curves.items():
        lat = np.asarray(lat, float) * dt
        xs = np.arange(1, lat.shape[1] + 1)
        m, s = lat.mean(0), lat.std(0, ddof=1) if lat.shape[0] > 1 else np.zeros(lat.shape[1])
        ax.plot(xs, m, marker="o", ms=2.5, label=f"{label} (n={lat.shape[0]})")
        ax.fill_between(xs, m - s, m + s, alpha=0.2)
    if optimum is not None:
        xs = np.arange(1, len(optimum) + 1)
        ax.plot(xs, np.asarray(optimum) * dt, "k:", lw=1, label="shortest path")
        ax.plot(xs, 2 * np.asarray(optimum) * dt, color="0.5", ls=":", lw=1, label="2 × optimum")
    if move_after is not None:
        ax.axvline(move_after + 0.5, color="r", lw=0.8, ls="--", label="goal moved")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"escape latency ({unit})")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(plt, fig, out_png)


def trajectories(env, panels: list, out_png, title: str = "") -> Path:
    """One panel per entry of ``panels``: (label, positions (steps+1, 2) with NaN padding, or
    several agents' positions (agents, steps+1, 2) overlaid, goals list for :func:`_arena`)."""
    plt = _plt()
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(2.8 * n, 3.0), dpi=120, squeeze=False)
    for ax, (label, xy, goals) in zip(axes[0], panels):
        _arena(ax, env, goals)
        xy = np.asarray(xy, float)
        many = xy.ndim == 3
        steps = []
        for i, p in enumerate(xy if many else [xy]):
            p = p[~np.isnan(p[:, 0])]
            if len(p):
                ax.plot(p[:, 0], p[:, 1], lw=0.7 if many else 0.8,
                        color=f"C{i % 10}" if many else "tab:blue")
                ax.plot(*p[0], "go", ms=4, zorder=6)
                ax.plot(*p[-1], "rs", ms=4, zorder=6)
            steps.append(len(p) - 1)
        info = (f"{len(steps)} agents, median {int(np.median(steps))} steps" if many
                else f"{steps[0]} steps")
        ax.set_title(f"{label}\n{info}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(plt, fig, out_png)


def value_policy(env, dirs, panels: list, out_png, title: str = "") -> Path:
    """One panel per entry of ``panels``: (label, X, Y, free, V (n, n) or None, Q (n, n, K),
    goals).  V as a colour map (masked outside free space), arrows = preference-weighted mean
    direction of the action cells (softmax-free: Σ_k max(Q_k − mean Q, 0) · dir_k)."""
    plt = _plt()
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.1), dpi=120, squeeze=False)
    d = np.asarray(dirs, float)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    for ax, (label, X, Y, free, V, Q, goals) in zip(axes[0], panels):
        if V is not None and np.isfinite(V).any():
            Vm = np.ma.masked_where(~free, V)
            im = ax.pcolormesh(X, Y, Vm, shading="auto", cmap="viridis")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        Qc = np.maximum(Q - Q.mean(-1, keepdims=True), 0.0)
        U = (Qc * d[:, 0]).sum(-1)
        W = (Qc * d[:, 1]).sum(-1)
        norm = np.hypot(U, W)
        norm[norm == 0] = 1.0
        keep = free & (np.hypot(U, W) > 0)
        ax.quiver(X[keep], Y[keep], (U / norm)[keep], (W / norm)[keep], color="w" if V is not None
                  and np.isfinite(V).any() else "k", scale=30, width=0.004)
        _arena(ax, env, goals)
        ax.set_title(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(plt, fig, out_png)


def dmp_latency(curves: dict, trials_per_day: int, out_png, dt: float = 1.0,
                optimum: np.ndarray | None = None,
                title: str = "delayed matching-to-place: a new platform every day") -> Path:
    """Delayed matching-to-place figure.  ``curves``: label -> (agents, days · trials_per_day)
    latencies in steps.  Left: mean ± s.e.m. over agents of every trial, grouped by day (one line
    segment per day, so the within-day relearning curve is visible); right: the mean latency of
    trial 1 (dashed) and trial 2 (solid) of each day -- one-trial learning shows as trial 2
    dropping towards the optimum while trial 1 stays slow.  ``optimum`` (trials,) in steps."""
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.9), dpi=120,
                                  gridspec_kw={"width_ratios": [2.2, 1]})
    tpd = int(trials_per_day)
    for c, (label, lat) in enumerate(curves.items()):
        lat = np.asarray(lat, float) * dt
        A, T = lat.shape
        D = T // tpd
        m = lat.mean(0)
        se = lat.std(0, ddof=1) / np.sqrt(A) if A > 1 else np.zeros(T)
        col = f"C{c}"
        for d in range(D):
            xs = np.arange(d * tpd, (d + 1) * tpd) + 1
            sl = slice(d * tpd, (d + 1) * tpd)
            ax.plot(xs, m[sl], color=col, marker="o", ms=2.5,
                    label=f"{label} (n={A})" if d == 0 else None)
            ax.fill_between(xs, m[sl] - se[sl], m[sl] + se[sl], color=col, alpha=0.2, lw=0)
        days = np.arange(1, D + 1)
        byday = lat[:, :D * tpd].reshape(A, D, tpd).mean(0)
        ax2.plot(days, byday[:, 0], color=col, ls="--", marker="s", ms=3,
                 label=f"{label}: trial 1")
        if tpd > 1:
            ax2.plot(days, byday[:, 1], color=col, marker="o", ms=3, label=f"{label}: trial 2")
    T = max(np.asarray(v).shape[1] for v in curves.values())
    for d in range(1, T // tpd):
        ax.axvline(d * tpd + 0.5, color="0.8", lw=0.6)
    if optimum is not None:
        opt = np.asarray(optimum, float) * dt
        ax.plot(np.arange(1, len(opt) + 1), opt, "k:", lw=1, label="straight-line optimum")
        D = len(opt) // tpd
        ax2.plot(np.arange(1, D + 1), opt[:D * tpd].reshape(D, tpd).mean(1), "k:", lw=1,
                 label="optimum")
    ax.set_xlabel(f"trial ({tpd} per day; grey lines: new platform)")
    ax.set_ylabel("escape latency (s)")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax2.set_xlabel("day")
    ax2.set_ylabel("escape latency (s)")
    ax2.set_title("trial 1 vs trial 2 of each day", fontsize=10)
    ax2.set_ylim(bottom=0)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    return _save(plt, fig, out_png)
