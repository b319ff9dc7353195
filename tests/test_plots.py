"""Figures: an arm keeps its colour across figures and across the order in which arms come."""
import numpy as np
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer

from bioplausible import plots


def test_every_comparison_arm_has_its_own_colour():
    from bioplausible.experiment import load_experiment

    arms = load_experiment("local_vs_global").ALL_ARMS
    assert set(arms) <= set(plots.ARM_COLORS)
    assert len(set(plots.ARM_COLORS.values())) == len(plots.ARM_COLORS)
    others = [plots.label_color("not an arm", i) for i in range(len(plots.OTHER_COLORS))]
    assert len(set(others)) == len(others) and not set(others) & set(plots.ARM_COLORS.values())


def test_bars_draw_each_arm_in_its_colour_whatever_the_order(monkeypatch, tmp_path):
    figs = []
    monkeypatch.setattr(plots, "_save", lambda plt, fig, out: figs.append(fig))
    rows = [{"arm": "infonce", "a": 0.5}, {"arm": "clapp_s", "a": 0.4}, {"arm": "run x", "a": 0.3}]
    for order in (rows, rows[::-1]):
        plots.bars(order, ["a"], "arm", tmp_path / "b.png")
        got = {c.get_label(): to_hex(c.patches[0].get_facecolor())
               for c in figs[-1].axes[0].containers if isinstance(c, BarContainer)}
        assert set(got) == {"infonce", "clapp_s", "run x"}
        assert got["infonce"] == plots.ARM_COLORS["infonce"]
        assert got["clapp_s"] == plots.ARM_COLORS["clapp_s"]
    assert np.isfinite(figs[-1].axes[0].patches[0].get_height())


def _curve_run(folder, arm, seed, acc, **cfg):
    from bioplausible.store import Run

    run = Run.create(folder, f"{arm}-s{seed}", {"arm": arm, "seed": seed, **cfg}, seed=seed)
    for epoch, a in enumerate(acc):
        run.log("epoch", epoch=epoch, test_acc=a)
    run.close()
    return run.path


def _legend(fig):
    return sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_learning_curves_never_average_two_conditions_as_seeds(monkeypatch, tmp_path):
    figs = []
    monkeypatch.setattr(plots, "_save", lambda plt, fig, out: figs.append(fig))
    seeds = [_curve_run(tmp_path / "B", "clapp_s", s, [0.5, 0.6 + 0.01 * s], head=0) for s in (0, 1)]
    other = _curve_run(tmp_path / "H", "clapp_s", 0, [0.5, 0.7], head=256)
    plots.learning_curves(seeds, tmp_path / "c.png")            # two seeds of one condition: one line
    assert _legend(figs[-1]) == ["clapp_s (n=2)"]
    plots.learning_curves(seeds + [other], tmp_path / "c.png")  # two conditions of one arm: two lines
    assert _legend(figs[-1]) == ["clapp_s (B) (n=2)", "clapp_s (H)"]
    lines = {ln.get_label(): ln.get_ydata() for ln in figs[-1].axes[0].get_lines()}
    assert np.allclose(lines["clapp_s (H)"], [0.5, 0.7])
    assert np.allclose(lines["clapp_s (B) (n=2)"], [0.5, 0.605])
    plots.learning_curves(seeds + [other], tmp_path / "c.png", labels=["B", "B", "H"])
    assert _legend(figs[-1]) == ["B (n=2)", "H"]


def test_learning_curves_want_one_label_per_run(tmp_path):
    import pytest

    from bioplausible.errors import UserError

    path = _curve_run(tmp_path, "infonce", 0, [0.5, 0.6])
    with pytest.raises(UserError, match="1 run files"):
        plots.learning_curves([path], tmp_path / "c.png", labels=["a", "b"])


def test_report_labels_the_curves(tmp_path, capsys):
    from bioplausible.cli import main

    a = _curve_run(tmp_path / "a", "clapp_s", 0, [0.5, 0.6], head=0)
    b = _curve_run(tmp_path / "b", "clapp_s", 0, [0.5, 0.7], head=256)
    assert main(["report", str(a), str(b), "--plot", str(tmp_path / "fig"), "--labels", "B,H"]) == 0
    assert (tmp_path / "fig" / "curves-test_acc.png").stat().st_size > 0
