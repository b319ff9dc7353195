"""A Hebbian hidden layer trained without labels, then a linear read-out (Krotov & Hopfield 2019,
"Unsupervised learning by competing hidden units", PNAS; Journé, Rodriguez, Guo & Moraitis 2023,
"Hebbian deep learning without feedback", ICLR -- SoftHebb).

Part ``fmnist``: one dense layer of ``units`` = 2000 neurons on Fashion-MNIST, trained by SoftHebb
(soft winner-take-all with soft anti-Hebbian losers) or by Krotov–Hopfield competition, no labels;
then the protocol's linear probe (multinomial logistic regression, standardised features, L-BFGS)
on its thresholded, squared responses relu(Wᵀx − μ)².  Compared with random features of the same
width and the same non-linearity, the Hebbian arms' initial weights without learning
(``data_init``: 2000 training images as templates -- the control that shows what learning adds),
raw pixels, and the same 784-2000-10 network trained end to end by backprop.  Every arm's probe L2
strength is picked on a held-out split (the last ``val_n`` = 10,000 training images) and the test
set is scored once; SoftHebb's t = 30, its 3 epochs and the read-out power 2 were picked on that
split too.  Goal of the issue: Hebbian ≥ 88 %, above random features and pixels (logistic
regression on pixels ≈ 84 %).  Measured with the defaults (seed 0, test set): SoftHebb 88.7 %,
random features 87.5 % (87.5 % with power 1 as well), Krotov–Hopfield 87.5 %, pixels 84.5 %,
backprop 89.6 % (probe on its hidden layer) -- goal met (seed 1: SoftHebb 88.7 %, random 87.8 %).

Part ``cifar``: the protocol's ``conv3`` encoder (../shared/PROTOCOL.md) trained block by block,
one pass over ``cifar_hebb_images`` = 10,000 unlabelled images per block, then the protocol's
evaluation (:func:`bioplausible.protocol.protocol_eval`: per-block 2x2 and GAP probes, few-label
probes, kNN), next to the random-init ``conv3`` (same seed) and raw pixels with the very same
evaluation.  Each block's rule (Krotov-Hopfield ranked competition, ``krotov_hopfield``, or
SoftHebb, ``softhebb``; both two-factor) learns on ZCA-whitened receptive fields of that block's
own input (``conv_whiten=zca``: mean and covariance of its patches, measured once per block on
``conv_white_images`` images, whitening by eigendecomposition), and the learned weights are
folded back into the layer (``w = Z v / s``, ``b = −wᵀm``, :func:`~bioplausible.rules.hebbian.fold_whitening`):
the encoder is unchanged (conv + bias, ReLU, max-pool, GAP codes) and computes on the normalised
images the potential ``vᵀZ(x − m)`` the rule used (times a gain; the rule's own copy of each
patch is also divided by its length); each unit's threshold sits at its mean drive and its gain
gives it unit-variance drive (``conv_gain=var``).  Arm ``no_learning`` is the same pipeline
without a single rule step (whitening + gain + bias alone: the control that shows what the rule
adds).  Hyperparameters (whitening on, gain ``var``; SoftHebb t = 100 on every block, η = 0.05
constant; KH rank 2, Δ = 0.2, step 0.05 decaying linearly) were chosen on a held-out split of the training set
(probes fitted on 10,000 training images, scored on 5,000 others), never on the test set.
Goal of the issue: the Hebbian ``conv3`` beats the random-init ``conv3`` on every probe
(SoftHebb reports 80.3 % with a much larger network).  Measured with the defaults,
``--set cifar_n_train=20000`` (probes on 20,000 training images, all 10,000 test images, seed 0):
SoftHebb beats random init on 9/9 probes (block-3 2x2 probe 62.3 vs 55.2 %, GAP 55.1 vs 48.9 %,
kNN 47.5 vs 39.2 %), Krotov-Hopfield 9/9 too, the no-learning control 4/9 (goal met; also at
seed 1 and with all 50,000 probe images, see experiments/results/hebbian.md).  The earlier settings (SoftHebb on raw patches with a
homeostatic bias) are ``--set conv_whiten=none --set conv_t=20``.
CLAPP and supervised numbers are cited from experiments/README.md, not re-run.

    python experiments/hebbian_classifier.py --out runs/hebb-clf                 # both parts
    python experiments/hebbian_classifier.py --set part=fmnist --out runs/hebb-fm
    python experiments/hebbian_classifier.py --set part=cifar --set cifar_n_train=20000 --out runs/hebb-cifar
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

DEFAULTS = {
    "part": "both",                 # fmnist | cifar | both
    # ---- Fashion-MNIST dense layer
    "fm_arms": ["pixels", "random", "data_init", "softhebb", "krotov_hopfield", "backprop"],
    "units": 2000,
    "init": "data",                 # initial Hebbian weights: data (training inputs) | random
    "fm_epochs": 3,                 # Hebbian epochs (no labels)
    "batch": 100,
    "softhebb_lr": 0.1,             # with average=unit: fraction of the way to its inputs' mean
    "softhebb_t": 30.0,             # inverse temperature (inputs and weights have unit length)
    "softhebb_average": "unit",     # unit | batch (see rules.hebbian.softhebb)
    "kh_lr": 0.04,                  # largest weight step per batch (decays linearly to 0)
    "kh_p": 3.0,
    "kh_rank": 2,
    "kh_delta": 0.4,
    "feature_power": 2.0,           # read-out features relu(u - mean u)^power (picked on held-out)
    "bp_epochs": 5,                 # the backprop arm (Adam 1e-3, batch 256)
    "probe_iter": 300,              # L-BFGS iterations of every probe
    "probe_l2": [1e-3, 3e-3, 1e-2],  # L2 grid; each arm's l2 is picked on the held-out split
    "val_n": 10000,                 # held-out split: the last val_n training images
    "n_train": 0,                   # Fashion-MNIST subset sizes (0 = all)
    "n_test": 0,
    # ---- CIFAR-10 conv3
    "cifar_arms": ["pixels", "random", "no_learning", "softhebb", "krotov_hopfield"],
    "cifar_n_train": 0,             # training images for the probes (0 = all 50,000)
    "cifar_n_test": 0,
    "cifar_hebb_images": 10000,     # images the Hebbian rule sees per block (1 pass)
    "conv_whiten": "zca",           # zca: the rule learns on whitened patches, folded into w, b | none
    "conv_zca_eps": 1e-2,           # whitening regulariser, relative to the largest eigenvalue
    "conv_white_images": 2000,      # images (64 patches each) for each block's patch statistics
    "conv_gain": "var",             # zca only: each unit's drive has unit std (var) | unit-norm w (norm)
    "conv_lr": 0.05,                # SoftHebb (average=unit: fraction of the way per step)
    "conv_t": [100.0],              # SoftHebb inverse temperature: one value, or one per block
    "conv_lr_decay": "none",        # SoftHebb: none | linear (to 0 over each block's pass)
    "conv_kh_lr": 0.05,             # Krotov-Hopfield: largest weight step per step (rule space)
    "conv_kh_p": 2.0,
    "conv_kh_rank": 2,
    "conv_kh_delta": 0.2,
    "conv_kh_lr_decay": "linear",   # Krotov-Hopfield: linear | none
    "conv_bias_target": 0.5,        # conv_whiten=none only: homeostatic bias, target activity
    "conv_max_rows": 4096,          # patches per step per block
    "conv_average": "unit",         # SoftHebb update per unit activity (see rules.hebbian.softhebb)
    "conv_batch": 32,
    "conv_train_blocks": 3,         # blocks trained by the rule (1: block 1 only, 2-3 stay random)
    "seed": 0,
    "progress": True,
}
SMOKE = {"units": 64, "n_train": 1000, "n_test": 500, "bp_epochs": 1, "probe_iter": 50, "val_n": 200,
         "fm_epochs": 1,
         "cifar_n_train": 500, "cifar_n_test": 300, "cifar_hebb_images": 256, "conv_max_rows": 512,
         "conv_white_images": 64, "cifar_arms": ["random", "krotov_hopfield"]}
CHOICES = {"part": ["fmnist", "cifar", "both"],
           "fm_arms": ["pixels", "random", "data_init", "softhebb", "krotov_hopfield", "backprop"],
           "init": ["data", "random"], "conv_average": ["unit", "batch"],
           "softhebb_average": ["unit", "batch"],
           "cifar_arms": ["pixels", "random", "no_learning", "softhebb", "krotov_hopfield"],
           "conv_whiten": ["zca", "none"], "conv_gain": ["var", "norm"],
           "conv_lr_decay": ["linear", "none"], "conv_kh_lr_decay": ["linear", "none"]}

#: arms of the CIFAR part that build the encoder with the block-wise rule
HEBB_ARMS = ("softhebb", "krotov_hopfield", "no_learning")

#: CLAPP and supervised rows on CIFAR-10 cited from experiments/README.md (seeds 0-2, 2 epochs,
#: full training set) -- not re-run here.
CITED_CIFAR = [
    {"arm": "CLAPP (cited, README, 3 seeds)", "probe2x2_b3": 0.525, "probe_gap_b3": 0.460,
     "few10_b3": 0.245, "few100_b3": 0.336, "knn_b3": 0.373},
    {"arm": "random init (cited, README, 3 seeds)", "probe2x2_b3": 0.579, "probe_gap_b3": 0.497,
     "few10_b3": 0.278, "few100_b3": 0.385, "knn_b3": 0.418},
    {"arm": "InfoNCE backprop (cited, README, 3 seeds)", "probe2x2_b3": 0.578, "probe_gap_b3": 0.511,
     "few10_b3": 0.291, "few100_b3": 0.396, "knn_b3": 0.447},
]


# ------------------------------------------------------------------------------- dense part
def unit_rows(X):
    """Divisive normalisation of each input pattern to unit length."""
    return (X / (np.linalg.norm(X, axis=1, keepdims=True) + 1e-8)).astype(np.float32)


def init_dense(X: np.ndarray, cfg: dict, rng, kind: str) -> np.ndarray:
    """Initial weights: ``random`` (Gaussian directions) or ``data`` (``units`` training inputs
    drawn at random, as prototypes -- the usual start of competitive learning, so that every unit
    can win some inputs; with random directions in 784 dimensions a few units win everything)."""
    from bioplausible.rules import hebbian as H

    if kind == "data":
        return H.normalize_columns(X[rng.choice(len(X), cfg["units"], replace=False)].T.copy())
    return H.normalize_columns(rng.normal(size=(X.shape[1], cfg["units"])).astype(np.float32))


def train_dense(rule: str, X: np.ndarray, cfg: dict, rng) -> np.ndarray:
    """Unsupervised training of a (n_in, units) layer by ``rule`` on rows of X (no labels)."""
    from bioplausible.rules import hebbian as H

    W = init_dense(X, cfg, rng, cfg["init"])
    B, E = cfg["batch"], cfg["fm_epochs"]
    n_steps = E * (len(X) // B)
    step = 0
    for ep in range(E):
        perm = rng.permutation(len(X))
        for i in range(0, len(X) - B + 1, B):
            xb = X[perm[i:i + B]]
            frac = 1 - step / max(n_steps, 1)
            if rule == "softhebb":
                W += H.softhebb(W, xb, cfg["softhebb_lr"] * frac + 1e-6, temperature=cfg["softhebb_t"],
                                anti_hebbian=True, average=cfg["softhebb_average"])
            elif rule == "krotov_hopfield":
                W += H.krotov_hopfield(W, xb, cfg["kh_lr"] * frac + 1e-6, p=cfg["kh_p"],
                                       rank=cfg["kh_rank"], delta=cfg["kh_delta"])
            else:
                raise ValueError(rule)
            step += 1
    return W


def dense_features(W, mu, X, power):
    """Read-out features: ``relu(u − μ)^power`` with ``u = Wᵀx`` and ``μ`` each unit's mean drive
    on the training set (a firing threshold; the same for every arm)."""
    F = np.maximum(X @ W - mu, 0)
    return F ** power if power != 1 else F


def probe_selected(ftr, ytr, fte, yte, l2_grid, val_n: int, max_iter: int) -> dict:
    """Linear probe whose L2 strength is chosen on a held-out split of the training set.

    For every ``l2`` in ``l2_grid`` a probe is fitted on all but the last ``val_n`` training
    rows and scored on those ``val_n`` rows; the best ``l2`` (the smaller one on ties) is then
    refitted on the whole training set and scored once on the test set.  The test set plays no
    part in the choice.  With a single ``l2`` (or ``val_n = 0``) there is no selection.
    """
    from bioplausible.errors import UserError
    from bioplausible.evaluate import linear_probe

    grid = sorted(float(v) for v in np.atleast_1d(l2_grid))
    val = {}
    if len(grid) > 1 and val_n > 0:
        if not 0 < val_n < len(ftr) // 2:
            raise UserError(f"val_n = {val_n} must be between 1 and half the training set "
                            f"({len(ftr) // 2}); lower it with --set val_n=...")
        for l2 in grid:
            pr = linear_probe(ftr[:-val_n], ytr[:-val_n], ftr[-val_n:], ytr[-val_n:], l2=l2,
                              max_iter=max_iter)
            val[l2] = pr["test_acc"]
        best = max(grid, key=lambda l2: (val[l2], -l2))
    else:
        best = grid[0]
    pr = linear_probe(ftr, ytr, fte, yte, l2=best, max_iter=max_iter)
    return {**pr, "l2": best, "val_acc": val.get(best, float("nan")), "val_by_l2": val}


def run_fmnist(cfg, out, rows):
    from bioplausible import encoders
    from bioplausible.data_prep import prepare
    from bioplausible.evaluate import representation_report
    from bioplausible.experiment import open_run
    from bioplausible.rules import hebbian as H

    data = prepare("fashion_mnist", n_train=cfg["n_train"], n_test=cfg["n_test"], seed=cfg["seed"])
    Xtr = data.x_train.reshape(len(data.x_train), -1)
    Xte = data.x_test.reshape(len(data.x_test), -1)
    Utr, Ute = unit_rows(Xtr), unit_rows(Xte)
    for arm in cfg["fm_arms"]:
        rng = np.random.default_rng([cfg["seed"], 5])
        name = f"fmnist-{arm}-s{cfg['seed']}"
        run_file = open_run(out, name, dict(cfg, arm=arm), cfg["seed"])
        t0 = time.time()
        extra = {}
        with run_file:
            if arm == "pixels":
                ftr, fte = Xtr, Xte
                t_train = 0.0
            elif arm == "backprop":
                from bioplausible.rules.backprop import Supervised
                from bioplausible.trainer import fit

                recipe = {"name": "mlp", "block": [{"layers": [
                    {"type": "flatten"}, {"type": "dense", "out": cfg["units"]}, {"type": "relu"}]}]}
                enc = encoders.build(recipe, data.in_shape, seed=cfg["seed"])
                rule = Supervised(enc, data.n_classes, lr=1e-3, seed=cfg["seed"])
                last = fit(rule, enc, data.x_train, data.y_train, epochs=cfg["bp_epochs"],
                           batch_size=256, seed=cfg["seed"], run=run_file, progress=cfg["progress"])
                t_train = time.time() - t0
                pred = rule.predict(enc, data.x_test)
                extra["end_to_end_test"] = float((pred == data.y_test).mean())
                ftr, fte = enc.outputs(data.x_train)[-1], enc.outputs(data.x_test)[-1]
            else:
                if arm == "random":
                    W = init_dense(Utr, cfg, rng, "random")
                elif arm == "data_init":            # control: the data-drawn start, no learning
                    W = init_dense(Utr, cfg, rng, "data")
                else:
                    W = train_dense(arm, Utr, cfg, rng)
                t_train = time.time() - t0
                mu = (Utr @ W).mean(0)
                ftr = dense_features(W, mu, Utr, cfg["feature_power"])
                fte = dense_features(W, mu, Ute, cfg["feature_power"])
                run_file.save_result("W", W)
                rep = representation_report(ftr[:5000])
                extra["eff_rank"] = float(rep["effective_rank"])
                extra["dead"] = float(rep["dead_fraction"])
            t1 = time.time()
            pr = probe_selected(ftr, data.y_train, fte, data.y_test, cfg["probe_l2"], cfg["val_n"],
                                cfg["probe_iter"])
            for l2, acc in pr["val_by_l2"].items():
                run_file.log("val", l2=l2, val_acc=acc)
            row = {"part": "fmnist", "arm": arm, "width": ftr.shape[1], "probe_test": pr["test_acc"],
                   "probe_train": pr["train_acc"], "probe_val": pr["val_acc"], "l2": pr["l2"],
                   "probe_iter": pr["n_iter"],
                   "train_s": round(t_train, 1), "probe_s": round(time.time() - t1, 1), **extra}
            run_file.save_result("row", {k: v for k, v in row.items() if isinstance(v, (int, float))})
        rows.append(row)
        if arm in ("softhebb", "krotov_hopfield"):
            _draw_dense_filters(W, out / f"fmnist_{arm}_filters.png", arm)


def _draw_dense_filters(W, path, arm, n=100):
    from bioplausible.plots import _plt, _save

    plt = _plt()
    fig, axes = plt.subplots(10, 10, figsize=(7, 7.3), dpi=100)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= W.shape[1]:
            continue
        f = W[:, k].reshape(28, 28)
        m = np.abs(f).max() + 1e-12
        ax.imshow(f, cmap="bwr", vmin=-m, vmax=m)
    fig.suptitle(f"Fashion-MNIST, {arm}: first 100 of {W.shape[1]} units (no labels)", fontsize=9)
    _save(plt, fig, path)


# ------------------------------------------------------------------------------- conv part
def _cos_init(enc, w0):
    """Median |cos| between each unit's weight vector and its random start, per block."""
    out = []
    for b, w in zip(enc.blocks, w0):
        v = b.layers[0].params["w"].reshape(w.shape)
        c = np.abs((v * w).sum(0)) / (np.linalg.norm(v, axis=0) * np.linalg.norm(w, axis=0) + 1e-12)
        out.append(float(np.median(c)))
    return out


def _draw_conv1(w, path, arm="softhebb"):
    """The first block's 3x3 RGB filters (each scaled to [0, 1] around grey)."""
    from bioplausible.plots import _plt, _save

    plt = _plt()
    c_out = w.shape[-1]
    fig, axes = plt.subplots(4, int(np.ceil(c_out / 4)), figsize=(c_out / 4 * 0.7, 3), dpi=100)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < c_out:
            f = w[..., k] if w.shape[2] == 3 else np.repeat(w[..., :1, k], 3, axis=2)
            ax.imshow(0.5 + 0.5 * f / (np.abs(f).max() + 1e-12), interpolation="nearest")
    fig.suptitle(f"CIFAR-10, {arm} conv3 block 1 (no labels)", fontsize=8)
    _save(plt, fig, path)



def _block_t(cfg, bi: int, n_blocks: int = 3) -> float:
    """SoftHebb's inverse temperature for block ``bi`` (``conv_t``: one value or one per block)."""
    from bioplausible.errors import UserError

    t = list(np.atleast_1d(cfg["conv_t"]))
    if len(t) not in (1, n_blocks):
        raise UserError(f"conv_t needs 1 or {n_blocks} values (one per block), got {len(t)}: "
                        "e.g. --set conv_t=20,100,100")
    return float(t[0] if len(t) == 1 else t[bi])


def make_conv_rule(enc, cfg, rule: str):
    """The block-wise rule of the CIFAR part, configured by the ``conv_*`` keys."""
    from bioplausible.rules.hebbian import HebbianBlockwise

    white = cfg["conv_whiten"] == "zca"
    common = dict(max_rows=cfg["conv_max_rows"], whiten=white, zca_eps=cfg["conv_zca_eps"],
                  gain=cfg["conv_gain"], bias_target=None if white else cfg["conv_bias_target"])
    if rule == "krotov_hopfield":
        return HebbianBlockwise(enc, "krotov_hopfield", lr=cfg["conv_kh_lr"], p=cfg["conv_kh_p"],
                                rank=cfg["conv_kh_rank"], delta=cfg["conv_kh_delta"], **common)
    return HebbianBlockwise(enc, "softhebb", lr=cfg["conv_lr"], temperature=_block_t(cfg, 0),
                            anti_hebbian=True, average=cfg["conv_average"], **common)


def train_conv3_hebbian(enc, x, cfg, log=None, rule_name: str = "softhebb", learn: bool = True):
    """A Hebbian rule on conv3, block after block, one pass over ``x`` per block (learning rate
    decaying linearly to 0 over the pass with ``conv_lr_decay`` / ``conv_kh_lr_decay`` = linear).
    With ``conv_whiten=zca`` each block first measures its input's patch statistics on
    ``conv_white_images`` of ``x``.  ``learn=False`` builds the same encoder without a single rule
    step (the no-learning control).  Only the first ``conv_train_blocks`` blocks are trained; the
    others are put back to their exact random init."""
    from bioplausible.errors import UserError

    n_train = cfg["conv_train_blocks"]
    if not 1 <= n_train <= len(enc.blocks):
        raise UserError(f"conv_train_blocks must be 1..{len(enc.blocks)}, got {n_train}")
    init = enc.state_dict()
    rule = make_conv_rule(enc, cfg, rule_name)
    base_lr = rule.lr
    decay = cfg["conv_kh_lr_decay"] if rule.rule == "krotov_hopfield" else cfg["conv_lr_decay"]
    B = cfg["conv_batch"]
    n_steps = max(len(x) // B, 1)
    for bi in range(len(enc.blocks)):
        if bi >= n_train:
            continue
        rule.active = [bi]
        if rule.rule == "softhebb":
            rule.kw["temperature"] = _block_t(cfg, bi, len(enc.blocks))
        if rule.whiten:
            rule.fit_whitening(enc, bi, x[:cfg["conv_white_images"]],
                               rng=np.random.default_rng([cfg["seed"], 3, bi]))
        if not learn:
            continue
        for s, i in enumerate(range(0, len(x) - B + 1, B)):
            if decay == "linear":
                rule.lr = base_lr * (1 - s / n_steps) + 1e-8
            m = rule.step(enc, {"x": x[i:i + B], "y": None,
                                "rng": np.random.default_rng([cfg["seed"], 9, bi, s])})
            if log is not None and s % 20 == 0:
                log(bi, s, m)
    if n_train < len(enc.blocks):      # untrained blocks: exactly their random init
        state = enc.state_dict()
        state.update({k: v for k, v in init.items() if int(k.split("/")[0][5:]) >= n_train})
        enc.load_state_dict(state)
    return rule


def run_cifar(cfg, out, rows):
    from bioplausible import encoders
    from bioplausible.data_prep import prepare
    from bioplausible.experiment import open_run
    from bioplausible.protocol import pixel_eval, protocol_eval

    data = prepare("cifar10", n_train=cfg["cifar_n_train"], n_test=cfg["cifar_n_test"], seed=cfg["seed"])
    keys = ["probe2x2_b1", "probe_gap_b1", "probe2x2_b2", "probe_gap_b2", "probe2x2_b3",
            "probe_gap_b3", "few10_b3", "few100_b3", "knn_b3"]
    results = {}
    for arm in cfg["cifar_arms"]:
        name = f"cifar-{arm}-s{cfg['seed']}"
        run_file = open_run(out, name, dict(cfg, arm=arm), cfg["seed"])
        t0 = time.time()
        with run_file:
            if arm == "pixels":
                res = pixel_eval(data, seed=cfg["seed"])
                res = {"probe2x2_b3": res["probe_pixels"], "knn_b3": res["knn_pixels"]}
                t_train = 0.0
            else:
                enc = encoders.build("conv3", data.in_shape, seed=cfg["seed"])
                w0 = [b.layers[0].params["w"].reshape(-1, b.layers[0].params["w"].shape[-1]).copy()
                      for b in enc.blocks]
                if arm in HEBB_ARMS:
                    rng = np.random.default_rng([cfg["seed"], 8])
                    idx = rng.permutation(len(data.x_train))[:cfg["cifar_hebb_images"]]
                    rule_name = "softhebb" if arm == "no_learning" else arm
                    train_conv3_hebbian(enc, data.x_train[idx], cfg, rule_name=rule_name,
                                        learn=arm != "no_learning",
                                        log=lambda bi, s, m: run_file.log(
                                            "train", block=bi + 1, step=s, **m))
                    run_file.checkpoint(enc.state_dict(), {"done": 1})
                    if arm != "no_learning":
                        _draw_conv1(enc.blocks[0].layers[0].params["w"],
                                    out / f"cifar_{arm}_block1_filters.png", arm)
                t_train = time.time() - t0
                cos = _cos_init(enc, w0)
                res = protocol_eval(enc, data, seed=cfg["seed"])
                res["cos_init"] = cos
            run_file.save_result("eval", {k: v for k, v in res.items() if k != "cos_init"})
        results[arm] = res
        rows.append({"part": "cifar", "arm": arm, **{k: res.get(k) for k in keys},
                     "cos_init": "/".join(f"{c:.2f}" for c in res.get("cos_init", [])),
                     "eff_rank": "/".join(f"{res[f'eff_rank_b{l}']:.0f}" for l in (1, 2, 3)
                                          if f"eff_rank_b{l}" in res),
                     "train_s": round(t_train, 1), "eval_s": round(time.time() - t0 - t_train, 1)})
    if "random" in results:
        for arm in [a for a in results if a in HEBB_ARMS]:
            wins = [k for k in keys if results[arm].get(k, np.nan) > results["random"].get(k, np.nan)]
            for r in rows:
                if r.get("part") == "cifar" and r.get("arm") == arm:
                    r["beats_random_on"] = f"{len(wins)}/{len(keys)}"
        from bioplausible.plots import bars
        bars([{"arm": a, **{k: results[a].get(k, np.nan) for k in keys}} for a in results],
             keys, "arm", out / "cifar_probes.png", title="CIFAR-10 conv3: protocol probes")
    for c in CITED_CIFAR:
        rows.append({"part": "cifar", **c})


def run(cfg: dict, out: Path, resume: Path | None = None) -> list[dict]:
    rows: list[dict] = []
    if cfg["part"] in ("fmnist", "both"):
        run_fmnist(cfg, out, rows)
    if cfg["part"] in ("cifar", "both"):
        run_cifar(cfg, out, rows)
    return rows


if __name__ == "__main__":
    from bioplausible.experiment import main_for

    raise SystemExit(main_for(__name__))
