"""The evaluation of ``../shared/PROTOCOL.md`` on a frozen encoder.

For every block l (encoder frozen, features from the normalised images):

1. ``probe2x2_b{l}``: linear probe on the block output average-pooled to 2x2 and flattened;
2. ``probe_gap_b{l}``: the same probe on the code z_l (global average pool);
3. ``few10_b{L}`` / ``few100_b{L}``: probes with 10 and 100 labels per class on the last block's
   2x2 features, mean ± sd over 5 draws (keys ``..._sd`` hold the sd);
4. ``knn_b{L}``: kNN (k = 20, cosine) on the last block's codes;
plus per block the representation health: effective rank, dead units and the std of the normalised
code (collapse signal), with warnings.

``quick=True`` (used for learning curves after every epoch) fits the probes of the last block only,
on at most ``quick_train`` training images, and skips the few-label probes.
"""
from __future__ import annotations

import warnings

import numpy as np

from .encoders import Block


def extract(encoder, x: np.ndarray, batch_size: int = 500, grid: int = 2):
    """Per block: (2x2-pooled flattened features, GAP codes), both float32."""
    from .evaluate import pool_features

    pooled = [[] for _ in encoder.blocks]
    codes = [[] for _ in encoder.blocks]
    for i in range(0, len(x), batch_size):
        for l, h in enumerate(encoder.outputs(x[i:i + batch_size])):
            codes[l].append(Block.code(h).astype(np.float32))
            pooled[l].append(pool_features(h, grid).astype(np.float32) if h.ndim == 4
                             else h.astype(np.float32))
    return ([np.concatenate(p) for p in pooled], [np.concatenate(c) for c in codes])


def raw_pixel_features(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float32)


def evaluate_features(ftr, ytr, fte, yte, *, prefix: str, knn: bool = False, few: bool = False,
                      rng=None, l2: float = 1e-4) -> dict:
    from .evaluate import few_label_probe, knn_accuracy, linear_probe

    out = {f"{prefix}": linear_probe(ftr, ytr, fte, yte, l2=l2)["test_acc"]}
    if knn:
        out[f"knn_{prefix.split('_')[-1]}"] = knn_accuracy(ftr, ytr, fte, yte, k=20)
    if few:
        counts = np.bincount(ytr)
        for per in (10, 100):
            if counts[counts > 0].min() < per:      # tiny smoke subsets: not enough labels
                out[f"few{per}_{prefix.split('_')[-1]}"] = float("nan")
                continue
            r = few_label_probe(ftr, ytr, fte, yte, per_class=per, draws=5, rng=rng, l2=l2)
            out[f"few{per}_{prefix.split('_')[-1]}"] = r["mean"]
            out[f"few{per}_{prefix.split('_')[-1]}_sd"] = r["sd"]
    return out


def protocol_eval(encoder, data, *, quick: bool = False, quick_train: int = 10000,
                  seed: int = 0, l2: float = 1e-4, health: bool = True,
                  last_only: bool = False) -> dict:
    """Run the protocol's evaluation of ``encoder`` on ``data`` (a ``data_prep.Prepared``).

    ``last_only=True`` fits the last block's probes only, all of them (few-label included, on
    every training image): the same numbers the full evaluation gives for that block, cheaper."""
    from .evaluate import representation_report

    rng = np.random.default_rng([seed, 11])
    xtr, ytr = data.x_train, data.y_train
    if quick and len(xtr) > quick_train:
        idx = np.sort(rng.choice(len(xtr), quick_train, replace=False))
        xtr, ytr = xtr[idx], ytr[idx]
    ptr, ctr = extract(encoder, xtr)
    pte, cte = extract(encoder, data.x_test)
    L = len(encoder.blocks)
    out = {}
    blocks = [L - 1] if quick or last_only else range(L)
    for l in blocks:
        b = f"b{l + 1}"
        out.update(evaluate_features(ptr[l], ytr, pte[l], data.y_test, prefix=f"probe2x2_{b}",
                                     few=(l == L - 1 and not quick), rng=rng, l2=l2))
        out.update(evaluate_features(ctr[l], ytr, cte[l], data.y_test, prefix=f"probe_gap_{b}",
                                     knn=(l == L - 1), l2=l2))
    if health:
        for l in range(L):
            rep = representation_report(cte[l])
            out[f"eff_rank_b{l + 1}"] = float(rep["effective_rank"])
            out[f"dead_b{l + 1}"] = float(rep["dead_fraction"])
            out[f"collapse_std_b{l + 1}"] = float(rep["collapse_std"])
            for w in rep.get("warnings", []):
                warnings.warn(f"block {l + 1}: {w}", RuntimeWarning, stacklevel=2)
    return out


def pixel_eval(data, seed: int = 0, l2: float = 1e-4) -> dict:
    """Raw-pixel probe and kNN (the protocol's second floor)."""
    from .evaluate import knn_accuracy, linear_probe

    ftr, fte = raw_pixel_features(data.x_train), raw_pixel_features(data.x_test)
    return {"probe_pixels": linear_probe(ftr, data.y_train, fte, data.y_test, l2=l2)["test_acc"],
            "knn_pixels": knn_accuracy(ftr, data.y_train, fte, data.y_test, k=20)}
