"""Options used to tune the all-local pipeline (SoftHebb init, then CLAPP) on a held-out split:
``local_vs_global``'s ``holdout`` and ``final_eval=last``, and CLAPP's per-block learning rate
``block_lr``."""
import numpy as np
import pytest

from bioplausible import encoders
from bioplausible.errors import UserError
from bioplausible.rules.clapp import CLAPP


def _lvg():
    from bioplausible.experiment import load_experiment

    return load_experiment("local_vs_global")


def _synthetic_prepared(n_train=100, n_test=30):
    """A synthetic ``Prepared`` whose images carry their own index (pixel value) and split."""
    from bioplausible.data_prep import Prepared

    xtr = np.broadcast_to(np.arange(n_train, dtype=np.float32)[:, None, None, None],
                          (n_train, 4, 4, 1)).copy()
    xte = -1.0 - np.broadcast_to(np.arange(n_test, dtype=np.float32)[:, None, None, None],
                                 (n_test, 4, 4, 1))
    return Prepared("synthetic", xtr, np.arange(n_train) % 10, xte.copy(), np.arange(n_test) % 10,
                    list(range(10)), np.zeros(1, np.float32), np.ones(1, np.float32))


def test_holdout_split_draws_held_out_training_images_and_never_the_test_set():
    mod = _lvg()
    data = _synthetic_prepared()
    d = mod.holdout_split(data, 20)
    idx_tr, idx_ev = d.x_train[:, 0, 0, 0].astype(int), d.x_test[:, 0, 0, 0].astype(int)
    assert len(idx_tr) == 80 and len(idx_ev) == 20 and np.all(np.diff(idx_tr) > 0)
    assert set(idx_tr) | set(idx_ev) == set(range(100)) and not set(idx_tr) & set(idx_ev)
    assert not np.array_equal(idx_ev, np.arange(80, 100))        # a random draw, not the last 20
    np.testing.assert_array_equal(d.y_test, data.y_train[idx_ev])
    np.testing.assert_array_equal(d.y_train, data.y_train[idx_tr])
    assert np.all(d.x_test >= 0)                                  # no test image (those are < 0)
    assert "held-out" in d.source
    again = mod.holdout_split(data, 20)                           # a fixed draw
    np.testing.assert_array_equal(again.x_test, d.x_test)
    # subsets: n_train of the 80, n_eval of the 20 held out, still disjoint
    s = mod.holdout_split(data, 20, n_train=30, n_eval=5)
    tr, ev = s.x_train[:, 0, 0, 0].astype(int), s.x_test[:, 0, 0, 0].astype(int)
    assert len(set(tr)) == 30 and len(set(ev)) == 5
    assert set(tr) <= set(idx_tr) and set(ev) <= set(idx_ev)
    for bad in (0, 100, 250):
        with pytest.raises(UserError, match="holdout"):
            mod.holdout_split(data, bad)


def test_hebbian_init_sees_every_class_with_hebb_pick_random(monkeypatch):
    """``hebb_pick=first`` passes the first images (one class when the split is sorted by class),
    ``random`` a seeded random draw in random order (every class)."""
    from bioplausible.experiment import load_experiment

    mod, hc = _lvg(), load_experiment("hebbian_classifier")
    seen = {}
    monkeypatch.setattr(hc, "train_conv3_hebbian", lambda enc, x, cfg: seen.update(x=x.copy()))
    monkeypatch.setattr("bioplausible.experiment.load_experiment", lambda name: hc)
    data = _synthetic_prepared()
    data.y_train = np.repeat(np.arange(10), 10)        # image i has class i // 10: sorted by class
    mod.hebbian_init(None, data, {"hebb_images": 20, "hebb_pick": "first"}, seed=0)
    idx = seen["x"][:, 0, 0, 0].astype(int)
    np.testing.assert_array_equal(idx, np.arange(20))            # classes 0 and 1 only
    mod.hebbian_init(None, data, {"hebb_images": 20, "hebb_pick": "random"}, seed=0)
    idx = seen["x"][:, 0, 0, 0].astype(int)
    assert len(set(idx)) == 20 and len(set(data.y_train[idx])) >= 8
    assert not np.all(np.diff(idx) > 0)                          # random order, not sorted


def test_holdout_run_reports_on_held_out_training_images(tmp_path):
    """End to end on a real CIFAR-10 subset (smoke sizes): the table says it is a held-out
    evaluation, the run files record it, and ``final_eval=last`` gives block 3's few-label probes."""
    from conftest import have_dataset
    from bioplausible.experiment import run_experiment
    from bioplausible.store import read_run

    if not have_dataset("cifar10"):
        pytest.skip("CIFAR-10 not found (see data/README.md)")
    rows = run_experiment(_lvg(), sets=["holdout=2000", "arms=random,clapp", "final_eval=last",
                                        "n_test=300", "clapp_block_lr=0,1,1"],
                          out=tmp_path, smoke=True, progress=False)
    assert [r["arm"] for r in rows] == ["random", "clapp"]
    assert all(r["eval"] == "held-out 300" for r in rows)
    first = (tmp_path / "table.md").read_text().splitlines()[0]
    assert "HELD-OUT" in first and "not the test set" in first and "512 of 48000" in first
    info = read_run(tmp_path / "clapp-cifar10-conv3-s0.h5")
    assert info["config"]["holdout"] == 2000 and info["results"]["holdout"] == 2000
    assert list(info["config"]["clapp_block_lr"]) == [0.0, 1.0, 1.0]
    res = info["results"]
    assert {"probe2x2_b3", "probe_gap_b3", "knn_b3", "few10_b3", "eff_rank_b1"} <= set(res)
    assert "probe_gap_b1" not in res                        # last block only
    assert 0.0 < res["probe2x2_b3"] <= 1.0


def test_final_eval_last_equals_the_full_protocol_on_the_last_block():
    """``protocol_eval(last_only=True)`` (``final_eval=last``) gives exactly the full protocol's numbers for block 3 (synthetic data,
    random-init conv3, labels unrelated to the images: the probes converge fast)."""
    from bioplausible.data_prep import Prepared
    from bioplausible.protocol import protocol_eval

    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 8, 8, 3)).astype(np.float32)        # synthetic images
    y = np.tile(np.arange(10), 50)                                     # 40 per class for training
    data = Prepared("synthetic", x[:400], y[:400], x[400:], y[400:], list(range(10)),
                    np.zeros(3, np.float32), np.ones(3, np.float32))
    enc = encoders.build("conv3", (8, 8, 3), seed=0)
    full = protocol_eval(enc, data, seed=4)
    last = protocol_eval(enc, data, seed=4, last_only=True)
    keys = [k for k in full if k.endswith("_b3") or k.endswith("_b3_sd") or k.startswith("eff_rank")]
    assert "few10_b3" in keys and "knn_b3" in keys and np.isfinite(full["few10_b3"])
    for k in keys:       # few100_b3: nan in both (fewer than 100 labels per class)
        assert last[k] == pytest.approx(full[k], rel=1e-6, abs=1e-9, nan_ok=True), k


def _step_params(block_lr, lr=1e-2, **kw):
    from bioplausible import views

    x = np.random.default_rng(5).standard_normal((16, 12, 12, 1)).astype(np.float32)  # synthetic
    enc = encoders.build("conv3", (12, 12, 1), seed=0)
    rule = CLAPP(enc, views.preset("fashion_mnist"), positives="views", lr=lr, block_lr=block_lr,
                 seed=0, **kw)
    before = [[p[k].copy() for p in b.params for k in sorted(p)] for b in enc.blocks]
    preds = [{k: v.copy() for k, v in P.items()} for P in rule.preds]
    m = rule.step(enc, {"x": x, "y": None, "rng": np.random.default_rng(1)})
    after = [[p[k].copy() for p in b.params for k in sorted(p)] for b in enc.blocks]
    dpred = [{k: rule.preds[i][k] - v for k, v in P.items()} for i, P in enumerate(preds)]
    return [[a - b for a, b in zip(A, B)] for A, B in zip(after, before)], dpred, m


def test_block_lr_scales_each_block_and_zero_freezes_it():
    """One Adam step: block l moves by s_l times the step it makes with s_l = 1 (Adam's first step
    is linear in the learning rate), a block with s_l = 0 (weights, W_pred, W_retro) does not move
    and logs no hinge, and the blocks above it still learn from its output."""
    ref, ref_pred, _ = _step_params(None)
    got, got_pred, m = _step_params([0.0, 0.5, 1.0])
    for d in got[0]:
        assert not np.any(d)
    assert not any(np.any(v) for v in got_pred[0].values())
    assert "loss_b1" not in m and "loss_b2" in m and m["loss"] == m["loss_b3"]
    for scale, b in ((0.5, 1), (1.0, 2)):
        assert any(np.any(d) for d in got[b])
        for d_got, d_ref in zip(got[b], ref[b]):
            np.testing.assert_allclose(d_got, scale * d_ref, rtol=1e-4, atol=1e-9)
        for k in ref_pred[b]:
            np.testing.assert_allclose(got_pred[b][k], scale * ref_pred[b][k], rtol=1e-4, atol=1e-9)
    # one value applies to every block; the top frozen block: "loss" is the top learning block's
    same, _, _ = _step_params([0.5])
    for b in range(3):
        for d_got, d_ref in zip(same[b], ref[b]):
            np.testing.assert_allclose(d_got, 0.5 * d_ref, rtol=1e-4, atol=1e-9)
    _, _, m2 = _step_params([1.0, 1.0, 0.0])
    assert "loss_b3" not in m2 and m2["loss"] == m2["loss_b2"]


def test_pred_lr_scales_only_the_predictor():
    """One Adam step with ``pred_lr`` p: every W_pred / W_retro moves p times as far as with p = 1,
    the feed-forward weights exactly as far (a separate optimiser, same state otherwise); p = 0
    keeps the random predictor."""
    ref, ref_pred, _ = _step_params([0.5, 1.0, 1.0])
    for p in (0.0, 3.0):
        got, got_pred, _ = _step_params([0.5, 1.0, 1.0], pred_lr=p)
        for b in range(3):
            for d_got, d_ref in zip(got[b], ref[b]):
                np.testing.assert_allclose(d_got, d_ref, rtol=1e-4, atol=1e-9)
            for k in ref_pred[b]:
                assert np.any(ref_pred[b][k])
                np.testing.assert_allclose(got_pred[b][k], p * ref_pred[b][k], rtol=1e-4, atol=1e-9)
    with pytest.raises(UserError, match="pred_lr"):
        _step_params(None, pred_lr=-1.0)


@pytest.mark.parametrize("bad", [[1.0, 1.0], [-1.0], [0.0, 0.0, 0.0], [float("nan")]])
def test_block_lr_rejects_bad_values(bad):
    from bioplausible import views

    enc = encoders.build("conv3", (12, 12, 1), seed=0)
    with pytest.raises(UserError, match="block_lr"):
        CLAPP(enc, views.preset("fashion_mnist"), block_lr=bad)


def test_hebbian_init_passes_softhebb_temperature_and_rate_decay(monkeypatch):
    """``hebb_t`` and ``hebb_lr_decay`` reach the SoftHebb stage as ``conv_t`` / ``conv_lr_decay``
    (defaults: hebbian_classifier's own t = 100, constant rate)."""
    from bioplausible.experiment import load_experiment

    mod, hc = _lvg(), load_experiment("hebbian_classifier")
    seen = {}
    monkeypatch.setattr(hc, "train_conv3_hebbian", lambda enc, x, cfg: seen.update(cfg=cfg))
    monkeypatch.setattr("bioplausible.experiment.load_experiment", lambda name: hc)
    data = _synthetic_prepared()
    mod.hebbian_init(None, data, {"hebb_images": 20}, seed=0)
    assert seen["cfg"]["conv_t"] == hc.DEFAULTS["conv_t"] == [100.0]
    assert seen["cfg"]["conv_lr_decay"] == hc.DEFAULTS["conv_lr_decay"] == "none"
    mod.hebbian_init(None, data, {"hebb_images": 20, "hebb_t": [50.0, 100.0, 200.0],
                                  "hebb_lr_decay": "linear"}, seed=0)
    assert seen["cfg"]["conv_t"] == [50.0, 100.0, 200.0]
    assert seen["cfg"]["conv_lr_decay"] == "linear"


def test_clapp_arm_takes_pred_scale_and_weight_decay():
    """``clapp_pred_scale`` sets the spread of the initial W_pred / W_retro, ``clapp_weight_decay``
    reaches every block's optimiser."""
    from types import SimpleNamespace

    mod = _lvg()
    data = SimpleNamespace(mean=np.zeros(3, np.float32), std=np.ones(3, np.float32))
    cfg = dict(mod.DEFAULTS, clapp_positives="views")
    stds = {}
    for ps in (0.1, 1.0):
        enc = encoders.build("conv3", (32, 32, 3), seed=0)
        rule = mod.make_rule("clapp", enc, data, dict(cfg, clapp_pred_scale=ps,
                                                      clapp_weight_decay=1e-3), seed=0)
        w = rule.preds[2]["w_pred"]
        stds[ps] = float(w.std() * np.sqrt(w.shape[0]))
        assert all(o.weight_decay == 1e-3 for o in rule.optimizers.values())
    assert stds[0.1] == pytest.approx(0.1, rel=0.05) and stds[1.0] == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("key,bad", [("pred_scale", 0.0), ("pred_scale", -1.0), ("pred_scale", float("nan")),
                                     ("weight_decay", -1e-3), ("soft_gate", -1.0), ("soft_gate", float("inf"))])
def test_clapp_rejects_bad_pred_scale_and_weight_decay(key, bad):
    from bioplausible import views

    enc = encoders.build("conv3", (32, 32, 3), seed=0)
    with pytest.raises(UserError, match=key):
        CLAPP(enc, views.preset("cifar10"), positives="views", **{key: bad})


@pytest.mark.parametrize("sets,match", [({"clapp_weight_decay": -1.0}, "weight_decay"),
                                        ({"clapp_pred_scale": 0.0}, "pred_scale"),
                                        ({"clapp_symmetric": True}, "clapp_s"),
                                        ({"clapp_soft_gate": -1.0}, "soft_gate"),
                                        ({"clapp_pred_lr": -1.0}, "pred_lr"),
                                        ({"init": "softhebb", "hebb_t": [100.0, 50.0]}, "hebb_t"),
                                        ({"init": "softhebb", "hebb_t": [-1.0]}, "hebb_t")])
def test_bad_clapp_and_hebbian_options_fail_before_any_arm_runs(sets, match, monkeypatch):
    mod = _lvg()
    from types import SimpleNamespace

    data = SimpleNamespace(mean=np.zeros(3, np.float32), std=np.ones(3, np.float32), in_shape=(32, 32, 3))
    ran = []
    monkeypatch.setattr(mod, "run_arm", lambda *a, **k: ran.append(a))
    cfg = dict(mod.DEFAULTS, arms=["random", "clapp"], clapp_positives="views", **sets)
    with pytest.raises(UserError, match=match):
        mod.check_options(["random", "clapp"], data, cfg)
    mod.check_options(["random", "clapp"], data, dict(mod.DEFAULTS, clapp_positives="views"))
    assert not ran


@pytest.mark.parametrize("positives", ["views", "grid"])
def test_symmetric_pairs_run_every_positive_both_ways(positives):
    """``symmetric=True`` (clapp_s): the pairs are the one-way pairs plus each positive reversed,
    with K negatives from other images in the context's place; the loss is the mean of the two
    directions (synthetic images; identity views so every input is traceable)."""
    from bioplausible import views

    enc = encoders.build("conv3", (8, 8, 1), seed=0)
    x = np.random.default_rng(3).standard_normal((6, 8, 8, 1)).astype(np.float32)   # synthetic
    one = CLAPP(enc, views.preset("none"), variant="clapp_s", positives=positives, negatives=3, seed=0)
    two = CLAPP(enc, views.preset("none"), variant="clapp_s", positives=positives, negatives=3,
                symmetric=True, seed=0)
    X1, ci1, ti1, y1, _ = one.make_inputs(x, np.random.default_rng(4))
    X, ci, ti, y, w = two.make_inputs(x, np.random.default_rng(4))
    assert X.shape == X1.shape and np.isclose(w.sum(), 2.0)
    pos = y > 0
    m = int(pos.sum())
    assert m == 2 * int((y1 > 0).sum()) and len(y) == m * 4
    fwd, bwd = slice(0, m // 2), slice(m // 2, m)
    np.testing.assert_array_equal(ci[bwd], ti[fwd])        # every positive also runs backwards
    np.testing.assert_array_equal(ti[bwd], ci[fwd])
    # which image an input shows, and (grid) where in the image it sits
    per_img = len(X) // len(x)
    img, place = np.arange(len(X)) // per_img, np.arange(len(X)) % per_img
    if positives == "views":
        img, place = np.arange(len(X)) % len(x), np.arange(len(X)) // len(x)
    neg_c, neg_t = ci[~pos].reshape(3, m), ti[~pos].reshape(3, m)   # K blocks of both directions
    assert np.all(img[neg_c] != img[neg_t])                # a negative shows another image ...
    np.testing.assert_array_equal(neg_c[:, m // 2:], np.tile(ci[bwd], (3, 1)))   # ... per backward pair
    np.testing.assert_array_equal(place[neg_t[:, m // 2:]], np.tile(place[ti[bwd]], (3, 1)))
    # (... in the backward target's -- the forward context's -- place)


def test_symmetric_needs_clapp_s():
    from bioplausible import views

    enc = encoders.build("conv3", (32, 32, 3), seed=0)
    with pytest.raises(UserError, match="clapp_s"):
        CLAPP(enc, views.preset("cifar10"), variant="clapp", positives="views", symmetric=True)


def test_symmetric_loss_is_the_mean_of_both_directions():
    """The loss the symmetric rule reports equals ½ [L(c → t) + L(t → c)] evaluated by hand from
    the codes (float64 pair-by-pair loop over the hinge formula)."""
    from bioplausible.rules.clapp import hinge_pairs

    rng = np.random.default_rng(5)
    n, d, K = 7, 5, 2
    Z = rng.standard_normal((2 * n, d))                     # codes of view 1 (0..n-1), view 2 (n..)
    W = rng.standard_normal((d, d))
    from bioplausible.views import derangement

    fw = [n + derangement(n, rng) for _ in range(K)]
    bw = [derangement(n, rng) for _ in range(K)]
    ctx, tgt = np.arange(n), n + np.arange(n)
    ci = np.concatenate([ctx, tgt] * (K + 1))
    ti = np.concatenate([tgt, ctx] + [np.concatenate([a, b]) for a, b in zip(fw, bw)])
    m = 2 * n
    y = np.concatenate([np.ones(m)] + [-np.ones(m)] * K)
    w = np.concatenate([np.full(m, 1.0 / m)] + [np.full(m, 1.0 / (m * K))] * K)
    loss = hinge_pairs(Z, ci, ti, y, w, W)[0]

    def one_way(c, t, negs):
        tot = 0.0
        for i in range(n):
            tot += max(0.0, 1.0 - Z[t[i]] @ W @ Z[c[i]]) / n
            for k in range(K):
                tot += max(0.0, 1.0 + Z[negs[k][i]] @ W @ Z[c[i]]) / (n * K)
        return tot

    assert loss == pytest.approx(0.5 * (one_way(ctx, tgt, fw) + one_way(tgt, ctx, bw)), rel=1e-12)
