r"""Three-factor plasticity kernels: eligibility traces, modulated updates, and the many-agents
navigation loop (place cells → action cells) that runs every agent and every trial in one call.

Generic trace kernel (:func:`trace_run_kernel`), for each step t of a time series::

    e_ij ← λ e_ij + post_j(t) · pre_i(t)            (eligibility trace, λ = exp(−Δt/τ_e))
    w_ij ← w_ij + η · M(t) · e_ij                   (three-factor update)

Navigation kernel (:func:`run_agents_kernel`): ``A`` independent agents (agents × seeds) in one
continuous arena (a disc or a box with axis-aligned rectangular obstacles), each with Gaussian
place cells f_i(p) = exp(−|p − c_i|² / 2σ²) as input and ``n_act`` action cells (direction k moves
the agent by ``dirs[k]``, all of one length ``step``; with ``inertia`` m > 0 the heading is
low-pass filtered, u ← m u + (1 − m) dirs[k], and the agent moves ``step`` along u, like the
swimming rat's momentum in Foster et al. 2000).  A move that would leave the arena or enter an
obstacle is a *bump*: the agent stays where it is and receives ``wall_reward`` (and loses its
momentum); every step costs ``step_reward`` (≤ 0).  Reaching the goal disc ends the trial with
``goal_reward``.  With ``timeout_terminal`` the last step of a trial that times out is a terminal
transition with no reward (the rat is lifted out of the pool: V(p') = 0, so an expected but
missing platform gives a negative TD error); otherwise a timed-out trial just stops.
``w_decay`` ρ: the action weights W forget, W ← (1 − ρ) W + η M e, every step (soft-bounded
synapses; 0 = off).  ``kind`` selects the agent:

* 0 -- actor-critic (Foster, Morris & Dayan 2000) with eligibility traces.  Critic V(p) = v·f(p),
  TD error δ = r + γ V(p') − V(p) (V(p') = 0 at the goal); traces e_v ← γλ e_v + f(p),
  e_W[j] ← γλ e_W[j] + (g_j − π_j) f(p) (g = one-hot chosen action, π = softmax(β W f));
  updates v += η_v M e_v, W += η_w M e_W with M = δ.
* 1 -- SARSA(λ): Q_k(p) = W[k]·f(p), ε-greedy (random tie-break), accumulating traces
  e ← γλ e, e[a] += f(p); δ = r + γ Q_{a'}(p') − Q_a(p) (no bootstrap at the goal); W += η M e.
* 2 -- reward-modulated Hebbian / REINFORCE (node perturbation) with a reward baseline, no critic:
  e_W[j] ← λ e_W[j] + (g_j − π_j) f(p);  M = r − b;  W += η M e_W;  b ← b + α_b (r − b).
* 3 -- actor-critic + coordinates (Foster, Morris & Dayan 2000, coordinate-based model): kind 0
  with one more action cell, ``coord`` (the last row of W, index ``dirs.shape[0]``), chosen through
  the same softmax.  Coordinate cells x̂(p) = wx·f(p), ŷ(p) = wy·f(p) learn from self-motion
  (Δx_t, Δy_t) = p_{t+1} − p_t (zero on a bump) by a TD-like rule with their own trace:
  e_c ← λ_c e_c + f(p_t);  wx += η_c (x̂(p_{t+1}) − x̂(p_t) − Δx_t) e_c  (same for y), so that
  x̂(p_{t+1}) − x̂(p_t) → Δx_t, i.e. x̂ ≈ x + const (Foster et al. write the same rule for the
  negated coordinate).  Independent of the modulator (self-motion is not a reward signal).  When
  the goal is reached, its estimated coordinates (x̂_g, ŷ_g) = (x̂(p_goal), ŷ(p_goal)) are stored
  (``gc[a] = (x̂_g, ŷ_g, 1)``; overwritten at every arrival, kept across trials and platform
  moves).  The coord action moves ``step`` along (x̂_g − x̂(p), ŷ_g − ŷ(p)) (exactly at x̂_g: no
  heading).  Reaching the remembered goal, |(x̂_g, ŷ_g) − (x̂, ŷ)(p')| ≤ ``clear_frac`` · goal
  radius, without finding the platform clears the memory (``gc[a, 2] = 0``, "it is not here";
  ``clear_frac`` = 0: never cleared); while no goal is in memory the coord action heads in one
  of the ``dirs`` drawn at random (one more uniform).  ``guide``: after a trial that timed out
  the agent is placed on the platform (the experimenter's guiding in the watermaze protocol) and
  stores the estimated coordinates of the platform centre, gc[a] = (x̂, ŷ)(g), 1 -- no reward,
  no TD update (only the goal memory uses it).
  ``coord_bias`` c_b > 0 adds a constant input unit to the coord action cell only: its
  preference is W_coord·f(p) + c_b·b (b = ``b[a]``, unused otherwise by this kind), with
  e_b ← γλ e_b + (g_coord − π_coord) c_b, b ← (1 − ρ) b + η_W δ e_b, so trust in the coord action
  learned anywhere generalises over the whole pool (0 = off: Foster's place-only actor).

``mod_mode``: 0 = the modulator as above; 1 = M ≡ 0 (control); 2 = shuffled control: every M is
drawn at random from the agent's last ``buf.shape[1]`` modulator values (same distribution, no
temporal relation to the traces).

Randomness: each agent owns a splitmix64 stream (``rng_state[a]``, uint64, advanced in place);
every action choice draws exactly two uniforms (ε test, then the sample / tie-break), the shuffled
control one more per step, kind 3's coord action without a goal in memory one more.  ``bioplausible.rl.reference`` repeats this loop in plain Python and the
tests compare the two.

All float arrays are float64 (weights are tiny increments of sums over hundreds of cells, and the
plain-Python reference computes in float64).  Nothing here imports the rest of the package.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._config import jit, pjit

_GOLD = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0


# ----------------------------------------------------------------------------- generic traces

@jit
def trace_run_kernel(pre, post, m, decay, eta, w, e, w_hist):  # pragma: no cover - compiled
    """T steps of ``e ← decay·e + post ⊗ pre``; ``w += eta·m[t]·e``; ``w_hist[t] = w`` (flattened
    copy per step when ``w_hist.shape[0] == T``, nothing recorded when it is 0).
    pre (T, n_pre), post (T, n_post), m (T,), w and e (n_post, n_pre) updated in place."""
    T = pre.shape[0]
    n_post, n_pre = w.shape
    rec = w_hist.shape[0] == T
    for t in range(T):
        mt = eta * m[t]
        for j in range(n_post):
            pj = post[t, j]
            for i in range(n_pre):
                e[j, i] = decay * e[j, i] + pj * pre[t, i]
                w[j, i] += mt * e[j, i]
        if rec:
            k = 0
            for j in range(n_post):
                for i in range(n_pre):
                    w_hist[t, k] = w[j, i]
                    k += 1


# ----------------------------------------------------------------------------- navigation helpers

@jit
def _u01(state, a):  # pragma: no cover - compiled
    """Next uniform [0, 1) of agent ``a``'s splitmix64 stream."""
    x = state[a] + _GOLD
    state[a] = x
    z = (x ^ (x >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return float(z >> _S11) * _INV53


@jit
def _place(px, py, centres, inv2s2, f):  # pragma: no cover - compiled
    for i in range(centres.shape[0]):
        dx = px - centres[i, 0]
        dy = py - centres[i, 1]
        f[i] = math.exp(-(dx * dx + dy * dy) * inv2s2)


@jit
def _inside(px, py, disc, bounds, obstacles):  # pragma: no cover - compiled
    if disc:
        dx = px - bounds[0]
        dy = py - bounds[1]
        if dx * dx + dy * dy > bounds[2] * bounds[2]:
            return False
    else:
        if px < bounds[0] or py < bounds[1] or px > bounds[2] or py > bounds[3]:
            return False
    for k in range(obstacles.shape[0]):
        if (px >= obstacles[k, 0] and px <= obstacles[k, 2]
                and py >= obstacles[k, 1] and py <= obstacles[k, 3]):
            return False
    return True


@jit
def _prefs(w, f, out):  # pragma: no cover - compiled
    for k in range(w.shape[0]):
        s = 0.0
        for i in range(w.shape[1]):
            s += w[k, i] * f[i]
        out[k] = s


@jit
def _dot(v, f):  # pragma: no cover - compiled
    s = 0.0
    for i in range(v.shape[0]):
        s += v[i] * f[i]
    return s


@jit
def _select(kind, prefs, beta, eps, u1, u2, pi):  # pragma: no cover - compiled
    """Fill ``pi`` with softmax(β prefs) (kinds 0, 2) and return the chosen action."""
    n = prefs.shape[0]
    if kind != 1:
        mx = prefs[0]
        for k in range(1, n):
            if prefs[k] > mx:
                mx = prefs[k]
        z = 0.0
        for k in range(n):
            pi[k] = math.exp(beta * (prefs[k] - mx))
            z += pi[k]
        for k in range(n):
            pi[k] /= z
    if u1 < eps:
        a = int(u2 * n)
        return a if a < n else n - 1
    if kind == 1:
        mx = prefs[0]
        for k in range(1, n):
            if prefs[k] > mx:
                mx = prefs[k]
        nt = 0
        for k in range(n):
            if prefs[k] == mx:
                nt += 1
        pick = int(u2 * nt)
        if pick >= nt:
            pick = nt - 1
        for k in range(n):
            if prefs[k] == mx:
                if pick == 0:
                    return k
                pick -= 1
        return n - 1
    c = 0.0
    for k in range(n):
        c += pi[k]
        if u2 < c:
            return k
    return n - 1


@jit
def _modulate(mode, x, buf, buf_n, a, state):  # pragma: no cover - compiled
    if mode == 0:
        return x
    if mode == 1:
        return 0.0
    K = buf.shape[1]
    buf[a, buf_n[a] % K] = x
    buf_n[a] += 1
    n = buf_n[a] if buf_n[a] < K else K
    j = int(_u01(state, a) * n)
    if j >= n:
        j = n - 1
    return buf[a, j]


def _run_agents_impl(kind, mod_mode, disc, bounds, obstacles, centres, sigma, dirs, goals, starts,
                     eps, t0, t1, max_steps, goal_reward, wall_reward, step_reward, inertia,
                     timeout_terminal, eta_v, eta_w,
                     gamma, lam,
                     beta, baseline_rate, w_decay, v, w, b, rng_state, buf, buf_n, latency,
                     reward_sum,
                     bumps, traj, rec_slot, eta_c, lam_c, wc, gc,
                     coord_bias, guide, clear_frac):  # pragma: no cover - compiled
    A = w.shape[0]
    n_act, n_pc = w.shape[1], w.shape[2]
    inv2s2 = 1.0 / (2.0 * sigma * sigma)
    tr_decay = gamma * lam if kind != 2 else lam
    step = math.sqrt(dirs[0, 0] * dirs[0, 0] + dirs[0, 1] * dirs[0, 1])
    keep = 1.0 - w_decay
    n_dir = dirs.shape[0]
    for a in prange(A):
        f = np.empty(n_pc)
        f2 = np.empty(n_pc)
        prefs = np.empty(n_act)
        prefs2 = np.empty(n_act)
        pi = np.empty(n_act)
        pi2 = np.empty(n_act)
        e_v = np.empty(n_pc)
        e_w = np.empty((n_act, n_pc))
        e_c = np.empty(n_pc)
        e_b = 0.0
        for trial in range(t0, t1):
            gx, gy, gr = goals[trial, 0], goals[trial, 1], goals[trial, 2]
            gr2 = gr * gr
            cr2 = clear_frac * clear_frac * gr2
            found = False
            px, py = starts[a, trial, 0], starts[a, trial, 1]
            vx = 0.0
            vy = 0.0
            for i in range(n_pc):
                e_v[i] = 0.0
            for k in range(n_act):
                for i in range(n_pc):
                    e_w[k, i] = 0.0
            if kind == 3:
                e_b = 0.0
                for i in range(n_pc):
                    e_c[i] = 0.0
            _place(px, py, centres, inv2s2, f)
            slot = rec_slot[trial]
            if slot >= 0:
                traj[a, slot, 0, 0] = px
                traj[a, slot, 0, 1] = py
            act = 0
            if kind == 1:
                _prefs(w[a], f, prefs)
                u1 = _u01(rng_state, a)
                u2 = _u01(rng_state, a)
                act = _select(kind, prefs, beta, eps[trial], u1, u2, pi)
            steps = 0
            rsum = 0.0
            nb = 0
            for t in range(max_steps):
                if kind != 1:
                    _prefs(w[a], f, prefs)
                    if kind == 3:
                        prefs[n_act - 1] += coord_bias * b[a]
                    u1 = _u01(rng_state, a)
                    u2 = _u01(rng_state, a)
                    act = _select(kind, prefs, beta, eps[trial], u1, u2, pi)
                if act < n_dir:
                    hx = dirs[act, 0]
                    hy = dirs[act, 1]
                else:                                   # kind 3: the coord action
                    hx = 0.0
                    hy = 0.0
                    if gc[a, 2] > 0.0:
                        ddx = gc[a, 0] - _dot(wc[a, 0], f)
                        ddy = gc[a, 1] - _dot(wc[a, 1], f)
                        dn = math.sqrt(ddx * ddx + ddy * ddy)
                        if dn > 0.0:
                            hx = ddx * (step / dn)
                            hy = ddy * (step / dn)
                    else:                               # no goal in memory: a random direction
                        kr = int(_u01(rng_state, a) * n_dir)
                        if kr >= n_dir:
                            kr = n_dir - 1
                        hx = dirs[kr, 0]
                        hy = dirs[kr, 1]
                vx = inertia * vx + (1.0 - inertia) * hx
                vy = inertia * vy + (1.0 - inertia) * hy
                sp = math.sqrt(vx * vx + vy * vy)
                if sp > 0.0:
                    nx = px + vx * (step / sp)
                    ny = py + vy * (step / sp)
                else:
                    nx = px
                    ny = py
                r = step_reward
                if not _inside(nx, ny, disc, bounds, obstacles):
                    nx = px
                    ny = py
                    vx = 0.0
                    vy = 0.0
                    r += wall_reward
                    nb += 1
                dgx = nx - gx
                dgy = ny - gy
                done = dgx * dgx + dgy * dgy <= gr2
                if done:
                    r += goal_reward
                rsum += r
                term = done or (timeout_terminal and t == max_steps - 1)
                _place(nx, ny, centres, inv2s2, f2)
                if kind == 3:
                    cx2 = _dot(wc[a, 0], f2)
                    cy2 = _dot(wc[a, 1], f2)
                    cex = cx2 - _dot(wc[a, 0], f) - (nx - px)
                    cey = cy2 - _dot(wc[a, 1], f) - (ny - py)
                    for i in range(n_pc):
                        e_c[i] = lam_c * e_c[i] + f[i]
                        wc[a, 0, i] += eta_c * cex * e_c[i]
                        wc[a, 1, i] += eta_c * cey * e_c[i]
                    if done:
                        gc[a, 0] = _dot(wc[a, 0], f2)
                        gc[a, 1] = _dot(wc[a, 1], f2)
                        gc[a, 2] = 1.0
                    elif gc[a, 2] > 0.0 and clear_frac > 0.0:   # at the remembered goal,
                        ddx = gc[a, 0] - cx2                    # no platform: forget it
                        ddy = gc[a, 1] - cy2
                        if ddx * ddx + ddy * ddy <= cr2:
                            gc[a, 2] = 0.0
                if kind == 0 or kind == 3:
                    val = _dot(v[a], f)
                    val2 = 0.0 if term else _dot(v[a], f2)
                    m = _modulate(mod_mode, r + gamma * val2 - val, buf, buf_n, a, rng_state)
                    cv = eta_v * m
                    cw = eta_w * m
                    for i in range(n_pc):
                        e_v[i] = tr_decay * e_v[i] + f[i]
                        v[a, i] += cv * e_v[i]
                    for k in range(n_act):
                        post = (1.0 if k == act else 0.0) - pi[k]
                        for i in range(n_pc):
                            e_w[k, i] = tr_decay * e_w[k, i] + post * f[i]
                            w[a, k, i] = keep * w[a, k, i] + cw * e_w[k, i]
                    if kind == 3 and coord_bias != 0.0:
                        post = (1.0 if act == n_act - 1 else 0.0) - pi[n_act - 1]
                        e_b = tr_decay * e_b + post * coord_bias
                        b[a] = keep * b[a] + cw * e_b
                elif kind == 1:
                    q = _dot(w[a, act], f)
                    nxt = 0
                    q2 = 0.0
                    if not term:
                        _prefs(w[a], f2, prefs2)
                        u1 = _u01(rng_state, a)
                        u2 = _u01(rng_state, a)
                        nxt = _select(kind, prefs2, beta, eps[trial], u1, u2, pi2)
                        q2 = prefs2[nxt]
                    m = _modulate(mod_mode, r + gamma * q2 - q, buf, buf_n, a, rng_state)
                    cw = eta_w * m
                    for k in range(n_act):
                        for i in range(n_pc):
                            e_w[k, i] = tr_decay * e_w[k, i] + (f[i] if k == act else 0.0)
                            w[a, k, i] = keep * w[a, k, i] + cw * e_w[k, i]
                    act = nxt
                else:
                    m = _modulate(mod_mode, r - b[a], buf, buf_n, a, rng_state)
                    b[a] += baseline_rate * (r - b[a])
                    cw = eta_w * m
                    for k in range(n_act):
                        post = (1.0 if k == act else 0.0) - pi[k]
                        for i in range(n_pc):
                            e_w[k, i] = tr_decay * e_w[k, i] + post * f[i]
                            w[a, k, i] = keep * w[a, k, i] + cw * e_w[k, i]
                px = nx
                py = ny
                for i in range(n_pc):
                    f[i] = f2[i]
                steps = t + 1
                if slot >= 0:
                    traj[a, slot, steps, 0] = px
                    traj[a, slot, steps, 1] = py
                if done:
                    found = True
                    break
            if kind == 3 and guide and not found:      # timed out: placed on the platform,
                _place(gx, gy, centres, inv2s2, f2)     # it notes where that is
                gc[a, 0] = _dot(wc[a, 0], f2)
                gc[a, 1] = _dot(wc[a, 1], f2)
                gc[a, 2] = 1.0
            latency[a, trial] = steps
            reward_sum[a, trial] = rsum
            bumps[a, trial] = nb


#: serial, cached (the default: compiled once per machine)
run_agents_kernel = jit(_run_agents_impl)
#: the same loop with agents spread over threads (``prange``); not cached (see ``_config``)
run_agents_kernel_parallel = pjit(_run_agents_impl)
