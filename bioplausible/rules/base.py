"""The rule contract: ``rule.step(encoder, batch) -> metrics``.

A rule owns what it needs besides the encoder (heads, predictors, its optimiser) and updates the
encoder's parameters in place.  ``batch`` is a dict with ``x`` (float32 NHWC, normalised), ``y``
(int64 labels; self-supervised rules ignore them) and ``rng`` (a ``numpy.random.Generator`` for
this batch only, so that a resumed run draws the same views as an uninterrupted one).

``state_dict``/``load_state_dict`` cover everything the rule owns (not the encoder), so that a
checkpoint is ``encoder.state_dict() | rule.state_dict()``.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError


class Rule:
    """Base class of every learning rule."""

    name = "rule"
    #: True when the rule never sends a gradient across a block boundary.
    local = False

    def __init__(self):
        self.modules: dict[str, list[dict]] = {}   # name -> list of param dicts (heads etc.)
        self.optimizers: dict = {}

    def step(self, encoder, batch: dict) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        out = {}
        for name, plist in self.modules.items():
            for i, p in enumerate(plist):
                for k, v in p.items():
                    out[f"rule/{name}/{i}/{k}"] = v.copy()
        for name, opt in self.optimizers.items():
            for k, v in opt.state_dict().items():
                out[f"optim/{name}/{k}"] = np.asarray(v).copy()
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]):
        for name, plist in self.modules.items():
            for i, p in enumerate(plist):
                for k, v in p.items():
                    key = f"rule/{name}/{i}/{k}"
                    if key not in state:
                        raise UserError(f"checkpoint has no {key!r}: it was written by another rule")
                    v[...] = state[key]
        for name, opt in self.optimizers.items():
            prefix = f"optim/{name}/"
            opt.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                 if k.startswith(prefix)})


def make_optimizer(params: list[dict], name: str, lr: float, weight_decay: float = 0.0,
                   momentum: float = 0.9):
    """``adam`` | ``adamw`` | ``sgd`` over a list of parameter dicts."""
    from ..optim import SGD, Adam

    name = name.lower()
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return Adam(params, lr=lr, weight_decay=weight_decay, decoupled=True)
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise UserError(f"unknown optimiser {name!r}; allowed: adam, adamw, sgd")
