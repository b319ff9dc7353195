"""The navigation loop of ``kernels.three_factor.run_agents_kernel`` as a plain-Python loop.

Same agents, same arena rules, same splitmix64 random streams and the same order of operations,
written with ``math`` and Python lists only (no numpy in the loop): the obviously-correct reference
that the tests compare the kernel with, and the "plain-Python loop of the same agent" that
``benchmarks/bench_maze.py`` times against the kernel.  Slow on purpose; use
:class:`bioplausible.rl.agents.Simulation` for real runs.
"""
from __future__ import annotations

import math

import numpy as np

_MASK = (1 << 64) - 1
_GOLD = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


class SplitMix64:
    """The per-agent random stream of the kernel: ``next()`` -> uniform in [0, 1)."""

    def __init__(self, state: int):
        self.state = int(state) & _MASK

    def next(self) -> float:
        self.state = (self.state + _GOLD) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * _M1) & _MASK
        z = ((z ^ (z >> 27)) * _M2) & _MASK
        z = z ^ (z >> 31)
        return (z >> 11) * (1.0 / 9007199254740992.0)


def _inside(x, y, disc, bounds, obstacles):
    if disc:
        if (x - bounds[0]) ** 2 + (y - bounds[1]) ** 2 > bounds[2] * bounds[2]:
            return False
    elif x < bounds[0] or y < bounds[1] or x > bounds[2] or y > bounds[3]:
        return False
    for o in obstacles:
        if o[0] <= x <= o[2] and o[1] <= y <= o[3]:
            return False
    return True


def _select(kind, prefs, beta, eps, u1, u2):
    n = len(prefs)
    pi = None
    if kind != 1:
        mx = max(prefs)
        ex = [math.exp(beta * (p - mx)) for p in prefs]
        z = sum(ex)
        pi = [x / z for x in ex]
    if u1 < eps:
        return min(int(u2 * n), n - 1), pi
    if kind == 1:
        mx = max(prefs)
        ties = [k for k in range(n) if prefs[k] == mx]
        return ties[min(int(u2 * len(ties)), len(ties) - 1)], pi
    c = 0.0
    for k in range(n):
        c += pi[k]
        if u2 < c:
            return k, pi
    return n - 1, pi


def run_agents(kind, mod_mode, disc, bounds, obstacles, centres, sigma, dirs, goals, starts, eps,
               t0, t1, max_steps, goal_reward, wall_reward, step_reward, inertia, timeout_terminal,
               eta_v, eta_w,
               gamma, lam, beta, baseline_rate, w_decay, v, w, b, rng_state, buf, buf_n, latency,
               reward_sum, bumps, traj, rec_slot, eta_c=0.0, lam_c=0.0, wc=None, gc=None,
               coord_bias=0.0, guide=False, clear_frac=1.0):
    """Plain-Python twin of ``run_agents_kernel`` (same arguments, same in-place outputs)."""
    A, K, N = w.shape
    bounds = [float(x) for x in bounds]
    obstacles = [[float(x) for x in o] for o in obstacles]
    cen = [(float(c[0]), float(c[1])) for c in centres]
    dirs_l = [(float(d[0]), float(d[1])) for d in dirs]
    step = math.hypot(*dirs_l[0])
    inv2s2 = 1.0 / (2.0 * sigma * sigma)
    decay = gamma * lam if kind != 2 else lam
    keep = 1.0 - w_decay
    KB = buf.shape[1]

    def place(x, y):
        return [math.exp(-((x - cx) ** 2 + (y - cy) ** 2) * inv2s2) for cx, cy in cen]

    for a in range(A):
        rs = SplitMix64(int(rng_state[a]))
        vv = [float(x) for x in v[a]]
        ww = [[float(x) for x in row] for row in w[a]]
        ba = float(b[a])
        bf = [float(x) for x in buf[a]]
        bn = int(buf_n[a])
        if kind == 3:
            cwx = [float(x) for x in wc[a, 0]]
            cwy = [float(x) for x in wc[a, 1]]
            goal_c = [float(x) for x in gc[a]]

        def modulate(x):
            nonlocal bn
            if mod_mode == 0:
                return x
            if mod_mode == 1:
                return 0.0
            bf[bn % KB] = x
            bn += 1
            n = min(bn, KB)
            return bf[min(int(rs.next() * n), n - 1)]

        def prefs_of(f):
            p = [sum(wk[i] * f[i] for i in range(N)) for wk in ww]
            if kind == 3:
                p[-1] += coord_bias * ba
            return p

        for trial in range(t0, t1):
            gx, gy, gr = (float(x) for x in goals[trial])
            x, y = float(starts[a, trial, 0]), float(starts[a, trial, 1])
            vx = vy = 0.0
            e_v = [0.0] * N
            e_w = [[0.0] * N for _ in range(K)]
            e_c = [0.0] * N
            e_b = 0.0
            f = place(x, y)
            slot = int(rec_slot[trial])
            if slot >= 0:
                traj[a, slot, 0] = (x, y)
            act, pi = 0, None
            if kind == 1:
                u1, u2 = rs.next(), rs.next()
                act, pi = _select(kind, prefs_of(f), beta, eps[trial], u1, u2)
            steps, rsum, nb = 0, 0.0, 0
            for t in range(max_steps):
                if kind != 1:
                    u1, u2 = rs.next(), rs.next()
                    act, pi = _select(kind, prefs_of(f), beta, eps[trial], u1, u2)
                if act < len(dirs_l):
                    hx, hy = dirs_l[act]
                else:                                    # kind 3: the coord action
                    hx = hy = 0.0
                    if goal_c[2] > 0.0:
                        ddx = goal_c[0] - sum(cwx[i] * f[i] for i in range(N))
                        ddy = goal_c[1] - sum(cwy[i] * f[i] for i in range(N))
                        dn = math.sqrt(ddx * ddx + ddy * ddy)
                        if dn > 0.0:
                            hx, hy = ddx * (step / dn), ddy * (step / dn)
                    else:
                        hx, hy = dirs_l[min(int(rs.next() * len(dirs_l)), len(dirs_l) - 1)]
                vx = inertia * vx + (1.0 - inertia) * hx
                vy = inertia * vy + (1.0 - inertia) * hy
                sp = math.sqrt(vx * vx + vy * vy)
                nx, ny = (x + vx * (step / sp), y + vy * (step / sp)) if sp > 0 else (x, y)
                r = step_reward
                if not _inside(nx, ny, disc, bounds, obstacles):
                    nx, ny, vx, vy = x, y, 0.0, 0.0
                    r += wall_reward
                    nb += 1
                done = (nx - gx) ** 2 + (ny - gy) ** 2 <= gr * gr
                if done:
                    r += goal_reward
                rsum += r
                term = done or (timeout_terminal and t == max_steps - 1)
                f2 = place(nx, ny)
                if kind == 3:
                    cx2 = sum(cwx[i] * f2[i] for i in range(N))
                    cy2 = sum(cwy[i] * f2[i] for i in range(N))
                    cex = cx2 - sum(cwx[i] * f[i] for i in range(N)) - (nx - x)
                    cey = cy2 - sum(cwy[i] * f[i] for i in range(N)) - (ny - y)
                    for i in range(N):
                        e_c[i] = lam_c * e_c[i] + f[i]
                        cwx[i] += eta_c * cex * e_c[i]
                        cwy[i] += eta_c * cey * e_c[i]
                    if done:
                        goal_c = [sum(cwx[i] * f2[i] for i in range(N)),
                                  sum(cwy[i] * f2[i] for i in range(N)), 1.0]
                    elif (goal_c[2] > 0.0 and clear_frac > 0.0 and (goal_c[0] - cx2) ** 2
                          + (goal_c[1] - cy2) ** 2 <= clear_frac * clear_frac * gr * gr):
                        goal_c[2] = 0.0
                if kind in (0, 3):
                    val = sum(vv[i] * f[i] for i in range(N))
                    val2 = 0.0 if term else sum(vv[i] * f2[i] for i in range(N))
                    m = modulate(r + gamma * val2 - val)
                    for i in range(N):
                        e_v[i] = decay * e_v[i] + f[i]
                        vv[i] += eta_v * m * e_v[i]
                    for k in range(K):
                        post = (1.0 if k == act else 0.0) - pi[k]
                        for i in range(N):
                            e_w[k][i] = decay * e_w[k][i] + post * f[i]
                            ww[k][i] = keep * ww[k][i] + eta_w * m * e_w[k][i]
                    if kind == 3 and coord_bias != 0.0:
                        e_b = decay * e_b + ((1.0 if act == K - 1 else 0.0) - pi[K - 1]) * coord_bias
                        ba = keep * ba + eta_w * m * e_b
                elif kind == 1:
                    q = sum(ww[act][i] * f[i] for i in range(N))
                    nxt, q2 = 0, 0.0
                    if not term:
                        p2 = prefs_of(f2)
                        u1, u2 = rs.next(), rs.next()
                        nxt, _ = _select(kind, p2, beta, eps[trial], u1, u2)
                        q2 = p2[nxt]
                    m = modulate(r + gamma * q2 - q)
                    for k in range(K):
                        for i in range(N):
                            e_w[k][i] = decay * e_w[k][i] + (f[i] if k == act else 0.0)
                            ww[k][i] = keep * ww[k][i] + eta_w * m * e_w[k][i]
                    act = nxt
                else:
                    m = modulate(r - ba)
                    ba += baseline_rate * (r - ba)
                    for k in range(K):
                        post = (1.0 if k == act else 0.0) - pi[k]
                        for i in range(N):
                            e_w[k][i] = decay * e_w[k][i] + post * f[i]
                            ww[k][i] = keep * ww[k][i] + eta_w * m * e_w[k][i]
                x, y, f = nx, ny, f2
                steps = t + 1
                if slot >= 0:
                    traj[a, slot, steps] = (x, y)
                if done:
                    break
            if kind == 3 and guide and not done:       # timed out: placed on the platform
                fg = place(gx, gy)
                goal_c = [sum(cwx[i] * fg[i] for i in range(N)),
                          sum(cwy[i] * fg[i] for i in range(N)), 1.0]
            latency[a, trial] = steps
            reward_sum[a, trial] = rsum
            bumps[a, trial] = nb
        if kind == 3:
            wc[a, 0], wc[a, 1], gc[a] = cwx, cwy, goal_c
        v[a] = vv
        w[a] = np.asarray(ww)
        b[a] = ba
        buf[a] = bf
        buf_n[a] = bn
        rng_state[a] = np.uint64(rs.state)


def run_agents_numpy(kind, mod_mode, disc, bounds, obstacles, centres, sigma, dirs, goals,
                     starts, eps, t0, t1, max_steps, goal_reward, wall_reward, step_reward,
                     inertia, timeout_terminal, eta_v, eta_w, gamma, lam, beta, baseline_rate,
                     w_decay, v,
                     w, b, rng_state, buf, buf_n, latency, reward_sum, bumps, traj, rec_slot,
                     eta_c=0.0, lam_c=0.0, wc=None, gc=None, coord_bias=0.0, guide=False,
                     clear_frac=1.0):
    """The same loop with NumPy vector operations per step (the way one would write it in NumPy:
    a Python loop over agents, trials and steps; place-cell activity, preferences, traces and
    updates as array expressions).  A tougher speed baseline than :func:`run_agents`."""
    A, K, N = w.shape
    dirs = np.asarray(dirs, float)
    step = float(np.hypot(*dirs[0]))
    inv2s2 = 1.0 / (2.0 * sigma * sigma)
    decay = gamma * lam if kind != 2 else lam
    keep = 1.0 - w_decay
    KB = buf.shape[1]
    bl = [float(x) for x in bounds]
    obs = [[float(x) for x in o] for o in obstacles]

    def place(x, y):
        d = centres - (x, y)
        return np.exp(-(d * d).sum(1) * inv2s2)

    for a in range(A):
        rs = SplitMix64(int(rng_state[a]))
        va, wa = v[a], w[a]
        st = {"bn": int(buf_n[a]), "b": float(b[a])}

        def modulate(x):
            if mod_mode == 0:
                return x
            if mod_mode == 1:
                return 0.0
            buf[a, st["bn"] % KB] = x
            st["bn"] += 1
            n = min(st["bn"], KB)
            return float(buf[a, min(int(rs.next() * n), n - 1)])

        for trial in range(t0, t1):
            gx, gy, gr = (float(x) for x in goals[trial])
            x, y = float(starts[a, trial, 0]), float(starts[a, trial, 1])
            vx = vy = 0.0
            e_v = np.zeros(N)
            e_w = np.zeros((K, N))
            e_c = np.zeros(N)
            e_b = 0.0
            f = place(x, y)

            def prefs_np(f):
                p = list(wa @ f)
                if kind == 3:
                    p[-1] += coord_bias * st["b"]
                return p
            slot = int(rec_slot[trial])
            if slot >= 0:
                traj[a, slot, 0] = (x, y)
            act, pi = 0, None
            if kind == 1:
                u1, u2 = rs.next(), rs.next()
                act, pi = _select(kind, list(wa @ f), beta, eps[trial], u1, u2)
            steps, rsum, nb = 0, 0.0, 0
            for t in range(max_steps):
                if kind != 1:
                    u1, u2 = rs.next(), rs.next()
                    act, pi = _select(kind, prefs_np(f), beta, eps[trial], u1, u2)
                if act < len(dirs):
                    hx, hy = dirs[act]
                else:                                    # kind 3: the coord action
                    hx = hy = 0.0
                    if gc[a, 2] > 0.0:
                        dd = gc[a, :2] - wc[a] @ f
                        dn = math.sqrt(dd[0] * dd[0] + dd[1] * dd[1])
                        if dn > 0.0:
                            hx, hy = dd * (step / dn)
                    else:
                        hx, hy = dirs[min(int(rs.next() * len(dirs)), len(dirs) - 1)]
                vx = inertia * vx + (1.0 - inertia) * hx
                vy = inertia * vy + (1.0 - inertia) * hy
                sp = math.sqrt(vx * vx + vy * vy)
                nx, ny = (x + vx * (step / sp), y + vy * (step / sp)) if sp > 0 else (x, y)
                r = step_reward
                if not _inside(nx, ny, disc, bl, obs):
                    nx, ny, vx, vy = x, y, 0.0, 0.0
                    r += wall_reward
                    nb += 1
                done = (nx - gx) ** 2 + (ny - gy) ** 2 <= gr * gr
                if done:
                    r += goal_reward
                rsum += r
                term = done or (timeout_terminal and t == max_steps - 1)
                f2 = place(nx, ny)
                if kind == 3:
                    c2 = wc[a] @ f2
                    ce = c2 - wc[a] @ f - (nx - x, ny - y)
                    e_c *= lam_c
                    e_c += f
                    wc[a] += eta_c * np.outer(ce, e_c)
                    if done:
                        gc[a] = (*(wc[a] @ f2), 1.0)
                    elif (gc[a, 2] > 0.0 and clear_frac > 0.0
                          and ((gc[a, :2] - c2) ** 2).sum() <= (clear_frac * gr) ** 2):
                        gc[a, 2] = 0.0
                if kind in (0, 3):
                    m = modulate(r + gamma * (0.0 if term else va @ f2) - va @ f)
                    e_v *= decay
                    e_v += f
                    va += (eta_v * m) * e_v
                    post = -np.asarray(pi)
                    post[act] += 1.0
                    e_w *= decay
                    e_w += np.outer(post, f)
                    wa *= keep
                    wa += (eta_w * m) * e_w
                    if kind == 3 and coord_bias != 0.0:
                        e_b = decay * e_b + post[-1] * coord_bias
                        st["b"] = keep * st["b"] + eta_w * m * e_b
                elif kind == 1:
                    q = wa[act] @ f
                    nxt, q2 = 0, 0.0
                    if not term:
                        p2 = list(wa @ f2)
                        u1, u2 = rs.next(), rs.next()
                        nxt, _ = _select(kind, p2, beta, eps[trial], u1, u2)
                        q2 = p2[nxt]
                    m = modulate(r + gamma * q2 - q)
                    e_w *= decay
                    e_w[act] += f
                    wa *= keep
                    wa += (eta_w * m) * e_w
                    act = nxt
                else:
                    m = modulate(r - st["b"])
                    st["b"] += baseline_rate * (r - st["b"])
                    post = -np.asarray(pi)
                    post[act] += 1.0
                    e_w *= decay
                    e_w += np.outer(post, f)
                    wa *= keep
                    wa += (eta_w * m) * e_w
                x, y, f = nx, ny, f2
                steps = t + 1
                if slot >= 0:
                    traj[a, slot, steps] = (x, y)
                if done:
                    break
            if kind == 3 and guide and not done:       # timed out: placed on the platform
                gc[a] = (*(wc[a] @ place(gx, gy)), 1.0)
            latency[a, trial] = steps
            reward_sum[a, trial] = rsum
            bumps[a, trial] = nb
        b[a] = st["b"]
        buf_n[a] = st["bn"]
        rng_state[a] = np.uint64(rs.state)


def run_simulation(sim, until=None, numpy: bool = False):
    """Run a :class:`~bioplausible.rl.agents.Simulation` with the plain-Python loop (``numpy``:
    the NumPy-per-step loop) instead of the kernel (same state, same results up to rounding)."""
    import time

    from .agents import MODULATORS

    until = sim.n_trials if until is None else int(until)
    env, ka = sim.env, sim.agent.kernel_args()
    loop = run_agents_numpy if numpy else run_agents
    t = time.perf_counter()
    loop(sim.agent.kind, MODULATORS[sim.modulator], env.disc, env.bounds, env.obstacles,
         sim.cells.centres, sim.cells.sigma, env.dirs, sim.goals, sim.starts, sim.eps, sim.trial,
         until, env.max_steps, env.goal_reward, env.wall_reward, env.step_reward, env.inertia,
         env.timeout_terminal, ka["eta_v"], ka["eta_w"], ka["gamma"], ka["lam"], ka["beta"],
         ka["baseline_rate"], ka["w_decay"], sim.v_, sim.w_, sim.b_, sim.rng_state_, sim.buf_,
         sim.buf_n_, sim.latency_, sim.reward_, sim.bumps_, sim.traj_, sim.rec_slot,
         ka.get("eta_c", 0.0), ka.get("lam_c", 0.0), sim.wc_, sim.gc_, ka.get("coord_bias", 0.0),
         env.guide_on_timeout, ka.get("clear_frac", 1.0))
    sim.seconds += time.perf_counter() - t
    sim.trial = until
    return sim
