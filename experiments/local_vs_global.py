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
row stays the true random init.
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
    "init": "random",           # starting encoder of the trained arms: random | softhebb (see below)
    "hebb_images": 10000,       # init=softhebb / arm softhebb: unlabelled images the rule sees per block
    "temperature": 0.2,
    "n_train": 0,
    "n_test": 0,
    "max_batches": 0,
    "curve_train": 10000,       # training images used by the per-epoch (learning-curve) probe
    "final_eval": "full",       # full protocol after training, or "quick" (block-3 probes only)
    "progress": True,
}
SMOKE = {"n_train": 512, "n_test": 256, "epochs": 1, "max_batches": 2, "batch_size": 64,
         "curve_train": 256, "preset": "full"}
CHOICES = {"dataset": ["cifar10", "fashion_mnist", "mnist"], "preset": ["quick", "full"],
           "arms": [""] + ALL_ARMS, "clapp_positives": ["views", "grid"],
           "final_eval": ["full", "quick"], "init": ["random", "softhebb"]}

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
        return CLAPP(enc, vcfg, variant=arm, norm=norm, positives=cfg["clapp_positives"], lr=cfg["clapp_lr"],
                     negatives=cfg["clapp_negatives"], code_norm=cfg.get("clapp_code_norm", False),
                     decorrelate=cfg.get("clapp_decorrelate", 0.0), seed=seed)
    raise ValueError(arm)


def hebbian_init(enc, data, cfg: dict, seed: int):
    """Train ``enc`` block by block with SoftHebb on whitened patches (the condition under which the
    Hebbian conv3 beats random init on every probe: ``hebbian_classifier.py``, part ``cifar``, with
    its defaults), on the first ``hebb_images`` training images, without labels."""
    from bioplausible.experiment import load_experiment

    hc = load_experiment("hebbian_classifier")
    hcfg = dict(hc.DEFAULTS, seed=seed, progress=False)
    hc.train_conv3_hebbian(enc, data.x_train[:cfg["hebb_images"]], hcfg)
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
                                quick_train=len(data.x_train))
            row.update(res)
        for k in ("samples_per_s", "peak_mem_mb", "train_min"):
            if k in row:
                res[k] = row[k]
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


def write_markdown(table: list[dict], path: Path, n_blocks: int):
    cols = ["arm", "seeds"] + [k.format(b) for b in range(1, n_blocks + 1) for k in BLOCK_KEYS] + \
        ["few10_b3", "few100_b3", "knn_b3", "samples_per_s", "peak_mem_mb"]
    cols = [c.replace("b3", f"b{n_blocks}") for c in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
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


def run(cfg: dict, out: Path, resume: Path | None = None) -> list[dict]:
    from bioplausible.data_prep import prepare
    from bioplausible.encoders import load_recipe
    from bioplausible.plots import bars, learning_curves

    arms = [a for a in cfg["arms"] if a] or (QUICK_ARMS if cfg["preset"] == "quick" else FULL_ARMS)
    data = prepare(cfg["dataset"], n_train=cfg["n_train"], n_test=cfg["n_test"], seed=0)
    rows = []
    for seed in cfg["seeds"]:
        for arm in arms:
            rows.append(run_arm(arm, seed, data, cfg, out))
            print(f"{arm} (seed {seed}): " + ", ".join(
                f"{k} {100 * rows[-1][k]:.1f}%" for k in SUMMARY_KEYS if k in rows[-1]))
    table = aggregate(rows)
    n_blocks = len(load_recipe(cfg["model"])[0]["block"])
    md = write_markdown(table, out / "table.md", n_blocks)
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
    print(f"table: {md}\nfigures: {out}/probe_per_block.png, learning_curves.png, speed.png, memory.png")
    short = []
    for t in table:
        r = {"arm": t["arm"], "seeds": t["seeds"]}
        for k in SUMMARY_KEYS + ["samples_per_s"]:
            k2 = k.replace("b3", f"b{n_blocks}")
            if k2 in t:
                r[k2] = t[k2]
        short.append(r)
    return short


if __name__ == "__main__":
    from bioplausible.experiment import main_for

    raise SystemExit(main_for(__name__))
