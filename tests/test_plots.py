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
    assert plots.label_color("not an arm", 3) == "C3"


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
