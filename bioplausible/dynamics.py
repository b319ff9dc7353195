r"""Eigenvalue dynamics of non-contrastive self-supervised learning (SimSiam, PhiNet).

Tian, Chen & Ganguli (ICML 2021) showed that for *linear* networks on isotropic data, gradient flow
of SimSiam/BYOL reduces to independent scalar ODEs, one per eigenmode; Bao (2023) extended the
analysis to the cosine loss.  This module writes those ODEs down (and PhiNet's, Ishikawa et al.
ICLR 2025, derived here), finds their fixed points and their stability from the Jacobian, traces
bifurcation diagrams over weight decay ρ and augmentation strength σ², gives phase-portrait fields,
and runs the linear networks they come from (numba kernels in ``kernels/linear_ssl.py``).

Setting and assumptions (every reduction below needs all of them)
-------------------------------------------------------------------
* Data x₀ ~ N(0, I_d) (isotropic); views x₁, x₂ = x₀ + σε with ε ~ N(0, I_d): E[x₁x₁ᵀ] = a·I with
  **a = 1 + σ²**, E[x₁x₂ᵀ] = E[x₁x₀ᵀ] = I.
* Square linear maps: encoder W_f, predictor W_h (W_p in Tian et al.), PhiNet's second predictor
  W_g; stop-gradient (SG) on targets; gradient *flow* on the *expected* loss, weight decay ρ on
  every matrix: Ẇ = −∂L/∂W − ρW.
* **Aligned eigenbasis**: W_h and W_g symmetric and commuting with F = W_f W_fᵀ (one orthonormal
  basis U diagonalises all three).  The flow preserves this set (every right-hand side is then a
  polynomial in commuting symmetric matrices), so the eigenvalues p_h,j, p_g,j (of W_h, W_g) and
  s_j (of F) evolve independently per mode j.  Without alignment the reduction does not hold
  exactly; Tian et al. argue (and ``simulate_linear(init="random")`` shows) that weight decay makes
  W_h approach symmetry and alignment over time.

SimSiam, L2 loss  L = ½E‖W_h W_f x₁ − SG(W_f x₂)‖²
------------------------------------------------
∂L/∂W_h = (aW_h − I)F, ∂L/∂W_f = W_hᵀ(aW_h − I)W_f, Ḟ = ẆW_fᵀ + W_fẆᵀ.  Per mode::

    ṗ = s{1 − a p} − ρp,          ṡ = 2p s{1 − a p} − 2ρs,
    d/dt (s − p²) = −2ρ (s − p²)  ⇒  s − p² = (s₀ − p₀²) e^{−2ρt}   (the invariant).

On the invariant manifold s = p² (attracting at rate 2ρ): **ṗ = p²{1 − (1+σ²)p} − ρp**.
Fixed points: p = 0 (always stable, eigenvalue −ρ) and the roots of a p² − p + ρ = 0,
p± = [1 ± √(1 − 4ρa)]/(2a), which exist iff ρ ≤ **ρ* = 1/(4(1+σ²))** (saddle-node bifurcation).
p₊ is stable, p₋ unstable (its basin boundary).  In the (p, s) plane the Jacobian is
[[−as − ρ, 1 − ap], [2s(1 − 2ap), 2p(1 − ap) − 2ρ]]; at p± (s = p²) one eigenvalue is −2ρ
(transverse to the manifold) and the other is f'(p) = 2p − 3ap² − ρ.

SimSiam, cosine loss  L = −E⟨u, v⟩/(‖u‖‖v‖), u = W_h W_f x₁, v = SG(W_f x₂)
-------------------------------------------------------------------------
High-dimensional limit (Bao 2023's setting): with many modes the norms concentrate,
‖u‖² → n₁² = a Σ_k p_k² s_k and ‖v‖² → n₂² = a Σ_k s_k, so L → −c/(n₁n₂) with c = Σ_k p_k s_k
(n₂ is under SG; n₁ is differentiated).  Our derivation of the gradients gives, per mode::

    ṗ_j = ν s_j {1 − κ p_j} − ρ p_j,        ṡ_j = 2ν p_j s_j {1 − κ p_j} − 2ρ s_j,
    ν = 1/(n₁ n₂) = 1/(a √(Σ p_k² s_k · Σ s_k)),       κ = a c / n₁² = Σ p_k s_k / Σ p_k² s_k.

The same invariant s_j − p_j² ∝ e^{−2ρt} holds.  Seen from one mode, the cosine loss is the L2
ODE with (1+σ²) → κ and a time rescaled by ν — both set by the whole spectrum.  σ² enters only
through ν ∝ 1/(1+σ²) (a time scale), not through the fixed points.  Frozen coefficients give the
mode's fixed points p± = [1 ± √(1 − 4ρκ/ν)]/(2κ) (on s = p²) and the threshold ρ*_eff = ν/(4κ).
For an isotropic spectrum of k live modes at p (s = p²): κ = 1/p and ν = 1/(a k p³), so
ρ*_eff = 1/(4 a k p²): as weight decay shrinks the scale p, the threshold *grows* and a
non-trivial equilibrium (in direction; the loss is scale-invariant) emerges dynamically — the
qualitative point of Bao (2023).  We derived these coefficients ourselves from the stated limit;
they are checked against the linear network with SGD on the cosine loss at finite d (``cosine_*``).

PhiNet, L = ½E[‖W_h W_f x₁ − SG(W_f x₂)‖² + λ‖W_g W_h W_f x₁ − SG(W_f x₀)‖²]
-------------------------------------------------------------------------------
Step by step (M₁ = aW_h − I, M₂ = aW_gW_h − I):

1. ∂L/∂W_h = M₁F + λW_gᵀM₂F (the second term reaches W_h through W_g);
2. ∂L/∂W_g = λM₂FW_hᵀ;
3. ∂L/∂W_f = (W_hᵀM₁ + λ(W_gW_h)ᵀM₂)W_f;
4. in the aligned basis, with eigenvalues p_h, p_g, s:
   ṗ_h = −(ap_h − 1)s − λp_g(ap_gp_h − 1)s − ρp_h = s{(1 + λp_g) − a p_h(1 + λp_g²)} − ρp_h,
   ṗ_g = −λ(ap_gp_h − 1)s p_h − ρp_g              = λ s p_h {1 − a p_g p_h} − ρp_g,
   ṡ   = 2s·[p_h{(1 + λp_g) − a p_h(1 + λp_g²)}] − 2ρs;
5. d/dt(s − p_h²) = −2ρ(s − p_h²): the same invariant as SimSiam, so on s = p_h²::

    ṗ_h = {(1 + λp_g) − (1+σ²)(1 + λp_g²) p_h} p_h² − ρ p_h
    ṗ_g = λ{1 − (1+σ²) p_g p_h} p_h³ − ρ p_g                          (form "derived")

The form printed in the source talk has ṗ_g = {1 − (1+σ²)p_h}p_h³ − ρp_g (form "printed"): it lacks
the factor p_g inside the braces.  Both forms are implemented; the linear network decides (the
experiment ``simsiam_dynamics`` and ``tests/test_dynamics.py`` show it follows "derived").
Collapse (0, 0, 0) is always a stable fixed point (eigenvalues −ρ, −ρ, −2ρ).

Units: time t = (number of gradient steps) × (learning rate).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import UserError

__all__ = [
    "DynamicsError", "FixedPoint", "rho_star", "p_plus", "p_minus",
    "simsiam_rhs", "simsiam_reduced_rhs", "simsiam_jacobian", "simsiam_fixed_points",
    "phinet_rhs", "phinet_reduced_rhs", "phinet_fixed_points",
    "cosine_rhs", "cosine_coefficients", "cosine_mode_rhs", "cosine_drift_mc",
    "numerical_jacobian", "integrate", "largest_rho", "bifurcation", "phase_field",
    "init_aligned", "init_random", "simulate_linear", "spectra",
]

PHINET_FORMS = ("derived", "printed")
MODELS = ("simsiam", "phinet")


class DynamicsError(UserError):
    """A bad parameter for the eigenvalue dynamics (negative ρ or σ², unknown model/form...)."""


def _check(sigma2, rho, lam=1.0):
    if not (np.isfinite(sigma2) and sigma2 >= 0):
        raise DynamicsError(f"augmentation strength sigma2 must be a finite number >= 0, "
                            f"got {sigma2}")
    if not (np.isfinite(rho) and rho >= 0):
        raise DynamicsError(f"weight decay rho must be a finite number >= 0, got {rho}")
    if not (np.isfinite(lam) and lam >= 0):
        raise DynamicsError(f"PhiNet loss weight lam must be a finite number >= 0, got {lam}")


def _check_form(form):
    if form not in PHINET_FORMS:
        raise DynamicsError(f"unknown PhiNet ODE form {form!r}; choose from: "
                            f"{', '.join(PHINET_FORMS)}")


def _check_model(model):
    if model not in MODELS:
        raise DynamicsError(f"unknown model {model!r}; choose from: {', '.join(MODELS)}")


@dataclass
class FixedPoint:
    """A fixed point of an eigenvalue ODE: ``state`` (e.g. (p, s) or (p_h, p_g, s)), the
    Jacobian's ``eigenvalues`` there and ``stable`` (all real parts < 0)."""
    name: str
    state: np.ndarray
    eigenvalues: np.ndarray = field(repr=False)
    stable: bool = False

    @property
    def collapsed(self) -> bool:
        return bool(abs(self.state[0]) < 1e-12)


# ------------------------------------------------------------------------------ SimSiam, L2
def rho_star(sigma2: float) -> float:
    """Largest weight decay with a non-collapsed SimSiam fixed point: ρ* = 1/(4(1+σ²))."""
    _check(sigma2, 0.0)
    return 1.0 / (4.0 * (1.0 + sigma2))


def p_plus(sigma2: float, rho: float) -> float:
    """Stable non-trivial SimSiam fixed point p₊ = [1 + √(1 − 4ρ(1+σ²))]/(2(1+σ²)) (NaN if ρ > ρ*)."""
    _check(sigma2, rho)
    a = 1.0 + sigma2
    disc = 1.0 - 4.0 * rho * a
    return (1.0 + math.sqrt(disc)) / (2.0 * a) if disc >= 0 else math.nan


def p_minus(sigma2: float, rho: float) -> float:
    """Unstable SimSiam fixed point p₋ = [1 − √(1 − 4ρ(1+σ²))]/(2(1+σ²)) (NaN if ρ > ρ*)."""
    _check(sigma2, rho)
    a = 1.0 + sigma2
    disc = 1.0 - 4.0 * rho * a
    return (1.0 - math.sqrt(disc)) / (2.0 * a) if disc >= 0 else math.nan


def simsiam_rhs(t, y, sigma2, rho):
    """(ṗ, ṡ) = (s{1 − ap} − ρp, 2ps{1 − ap} − 2ρs), a = 1 + σ²; p: predictor eigenvalue, s:
    eigenvalue of W_f W_fᵀ.  Vectorised over leading axes of ``y[0], y[1]``."""
    p, s = y[0], y[1]
    a = 1.0 + sigma2
    g = s * (1.0 - a * p)
    return np.array([g - rho * p, 2.0 * p * g - 2.0 * rho * s])


def simsiam_reduced_rhs(t, p, sigma2, rho):
    """ṗ = p²{1 − (1+σ²)p} − ρp on the invariant manifold s = p²."""
    return p * p * (1.0 - (1.0 + sigma2) * p) - rho * p


def simsiam_jacobian(y, sigma2, rho):
    """Analytic Jacobian of :func:`simsiam_rhs` at y = (p, s)."""
    p, s = float(y[0]), float(y[1])
    a = 1.0 + sigma2
    return np.array([[-a * s - rho, 1.0 - a * p],
                     [2.0 * s * (1.0 - 2.0 * a * p), 2.0 * p * (1.0 - a * p) - 2.0 * rho]])


def simsiam_fixed_points(sigma2: float, rho: float) -> list[FixedPoint]:
    """Fixed points of (ṗ, ṡ) with s ≥ 0: collapse (0, 0) and, when ρ ≤ ρ*, p± with s = p²."""
    _check(sigma2, rho)
    out = []
    for name, p in (("collapse", 0.0), ("p_minus", p_minus(sigma2, rho)),
                    ("p_plus", p_plus(sigma2, rho))):
        if math.isnan(p):
            continue
        y = np.array([p, p * p])
        ev = np.linalg.eigvals(simsiam_jacobian(y, sigma2, rho))
        out.append(FixedPoint(name, y, ev, bool(np.all(ev.real < 0))))
    return out


# ------------------------------------------------------------------------------ PhiNet
def phinet_rhs(t, y, sigma2, rho, lam=1.0, form="derived"):
    """(ṗ_h, ṗ_g, ṡ) of PhiNet's linear network (module docstring, step 4).

    ``form="printed"`` replaces ṗ_g by λ s p_h{1 − a p_h} − ρp_g (the talk's form off the manifold
    s = p_h², written so that it reduces to the printed equation on it)."""
    if form not in PHINET_FORMS:
        _check_form(form)
    ph, pg, s = y[0], y[1], y[2]
    a = 1.0 + sigma2
    b = (1.0 + lam * pg) - a * ph * (1.0 + lam * pg * pg)
    dph = s * b - rho * ph
    inner = (1.0 - a * pg * ph) if form == "derived" else (1.0 - a * ph)
    dpg = lam * s * ph * inner - rho * pg
    ds = 2.0 * s * ph * b - 2.0 * rho * s
    return np.array([dph, dpg, ds])


def phinet_reduced_rhs(t, y, sigma2, rho, lam=1.0, form="derived"):
    """(ṗ_h, ṗ_g) on the invariant manifold s = p_h² (module docstring, step 5)."""
    ph, pg = y[0], y[1]
    full = phinet_rhs(t, (ph, pg, ph * ph), sigma2, rho, lam, form)
    return full[:2]


def _phinet_candidates(sigma2, rho, lam, form, n_grid=3000):
    """Non-trivial fixed points on s = p_h².

    ṗ_h = 0 is quadratic in p_g: a λ p_h² p_g² − λ p_h p_g + (a p_h² − p_h + ρ) = 0, with real
    roots iff a p_h² − p_h + ρ ≤ λ/(4a), i.e. p_h ∈ [e₋, e₊], e± = [1 ± √(1 + λ − 4aρ)]/(2a).
    The two root branches p_g±(p_h) join at e± into one closed curve; ṗ_g = 0 is searched for
    along it (sign changes on a grid clustered at the edges, refined by brentq)."""
    from scipy.optimize import brentq

    a = 1.0 + sigma2
    roots = []
    if lam == 0:
        # ṗ_g = −ρ p_g: p_g = 0 and p_h from the SimSiam quadratic
        for p in (p_minus(sigma2, rho), p_plus(sigma2, rho)):
            if not math.isnan(p) and p != 0:
                roots.append((p, 0.0))
        return roots
    root_disc = 1.0 + lam - 4.0 * a * rho
    if root_disc < 0:
        return roots
    e_lo = (1.0 - math.sqrt(root_disc)) / (2 * a)
    e_hi = (1.0 + math.sqrt(root_disc)) / (2 * a)

    def pg_of(ph, sgn):
        ph = np.asarray(ph, float)
        A = a * lam * ph * ph
        B = -lam * ph
        C = a * ph * ph - ph + rho
        disc = np.maximum(B * B - 4 * A * C, 0.0)
        return (-B + sgn * np.sqrt(disc)) / (2 * A)

    def g(ph, sgn):
        pg = pg_of(ph, sgn)
        inner = (1.0 - a * pg * ph) if form == "derived" else (1.0 - a * ph)
        return lam * ph ** 3 * inner - rho * pg

    # the p_h interval(s), excluding p_h = 0 where the quadratic degenerates
    pieces = [(e_lo, e_hi)] if e_lo > 0 else [(e_lo, -1e-9), (1e-9, e_hi)]
    for lo, hi in pieces:
        u = 0.5 * (1.0 - np.cos(np.linspace(0.0, math.pi, n_grid)))
        grid = lo + (hi - lo) * u
        for sgn in (1.0, -1.0):
            vals = g(grid, sgn)
            v0, v1 = vals[:-1], vals[1:]
            cand = np.nonzero(np.isfinite(v0) & np.isfinite(v1)
                              & ((v0 == 0) | (np.sign(v0) != np.sign(v1))))[0]
            for i in cand:
                if vals[i] == 0:
                    r = grid[i]
                else:
                    r = brentq(lambda x: float(g(x, sgn)), grid[i], grid[i + 1], xtol=1e-15,
                               rtol=1e-14, maxiter=200)
                roots.append((float(r), float(pg_of(r, sgn))))
    uniq = []
    for r in roots:
        if all(abs(r[0] - u_[0]) > 1e-9 or abs(r[1] - u_[1]) > 1e-9 for u_ in uniq):
            uniq.append(r)
    return uniq


def phinet_fixed_points(sigma2: float, rho: float, lam: float = 1.0,
                        form: str = "derived") -> list[FixedPoint]:
    """Fixed points (p_h, p_g, s) of PhiNet's ODE with s = p_h² (all fixed points with ρ > 0 lie
    there), with eigenvalues of the full 3-D Jacobian and stability."""
    _check(sigma2, rho, lam)
    _check_form(form)
    out = [FixedPoint("collapse", np.zeros(3),
                      np.array([-rho, -rho, -2 * rho]), rho > 0)]
    for k, (ph, pg) in enumerate(_phinet_candidates(sigma2, rho, lam, form)):
        y = np.array([ph, pg, ph * ph])
        ev = np.linalg.eigvals(numerical_jacobian(
            lambda v: phinet_rhs(0.0, v, sigma2, rho, lam, form), y))
        out.append(FixedPoint(f"fp{k}", y, ev, bool(np.all(ev.real < 0))))
    return out


# ------------------------------------------------------------------------------ cosine loss
def cosine_coefficients(p, s, sigma2):
    """ν = 1/(n₁n₂) and κ = Σps/Σp²s of the high-dimensional cosine-loss ODE for the spectrum
    (p, s); also the frozen-coefficient threshold ρ*_eff = ν/(4κ)."""
    p = np.asarray(p, float)
    s = np.asarray(s, float)
    a = 1.0 + sigma2
    m2 = float(np.sum(p * p * s))
    m0 = float(np.sum(s))
    c = float(np.sum(p * s))
    if m2 <= 0 or m0 <= 0:
        return {"nu": math.inf, "kappa": math.nan, "rho_star_eff": math.nan}
    nu = 1.0 / (a * math.sqrt(m2 * m0))
    kappa = c / m2
    return {"nu": nu, "kappa": kappa, "rho_star_eff": nu / (4.0 * kappa) if kappa > 0 else math.inf}


def cosine_rhs(t, y, sigma2, rho):
    """Coupled per-mode ODE of SimSiam with the cosine loss in the high-dimensional limit;
    y = (p_1..p_d, s_1..s_d)."""
    y = np.asarray(y, float)
    d = y.size // 2
    p, s = y[:d], y[d:]
    co = cosine_coefficients(p, s, sigma2)
    nu, kappa = co["nu"], co["kappa"]
    if not np.isfinite(nu):
        return np.concatenate([-rho * p, -2 * rho * s])
    g = nu * s * (1.0 - kappa * p)
    return np.concatenate([g - rho * p, 2.0 * p * g - 2.0 * rho * s])


def cosine_drift_mc(p, s, sigma2, n_samples: int = 20000, n_chunks: int = 4, rng=0):
    """Monte-Carlo drift of the linear network under the cosine loss at an aligned state, for
    comparing with :func:`cosine_rhs` (which assumes the high-dimensional limit).

    Builds aligned weights with eigenvalues (p, s) (``init_aligned``), averages the minibatch
    gradient of the cosine loss (numba kernel) over ``n_chunks × n_samples`` fresh samples and
    returns ``(ṗ, ṡ)`` measured in the aligned basis (ρ = 0: weight decay adds exactly −ρp, −2ρs
    to both sides)."""
    from .kernels import linear_ssl as k

    p = np.asarray(p, float)
    s = np.asarray(s, float)
    d = p.size
    rng = _rng(rng)
    init = init_aligned(d, p, s, 0.0, rng)
    U, wf, wh = init["basis"], init["wf"], init["wh"]
    wg = np.zeros((d, d))
    gf, gh, gg = (np.zeros((d, d)) for _ in range(3))
    acc_h, acc_f = np.zeros((d, d)), np.zeros((d, d))
    sd = math.sqrt(sigma2)
    with single_thread_blas():
        for _ in range(n_chunks):
            x0 = rng.standard_normal((n_samples, d))
            x1 = x0 + sd * rng.standard_normal((n_samples, d))
            x2 = x0 + sd * rng.standard_normal((n_samples, d))
            k.minibatch_grads(k.MODELS["simsiam"], k.LOSSES["cosine"], wf, wh, wg, x0, x1, x2,
                              0.0, gf, gh, gg)
            acc_h += gh / n_chunks
            acc_f += gf / n_chunks
    pdot = -np.diag(U.T @ acc_h @ U)
    sdot = -np.diag(U.T @ (acc_f @ wf.T + wf @ acc_f.T) @ U)
    return pdot, sdot


def cosine_mode_rhs(t, y, nu, kappa, rho):
    """One mode with frozen coefficients: (ṗ, ṡ) = (νs{1 − κp} − ρp, 2νps{1 − κp} − 2ρs)."""
    p, s = y[0], y[1]
    g = nu * s * (1.0 - kappa * p)
    return np.array([g - rho * p, 2.0 * p * g - 2.0 * rho * s])


# ------------------------------------------------------------------------------ tools
def numerical_jacobian(f, y, eps: float = 1e-7):
    """Central-difference Jacobian of ``f`` (R^n → R^n) at ``y``."""
    y = np.asarray(y, float)
    n = y.size
    J = np.empty((n, n))
    for k in range(n):
        h = eps * max(1.0, abs(y[k]))
        yp, ym = y.copy(), y.copy()
        yp[k] += h
        ym[k] -= h
        J[:, k] = (np.asarray(f(yp)) - np.asarray(f(ym))) / (2 * h)
    return J


def integrate(rhs, y0, t_end: float, args=(), t_eval=None, rtol: float = 1e-11,
              atol: float = 1e-13, method: str = "DOP853"):
    """Integrate ``rhs(t, y, *args)`` from 0 to ``t_end`` with scipy's ``solve_ivp`` (tight
    tolerances).  Returns ``(t, Y)`` with Y of shape (len(t), n)."""
    from scipy.integrate import solve_ivp

    if not (t_end > 0):
        raise DynamicsError(f"t_end must be > 0, got {t_end}")
    sol = solve_ivp(lambda t, y: np.asarray(rhs(t, y, *args), float), (0.0, float(t_end)),
                    np.atleast_1d(np.asarray(y0, float)), method=method, t_eval=t_eval,
                    rtol=rtol, atol=atol)
    if sol.status < 0:
        raise DynamicsError(f"ODE integration failed: {sol.message}")
    return sol.t, sol.y.T


def _has_stable_nontrivial(model, sigma2, rho, lam, form):
    if model == "simsiam":
        return any(fp.stable and not fp.collapsed for fp in simsiam_fixed_points(sigma2, rho))
    return any(fp.stable and not fp.collapsed
               for fp in phinet_fixed_points(sigma2, rho, lam, form))


def largest_rho(model: str, sigma2: float, lam: float = 1.0, form: str = "derived",
                tol: float = 1e-7, rho_hi: float = 4.0) -> float:
    """The largest weight decay ρ at which a stable non-collapsed fixed point exists (bisection
    on existence; SimSiam's answer is the closed form ρ* = 1/(4(1+σ²)))."""
    _check_model(model)
    _check(sigma2, 0.0, lam)
    if model == "simsiam":
        return rho_star(sigma2)
    _check_form(form)
    lo, hi = 1e-9, rho_hi
    if not _has_stable_nontrivial(model, sigma2, lo, lam, form):
        return 0.0
    if _has_stable_nontrivial(model, sigma2, hi, lam, form):
        return math.inf
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if _has_stable_nontrivial(model, sigma2, mid, lam, form):
            lo = mid
        else:
            hi = mid
    return lo


def bifurcation(model: str, over: str, values, sigma2: float = 0.5, rho: float = 0.05,
                lam: float = 1.0, form: str = "derived") -> dict:
    """Fixed points along a parameter sweep.

    ``over`` is "rho" or "sigma2"; the other parameter is held at the given value.  Returns
    ``{"values", "points": list (per value) of (p, stable) pairs}`` where p is p (SimSiam) or p_h
    (PhiNet), plus ``"pg"`` lists for PhiNet.  The collapsed point is included."""
    _check_model(model)
    if over not in ("rho", "sigma2"):
        raise DynamicsError(f"bifurcation over {over!r}: choose 'rho' or 'sigma2'")
    pts, pgs = [], []
    for v in np.asarray(values, float):
        r, s2 = (v, sigma2) if over == "rho" else (rho, v)
        if model == "simsiam":
            fps = simsiam_fixed_points(s2, r)
            pts.append([(float(fp.state[0]), fp.stable) for fp in fps])
            pgs.append([math.nan for _ in fps])
        else:
            fps = phinet_fixed_points(s2, r, lam, form)
            pts.append([(float(fp.state[0]), fp.stable) for fp in fps])
            pgs.append([float(fp.state[1]) for fp in fps])
    return {"values": np.asarray(values, float), "points": pts, "pg": pgs}


def phase_field(model: str, xs, ys, sigma2: float, rho: float, lam: float = 1.0,
                form: str = "derived"):
    """Vector field on a grid for a phase portrait: SimSiam in the (p, s) plane, PhiNet in the
    (p_h, p_g) plane on the manifold s = p_h².  Returns (X, Y, U, V) (meshgrid layout)."""
    _check_model(model)
    X, Y = np.meshgrid(np.asarray(xs, float), np.asarray(ys, float))
    if model == "simsiam":
        U, V = simsiam_rhs(0.0, (X, Y), sigma2, rho)
    else:
        U, V = phinet_reduced_rhs(0.0, (X, Y), sigma2, rho, lam, form)
    return X, Y, U, V


# ------------------------------------------------------------------------------ linear networks
def _rng(seed_or_rng):
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def init_aligned(d: int, p0, s0, pg0=0.0, rng=0) -> dict:
    """Weights satisfying the reduction's assumptions: a random orthonormal basis U, symmetric
    W_h = U diag(p0) Uᵀ, W_g = U diag(pg0) Uᵀ, and W_f = U diag(√s0) Vᵀ (V another random
    orthonormal matrix) so that W_f W_fᵀ = U diag(s0) Uᵀ.  Scalars broadcast over the d modes."""
    if d < 1:
        raise DynamicsError(f"dimension d must be >= 1, got {d}")
    p0 = np.broadcast_to(np.asarray(p0, float), (d,)).copy()
    s0 = np.broadcast_to(np.asarray(s0, float), (d,)).copy()
    pg0 = np.broadcast_to(np.asarray(pg0, float), (d,)).copy()
    if np.any(s0 < 0):
        raise DynamicsError("s0 are eigenvalues of W_f W_fᵀ and must be >= 0")
    rng = _rng(rng)
    U, _ = np.linalg.qr(rng.standard_normal((d, d)))
    V, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return {"wf": U @ np.diag(np.sqrt(s0)) @ V.T, "wh": U @ np.diag(p0) @ U.T,
            "wg": U @ np.diag(pg0) @ U.T, "basis": U}


def init_random(d: int, scale_f: float = 1.0, scale_h: float = 1.0, scale_g: float = 1.0,
                rng=0) -> dict:
    """Unaligned Gaussian weights: entries N(0, scale²/d) (W_h, W_g not symmetric)."""
    if d < 1:
        raise DynamicsError(f"dimension d must be >= 1, got {d}")
    rng = _rng(rng)
    n = lambda sc: sc * rng.standard_normal((d, d)) / math.sqrt(d)
    return {"wf": n(scale_f), "wh": n(scale_h), "wg": n(scale_g), "basis": None}


def simulate_linear(model: str, init: dict, sigma2: float, rho: float, lr: float, n_steps: int,
                    record_every: int = 1, method: str = "gd", loss: str = "l2", batch: int = 64,
                    lam: float = 1.0, seed: int = 0) -> dict:
    """Train the linear network (numba kernels) and return its recorded spectra.

    ``method="gd"``: steps on the expected gradient (lr → 0 is the gradient flow of the ODEs);
    ``method="sgd"``: minibatches of ``batch`` fresh samples (``loss`` "l2" or "cosine").
    Returns ``{"t", "steps_done", "diverged", **spectra(...)}`` plus the final weights."""
    from .kernels import linear_ssl as k

    _check_model(model)
    _check(sigma2, rho, lam)
    if method not in ("gd", "sgd"):
        raise DynamicsError(f"method {method!r}: choose 'gd' (expected gradient) or 'sgd'")
    if loss not in ("l2", "cosine"):
        raise DynamicsError(f"loss {loss!r}: choose 'l2' or 'cosine'")
    if method == "gd" and loss != "l2":
        raise DynamicsError("the expected gradient is closed-form only for the L2 loss; use "
                            "method='sgd' for the cosine loss")
    if not (lr > 0) or n_steps < 0 or record_every < 1:
        raise DynamicsError(f"need lr > 0, n_steps >= 0, record_every >= 1; got {lr}, "
                            f"{n_steps}, {record_every}")
    lam_eff = lam if model == "phinet" else 0.0
    missing = {"wf", "wh", "wg"} - set(init)
    if missing:
        raise DynamicsError(f"init needs weights {sorted(missing)} (use init_aligned or "
                            "init_random)")
    with single_thread_blas():
        res = _train(k, model, init, sigma2, rho, lr, n_steps, record_every, method, loss,
                     batch, lam_eff, seed)
    wf, wh, wg, rwf, rwh, rwg, done = res
    n_rec = rwf.shape[0]
    out = {"t": np.arange(n_rec) * record_every * lr, "steps_done": done,
           "diverged": done < n_steps, "wf": wf, "wh": wh, "wg": wg}
    out.update(spectra(rwf, rwh, rwg, basis=init.get("basis")))
    return out


def single_thread_blas():
    """Context manager limiting BLAS to one thread (threadpoolctl, when installed).

    The kernels multiply small matrices thousands of times; a multi-threaded OpenBLAS spends far
    more time waking its threads than computing (measured 0.02 s vs 0.0003 s per 256×64 @ 64×64
    product on a loaded 2-core machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _train(k, model, init, sigma2, rho, lr, n_steps, record_every, method, loss, batch,
           lam_eff, seed):
    try:
        return _train_kernel(k, model, init, sigma2, rho, lr, n_steps, record_every, method,
                             loss, batch, lam_eff, seed)
    except ValueError as exc:       # shape/size problems found by the checked kernel wrappers
        raise DynamicsError(str(exc)) from None


def _train_kernel(k, model, init, sigma2, rho, lr, n_steps, record_every, method, loss, batch,
                  lam_eff, seed):
    if method == "gd":
        res = k.train_gd(model, init["wf"], init["wh"], init["wg"], 1.0 + sigma2, lam_eff, rho,
                         lr, n_steps, record_every)
    else:
        res = k.train_sgd(model, loss, init["wf"], init["wh"], init["wg"], math.sqrt(sigma2),
                          lam_eff, rho, lr, n_steps, batch, seed, record_every)
    return res


def spectra(rec_wf, rec_wh, rec_wg, basis=None) -> dict:
    """Mode eigenvalues from weight snapshots (arrays (T, d, d)).

    With ``basis`` U (aligned initialisation): p_h = diag(UᵀW_hU), p_g = diag(UᵀW_gU),
    s = diag(UᵀFU), F = W_fW_fᵀ (the modes keep their identity).  Without: U = eigenvectors of F
    at each snapshot (s sorted decreasing), and p_h, p_g are the Rayleigh quotients vᵀWv.
    Also returns the deviations from the reduction's assumptions: ``asym`` = ‖W_h − W_hᵀ‖/‖W_h‖,
    ``comm`` = ‖W_hF − FW_h‖/(‖W_h‖‖F‖), ``offdiag`` = off-diagonal mass of UᵀW_hU."""
    T, d, _ = rec_wf.shape
    p = np.full((T, d), np.nan)
    pg = np.full((T, d), np.nan)
    s = np.full((T, d), np.nan)
    asym = np.full(T, np.nan)
    comm = np.full(T, np.nan)
    off = np.full(T, np.nan)
    for i in range(T):
        wf, wh, wg = rec_wf[i], rec_wh[i], rec_wg[i]
        if not (np.isfinite(wf).all() and np.isfinite(wh).all()):
            continue
        F = wf @ wf.T
        if basis is not None:
            U = basis
        else:
            ev, U = np.linalg.eigh(F)
            U = U[:, ::-1]
        Hh = U.T @ wh @ U
        p[i] = np.diag(Hh)
        pg[i] = np.diag(U.T @ wg @ U)
        s[i] = np.diag(U.T @ F @ U)
        nh = np.linalg.norm(wh)
        if nh > 0:
            asym[i] = np.linalg.norm(wh - wh.T) / nh
            off[i] = np.linalg.norm(Hh - np.diag(np.diag(Hh))) / nh
            nf = np.linalg.norm(F)
            if nf > 0:
                comm[i] = np.linalg.norm(wh @ F - F @ wh) / (nh * nf)
    return {"p": p, "pg": pg, "s": s, "asym": asym, "comm": comm, "offdiag": off}
