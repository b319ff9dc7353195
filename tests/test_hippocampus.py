"""The CA3–CA1 delay model: sequences (numba time loop), and the PhiNet rule on conv encoders.

Synthetic data only (small random arrays, simulated tracks); the real-data runs are in
experiments/hippocampus.py.
"""
import numpy as np
import pytest

from bioplausible import hippocampus as hc
from bioplausible.errors import UserError


# ------------------------------------------------------------------ the time loop: reference
def reference_run(X, Wf, bf, Wh, bh, Wg, bg, delay, lr, lr_f, lam, rho, backprop, learn=True):
    """Obviously-correct numpy version of kernels.hippocampus.ca3ca1_run_kernel (float64)."""
    Wf, bf, Wh, bh, Wg, bg = (np.array(a, np.float64) for a in (Wf, bf, Wh, bh, Wg, bg))
    hist = []                                   # (x, a, s, p) per step
    e1s, e3s = [], []
    for t, x in enumerate(np.asarray(X, np.float64)):
        a = Wf @ x + bf
        s = np.maximum(a, 0)
        p = Wh @ s + bh
        hist.append((x, a, s, p))
        if t < delay:
            e1s.append(np.nan)
            e3s.append(np.nan)
            continue
        xd, ad, sd, pd = hist[t - delay]
        e3 = pd - s
        e1 = Wg @ pd + bg - x
        e1s.append(np.mean(e1 ** 2))
        e3s.append(np.mean(e3 ** 2))
        if not learn:
            continue
        eps3 = e3 + lam * Wg.T @ e1
        dlt = (Wh.T @ (eps3 if backprop else e3)) * (ad > 0)
        Wg, bg = Wg - lr * (lam * np.outer(e1, pd) + rho * Wg), bg - lr * lam * e1
        Wh, bh = Wh - lr * (np.outer(eps3, sd) + rho * Wh), bh - lr * eps3
        if lr_f > 0:
            Wf, bf = Wf - lr_f * (np.outer(dlt, xd) + rho * Wf), bf - lr_f * dlt
    return (Wf, bf, Wh, bh, Wg, bg), np.array(e1s), np.array(e3s)


def _model(n_ec, n, delay, mode, lr_f, rho, seed=0):
    m = hc.CA3CA1(n_ec, n, delay=delay, lr=0.05, lr_encoder=lr_f, ca1_weight=0.7,
                  weight_decay=rho, mode=mode, init_scale=0.5, seed=seed)
    m.b_f_[:] = 0.1
    return m


@pytest.mark.parametrize("n_ec,n,delay,T", [(5, 4, 1, 12), (7, 3, 2, 9), (1, 1, 1, 2), (6, 5, 3, 4)])
@pytest.mark.parametrize("mode", ["local", "backprop"])
def test_kernel_matches_reference(rng, n_ec, n, delay, T, mode):
    m = _model(n_ec, n, delay, mode, lr_f=0.03, rho=0.01)
    X = rng.standard_normal((T, n_ec)).astype(np.float32)
    before = [a.copy() for a in (m.W_f_, m.b_f_, m.W_h_, m.b_h_, m.W_g_, m.b_g_)]
    rec = m.run(X)
    ref, e1, e3 = reference_run(X, *before, delay, 0.05, 0.03, 0.7, 0.01, mode == "backprop")
    for got, want in zip((m.W_f_, m.b_f_, m.W_h_, m.b_h_, m.W_g_, m.b_g_), ref):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(rec["ca1_mismatch"], e1, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(rec["ca3_mismatch"], e3, rtol=2e-4, atol=1e-6)
    # learn=False changes nothing
    frozen = [a.copy() for a in (m.W_f_, m.W_h_, m.W_g_)]
    m.run(X, learn=False)
    for a, b in zip(frozen, (m.W_f_, m.W_h_, m.W_g_)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["local", "backprop"])
@pytest.mark.parametrize("delay", [1, 2])
def test_sequence_update_is_gradient_of_local_loss(rng, mode, delay):
    """One learning step: ΔW_g = −η ∂L/∂W_g, ΔW_h = −η ∂L/∂W_h with L = ½‖e3‖² + λ½‖e1‖², and the
    encoder update is −η_f ∂(½‖e3‖²)/∂W_f (local: CA3 mismatch only) or −η_f ∂L/∂W_f (backprop),
    targets held fixed (stop-gradient), checked by central finite differences."""
    n_ec, n, lam, lr, lr_f = 5, 4, 0.7, 0.05, 0.03
    m = _model(n_ec, n, delay, mode, lr_f, rho=0.0, seed=3)
    X = rng.standard_normal((delay + 1, n_ec)).astype(np.float32)
    W0 = {k: getattr(m, k).astype(np.float64) for k in ("W_f_", "b_f_", "W_h_", "b_h_", "W_g_", "b_g_")}
    m.run(X)
    x0, xd = X[0].astype(np.float64), X[delay].astype(np.float64)
    s_target = np.maximum(W0["W_f_"] @ xd + W0["b_f_"], 0)          # SG: fixed when it arrives

    def losses(W):
        s0 = np.maximum(W["W_f_"] @ x0 + W["b_f_"], 0)
        p0 = W["W_h_"] @ s0 + W["b_h_"]
        l3 = 0.5 * np.sum((p0 - s_target) ** 2)
        l1 = 0.5 * np.sum((W["W_g_"] @ p0 + W["b_g_"] - xd) ** 2)
        return l3, l3 + lam * l1

    def fd(key, which):
        g = np.zeros_like(W0[key])
        for idx in np.ndindex(g.shape):
            Wp = {k: v.copy() for k, v in W0.items()}
            Wm = {k: v.copy() for k, v in W0.items()}
            Wp[key][idx] += 1e-6
            Wm[key][idx] -= 1e-6
            g[idx] = (losses(Wp)[which] - losses(Wm)[which]) / 2e-6
        return g

    for key in ("W_g_", "b_g_", "W_h_", "b_h_"):
        np.testing.assert_allclose(getattr(m, key) - W0[key], -lr * fd(key, 1), rtol=1e-3, atol=1e-6)
    which = 1 if mode == "backprop" else 0
    for key in ("W_f_", "b_f_"):
        np.testing.assert_allclose(getattr(m, key) - W0[key], -lr_f * fd(key, which), rtol=1e-3,
                                   atol=1e-6)
    if mode == "local":      # and the local rule really differs from the full gradient
        assert not np.allclose(m.W_f_ - W0["W_f_"], -lr_f * fd("W_f_", 1), atol=1e-6)


def test_track_learning_prediction_and_replay():
    """On a linear track: the CA1 mismatch falls, CA3's prediction leads the code by d, and cued
    with the start CA3 replays the lap in order (rank correlation ≥ 0.9)."""
    spl = 40
    rng = np.random.default_rng(0)
    pos = hc.track_positions(40, spl, "linear")
    X = hc.place_input(pos, 60, 0.06, "linear", noise=0.05, rng=rng)
    m = hc.CA3CA1(60, 120, delay=1, lr=0.01, seed=0)
    rec = m.run(X)
    e1 = np.nanmean(rec["ca1_mismatch"].reshape(-1, spl), axis=1)
    assert e1[-1] < 0.25 * e1[0]
    lags, corr = m.lead_lag(X[:2 * spl])
    assert lags[np.argmax(corr)] == 1
    track = hc.place_input(np.arange(spl) / spl, 60, 0.06)      # one input per position bin
    dec = hc.decode(m.replay(track[0], spl - 1), m.code(track))
    assert hc.replay_order(dec) >= 0.9
    # an untrained network does not replay the lap
    fresh = hc.CA3CA1(60, 120, delay=1, lr=0.01, seed=0)
    dec0 = hc.decode(fresh.replay(track[0], spl - 1), fresh.code(track))
    assert hc.replay_order(dec0) < 0.9


def test_circular_unwrap_and_spearman():
    assert hc.replay_order(np.array([7, 8, 9, 0, 1, 2]), circular_bins=10) == pytest.approx(1.0)
    assert hc.replay_order(np.array([7, 8, 9, 0, 1, 2])) < 0.5
    assert hc.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    pos = hc.track_positions(2, 10, "circular")
    assert pos.min() >= 0 and pos.max() < 1 and len(pos) == 20


def test_image_sequence_and_errors(rng):
    X, ids = hc.image_sequence(rng.random((3, 4, 4)), 2)
    assert X.shape == (6, 16) and list(ids) == [0, 1, 2, 0, 1, 2]
    with pytest.raises(UserError):
        hc.CA3CA1(4, 3, mode="bptt")
    with pytest.raises(UserError):
        hc.CA3CA1(4, 3, delay=0)
    with pytest.raises(UserError, match="shape"):
        hc.CA3CA1(4, 3).run(np.zeros((5, 3)))
    with pytest.raises(UserError):
        hc.track_positions(1, 10, "spiral")


# --------------------------------------------------------------------- PhiNet on conv encoders
TINY = {"name": "tiny", "block": [
    {"layers": [{"type": "conv2d", "out": 4, "kernel": 3, "padding": 1},
                {"type": "relu_maxpool2d", "size": 2}]},
    {"layers": [{"type": "conv2d", "out": 6, "kernel": 3, "padding": 1}, {"type": "relu"}]}]}


def _views(rng, n=5, size=8):
    x0 = rng.standard_normal((n, size, size, 1))
    v = np.concatenate([x0 + 0.3 * rng.standard_normal(x0.shape),
                        x0 + 0.3 * rng.standard_normal(x0.shape)])
    return x0, v


def _f64(enc, rule=None):
    for b in enc.blocks:
        for layer in b.layers:
            if hasattr(layer, "astype"):
                layer.astype(np.float64)
    if rule is not None and rule.mode == "local":
        for d in rule.H + rule.G:
            for k in d:
                d[k] = d[k].astype(np.float64)


@pytest.mark.parametrize("loss", ["cosine", "l2"])
def test_local_mode_updates_are_gradients_of_block_local_loss(rng, loss):
    """ΔG, ΔH = −∂L_l/∂(G, H) of the block-local loss L_l = D(P, SG z_t) + λ D(Q, SG z_o); the conv
    weights of the block get −∂(CA3 term)/∂W only; finite differences in float64, targets fixed."""
    from bioplausible import encoders, views
    from bioplausible.encoders import Block
    from bioplausible.rules.phinet import PhiNet, _loss_fn

    enc = encoders.build(TINY, (8, 8, 1), seed=1)
    rule = PhiNet(enc, views.preset("fashion_mnist"), mode="local", loss=loss, ca1_weight=0.6,
                  init_noise=0.5, seed=2)
    _f64(enc, rule)
    x0, v = _views(rng)
    n = len(x0)
    per_block, _ = rule.local_grads(enc, v, x0, n)
    fn = _loss_fn(loss)
    src = np.arange(2 * n)
    tgt = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    # inputs to each block and fixed targets (SG), from the unperturbed network
    ins, ins0 = [v], [x0]
    for b in enc.blocks:
        ins.append(b(ins[-1]).copy())
        ins0.append(b(ins0[-1]).copy())
    for i, blk in enumerate(enc.blocks):
        Zt = Block.code(ins[i + 1])[tgt].copy()
        Zo = Block.code(ins0[i + 1])[src % n].copy()
        H, G = rule.H[i], rule.G[i]

        def L(part):
            Z = Block.code(blk(ins[i]))[src]
            P = Z @ H["w"] + H["b"]
            l3 = fn(P, Zt)[0]
            return l3 if part == "ca3" else l3 + 0.6 * fn(P @ G["w"] + G["b"], Zo)[0]

        def fd(arr, idx, part):
            old = arr[idx]
            arr[idx] = old + 1e-6
            lp = L(part)
            arr[idx] = old - 1e-6
            lm = L(part)
            arr[idx] = old
            return (lp - lm) / 2e-6

        grads = per_block[i]
        conv = blk.layers[0].params
        for k, g in grads[0].items():                       # conv weights: CA3 term only
            for idx in list(np.ndindex(g.shape))[:: max(1, g.size // 25)]:
                assert fd(conv[k], idx, "ca3") == pytest.approx(g[idx], rel=1e-4, abs=1e-8), (i, k, idx)
        for d, g in zip((H, G), grads[-2:]):                # CA3 and CA1 maps: full local loss
            for k in g:
                for idx in list(np.ndindex(g[k].shape))[:: max(1, g[k].size // 25)]:
                    assert fd(d[k], idx, "all") == pytest.approx(g[k][idx], rel=1e-4, abs=1e-8)
        # the local block update is not the gradient of the full block loss (CA1 stays out)
        full = np.array([fd(conv["w"], idx, "all") for idx in list(np.ndindex(conv["w"].shape))[:20]])
        local = np.array([grads[0]["w"][idx] for idx in list(np.ndindex(conv["w"].shape))[:20]])
        assert not np.allclose(full, local, rtol=1e-3, atol=1e-8)


def test_backprop_mode_gradient_matches_finite_differences(rng):
    from bioplausible import encoders, views
    from bioplausible.rules.phinet import PhiNet

    enc = encoders.build(TINY, (8, 8, 1), seed=1)
    rule = PhiNet(enc, views.preset("fashion_mnist"), mode="backprop", ca1_weight=0.8,
                  proj_hidden=8, proj_dim=5, seed=2)
    _f64(enc)
    for h in (rule.proj, rule.pred, rule.ca1):
        for layer in h.layers:
            if hasattr(layer, "astype"):
                layer.astype(np.float64)
    x0, v = _views(rng)
    n = len(x0)
    grads, _ = rule.backprop_grads(enc, v, x0, n)
    from bioplausible.encoders import Block
    from bioplausible.losses import simsiam_cosine

    src = np.arange(2 * n)
    tgt = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    g_fixed = rule.proj(Block.code(enc.outputs(v)[-1])).copy()
    f0 = rule.proj(Block.code(enc.outputs(x0)[-1])).copy()

    def L():
        g = rule.proj(Block.code(enc.outputs(v)[-1]))
        p = rule.pred(g)
        return simsiam_cosine(p, g_fixed[tgt])[0] + 0.8 * simsiam_cosine(rule.ca1(p), f0[src % n])[0]

    params = enc.params + rule.proj.params + rule.pred.params + rule.ca1.params
    checked = 0
    for p, g in zip(params, grads):
        for k in p:
            for idx in list(np.ndindex(p[k].shape))[:: max(1, p[k].size // 6)]:
                old = p[k][idx]
                p[k][idx] = old + 1e-6
                lp = L()
                p[k][idx] = old - 1e-6
                lm = L()
                p[k][idx] = old
                assert (lp - lm) / 2e-6 == pytest.approx(g[k][idx], rel=1e-4, abs=1e-8)
                checked += 1
    assert checked > 50


def test_phinet_with_zero_ca1_weight_is_simsiam(rng):
    """λ = 0: the backprop PhiNet step equals ssl.EndToEnd's SimSiam step (same heads, same views)."""
    from bioplausible import encoders, views
    from bioplausible.rules.phinet import PhiNet
    from bioplausible.rules.ssl import EndToEnd

    x = rng.random((6, 12, 12, 1)).astype(np.float32)
    y = np.zeros(6, np.int64)
    vc = views.preset("fashion_mnist")
    out = []
    for make in (lambda e: EndToEnd(e, vc, loss="simsiam", lr=1e-3, proj_hidden=16, proj_dim=8, seed=4),
                 lambda e: PhiNet(e, vc, mode="backprop", ca1_weight=0.0, lr=1e-3, optimizer="adam",
                                  proj_hidden=16, proj_dim=8, seed=4)):
        enc = encoders.build(TINY, (12, 12, 1), seed=1)
        rule = make(enc)
        for b in range(2):
            m = rule.step(enc, {"x": x, "y": y, "rng": np.random.default_rng([0, b])})
        out.append((enc.state_dict(), m["loss"]))
    (s1, l1), (s2, l2) = out
    assert l1 == pytest.approx(l2, rel=1e-5)
    for k in s1:
        np.testing.assert_allclose(s1[k], s2[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["backprop", "local"])
def test_phinet_trains_and_checkpoints(rng, mode):
    from bioplausible import encoders, views
    from bioplausible.rules.phinet import PhiNet
    from bioplausible.trainer import fit

    x = rng.random((32, 12, 12, 1)).astype(np.float32)
    y = rng.integers(0, 2, 32)
    enc = encoders.build(TINY, (12, 12, 1), seed=1)
    rule = PhiNet(enc, views.preset("fashion_mnist"), mode=mode, lr=1e-3, optimizer="adam",
                  weight_decay=1e-3, proj_hidden=16, proj_dim=8, seed=0)
    before = enc.state_dict()
    last = fit(rule, enc, x, y, epochs=2, batch_size=16, seed=0, progress=False)
    assert np.isfinite(last["loss"]) and "ca1_mismatch" in last
    assert any(not np.allclose(before[k], v) for k, v in enc.state_dict().items())
    st = rule.state_dict()
    rule2 = PhiNet(enc, views.preset("fashion_mnist"), mode=mode, optimizer="adam", proj_hidden=16,
                   proj_dim=8, seed=5)
    rule2.load_state_dict(st)
    for k, v in rule2.state_dict().items():
        np.testing.assert_array_equal(v, st[k])
    assert rule.local == (mode == "local")


def test_phinet_bad_input():
    from bioplausible import encoders, views
    from bioplausible.rules.phinet import PhiNet

    enc = encoders.build(TINY, (8, 8, 1), seed=1)
    for kw in ({"mode": "bptt"}, {"loss": "hinge"}, {"ca1_weight": -1.0}):
        with pytest.raises(UserError):
            PhiNet(enc, views.preset("fashion_mnist"), **kw)


# ------------------------------------------------------------------------- experiment smoke
@pytest.mark.slow
def test_hippocampus_experiment_smoke(tmp_path):
    from bioplausible.experiment import load_experiment, run_experiment
    from tests.test_experiments import _have

    if not _have("fashion_mnist"):
        pytest.skip("Fashion-MNIST not installed")
    rows = run_experiment(load_experiment("hippocampus"), out=tmp_path, smoke=True, progress=False)
    seq = [r for r in rows if "task" in r]
    assert {r["task"] for r in seq} == {"linear", "images"}
    for r in seq:
        assert r["ca1_mismatch_last"] < r["ca1_mismatch_first"]
        if r["lr_encoder"] == 0 or r["mode"] == "backprop":
            assert r["replay_rank_after"] >= 0.9, r
    assert any(r["lr_encoder"] > 0 and r["mode"] == "local" for r in seq)
    sweep = [r for r in rows if "arm" in r]
    assert {r["arm"] for r in sweep} == {"random", "simsiam", "phinet", "ca3ca1_local"}
    assert (tmp_path / "sequences.png").is_file() and (tmp_path / "sweep-fashion_mnist.png").is_file()
    assert len(list(tmp_path.glob("*.h5"))) == len(rows)
