"""Supervised backprop on the protocol encoder: the reference for every local rule.

Reproduces the supervised row of the comparison protocol (../shared/PROTOCOL.md): ``conv3``,
batch 256, Adam 1e-3, cross-entropy on a linear read-out of the flattened block-3 output.
Defaults (Fashion-MNIST, 5 epochs) should give a test accuracy of about 91 % (an independent
PyTorch implementation of the same network reaches about 91 %); ``--set dataset=cifar10`` runs the
same on CIFAR-10.

    python experiments/supervised.py --out runs/supervised
    bioplausible run supervised --set dataset=cifar10 --set epochs=5
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULTS = {
    "dataset": "fashion_mnist",
    "model": "conv3",
    "epochs": 5,
    "batch_size": 256,
    "lr": 1e-3,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "head": "flatten",
    "seed": 0,
    "n_train": 0,       # 0 = the whole training set
    "n_test": 0,        # 0 = the whole test set
    "max_batches": 0,   # 0 = full epochs
    "progress": True,
}
SMOKE = {"epochs": 2, "n_train": 1024, "n_test": 512, "max_batches": 3, "batch_size": 64}
CHOICES = {"dataset": ["fashion_mnist", "cifar10", "mnist"], "optimizer": ["adam", "adamw", "sgd"],
           "head": ["flatten", "gap", "pool2"]}


def run(cfg: dict, out: Path, resume: Path | None = None) -> list[dict]:
    from bioplausible import encoders
    from bioplausible.data_prep import prepare
    from bioplausible.experiment import open_run
    from bioplausible.plots import learning_curves
    from bioplausible.rules.backprop import Supervised
    from bioplausible.trainer import fit

    data = prepare(cfg["dataset"], n_train=cfg["n_train"], n_test=cfg["n_test"], seed=cfg["seed"])
    enc = encoders.build(cfg["model"], data.in_shape, seed=cfg["seed"])
    rule = Supervised(enc, data.n_classes, lr=cfg["lr"], optimizer=cfg["optimizer"],
                      weight_decay=cfg["weight_decay"], head=cfg["head"], seed=cfg["seed"])
    name = f"supervised-{cfg['dataset']}-{cfg['model']}-s{cfg['seed']}"
    run_file = open_run(out, name, cfg, cfg["seed"], enc.recipe_text, resume)

    def evaluate(encoder, rule, epoch):
        pred = rule.predict(encoder, data.x_test)
        return {"test_acc": float((pred == data.y_test).mean())}

    with run_file:
        last = fit(rule, enc, data.x_train, data.y_train, epochs=cfg["epochs"],
                   batch_size=cfg["batch_size"], seed=cfg["seed"], run=run_file,
                   evaluate=evaluate, progress=cfg["progress"],
                   max_batches=cfg["max_batches"] or None)
        run_file.save_result("test_acc", last["test_acc"])
        path = run_file.path
    fig = learning_curves([path], out / f"{name}.png", metric="test_acc")
    return [{"dataset": cfg["dataset"], "model": cfg["model"], "epochs": last["epoch"],
             "test_acc": last["test_acc"], "train_loss": last["loss"],
             "samples/s": last["samples_per_s"], "run": str(path), "figure": str(fig)}]


if __name__ == "__main__":
    from bioplausible.experiment import main_for

    raise SystemExit(main_for(__name__))
