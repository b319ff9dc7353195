import subprocess
import sys

import pytest

from bioplausible.cli import main
from bioplausible.experiment import apply_sets
from bioplausible.errors import UserError


def test_import_is_cheap_and_lazy():
    code = ("import time, sys; t = time.perf_counter(); import bioplausible; "
            "dt = time.perf_counter() - t; "
            "bad = [m for m in ('numba', 'brian2', 'torch', 'h5py', 'matplotlib') if m in sys.modules]; "
            "print(dt); assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) < 1.5


def test_apply_sets_coerces_types_and_names_unknown_keys():
    cfg = {"lr": 1e-3, "epochs": 5, "dataset": "cifar10", "flag": False, "seeds": [0]}
    out = apply_sets(cfg, ["lr=3e-4", "epochs=7", "flag=true", "seeds=0,1,2"])
    assert out == {"lr": 3e-4, "epochs": 7, "dataset": "cifar10", "flag": True, "seeds": [0, 1, 2]}
    with pytest.raises(UserError, match=r"unknown key 'ephocs' \(did you mean 'epochs'\?\)"):
        apply_sets(cfg, ["ephocs=3"])
    with pytest.raises(UserError, match="expected an integer"):
        apply_sets(cfg, ["epochs=three"])
    with pytest.raises(UserError, match="not allowed; choose from: cifar10, fashion_mnist"):
        apply_sets(cfg, ["dataset=imagenet"], {"dataset": ["cifar10", "fashion_mnist"]})


def test_cli_user_errors_are_one_line(capsys):
    assert main(["run", "no_such_experiment"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown experiment 'no_such_experiment'")
    assert "\n" not in err and "Traceback" not in err
    assert main(["run", "supervised", "--smoke", "--set", "lr2=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key 'lr2'" in err and "\n" not in err


def test_list_shows_experiments_and_recipes(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "supervised" in out and "conv3" in out and "vgg6" in out


def test_console_script_installed():
    from pathlib import Path
    exe = Path(sys.executable).parent / "bioplausible"      # installed next to this python
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "report" in r.stdout
