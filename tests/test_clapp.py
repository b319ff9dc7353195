"""CLAPP's explicit three-factor update equals the gradient of the block-local hinge loss."""
import numpy as np
import pytest

from bioplausible import encoders
from bioplausible.encoders import Block
from bioplausible.kernels.plasticity import pooled_post, winner_post
from bioplausible.rules.clapp import CLAPP, _BlockParts, hinge_pairs, patch_grid

RECIPES = {
    "conv_pool": {"name": "t", "block": [{"layers": [
        {"type": "conv2d", "out": 3, "kernel": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "size": 2}]}]},
    "conv_fused": {"name": "t", "block": [{"layers": [
        {"type": "conv2d", "out": 3, "kernel": 3, "padding": 1}, {"type": "relu_maxpool2d", "size": 2}]}]},
    "conv_nopool": {"name": "t", "block": [{"layers": [
        {"type": "conv2d", "out": 3, "kernel": 3, "padding": 1, "stride": 2}, {"type": "relu"}]}]},
    "dense": {"name": "t", "block": [{"layers": [
        {"type": "flatten"}, {"type": "dense", "out": 5}, {"type": "tanh"}]}]},
}


def _block64(kind, in_shape=(6, 6, 2)):
    enc = encoders.build(RECIPES[kind], in_shape, seed=3)
    for p in enc.params:
        for k in p:
            p[k] = p[k].astype(np.float64)
    return enc.blocks[0]


def _pairs(n):
    # synthetic pairs: context i of view 1 with target of view 2 (same image or another image)
    ci = np.concatenate([np.arange(n), np.arange(n)])
    ti = np.concatenate([n + np.arange(n), n + np.roll(np.arange(n), 1)])
    y = np.concatenate([np.ones(n), -np.ones(n)])
    w = np.full(2 * n, 1.0 / (2 * n))
    return ci, ti, y, w


def _loss(block, X, W, ci, ti, y, w, Wc=None):
    """Naive block-local hinge loss from the paper's formula, one pair at a time."""
    Z = Block.code(block(X))
    total = 0.0
    for c_, t_, y_, w_ in zip(ci, ti, y, w):
        u = Z[t_] @ W @ Z[c_]
        total += w_ * max(0.0, 1.0 - y_ * u)
    return total


def _explicit(block, X, W, ci, ti, y, w, W_retro=None):
    part = _BlockParts(block, 0)
    out, r, wc = part.forward(X)
    Z = Block.code(out)
    loss, dZ, dW, dWr, u = hinge_pairs(Z, ci, ti, y, w, W, W_retro)
    grads = part.update(wc, r, Block.code_backward(out.shape, dZ))
    return loss, grads[part.layers.index(part.weights)], dW, dWr


def _fd(f, arr, idx, eps=1e-6):
    old = arr[idx]
    arr[idx] = old + eps
    up = f()
    arr[idx] = old - eps
    down = f()
    arr[idx] = old
    return (up - down) / (2 * eps)


def _rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


@pytest.mark.parametrize("kind", list(RECIPES))
def test_shared_update_equals_gradient_finite_differences(kind):
    rng = np.random.default_rng(0)
    block = _block64(kind)
    n = 4
    X = 4.0 * rng.standard_normal((2 * n, 6, 6, 2))
    d = block.out_shape[-1]
    W = rng.standard_normal((d, d)) * 2.0
    ci, ti, y, w = _pairs(n)
    loss, g, dW, _ = _explicit(block, X, W, ci, ti, y, w)
    f = lambda: _loss(block, X, W, ci, ti, y, w)
    assert loss == pytest.approx(f(), rel=1e-12)
    assert 0 < loss
    wt = block.layers[1 if kind == "dense" else 0].params
    checked = 0
    for name in ("w", "b"):
        for flat in rng.choice(wt[name].size, min(6, wt[name].size), replace=False):
            idx = np.unravel_index(flat, wt[name].shape)
            num = _fd(f, wt[name], idx)
            if abs(num) > 1e-9:
                assert _rel(g[name][idx], num) < 1e-6, (name, idx, g[name][idx], num)
                checked += 1
            else:
                assert abs(g[name][idx]) < 1e-8
    assert checked >= 4
    for idx in [(0, 0), (d - 1, 0), (1, d - 1)]:
        assert _rel(dW[idx], _fd(f, W, idx)) < 1e-6


@pytest.mark.parametrize("kind", ["conv_pool", "conv_fused", "conv_nopool"])
def test_prediction_and_retrodiction_terms_separately(kind):
    """With separate W_retro the target term is the gradient through the target, the context term
    is the gradient of the same gated score with W_retro in place of W_predᵀ."""
    rng = np.random.default_rng(1)
    block = _block64(kind)
    n = 3
    X = 4.0 * rng.standard_normal((2 * n, 6, 6, 2))
    d = block.out_shape[-1]
    W = rng.standard_normal((d, d))
    Wr = rng.standard_normal((d, d))
    ci, ti, y, w = _pairs(n)
    frozen = Block.code(block(X)).copy()
    Z0 = frozen
    u0 = np.einsum("pd,pd->p", Z0[ti], Z0[ci] @ W.T)
    gate = (1 - y * u0 > 0).astype(float)
    wt = block.layers[0].params

    def target_only():   # contexts frozen
        Z = Block.code(block(X))
        return sum(wp * g_ * -yp * (Z[t] @ W @ Z0[c]) for c, t, yp, wp, g_ in zip(ci, ti, y, w, gate))

    def context_only():  # targets frozen, dendritic factor W_retro z
        Z = Block.code(block(X))
        return sum(wp * g_ * -yp * (Z0[c] @ (Wr @ Z0[t])) * 0 + wp * g_ * -yp * (Z[c] @ (Wr @ Z0[t]))
                   for c, t, yp, wp, g_ in zip(ci, ti, y, w, gate))

    # explicit update split into its two terms by zeroing the other pair side
    part = _BlockParts(block, 0)
    out, r, wc = part.forward(X)
    Z = Block.code(out)
    _, dZ, dW, dWr, _ = hinge_pairs(Z, ci, ti, y, w, W, Wr)
    dZ_t, dZ_c = np.zeros_like(dZ), np.zeros_like(dZ)
    dZ_t[n:], dZ_c[:n] = dZ[n:], dZ[:n]
    gt = part.update(wc, r, Block.code_backward(out.shape, dZ_t))[0]
    gc = part.update(wc, r, Block.code_backward(out.shape, dZ_c))[0]
    for flat in rng.choice(wt["w"].size, 6, replace=False):
        idx = np.unravel_index(flat, wt["w"].shape)
        for g_, f in ((gt, target_only), (gc, context_only)):
            num = _fd(f, wt["w"], idx)
            if abs(num) > 1e-9:
                assert _rel(g_["w"][idx], num) < 1e-6
    # W_retro's update is the same gated Hebbian product, transposed: γ c zᵀ
    expect = sum(wp * g_ * -yp * np.outer(Z[c], Z[t]) for c, t, yp, wp, g_ in zip(ci, ti, y, w, gate))
    np.testing.assert_allclose(dWr, expect, rtol=1e-12, atol=1e-14)
    # with W_retro = W_predᵀ the separate and shared updates coincide
    a = _explicit(block, X, W, ci, ti, y, w, W.T.copy())
    b = _explicit(block, X, W, ci, ti, y, w)
    np.testing.assert_allclose(a[1]["w"], b[1]["w"], rtol=1e-12)
    np.testing.assert_allclose(a[3], b[2].T, rtol=1e-12)


def test_explicit_update_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    block = _block64("conv_pool", (8, 8, 2))
    n = 4
    X = rng.standard_normal((2 * n, 8, 8, 2))
    W = rng.standard_normal((3, 3))
    ci, ti, y, w = _pairs(n)
    _, g, dW, _ = _explicit(block, X, W, ci, ti, y, w)
    _, g_fused, dW_fused, _ = _explicit(_block64("conv_fused", (8, 8, 2)), X, W, ci, ti, y, w)
    np.testing.assert_allclose(g_fused["w"], g["w"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dW_fused, dW, rtol=1e-12, atol=1e-15)
    conv = block.layers[0].params
    tw = torch.tensor(conv["w"].transpose(3, 2, 0, 1).copy(), requires_grad=True)
    tb = torch.tensor(conv["b"].copy(), requires_grad=True)
    tW = torch.tensor(W, requires_grad=True)
    tx = torch.tensor(X.transpose(0, 3, 1, 2).copy())
    h = torch.nn.functional.max_pool2d(torch.relu(torch.nn.functional.conv2d(tx, tw, tb, padding=1)), 2)
    Z = h.mean(dim=(2, 3))
    u = (Z[ti] * (Z[ci] @ tW.T)).sum(1)
    loss = (torch.tensor(w) * torch.clamp(1 - torch.tensor(y) * u, min=0)).sum()
    loss.backward()
    np.testing.assert_allclose(g["w"], tw.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g["b"], tb.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dW, tW.grad.numpy(), rtol=1e-9, atol=1e-12)


def _pooled_post_reference(r, e, s):
    out = np.zeros_like(r)
    n, hp, wp, c = e.shape
    for b in range(n):
        for i in range(hp):
            for j in range(wp):
                for k in range(c):
                    win = r[b, i * s:(i + 1) * s, j * s:(j + 1) * s, k]
                    u, v = np.unravel_index(np.argmax(win), win.shape)   # first maximum
                    if win[u, v] > 0:
                        out[b, i * s + u, j * s + v, k] = e[b, i, j, k]
    return out


@pytest.mark.parametrize("shape,s", [((1, 4, 4, 1), 2), ((3, 7, 5, 4), 2), ((2, 6, 6, 3), 3),
                                     ((2, 5, 5, 2), 1)])
def test_pooled_post_kernel_matches_reference(shape, s):
    rng = np.random.default_rng(4)
    r = np.maximum(rng.standard_normal(shape), 0).astype(np.float32)
    e = rng.standard_normal((shape[0], shape[1] // s, shape[2] // s, shape[3])).astype(np.float32)
    np.testing.assert_array_equal(pooled_post(r, e, s), _pooled_post_reference(r, e, s))
    z = np.zeros(shape, np.float32)
    assert not pooled_post(z, e, s).any()


def test_patch_grid_layout():
    x = np.arange(2 * 8 * 8 * 1, dtype=np.float32).reshape(2, 8, 8, 1)
    p, gh, gw = patch_grid(x, 4, 2)
    assert (gh, gw) == (3, 3) and p.shape == (18, 4, 4, 1)
    np.testing.assert_array_equal(p[1 * 9 + 1 * 3 + 2], x[1, 2:6, 4:8])


@pytest.mark.parametrize("variant,positives", [("clapp", "views"), ("clapp_s", "views"),
                                               ("clapp", "grid"), ("clapp_s", "grid")])
def test_rule_step_reduces_the_local_loss(variant, positives):
    """A few steps of CLAPP lower every block's hinge loss on a fixed synthetic batch."""
    from bioplausible import views

    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 12, 12, 1)).astype(np.float32)   # synthetic images
    enc = encoders.build("conv3", (12, 12, 1), seed=0)
    rule = CLAPP(enc, views.preset("fashion_mnist"), variant=variant, positives=positives,
                 lr=3e-3, negatives=2, seed=0)
    first = rule.step(enc, {"x": x, "y": None, "rng": np.random.default_rng(0)})
    for _ in range(30):
        last = rule.step(enc, {"x": x, "y": None, "rng": np.random.default_rng(0)})
    for b in (1, 2, 3):
        assert last[f"loss_b{b}"] < first[f"loss_b{b}"]


@pytest.mark.parametrize("code_norm,nu,unit,beta", [(False, 0.5, False, 0.0), (True, 0.0, False, 0.0),
                                                    (True, 2.0, False, 0.0), (False, 0.0, True, 0.0),
                                                    (True, 0.5, True, 0.0), (False, 0.0, False, 4.0),
                                                    (True, 0.5, True, 2.0)])
def test_code_norm_and_decorrelation_gradient_finite_differences(code_norm, nu, unit, beta):
    """code_terms' dZ and dW_pred are the gradients of hinge(z̃ [/ ‖z̃‖ if unit]) + ν (1/D)
    Σ_{i≠j} C_ij² with the batch statistics of z̃ held fixed, and with the smoothed hinge
    (1/β) log(1 + e^{β(1 − y u)}) if β > 0 (float64 finite differences; synthetic codes)."""
    from bioplausible.rules.clapp import code_terms

    rng = np.random.default_rng(3)
    B, D = 7, 5
    Z = np.abs(rng.standard_normal((B, D)))
    W = 0.3 * rng.standard_normal((D, D))
    ci, ti = np.array([0, 1, 2, 3, 4, 5]), np.array([1, 2, 3, 4, 5, 6])
    y, w = np.array([1.0, -1, 1, -1, 1, -1]), np.full(6, 1 / 6)
    if unit:
        W = 3.0 * W                                  # unit codes: a score of order 1, hinges on both sides
    loss, dZ, dW, _, _ = code_terms(Z, ci, ti, y, w, W, None, code_norm, nu, unit, beta)
    m, s = Z.mean(0), Z.std(0) + 1e-3

    def hinge(a):
        return np.log1p(np.exp(beta * a)) / beta if beta else max(0.0, a)

    def f():
        Zs = (Z - m) / s if code_norm else Z
        Zh = Zs / (np.linalg.norm(Zs, axis=1, keepdims=True) + 1e-6) if unit else Zs
        total = sum(w_ * hinge(1.0 - y_ * Zh[t_] @ W @ Zh[c_])
                    for c_, t_, y_, w_ in zip(ci, ti, y, w))
        X = Zs - Zs.mean(0)
        C = X.T @ X / (B - 1)
        return total + nu * (np.sum(C * C) - np.sum(np.diag(C) ** 2)) / D

    assert _rel(loss, f()) < 1e-12
    for idx in [(0, 0), (3, 2), (6, 4), (2, 1)]:
        assert _rel(dZ[idx], _fd(f, Z, idx)) < 1e-6, idx
    if not nu:                    # dW_pred (the decorrelation term does not touch W_pred)
        for idx in [(0, 1), (4, 4), (2, 3)]:
            assert _rel(dW[idx], _fd(f, W, idx)) < 1e-6, idx


def test_decorrelation_raises_the_rank_of_the_code():
    """Lateral decorrelation counters the collapse of a block's code: after a few steps on a fixed
    synthetic batch the block-3 code's effective rank is higher with ν > 0 than without."""
    from bioplausible import views
    from bioplausible.evaluate import effective_rank

    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, 12, 12, 1)).astype(np.float32)   # synthetic images
    ranks = {}
    for nu in (0.0, 1.0):
        enc = encoders.build("conv3", (12, 12, 1), seed=0)
        rule = CLAPP(enc, views.preset("fashion_mnist"), lr=1e-3, code_norm=True, decorrelate=nu,
                     seed=0)
        for _ in range(30):
            rule.step(enc, {"x": x, "y": None, "rng": np.random.default_rng(0)})
        ranks[nu] = effective_rank(Block.code(enc.outputs(x)[-1]))
    assert ranks[1.0] > ranks[0.0] + 5, ranks     # measured: 19.8 vs 6.5 (init 26.7)


def test_post_kernels_on_a_subset_of_samples():
    """``rows`` computes δ of the chosen samples only, equal to those rows of the full δ (pooled
    and fused ReLU + max-pool kernels; repeated, unsorted and empty row lists)."""
    from bioplausible.layers import ReLUMaxPool2d

    rng = np.random.default_rng(6)
    r = np.maximum(rng.standard_normal((5, 7, 6, 3)), 0).astype(np.float32)
    e = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    full = pooled_post(r, e, 2)
    for rows in ([3, 0, 3], [], [4]):
        np.testing.assert_array_equal(pooled_post(r, e, 2, rows=rows), full[rows])
    pool = ReLUMaxPool2d(2)
    a = rng.standard_normal((5, 7, 6, 3)).astype(np.float32)       # synthetic pre-activations
    y, cache = pool.forward(a)
    full = winner_post(cache, e, (2, 2), (2, 2))
    np.testing.assert_array_equal(full, _pooled_post_reference(np.maximum(a, 0), e, 2))
    for rows in ([3, 0, 3], [], [4]):
        np.testing.assert_array_equal(winner_post(cache, e, (2, 2), (2, 2), rows=rows), full[rows])
    with pytest.raises(ValueError, match="rows"):
        pooled_post(r, e, 2, rows=[5])


@pytest.mark.parametrize("recipe,positives", [("conv3", "grid"), ("conv3", "views"), ("mlp", "views")])
def test_skipping_silent_samples_gives_the_same_update(recipe, positives):
    """Samples whose hinge is satisfied (and inputs no pair uses) get δ = 0; the sparse path that
    skips them changes the weights exactly as the dense path does."""
    from bioplausible import views

    rng = np.random.default_rng(7)
    x = rng.standard_normal((24, 12, 12, 1)).astype(np.float32)   # synthetic images
    after, plastic = [], []
    for sparse_below in (0.0, 1.0):                                 # never / always subset
        enc = encoders.build(recipe, (12, 12, 1), seed=0)
        rule = CLAPP(enc, views.preset("fashion_mnist"), positives=positives, lr=1e-2,
                     sparse_below=sparse_below, seed=0)
        for P in rule.preds:                  # large predictions: many hinges already satisfied
            P["w_pred"] *= 300.0
        m = rule.step(enc, {"x": x, "y": None, "rng": np.random.default_rng(1)})
        plastic.append([m[k] for k in sorted(m) if k.startswith("plastic_b")])
        after.append([p[k].copy() for p in enc.params for k in sorted(p)])
    assert plastic[0] == plastic[1] and any(0.0 < f < 1.0 for f in plastic[0])   # path used
    for a, b in zip(*after):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_views_negatives_use_other_images_context_views():
    """clapp with views: one view of every image (the contexts), a second view only for samples
    with a positive update; a negative's target is the context view of another image."""
    from bioplausible import views

    enc = encoders.build("conv3", (8, 8, 1), seed=0)
    rule = CLAPP(enc, views.preset("none"), positives="views", seed=0)   # identity views
    x = np.random.default_rng(8).standard_normal((32, 8, 8, 1)).astype(np.float32)  # synthetic
    X, ci, ti, y, w = rule.make_inputs(x, np.random.default_rng(9))
    pos, neg = y > 0, y < 0
    assert len(X) == 32 + pos.sum() and np.array_equal(ci, np.arange(32))
    np.testing.assert_array_equal(X[ti[pos]], x[pos])               # same image, second view
    assert np.all(ti[neg] < 32) and np.all(ti[neg] != np.flatnonzero(neg))
    assert np.isclose(w.sum(), 1.0)


def test_local_vs_global_from_a_hebbian_init(tmp_path):
    """``init=softhebb``: the trained arms start from the SoftHebb-trained conv3 (the softhebb arm,
    same seed), the random row stays the random init (real CIFAR-10 subset, smoke sizes)."""
    from conftest import have_dataset
    from bioplausible.experiment import load_experiment, run_experiment
    from bioplausible.store import read_run

    if not have_dataset("cifar10"):
        pytest.skip("CIFAR-10 not found (see data/README.md)")
    mod = load_experiment("local_vs_global")
    rows = run_experiment(mod, sets=["init=softhebb", "arms=random,softhebb,clapp", "preset=quick"],
                          out=tmp_path, smoke=True, progress=False)
    by_arm = {r["arm"]: r for r in rows}
    assert set(by_arm) == {"random", "softhebb", "clapp"}
    assert by_arm["softhebb"]["knn_b3"] != by_arm["random"]["knn_b3"]     # the rule changed the encoder
    info = read_run(tmp_path / "clapp-cifar10-conv3-s0.h5")
    assert info["config"]["init"] == "softhebb"
    curve0 = info["metrics"]["epoch"]["probe_gap_b3"][0]    # epoch 0 = the encoder before CLAPP
    rand0 = read_run(tmp_path / "random-cifar10-conv3-s0.h5")
    assert np.isfinite(curve0) and "probe_gap_b3" in rand0["results"]


@pytest.mark.parametrize("tau,unit", [(1.0, False), (0.3, False), (0.2, True)])
def test_softmax_contrast_gradient_finite_differences(tau, unit):
    """``tau`` > 0: the loss is Σ_j w_j [−log softmax_k(u_kj/τ)]_{k=0} over each context's positive
    and K negatives (a naive loop over contexts), and dZ, dW_pred are its gradients (float64 finite
    differences; synthetic codes)."""
    from bioplausible.rules.clapp import code_terms

    rng = np.random.default_rng(11)
    m, K, D = 4, 3, 5
    Z = np.abs(rng.standard_normal((2 * m, D)))
    W = 0.5 * rng.standard_normal((D, D))
    ci = np.tile(np.arange(m), K + 1)
    ti = np.concatenate([m + np.arange(m)] + [m + np.roll(np.arange(m), k + 1) for k in range(K)])
    y = np.concatenate([np.ones(m)] + [-np.ones(m)] * K)
    w = np.concatenate([np.full(m, 1 / m)] + [np.full(m, 1 / (m * K))] * K)
    loss, dZ, dW, _, _ = code_terms(Z, ci, ti, y, w, W, None, unit_norm=unit, tau=tau)

    def f():
        Zh = Z / (np.linalg.norm(Z, axis=1, keepdims=True) + 1e-6) if unit else Z
        total = 0.0
        for j in range(m):
            scores = [Zh[ti[k * m + j]] @ W @ Zh[j] / tau for k in range(K + 1)]
            total += (np.log(np.sum(np.exp(scores))) - scores[0]) / m
        return total

    assert _rel(loss, f()) < 1e-12
    for idx in [(0, 0), (3, 2), (6, 4), (7, 1)]:
        assert _rel(dZ[idx], _fd(f, Z, idx)) < 1e-6, idx
    for idx in [(0, 1), (4, 4), (2, 3)]:
        assert _rel(dW[idx], _fd(f, W, idx)) < 1e-6, idx


def test_softmax_contrast_needs_the_clapp_s_layout():
    from bioplausible import views
    from bioplausible.errors import UserError

    Z = np.ones((4, 2))
    with pytest.raises(UserError, match="blocks of m"):
        hinge_pairs(Z, np.array([0, 1, 0]), np.array([2, 3, 3]), np.array([1.0, 1.0, -1.0]),
                    np.ones(3), np.eye(2), tau=1.0)
    enc = encoders.build("conv3", (32, 32, 3), seed=0)
    with pytest.raises(UserError, match="clapp_s"):
        CLAPP(enc, views.preset("cifar10"), variant="clapp", positives="views", softmax_tau=0.5)
    with pytest.raises(UserError, match="softmax_tau"):
        CLAPP(enc, views.preset("cifar10"), variant="clapp_s", positives="views", softmax_tau=-1.0)
    with pytest.raises(UserError, match="not both"):
        CLAPP(enc, views.preset("cifar10"), variant="clapp_s", positives="views", softmax_tau=1.0,
              soft_gate=2.0)


@pytest.mark.parametrize("tau,out", [(0.0, 0), (1.0, 0), (0.0, 3), (1.0, 3)])
def test_head_gradient_finite_differences(tau, out):
    """With a head, the loss is the hinge (or softmax contrast) on g = relu(V z), or on
    g = V2 relu(V z) with an output layer; head_backward's ∂L/∂z, ∂L/∂V (and ∂L/∂V2) and
    code_terms' ∂L/∂W_pred match float64 finite differences of a naive loop."""
    from bioplausible.rules.clapp import code_terms, head_backward, head_forward

    rng = np.random.default_rng(12)
    m, K, D, n = 4, 2, 5, 6
    Z = np.abs(rng.standard_normal((2 * m, D)))
    V = rng.standard_normal((n, D)) * np.sqrt(2.0 / D)
    V2 = rng.standard_normal((out, n)) / np.sqrt(n) if out else None
    W = 0.4 * rng.standard_normal((out or n, out or n))
    ci = np.tile(np.arange(m), K + 1)
    ti = np.concatenate([m + np.arange(m)] + [m + np.roll(np.arange(m), k + 1) for k in range(K)])
    y = np.concatenate([np.ones(m)] + [-np.ones(m)] * K)
    w = np.concatenate([np.full(m, 1 / m)] + [np.full(m, 1 / (m * K))] * K)
    G, h = head_forward(Z, V, V2)
    assert 0 < np.count_nonzero(h > 0) < h.size            # both sides of the ReLU are used
    loss, dG, dW, _, _ = code_terms(G, ci, ti, y, w, W, None, tau=tau)
    dZ, dV, dV2 = head_backward(Z, V, h, dG, V2)
    assert (dV2 is None) == (V2 is None)

    def f():
        g = np.maximum(Z @ V.T, 0.0)
        if out:
            g = np.array([[sum(V2[o, j] * g[b, j] for j in range(n)) for o in range(out)]
                          for b in range(len(g))])
        u = np.array([g[t] @ W @ g[c] for c, t in zip(ci, ti)])
        if tau:
            s = (u / tau).reshape(K + 1, m)
            return float(np.sum((np.log(np.exp(s).sum(0)) - s[0]) / m))
        return float(np.sum(w * np.maximum(0.0, 1.0 - y * u)))

    assert _rel(loss, f()) < 1e-12
    checks = [(Z, dZ, [(0, 0), (5, 3), (7, 4)]), (V, dV, [(0, 0), (2, 4), (5, 1)]),
              (W, dW, [(0, 1), (1, 1), (2, 2)])]
    if out:
        checks.append((V2, dV2, [(0, 0), (1, 3), (2, 5)]))
    for arr, grad, idxs in checks:
        for idx in idxs:
            assert _rel(grad[idx], _fd(f, arr, idx)) < 1e-6, idx


def test_rule_with_a_head_learns_and_rejects_bad_heads():
    """A CLAPP-s rule with a head: W_pred is head x head, V is stored with the predictor, both
    move in a step; a head on the either/or variant or a fractional width is an error."""
    from bioplausible import views
    from bioplausible.errors import UserError

    enc = encoders.build("conv3", (12, 12, 1), seed=0)
    rule = CLAPP(enc, views.preset("fashion_mnist"), variant="clapp_s", positives="views",
                 negatives=2, head=16, lr=1e-2, seed=0)
    assert all(P["w_pred"].shape == (16, 16) for P in rule.preds)
    assert [P["head"].shape for P in rule.preds] == [(16, d) for d in enc.code_dims]
    before = [P["head"].copy() for P in rule.preds]
    x = np.random.default_rng(5).standard_normal((16, 12, 12, 1)).astype(np.float32)  # synthetic
    m = rule.step(enc, {"x": x, "y": None, "rng": np.random.default_rng(1)})
    assert np.isfinite(m["loss"]) and all(np.any(P["head"] != b) for P, b in zip(rule.preds, before))
    two = CLAPP(enc, views.preset("fashion_mnist"), variant="clapp_s", positives="views",
                negatives=2, head=16, head_out=8, lr=1e-2, seed=0)           # g = V2 relu(V z)
    assert all(P["w_pred"].shape == (8, 8) and P["head2"].shape == (8, 16) for P in two.preds)
    before = [P["head2"].copy() for P in two.preds]
    m = two.step(enc, {"x": x, "y": None, "rng": np.random.default_rng(1)})
    assert np.isfinite(m["loss"]) and all(np.any(P["head2"] != b) for P, b in zip(two.preds, before))
    for kw in ({"variant": "clapp", "head": 8}, {"variant": "clapp_s", "head": 2.5},
               {"variant": "clapp_s", "head": -1}, {"variant": "clapp_s", "head_out": 4},
               {"variant": "clapp_s", "head": 8, "head_out": 1.5}):
        with pytest.raises(UserError, match="head"):
            CLAPP(enc, views.preset("fashion_mnist"), positives="views", **kw)
