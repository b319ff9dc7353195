"""Tests of bioplausible.losses.

For every loss: (1) the value equals a naive loop written straight from the paper's formula,
(2) the explicit gradient equals central finite differences and PyTorch autograd (when torch is
installed), (3) the loss decreases under plain gradient descent, (4) edge cases (batch of 1,
zero vectors, wrong shapes) behave.  All data are SYNTHETIC: small Gaussian random arrays drawn
from the seeded ``rng`` fixture (or local seeded Generators).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from bioplausible import losses as L


# ============================================================================================
# naive references: plain Python loops over samples / pairs, scalars via the math module
# ============================================================================================

def _dot(u, v):
    return sum(float(a) * float(b) for a, b in zip(u, v))


def _norm(u):
    return math.sqrt(_dot(u, u))


def _cos(u, v, eps=L.NORM_EPS):
    return _dot(u, v) / (max(_norm(u), eps) * max(_norm(v), eps))


def _sqdist(u, v):
    return sum((float(a) - float(b)) ** 2 for a, b in zip(u, v))


def naive_cross_entropy(logits, y):
    tot = 0.0
    for n in range(len(y)):
        row = [float(v) for v in logits[n]]
        tot += -math.log(math.exp(row[y[n]]) / sum(math.exp(v) for v in row))
    return tot / len(y)


def naive_info_nce(z1, z2, tau, normalize=True):
    # SimCLR eq. (1): l(i, j) = -log exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau)
    views = list(z1) + list(z2)
    n = len(z1)
    sim = _cos if normalize else _dot
    tot = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        den = sum(math.exp(sim(views[i], views[k]) / tau) for k in range(2 * n) if k != i)
        tot += -math.log(math.exp(sim(views[i], views[j]) / tau) / den)
    return tot / (2 * n)


def naive_supcon(z, labels, tau):
    # Khosla et al. eq. (2), L^sup_out, averaged over anchors that have at least one positive
    m = len(z)
    per = []
    for i in range(m):
        pos = [p for p in range(m) if p != i and labels[p] == labels[i]]
        if not pos:
            continue
        den = sum(math.exp(_cos(z[i], z[a]) / tau) for a in range(m) if a != i)
        li = 0.0
        for p in pos:
            li += math.log(math.exp(_cos(z[i], z[p]) / tau) / den)
        per.append(-li / len(pos))
    return sum(per) / len(per)


def naive_n_pair(a, p, l2_reg=0.0):
    # Sohn 2016: (1/N) sum_i log(1 + sum_{j != i} exp(f_i.f+_j - f_i.f+_i)) + reg
    n = len(a)
    tot = 0.0
    for i in range(n):
        s = sum(math.exp(_dot(a[i], p[j]) - _dot(a[i], p[i])) for j in range(n) if j != i)
        tot += math.log(1.0 + s)
    reg = sum(_dot(a[i], a[i]) + _dot(p[i], p[i]) for i in range(n))
    return tot / n + l2_reg * reg / n


def naive_clapp(z, c, W, y):
    y = np.broadcast_to(y, (len(z),))
    # Illing et al. 2021: u = z^T W c, hinge max(0, 1 - y u)
    tot = 0.0
    for n in range(len(z)):
        u = sum(float(z[n, i]) * float(W[i, j]) * float(c[n, j])
                for i in range(W.shape[0]) for j in range(W.shape[1]))
        tot += max(0.0, 1.0 - float(y[n]) * u)
    return tot / len(z)


def naive_clapp_multi(zp, zn, c, W):
    tot = 0.0
    n_, k_ = zn.shape[:2]
    for n in range(n_):
        def score(v):
            return sum(float(v[i]) * float(W[i, j]) * float(c[n, j])
                       for i in range(W.shape[0]) for j in range(W.shape[1]))
        tot += max(0.0, 1.0 - score(zp[n]))
        tot += sum(max(0.0, 1.0 + score(zn[n, k])) for k in range(k_)) / k_
    return tot / n_


def naive_contrastive(z1, z2, same, margin):
    m = margin
    # Hadsell et al. 2006 eq. (4): (1-Y) 1/2 D^2 + Y 1/2 max(0, m - D)^2, Y = 0 for similar
    tot = 0.0
    for n in range(len(z1)):
        d = math.sqrt(_sqdist(z1[n], z2[n]))
        tot += 0.5 * d * d if same[n] else 0.5 * max(0.0, m - d) ** 2
    return tot / len(z1)


def naive_triplet(a, p, q, margin):
    # Schroff et al. 2015 eq. (3): [||a - p||^2 - ||a - n||^2 + alpha]_+
    tot = 0.0
    for n in range(len(a)):
        tot += max(0.0, _sqdist(a[n], p[n]) - _sqdist(a[n], q[n]) + margin)
    return tot / len(a)


def naive_vicreg(z1, z2, lam, mu, nu, gamma, eps):
    # Bardes et al. 2022, eq. (1)-(6) and Algorithm 1, one feature / pair at a time
    n, d = z1.shape
    s = sum(_sqdist(z1[i], z2[i]) for i in range(n)) / (n * d)

    def v_and_c(z):
        means = [sum(float(z[i, j]) for i in range(n)) / n for j in range(d)]
        v = 0.0
        for j in range(d):
            var = sum((float(z[i, j]) - means[j]) ** 2 for i in range(n)) / (n - 1)
            v += max(0.0, gamma - math.sqrt(var + eps))
        c = 0.0
        for j in range(d):
            for k in range(d):
                if j != k:
                    cjk = sum((float(z[i, j]) - means[j]) * (float(z[i, k]) - means[k])
                              for i in range(n)) / (n - 1)
                    c += cjk * cjk
        return v / d, c / d

    v1, c1 = v_and_c(z1)
    v2, c2 = v_and_c(z2)
    return lam * s + mu * (v1 + v2) + nu * (c1 + c2)


def naive_simsiam_cosine(p, z_target):
    z = z_target
    return -sum(_cos(p[n], z[n]) for n in range(len(p))) / len(p)


def naive_byol_l2(p, z_target):
    z = z_target
    return sum(2.0 - 2.0 * _cos(p[n], z[n]) for n in range(len(p))) / len(p)


def naive_simsiam_l2(p, z_target):
    z = z_target
    return sum(0.5 * _sqdist(p[n], z[n]) for n in range(len(p))) / len(p)


# ============================================================================================
# one table of cases: inputs, how to call, which inputs are differentiable, naive reference
# ============================================================================================
# make(rng) -> (diff: list of arrays we differentiate w.r.t., extra: dict of non-diff args)
# call(*diff, **extra) -> (loss, *grads) in the order of `diff`.

def _mk_info_nce(rng):
    return [rng.normal(size=(5, 4)), rng.normal(size=(5, 4))], dict(temperature=0.5)


def _mk_info_nce_raw(rng):
    return [0.5 * rng.normal(size=(4, 3)), 0.5 * rng.normal(size=(4, 3))], \
        dict(temperature=0.7, normalize=False)


def _mk_ce(rng):
    return [rng.normal(size=(6, 4))], dict(y=rng.integers(0, 4, size=6))


def _mk_clapp(rng):
    # synthetic: y alternates +1/-1; scale keeps most margins active (not on the kink)
    return [rng.normal(size=(6, 4)), rng.normal(size=(6, 3)), 0.7 * rng.normal(size=(4, 3))], \
        dict(y=np.array([1, -1, 1, -1, 1, -1]))


def _mk_clapp_multi(rng):
    return [rng.normal(size=(4, 3)), rng.normal(size=(4, 3, 3)), rng.normal(size=(4, 2)),
            0.7 * rng.normal(size=(3, 2))], {}


def _mk_contrastive(rng):
    # margin 2.5 so that some dissimilar pairs are inside the margin and some outside
    return [rng.normal(size=(8, 3)), rng.normal(size=(8, 3))], \
        dict(same=np.array([1, 0, 1, 0, 0, 1, 0, 0], bool), margin=2.5)


def _mk_triplet(rng):
    return [rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), rng.normal(size=(6, 3))], \
        dict(margin=1.0)


def _mk_n_pair(rng):
    return [rng.normal(size=(5, 3)), rng.normal(size=(5, 3))], dict(l2_reg=0.01)


def _mk_supcon(rng):
    # label 3 occurs once: that anchor has no positive and must be excluded
    return [rng.normal(size=(8, 4))], \
        dict(labels=np.array([0, 1, 0, 2, 1, 2, 0, 3]), temperature=0.3)


def _mk_vicreg(rng):
    # std of 0.6 keeps the variance hinge active for most features (gamma = 1)
    return [0.6 * rng.normal(size=(6, 4)), 0.6 * rng.normal(size=(6, 4))], \
        dict(lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4)


def _mk_pred_target(rng):
    return [rng.normal(size=(5, 4))], dict(z_target=rng.normal(size=(5, 4)))



CASES = {
    "cross_entropy": (_mk_ce, L.cross_entropy,
                      lambda lg, y: naive_cross_entropy(lg, y)),
    "info_nce": (_mk_info_nce, L.info_nce,
                 lambda a, b, temperature: naive_info_nce(a, b, temperature)),
    "info_nce_raw": (_mk_info_nce_raw, L.info_nce,
                     lambda a, b, temperature, normalize: naive_info_nce(a, b, temperature, normalize)),
    "clapp_hinge": (_mk_clapp, L.clapp_hinge, naive_clapp),
    "clapp_hinge_multi": (_mk_clapp_multi, L.clapp_hinge_multi, naive_clapp_multi),
    "contrastive_margin": (_mk_contrastive, L.contrastive_margin, naive_contrastive),
    "triplet": (_mk_triplet, L.triplet, naive_triplet),
    "n_pair": (_mk_n_pair, L.n_pair, naive_n_pair),
    "supcon": (_mk_supcon, L.supcon, lambda z, labels, temperature: naive_supcon(z, labels, temperature)),
    "vicreg": (_mk_vicreg, L.vicreg, naive_vicreg),
    "simsiam_cosine": (_mk_pred_target, L.simsiam_cosine, naive_simsiam_cosine),
    "byol_l2": (_mk_pred_target, L.byol_l2, naive_byol_l2),
    "simsiam_l2": (_mk_pred_target, L.simsiam_l2, naive_simsiam_l2),
}


def _call(name, diff, extra):
    fn = CASES[name][1]
    return fn(*diff, **extra)


def _naive(name, diff, extra):
    return CASES[name][2](*diff, **extra)


def _fd_grads(f, diff, h=1e-6):
    """Central finite differences of the scalar f(*diff) w.r.t. every entry of every array."""
    out = []
    for k, x in enumerate(diff):
        g = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            xp = [a.copy() for a in diff]
            xm = [a.copy() for a in diff]
            xp[k][idx] += h
            xm[k][idx] -= h
            g[idx] = (f(*xp) - f(*xm)) / (2 * h)
        out.append(g)
    return out


def _rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


# ============================================================================================
# 1. value = naive loop from the paper
# ============================================================================================

@pytest.mark.parametrize("name", sorted(CASES))
def test_value_matches_naive_loop(name, rng):
    diff, extra = CASES[name][0](rng)
    out = _call(name, diff, extra)
    assert isinstance(out[0], float)
    assert len(out) == 1 + len(diff), "one gradient per differentiable input"
    for g, x in zip(out[1:], diff):
        assert g.shape == x.shape and g.dtype == np.float64
    naive = _naive(name, diff, extra)
    assert abs(out[0]) > 1e-3, "synthetic case should have a non-trivial loss"
    assert out[0] == pytest.approx(naive, rel=1e-11, abs=1e-12)


# ============================================================================================
# 2a. gradient = central finite differences (float64)
# ============================================================================================

@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name, rng):
    diff, extra = CASES[name][0](rng)
    grads = _call(name, diff, extra)[1:]
    fd = _fd_grads(lambda *d: _call(name, list(d), extra)[0], diff)
    for k, (g, gfd) in enumerate(zip(grads, fd)):
        assert np.linalg.norm(gfd) > 1e-6, f"input {k} of {name}: gradient should not vanish here"
        assert _rel_err(g, gfd) < 1e-6, f"input {k} of {name}: rel err {_rel_err(g, gfd):.2e}"


# ============================================================================================
# 2b. gradient = torch autograd (written independently from the papers, in torch)
# ============================================================================================

def _torch_refs(torch):
    F = torch.nn.functional

    def nt_xent(z1, z2, temperature, normalize=True):
        z = torch.cat([z1, z2], 0)
        if normalize:
            z = F.normalize(z, dim=1, eps=L.NORM_EPS)
        n2 = z.shape[0]
        sim = z @ z.T / temperature
        sim = sim.masked_fill(torch.eye(n2, dtype=torch.bool), float("-inf"))
        target = (torch.arange(n2) + n2 // 2) % n2
        return F.cross_entropy(sim, target)

    def supcon(z, labels, temperature):
        z = F.normalize(z, dim=1, eps=L.NORM_EPS)
        lab = torch.as_tensor(labels)
        m = z.shape[0]
        eye = torch.eye(m, dtype=torch.bool)
        sim = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
        logp = torch.log_softmax(sim, dim=1)
        pos = (lab[:, None] == lab[None, :]) & ~eye
        npos = pos.sum(1)
        valid = npos > 0
        per = -torch.where(pos, logp, torch.zeros_like(logp)).sum(1)[valid] / npos[valid]
        return per.mean()

    def clapp(z, c, W, y):
        u = ((z @ W) * c).sum(1)
        return torch.clamp(1 - torch.as_tensor(y, dtype=z.dtype) * u, min=0).mean()

    def clapp_multi(zp, zn, c, W):
        pred = c @ W.T
        up = (zp * pred).sum(1)
        un = torch.einsum("nkd,nd->nk", zn, pred)
        return torch.clamp(1 - up, min=0).mean() + torch.clamp(1 + un, min=0).mean()

    def contrastive(z1, z2, same, margin):
        d = torch.linalg.norm(z1 - z2, dim=1)
        s = torch.as_tensor(same, dtype=z1.dtype)
        return (s * 0.5 * d ** 2 + (1 - s) * 0.5 * torch.clamp(margin - d, min=0) ** 2).mean()

    def trip(a, p, q, margin):
        return torch.clamp(((a - p) ** 2).sum(1) - ((a - q) ** 2).sum(1) + margin, min=0).mean()

    def npair(a, p, l2_reg):
        s = a @ p.T
        return F.cross_entropy(s, torch.arange(a.shape[0])) + \
            l2_reg * ((a ** 2).sum() + (p ** 2).sum()) / a.shape[0]

    def vic(z1, z2, lam, mu, nu, gamma, eps):
        n, d = z1.shape
        loss = lam * F.mse_loss(z1, z2)
        for z in (z1, z2):
            std = torch.sqrt(z.var(dim=0) + eps)
            loss = loss + mu * torch.mean(F.relu(gamma - std))
            zc = z - z.mean(0)
            cov = zc.T @ zc / (n - 1)
            off = cov - torch.diag(torch.diag(cov))
            loss = loss + nu * (off ** 2).sum() / d
        return loss

    def ss_cos(p, z_target):
        return -F.cosine_similarity(p, z_target.detach(), dim=1).mean()

    def byol(p, z_target):
        pn = F.normalize(p, dim=1, eps=L.NORM_EPS)
        zn = F.normalize(z_target.detach(), dim=1, eps=L.NORM_EPS)
        return ((pn - zn) ** 2).sum(1).mean()

    def ss_l2(p, z_target):
        return 0.5 * ((p - z_target.detach()) ** 2).sum(1).mean()

    return {
        "cross_entropy": lambda lg, y: F.cross_entropy(lg, torch.as_tensor(y)),
        "info_nce": nt_xent, "info_nce_raw": nt_xent, "supcon": supcon,
        "clapp_hinge": clapp, "clapp_hinge_multi": clapp_multi,
        "contrastive_margin": contrastive, "triplet": trip, "n_pair": npair, "vicreg": vic,
        "simsiam_cosine": ss_cos, "byol_l2": byol, "simsiam_l2": ss_l2,
    }


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_torch_autograd(name, rng):
    torch = pytest.importorskip("torch")
    diff, extra = CASES[name][0](rng)
    out = _call(name, diff, extra)
    tdiff = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in diff]
    textra = {k: (torch.tensor(v, dtype=torch.float64)
                  if isinstance(v, np.ndarray) and v.dtype == np.float64 else v)
              for k, v in extra.items()}
    tloss = _torch_refs(torch)[name](*tdiff, **textra)
    tloss.backward()
    assert out[0] == pytest.approx(tloss.item(), rel=1e-12, abs=1e-13)
    for g, t in zip(out[1:], tdiff):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["simsiam_cosine", "byol_l2", "simsiam_l2"])
def test_stop_gradient_target_gets_no_gradient(name, rng):
    """Only dL/dp is returned; torch with detach() confirms the target gets no gradient."""
    torch = pytest.importorskip("torch")
    diff, extra = CASES[name][0](rng)
    assert len(_call(name, diff, extra)) == 2
    p = torch.tensor(diff[0], requires_grad=True)
    z = torch.tensor(extra["z_target"], requires_grad=True)
    _torch_refs(torch)[name](p, z).backward()
    assert z.grad is None


# ============================================================================================
# 3. the loss decreases under plain gradient descent
# ============================================================================================

# (learning rate, steps, required ratio final / initial)
DESCENT = {
    "cross_entropy": (1.0, 20, 0.5),
    "info_nce": (0.5, 20, 0.8),
    "info_nce_raw": (0.5, 20, 0.8),
    "clapp_hinge": (0.5, 20, 0.5),
    "clapp_hinge_multi": (0.5, 20, 0.5),
    "contrastive_margin": (0.5, 20, 0.5),
    "triplet": (0.1, 20, 0.5),
    "n_pair": (0.5, 20, 0.5),
    "supcon": (0.5, 20, 0.8),
    "vicreg": (0.01, 20, 0.8),
    "simsiam_cosine": (1.0, 20, 0.5),
    "byol_l2": (0.5, 20, 0.5),
    "simsiam_l2": (1.0, 20, 0.5),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_decreases_under_gradient_descent_on_embeddings(name, rng):
    lr, steps, ratio = DESCENT[name]
    diff, extra = CASES[name][0](rng)
    first = _call(name, diff, extra)[0]
    for _ in range(steps):
        out = _call(name, diff, extra)
        diff = [x - lr * g for x, g in zip(diff, out[1:])]
    last = _call(name, diff, extra)[0]
    assert np.isfinite(last)
    # distance to the loss's lower bound (0 for all but the negative cosine, whose bound is -1)
    low = -1.0 if name == "simsiam_cosine" else 0.0
    assert last - low < ratio * (first - low), f"{name}: {first:.4f} -> {last:.4f}"


def test_info_nce_trains_a_linear_encoder():
    """Gradient descent on the weights of z = x A (backprop dA = x^T dz) lowers NT-Xent.

    Synthetic data: 16 prototypes in 10-D, two noisy views of each.
    """
    g = np.random.default_rng(7)
    protos = g.normal(size=(16, 10))
    x1 = protos + 0.3 * g.normal(size=protos.shape)
    x2 = protos + 0.3 * g.normal(size=protos.shape)
    A = 0.1 * g.normal(size=(10, 6))
    first = L.info_nce(x1 @ A, x2 @ A, temperature=0.2)[0]
    for _ in range(30):
        _, d1, d2 = L.info_nce(x1 @ A, x2 @ A, temperature=0.2)
        A -= 0.5 * (x1.T @ d1 + x2.T @ d2)
    last = L.info_nce(x1 @ A, x2 @ A, temperature=0.2)[0]
    assert last < 0.7 * first


def test_clapp_learning_W_alone_separates_positive_from_negative_pairs():
    """Only the predictor W learns (the CLAPP three-factor update); synthetic positives are
    noisy copies of the context, negatives are independent draws."""
    g = np.random.default_rng(3)
    c = g.normal(size=(32, 5))
    z = np.concatenate([c + 0.2 * g.normal(size=c.shape), g.normal(size=c.shape)])
    cc = np.concatenate([c, c])
    y = np.concatenate([np.ones(32), -np.ones(32)])
    W = np.zeros((5, 5))
    first = L.clapp_hinge(z, cc, W, y)[0]
    assert first == pytest.approx(1.0)  # u = 0 everywhere
    for _ in range(20):
        _, _, _, dW = L.clapp_hinge(z, cc, W, y)
        W -= 0.2 * dW
    assert L.clapp_hinge(z, cc, W, y)[0] < 0.5 * first


# ============================================================================================
# 4. dtypes, cross-checks and edge cases
# ============================================================================================

@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_in_float32_out_and_close_to_float64(name, rng):
    diff, extra = CASES[name][0](rng)
    out64 = _call(name, diff, extra)
    extra32 = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v)
               for k, v in extra.items()}
    out32 = _call(name, [x.astype(np.float32) for x in diff], extra32)
    assert isinstance(out32[0], float)
    assert out32[0] == pytest.approx(out64[0], rel=1e-4, abs=1e-5)
    for g32, g64 in zip(out32[1:], out64[1:]):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-5)


def test_supcon_with_index_labels_equals_info_nce(rng):
    """SimCLR is the unsupervised case of SupCon (labels = sample index in each view)."""
    z1, z2 = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    labels = np.concatenate([np.arange(6), np.arange(6)])
    l_s, dz = L.supcon(np.concatenate([z1, z2]), labels, temperature=0.2)
    l_i, d1, d2 = L.info_nce(z1, z2, temperature=0.2)
    assert l_s == pytest.approx(l_i, rel=1e-12)
    np.testing.assert_allclose(dz, np.concatenate([d1, d2]), rtol=1e-10, atol=1e-14)


def test_supcon_anchor_without_positive_is_excluded_but_still_a_negative(rng):
    z = rng.normal(size=(5, 3))
    labels = np.array([0, 0, 1, 1, 9])
    loss, dz = L.supcon(z, labels)
    assert loss == pytest.approx(naive_supcon(z, labels, 0.1), rel=1e-11)
    # the singleton still acts as a negative for the others, so it receives a gradient
    assert np.linalg.norm(dz[4]) > 0


def test_vicreg_halved_variance_matches_official_repo_convention(rng):
    """The authors' repository halves the std term: equal to mu / 2 here."""
    z1, z2 = 0.5 * rng.normal(size=(6, 4)), 0.5 * rng.normal(size=(6, 4))
    full = L.vicreg(z1, z2, mu=25.0)[0]
    no_var = L.vicreg(z1, z2, mu=0.0)[0]
    half = L.vicreg(z1, z2, mu=12.5)[0]
    assert half == pytest.approx(no_var + 0.5 * (full - no_var), rel=1e-12)
    assert full > no_var


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4 - 1.0]])
    loss, d = L.cross_entropy(logits, np.array([0, 2]))
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    assert loss == pytest.approx((0.0 + (1.0 + math.log1p(math.exp(-1.0)))) / 2, rel=1e-12)


def test_info_nce_is_stable_for_tiny_temperature(rng):
    z1, z2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    loss, d1, d2 = L.info_nce(z1, z2, temperature=1e-3)
    assert np.isfinite(loss) and np.all(np.isfinite(d1)) and np.all(np.isfinite(d2))


def test_accuracy():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert L.accuracy(logits, np.array([1, 0, 0, 0])) == 0.75
    with pytest.raises(ValueError, match=r"\(4,\)"):
        L.accuracy(logits, np.array([1, 0]))


def test_registry_lists_every_loss_and_unknown_name_is_clear():
    expected = {"cross_entropy", "info_nce", "clapp_hinge", "clapp_hinge_multi",
                "contrastive_margin", "triplet", "n_pair", "supcon", "vicreg",
                "simsiam_cosine", "byol_l2", "simsiam_l2"}
    assert set(L.LOSSES) == expected
    assert all(callable(f) for f in L.LOSSES.values())
    assert L.get_loss("vicreg") is L.vicreg
    with pytest.raises(KeyError, match="known: .*info_nce"):
        L.get_loss("nt_xent_typo")


# --- batch of 1 ------------------------------------------------------------------------------

BATCH1_OK = ["cross_entropy", "clapp_hinge", "clapp_hinge_multi", "contrastive_margin",
             "triplet", "n_pair", "simsiam_cosine", "byol_l2", "simsiam_l2"]


def _first_row(v):
    return v[:1] if isinstance(v, np.ndarray) and v.ndim >= 1 else v


@pytest.mark.parametrize("name", BATCH1_OK)
def test_batch_of_one_is_defined_and_matches_naive(name, rng):
    diff, extra = CASES[name][0](rng)
    diff = [x[:1] for x in diff]
    if name == "clapp_hinge_multi":   # W is not batched
        diff[3] = CASES[name][0](np.random.default_rng(0))[0][3]
    if name == "clapp_hinge":
        diff[2] = CASES[name][0](np.random.default_rng(0))[0][2]
    extra = {k: _first_row(v) for k, v in extra.items()}
    out = _call(name, diff, extra)
    assert all(np.all(np.isfinite(g)) for g in out[1:])
    assert out[0] == pytest.approx(_naive(name, diff, extra), rel=1e-11, abs=1e-12)


def test_n_pair_batch_of_one_is_zero_without_regulariser(rng):
    loss, da, dp = L.n_pair(rng.normal(size=(1, 3)), rng.normal(size=(1, 3)))
    assert loss == 0.0 and not da.any() and not dp.any()


@pytest.mark.parametrize("call", [
    lambda z: L.info_nce(z, z),
    lambda z: L.vicreg(z, z),
], ids=["info_nce", "vicreg"])
def test_batch_of_one_raises_where_undefined(call, rng):
    with pytest.raises(ValueError, match="at least 2"):
        call(rng.normal(size=(1, 4)))


def test_supcon_without_any_positive_raises(rng):
    with pytest.raises(ValueError, match="no anchor has a positive"):
        L.supcon(rng.normal(size=(4, 3)), np.array([0, 1, 2, 3]))


# --- zero vectors with normalisation ---------------------------------------------------------

def _zero_rows(rng, shape, rows):
    z = rng.normal(size=shape)
    z[rows] = 0.0
    return z


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_vectors_give_no_nan(dtype, rng):
    z1 = _zero_rows(rng, (4, 3), [0, 2]).astype(dtype)
    z2 = _zero_rows(rng, (4, 3), [0]).astype(dtype)
    outs = [
        L.info_nce(z1, z2, normalize=True),
        L.supcon(np.concatenate([z1, z2]), np.array([0, 1, 2, 3, 0, 1, 2, 3])),
        L.simsiam_cosine(z1, z2),
        L.byol_l2(z1, z2),
        L.contrastive_margin(z1, z2, np.array([False, True, False, False])),
    ]
    for out in outs:
        assert np.isfinite(out[0])
        for g in out[1:]:
            assert g.dtype == dtype and np.all(np.isfinite(g))
    # a zero row has cosine 0 with everything, so its similarity term is exactly 0
    assert L.simsiam_cosine(z1[:1], z2[:1])[0] == 0.0
    assert L.byol_l2(z1[:1], z2[1:2])[0] == pytest.approx(1.0)   # ||0 - unit||^2


def test_contrastive_margin_identical_dissimilar_pair_has_zero_gradient():
    z = np.array([[1.0, 2.0]])
    loss, d1, d2 = L.contrastive_margin(z, z.copy(), np.array([False]), margin=1.5)
    assert loss == pytest.approx(0.5 * 1.5 ** 2)
    assert not d1.any() and not d2.any()


# --- shapes and values -----------------------------------------------------------------------

@pytest.mark.parametrize("call, pattern", [
    (lambda: L.info_nce(np.zeros((4, 3)), np.zeros((4, 2))), r"\(4, 3\).*\(4, 2\)"),
    (lambda: L.info_nce(np.zeros(4), np.zeros(4)), r"2-D.*\(4,\)"),
    (lambda: L.vicreg(np.zeros((4, 3)), np.zeros((5, 3))), r"\(4, 3\).*\(5, 3\)"),
    (lambda: L.triplet(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((3, 3))), r"neg\(3, 3\)"),
    (lambda: L.n_pair(np.zeros((4, 3)), np.zeros((4, 4))), r"\(4, 3\).*\(4, 4\)"),
    (lambda: L.simsiam_cosine(np.zeros((2, 3)), np.zeros((2, 4))), r"\(2, 3\).*\(2, 4\)"),
    (lambda: L.byol_l2(np.zeros((2, 3)), np.zeros((3, 3))), r"\(2, 3\).*\(3, 3\)"),
    (lambda: L.simsiam_l2(np.zeros((2, 3)), np.zeros((2, 3, 1))), r"2-D"),
    (lambda: L.clapp_hinge(np.zeros((4, 3)), np.zeros((4, 2)), np.zeros((2, 3)), 1),
     r"W \(Dz, Dc\).*W\(2, 3\)"),
    (lambda: L.clapp_hinge(np.zeros((4, 3)), np.zeros((5, 2)), np.zeros((3, 2)), 1), r"c\(5, 2\)"),
    (lambda: L.clapp_hinge(np.zeros((4, 3)), np.zeros((4, 2)), np.zeros((3, 2)), np.ones(3)),
     r"\(4,\)"),
    (lambda: L.clapp_hinge_multi(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((4, 2)),
                                 np.zeros((3, 2))), r"\(N, K, Dz\)"),
    (lambda: L.contrastive_margin(np.zeros((4, 3)), np.zeros((4, 3)), np.ones(3, bool)), r"\(4,\)"),
    (lambda: L.supcon(np.zeros((4, 3)), np.array([0, 0, 1])), r"\(4,\)"),
    (lambda: L.cross_entropy(np.zeros((4, 3)), np.array([0, 1, 2])), r"\(4,\)"),
])
def test_shape_mismatch_raises_value_error_naming_shapes(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_invalid_values_raise():
    with pytest.raises(ValueError, match=r"\+1.*-1"):
        L.clapp_hinge(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((3, 2)), np.array([1, 0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        L.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="temperature"):
        L.info_nce(np.ones((2, 3)), np.ones((2, 3)), temperature=0.0)


def test_clapp_scalar_label_broadcasts(rng):
    z, c, W = rng.normal(size=(3, 4)), rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    a = L.clapp_hinge(z, c, W, -1)
    b = L.clapp_hinge(z, c, W, -np.ones(3))
    assert a[0] == b[0]
    for x, y in zip(a[1:], b[1:]):
        np.testing.assert_array_equal(x, y)
