"""Receptive fields from natural images with Hebbian rules (Olshausen & Field 1996; Bell &
Sejnowski 1997; Hyvärinen & Oja 1998; Law & Cooper 1994 for BCM).

Learns 16x16 filters from ZCA-whitened patches of natural photographs (scikit-image's bundled
photographs; ``--set olshausen=PATH/IMAGES.mat`` reads Olshausen's whitened images instead) with
GHA (Oja's subspace/PCA rule), nonlinear Hebbian ICA, BCM, SoftHebb and hard winner-take-all
competitive learning; draws each filter bank; fits a 2-D Gabor function to every filter
(``scipy.optimize.curve_fit``) and classifies it as *localised-oriented* (R² ≥ 0.7, envelope much
smaller than the patch, a carrier) or *global*.  The defaults give (seed 0, 64 units): ICA 72 %
and SoftHebb 72 % localised-oriented, BCM 66 %, competitive 67 %, GHA 0 % (its filters are the
principal components: PCA-like, global) -- see experiments/README.md.

``preset=course`` follows the course miniproject on visual receptive fields: BCM with a sliding
threshold, rows (units) of W renormalised, learned non-negative anti-Hebbian lateral inhibition,
16x16 patches, and its exercises: fixed vs sliding threshold, a too-large learning rate, and faces
(scikit-image's LFW subset) vs natural images.

    python experiments/receptive_fields.py --out runs/rf
    python experiments/receptive_fields.py --set preset=course --out runs/rf-course
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

DEFAULTS = {
    "preset": "rules",          # rules: every rule on natural images; course: the BCM miniproject
    "rules": ["gha", "ica", "bcm", "softhebb", "competitive"],
    "n_patches": 60000,
    "size": 16,
    "units": 64,
    "n_pc": 64,                 # principal components kept by the whitening (of size² = 256)
    "epochs": 20,
    "olshausen": "",            # path to Olshausen's IMAGES.mat (optional)
    "softhebb_t": 20.0,         # SoftHebb's inverse temperature
    "tau_theta": 20.0,          # BCM threshold time constant (in mini-batches)
    "r2_min": 0.7,
    "fit_restarts": 8,          # starting points of each Gabor fit (phases x widths)
    "seed": 0,
    "progress": True,
}
SMOKE = {"n_patches": 2000, "units": 9, "epochs": 1, "size": 8, "n_pc": 20, "fit_restarts": 1}
CHOICES = {"preset": ["rules", "course"],
           "rules": ["gha", "oja", "ica", "bcm", "softhebb", "competitive"]}

# learning rate and mini-batch per rule (the whitened patches have unit variance per direction).
# ICA: large batches, because its signal (the non-Gaussian part of ⟨x g(y)⟩) is small next to the
# sampling noise of a batch; and η·E[g'(y)] < 1, because with σ = −1 a larger step reverses the
# normalised update (it then climbs the contrast it should descend).
LR = {"gha": 0.05, "oja": 0.05, "ica": 1.0, "bcm": 0.02, "softhebb": 0.1, "competitive": 0.05}
BATCH = {"gha": 100, "oja": 100, "ica": 1000, "bcm": 100, "softhebb": 100, "competitive": 100}


# ------------------------------------------------------------------------------- data
class Patches:
    """Natural-image patches, raw (DC removed) and whitened in the span of the top principal
    components.

    ``raw`` (n, size²): each patch minus its mean, from images standardised to unit variance;
    ``white`` = ``raw @ M`` with ``M = E_k D_k^{-1/2} E_kᵀ`` (ZCA restricted to the ``n_pc``
    largest-variance directions: whitening that keeps patches image-like, with the high-frequency
    noise directions dropped -- the low-pass of Olshausen & Field 1996 / Hyvärinen et al. 2009);
    ``z = white @ E_k`` (n, n_pc): the same whitened patches in principal-component coordinates,
    which is what the rules learn from -- a weight vector ``w`` on ``z`` is the pixel filter
    ``E_k w`` on the whitened patch.  (Learning on the 256-pixel ``white`` directly fails for rules
    that minimise a contrast such as ICA's E[log cosh y]: the 156 zero-variance directions give a
    silent, "perfectly sparse" output that the weights drift into.)
    """

    def __init__(self, raw: np.ndarray, n_pc: int):
        raw = raw - raw.mean(0)
        lam, E = np.linalg.eigh(np.cov(raw.T.astype(np.float64)))
        lam, E = lam[::-1], E[:, ::-1]
        k = min(n_pc, raw.shape[1])
        self.raw = (raw / np.sqrt(lam[0])).astype(np.float32)       # top variance = 1
        self.basis = E[:, :k]
        self.M = (E[:, :k] / np.sqrt(lam[:k])) @ E[:, :k].T
        self.white = (raw @ self.M).astype(np.float32)
        self.z = (self.white @ self.basis).astype(np.float32)          # the same in PC coordinates
        self.eig = lam

    def project(self, W):
        return (self.basis @ (self.basis.T @ W)).astype(np.float32)


def load_patches(cfg, rng, images=None) -> Patches:
    from bioplausible import datasets

    if images is None and cfg["olshausen"]:
        images = list(datasets.load_olshausen_images(cfg["olshausen"]))
    raw = datasets.natural_image_patches(cfg["n_patches"], cfg["size"], rng=rng, whiten=False,
                                         images=images)
    return Patches(raw, cfg["n_pc"])


# ------------------------------------------------------------------------------- Gabor fit
def gabor(coords, amp, x0, y0, theta, sx, sy, freq, phase, offset):
    """2-D Gabor: a Gaussian envelope (widths sx along the carrier, sy across) times a cosine
    carrier of spatial frequency ``freq`` (cycles/pixel) at orientation ``theta``."""
    x, y = coords
    xr = (x - x0) * np.cos(theta) + (y - y0) * np.sin(theta)
    yr = -(x - x0) * np.sin(theta) + (y - y0) * np.cos(theta)
    env = np.exp(-0.5 * (xr ** 2 / sx ** 2 + yr ** 2 / sy ** 2))
    return amp * env * np.cos(2 * np.pi * freq * xr + phase) + offset


def fit_gabor(f: np.ndarray, restarts: int = 8) -> dict:
    """Least-squares Gabor fit of one square filter; returns parameters and R².

    Initial guesses: orientation and frequency from the peak of the filter's power spectrum,
    centre from the peak of its smoothed energy; a few phases are tried, the best fit is kept.
    """
    from scipy.ndimage import gaussian_filter
    from scipy.optimize import curve_fit

    s = f.shape[0]
    f = np.asarray(f, np.float64)
    f = f / (np.abs(f).max() + 1e-12)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    coords = np.vstack([xx.ravel(), yy.ravel()])
    z = f.ravel()
    sst = ((z - z.mean()) ** 2).sum()
    if sst <= 0:
        return {"r2": 0.0, "sx": np.inf, "sy": np.inf, "freq": 0.0, "theta": 0.0, "x0": s / 2, "y0": s / 2}
    P = np.abs(np.fft.fft2(f)) ** 2
    P[0, 0] = 0
    ky, kx = np.unravel_index(np.argmax(P), P.shape)
    fy = (ky if ky <= s // 2 else ky - s) / s
    fx = (kx if kx <= s // 2 else kx - s) / s
    freq0 = max(np.hypot(fx, fy), 0.5 / s)
    theta0 = np.arctan2(fy, fx)
    energy = gaussian_filter(f ** 2, sigma=1.5)
    y0, x0 = np.unravel_index(np.argmax(energy), energy.shape)
    lo = [-np.inf, -2, -2, -np.inf, 0.5, 0.5, 0.0, -np.inf, -1.0]
    hi = [np.inf, s + 1, s + 1, np.inf, 2.0 * s, 2.0 * s, 0.5, np.inf, 1.0]
    best = None
    starts = [(ph, sg) for sg in (s / 8, s / 4) for ph in (0.0, np.pi / 2, np.pi, -np.pi / 2)]
    for phase, sig in starts[:max(1, restarts)]:
        p0 = [1.0, x0, y0, theta0, sig, sig, freq0, phase, 0.0]
        try:
            p, _ = curve_fit(gabor, coords, z, p0=p0, bounds=(lo, hi), maxfev=2000)
        except (RuntimeError, ValueError):
            continue
        r2 = 1 - ((z - gabor(coords, *p)) ** 2).sum() / sst
        if best is None or r2 > best[0]:
            best = (r2, p)
    if best is None:
        return {"r2": 0.0, "sx": np.inf, "sy": np.inf, "freq": 0.0, "theta": 0.0, "x0": s / 2, "y0": s / 2}
    r2, p = best
    return {"r2": float(r2), "amp": p[0], "x0": p[1], "y0": p[2], "theta": float(p[3] % np.pi),
            "sx": float(p[4]), "sy": float(p[5]), "freq": float(p[6]), "phase": p[7]}


def classify_filter(fit: dict, size: int, r2_min: float = 0.7) -> str:
    """``localised-oriented``: good Gabor fit (R² ≥ r2_min), envelope narrow across the stripes
    (σ_x ≤ size/4) and at most half the patch along them (σ_y ≤ size/2, so the ±2σ extent of an
    elongated edge detector still fits in the patch), centre inside the patch, and a carrier (at
    least ~ half a cycle across the envelope, f·σ_x ≥ 0.08);
    otherwise ``global`` (PCA-like, spread over the whole patch) or ``unfit`` (R² below r2_min)."""
    if fit["r2"] < r2_min:
        return "unfit"
    inside = -0.5 <= fit["x0"] <= size - 0.5 and -0.5 <= fit["y0"] <= size - 0.5
    local = fit["sx"] <= size / 4 and fit["sy"] <= size / 2 and inside
    oriented = fit["freq"] * fit["sx"] >= 0.08
    return "localised-oriented" if (local and oriented) else "global"


def localisation_index(f: np.ndarray) -> float:
    """Fraction of a filter's energy inside its best (size/2 x size/2) window: 0.25 for energy
    spread evenly (a global, Fourier-like filter), near 1 for a localised one.  Model-free
    companion of the Gabor classification."""
    e = np.asarray(f, np.float64) ** 2
    s = e.shape[0]
    w = max(1, s // 2)
    c = np.pad(e.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    win = c[w:, w:] - c[:-w, w:] - c[w:, :-w] + c[:-w, :-w]
    return float(win.max() / (e.sum() + 1e-12))


def distinct_filters(W: np.ndarray, max_cos: float = 0.9) -> int:
    """How many filters differ: greedy count of filters whose |cos| with every kept one is below
    ``max_cos`` (units that learned the same feature count once)."""
    Wn = W / (np.linalg.norm(W, axis=0, keepdims=True) + 1e-12)
    C = np.abs(Wn.T @ Wn)
    kept: list[int] = []
    for j in range(W.shape[1]):
        if all(C[j, i] < max_cos for i in kept):
            kept.append(j)
    return len(kept)


def analyse(W: np.ndarray, size: int, r2_min: float, restarts: int = 8) -> dict:
    fits = [fit_gabor(W[:, k].reshape(size, size), restarts) for k in range(W.shape[1])]
    kinds = [classify_filter(f, size, r2_min) for f in fits]
    Wn = W / (np.linalg.norm(W, axis=0, keepdims=True) + 1e-12)
    C = np.abs(Wn.T @ Wn)
    off = C[~np.eye(len(C), dtype=bool)]
    loc = [localisation_index(W[:, k].reshape(size, size)) for k in range(W.shape[1])]
    return {"frac_local_oriented": float(np.mean([k == "localised-oriented" for k in kinds])),
            "median_loc_index": float(np.median(loc)),
            "distinct": distinct_filters(W),
            "frac_global": float(np.mean([k == "global" for k in kinds])),
            "frac_r2_ok": float(np.mean([f["r2"] >= r2_min for f in fits])),
            "median_r2": float(np.median([f["r2"] for f in fits])),
            "mean_abs_cos": float(off.mean()) if off.size else 0.0,
            "fits": fits, "kinds": kinds}


# ------------------------------------------------------------------------------- training
def train_rule(rule: str, P: Patches, cfg: dict, rng, lr=None, sliding=True, lateral=True,
               log=None) -> dict:
    """Learn ``cfg['units']`` filters with one rule; returns W and diagnostics.

    Oja/GHA learn from the raw patches (PCA of natural images: they find its principal
    components); every other rule from the whitened patches (on which second-order statistics
    carry no information, so what they find comes from higher-order structure)."""
    from bioplausible.rules import hebbian as H

    pca = rule in ("gha", "oja")
    X = P.raw if pca else P.z
    d = X.shape[1]
    K = min(cfg["units"], d)
    lr = LR[rule] if lr is None else lr
    W = H.normalize_columns(rng.normal(size=(d, K)).astype(np.float32))
    if rule == "ica":
        W = H.symmetric_decorrelation(W)
    if rule == "competitive":
        W = X[rng.choice(len(X), K, replace=False)].T.copy()
    theta = np.full(K, 1.0, np.float32)
    V = np.zeros((K, K), np.float32)
    B = min(BATCH[rule], len(X))
    steps = 0
    info = {"diverged": ""}
    try:
        for ep in range(cfg["epochs"]):
            eta = lr * (1 - 0.9 * ep / cfg["epochs"])     # decays to 10 % over the run
            perm = rng.permutation(len(X))
            for i in range(0, len(X) - B + 1, B):
                xb = X[perm[i:i + B]]
                if rule in ("gha", "oja"):
                    W += (H.sanger if rule == "gha" else H.oja)(W, xb, eta)
                elif rule == "ica":       # natural-image sources are sparse: σ = −1 (min E log cosh)
                    W += H.nonlinear_ica(W, xb, eta, sign=-1.0)
                elif rule == "softhebb":
                    W += H.softhebb(W, xb, eta, temperature=cfg["softhebb_t"],
                                    anti_hebbian=True)
                elif rule == "competitive":
                    W += H.competitive(W, xb, eta)
                elif rule == "bcm":
                    U = xb @ W
                    Y = H.lateral_response(U, V, steps=10) if lateral else np.maximum(U, 0)
                    dW, dth = H.bcm(W, xb, theta, eta, tau_theta=cfg["tau_theta"], Y=Y,
                                    sliding=sliding)
                    W = H.normalize_columns(W + dW)      # rows of W (our columns) renormalised
                    theta += dth
                    if lateral:
                        V += H.anti_hebbian_lateral(V, Y, eta * 5, target=0.0)
                steps += 1
            if log is not None:
                log(ep, W)
    except H.HebbianDivergence as e:
        info["diverged"] = str(e)
    if pca:         # agreement with numpy's principal components of the same patches
        n = min(K, P.basis.shape[1])
        Wn = W[:, :n] / (np.linalg.norm(W[:, :n], axis=0) + 1e-12)
        info["pca_match"] = float(np.mean(np.abs(np.einsum("ik,ik->k", Wn, P.basis[:, :n])) > 0.9))
    info.update(W=W if pca else (P.basis @ W).astype(np.float32), theta=theta, V=V, steps=steps, K=K)
    return info


# ------------------------------------------------------------------------------- figures
def filter_grid(W, size, out_png, title, kinds=None):
    from bioplausible.plots import _plt, _save

    plt = _plt()
    K = W.shape[1]
    cols = int(np.ceil(np.sqrt(K)))
    rows = int(np.ceil(K / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8 + 0.5), dpi=110)
    axes = np.atleast_1d(axes).ravel()
    for k, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= K:
            ax.axis("off")
            continue
        f = W[:, k].reshape(size, size)
        m = np.abs(f).max() + 1e-12
        ax.imshow(f, cmap="gray", vmin=-m, vmax=m, interpolation="nearest")
        if kinds is not None:
            color = {"localised-oriented": "tab:green", "global": "tab:red"}.get(kinds[k], "tab:gray")
            for s in ax.spines.values():
                s.set_edgecolor(color)
                s.set_linewidth(2)
    fig.suptitle(title, fontsize=8)
    return _save(plt, fig, out_png)


# ------------------------------------------------------------------------------- run
def _row(rule, label, res, an, t, cfg):
    return {"rule": rule, "variant": label, "units": res["K"],
            "local_oriented": an["frac_local_oriented"], "global": an["frac_global"],
            "R2>=0.7": an["frac_r2_ok"], "median_R2": an["median_r2"],
            "loc_index": an["median_loc_index"],
            "PCA_match": res.get("pca_match", ""),
            "mean|cos|": an["mean_abs_cos"], "distinct": an["distinct"],
            "diverged": "yes" if res["diverged"] else "",
            "time_s": t}


def run(cfg: dict, out: Path, resume: Path | None = None) -> list[dict]:
    from bioplausible.experiment import open_run
    from bioplausible.plots import bars

    rng = np.random.default_rng(cfg["seed"])
    size = cfg["size"]
    X = load_patches(cfg, rng)
    rows = []
    name = f"receptive_fields-{cfg['preset']}-s{cfg['seed']}"
    run_file = open_run(out, name, cfg, cfg["seed"], "", resume)
    with run_file:
        if cfg["preset"] == "rules":
            variants = [(r, r, {}) for r in cfg["rules"]]
            data = {"natural": X}
        else:
            from skimage.data import lfw_subset

            faces = lfw_subset()[:100]          # the first 100 are faces (25x25)
            fsize = min(size, faces.shape[1])
            data = {"natural": X}
            if fsize == size:
                data["faces"] = load_patches(cfg, np.random.default_rng([cfg["seed"], 1]),
                                             images=list(faces))
            variants = [("bcm", "sliding θ (course)", {}),
                        ("bcm", "fixed θ", {"sliding": False}),
                        ("bcm", "no lateral inhibition", {"lateral": False}),
                        ("bcm", "lr x50 (too large)", {"lr": LR["bcm"] * 50})]
            if "faces" in data:
                variants.append(("bcm", "faces (LFW)", {"data": "faces"}))
        for rule, label, kw in variants:
            kw = dict(kw)
            Xd = data[kw.pop("data", "natural")]
            t = time.time()
            res = train_rule(rule, Xd, cfg, np.random.default_rng([cfg["seed"], len(rows)]), **kw)
            t = time.time() - t
            an = analyse(res["W"], size, cfg["r2_min"], cfg["fit_restarts"])
            row = _row(rule, label, res, an, t, cfg)
            slug = "".join(c if c.isalnum() else "_" for c in f"{rule}_{label}").strip("_")
            fig = filter_grid(res["W"], size, out / f"filters_{slug}.png",
                              f"{rule} — {label}: {an['frac_local_oriented']:.0%} localised-oriented "
                              f"(green), red = global, grey = R²<{cfg['r2_min']}", an["kinds"])
            row["figure"] = fig.name
            rows.append(row)
            run_file.save_result(slug, {k: v for k, v in row.items() if isinstance(v, (int, float))})
            run_file.save_result(f"{slug}_W", res["W"])
            run_file.save_result(f"{slug}_r2", np.array([f["r2"] for f in an["fits"]]))
            if res["diverged"]:
                run_file.save_result(f"{slug}_diverged", res["diverged"])
            run_file.log("rule", index=len(rows), local_oriented=an["frac_local_oriented"],
                         median_r2=an["median_r2"], time_s=t)
    bars([dict(r, label=f"{r['rule']} {r['variant']}" if r['rule'] != r['variant'] else r['rule'])
          for r in rows], ["local_oriented", "global", "R2>=0.7"], "label",
         out / "gabor_classes.png", title="Filters classified by Gabor fit", ylabel="fraction")
    return rows


if __name__ == "__main__":
    from bioplausible.experiment import main_for

    raise SystemExit(main_for(__name__))
