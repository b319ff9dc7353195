"""Figures (matplotlib, Agg backend: no screen needed).  Each function writes a PNG and returns its path."""
from __future__ import annotations

from pathlib import Path

import numpy as np


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


def label_color(label: str, i: int) -> str:
    """An arm's fixed colour; any other label gets matplotlib's i-th colour cycle entry."""
    return ARM_COLORS.get(str(label), f"C{i % 10}")


def run_label(info: dict) -> str:
    cfg = info.get("config", {})
    return cfg.get("arm") or Path(str(info.get("path", "run"))).stem


def learning_curves(paths, out_png, metric: str = "test_acc", x: str = "epoch",
                    group: str = "epoch", title: str | None = None) -> Path:
    """``metric`` against ``x`` (from the ``group`` metrics) for each run file, one line per run;
    runs with the same label (seeds) are drawn as mean ± sd."""
    from .store import read_run

    plt = _plt()
    by_label: dict[str, list] = {}
    for p in paths:
        info = read_run(p)
        m = info["metrics"].get(group, {})
        if metric in m and x in m:
            by_label.setdefault(run_label(info | {"path": p}), []).append(
                (np.asarray(m[x], float), np.asarray(m[metric], float)))
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
