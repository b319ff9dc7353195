"""The training loop shared by every rule: minibatches, progress, evaluation, checkpoints, resume.

Randomness is derived from the run's seed and the position in training, never from a running
global state: epoch ``e`` shuffles with ``default_rng([seed, 2, e])`` and batch ``b`` of that epoch
draws its views/noise from ``default_rng([seed, 3, e, b])``.  A run resumed from a checkpoint at
(epoch, batch) therefore continues exactly as the uninterrupted run would have.
"""
from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np

from .errors import UserError


class Diverged(UserError):
    """Training produced a non-finite loss (too large a learning rate?)."""


def _progress(total, desc, enabled, initial=0):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, initial=initial, disable=not enabled, leave=False,
                dynamic_ncols=True, mininterval=1.0)


def fit(rule, encoder, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, seed: int,
        run=None, evaluate=None, progress: bool = True, checkpoint_seconds: float = 60.0,
        log_every: int = 20, max_batches: int | None = None, on_batch=None) -> dict:
    """Train ``encoder`` with ``rule`` for ``epochs`` epochs; returns the last epoch's metrics.

    ``evaluate(encoder, rule, epoch) -> dict`` runs after each epoch and its scalars are logged
    with the epoch's training metrics under the ``epoch`` group of ``run`` (a ``store.Run``).
    With a ``run`` that holds a checkpoint, training resumes from it.  ``max_batches`` limits the
    batches per epoch (smoke runs).  ``on_batch(epoch, batch)`` is a hook (used by tests to stop a
    run mid-epoch).
    """
    n = len(x)
    if len(y) != n:
        raise UserError(f"{n} images but {len(y)} labels")
    if batch_size < 1 or batch_size > n:
        raise UserError(f"batch_size must be between 1 and the number of samples ({n}), "
                        f"got {batch_size}")
    n_batches = n // batch_size
    if max_batches:
        n_batches = min(n_batches, max_batches)

    start_epoch, start_batch, sums, last = 0, 0, {}, {}
    if run is not None:
        ck = run.load_checkpoint()
        if ck is not None:
            state, step, _ = ck
            encoder.load_state_dict(state)
            rule.load_state_dict(state)
            start_epoch, start_batch = int(step["epoch"]), int(step["batch"])
            sums = dict(step.get("sums", {}))

    def checkpoint(epoch, batch):
        if run is not None:
            run.checkpoint(encoder.state_dict() | rule.state_dict(),
                           {"epoch": epoch, "batch": batch, "sums": sums})

    if run is not None and start_epoch >= epochs and run.n_rows("epoch"):
        done = run.metrics("epoch")            # finished earlier: report its last epoch
        return {k: float(v[-1]) for k, v in done.items()}

    if evaluate is not None and run is not None and start_epoch == 0 and start_batch == 0 \
            and not run.n_rows("epoch"):
        # epoch 0: the initial encoder, so that learning curves start at the random-init level
        run.log("epoch", epoch=0, **evaluate(encoder, rule, 0))

    # peak memory of the arm: numpy allocations from here on (persistent layer buffers included)
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    for epoch in range(start_epoch, epochs):
        perm = np.random.default_rng([seed, 2, epoch]).permutation(n)
        b0 = start_batch if epoch == start_epoch else 0
        if b0 == 0:
            sums = {}
        t_train = sums.pop("_time", 0.0)
        tick = last_ck = time.perf_counter()
        bar = _progress(n_batches, f"{rule.name} epoch {epoch + 1}/{epochs}", progress, b0)
        for b in range(b0, n_batches):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            batch = {"x": x[idx], "y": y[idx], "rng": np.random.default_rng([seed, 3, epoch, b])}
            m = rule.step(encoder, batch)
            for k, v in m.items():
                if not math.isfinite(v):
                    if not was_tracing:
                        tracemalloc.stop()
                    raise Diverged(f"{rule.name}: {k} became {v} at epoch {epoch + 1}, batch {b}; "
                                   "lower the learning rate (--set lr=...)")
                sums[k] = sums.get(k, 0.0) + v
            sums["_n"] = sums.get("_n", 0) + 1
            bar.update(1)
            if run is not None and (b + 1) % log_every == 0:
                run.log("train", epoch=epoch + (b + 1) / n_batches, **m)
            if on_batch is not None:
                on_batch(epoch, b)
            now = time.perf_counter()
            if run is not None and now - last_ck > checkpoint_seconds and b + 1 < n_batches:
                sums["_time"] = t_train + now - tick
                checkpoint(epoch, b + 1)
                sums.pop("_time")
                last_ck = now
        bar.close()
        t_train += time.perf_counter() - tick
        _, peak = tracemalloc.get_traced_memory()
        count = max(sums.pop("_n", 1), 1)
        last = {k: v / count for k, v in sums.items()}
        last["epoch"] = epoch + 1
        last["samples_per_s"] = n_batches * batch_size / max(t_train, 1e-9)
        last["train_seconds"] = t_train
        last["peak_mem_mb"] = peak / 2**20     # since the start of training (this session)
        if evaluate is not None:
            last.update(evaluate(encoder, rule, epoch + 1))
            tracemalloc.reset_peak()           # evaluation memory is not training memory
        if run is not None:
            run.log("epoch", **last)
        sums = {}
        checkpoint(epoch + 1, 0)
    if not was_tracing:
        tracemalloc.stop()
    return last
