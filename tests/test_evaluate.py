"""Evaluation on frozen features: probes, kNN, representation metrics, pooling.
All data here is synthetic (Gaussian blobs, random matrices)."""
import math

import numpy as np
import pytest

from bioplausible.evaluate import (SoftmaxProbe, Standardizer, _softmax_xent, collapse_std,
                                   dead_units, effective_rank, few_label_probe, gap,
                                   knn_accuracy, linear_probe, pool_features,
                                   representation_report)


def blobs(rng, n, d=20, k=4, sep=3.0, noise=1.0, centers=None):
    """Synthetic Gaussian blobs with class centres on random directions."""
    if centers is None:
        centers = sep * rng.standard_normal((k, d))
    y = rng.integers(0, len(centers), n)
    X = centers[y] + noise * rng.standard_normal((n, centers.shape[1]))
    return X.astype(np.float32), y, centers


# ----------------------------------------------------------------------------- standardizer

def test_standardizer_uses_training_statistics(rng):
    Xtr = (5 + 3 * rng.standard_normal((500, 6))).astype(np.float32)
    Xtr[:, 2] = 7.0  # constant column: no division by zero
    Xte = (5 + 3 * rng.standard_normal((100, 6))).astype(np.float32)
    s = Standardizer().fit(Xtr)
    Ztr = s.transform(Xtr)
    np.testing.assert_allclose(Ztr.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.delete(Ztr.std(0), 2), 1, rtol=1e-4)
    assert np.all(Ztr[:, 2] == 0)
    np.testing.assert_allclose(s.transform(Xte), (Xte - Xtr.mean(0)) / np.sqrt(Xtr.var(0) + 1e-8),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="features"):
        s.transform(Xte[:, :3])


# ----------------------------------------------------------------------------- linear probe

def test_probe_gradient_matches_finite_differences(rng):
    n, d, K = 40, 6, 3
    X = rng.standard_normal((n, d))
    y = rng.integers(0, K, n)
    params = 0.3 * rng.standard_normal(d * K + K)
    l2 = 0.05
    f, g = _softmax_xent(params, X, y, l2, K, np.float64)
    # the objective itself vs a naive per-sample formula
    W, b = params[:d * K].reshape(d, K), params[d * K:]
    naive = np.mean([math.log(np.sum(np.exp(X[i] @ W + b))) - (X[i] @ W + b)[y[i]]
                     for i in range(n)]) + 0.5 * l2 * np.sum(W ** 2)
    assert f == pytest.approx(naive, rel=1e-12)
    h = 1e-6
    num = np.array([(_softmax_xent(params + h * e, X, y, l2, K, np.float64)[0]
                     - _softmax_xent(params - h * e, X, y, l2, K, np.float64)[0]) / (2 * h)
                    for e in np.eye(len(params))])
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_probe_log_sum_exp_is_stable(rng):
    X = 1e4 * rng.standard_normal((10, 3))
    y = rng.integers(0, 2, 10)
    f, g = _softmax_xent(np.ones(3 * 2 + 2), X, y, 0.0, 2, np.float64)
    assert np.isfinite(f) and np.all(np.isfinite(g))


def test_probe_separable_problem_reaches_100_percent(rng):
    Xtr, ytr, c = blobs(rng, 2000, d=30, k=5, sep=4.0, noise=0.5)
    Xte, yte, _ = blobs(rng, 1000, centers=c, noise=0.5)
    res = linear_probe(Xtr, ytr, Xte, yte)
    assert res["converged"]
    assert res["train_acc"] == 1.0
    assert res["test_acc"] >= 0.999
    assert set(res) >= {"test_acc", "train_acc", "n_iter", "converged"}


def test_probe_beats_chance_only_when_there_is_signal(rng):
    X = rng.standard_normal((600, 10)).astype(np.float32)
    y = rng.integers(0, 3, 600)
    res = linear_probe(X[:400], y[:400], X[400:], y[400:], l2=1e-2)
    assert res["test_acc"] < 0.5  # labels independent of X: chance is 1/3


def test_probe_matches_sklearn(rng):
    sk = pytest.importorskip("sklearn.linear_model")
    Xtr, ytr, c = blobs(rng, 300, d=8, k=3, sep=1.0, noise=1.0)
    Xte, yte, _ = blobs(rng, 300, centers=c)
    l2 = 1e-2
    probe = SoftmaxProbe(l2=l2, tol=1e-9, ftol=1e-14, float32=False).fit(Xtr, ytr)
    std = probe.standardizer_
    ref = sk.LogisticRegression(C=1.0 / (len(ytr) * l2), tol=1e-10, max_iter=10000)
    ref.fit(std.transform(Xtr).astype(np.float64), ytr)
    # sklearn's multinomial parametrisation is shift-invariant across classes: compare the
    # class-centred weights and the probabilities
    W_ours = probe.coef_ - probe.coef_.mean(axis=1, keepdims=True)
    W_ref = ref.coef_.T - ref.coef_.T.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(W_ours, W_ref, rtol=1e-3, atol=1e-4)
    Zte = std.transform(Xte).astype(np.float64)
    p_ref = ref.predict_proba(Zte)
    logits = probe.decision_function(Xte)
    p_ours = np.exp(logits - logits.max(1, keepdims=True))
    p_ours /= p_ours.sum(1, keepdims=True)
    np.testing.assert_allclose(p_ours, p_ref, atol=1e-4)
    assert np.mean(probe.predict(Xte) == ref.predict(Zte)) >= 0.99
    assert abs(probe.score(Xte, yte) - ref.score(Zte, yte)) <= 0.01
    # default float32 matmuls give the same accuracy
    res = linear_probe(Xtr, ytr, Xte, yte, l2=l2)
    assert abs(res["test_acc"] - ref.score(Zte, yte)) <= 0.01


def test_probe_handles_arbitrary_labels(rng):
    Xtr, ytr, c = blobs(rng, 400, d=5, k=3, sep=5.0, noise=0.3)
    Xte, yte, _ = blobs(rng, 200, centers=c, noise=0.3)
    labels = np.array([7, -2, 40])
    res = linear_probe(Xtr, labels[ytr], Xte, labels[yte])
    assert res["test_acc"] > 0.99
    with pytest.raises(ValueError, match="2 classes"):
        linear_probe(Xtr, np.zeros(400, int), Xte, yte)
    with pytest.raises(ValueError, match="2-D"):
        linear_probe(Xtr[:, :, None], ytr, Xte, yte)


def test_few_label_probe(rng):
    Xtr, ytr, c = blobs(rng, 3000, d=20, k=4, sep=1.2, noise=1.0)
    Xte, yte, _ = blobs(rng, 1000, centers=c)
    r10 = few_label_probe(Xtr, ytr, Xte, yte, per_class=10, draws=5, rng=np.random.default_rng(0))
    assert len(r10["accs"]) == 5 and r10["sd"] > 0
    assert r10["mean"] == pytest.approx(np.mean(r10["accs"]))
    assert r10["sd"] == pytest.approx(np.std(r10["accs"], ddof=1))
    r100 = few_label_probe(Xtr, ytr, Xte, yte, per_class=100, draws=5,
                           rng=np.random.default_rng(0))
    full = linear_probe(Xtr, ytr, Xte, yte)["test_acc"]
    assert 0.25 + 0.1 < r10["mean"] < r100["mean"] + 0.02
    assert r100["mean"] <= full + 0.02
    again = few_label_probe(Xtr, ytr, Xte, yte, per_class=10, draws=5,
                            rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again["accs"], r10["accs"])  # reproducible from the seed
    with pytest.raises(ValueError, match="fewer than"):
        few_label_probe(Xtr[:20], ytr[:20], Xte, yte, per_class=10, rng=0)


# ----------------------------------------------------------------------------- kNN

def knn_naive(Xtr, ytr, Xte, k, metric):
    preds = []
    for x in Xte:
        if metric == "cosine":
            sims = np.array([x @ t / (np.linalg.norm(x) * np.linalg.norm(t)) for t in Xtr])
        else:
            sims = np.array([-np.sum((x - t) ** 2) for t in Xtr])
        order = np.argsort(-sims, kind="stable")[:k]
        best, best_key = None, None
        for c in np.unique(ytr):
            mask = ytr[order] == c
            key = (mask.sum(), sims[order][mask].sum())
            if best_key is None or key > best_key:  # strict: ties keep the smaller label
                best, best_key = c, key
        preds.append(best)
    return np.array(preds)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 4, 20])
def test_knn_matches_naive_loop(rng, metric, k):
    Xtr, ytr, c = blobs(rng, 200, d=6, k=4, sep=1.0)
    Xte, yte, _ = blobs(rng, 50, centers=c)
    expected = np.mean(knn_naive(Xtr.astype(np.float64), ytr, Xte.astype(np.float64), k, metric)
                       == yte)
    for batch in (7, 256):
        assert knn_accuracy(Xtr, ytr, Xte, yte, k=k, metric=metric, batch=batch) == \
            pytest.approx(expected)


def test_knn_tie_broken_by_summed_similarity():
    # k = 2: one neighbour of each class; the closer one (class 1) must win, not the smaller label
    Xtr = np.array([[1.0, 0.2], [1.0, 0.0], [-1.0, 0.0]], np.float32)
    ytr = np.array([0, 1, 2])
    Xte = np.array([[1.0, 0.01]], np.float32)
    assert knn_accuracy(Xtr, ytr, Xte, np.array([1]), k=2) == 1.0


# ----------------------------------------------------------------------------- representation metrics

def test_effective_rank(rng):
    d = 32
    Z = rng.standard_normal((4000, d))
    er = effective_rank(Z)
    assert 0.85 * d < er <= d
    for k in (1, 3, 8):
        low = rng.standard_normal((1000, k)) @ rng.standard_normal((k, d))
        er_k = effective_rank(low)
        assert 1.0 - 1e-9 <= er_k <= k + 1e-6
        assert er_k > 0.5 * k
    # equal singular values give exactly k
    Q, _ = np.linalg.qr(rng.standard_normal((100, 5)))
    Zeq = Q - Q.mean(0)  # centring keeps it rank 5 but may change the spectrum; rebuild exactly:
    U, _, Vt = np.linalg.svd(Zeq, full_matrices=False)
    assert effective_rank(U[:, :4] @ np.diag([2.0] * 4) @ Vt[:4]) == pytest.approx(4.0, rel=1e-6)
    assert effective_rank(np.ones((10, 4))) == 0.0


def test_collapse_std(rng):
    d = 64
    spread = rng.standard_normal((5000, d))
    assert collapse_std(spread) == pytest.approx(1 / math.sqrt(d), rel=0.05)
    direction = rng.standard_normal(d)
    collapsed = direction + 1e-3 * rng.standard_normal((5000, d))
    assert collapse_std(collapsed) < 0.01 / math.sqrt(d)


def test_dead_units_and_report(rng):
    d = 128
    Z = np.maximum(rng.standard_normal((1000, d)), 0)
    Z[:, :40] = 0.0
    assert dead_units(Z) == pytest.approx(40 / d)
    rep = representation_report(Z)
    assert rep["dead_fraction"] == pytest.approx(40 / d)
    assert any(w.startswith("dead:") for w in rep["warnings"])
    assert not any(w.startswith("collapse") for w in rep["warnings"])

    healthy = representation_report(rng.standard_normal((2000, d)))
    assert healthy["warnings"] == []
    assert healthy["collapse_ref"] == pytest.approx(1 / math.sqrt(d))

    collapsed = rng.standard_normal(d) + 1e-4 * rng.standard_normal((2000, d))
    collapsed[:, 0] += rng.standard_normal(2000) * 1e-3
    rep = representation_report(collapsed)
    assert any(w.startswith("collapse:") for w in rep["warnings"])
    low = representation_report(rng.standard_normal((2000, 1)) @ rng.standard_normal((1, d)))
    assert any(w.startswith("rank: effective rank 1") and f"of {d}" in w
               for w in low["warnings"])
    bad = rng.standard_normal((100, 8))
    bad[3, 2] = np.nan
    assert any(w.startswith("nonfinite") for w in representation_report(bad)["warnings"])


# ----------------------------------------------------------------------------- pooling

def pool_naive(h, g):
    N, H, W, C = h.shape
    out = np.zeros((N, g, g, C))
    for i in range(g):
        for j in range(g):
            h0, h1 = (i * H) // g, -((-(i + 1) * H) // g)
            w0, w1 = (j * W) // g, -((-(j + 1) * W) // g)
            for n in range(N):
                for c in range(C):
                    out[n, i, j, c] = np.mean(h[n, h0:h1, w0:w1, c])
    return out.reshape(N, -1)


@pytest.mark.parametrize("shape,grid", [((2, 8, 8, 3), 2), ((3, 7, 5, 4), 2), ((1, 9, 9, 2), 4),
                                        ((2, 3, 3, 1), 2), ((2, 1, 1, 5), 2), ((2, 6, 6, 3), 1)])
def test_pool_features_vs_naive(rng, shape, grid):
    h = rng.standard_normal(shape).astype(np.float32)
    out = pool_features(h, grid)
    assert out.shape == (shape[0], grid * grid * shape[3]) and out.dtype == np.float32
    np.testing.assert_allclose(out, pool_naive(h, grid), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("shape,grid", [((2, 8, 8, 3), 2), ((3, 7, 5, 4), 2), ((1, 9, 9, 2), 4),
                                        ((2, 3, 3, 1), 2), ((2, 5, 11, 3), 3)])
def test_pool_features_vs_torch(rng, shape, grid):
    torch = pytest.importorskip("torch")
    h = rng.standard_normal(shape).astype(np.float32)
    ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(h).permute(0, 3, 1, 2), grid)
    ref = ref.permute(0, 2, 3, 1).reshape(shape[0], -1).numpy()  # NHWC flatten order
    np.testing.assert_allclose(pool_features(h, grid), ref, rtol=1e-5, atol=1e-6)


def test_gap(rng):
    h = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(gap(h), h.mean(axis=(1, 2)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(pool_features(h, 1), gap(h), rtol=1e-6)
    with pytest.raises(ValueError, match="NHWC"):
        gap(h[0])  # 3-D: neither NHWC nor (N, C)
