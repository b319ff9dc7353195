"""Figures (matplotlib, Agg backend: no screen needed).  Each function writes a PNG and returns its path."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, out_png) -> Path:
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


# One colour per arm of the local-vs-global comparison, the same in every figure (bars and curves).
ARM_COLORS = {"random": "#7f7f7f", "pixels": "#bcbd22", "softhebb": "#ff7f0e", "supervised": "#8c564b",
              "clapp": "#2ca02c", "clapp_s": "#17becf", "infonce": "#d62728", "hinge_cpc": "#9467bd",
              "greedy_infomax": "#1f77b4", "simsiam": "#e377c2", "byol": "#393b79"}


# Lines and bars that are not one arm (a condition's own label) take these, in turn: none of them
# is an arm's colour, so a condition is never drawn in the colour of an arm it is compared with.
OTHER_COLORS = ["#000000", "#a6761d", "#e6ab02", "#66a61e", "#7570b3", "#e7298a", "#1b9e77",
                "#d95f02", "#a6cee3", "#fb9a99"]


def label_color(label: str, i: int) -> str:
    """An arm's fixed colour; any other label gets the i-th of :data:`OTHER_COLORS`."""
    return ARM_COLORS.get(str(label), OTHER_COLORS[i % len(OTHER_COLORS)])


def _setting(cfg: dict) -> str:
    """A run's settings apart from its seed (and where it was written), as one comparable string."""
    return repr(sorted((k, repr(v)) for k, v in cfg.items() if k not in ("seed", "seeds", "out")))


def run_label(info: dict) -> str:
    cfg = info.get("config", {})
    return cfg.get("arm") or Path(str(info.get("path", "run"))).stem


def learning_curves(paths, out_png, metric: str = "test_acc", x: str = "epoch",
                    group: str = "epoch", title: str | None = None,
                    labels: list[str] | None = None) -> Path:
    """``metric`` against ``x`` (from the ``group`` metrics) for each run file, one line per label;
    runs with the same label that differ only in their seed are drawn as mean ± sd.  ``labels``
    (one per path) names the lines; by default a run is labelled by its arm, and runs of one arm
    whose settings differ in more than the seed get their folder's name added, so that conditions
    kept in different folders are not averaged as if they were seeds."""
    from .store import read_run

    paths = list(paths)
    if labels is not None and len(labels) != len(paths):
        raise UserError(f"{len(labels)} labels for {len(paths)} run files: give one label per file")
    plt = _plt()
    runs = []
    for i, p in enumerate(paths):
        info = read_run(p)
        m = info["metrics"].get(group, {})
        if metric in m and x in m:
            label = labels[i] if labels is not None else run_label(info | {"path": p})
            runs.append((label, Path(p), _setting(info.get("config", {})),
                         (np.asarray(m[x], float), np.asarray(m[metric], float))))
    if labels is None:
        settings: dict[str, set] = {}
        for label, _, setting, _ in runs:
            settings.setdefault(label, set()).add(setting)
        runs = [(f"{label} ({p.parent.name})" if len(settings[label]) > 1 else label, p, s, c)
                for label, p, s, c in runs]
    by_label: dict[str, list] = {}
    for label, _, _, curve in runs:
        by_label.setdefault(label, []).append(curve)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for i, (label, curves) in enumerate(by_label.items()):
        n = min(len(c[0]) for c in curves)
        xs = curves[0][0][:n]
        ys = np.stack([c[1][:n] for c in curves])
        mean = ys.mean(0)
        color = label_color(label, i)
        ax.plot(xs, mean, marker="o", ms=3, color=color,
                label=f"{label} (n={len(curves)})" if len(curves) > 1 else label)
        if len(curves) > 1:
            sd = ys.std(0, ddof=1)
            ax.fill_between(xs, mean - sd, mean + sd, alpha=0.2, color=color)
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.set_title(title or metric)
    ax.grid(alpha=0.3)
    if by_label:
        ax.legend(fontsize=7)
    return _save(plt, fig, out_png)


def bars(rows: list[dict], keys: list[str], label_key: str, out_png, title: str = "",
         err_suffix: str = "_sd", ylabel: str = "accuracy") -> Path:
    """Grouped bars: one group per entry of ``keys``, one bar per row (label ``row[label_key]``);
    ``row[key + err_suffix]`` gives error bars when present."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(keys) + 2), 3.5), dpi=120)
    width = 0.8 / max(len(rows), 1)
    xs = np.arange(len(keys))
    for i, r in enumerate(rows):
        vals = [r.get(k, np.nan) for k in keys]
        errs = [r.get(k + err_suffix, 0.0) or 0.0 for k in keys]
        ax.bar(xs + i * width - 0.4 + width / 2, vals, width, yerr=errs, label=str(r[label_key]),
               capsize=2, color=label_color(r[label_key], i))
    ax.set_xticks(xs)
    ax.set_xticklabels(keys, rotation=20, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(plt, fig, out_png)
