"""SYNTHETIC test experiment for tests/test_sweep.py (not a scientific experiment; unit tests only).

Logistic regression trained by minibatch SGD on two synthetic Gaussian blobs, written like a real
experiment script (DEFAULTS, SMOKE, CHOICES, ``run(cfg, out, resume)``) and using the real run-file
machinery: ``experiment.open_run`` (one HDF5 file), ``Run.log``, a ``Run.checkpoint`` after every
epoch, and resume from that checkpoint.  Results depend only on (lr, seed, epochs, ...);
``sleep`` only slows each epoch down so that tests can kill a worker or the sweep mid-run.
``fail_lr`` makes the point with that learning rate raise (to test error recording).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

DEFAULTS = {
    "lr": 0.1,
    "epochs": 6,
    "n": 256,
    "dim": 8,
    "batch_size": 32,
    "seed": 0,
    "sleep": 0.0,        # seconds per epoch (test timing only; never changes a number)
    "fail_lr": -1.0,     # the point with this lr raises (synthetic failure)
    "opt": "sgd",
    "progress": True,
}
SMOKE = {"epochs": 3}
CHOICES = {"opt": ["sgd"]}


def _data(seed: int, n: int, dim: int):
    rng = np.random.default_rng([seed, 1])
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, dim)) + 0.8 * (2 * y[:, None] - 1)
    return x, y


def run(cfg: dict, out: Path, resume: Path | None = None) -> list[dict]:
    from bioplausible.experiment import open_run

    if cfg["lr"] == cfg["fail_lr"]:
        raise ValueError(f"synthetic failure for lr={cfg['lr']}")
    seed = cfg["seed"]
    x, y = _data(seed, cfg["n"], cfg["dim"])
    w = np.random.default_rng([seed, 2]).standard_normal(cfg["dim"]) * 0.01
    b = np.zeros(1)
    run_file = open_run(out, f"toy-lr{cfg['lr']}-s{seed}", cfg, seed, "", resume)
    with run_file:
        start = 0
        ck = run_file.load_checkpoint()
        if ck is not None:
            state, step, _ = ck
            w, b, start = state["w"], state["b"], int(step["epoch"])
        for epoch in range(start, cfg["epochs"]):
            perm = np.random.default_rng([seed, 3, epoch]).permutation(len(x))
            for i in range(0, len(x), cfg["batch_size"]):
                idx = perm[i:i + cfg["batch_size"]]
                p = 1 / (1 + np.exp(-(x[idx] @ w + b[0])))
                g = p - y[idx]
                w = w - cfg["lr"] * x[idx].T @ g / len(idx)
                b = b - cfg["lr"] * np.array([g.mean()])
            time.sleep(cfg["sleep"])
            p = 1 / (1 + np.exp(-(x @ w + b[0])))
            loss = float(-np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12)))
            acc = float(np.mean((p > 0.5) == y))
            run_file.log("epoch", epoch=epoch + 1, loss=loss, test_acc=acc)
            run_file.checkpoint({"w": w, "b": b}, {"epoch": epoch + 1})
        m = run_file.metrics("epoch")
        run_file.save_result("test_acc", float(m["test_acc"][-1]))
        path = run_file.path
    return [{"lr": cfg["lr"], "seed": seed, "test_acc": float(m["test_acc"][-1]),
             "loss": float(m["loss"][-1]), "weight_norm": float(np.linalg.norm(w)),
             "run": str(path)}]


if __name__ == "__main__":
    from bioplausible.experiment import main_for

    raise SystemExit(main_for(__name__))
