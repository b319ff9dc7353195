"""bioplausible: biologically plausible local learning, compared with backprop on the same encoder.

Importing the package is cheap: it compiles nothing and imports neither numba kernels, brian2 nor
torch.  Submodules load on first use::

    import bioplausible as bp
    enc = bp.encoders.build("conv3", in_shape=(28, 28, 1), seed=0)
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "cli", "data_prep", "datasets", "encoders", "errors", "evaluate", "experiment", "kernels",
    "layers", "losses", "optim", "plots", "protocol", "rules", "store", "trainer", "views",
    "dynamics", "hippocampus", "rl", "spiking", "sweep",
}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'bioplausible' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
