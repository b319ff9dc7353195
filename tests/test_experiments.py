"""Every experiment script runs end to end in --smoke mode: HDF5 run files, figures and a table.

Smoke runs use small subsets of the real datasets (Fashion-MNIST from Debian's package; CIFAR-10
from the shared development copy or a user's download); they are skipped when a dataset is absent.
"""
import subprocess
import sys
from pathlib import Path

import pytest

from bioplausible.experiment import EXPERIMENTS_DIR, list_experiments

ROOT = Path(__file__).resolve().parent.parent


from conftest import have_dataset as _have  # noqa: E402


def _smoke(script, out, timeout=900):
    """Run ``experiments/SCRIPT --smoke --out OUT`` in a fresh interpreter."""
    return subprocess.run([sys.executable, str(EXPERIMENTS_DIR / script), "--smoke", "--out",
                           str(out), "--no-progress"], capture_output=True, text=True,
                          timeout=timeout)


def test_every_experiment_has_doc_out_and_smoke():
    for name in list_experiments():
        text = (EXPERIMENTS_DIR / f"{name}.py").read_text()
        assert text.lstrip().startswith('"""'), f"{name}: docstring first (paper + expected number)"
        assert "DEFAULTS" in text and "SMOKE" in text, name


def test_supervised_smoke_and_cli_resume(tmp_path):
    if not _have("fashion_mnist"):
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    r = _smoke("supervised.py", tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    h5 = sorted(tmp_path.glob("*.h5"))
    assert len(h5) == 1 and (tmp_path / f"{h5[0].stem}.png").is_file()
    assert "test_acc" in r.stdout
    from bioplausible.cli import main
    assert main(["report", str(tmp_path), "--plot", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "curves-test_acc.png").is_file()
    # --resume on a finished run trains nothing more and keeps its metrics
    from bioplausible.store import read_run
    before = read_run(h5[0])["metrics"]["epoch"]["test_acc"]
    assert main(["run", "supervised", "--smoke", "--resume", str(h5[0]), "--no-progress"]) == 0
    after = read_run(h5[0])["metrics"]["epoch"]["test_acc"]
    assert list(after) == list(before)


def test_local_vs_global_smoke(tmp_path):
    if not _have("cifar10"):
        pytest.skip("CIFAR-10 not found (see data/README.md)")
    r = _smoke("local_vs_global.py", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    arms = {p.name.split("-")[0] for p in tmp_path.glob("*.h5")}
    assert {"random", "pixels", "supervised", "clapp", "clapp_s", "infonce", "hinge_cpc",
            "greedy_infomax", "simsiam", "byol"} <= arms
    for fig in ("probe_per_block.png", "learning_curves.png", "speed.png", "memory.png", "table.md"):
        assert (tmp_path / fig).is_file(), fig
    assert "| clapp" in r.stdout
    # re-running the same command reuses every finished arm instead of training again
    r2 = _smoke("local_vs_global.py", tmp_path, timeout=600)
    assert r2.returncode == 0 and r2.stdout.count("finished earlier") == 10
