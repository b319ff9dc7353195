"""A run killed with SIGKILL mid-epoch resumes from its last checkpoint and ends exactly where an
uninterrupted run ends; the file opens cleanly and no finished epoch's metrics are lost."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from bioplausible import encoders, store
    from bioplausible.rules.backprop import Supervised
    from bioplausible.trainer import fit

    out, kill_epoch, kill_batch, resume = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    # synthetic data (unit test only): two classes of 8x8 images differing in mean brightness
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 192)
    x = (rng.standard_normal((192, 8, 8, 1)) + y[:, None, None, None]).astype(np.float32)
    enc = encoders.build("conv3", (8, 8, 1), seed=0)
    rule = Supervised(enc, 2, lr=1e-3, seed=0)
    if resume == "yes":
        run = store.Run.resume(os.path.join(out, "r.h5"))
    else:
        run = store.Run.create(out, "r", {"test": True}, 0)

    def on_batch(epoch, b):
        if epoch == kill_epoch and b == kill_batch:
            os.kill(os.getpid(), signal.SIGKILL)

    def evaluate(encoder, rule, epoch):
        return {"test_acc": float((rule.predict(encoder, x) == y).mean())}

    fit(rule, enc, x, y, epochs=3, batch_size=16, seed=0, run=run, evaluate=evaluate,
        progress=False, checkpoint_seconds=0.0, on_batch=on_batch)
    run.close()
    np.save(os.path.join(out, "final.npy"), enc.blocks[2].layers[0].params["w"])
""")


def _run(tmp, *args):
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    from bioplausible.store import read_run

    ref_dir, dir_ = tmp_path / "ref", tmp_path / "killed"
    ref_dir.mkdir(), dir_.mkdir()
    ref = _run(ref_dir, -1, -1, "no")
    assert ref.returncode == 0, ref.stderr
    killed = _run(dir_, 1, 5, "no")              # dies in epoch 2, batch 6
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    info = read_run(dir_ / "r.h5")               # opens cleanly after SIGKILL
    np.testing.assert_array_equal(info["metrics"]["epoch"]["epoch"], [0, 1])  # epoch 1 kept
    resumed = _run(dir_, -1, -1, "yes")
    assert resumed.returncode == 0, resumed.stderr
    info = read_run(dir_ / "r.h5")
    ref_info = read_run(ref_dir / "r.h5")
    np.testing.assert_array_equal(info["metrics"]["epoch"]["epoch"], [0, 1, 2, 3])
    np.testing.assert_allclose(info["metrics"]["epoch"]["test_acc"],
                               ref_info["metrics"]["epoch"]["test_acc"])
    np.testing.assert_allclose(info["metrics"]["epoch"]["loss"],
                               ref_info["metrics"]["epoch"]["loss"], rtol=1e-5)
    np.testing.assert_array_equal(np.load(dir_ / "final.npy"), np.load(ref_dir / "final.npy"))
