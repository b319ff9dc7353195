"""Local (CLAPP, no backprop) versus global (backprop) learning on the same encoder.

Reproduces the comparison of Illing, Ventura, Bellec & Gerstner, "Local plasticity rules can learn
deep representations using self-supervised contrastive predictions" (NeurIPS 2021) under the
project's protocol (../shared/PROTOCOL.md): every arm trains the same ``conv3`` encoder from the
same initial weights for the same number of epochs, then the frozen encoder is evaluated with
linear probes per block (2x2-pooled maps and GAP codes), few-label probes, and kNN; random-init
and raw-pixel rows are always in the table.

Arms: random, pixels, supervised, clapp, clapp_s, infonce (SimCLR), hinge_cpc (CLAPP loss at the
top block, end-to-end backprop), greedy_infomax (layer-wise InfoNCE), simsiam, byol; and softhebb
(the encoder after block-wise SoftHebb on whitened patches, no further training).
``--set init=softhebb`` starts every trained arm from that Hebbian encoder (same seed, same
weights) instead of the random init -- a fully local pipeline when the arm is CLAPP; the random
row stays the true random init.  The best all-local condition found so far (chosen on a held-out
split; 3 seeds on the test set in experiments/README.md): ``--set init=softhebb --set arms=clapp_s
--set clapp_positives=views --set clapp_negatives=16 --set clapp_lr=3e-4 --set clapp_pred_scale=1
--set clapp_block_lr=0,1,1`` -- CIFAR-10 block-3 GAP probe 57.4 % (random init 49.7 %, InfoNCE
from the same Hebbian start 61.0 %).  Adding ``--set clapp_head=256 --set clapp_softmax_tau=2``
(CPC's softmax contrast over a rectified head instead of CLAPP's hinge; still block-local) gives
58.2 %.  Two epochs are the local arms' best case: they stop improving after about two, while
InfoNCE and Greedy InfoMax keep climbing (held-out, 4 epochs: experiments/README.md).

``--set holdout=N`` (the protocol's model selection): N images of the training split, drawn at
random once (a fixed draw, the same for every seed and arm -- not the last N: the stored CIFAR-10
training split is sorted by class), become the evaluation set and the test set is not used; every
arm trains, and every probe is fitted, on the other (50,000 − N) training images (or ``n_train``
of them), and all reported accuracies are on the N held-out training images.  The table says so
in its first line.  Use it to choose learning rates and conditions; report the chosen condition
without it (test set).
``--set final_eval=last`` evaluates only the last block after training, but fully: its 2x2 and
GAP probes, both few-label probes and kNN (the same numbers the full protocol gives for that
block) -- cheaper than ``full`` when selecting conditions.
The quick default runs random, clapp and infonce on CIFAR-10 (about 15 minutes on 2 cores);
``--set preset=full`` runs every arm.  See experiments/README.md for the numbers the defaults give
and the commands that reproduce them.

    bioplausible run local_vs_global --out runs/lvg
    bioplausible run local_vs_global --set preset=full --set seeds=0,1,2 --out runs/lvg-full
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

QUICK_ARMS = ["random", "clapp", "infonce"]
FULL_ARMS = ["random", "pixels", "supervised", "clapp", "clapp_s", "infonce", "hinge_cpc",
             "greedy_infomax", "simsiam", "byol"]
ALL_ARMS = FULL_ARMS + ["softhebb"]

DEFAULTS = {
    "dataset": "cifar10",
    "model": "conv3",
    "preset": "quick",          # quick: random, clapp, infonce; full: every arm
    "arms": [""],               # explicit list overrides the preset
    "seeds": [0],
    "epochs": 2,
    "batch_size": 256,
    "lr": 1e-3,                 # backprop arms (Adam)
    "clapp_lr": 1e-3,           # local arms (Adam on the explicit local updates)
    "clapp_positives": "grid",  # grid (CPC-style patch grid) | views (two augmented views)
    "clapp_negatives": 1,       # negatives per sample for clapp_s
    "clapp_code_norm": False,   # hinge on batch-standardised codes (fixed statistics)
    "clapp_decorrelate": 0.0,   # lateral decorrelation strength ν (0 = off)
    "clapp_block_lr": [1.0],    # per-block factor on clapp_lr (one value = every block; 0 freezes a block)
    "clapp_pred_scale": 0.1,    # initial W_pred / W_retro entries ~ N(0, (pred_scale)^2 / D)
    "clapp_weight_decay": 0.0,  # L2 on the local arms' weights (Adam, added to the update)
    "clapp_symmetric": False,   # clapp_s: every positive pair also predicts backwards (target -> context)
    "clapp_unit_norm": False,   # hinge on length-normalised codes z/|z| (score from the code's direction)
    "clapp_soft_gate": 0.0,     # β > 0: smoothed hinge, graded gate σ(β(1 − y·u)) (0 = the hinge's step)
    "clapp_pred_lr": 1.0,       # W_pred's learning rate relative to its block's (0 = fixed random predictor)
    "clapp_softmax_tau": 0.0,   # clapp_s: τ > 0 = CPC's softmax contrast over the K + 1 targets instead of the hinge
    "clapp_head": 0,            # clapp_s: n > 0 = the hinge compares relu(V z) (n units) instead of the code z
    "clapp_head_out": 0,        # with clapp_head: m > 0 = a linear output layer, g = V2 relu(V z) (m units)
    "init": "random",           # starting encoder of the trained arms: random | softhebb (see below)
    "hebb_images": 10000,       # init=softhebb / arm softhebb: unlabelled images the rule sees per block
    "hebb_pick": "random",      # which: random (a seeded draw over all classes) | first (the first
                                # hebb_images of the training split -- sorted by class for CIFAR-10;
                                # what session 4's numbers used)
    "hebb_t": [100.0],          # SoftHebb inverse temperature (one value or one per block)
    "hebb_lr_decay": "none",    # SoftHebb rate over its pass: none (constant) | linear (to 0)
    "temperature": 0.2,
    "n_train": 0,
    "n_test": 0,
    "max_batches": 0,
    "curve_train": 10000,       # training images used by the per-epoch (learning-curve) probe
    "final_eval": "full",       # full protocol after training | quick (last block: 2x2, GAP, kNN;
                                # no few-label probes) | last (last block, with the few-label probes)
    "holdout": 0,               # >0: evaluate on N held-out training images (a fixed random draw), not the test set
    "progress": True,
}
SMOKE = {"n_train": 512, "n_test": 256, "epochs": 1, "max_batches": 2, "batch_size": 64,
         "curve_train": 256, "preset": "full"}
CHOICES = {"dataset": ["cifar10", "fashion_mnist", "mnist"], "preset": ["quick", "full"],
           "arms": [""] + ALL_ARMS, "clapp_positives": ["views", "grid"],
           "final_eval": ["full", "quick", "last"],
           "hebb_pick": ["first", "random"], "init": ["random", "softhebb"],
           "hebb_lr_decay": ["none", "linear"]}

# config key -> CLAPP keyword (a run file written before a key existed gets the key's default)
CLAPP_OPTIONS = {"clapp_code_norm": "code_norm", "clapp_decorrelate": "decorrelate",
                 "clapp_block_lr": "block_lr", "clapp_pred_scale": "pred_scale",
                 "clapp_weight_decay": "weight_decay", "clapp_symmetric": "symmetric",
                 "clapp_unit_norm": "unit_norm", "clapp_soft_gate": "soft_gate",
                 "clapp_pred_lr": "pred_lr", "clapp_softmax_tau": "softmax_tau", "clapp_head": "head",
                 "clapp_head_out": "head_out"}

BLOCK_KEYS = ["probe2x2_b{}", "probe_gap_b{}"]
SUMMARY_KEYS = ["probe2x2_b3", "probe_gap_b3", "few10_b3", "few100_b3", "knn_b3"]


def make_rule(arm: str, enc, data, cfg: dict, seed: int):
    from bioplausible import views
    from bioplausible.rules.backprop import Supervised
    from bioplausible.rules.clapp import CLAPP
    from bioplausible.rules.ssl import EndToEnd, LayerWise

    vcfg = views.preset(cfg["dataset"])
    norm = (data.mean, data.std)
    if arm == "supervised":
        return Supervised(enc, data.n_classes, lr=cfg["lr"], seed=seed)
    if arm in ("infonce", "hinge_cpc", "simsiam", "byol"):
        return EndToEnd(enc, vcfg, loss=arm, norm=norm, lr=cfg["lr"], temperature=cfg["temperature"], seed=seed)
    if arm == "greedy_infomax":
        return LayerWise(enc, vcfg, norm=norm, lr=cfg["lr"], temperature=cfg["temperature"], seed=seed)
    if arm in ("clapp", "clapp_s"):
        opts = {kw: cfg.get(key, DEFAULTS[key]) for key, kw in CLAPP_OPTIONS.items()}
        return CLAPP(enc, vcfg, variant=arm, norm=norm, positives=cfg["clapp_positives"],
                     lr=cfg["clapp_lr"], negatives=cfg["clapp_negatives"], seed=seed, **opts)
    raise ValueError(arm)


def holdout_split(data, n_holdout: int, n_train: int = 0, n_eval: int = 0, seed: int = 0):
    """The protocol's held-out split: a copy of ``data`` (a ``data_prep.Prepared``) whose *test* set
    is ``n_holdout`` training images drawn at random (Generator seeded with ``[seed, 7]``; the
    stored training splits may be sorted by class, so never "the last N") and whose training set is
    the other training images in their original order (a random subset of ``n_train`` of them if
    ``n_train`` > 0).  ``n_eval`` > 0 keeps a random subset of the held-out images.  The real test
    set is dropped.  The per-channel normalisation stays the one of the whole training split
    (6 numbers, no labels)."""
    import dataclasses

    from bioplausible.errors import UserError

    n = len(data.x_train)
    if not 0 < n_holdout < n:
        raise UserError(f"holdout must be between 1 and {n - 1} (the training split has {n} "
                        f"images), got {n_holdout}")
    rng = np.random.default_rng([seed, 7])
    held = np.zeros(n, bool)
    held[rng.choice(n, n_holdout, replace=False)] = True
    xtr, ytr = data.x_train[~held], data.y_train[~held]
    xev, yev = data.x_train[held], data.y_train[held]
    if n_train and n_train < len(xtr):
        idx = np.sort(rng.choice(len(xtr), n_train, replace=False))
        xtr, ytr = xtr[idx], ytr[idx]
    if n_eval and n_eval < len(xev):
        idx = np.sort(rng.choice(len(xev), n_eval, replace=False))
        xev, yev = xev[idx], yev[idx]
    return dataclasses.replace(data, x_train=xtr, y_train=ytr, x_test=xev, y_test=yev,
                               source=f"{data.source} [held-out evaluation: {n_holdout} random "
                                      f"training images]")


def hebbian_init(enc, data, cfg: dict, seed: int):
    """Train ``enc`` block by block with SoftHebb on whitened patches (the condition under which the
    Hebbian conv3 beats random init on every probe: ``hebbian_classifier.py``, part ``cifar``, with
    its defaults), on ``hebb_images`` training images, without labels: the first ones
    (``hebb_pick=first``; CIFAR-10's stored training split is sorted by class, so the first 10,000
    are airplanes and cars only) or a random draw over the whole split in random order
    (``hebb_pick=random``, a permutation from a Generator seeded with ``[seed, 17]``: the rule's
    single pass and its whitening statistics, taken on the first images it gets, see every class)."""
    from bioplausible.experiment import load_experiment

    hc = load_experiment("hebbian_classifier")
    hcfg = dict(hc.DEFAULTS, seed=seed, progress=False)
    hcfg.update(conv_t=cfg.get("hebb_t", hcfg["conv_t"]),
                conv_lr_decay=cfg.get("hebb_lr_decay", hcfg["conv_lr_decay"]))
    n = min(cfg["hebb_images"], len(data.x_train))
    if cfg.get("hebb_pick", "random") == "random":
        x = data.x_train[np.random.default_rng([seed, 17]).permutation(len(data.x_train))[:n]]
    else:
        x = data.x_train[:n]
    hc.train_conv3_hebbian(enc, x, hcfg)
    return enc


def run_arm(arm: str, seed: int, data, cfg: dict, out: Path, resume: Path | None = None) -> dict:
    from bioplausible import encoders
    from bioplausible.experiment import open_run
    from bioplausible.protocol import pixel_eval, protocol_eval
    from bioplausible.store import read_run
    from bioplausible.trainer import fit

    enc = encoders.build(cfg["model"], data.in_shape, seed=seed)
    name = f"{arm}-{cfg['dataset']}-{cfg['model']}-s{seed}"
    run_cfg = {k: v for k, v in cfg.items() if k not in ("arms", "seeds", "progress")}
    run_cfg.update(arm=arm, seed=seed)
    path = out / f"{name}.h5"
    if path.exists():                      # re-running the same command continues, never redoes
        info = read_run(path)
        if info["results"].get("done"):
            print(f"{arm} (seed {seed}): finished earlier, reusing {path}")
            return {"arm": arm, "seed": seed, **{k: float(v) for k, v in info["results"].items()
                                                 if k != "done"}, "run": str(path)}
        print(f"{arm} (seed {seed}): resuming {path} from its last checkpoint")
        resume = path
    if arm == "softhebb" or (cfg["init"] == "softhebb" and arm not in ("random", "pixels")):
        hebbian_init(enc, data, cfg, seed)
    run = open_run(out, name, run_cfg, seed, enc.recipe_text, resume)
    row = {"arm": arm, "seed": seed}
    with run:
        if arm == "pixels":           # raw pixels stand in the block-3 columns of the table
            res = pixel_eval(data, seed=seed)
            n_blocks = len(enc.blocks)
            res = {f"probe2x2_b{n_blocks}": res["probe_pixels"], f"knn_b{n_blocks}": res["knn_pixels"]}
            row.update(res)
        else:
            if arm not in ("random", "softhebb"):
                rule = make_rule(arm, enc, data, cfg, seed)

                def curve(encoder, rule, epoch):
                    return protocol_eval(encoder, data, quick=True,
                                         quick_train=cfg["curve_train"], seed=seed, health=True)

                t0 = time.perf_counter()
                last = fit(rule, enc, data.x_train, data.y_train, epochs=cfg["epochs"],
                           batch_size=cfg["batch_size"], seed=seed, run=run, evaluate=curve,
                           progress=cfg["progress"], max_batches=cfg["max_batches"] or None)
                row.update(samples_per_s=last["samples_per_s"], peak_mem_mb=last["peak_mem_mb"],
                           train_min=(time.perf_counter() - t0) / 60)
            res = protocol_eval(enc, data, seed=seed, quick=cfg["final_eval"] == "quick",
                                quick_train=len(data.x_train), last_only=cfg["final_eval"] == "last")
            row.update(res)
        for k in ("samples_per_s", "peak_mem_mb", "train_min"):
            if k in row:
                res[k] = row[k]
        if cfg.get("holdout"):
            res["holdout"] = row["holdout"] = float(cfg["holdout"])
        for k, v in res.items():
            run.save_result(k, float(v))
        run.save_result("done", 1.0)
        row["run"] = str(run.path)
    return row


def aggregate(rows: list[dict]) -> list[dict]:
    """mean ± sd over seeds, one row per arm (in the order the arms ran)."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    table = []
    for arm in arms:
        rs = [r for r in rows if r["arm"] == arm]
        t = {"arm": arm, "seeds": len(rs)}
        keys = [k for k in rs[0] if k not in ("arm", "seed", "run") and not k.endswith("_sd")]
        for k in keys:
            vals = np.array([r.get(k, np.nan) for r in rs], float)
            t[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            if len(rs) > 1:
                t[k + "_sd"] = float(np.nanstd(vals, ddof=1))
        table.append(t)
    return table


def write_markdown(table: list[dict], path: Path, n_blocks: int, title: str = ""):
    cols = ["arm", "seeds"] + [k.format(b) for b in range(1, n_blocks + 1) for k in BLOCK_KEYS] + \
        ["few10_b3", "few100_b3", "knn_b3", "samples_per_s", "peak_mem_mb"]
    cols = [c.replace("b3", f"b{n_blocks}") for c in cols]
    lines = ([title, ""] if title else []) + ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for t in table:
        cells = []
        for c in cols:
            v = t.get(c)
            if isinstance(v, float) and np.isfinite(v):
                sd = t.get(c + "_sd")
                pct = c not in ("samples_per_s", "peak_mem_mb")
                s = f"{100 * v:.1f}" if pct else f"{v:.0f}"
                if sd is not None and np.isfinite(sd):
                    s += f" ± {100 * sd:.1f}" if pct else f" ± {sd:.0f}"
                cells.append(s)
            else:
                cells.append("" if v is None or isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")
    return path


def check_options(arms: list, data, cfg: dict) -> None:
    """Bad CLAPP or SoftHebb options fail before any arm runs (not after the arms before them)."""
    from bioplausible import encoders
    from bioplausible.errors import UserError

    enc = encoders.build(cfg["model"], data.in_shape, seed=0)
    for arm in arms:
        if arm in ("clapp", "clapp_s"):
            make_rule(arm, enc, data, cfg, 0)
    if cfg["init"] == "softhebb" or "softhebb" in arms:
        t = list(np.atleast_1d(cfg["hebb_t"]))
        n_blocks = len(enc.blocks)
        if len(t) not in (1, n_blocks) or not all(np.isfinite(v) and v > 0 for v in t):
            raise UserError(f"hebb_t needs 1 or {n_blocks} positive values (SoftHebb's inverse "
                            f"temperature, one per block), got {cfg.get('hebb_t')}")


def run(cfg: dict, out: Path, resume: Path | None = None) -> list[dict]:
    from bioplausible.data_prep import prepare
    from bioplausible.encoders import load_recipe
    from bioplausible.plots import bars, learning_curves

    arms = [a for a in cfg["arms"] if a] or (QUICK_ARMS if cfg["preset"] == "quick" else FULL_ARMS)
    holdout = cfg.get("holdout", 0)
    if holdout:
        full = prepare(cfg["dataset"], seed=0)
        n_all = len(full.x_train)
        data = holdout_split(full, holdout, cfg["n_train"], cfg["n_test"])
        del full
        where = (f"HELD-OUT evaluation (not the test set): trained and probes fitted on "
                 f"{len(data.x_train)} of {n_all - holdout} training images, accuracies on "
                 f"{len(data.x_test)} of {holdout} held-out training images (a fixed random draw)")
        print(where)
    else:
        data = prepare(cfg["dataset"], n_train=cfg["n_train"], n_test=cfg["n_test"], seed=0)
        where = ""
    check_options(arms, data, cfg)
    rows = []
    for seed in cfg["seeds"]:
        for arm in arms:
            rows.append(run_arm(arm, seed, data, cfg, out))
            print(f"{arm} (seed {seed}): " + ", ".join(
                f"{k} {100 * rows[-1][k]:.1f}%" for k in SUMMARY_KEYS if k in rows[-1]))
    table = aggregate(rows)
    n_blocks = len(load_recipe(cfg["model"])[0]["block"])
    md = write_markdown(table, out / "table.md", n_blocks, title=f"**{where}**" if where else "")
    keys = [k.format(b) for b in range(1, n_blocks + 1) for k in BLOCK_KEYS]
    bars([t for t in table if t["arm"] != "pixels"], keys, "arm", out / "probe_per_block.png",
         title=f"{cfg['dataset']}: linear probes per block")
    runs = [r["run"] for r in rows if r["arm"] not in ("random", "pixels", "softhebb")]
    if runs:
        learning_curves(runs, out / "learning_curves.png", metric=f"probe_gap_b{n_blocks}",
                        title=f"{cfg['dataset']}: block-{n_blocks} GAP probe (curve subset) vs epoch")
        trained = [t for t in table if "samples_per_s" in t]
        bars(trained, ["samples_per_s"], "arm", out / "speed.png", title="train samples/s",
             ylabel="samples/s")
        bars(trained, ["peak_mem_mb"], "arm", out / "memory.png", title="peak memory (MB)",
             ylabel="MB")
    if where:
        print(where)
    print(f"table: {md}\nfigures: {out}/probe_per_block.png, learning_curves.png, speed.png, memory.png")
    short = []
    for t in table:
        r = {"arm": t["arm"], "seeds": t["seeds"]}
        if holdout:
            r["eval"] = f"held-out {len(data.x_test)}"
        for k in SUMMARY_KEYS + ["samples_per_s"]:
            k2 = k.replace("b3", f"b{n_blocks}")
            if k2 in t:
                r[k2] = t[k2]
        short.append(r)
    return short


if __name__ == "__main__":
    from bioplausible.experiment import main_for

    raise SystemExit(main_for(__name__))
