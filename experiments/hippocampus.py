"""The hippocampal CA3–CA1 delay model: PhiNet vs SimSiam under weight decay, and sequences.

Reproduces, at small scale, the claims of the temporal prediction hypothesis (Chen, Zhang, Cameron
& Sejnowski, Neuron 2024) and of PhiNets (Ishikawa, Yamada, Bao & Takezawa, ICLR 2025: "PhiNets:
brain-inspired non-contrastive learning based on temporal prediction hypothesis"):

* ``sweep`` -- the ``conv3`` encoder (../shared/PROTOCOL.md) trained by SimSiam (``ssl.EndToEnd``),
  PhiNet by backprop and the CA3–CA1 model with local delta rules (``rules.phinet.PhiNet``) at
  several weight decays ρ (SGD, momentum 0.9, lr 0.01, L2 weight decay ρ on every parameter, batch
  64, the protocol's views), on Fashion-MNIST and CIFAR-10.  After training: GAP-code linear probe and kNN
  (k = 20, cosine) on block 3, and the collapse signal (std of the normalised block-3 code;
  effective rank); the random-init encoder is the floor.  PhiNet's claim: it keeps its accuracy
  at weight decays where SimSiam collapses.
* ``sequences`` -- ``hippocampus.CA3CA1`` on a simulated animal running laps on a linear and a
  circular track (place-tuned EC input) and on a sequence of 10 Fashion-MNIST images: the CA1
  mismatch falls during learning; after learning CA3's prediction correlates best with the code d
  steps later (CA3 leads EC); cued with the first element, CA3 alone replays the sequence in order
  (Spearman rank correlation ≥ 0.9 expected).

The defaults are small (subsets, few epochs) because the machine they were written on had two
shared cores; experiments/README.md states exactly what was run and what it gave.

    python experiments/hippocampus.py --out runs/hippocampus
    python experiments/hippocampus.py --set part=sequences --out runs/hippo-seq
    bioplausible run hippocampus --set datasets=cifar10 --set weight_decays=0,0.01,0.1
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ARMS = ["simsiam", "phinet", "ca3ca1_local"]

DEFAULTS = {
    "part": "all",                 # all | sweep | sequences
    # -- weight-decay sweep on conv3 --
    "datasets": ["fashion_mnist", "cifar10"],
    "arms": ARMS,
    "weight_decays": [0.0, 0.03, 0.1, 0.3, 1.0],
    "model": "conv3",
    "epochs": 3,
    "batch_size": 64,              # the protocol says 256; on a small subset 64 gives 4x the steps
    "optimizer": "sgd",            # SGD + momentum 0.9 with L2 decay: the setting of the theory
    "lr": 0.01,                    # (Adam 1e-3 / 3e-4 and SGD 0.05 collapsed every arm at ρ = 0)
    "ca1_weight": 1.0,
    "loss": "cosine",
    "n_train": 1024,               # training images (also the probe's training set)
    "n_test": 1000,
    "max_batches": 0,
    "seed": 0,
    # -- sequences --
    "tracks": ["linear", "circular", "images"],
    "laps": 60,
    "steps_per_lap": 50,
    "n_ec": 100,
    "n_ca3": 200,
    "place_width": 0.05,
    "ec_noise": 0.05,
    "delay": 1,
    "seq_lr": 0.01,
    "seq_lr_encoder": 0.0,         # 0: DG/CA3 a fixed random expansion
    "seq_encoder_lrs": [0.01],     # extra linear-track runs with a learning EC → DG/CA3, both modes
    "n_images": 10,                 # one Fashion-MNIST image per class, in class order (<= 10)
    "image_repeats": 300,
    "progress": True,
}
SMOKE = {"datasets": ["fashion_mnist"], "weight_decays": [0.1], "epochs": 1, "n_train": 256,
         "n_test": 200, "batch_size": 64, "max_batches": 2, "laps": 20, "image_repeats": 60,
         "tracks": ["linear", "images"]}
CHOICES = {"part": ["all", "sweep", "sequences"], "datasets": ["fashion_mnist", "cifar10", "mnist"],
           "arms": ARMS, "optimizer": ["adam", "adamw", "sgd"], "loss": ["cosine", "l2"],
           "tracks": ["linear", "circular", "images"]}


# ------------------------------------------------------------------------- weight-decay sweep
def make_rule(arm: str, enc, data, cfg: dict, wd: float):
    from bioplausible import views
    from bioplausible.rules.phinet import PhiNet
    from bioplausible.rules.ssl import EndToEnd

    vcfg, norm = views.preset(data.name), (data.mean, data.std)
    common = dict(norm=norm, lr=cfg["lr"], optimizer=cfg["optimizer"], weight_decay=wd,
                  seed=cfg["seed"])
    if arm == "simsiam" and cfg["loss"] == "cosine":
        return EndToEnd(enc, vcfg, loss="simsiam", **common)
    if arm == "simsiam":      # SimSiam with the L2 loss = PhiNet without its CA1 term (λ = 0)
        return PhiNet(enc, vcfg, mode="backprop", loss=cfg["loss"], ca1_weight=0.0, **common)
    mode = "backprop" if arm == "phinet" else "local"
    return PhiNet(enc, vcfg, mode=mode, loss=cfg["loss"], ca1_weight=cfg["ca1_weight"], **common)


def block3_eval(enc, data) -> dict:
    """GAP-code probe and kNN on the last block, and its representation health."""
    from bioplausible.evaluate import knn_accuracy, linear_probe, representation_report

    def codes(x):
        return np.concatenate([enc.codes(x[i:i + 500])[-1] for i in range(0, len(x), 500)])

    ctr, cte = codes(data.x_train), codes(data.x_test)
    rep = representation_report(cte)
    return {"code_norm": float(np.linalg.norm(cte, axis=1).mean()),
            "probe_gap": linear_probe(ctr, data.y_train, cte, data.y_test)["test_acc"],
            "knn": knn_accuracy(ctr, data.y_train, cte, data.y_test, k=20),
            "collapse_std": float(rep["collapse_std"]), "eff_rank": float(rep["effective_rank"])}


def _code_norm_from_checkpoint(path: Path, data, cfg: dict) -> float:
    from bioplausible import encoders
    from bioplausible.store import Run

    enc = encoders.build(cfg["model"], data.in_shape, seed=cfg["seed"])
    with Run.resume(path, truncate=False) as run:
        ck = run.load_checkpoint()
        if ck is not None:
            enc.load_state_dict(ck[0])
        cte = np.concatenate([enc.codes(data.x_test[i:i + 500])[-1]
                              for i in range(0, len(data.x_test), 500)])
        norm = float(np.linalg.norm(cte, axis=1).mean())
        run.save_result("code_norm", norm)
    return norm


SWEEP_KEYS = ["model", "epochs", "batch_size", "optimizer", "lr", "ca1_weight", "loss", "n_train",
              "n_test", "max_batches", "seed"]


def sweep_one(arm: str, wd: float, data, cfg: dict, out: Path) -> dict:
    from bioplausible import encoders
    from bioplausible.errors import UserError
    from bioplausible.experiment import open_run
    from bioplausible.store import read_run
    from bioplausible.trainer import Diverged, fit

    name = f"{arm}-{data.name}-wd{wd:g}-s{cfg['seed']}"
    path = out / f"{name}.h5"
    row = {"dataset": data.name, "arm": arm, "weight_decay": wd}
    run_cfg = {k: cfg[k] for k in SWEEP_KEYS} | {"dataset": data.name, "arm": arm,
                                                  "weight_decay": wd}
    if path.exists():                      # re-running the same command reuses finished runs
        info = read_run(path)
        old = {k: info["config"].get(k) for k in run_cfg}
        if json.loads(json.dumps(old)) != json.loads(json.dumps(run_cfg)):
            raise UserError(f"{path} was run with other settings "
                            f"({', '.join(k for k in run_cfg if old[k] != run_cfg[k])} differ); "
                            "use another --out folder")
        if info["results"].get("done"):
            res = {k: float(v) for k, v in info["results"].items() if k != "done"}
            if "code_norm" not in res:       # runs from before the code norm was recorded
                res["code_norm"] = _code_norm_from_checkpoint(path, data, cfg)
            return row | res
    enc = encoders.build(cfg["model"], data.in_shape, seed=cfg["seed"])
    run = open_run(out, name, run_cfg, cfg["seed"], enc.recipe_text,
                   path if path.exists() else None)
    with run:
        if arm != "random":
            rule = make_rule(arm, enc, data, cfg, wd)
            try:
                last = fit(rule, enc, data.x_train, data.y_train, epochs=cfg["epochs"],
                           batch_size=cfg["batch_size"], seed=cfg["seed"], run=run,
                           progress=cfg["progress"], max_batches=cfg["max_batches"] or None)
                row["train_collapse_std"] = last.get("collapse_std", float("nan"))
                row["samples_per_s"] = last["samples_per_s"]
            except Diverged:
                row["diverged"] = 1.0
        with np.errstate(all="ignore"):
            row.update(block3_eval(enc, data) if "diverged" not in row else
                       {"probe_gap": 0.1, "knn": 0.1, "collapse_std": 0.0, "eff_rank": 0.0})
        for k, v in row.items():
            if isinstance(v, float):
                run.save_result(k, v)
        run.save_result("done", 1.0)
    return row


def sweep_figure(rows: list[dict], dataset: str, out_png: Path):
    from bioplausible.plots import _plt, _save

    plt = _plt()
    rs = [r for r in rows if r["dataset"] == dataset]
    floor = next((r for r in rs if r["arm"] == "random"), None)
    wds = sorted({r["weight_decay"] for r in rs if r["arm"] != "random"})
    pos = {w: i for i, w in enumerate(wds)}
    fig, axes = plt.subplots(1, 5, figsize=(18, 3.6), dpi=120)
    for ax, key, lab in zip(axes, ["knn", "probe_gap", "collapse_std", "eff_rank", "code_norm"],
                            ["kNN accuracy (block 3)", "GAP-code probe accuracy (block 3)",
                             "std of normalised code (collapse → 0)",
                             "effective rank of block-3 codes (of 128)",
                             "mean ‖z‖ of block-3 codes (→ 0: trivial solution)"]):
        for arm in [a for a in ARMS if any(r["arm"] == a for r in rs)]:
            pts = sorted((pos[r["weight_decay"]], r[key]) for r in rs if r["arm"] == arm)
            ax.plot(*zip(*pts), marker="o", label=arm)
        if key == "code_norm":
            ax.set_yscale("log")
        if floor is not None:
            ax.axhline(floor[key], color="k", ls="--", lw=1, label="random init")
        ax.set_xticks(range(len(wds)), [f"{w:g}" for w in wds])
        ax.set_xlabel("weight decay ρ")
        ax.set_title(lab, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{dataset}: SimSiam vs the CA3–CA1 model (PhiNet backprop / local) vs weight decay",
                 fontsize=10)
    return _save(plt, fig, out_png)


def run_sweep(cfg: dict, out: Path) -> list[dict]:
    from bioplausible.data_prep import prepare

    rows = []
    for ds in cfg["datasets"]:
        data = prepare(ds, n_train=cfg["n_train"], n_test=cfg["n_test"], seed=cfg["seed"])
        rows.append(sweep_one("random", 0.0, data, cfg, out))
        for wd in cfg["weight_decays"]:
            for arm in cfg["arms"]:
                rows.append(sweep_one(arm, wd, data, cfg, out))
                r = rows[-1]
                print(f"{ds} {arm} ρ={wd:g}: kNN {100 * r['knn']:.1f}%, probe "
                      f"{100 * r['probe_gap']:.1f}%, collapse_std {r['collapse_std']:.4f}", flush=True)
        sweep_figure(rows, ds, out / f"sweep-{ds}.png")
    return rows


# ----------------------------------------------------------------------------------- sequences
def sequence_inputs(task: str, cfg: dict, rng):
    """(training stream, reference patterns in order, cue, circular bins or None, per-lap length)."""
    from bioplausible import hippocampus as hc

    if task in ("linear", "circular"):
        spl = cfg["steps_per_lap"]
        pos = hc.track_positions(cfg["laps"], spl, task)
        X = hc.place_input(pos, cfg["n_ec"], cfg["place_width"], task, cfg["ec_noise"], rng)
        ref = hc.place_input(np.arange(spl) / spl, cfg["n_ec"], cfg["place_width"], task)
        return X, ref, ref[0], (spl if task == "circular" else None), spl
    from bioplausible import datasets

    if not 2 <= cfg["n_images"] <= 10:
        from bioplausible.errors import UserError
        raise UserError(f"n_images must be between 2 and 10 (one image per class), got {cfg['n_images']}")
    test = datasets.load("fashion_mnist", "test")
    # the first test image of each of the first n_images classes, in class order; 2x2 mean-pooled
    idx = [int(np.flatnonzero(test.y == c)[0]) for c in range(cfg["n_images"])]
    img = test.x[idx].astype(np.float32)[..., 0] / 255.0
    img = img.reshape(len(idx), 14, 2, 14, 2).mean(axis=(2, 4)).reshape(len(idx), -1)
    img = img - img.mean(axis=0, keepdims=True)            # EC: deviations from the mean image
    X, _ = hc.image_sequence(img, cfg["image_repeats"], noise=cfg["ec_noise"], rng=rng)
    return X, img, img[0], None, len(idx)


def run_sequence(task: str, cfg: dict, out: Path, mode: str = "local",
                 lr_encoder: float | None = None) -> tuple[dict, dict]:
    from bioplausible import hippocampus as hc
    from bioplausible.evaluate import effective_rank
    from bioplausible.experiment import open_run

    lr_encoder = cfg["seq_lr_encoder"] if lr_encoder is None else lr_encoder
    rng = np.random.default_rng([cfg["seed"], 31])
    X, ref, cue, circ, per = sequence_inputs(task, cfg, rng)
    m = hc.CA3CA1(X.shape[1], cfg["n_ca3"], delay=cfg["delay"], lr=cfg["seq_lr"],
                  lr_encoder=lr_encoder, mode=mode, seed=cfg["seed"])
    norm_before = float(np.linalg.norm(m.code(ref), axis=1).mean())
    probe = X[:2 * per] if task != "images" else X[:4 * per]
    lags, lead_before = m.lead_lag(probe)
    n_rep = max(2, (per - 1) // cfg["delay"])    # CA3 predicts d steps ahead: each replay step jumps d
    rep_before = hc.decode(m.replay(cue, n_rep), m.code(ref))
    rec = m.run(X)
    e1 = np.nanmean(rec["ca1_mismatch"][:len(X) // per * per].reshape(-1, per), axis=1)
    e3 = np.nanmean(rec["ca3_mismatch"][:len(X) // per * per].reshape(-1, per), axis=1)
    _, lead_after = m.lead_lag(probe)
    rep_after = hc.decode(m.replay(cue, n_rep), m.code(ref))
    rho_before, rho_after = hc.replay_order(rep_before, circ), hc.replay_order(rep_after, circ)
    d = cfg["delay"]
    S = m.code(ref)
    row = {"task": task, "mode": mode, "lr_encoder": lr_encoder, "delay": d, "steps": len(X),
           "ca1_mismatch_first": float(e1[0]), "ca1_mismatch_last": float(e1[-1]),
           "ca3_mismatch_first": float(e3[0]), "ca3_mismatch_last": float(e3[-1]),
           "lead_peak_before": int(lags[np.argmax(lead_before)]),
           "lead_peak_after": int(lags[np.argmax(lead_after)]),
           "corr_lag0_after": float(lead_after[lags == 0][0]),
           "corr_lagd_after": float(lead_after[lags == d][0]),
           "replay_rank_before": rho_before, "replay_rank_after": rho_after,
           "code_norm_before": norm_before, "code_norm_after": float(np.linalg.norm(S, axis=1).mean()),
           "code_eff_rank_after": effective_rank(S)}
    cfg_run = {k: v for k, v in cfg.items() if k != "progress"} | {"task": task, "mode": mode,
                                                                   "lr_encoder": lr_encoder}
    with open_run(out, f"seq-{task}-{mode}-enc{lr_encoder:g}-s{cfg['seed']}", cfg_run,
                  cfg["seed"]) as run:
        for i in range(len(e1)):
            run.log("lap", lap=i + 1, ca1_mismatch=e1[i], ca3_mismatch=e3[i])
        for k, v in row.items():
            if not isinstance(v, str):
                run.save_result(k, float(v))
        run.save_result("lead_lag", {"lags": lags.astype(float), "before": lead_before,
                                     "after": lead_after})
        run.save_result("replay_decoded", {"before": rep_before.astype(float),
                                           "after": rep_after.astype(float)})
    curves = {"e1": e1, "e3": e3, "lags": lags, "lead_before": lead_before,
              "lead_after": lead_after, "rep_before": rep_before, "rep_after": rep_after, "per": per}
    return row, curves


def sequence_figure(results: list[tuple[dict, dict]], out_png: Path):
    from bioplausible.plots import _plt, _save

    plt = _plt()
    n = len(results)
    fig, axes = plt.subplots(n, 3, figsize=(12, 3.0 * n), dpi=110, squeeze=False)
    for (row, c), ax in zip(results, axes):
        lab = f"{row['task']}" + (f" (EC→DG learns, {row['mode']})" if row["lr_encoder"] > 0 else "")
        ax[0].semilogy(np.arange(1, len(c["e1"]) + 1), c["e1"], label="CA1 mismatch")
        ax[0].semilogy(np.arange(1, len(c["e3"]) + 1), c["e3"], label="CA3 mismatch")
        ax[0].set_xlabel("lap / repetition")
        ax[0].set_title(f"{lab}: mismatch during learning", fontsize=9)
        ax[0].legend(fontsize=7)
        ax[1].plot(c["lags"], c["lead_before"], marker="o", label="before learning")
        ax[1].plot(c["lags"], c["lead_after"], marker="o", label="after learning")
        ax[1].axvline(0, color="k", lw=0.5)
        ax[1].set_xlabel("lag k (steps): cos(CA3 prediction_t, code_{t+k})")
        ax[1].set_title(f"CA3 leads the input (peak at k = {row['lead_peak_after']})", fontsize=9)
        ax[1].legend(fontsize=7)
        steps = np.arange(len(c["rep_after"]))
        ax[2].plot(steps, c["rep_before"], marker=".", label=f"before (ρ={row['replay_rank_before']:.2f})")
        ax[2].plot(steps, c["rep_after"], marker=".", label=f"after (ρ={row['replay_rank_after']:.2f})")
        ax[2].plot(steps, steps * row["delay"], "k:", lw=0.8, label="true order")
        ax[2].set_xlabel("replay step (CA3 alone after the cue)")
        ax[2].set_ylabel("decoded element")
        ax[2].set_title("cued replay", fontsize=9)
        ax[2].legend(fontsize=7)
        for a in ax:
            a.grid(alpha=0.3)
    return _save(plt, fig, out_png)


def run_sequences(cfg: dict, out: Path) -> list[dict]:
    results = [run_sequence(task, cfg, out) for task in cfg["tracks"]]
    if "linear" in cfg["tracks"]:
        for lr_f in cfg["seq_encoder_lrs"]:
            results += [run_sequence("linear", cfg, out, mode, lr_f) for mode in ("local", "backprop")]
    fig = sequence_figure(results, out / "sequences.png")
    for row, _ in results:
        print(f"{row['task']} ({row['mode']}, encoder lr {row['lr_encoder']:g}): CA1 mismatch "
              f"{row['ca1_mismatch_first']:.4f} -> {row['ca1_mismatch_last']:.4f}, CA3 peak lag {row['lead_peak_before']} -> "
              f"{row['lead_peak_after']}, replay rank corr {row['replay_rank_before']:.2f} -> "
              f"{row['replay_rank_after']:.2f}, code norm {row['code_norm_before']:.2f} -> "
              f"{row['code_norm_after']:.2f}", flush=True)
    print(f"figure: {fig}")
    return [r for r, _ in results]


def run(cfg: dict, out: Path, resume: Path | None = None) -> list[dict]:
    rows = []
    if cfg["part"] in ("all", "sequences"):
        rows += run_sequences(cfg, out)
    if cfg["part"] in ("all", "sweep"):
        keep = ["dataset", "arm", "weight_decay", "knn", "probe_gap", "collapse_std", "eff_rank",
                "code_norm", "train_collapse_std"]
        rows += [{k: r[k] for k in keep if k in r} for r in run_sweep(cfg, out)]
    return rows


if __name__ == "__main__":
    from bioplausible.experiment import main_for

    raise SystemExit(main_for(__name__))
