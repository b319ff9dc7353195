"""Hebbian two-factor rules: known fixed points (quality thresholds), numba kernels against slow
numpy loops, dense == conv, clear errors, and the experiments' smoke runs.

The fixed-point tests use synthetic data (Gaussian, Laplacian sources, separable clusters) on
purpose: their answers are known in closed form.  The experiments use real images.
"""
import numpy as np
import pytest

from bioplausible.rules import hebbian as H


def _gauss(rng, n, eig, dtype=np.float32):
    d = len(eig)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    X = (rng.normal(size=(n, d)) * np.sqrt(eig)) @ Q.T
    lam, E = np.linalg.eigh(np.cov(X.T))
    return X.astype(dtype), lam[::-1], E[:, ::-1]


# --------------------------------------------------------------------------- fixed points
@pytest.mark.parametrize("online", [True, False])
def test_oja_finds_first_principal_component(rng, online):
    eig = np.array([3.0, 1.5, 1.0, 0.7, 0.5, 0.4, 0.3, 0.2])
    X, lam, E = _gauss(rng, 20000, eig)
    W = (0.1 * rng.normal(size=(8, 1))).astype(np.float32)
    for lr in (0.02, 0.005, 0.001, 0.0003):
        if online:
            H.oja_online(W, X, lr, inplace=True)
        else:
            for i in range(0, len(X), 20):
                W += H.oja(W, X[i:i + 20], lr * 5)
    w = W[:, 0].astype(np.float64)
    assert abs(w @ E[:, 0]) / np.linalg.norm(w) > 0.999
    assert abs(np.linalg.norm(w) - 1) < 0.01


@pytest.mark.parametrize("fn", ["oja_online", "oja"])
def test_oja_too_large_rate_is_reported_not_nan(rng, fn):
    X, _, _ = _gauss(rng, 500, np.array([3.0, 1.0, 0.5]))
    W = (0.1 * rng.normal(size=(3, 1))).astype(np.float32)
    W0 = W.copy()
    with pytest.raises(H.HebbianDivergence, match="learning rate"):
        if fn == "oja_online":
            H.oja_online(W, X, 2.0, inplace=True)
        else:
            for i in range(0, 500, 10):
                W += H.oja(W, X[i:i + 10], 2.0)
    if fn == "oja_online":      # stopped at the last finite weights, never NaN
        assert np.all(np.isfinite(W)) and not np.array_equal(W, W0)


def test_sanger_finds_top_components_in_order(rng):
    eig = np.array([4.0, 2.5, 1.5, 1.0, 0.5, 0.3, 0.2, 0.1, 0.1, 0.05])
    X, lam, E = _gauss(rng, 20000, eig)
    k = 4
    W = (0.1 * rng.normal(size=(10, k))).astype(np.float32)
    for lr in (0.01, 0.003, 0.001, 0.0003, 0.0001):
        H.sanger_online(W, X, lr, inplace=True)
    for j in range(k):
        w = W[:, j].astype(np.float64)
        assert abs(w @ E[:, j]) / np.linalg.norm(w) > 0.99, j
    # the mini-batch form of the same rule gets there too
    Wb = (0.1 * rng.normal(size=(10, k))).astype(np.float32)
    for lr in (0.2, 0.05, 0.02):
        for _ in range(3):
            for i in range(0, len(X), 100):
                Wb += H.sanger(Wb, X[i:i + 100], lr)
    cos = [abs(Wb[:, j] @ E[:, j]) / np.linalg.norm(Wb[:, j]) for j in range(k)]
    assert min(cos) > 0.99, cos


def amari_index(P):
    P = np.abs(P)
    n = len(P)
    r = (P.sum(1) / P.max(1) - 1).sum()
    c = (P.sum(0) / P.max(0) - 1).sum()
    return (r + c) / (2 * n * (n - 1))


@pytest.mark.parametrize("decorrelation", ["symmetric", "anti_hebbian"])
def test_nonlinear_hebbian_ica_separates_laplacian_sources(rng, decorrelation):
    n_src, n = 5, 20000
    S = rng.laplace(size=(n, n_src)) / np.sqrt(2)
    A = rng.normal(size=(n_src, n_src))
    Xm = S @ A.T
    Xm -= Xm.mean(0)
    lam, E = np.linalg.eigh(np.cov(Xm.T))
    V = E / np.sqrt(lam)                     # whitening: z = x V
    Z = (Xm @ V).astype(np.float32)
    Q, _ = np.linalg.qr(rng.normal(size=(n_src, n_src)))
    W = Q.astype(np.float32)
    for lr in (0.5, 0.2, 0.1, 0.05, 0.02):
        for i in range(0, n, 250):
            W += H.nonlinear_ica(W, Z[i:i + 250], lr, decorrelation=decorrelation)
    P = W.T @ V.T @ A                          # sources -> outputs
    assert amari_index(P) < 0.05


def test_competitive_matches_lloyd_kmeans(rng):
    from scipy.optimize import linear_sum_assignment

    k, d = 5, 6
    centres = rng.normal(scale=6.0, size=(k, d))
    lab = rng.integers(0, k, 3000)
    X = (centres[lab] + rng.normal(size=(3000, d))).astype(np.float64)
    # Lloyd's algorithm (the reference), initialised from k samples
    init = X[rng.choice(len(X), 20 * k, replace=False)]
    init = init[[np.argmin(((init - c) ** 2).sum(1)) for c in centres]]   # one per cluster
    C = init.copy()
    for _ in range(50):
        a = np.argmin(((X[:, None] - C[None]) ** 2).sum(-1), 1)
        C = np.stack([X[a == j].mean(0) for j in range(k)])
    # online competitive learning with 1/count steps, two passes, same initial centroids
    W = init.T.copy()
    counts = np.zeros(k, np.int64)
    for _ in range(2):
        H.competitive_online(W, X[rng.permutation(len(X))], 0.0, counts, inplace=True)
    cost = ((W.T[:, None] - C[None]) ** 2).sum(-1)
    r, c = linear_sum_assignment(cost)
    assert np.sqrt(cost[r, c]).max() < 0.1
    # the mini-batch rule with η = 1 is one Lloyd step
    Wb = init.T.copy()
    for _ in range(50):
        Wb += H.competitive(Wb, X, 1.0)
    assert np.allclose(np.sort(Wb.T, 0), np.sort(C, 0), atol=1e-8)


def test_softhebb_weights_go_to_unit_norm_and_spread(rng):
    centres = rng.normal(size=(4, 8))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    X = (centres[rng.integers(0, 4, 8000)] + 0.05 * rng.normal(size=(8000, 8))).astype(np.float32)
    W = H.normalize_columns((rng.normal(size=(8, 4))).astype(np.float32))
    for i in range(0, 8000, 50):
        W += H.softhebb(W, X[i:i + 50], 0.2, temperature=10.0)
    norms = np.linalg.norm(W, axis=0)
    assert np.allclose(norms, 1, atol=0.05)
    # each cluster centre is the best match of some unit (the mixture components were found)
    best = np.argmax(centres @ W, axis=1)
    assert len(set(best.tolist())) >= 3


# --------------------------------------------------------------------------- kernels vs numpy
def _ref_oja(W, X, lr):
    W = W.copy()
    for x in X:
        y = x @ W
        W += lr * (np.outer(x, y) - W * y * y)
    return W


def _ref_sanger(W, X, lr):
    W = W.copy()
    for x in X:
        y = x @ W
        W += lr * (np.outer(x, y) - W @ np.triu(np.outer(y, y)))
    return W


def _ref_bcm(W, X, th, lr, tau):
    W, th = W.copy(), th.copy()
    for x in X:
        y = np.maximum(x @ W, 0)
        W += lr * np.outer(x, y * (y - th))
        th += (y * y - th) / tau
    return W, th


def _ref_competitive(W, X, counts):
    W, counts = W.copy(), counts.copy()
    for x in X:
        j = np.argmin(((x[:, None] - W) ** 2).sum(0))
        counts[j] += 1
        W[:, j] += (x - W[:, j]) / counts[j]
    return W, counts


SHAPES = [(1, 1, 1), (1, 5, 3), (7, 3, 1), (33, 17, 9), (20, 4, 6)]


@pytest.mark.parametrize("n,d,k", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_online_kernels_match_numpy_loops(rng, n, d, k, dtype):
    X = rng.normal(size=(n, d)).astype(dtype)
    W = (0.3 * rng.normal(size=(d, k))).astype(dtype)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(W + H.oja_online(W, X, 0.05), _ref_oja(W, X, 0.05), **tol)
    np.testing.assert_allclose(W + H.sanger_online(W, X, 0.05), _ref_sanger(W, X, 0.05), **tol)
    th = np.abs(rng.normal(size=k)).astype(dtype)
    th0 = th.copy()
    dW = H.bcm_online(W, X, th, 0.005, tau_theta=10.0)
    Wr, thr = _ref_bcm(W, X, th0, 0.005, 10.0)
    np.testing.assert_allclose(W + dW, Wr, **tol)
    np.testing.assert_allclose(th, thr, **tol)
    counts = np.zeros(k, np.int64)
    dW = H.competitive_online(W, X, 0.0, counts)
    Wr, cr = _ref_competitive(W, X, np.zeros(k, np.int64))
    np.testing.assert_allclose(W + dW, Wr, **tol)
    assert np.array_equal(counts, cr)
    # zeros in, nothing learned (and nothing breaks)
    Z = np.zeros_like(X)
    assert np.all(H.oja_online(W, Z, 0.1) == 0) and np.all(H.sanger_online(W, Z, 0.1) == 0)


@pytest.mark.parametrize("n,k,rank", [(1, 2, 2), (5, 7, 2), (40, 30, 3), (3, 4, 4)])
def test_kh_post_matches_sort(rng, n, k, rank):
    U = rng.normal(size=(n, k)).astype(np.float32)
    G = H.kh_post(U, rank, 0.4)
    order = np.argsort(-U, axis=1, kind="stable")
    ref = np.zeros_like(U)
    ref[np.arange(n), order[:, 0]] = 1
    ref[np.arange(n), order[:, rank - 1]] = -0.4
    assert np.array_equal(G, ref)


@pytest.mark.parametrize("anti", [False, True])
def test_softmax_post_matches_numpy(rng, anti):
    U = (3 * rng.normal(size=(13, 9))).astype(np.float64)
    Y, yu = H.softmax_post(U, 2.0, anti)
    e = np.exp(2.0 * (U - U.max(1, keepdims=True)))
    ref = e / e.sum(1, keepdims=True)
    if anti:
        mask = np.ones_like(ref, bool)
        mask[np.arange(13), U.argmax(1)] = False
        ref[mask] *= -1
    np.testing.assert_allclose(Y, ref, rtol=1e-12)
    np.testing.assert_allclose(yu, (ref * U).sum(0), rtol=1e-12)


def test_softmax_post_flushes_subnormals_at_large_temperature(rng):
    # with t = 200 most exp() values underflow to subnormal floats, which slowed the BLAS products
    # of SoftHebb ~20x; they are flushed to 0 and the result still matches the exact softmax
    U = rng.normal(size=(50, 400)).astype(np.float32)
    Y, _ = H.softmax_post(U, 200.0)
    tiny = np.finfo(np.float32).tiny
    assert not np.any((Y != 0) & (np.abs(Y) < tiny))
    e = np.exp(200.0 * (U.astype(np.float64) - U.max(1, keepdims=True)))
    np.testing.assert_allclose(Y, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-29)


def test_probe_l2_is_chosen_on_the_training_split_only(rng):
    # synthetic: 2 informative features + 200 noise features, few samples -> strong L2 wins on
    # the held-out split; scrambling the test labels must not change the choice
    from bioplausible.experiment import load_experiment

    probe_selected = load_experiment("hebbian_classifier").probe_selected

    n, d = 400, 202
    y = rng.integers(0, 2, n + 300)
    X = rng.normal(size=(n + 300, d)).astype(np.float32)
    X[:, :2] += 1.5 * y[:, None]
    Xtr, ytr, Xte, yte = X[:n], y[:n], X[n:], y[n:]
    a = probe_selected(Xtr, ytr, Xte, yte, [1e-4, 1e-1], val_n=100, max_iter=200)
    b = probe_selected(Xtr, ytr, Xte, rng.permutation(yte), [1e-4, 1e-1], val_n=100, max_iter=200)
    assert a["l2"] == b["l2"] == 1e-1 and a["val_by_l2"] == b["val_by_l2"]
    assert a["val_by_l2"][1e-1] > a["val_by_l2"][1e-4]
    assert a["test_acc"] > 0.8 and b["test_acc"] < 0.7
    one = probe_selected(Xtr, ytr, Xte, yte, [1e-2], val_n=100, max_iter=50)
    assert one["l2"] == 1e-2 and one["val_by_l2"] == {}


def test_batch_rules_match_per_sample_formulas(rng):
    X = rng.normal(size=(6, 5))
    W = rng.normal(size=(5, 3))
    lr = 0.1
    # SoftHebb: Δw_k = η mean_n y_k (x − u_k w_k)
    ref = np.zeros_like(W)
    for x in X:
        u = x @ W
        y = np.exp(u - u.max()) / np.exp(u - u.max()).sum()
        ref += np.outer(x, y) - W * (y * u)
    np.testing.assert_allclose(H.softhebb(W, X, lr), lr * ref / 6, rtol=1e-10)
    # per-unit averaging: unit k's summed update divided by its own total activity Σ_n y_nk
    U = X @ W
    Y = np.exp(U - U.max(1, keepdims=True))
    Y /= Y.sum(1, keepdims=True)
    np.testing.assert_allclose(H.softhebb(W, X, lr, average="unit"), lr * ref / Y.sum(0), rtol=1e-10)
    # Krotov-Hopfield (p = 3, no update normalisation)
    ref = np.zeros_like(W)
    for x in X:
        I = x @ (np.sign(W) * np.abs(W) ** 2)
        g = np.zeros(3)
        o = np.argsort(-I)
        g[o[0]], g[o[1]] = 1, -0.4
        ref += np.outer(x, g) - W * (g * I)
    np.testing.assert_allclose(H.krotov_hopfield(W, X, lr, p=3, normalize_update=False),
                               lr * ref / 6, rtol=1e-10)
    # BCM batch = mean of the per-sample updates
    th = np.abs(rng.normal(size=3))
    dW, dth = H.bcm(W, X, th, lr, tau_theta=5.0)
    Y = np.maximum(X @ W, 0)
    ref = sum(np.outer(x, y * (y - th)) for x, y in zip(X, Y)) / 6
    np.testing.assert_allclose(dW, lr * ref, rtol=1e-10)
    np.testing.assert_allclose(dth, ((Y ** 2).mean(0) - th) / 5.0, rtol=1e-10)
    # lateral inhibition stays non-negative, zero diagonal
    V = np.abs(rng.normal(size=(3, 3)))
    np.fill_diagonal(V, 0)
    Vn = V + H.anti_hebbian_lateral(V, Y - 5, 0.5, target=0.1)
    assert Vn.min() >= 0 and np.all(np.diag(Vn) == 0)


def test_conv_layer_uses_the_same_rule_on_patches(rng):
    """A rule on a Conv2d == the same rule on the explicit receptive fields (naive loop)."""
    from bioplausible.layers import Conv2d, Dense

    conv = Conv2d(3, 4, kernel=3, padding=1, rng=rng)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    p = H.Plastic(conv)
    P = p.patches(x)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    naive = np.array([xp[n, i:i + 3, j:j + 3, :].ravel() for n in range(2) for i in range(5)
                      for j in range(6)])
    np.testing.assert_allclose(P, naive)
    # the conv's output is P @ W (+ b): W is the weight seen as a matrix, a view of the layer's
    y, _ = conv.forward(x)
    np.testing.assert_allclose(y.reshape(-1, 4), P @ p.W + conv.params["b"], rtol=1e-5, atol=1e-5)
    dW = H.softhebb(p.W, P, 0.1)
    p.W[...] += dW
    assert np.shares_memory(p.W, conv.params["w"])
    dense = Dense(5, 3, rng=rng)
    q = H.Plastic(dense)
    xd = rng.normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(q.patches(xd), xd)
    assert np.shares_memory(q.W, dense.params["w"])


def test_blockwise_rule_trains_conv3_only_its_active_block(rng):
    from bioplausible import encoders

    enc = encoders.build("conv3", (12, 12, 3), seed=0)
    rule = H.HebbianBlockwise(enc, "softhebb", lr=0.05, bias_target=0.2, temperature=5.0)
    before = enc.state_dict()
    rule.active = [1]
    x = rng.normal(size=(4, 12, 12, 3)).astype(np.float32)
    m = rule.step(enc, {"x": x, "y": None, "rng": np.random.default_rng(0)})
    after = enc.state_dict()
    assert "dw_b2" in m and np.isfinite(m["dw_b2"]) and m["dw_b2"] > 0
    for k in after:
        moved = not np.array_equal(before[k], after[k])
        assert moved == k.startswith("block1/"), k       # block index 1 = the second block
    w2 = after["block1/layer0/w"]
    assert np.all(np.isfinite(w2))


def test_patch_whitening_matches_numpy_zca(rng):
    """ZCA on synthetic correlated Gaussian rows: identity covariance, symmetric Z, equal to an
    SVD-based reference."""
    X, _, _ = _gauss(rng, 20000, [9.0, 4.0, 1.0, 0.25, 0.04], np.float64)
    X += 3.0                                   # a non-zero mean to remove
    m, Z, C = H.patch_whitening(X, eps=1e-9)
    np.testing.assert_allclose(m, X.mean(0), atol=1e-12)
    np.testing.assert_allclose(Z, Z.T, atol=1e-10)
    Zc = np.cov((X - m) @ Z, rowvar=False)
    np.testing.assert_allclose(Zc, np.eye(5), atol=1e-5)
    U, sv, _ = np.linalg.svd(np.cov(X, rowvar=False))
    np.testing.assert_allclose(Z, U @ np.diag(sv ** -0.5) @ U.T, rtol=1e-5, atol=1e-6)
    # eps regularises the weak directions: variance of z along the weakest eigenvector < 1
    _, Zr, _ = H.patch_whitening(mean=m, cov=C, eps=0.1)
    lam, E = np.linalg.eigh(C)
    assert np.var((X - m) @ Zr @ E[:, 0]) < 0.5 and np.var((X - m) @ Zr @ E[:, -1]) > 0.85


@pytest.mark.parametrize("gain", ["var", "norm"])
def test_fold_whitening_layer_computes_the_rule_potential(rng, gain):
    """A Conv2d holding folded weights computes v_k . Z (x - m) / s_k on its raw input (synthetic
    input with a non-zero mean and correlated channels)."""
    from bioplausible.layers import Conv2d

    conv = Conv2d(3, 6, kernel=3, padding=1, rng=rng)
    mix = rng.normal(size=(3, 3))
    x = (rng.normal(size=(8, 7, 7, 3)) @ mix + 0.7).astype(np.float32)
    p = H.Plastic(conv)
    P = p.patches(x).astype(np.float64)
    m, Z, C = H.patch_whitening(P, eps=1e-4)
    V = H.normalize_columns(rng.normal(size=(27, 6)))
    W, b = H.fold_whitening(V.astype(np.float32), m, Z, C, gain)
    p.W[...] = W
    conv.params["b"][...] = b
    y, _ = conv.forward(x)
    U = ((P - m) @ Z) @ V                      # the rule's potentials on whitened rows
    s = U.std(0, ddof=1) if gain == "var" else np.linalg.norm(Z @ V, axis=0)
    np.testing.assert_allclose(y.reshape(-1, 6), U / s, rtol=2e-3, atol=2e-3)
    if gain == "var":                          # unit-variance drive, threshold at its mean
        np.testing.assert_allclose(y.reshape(-1, 6).std(0), 1.0, atol=2e-3)
        np.testing.assert_allclose(y.reshape(-1, 6).mean(0), 0.0, atol=2e-3)
    else:
        np.testing.assert_allclose(np.linalg.norm(W, axis=0), 1.0, rtol=1e-5)


def test_blockwise_whitened_rule_keeps_encoder_consistent(rng):
    """HebbianBlockwise(whiten=True) on conv3 (synthetic images): needs fit_whitening first;
    after a step the layer holds fold_whitening of the rule-space weights; other blocks fixed."""
    from bioplausible import encoders

    enc = encoders.build("conv3", (12, 12, 3), seed=0)
    x = (rng.normal(size=(16, 12, 12, 3)) + 0.3).astype(np.float32)
    rule = H.HebbianBlockwise(enc, "krotov_hopfield", lr=0.05, whiten=True, p=2.0, rank=2,
                              delta=0.2, max_rows=256)
    rule.active = [1]
    batch = {"x": x[:4], "y": None, "rng": np.random.default_rng(0)}
    with pytest.raises(H.HebbianError, match="fit_whitening"):
        rule.step(enc, batch)
    before = enc.state_dict()
    m, Z, C, V = rule.fit_whitening(enc, 1, x, rng=np.random.default_rng(1), per_image=200)
    V0 = V.copy()
    out = rule.step(enc, batch)
    assert out["dw_b2"] > 0 and not np.allclose(V, V0)
    W, b = H.fold_whitening(V, m, Z, C, "var")
    np.testing.assert_allclose(enc.blocks[1].layers[0].params["w"].reshape(W.shape), W, rtol=1e-6)
    np.testing.assert_allclose(enc.blocks[1].layers[0].params["b"], b, rtol=1e-6, atol=1e-7)
    after = enc.state_dict()
    for k in after:
        assert (not np.array_equal(before[k], after[k])) == k.startswith("block1/"), k
    with pytest.raises(H.HebbianError, match="bias_target=None"):
        H.HebbianBlockwise(enc, "softhebb", whiten=True, bias_target=0.5)


# --------------------------------------------------------------------------- errors
def test_clear_errors():
    W = np.zeros((4, 2), np.float32)
    with pytest.raises(H.HebbianError, match="X must be"):
        H.oja(W, np.zeros((3, 5), np.float32), 0.1)
    with pytest.raises(H.HebbianError, match="learning rate"):
        H.sanger(W, np.zeros((3, 4), np.float32), -1.0)
    with pytest.raises(H.HebbianError, match="Dense or Conv2d"):
        H.Plastic(object())
    with pytest.raises(H.HebbianError, match="theta"):
        H.bcm_online(W, np.zeros((3, 4), np.float32), np.zeros(3, np.float32), 0.1)
    with pytest.raises(H.HebbianError, match="rank"):
        H.kh_post(np.zeros((2, 3), np.float32), rank=5)
    with pytest.raises(H.HebbianError, match="unknown Hebbian rule"):
        from bioplausible import encoders
        H.HebbianBlockwise(encoders.build("conv3", (8, 8, 1), seed=0), "nope")


# --------------------------------------------------------------------------- Gabor fit + smoke runs
def test_gabor_fit_tells_localised_from_global(rng):
    from bioplausible.experiment import load_experiment

    rf = load_experiment("receptive_fields")
    yy, xx = np.mgrid[0:16, 0:16].astype(float)
    for theta in (0.3, 2.0):
        g = rf.gabor((xx.ravel(), yy.ravel()), 1, 7, 8, theta, 2.0, 3.0, 0.2, 0.4, 0).reshape(16, 16)
        fit = rf.fit_gabor(g + 0.05 * rng.normal(size=g.shape))
        assert fit["r2"] > 0.9
        assert min(abs(fit["theta"] - theta), np.pi - abs(fit["theta"] - theta)) < 0.1
        assert rf.classify_filter(fit, 16) == "localised-oriented"
    plane = np.cos(2 * np.pi * (xx + yy) / 16)                  # a PCA-like global mode
    assert rf.classify_filter(rf.fit_gabor(plane), 16) == "global"
    assert rf.classify_filter(rf.fit_gabor(rng.normal(size=(16, 16))), 16) == "unfit"


def _run_smoke(name, tmp_path, sets=()):
    from bioplausible.experiment import load_experiment, run_experiment

    return run_experiment(load_experiment(name), sets=list(sets), out=tmp_path, smoke=True,
                          progress=False)


def test_receptive_fields_smoke(tmp_path):
    rows = _run_smoke("receptive_fields", tmp_path)
    assert {r["rule"] for r in rows} == {"gha", "ica", "bcm", "softhebb", "competitive"}
    assert len(list(tmp_path.glob("*.h5"))) == 1
    assert (tmp_path / "gabor_classes.png").is_file()
    for r in rows:
        assert (tmp_path / r["figure"]).is_file() and 0 <= r["local_oriented"] <= 1


from conftest import have_dataset as _have  # noqa: E402


def test_hebbian_classifier_smoke(tmp_path):
    if not _have("fashion_mnist"):
        pytest.skip("Fashion-MNIST not installed")
    rows = _run_smoke("hebbian_classifier", tmp_path, ["part=fmnist"])
    arms = {r["arm"]: r for r in rows}
    assert {"pixels", "random", "data_init", "softhebb", "krotov_hopfield", "backprop"} == set(arms)
    assert all(0.1 < arms[a]["probe_test"] <= 1 for a in arms)
    assert len(list(tmp_path.glob("*.h5"))) == len(arms)
    assert (tmp_path / "fmnist_softhebb_filters.png").is_file()


@pytest.mark.slow
def test_hebbian_classifier_cifar_smoke(tmp_path):
    if not _have("cifar10"):
        pytest.skip("CIFAR-10 not found (see data/README.md)")
    rows = _run_smoke("hebbian_classifier", tmp_path, ["part=cifar"])
    arms = {r["arm"]: r for r in rows}
    assert {"random", "krotov_hopfield"} <= set(arms) and "beats_random_on" in arms["krotov_hopfield"]
    assert 0 < arms["krotov_hopfield"]["probe2x2_b3"] <= 1
    assert (tmp_path / "cifar_probes.png").is_file()
    assert (tmp_path / "cifar_krotov_hopfield_block1_filters.png").is_file()
