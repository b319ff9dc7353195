"""Sweeps: grid validation, local process pool, Dask with a worker killed mid-sweep, SIGKILL of the
whole sweep and resume, failing points, aggregation (mean ± sd) and the batch/negatives experiment.

Most tests sweep ``tests/sweep_toy_experiment.py``: a SYNTHETIC logistic-regression experiment
(two Gaussian blobs) that uses the real run-file machinery (open_run, checkpoints, resume) and
finishes in well under a second, so that process and cluster behaviour can be tested quickly.
"""
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bioplausible.errors import UserError
from bioplausible.store import read_run
from bioplausible.sweep import (MANIFEST, SweepError, expand, load_manifest, parse_grid, point_name,
                                report, resolve_target, run_sweep)

ROOT = Path(__file__).resolve().parent.parent
TOY = str(Path(__file__).resolve().parent / "sweep_toy_experiment.py")
GRID = {"lr": [0.02, 0.05, 0.1, 0.2]}          # 4 points x 2 seeds = 8 runs
METRICS = ("test_acc", "loss", "weight_norm")


def _cli(*args, timeout=120, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "bioplausible.cli", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, **kw)


def _serial_reference(tmp_path, grid=GRID, seeds=2):
    """The same points run one after the other in this process (sleep=0: timing only)."""
    s = run_sweep(TOY, grid, seeds=seeds, out=tmp_path / "serial", workers=0, echo=None)
    assert s["done"] == s["points"]
    return {e["name"]: e for e in load_manifest(tmp_path / "serial")["points"]}


def _assert_same_numbers(out: Path, ref: dict):
    """Every point done, its run file readable, rows and per-epoch metrics equal to ``ref``."""
    man = load_manifest(out)
    assert {e["name"] for e in man["points"]} == set(ref)
    for e in man["points"]:
        assert e["state"] == "done", (e["name"], e.get("error"))
        r, r0 = e["rows"][0], ref[e["name"]]["rows"][0]
        for k in METRICS:
            assert r[k] == r0[k], (e["name"], k, r[k], r0[k])
        [f] = e["files"]
        [f0] = ref[e["name"]]["files"]
        info = read_run(out / f)
        info0 = read_run(Path(ref[e["name"]]["_root"]) / f0) if "_root" in ref[e["name"]] else None
        np.testing.assert_array_equal(info["metrics"]["epoch"]["epoch"], np.arange(1, 7))
        if info0 is not None:
            for k in ("loss", "test_acc"):
                np.testing.assert_array_equal(info["metrics"]["epoch"][k],
                                              info0["metrics"]["epoch"][k])
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert not leftovers, leftovers


def _with_root(ref, root):
    for e in ref.values():
        e["_root"] = str(root)
    return ref


# --------------------------------------------------------------------------- grid and names

def test_grid_parsing_typing_names_and_union():
    target = resolve_target(TOY)
    assert parse_grid(["lr=1e-3,3e-4", "opt=sgd"]) == {"lr": ["1e-3", "3e-4"], "opt": ["sgd"]}
    base = dict(target.defaults, progress=False)
    pts = expand(target, base, {"lr": "1e-3,3e-4", "batch_size": [16, "32"]}, seeds=2)
    assert len(pts) == 8
    assert pts[0].config["lr"] == 1e-3 and isinstance(pts[0].config["batch_size"], int)
    assert pts[0].name == "lr=0.001,batch_size=16,seed=0"
    assert {p.config["seed"] for p in pts} == {0, 1}
    # a list of grids is their union; a point in both runs once, named with every swept key
    pts = expand(target, base, [{"lr": [0.1, 0.2]}, {"batch_size": [32, 64]}], seeds=None)
    names = [p.name for p in pts]
    assert names == ["lr=0.1,batch_size=32,seed=0", "lr=0.2,batch_size=32,seed=0",
                     "lr=0.1,batch_size=64,seed=0"]
    assert point_name({"arms": ["clapp", "infonce"], "x": "a/b c"}) == "arms=clapp+infonce,x=a-b-c"


@pytest.mark.parametrize("grid, seeds, message", [
    ({"lrr": [0.1]}, None, r"unknown key 'lrr' \(did you mean 'lr'\?\)"),
    ({"lr": []}, None, "empty value list"),
    ({"lr": "0.1,"}, None, "empty value between commas"),
    ({"lr": ["fast"]}, None, "--grid lr=fast: expected a number"),
    ({"opt": ["adam"]}, None, "opt='adam' is not allowed; choose from: sgd"),
    ({"seed": [1, 2]}, 2, "not both"),
    ({"lr": [0.1]}, 0, "at least 1"),
])
def test_bad_grids_are_user_errors(grid, seeds, message):
    target = resolve_target(TOY)
    with pytest.raises(UserError, match=message):
        expand(target, dict(target.defaults), grid, seeds)


def test_bad_input_is_one_line_error_before_any_work(tmp_path, capsys):
    """Unknown grid key, empty value list, unreachable scheduler: exit 2, one line, no files."""
    import socket

    from bioplausible.cli import main

    with socket.socket() as s:           # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cases = [
        (["--grid", "lrr=0.1,0.2"], "unknown key 'lrr' (did you mean 'lr'?)"),
        (["--grid", "lr="], "empty value list"),
        (["--grid", "lr=0.1", "--scheduler", f"tcp://127.0.0.1:{port}", "--timeout", "2"],
         f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"),
        (["--grid", "lr=0.1", "--seeds", "two"], "--seeds expects a count"),
    ]
    for i, (args, msg) in enumerate(cases):
        out = tmp_path / f"o{i}"
        assert main(["sweep", TOY, *args, "--out", str(out)]) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and msg in err, err
        assert "\n" not in err and "Traceback" not in err
        assert not out.exists()                      # nothing written, nothing started
    assert main(["sweep", "no_such_experiment", "--grid", "lr=1"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown experiment")
    # the console command says the same (one line on stderr, exit status 2)
    r = _cli("sweep", TOY, "--grid", "lr=", "--out", tmp_path / "c")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "empty value list" in r.stderr


# --------------------------------------------------------------------------- executors

def test_dask_local_cluster_survives_a_killed_worker_and_matches_serial(tmp_path):
    """Must-show: LocalCluster on loopback, 2 worker processes (512 MiB each); a 4-point x 2-seed
    sweep; one worker is SIGKILLed while it runs a point; the sweep completes and every number
    equals a serial run of the same seeds."""
    distributed = pytest.importorskip("distributed")
    ref = _with_root(_serial_reference(tmp_path), tmp_path / "serial")
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  memory_limit="512MiB", silence_logs=logging.CRITICAL) as cluster, \
            distributed.Client(cluster) as client:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        result = {}

        def sweep():
            try:
                result["summary"] = run_sweep(TOY, GRID, seeds=2, sets=["sleep=0.12"], out=out,
                                              scheduler=cluster.scheduler_address, echo=None)
            except BaseException as e:  # noqa: BLE001 -- reported by the assertion below
                result["error"] = e

        th = threading.Thread(target=sweep)
        th.start()
        pids = client.run(os.getpid)                       # worker address -> pid
        killed, deadline = None, time.time() + 60
        while killed is None and time.time() < deadline and th.is_alive():
            if (out / MANIFEST).is_file():
                states = [e["state"] for e in load_manifest(out)["points"]]
                busy = [a for a, keys in client.processing().items() if keys and a in pids]
                if states.count("done") >= 1 and busy:
                    time.sleep(0.3)                          # well inside a ~0.7 s point
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed = busy[0]
            time.sleep(0.05)
        th.join(120)
        assert killed is not None, "no worker was killed mid-sweep"
        assert "error" not in result, result.get("error")
        s = result["summary"]
        assert s["executor"] == "dask" and s["done"] == 8 and not s["failed"]
        assert client.run(os.getpid).get(killed) != pids[killed]   # the nanny restarted it
    man = load_manifest(out)
    assert max(e["attempts"] for e in man["points"]) >= 1
    assert any(e["resumed"] for e in man["points"]), "the killed point restarted from scratch"
    _assert_same_numbers(out, ref)


@pytest.mark.slow
def test_scheduler_local_starts_and_stops_its_own_cluster(tmp_path):
    pytest.importorskip("distributed")
    s = run_sweep(TOY, {"lr": [0.05, 0.1]}, out=tmp_path / "l", scheduler="local", workers=1,
                  sets=["epochs=2"], echo=None)
    assert s["executor"] == "dask" and s["done"] == 2
    workers = {e["worker"].split(":")[1] for e in load_manifest(tmp_path / "l")["points"]}
    assert str(os.getpid()) not in workers


def test_sigkill_whole_sweep_then_rerun_finishes_only_the_rest(tmp_path):
    """Must-show: SIGKILL the sweep (coordinator and its workers) mid-sweep; re-running the same
    command skips every finished point (files untouched), resumes interrupted ones from their
    checkpoints, leaves no corrupt or temporary file, and gives the serial numbers."""
    ref = _with_root(_serial_reference(tmp_path), tmp_path / "serial")
    out = tmp_path / "sw"
    args = ["sweep", TOY, "--grid", "lr=0.02,0.05,0.1,0.2", "--seeds", "2", "--workers", "2",
            "--set", "sleep=0.12", "--out", out]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "bioplausible.cli", *map(str, args)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline, states = time.time() + 60, []
    while time.time() < deadline and proc.poll() is None:
        if (out / MANIFEST).is_file():
            states = [e["state"] for e in load_manifest(out)["points"]]
            if states.count("done") >= 2 and "running" in states:
                time.sleep(0.25)
                os.killpg(proc.pid, signal.SIGKILL)         # the whole sweep, workers included
                break
        time.sleep(0.03)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    time.sleep(0.2)
    before = {e["name"]: e for e in load_manifest(out)["points"]}
    done_before = {n for n, e in before.items() if e["state"] == "done"}
    assert 2 <= len(done_before) < 8
    for h5 in out.rglob("*.h5"):                              # nothing corrupt after SIGKILL
        read_run(h5)
    stamps = {p: p.stat().st_mtime_ns for n in done_before for p in (out / "points" / n).iterdir()}

    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert f"({len(done_before)} finished earlier, {8 - len(done_before)} to run)" in r.stdout
    man = load_manifest(out)
    assert man["sessions"][-1]["to_run"] == 8 - len(done_before)
    for p, t in stamps.items():                               # no finished point recomputed
        assert p.stat().st_mtime_ns == t, p
    for e in man["points"]:
        if e["name"] in done_before:
            assert e["attempts"] == before[e["name"]]["attempts"] == 1
            assert e["finished"] == before[e["name"]]["finished"]
    interrupted = [e for e in man["points"] if before[e["name"]]["state"] == "running"]
    assert interrupted and any(e["resumed"] for e in interrupted)
    _assert_same_numbers(out, ref)


def test_failing_point_is_recorded_and_others_finish(tmp_path):
    out = tmp_path / "f"
    r = _cli("sweep", TOY, "--grid", "lr=0.05,0.1", "--seeds", "2", "--workers", "2",
             "--set", "fail_lr=0.1", "--out", out)
    assert r.returncode == 1
    assert "2 point(s) failed" in r.stderr and "Traceback" not in r.stderr
    man = load_manifest(out)
    by = {e["name"]: e for e in man["points"]}
    for s in (0, 1):
        assert by[f"lr=0.05,seed={s}"]["state"] == "done"
        bad = by[f"lr=0.1,seed={s}"]
        assert bad["state"] == "failed"
        assert bad["error"] == "ValueError: synthetic failure for lr=0.1"
        assert "Traceback" in bad["traceback"]
    rep = _cli("report", out)
    assert rep.returncode == 0 and "2 done, 2 failed" in rep.stdout
    assert "failed: lr=0.1,seed=0: ValueError: synthetic failure" in rep.stdout


def test_pool_worker_killed_mid_sweep_is_replaced(tmp_path):
    """A pool worker process dying (OOM killer, kill -9) breaks the pool: its points go back in
    the queue of a new pool and the sweep still finishes every point with the serial numbers."""
    import multiprocessing

    ref = _with_root(_serial_reference(tmp_path, {"lr": [0.05, 0.1]}), tmp_path / "serial")
    out = tmp_path / "pool"
    result = {}

    def sweep():
        result["s"] = run_sweep(TOY, {"lr": [0.05, 0.1]}, seeds=2, sets=["sleep=0.12"], out=out,
                                workers=2, echo=None)

    th = threading.Thread(target=sweep)
    th.start()
    deadline, victim = time.time() + 60, None
    while victim is None and time.time() < deadline:
        kids = multiprocessing.active_children()
        if (out / MANIFEST).is_file() and kids and \
                "running" in [e["state"] for e in load_manifest(out)["points"]]:
            time.sleep(0.4)
            kids = [k for k in multiprocessing.active_children() if k.name.startswith("SpawnProcess")]
            if kids:
                victim = kids[0].pid
                os.kill(victim, signal.SIGKILL)
        time.sleep(0.03)
    th.join(120)
    assert victim is not None
    assert result["s"]["done"] == 4 and not result["s"]["failed"]
    _assert_same_numbers(out, ref)


# --------------------------------------------------------------------------- report

def test_report_mean_sd_table_and_a_figure_per_parameter(tmp_path, capsys):
    out = tmp_path / "r"
    run_sweep(TOY, {"lr": [0.05, 0.2], "batch_size": [32, 64]}, seeds=3, out=out, workers=0,
              sets=["epochs=2"], echo=None)
    rep = report(out, metric="test_acc", echo=None)
    assert rep["params"] == ["lr", "batch_size"] and rep["metric"] == "test_acc"
    assert len(rep["rows"]) == 4 and all(r["seeds"] == 3 for r in rep["rows"])
    man = load_manifest(out)
    for row in rep["rows"]:
        vals = [e["rows"][0]["loss"] for e in man["points"]
                if e["params"]["lr"] == row["lr"] and e["params"]["batch_size"] == row["batch_size"]]
        assert len(vals) == 3
        assert row["loss"] == pytest.approx(np.mean(vals))
        assert row["loss_sd"] == pytest.approx(np.std(vals, ddof=1))
    assert [f.name for f in rep["figures"]] == ["test_acc_vs_lr.png", "test_acc_vs_batch_size.png"]
    assert all(f.stat().st_size > 10_000 for f in rep["figures"])
    assert (out / "report" / "table.csv").read_text().startswith("lr,batch_size,seeds,test_acc")
    # the command: a sweep folder is aggregated, plain run folders keep the old behaviour
    from bioplausible.cli import main

    assert main(["report", str(out), "--plot", str(tmp_path / "figs")]) == 0
    text = capsys.readouterr().out
    assert "| lr " in text and " ± " in text and "12 done" in text
    assert (tmp_path / "figs" / "test_acc_vs_batch_size.png").is_file()
    assert main(["report", str(out / "points" / "lr=0.05,batch_size=32,seed=0")]) == 0
    assert "toy-lr0.05-s0" in capsys.readouterr().out


def test_one_sweep_per_folder(tmp_path):
    from bioplausible.sweep import _Lock

    with _Lock(tmp_path / "busy"):
        with pytest.raises(SweepError, match=f"another sweep \\(pid {os.getpid()}\\) is working"):
            run_sweep(TOY, {"lr": [0.1]}, out=tmp_path / "busy", workers=0, echo=None)
    assert not (tmp_path / "busy" / MANIFEST).exists()


def test_rerun_with_other_fixed_settings_is_refused(tmp_path):
    out = tmp_path / "s"
    run_sweep(TOY, {"lr": [0.1]}, seeds=1, out=out, workers=0, echo=None)
    with pytest.raises(SweepError, match=r"other fixed settings \(epochs: 6 there, 2 now\)"):
        run_sweep(TOY, {"lr": [0.1]}, seeds=1, out=out, workers=0, sets=["epochs=2"], echo=None)
    s = run_sweep(TOY, {"lr": [0.1, 0.2]}, seeds=1, out=out, workers=0, echo=None)  # extend
    assert s["skipped"] == ["lr=0.1,seed=0"] and s["ran"] == ["lr=0.2,seed=0"]


# --------------------------------------------------------------------------- real experiments

from conftest import have_dataset as _have  # noqa: E402


@pytest.mark.slow
def test_supervised_smoke_sweep_through_the_cli(tmp_path):
    """The real supervised experiment (Fashion-MNIST smoke subset) swept over two learning rates."""
    if not _have("fashion_mnist"):
        pytest.skip("Fashion-MNIST not installed")
    out = tmp_path / "sup"
    r = _cli("sweep", "supervised", "--smoke", "--grid", "lr=1e-3,3e-4", "--workers", "2",
             "--out", out, timeout=300)
    assert r.returncode == 0, r.stderr
    man = load_manifest(out)
    assert [e["state"] for e in man["points"]] == ["done", "done"]
    for e in man["points"]:
        info = read_run(out / e["files"][0])
        assert info["config"]["lr"] == e["params"]["lr"] and info["results"]["test_acc"] > 0.2
    rep = _cli("report", out)
    assert rep.returncode == 0 and "test_acc" in rep.stdout
    assert (out / "report" / "test_acc_vs_lr.png").is_file()


def test_batch_negatives_point_smoke_and_resume(tmp_path):
    """One point of the lecture experiment (CLAPP-s, K = 3) on a Fashion-MNIST smoke subset: an
    HDF5 run file with the probes; calling it again reuses the finished file."""
    if not _have("fashion_mnist"):
        pytest.skip("Fashion-MNIST not installed")
    from bioplausible.experiment import load_experiment, run_experiment

    mod = load_experiment("batch_negatives")
    rows = run_experiment(mod, ["arm=clapp_s", "negatives=3", "batch_size=32"], out=tmp_path,
                          smoke=True, progress=False)
    [row] = rows
    assert row["arm"] == "clapp_s" and row["negatives_per_sample"] == 3
    assert 0.1 < row["probe2x2_b3"] <= 1 and 0.1 < row["knn_b3"] <= 1
    info = read_run(row["run"])
    assert info["config"]["negatives"] == 3 and info["results"]["done"] == 1.0
    assert len(info["metrics"]["epoch"]["loss"]) == 1
    mtime = Path(row["run"]).stat().st_mtime_ns
    again = mod.run(dict(info["config"], progress=False), tmp_path, None)
    assert again[0]["probe2x2_b3"] == row["probe2x2_b3"]
    assert Path(row["run"]).stat().st_mtime_ns == mtime        # reused, not recomputed
    assert mod.negatives_per_sample({"arm": "infonce", "batch_size": 64, "negatives": 1}) == 126


@pytest.mark.slow
def test_batch_negatives_study_smoke(tmp_path):
    """``python experiments/batch_negatives.py --smoke``: the study through the sweep machinery
    (6 points on 2 workers), the aggregated table and the lecture figure."""
    if not _have("fashion_mnist"):
        pytest.skip("Fashion-MNIST not installed")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "batch_negatives.py"), "--smoke",
                        "--workers", "2", "--out", str(tmp_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    man = load_manifest(tmp_path)
    assert len(man["points"]) == 6 and all(e["state"] == "done" for e in man["points"])
    assert {e["params"]["arm"] for e in man["points"]} == {"infonce", "clapp_s", "random"}
    assert (tmp_path / "lecture_probe2x2_b3.png").is_file()
    assert (tmp_path / "report" / "probe2x2_b3_vs_batch_size.png").is_file()
    assert "| infonce" in r.stdout and "probe2x2_b3" in r.stdout
