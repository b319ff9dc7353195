"""Batch size and number of negatives: InfoNCE (backprop) versus CLAPP-s (local) on Fashion-MNIST.

The lectures' point about contrastive learning: InfoNCE (SimCLR, Chen et al. 2020) contrasts each
view with the 2N − 2 other views of its batch, so its negatives come with the batch size N and it
is known to want large batches; CLAPP (Illing, Ventura, Bellec & Gerstner, NeurIPS 2021) is a
hinge loss on one positive and K negatives per sample, with a purely local update, so the number
of negatives is a free parameter that need not grow with the batch.  This experiment measures both
effects on the same ``conv3`` encoder (protocol of ../shared/PROTOCOL.md, same initial weights per
seed): accuracy of the block-3 linear probes and kNN after training, against the batch size
(both rules) and against the number of negatives per sample (CLAPP-s: K; InfoNCE: 2N − 2), with
the random-init encoder as the floor.

One *point* (``run``) trains one arm at one setting (rules built by ``local_vs_global.make_rule``); the
study runs every point through the sweep machinery (``bioplausible.sweep``: local processes or
Dask, resumable, mean ± sd over seeds)::

    python experiments/batch_negatives.py --out runs/batch-neg --seeds 2 --workers 2
    python experiments/batch_negatives.py --smoke --out /tmp/bn            # seconds
    bioplausible run batch_negatives --set arm=clapp_s --set negatives=8   # one point
    bioplausible sweep batch_negatives --grid arm=infonce,clapp_s --grid batch_size=64,256 --seeds 3

Default study (``STUDY``): batch size 32, 64, 128, 256 for InfoNCE and CLAPP-s (K = 1), K = 1, 4,
16 negatives for CLAPP-s at batch 64, and the random-init encoder; 1 epoch on 10,000 training
images, probes fitted on those 10,000 and tested on the 10,000 test images.  Fashion-MNIST's
random-init ``conv3`` is a strong floor (2x2 probe ~88 % on the full set, PROTOCOL.md), so
expect differences of a few points at most; experiments/README.md has the numbers this gave.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULTS = {
    "dataset": "fashion_mnist",
    "model": "conv3",
    "arm": "infonce",          # infonce (SimCLR, backprop) | clapp_s (local) | clapp | random
    "batch_size": 64,
    "negatives": 1,            # CLAPP negatives per sample K (InfoNCE: 2N - 2, set by the batch)
    "epochs": 1,
    "lr": 1e-3,                # InfoNCE (Adam)
    "clapp_lr": 1e-3,          # CLAPP (Adam on the explicit local updates)
    "clapp_positives": "grid", # grid (CPC-style patches, the CLAPP default) | views
    "temperature": 0.2,
    "seed": 0,
    "n_train": 10000,          # 0 = all 60,000
    "n_test": 0,               # 0 = all 10,000
    "max_batches": 0,
    "final_eval": "quick",     # quick: block-3 probes + kNN; full: the whole protocol
    "progress": True,
}
SMOKE = {"n_train": 512, "n_test": 256, "max_batches": 2}
CHOICES = {"dataset": ["fashion_mnist", "mnist", "cifar10"],
           "arm": ["infonce", "clapp_s", "clapp", "random"],
           "clapp_positives": ["grid", "views"], "final_eval": ["quick", "full"]}

# the study: a union of grids (a point in two grids runs once)
STUDY = [
    {"arm": ["infonce", "clapp_s"], "batch_size": [32, 64, 128, 256]},
    {"arm": ["clapp_s"], "negatives": [1, 4, 16]},
    {"arm": ["random"]},
]
STUDY_SMOKE = [
    {"arm": ["infonce", "clapp_s"], "batch_size": [32, 64]},
    {"arm": ["clapp_s"], "negatives": [4]},
    {"arm": ["random"]},
]
METRICS = ["probe2x2_b3", "probe_gap_b3", "knn_b3"]


def negatives_per_sample(cfg: dict) -> int:
    """Negatives each sample is contrasted with: InfoNCE 2N − 2 (every other view in the batch),
    CLAPP-s K, CLAPP 1 (a positive or a negative per sample), random-init 0."""
    return {"infonce": 2 * cfg["batch_size"] - 2, "clapp_s": cfg["negatives"],
            "clapp": 1}.get(cfg["arm"], 0)


def run(cfg: dict, out: Path, resume: Path | None = None) -> list[dict]:
    """One point: train arm ``cfg['arm']`` at this batch size / number of negatives (rules built
    by ``local_vs_global.make_rule``, so every setting not swept is the comparison's), then
    evaluate the frozen encoder with the protocol's block-3 probes and kNN.  One HDF5 run file in
    ``out``; an existing unfinished one is resumed from its checkpoint, a finished one reused."""
    from bioplausible import encoders
    from bioplausible.data_prep import prepare
    from bioplausible.errors import UserError
    from bioplausible.experiment import load_experiment, open_run
    from bioplausible.protocol import protocol_eval
    from bioplausible.store import read_run
    from bioplausible.trainer import fit

    if cfg["negatives"] < 1:
        raise UserError(f"negatives must be >= 1, got {cfg['negatives']}")
    if cfg["batch_size"] < 2:
        raise UserError(f"batch_size must be >= 2 (InfoNCE needs a negative), got {cfg['batch_size']}")
    out, seed, arm = Path(out), cfg["seed"], cfg["arm"]
    name = f"{arm}-b{cfg['batch_size']}-k{cfg['negatives']}-{cfg['dataset']}-s{seed}"
    if resume is None and (out / f"{name}.h5").exists():
        resume = out / f"{name}.h5"
    head = {"arm": arm, "batch_size": cfg["batch_size"],
            "negatives_per_sample": negatives_per_sample(cfg)}
    if resume is not None:
        info = read_run(resume)
        if info["results"].get("done"):               # finished earlier: never redo
            return [{**head, **{k: float(v) for k, v in info["results"].items() if k != "done"},
                     "run": str(resume)}]
    lvg = load_experiment("local_vs_global")
    data = prepare(cfg["dataset"], n_train=cfg["n_train"], n_test=cfg["n_test"], seed=0)
    enc = encoders.build(cfg["model"], data.in_shape, seed=seed)
    rule_cfg = dict(cfg, clapp_negatives=cfg["negatives"])
    run_cfg = {k: v for k, v in cfg.items() if k != "progress"}
    row = dict(head)
    with open_run(out, name, run_cfg, seed, enc.recipe_text, resume) as run_file:
        if arm != "random":
            rule = lvg.make_rule(arm, enc, data, rule_cfg, seed)
            last = fit(rule, enc, data.x_train, data.y_train, epochs=cfg["epochs"],
                       batch_size=cfg["batch_size"], seed=seed, run=run_file,
                       progress=cfg["progress"], max_batches=cfg["max_batches"] or None)
            row.update(train_loss=last["loss"], samples_per_s=last["samples_per_s"],
                       peak_mem_mb=last["peak_mem_mb"])
        res = protocol_eval(enc, data, seed=seed, quick=cfg["final_eval"] == "quick",
                            quick_train=len(data.x_train))
        row.update(res)
        for k, v in row.items():
            if k != "arm":
                run_file.save_result(k, float(v))
        run_file.save_result("done", 1.0)
        row["run"] = str(run_file.path)
    return [row]


# ------------------------------------------------------------------------------ the study

def lecture_figure(out: Path, metric: str = "probe2x2_b3") -> Path:
    """Two panels: ``metric`` vs batch size (InfoNCE, CLAPP-s with K = 1) and vs negatives per
    sample (InfoNCE: 2N − 2 across batch sizes; CLAPP-s: K at batch 64); random init dashed."""
    import numpy as np

    from bioplausible.plots import _plt, _save
    from bioplausible.sweep import load_manifest

    plt = _plt()
    from matplotlib.ticker import ScalarFormatter

    man = load_manifest(out)
    recs = []
    for e in man["points"]:
        if e["state"] == "done":
            for r in e["rows"]:
                if r.get(metric) is not None:
                    recs.append({**e["params"], **r})

    def stats(rs, key):
        xs = sorted({r[key] for r in rs})
        m = [np.mean([r[metric] for r in rs if r[key] == x]) for x in xs]
        s = [np.std([r[metric] for r in rs if r[key] == x], ddof=1)
             if sum(r[key] == x for r in rs) > 1 else 0.0 for x in xs]
        return xs, 100 * np.array(m), 100 * np.array(s)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    base_k = man["base"]["negatives"]
    base_b = man["base"]["batch_size"]
    style = {"infonce": ("C0", "InfoNCE (backprop)"), "clapp_s": ("C3", "CLAPP-s (local)"),
             "clapp": ("C1", "CLAPP (local)")}
    rand = [r[metric] for r in recs if r["arm"] == "random"]
    for arm, (color, label) in style.items():
        by_batch = [r for r in recs if r["arm"] == arm and r["negatives"] == base_k]
        if arm == "infonce":
            by_batch = [r for r in recs if r["arm"] == arm]
        if by_batch:
            xs, m, s = stats(by_batch, "batch_size")
            axes[0].errorbar(xs, m, yerr=s, marker="o", capsize=3, color=color,
                             label=label + (f", K = {base_k}" if arm != "infonce" else ""))
        if arm == "infonce":
            by_neg = [r for r in recs if r["arm"] == arm]
        else:
            by_neg = [r for r in recs if r["arm"] == arm and r["batch_size"] == base_b]
        if by_neg:
            xs, m, s = stats(by_neg, "negatives_per_sample")
            axes[1].errorbar(xs, m, yerr=s, marker="o", capsize=3, color=color,
                             label=label + (" (2N−2)" if arm == "infonce" else f" (K, N = {base_b})"))
    for ax in axes:
        if rand:
            ax.axhline(100 * np.mean(rand), color="gray", ls="--", label="random init")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_xlabel("batch size N")
    axes[1].set_xlabel("negatives per sample")
    n = man["base"]["n_train"] or "all"
    fig.suptitle(f"{man['base']['dataset']}: {metric}, {man['base']['epochs']} epoch(s) on {n} "
                 "images, mean ± sd over seeds", fontsize=10)
    return _save(plt, fig, Path(out) / f"lecture_{metric}.png")


def study(out: Path, seeds=2, workers=None, scheduler=None, sets=(), smoke=False,
          grids=None) -> dict:
    """Run the study through ``bioplausible.sweep`` and aggregate it (table + figures)."""
    from bioplausible.sweep import report, run_sweep

    grids = grids or (STUDY_SMOKE if smoke else STUDY)
    summary = run_sweep(__file__, grids, seeds=seeds, sets=sets, out=out, workers=workers,
                        scheduler=scheduler, smoke=smoke)
    rep = report(out, metric="probe2x2_b3", columns=[m for m in METRICS + ["negatives_per_sample"]])
    figs = [lecture_figure(out, m) for m in ("probe2x2_b3", "knn_b3")]
    print(f"lecture figures: {', '.join(map(str, figs))}")
    return {"summary": summary, "report": rep, "figures": figs}


def main(argv=None) -> int:
    from bioplausible.experiment import guarded

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/batch-negatives"))
    p.add_argument("--seeds", default="2", help="seeds per point: a count or a list (default 2)")
    p.add_argument("--workers", type=int, default=None, help="parallel workers (default: cores)")
    p.add_argument("--scheduler", default=None, help="Dask: 'local' or tcp://host:port")
    p.add_argument("--smoke", action="store_true", help="a tiny study of the same code path")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fixed override for every point")
    p.add_argument("--no-progress", action="store_true", help="(accepted; workers never show bars)")
    args = p.parse_args(argv)
    seeds = 1 if args.smoke and args.seeds == "2" else args.seeds

    def go():
        res = study(args.out, seeds=seeds, workers=args.workers, scheduler=args.scheduler,
                    sets=args.set, smoke=args.smoke)
        return 1 if res["summary"]["failed"] else 0
    return guarded(go)


if __name__ == "__main__":
    sys.exit(main())
