"""Spiking networks: brian2 builders and numba kernels that agree with them step by step.

* :mod:`.params` -- parameter dataclasses (equations in their docstrings);
* :mod:`.numba_sim` -- :class:`SpikeTrain`, Poisson input, and the numba simulators
  (:class:`DiehlCookNumba`, :class:`RSTDPNumba`, :class:`DelayLIFNumba`);
* :mod:`.brian` -- the same networks built as brian2 objects (brian2 is an optional extra and is
  imported only when a builder is called);
* :mod:`.tasks` -- inputs and read-outs of the distal-reward and CA3 -> CA1 experiments.

Importing this package imports neither brian2 nor compiles any kernel.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "SpikeTrain": "numba_sim", "poisson_train": "numba_sim", "DiehlCookNumba": "numba_sim",
    "RSTDPNumba": "numba_sim", "DelayLIFNumba": "numba_sim", "normalize_columns": "numba_sim",
    "DiehlCookParams": "params", "RSTDPParams": "params", "CA3CA1Params": "params",
    "SpikingError": "params",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
