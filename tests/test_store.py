"""HDF5 run files: round trip, growing metrics, atomic writes under SIGKILL, resume, clear errors."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from bioplausible.store import Run, find_runs, read_run, rng_from_state


def _state(rng, scale=1.0):
    return {
        "encoder/block0/conv/w": (scale * rng.standard_normal((3, 3, 1, 8))).astype(np.float32),
        "encoder/block0/conv/b": np.zeros(8, np.float32),
        "optim/exp_avg/0/w": rng.standard_normal(5).astype(np.float32),
        "optim/step": np.array(7, dtype=np.int64),
    }


def test_round_trip(tmp_path, rng):
    config = {"rule": "clapp", "lr": 3e-4, "blocks": [32, 64, 128]}
    state = _state(rng)
    gen = np.random.default_rng(3)
    gen.standard_normal(10)
    with Run.create(tmp_path / "runs", "clapp-s0", config, seed=11, recipe_text="[model]\nx=1\n") as run:
        assert run.path == tmp_path / "runs" / "clapp-s0.h5"
        run.log("epoch", epoch=0, loss=1.5, probe_acc=0.3)
        run.log("epoch", epoch=1, loss=1.2, probe_acc=0.4)
        run.log("batch", loss=2.0)
        run.save_result("probe", {"block1": 0.5, "block3": {"acc": 0.61, "curve": np.arange(4.0)}})
        run.save_result("note", "random init")
        run.save_result("confusion", np.eye(3, dtype=np.int64))
        run.checkpoint(state, {"epoch": 2, "batch": 0}, rng_state=gen)
    expected_next = gen.standard_normal(3)

    d = read_run(tmp_path / "runs" / "clapp-s0.h5")
    assert d["config"] == config
    assert d["seed"] == 11
    assert d["recipe"] == "[model]\nx=1\n"
    assert d["attrs"]["format"] == "bioplausible-run"
    for key in ("created", "git_revision", "hostname", "command"):
        assert isinstance(d["attrs"][key], str) and d["attrs"][key]
    assert set(d["versions"]) >= {"python", "numpy", "numba", "h5py", "bioplausible"}
    np.testing.assert_array_equal(d["metrics"]["epoch"]["epoch"], [0, 1])
    np.testing.assert_allclose(d["metrics"]["epoch"]["loss"], [1.5, 1.2])
    np.testing.assert_allclose(d["metrics"]["batch"]["loss"], [2.0])
    assert d["results"]["probe"]["block1"] == 0.5
    np.testing.assert_array_equal(d["results"]["probe"]["block3"]["curve"], np.arange(4.0))
    assert d["results"]["note"] == "random init"
    np.testing.assert_array_equal(d["results"]["confusion"], np.eye(3))
    assert d["checkpoint"]["step"] == {"epoch": 2, "batch": 0}

    run = Run.resume(tmp_path / "runs" / "clapp-s0.h5")
    loaded, step, rng_state = run.load_checkpoint()
    assert step == {"epoch": 2, "batch": 0}
    assert set(loaded) == set(state)
    for k in state:
        assert loaded[k].dtype == state[k].dtype
        np.testing.assert_array_equal(loaded[k], state[k])
    np.testing.assert_array_equal(rng_from_state(rng_state).standard_normal(3), expected_next)
    run.close()


def test_checkpoint_copies_state(tmp_path, rng):
    """The model keeps updating its arrays in place; the checkpoint must keep the old values."""
    state = _state(rng)
    w = state["encoder/block0/conv/w"]
    before = w.copy()
    run = Run.create(tmp_path, "r", {}, seed=0)
    run.checkpoint(state, {"epoch": 1})
    w += 1.0
    run.close()
    loaded, _, _ = Run.resume(tmp_path / "r.h5").load_checkpoint()
    np.testing.assert_array_equal(loaded["encoder/block0/conv/w"], before)


def test_metrics_grow_and_stay_aligned(tmp_path):
    run = Run.create(tmp_path, "grow", {}, seed=0, flush_interval=None)
    for i in range(5):
        run.log("epoch", epoch=i, loss=1.0 / (i + 1))
        if i == 2:
            run.log("epoch", epoch=i + 0.5)  # a row without loss
        run.flush()
        m = read_run(run.path)["metrics"]["epoch"]
        assert len(m["epoch"]) == len(m["loss"]) == i + 1 + (i >= 2)
    run.log("epoch", epoch=5, acc=0.9)  # a new key appears late
    run.close()
    m = read_run(run.path)["metrics"]["epoch"]
    assert len(m["epoch"]) == len(m["loss"]) == len(m["acc"]) == 7
    assert np.isnan(m["loss"][3]) and m["epoch"][3] == 2.5
    assert np.isnan(m["acc"][:6]).all() and m["acc"][6] == 0.9
    with h5py.File(run.path, "r") as f:  # resizable datasets, as the design asks
        assert f["metrics/epoch/loss"].maxshape == (None,)


def test_log_is_in_memory_until_flush(tmp_path):
    run = Run.create(tmp_path, "lazy", {}, seed=0, flush_interval=None)
    run.log("epoch", loss=1.0)
    assert read_run(run.path)["metrics"] == {}
    run.flush()
    assert len(read_run(run.path)["metrics"]["epoch"]["loss"]) == 1
    run.flush_interval = 0.0  # time-based flush from log()
    run.log("epoch", loss=2.0)
    assert len(read_run(run.path)["metrics"]["epoch"]["loss"]) == 2
    run.close()
    with pytest.raises(RuntimeError, match="closed"):
        run.log("epoch", loss=3.0)


def test_existing_file_refused_and_overwrite(tmp_path):
    Run.create(tmp_path, "dup", {"a": 1}, seed=0).close()
    with pytest.raises(FileExistsError, match="--resume"):
        Run.create(tmp_path, "dup", {"a": 2}, seed=0)
    assert read_run(tmp_path / "dup.h5")["config"] == {"a": 1}
    Run.create(tmp_path, "dup", {"a": 3}, seed=0, overwrite=True).close()
    assert read_run(tmp_path / "dup.h5")["config"] == {"a": 3}


def test_resume_drops_rows_after_checkpoint(tmp_path, rng):
    run = Run.create(tmp_path, "res", {}, seed=0, flush_interval=None)
    for epoch in range(3):
        run.log("epoch", epoch=epoch, loss=float(epoch))
        run.log("batch", loss=float(epoch))
        run.log("batch", loss=float(epoch))
    run.checkpoint(_state(rng), {"epoch": 3})
    run.log("epoch", epoch=3, loss=3.0)  # logged, flushed, but not checkpointed
    run.log("late", x=1.0)               # a group that did not exist at the checkpoint
    run.save_result("partial", 0.1)
    run.close()
    assert len(read_run(run.path)["metrics"]["epoch"]["epoch"]) == 4

    resumed = Run.resume(run.path)
    np.testing.assert_array_equal(resumed.metrics("epoch")["epoch"], [0, 1, 2])
    assert resumed.n_rows("batch") == 6
    assert resumed.n_rows("late") == 0
    assert resumed.results["partial"] == 0.1
    resumed.log("epoch", epoch=3, loss=3.5)  # the resumed run recomputes epoch 3
    resumed.close()
    m = read_run(run.path)["metrics"]["epoch"]
    np.testing.assert_array_equal(m["epoch"], [0, 1, 2, 3])
    assert m["loss"][-1] == 3.5
    assert "resumed" in read_run(run.path)["attrs"]

    kept = Run.resume(run.path, truncate=False)  # to add results to a finished run
    assert kept.n_rows("epoch") == 4
    kept.close()


def test_resume_without_checkpoint_restarts_metrics(tmp_path):
    run = Run.create(tmp_path, "nock", {}, seed=0)
    run.log("epoch", loss=1.0)
    run.close()
    resumed = Run.resume(run.path)
    assert resumed.load_checkpoint() is None
    assert resumed.n_rows("epoch") == 0
    resumed.close()


def test_foreign_files_give_clear_errors(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5 at all")
    with pytest.raises(ValueError, match="notes.h5: not an HDF5 file"):
        read_run(text)
    foreign = tmp_path / "weights.h5"
    with h5py.File(foreign, "w") as f:
        f["w"] = np.zeros(3)
    with pytest.raises(ValueError, match="weights.h5: an HDF5 file but not a bioplausible run"):
        read_run(foreign)
    with pytest.raises(ValueError, match="weights.h5"):
        Run.resume(foreign)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_run(tmp_path / "missing.h5")
    # find_runs skips foreign files in folders
    Run.create(tmp_path / "sub", "real", {}, seed=0).close()
    assert find_runs(tmp_path) == [tmp_path / "sub" / "real.h5"]
    assert find_runs([tmp_path / "sub" / "real.h5", tmp_path / "sub"]) == [tmp_path / "sub" / "real.h5"]
    with pytest.raises(FileNotFoundError):
        find_runs(tmp_path / "nowhere")


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError):
        Run.create(tmp_path, "a/b", {}, seed=0)
    run = Run.create(tmp_path, "bad", {}, seed=0)
    with pytest.raises(TypeError, match="number"):
        run.log("epoch", loss="high")
    with pytest.raises(ValueError, match="clash"):
        run.checkpoint({"a": np.zeros(2), "a/b": np.zeros(2)}, {"epoch": 0})
    with pytest.raises(TypeError):
        run.save_result("obj", object())
    with pytest.raises(TypeError, match="JSON"):
        Run.create(tmp_path, "cfg", {"f": object()}, seed=0)
    run.close()


_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from bioplausible.store import Run

    out = sys.argv[1]
    rng = np.random.default_rng(0)
    run = Run.create(out, "crash", {"n": 1}, seed=0, flush_interval=0.0)
    print("ready", flush=True)
    epoch = 0
    while True:
        for b in range(3):
            run.log("batch", epoch=epoch, batch=b)
        run.log("epoch", epoch=epoch, loss=1.0 / (epoch + 1))
        w = np.full((256, 256), epoch, dtype=np.float32)   # 256 kB of "weights"
        run.checkpoint({"encoder/w": w, "optim/m": w + 0.5}, {"epoch": epoch + 1},
                       rng_state=rng)
        epoch += 1
""")


@pytest.mark.parametrize("trial", range(5))
def test_sigkill_leaves_consistent_file(tmp_path, trial):
    """Kill a process that logs and checkpoints in a tight loop at a random moment (SIGKILL):
    the file must open and hold a consistent last checkpoint and the metrics up to it."""
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                            env=env)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        delay = np.random.default_rng(trial).uniform(0.05, 0.6)
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    path = tmp_path / "crash.h5"
    d = read_run(path)
    assert d["config"] == {"n": 1}
    ck = d["checkpoint"]
    if ck is None:  # killed before the first checkpoint: still a valid file
        return
    n_done = ck["step"]["epoch"]
    assert n_done >= 1
    assert ck["metrics_rows"] == {"batch": 3 * n_done, "epoch": n_done}
    assert len(d["metrics"]["epoch"]["epoch"]) >= n_done
    assert len(d["metrics"]["batch"]["batch"]) >= 3 * n_done

    run = Run.resume(path)
    state, step, rng_state = run.load_checkpoint()
    assert step == {"epoch": n_done}
    np.testing.assert_array_equal(state["encoder/w"], np.full((256, 256), n_done - 1, np.float32))
    np.testing.assert_array_equal(state["optim/m"], state["encoder/w"] + 0.5)
    np.testing.assert_array_equal(run.metrics("epoch")["epoch"], np.arange(n_done))
    np.testing.assert_array_equal(run.metrics("batch")["epoch"], np.repeat(np.arange(n_done), 3))
    assert rng_state["bit_generator"] == "PCG64"
    run.close()
    # stale temporary files of the killed process are gone after resume and never listed
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    assert find_runs(tmp_path) == [path]


def test_zombie_writer_counts_as_dead(tmp_path):
    """A killed but unreaped writer (a zombie) must not protect its stale temporary file."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from bioplausible.store import _clean_stale_tmp, _pid_alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _pid_alive(child.pid)
        stale = tmp_path / f".run.h5.tmp-{child.pid}-abcd"
        stale.write_bytes(b"partial")
        os.kill(child.pid, signal.SIGKILL)
        time.sleep(0.2)                       # killed, not yet reaped: a zombie
        assert not _pid_alive(child.pid)
        assert _clean_stale_tmp(tmp_path / "run.h5") == [stale] and not stale.exists()
    finally:
        child.kill()
        child.wait()
