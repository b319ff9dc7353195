"""Eigenvalue ODEs of SimSiam/PhiNet (bioplausible.dynamics) and the linear networks behind them
(bioplausible.kernels.linear_ssl).  Data here are synthetic Gaussians: the model the theory is
about (x₀ ~ N(0, I), views x ~ N(x₀, σ²I))."""
import math

import numpy as np
import pytest

from bioplausible import dynamics as dy
from bioplausible.errors import UserError

S2, RHO = 0.5, 0.05


# ----------------------------------------------------------------------------- closed forms
def test_p_plus_closed_form_matches_ode_to_1e6():
    pp = dy.p_plus(S2, RHO)
    assert pp == pytest.approx((1 + math.sqrt(1 - 4 * RHO * 1.5)) / 3.0, abs=1e-15)
    _, y1 = dy.integrate(dy.simsiam_reduced_rhs, [0.9], 300.0, (S2, RHO))
    _, y2 = dy.integrate(dy.simsiam_rhs, [0.3, 0.5], 300.0, (S2, RHO))
    assert abs(y1[-1, 0] - pp) < 1e-6
    assert abs(y2[-1, 0] - pp) < 1e-6 and abs(y2[-1, 1] - pp ** 2) < 1e-6
    # and the root of the right-hand side, found without the closed form
    from scipy.optimize import brentq
    r = brentq(lambda p: dy.simsiam_reduced_rhs(0, p, S2, RHO), 0.4, 1.0, xtol=1e-15)
    assert abs(r - pp) < 1e-12


def test_rho_star_separates_noncollapsed_from_collapsed():
    rs = dy.rho_star(S2)
    assert rs == pytest.approx(1 / 6)
    for ratio, alive in ((0.98, True), (1.02, False)):
        fps = dy.simsiam_fixed_points(S2, ratio * rs)
        assert any(f.stable and not f.collapsed for f in fps) == alive
        _, y = dy.integrate(dy.simsiam_rhs, [0.6, 0.36], 3000.0, (S2, ratio * rs), rtol=1e-9,
                            atol=1e-12)
        assert (y[-1, 0] > 0.3) == alive and (y[-1, 0] < 1e-6) == (not alive)


def test_simsiam_stability_from_jacobian():
    fps = {f.name: f for f in dy.simsiam_fixed_points(S2, RHO)}
    assert fps["collapse"].stable and fps["p_plus"].stable and not fps["p_minus"].stable
    for f in fps.values():
        num = dy.numerical_jacobian(lambda y: dy.simsiam_rhs(0, y, S2, RHO), f.state)
        assert np.allclose(num, dy.simsiam_jacobian(f.state, S2, RHO), atol=1e-7)
    # on the manifold one eigenvalue is the transverse −2ρ, the other f'(p) = 2p − 3ap² − ρ
    p = fps["p_plus"].state[0]
    ev = np.sort(fps["p_plus"].eigenvalues.real)
    assert np.allclose(ev, np.sort([-2 * RHO, 2 * p - 4.5 * p * p - RHO]), atol=1e-10)


@pytest.mark.parametrize("model", ["simsiam", "phinet", "cosine"])
def test_invariant_s_minus_p2_decays_at_2rho(model):
    T = 40.0
    t = np.linspace(0, T, 9)
    if model == "simsiam":
        y0 = [0.4, 0.7]
        _, Y = dy.integrate(dy.simsiam_rhs, y0, T, (S2, RHO), t_eval=t)
        p, s = Y[:, 0], Y[:, 1]
    elif model == "phinet":
        y0 = [0.4, 0.3, 0.7]
        _, Y = dy.integrate(dy.phinet_rhs, y0, T, (S2, RHO), t_eval=t)
        p, s = Y[:, 0], Y[:, 2]
        y0 = [y0[0], y0[2]]
    else:
        y0 = [0.4, 0.5, 0.9, 0.7, 0.1, 1.0]
        _, Y = dy.integrate(dy.cosine_rhs, y0, T, (S2, RHO), t_eval=t)
        p, s = Y[:, 0], Y[:, 3]
        y0 = [y0[0], y0[3]]
    assert np.allclose(s - p * p, (y0[1] - y0[0] ** 2) * np.exp(-2 * RHO * t), atol=1e-9)


# ----------------------------------------------------------------------------- PhiNet
def test_phinet_fixed_points_are_zeros_and_window_is_1p5x():
    for form in dy.PHINET_FORMS:
        for f in dy.phinet_fixed_points(S2, 0.1, form=form):
            assert np.allclose(dy.phinet_rhs(0, f.state, S2, 0.1, 1.0, form), 0, atol=1e-10)
    r_derived = dy.largest_rho("phinet", S2)
    r_printed = dy.largest_rho("phinet", S2, form="printed")
    rs = dy.rho_star(S2)
    assert abs(r_derived / rs - 1.5351) < 2e-3       # "≈ 1.5×" holds for the derived ODE
    assert abs(r_printed / rs - 1.2390) < 2e-3       # the printed form would give ≈ 1.24×
    # λ = 0 is SimSiam plus a decaying W_g
    assert dy.largest_rho("phinet", S2, lam=0.0) == pytest.approx(rs, abs=1e-6)


def test_phinet_collapse_is_stable_and_nontrivial_point_exists_below_window():
    fps = dy.phinet_fixed_points(S2, 0.2)      # above SimSiam's ρ* = 1/6
    assert fps[0].collapsed and fps[0].stable
    assert any(f.stable and not f.collapsed for f in fps)
    assert not any(f.stable and not f.collapsed for f in dy.phinet_fixed_points(S2, 0.26))


# ----------------------------------------------------------------------------- kernels
def _expected_loss(wf_on, wh, wg, wf_tgt, a, lam):
    """Closed-form E[L] with the stop-gradient target written as a separate argument."""
    hw = wh @ wf_on
    l1 = 0.5 * (a * np.sum(hw * hw) - 2 * np.trace(hw @ wf_tgt.T) + a * np.sum(wf_tgt ** 2))
    ghw = wg @ hw
    l2 = 0.5 * (a * np.sum(ghw * ghw) - 2 * np.trace(ghw @ wf_tgt.T) + np.sum(wf_tgt ** 2))
    return l1 + lam * l2


@pytest.mark.parametrize("model,d", [("simsiam", 1), ("simsiam", 3), ("phinet", 1),
                                     ("phinet", 4)])
def test_expected_grads_equal_finite_differences(model, d, rng):
    from bioplausible.kernels import linear_ssl as k
    wf, wh, wg = (rng.standard_normal((d, d)) for _ in range(3))
    a, lam = 1.7, (0.8 if model == "phinet" else 0.0)
    g = [np.zeros((d, d)) for _ in range(3)]
    k.expected_grads(k.MODELS[model], wf, wh, wg, a, lam, *g)
    eps = 1e-6
    for idx, name in enumerate(("wf", "wh", "wg")):
        num = np.zeros((d, d))
        for i in range(d):
            for j in range(d):
                ws = {"wf": wf.copy(), "wh": wh.copy(), "wg": wg.copy()}
                ws[name][i, j] += eps
                lp = _expected_loss(ws["wf"], ws["wh"], ws["wg"], wf, a, lam)
                ws[name][i, j] -= 2 * eps
                lm = _expected_loss(ws["wf"], ws["wh"], ws["wg"], wf, a, lam)
                num[i, j] = (lp - lm) / (2 * eps)
        if model == "simsiam" and name == "wg":
            assert np.all(g[idx] == 0)
        else:
            assert np.allclose(g[idx], num, atol=1e-6), name


def _ref_minibatch(model, loss, wf, wh, wg, x0, x1, x2, lam):
    """Per-sample loop straight from the loss definitions."""
    d = wf.shape[0]
    gf, gh, gg = np.zeros((d, d)), np.zeros((d, d)), np.zeros((d, d))

    def derr(u, v):
        if loss == "l2":
            return u - v
        nu, nv = np.linalg.norm(u), np.linalg.norm(v)
        if nu == 0 or nv == 0:
            return np.zeros_like(u)
        return -(v / (nu * nv) - (u @ v) * u / (nu ** 3 * nv))

    n = len(x0)
    for b in range(n):
        z = wf @ x1[b]
        h = wh @ z
        e1 = derr(h, wf @ x2[b])
        gh += np.outer(e1, z)
        dz = wh.T @ e1
        if model == "phinet":
            gv = wg @ h
            e2 = lam * derr(gv, wf @ x0[b])
            gg += np.outer(e2, h)
            dh = wg.T @ e2
            gh += np.outer(dh, z)
            dz += wh.T @ dh
        gf += np.outer(dz, x1[b])
    return gf / n, gh / n, gg / n


@pytest.mark.parametrize("model", ["simsiam", "phinet"])
@pytest.mark.parametrize("loss", ["l2", "cosine"])
@pytest.mark.parametrize("n,d", [(1, 1), (5, 3), (7, 6)])
def test_minibatch_grads_match_per_sample_reference(model, loss, n, d, rng):
    from bioplausible.kernels import linear_ssl as k
    wf, wh, wg = (rng.standard_normal((d, d)) for _ in range(3))
    x0 = rng.standard_normal((n, d))
    x1 = x0 + 0.7 * rng.standard_normal((n, d))
    x2 = x0 + 0.7 * rng.standard_normal((n, d))
    if n > 1:
        x1[0] = 0.0        # a zero online output: the cosine gradient is defined as 0 there
    lam = 0.6 if model == "phinet" else 0.0
    g = [np.zeros((d, d)) for _ in range(3)]
    k.minibatch_grads(k.MODELS[model], k.LOSSES[loss], wf, wh, wg, x0, x1, x2, lam, *g)
    ref = _ref_minibatch(model, loss, wf, wh, wg, x0, x1, x2, lam)
    for got, want in zip(g, ref):
        assert np.allclose(got, want, atol=1e-12, rtol=1e-10)


def test_gd_kernel_matches_numpy_loop(rng):
    from bioplausible.kernels import linear_ssl as k
    d, a, lam, rho, lr, n = 3, 1.5, 1.0, 0.05, 0.02, 7
    wf, wh, wg = (0.5 * rng.standard_normal((d, d)) for _ in range(3))
    out = k.train_gd("phinet", wf, wh, wg, a, lam, rho, lr, n, record_every=2)
    rf, rh, rg = wf.copy(), wh.copy(), wg.copy()
    eye = np.eye(d)
    snaps = [rh.copy()]
    for step in range(1, n + 1):
        F = rf @ rf.T
        m1, gh_ = a * rh - eye, rg @ rh
        m2 = a * gh_ - eye
        gH = m1 @ F + lam * rg.T @ m2 @ F
        gG = lam * m2 @ F @ rh.T
        gF = (rh.T @ m1 + lam * gh_.T @ m2) @ rf
        rf, rh, rg = rf - lr * (gF + rho * rf), rh - lr * (gH + rho * rh), rg - lr * (gG + rho * rg)
        if step % 2 == 0:
            snaps.append(rh.copy())
    assert np.allclose(out[1], rh, atol=1e-13) and np.allclose(out[0], rf, atol=1e-13)
    assert np.allclose(out[2], rg, atol=1e-13)
    assert np.allclose(out[4], np.array(snaps), atol=1e-13)
    assert out[6] == n and np.all(wh == wh)      # inputs untouched (copies)


def test_sgd_is_reproducible_and_unbiased(rng):
    init = dy.init_random(4, rng=rng)
    a = dy.simulate_linear("phinet", init, S2, RHO, 0.01, 50, 10, method="sgd", batch=8, seed=3)
    b = dy.simulate_linear("phinet", init, S2, RHO, 0.01, 50, 10, method="sgd", batch=8, seed=3)
    c = dy.simulate_linear("phinet", init, S2, RHO, 0.01, 50, 10, method="sgd", batch=8, seed=4)
    assert np.array_equal(a["wh"], b["wh"]) and not np.array_equal(a["wh"], c["wh"])
    # the mean of minibatch gradients is the expected gradient
    from bioplausible.kernels import linear_ssl as k
    d, n = 3, 200000
    wf, wh, wg = (0.6 * rng.standard_normal((d, d)) for _ in range(3))
    x0 = rng.standard_normal((n, d))
    x1, x2 = x0 + math.sqrt(S2) * rng.standard_normal((n, d)), x0 + math.sqrt(S2) * \
        rng.standard_normal((n, d))
    gm = [np.zeros((d, d)) for _ in range(3)]
    ge = [np.zeros((d, d)) for _ in range(3)]
    k.minibatch_grads(1, 0, wf, wh, wg, x0, x1, x2, 1.0, *gm)
    k.expected_grads(1, wf, wh, wg, 1 + S2, 1.0, *ge)
    for m_, e_ in zip(gm, ge):
        assert np.abs(m_ - e_).max() < 0.03 * max(1.0, np.abs(e_).max())


# ----------------------------------------------------------------------------- simulation ≈ theory
@pytest.mark.parametrize("model", ["simsiam", "phinet"])
def test_linear_network_follows_ode_within_2_percent(model):
    d, lr, T = 4, 0.01, 60.0
    p0 = np.array([0.35, 0.6, 0.9, 1.2])
    s0 = np.array([0.2, 0.36, 0.5, 1.44])          # two modes off the manifold s = p²
    init = dy.init_aligned(d, p0, s0, np.array([0.2, 0.5, 0.8, 1.0]) if model == "phinet"
                           else 0.0, rng=0)
    n = int(T / lr)
    sim = dy.simulate_linear(model, init, S2, RHO, lr, n, record_every=50)
    errs, errs_printed = [], []
    for j in range(d):
        if model == "simsiam":
            _, Y = dy.integrate(dy.simsiam_rhs, [p0[j], s0[j]], T, (S2, RHO), t_eval=sim["t"])
            errs.append(np.abs(sim["p"][:, j] / Y[:, 0] - 1).max())
            errs.append(np.abs(sim["s"][:, j] / Y[:, 1] - 1).max())
        else:
            y0 = [p0[j], sim["pg"][0, j], s0[j]]
            for form, bucket in (("derived", errs), ("printed", errs_printed)):
                _, Y = dy.integrate(dy.phinet_rhs, y0, T, (S2, RHO, 1.0, form), t_eval=sim["t"])
                bucket.append(np.abs(sim["p"][:, j] / Y[:, 0] - 1).max())
                bucket.append(np.abs(sim["pg"][:, j] / Y[:, 1] - 1).max())
    assert max(errs) < 0.02
    assert sim["offdiag"].max() < 1e-10            # aligned stays aligned
    if model == "phinet":
        assert max(errs_printed) > 10 * max(errs)   # the network follows the derived form


def test_collapse_above_threshold_not_below_in_linear_network():
    """Start at the predicted attractor (+2 %): it holds below the threshold, is gone above."""
    rs, rm = dy.rho_star(S2), dy.largest_rho("phinet", S2)
    for model, thr in (("simsiam", rs), ("phinet", rm)):
        for ratio in (0.95, 1.05):
            rho = ratio * thr
            if model == "simsiam":
                p0, pg0 = dy.p_plus(S2, 0.95 * thr) * 1.02, 0.0
            else:
                f = [f for f in dy.phinet_fixed_points(S2, 0.95 * thr) if f.stable
                     and not f.collapsed][0]
                p0, pg0 = f.state[0] * 1.02, f.state[1] * 1.02
            init = dy.init_aligned(1, p0, p0 ** 2, pg0, rng=0)
            sim = dy.simulate_linear(model, init, S2, rho, 0.1, 15000, 1000)
            final = sim["p"][-1, 0]
            assert (final > 0.3) if ratio < 1 else (final < 1e-3), (model, ratio, final)


def test_random_init_approaches_alignment():
    init = dy.init_random(6, rng=2)
    sim = dy.simulate_linear("simsiam", init, S2, RHO, 0.02, 10000, 1000)
    assert sim["asym"][-1] < 0.1 * sim["asym"][0]
    assert sim["comm"][-1] < 0.1 * sim["comm"][0]


def test_cosine_drift_matches_high_dimensional_ode(rng):
    """The derived high-dimensional cosine ODE vs the network's Monte-Carlo drift: the error
    is a finite-d effect (norms not yet concentrated), so it must shrink as d grows."""
    errs = []
    for d in (8, 48):
        p0 = np.linspace(0.3, 1.5, d)
        s0 = p0 ** 2 * np.linspace(1.5, 0.5, d)
        pdot, sdot = dy.cosine_drift_mc(p0, s0, S2, 20000, 2, rng)
        rhs = dy.cosine_rhs(0.0, np.concatenate([p0, s0]), S2, 0.0)
        errs.append(np.linalg.norm(pdot - rhs[:d]) / np.linalg.norm(rhs[:d]))
        assert np.linalg.norm(sdot - rhs[d:]) / np.linalg.norm(rhs[d:]) < 0.4
    assert errs[1] < 0.15 and errs[1] < 0.5 * errs[0]


# ----------------------------------------------------------------------------- errors
def test_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="rho"):
        dy.simsiam_fixed_points(0.5, -0.1)
    with pytest.raises(UserError, match="sigma2"):
        dy.rho_star(-1)
    with pytest.raises(UserError, match="form"):
        dy.phinet_fixed_points(0.5, 0.1, form="typo")
    with pytest.raises(UserError, match="model"):
        dy.largest_rho("byol", 0.5)
    with pytest.raises(UserError, match="cosine"):
        dy.simulate_linear("simsiam", dy.init_random(2), 0.5, 0.1, 0.01, 10, loss="cosine")
    with pytest.raises(UserError, match="square"):
        bad = {"wf": np.zeros((2, 3)), "wh": np.zeros((2, 2)), "wg": np.zeros((2, 2))}
        dy.simulate_linear("simsiam", bad, 0.5, 0.1, 0.01, 10)
    with pytest.raises(UserError, match="form"):
        dy.phinet_rhs(0, [0.1, 0.1, 0.1], 0.5, 0.1, form="talk")
    with pytest.raises(ValueError, match="square"):
        from bioplausible.kernels import linear_ssl as k
        k.train_gd("simsiam", np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 2)), 1.5, 0, 0,
                   0.1, 1)


def test_import_compiles_nothing():
    import subprocess
    import sys
    code = ("import sys, bioplausible.dynamics; "
            "assert 'bioplausible.kernels.linear_ssl' not in sys.modules; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_experiment_smoke(tmp_path):
    from bioplausible.experiment import load_experiment, run_experiment
    rows = run_experiment(load_experiment("simsiam_dynamics"), out=tmp_path, smoke=True,
                          progress=False)
    assert len(list(tmp_path.glob("*.h5"))) == 1
    for fig in ("bifurcation.png", "phase_portraits.png", "ode_vs_simulation.png",
                "negative_init.png", "cosine.png", "table.md"):
        assert (tmp_path / fig).is_file(), fig
    met = {r["quantity"]: r["met"] for r in rows}
    assert met["p+ closed form (σ²=0.5, ρ=0.05)"] is True
    assert met["PhiNet rho_max / SimSiam rho* (ODE)"] is True
    assert met["collapse grid: sim agrees with theory at every ρ"] is True
