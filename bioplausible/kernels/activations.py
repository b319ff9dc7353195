"""Element-wise activation kernels, forward and fused backward ``dx = dy * rho'(a)``.

Every backward is written in terms of the *output* ``y = rho(a)`` -- the value a post-synaptic
neuron actually has -- so a layer caches only ``y``:

=========  ==========================  ==============================
rho        rho(a)                      rho'(a) from y
=========  ==========================  ==============================
relu       max(a, 0)                   [y > 0]
leaky      a if a > 0 else s*a, s>=0   1 if y > 0 else s
tanh       tanh(a)                     1 - y^2
sigmoid    1 / (1 + exp(-a))           y (1 - y)
softplus   log(1 + exp(a))             1 - exp(-y)
=========  ==========================  ==============================

Transcendental forwards (tanh, sigmoid, softplus) are left to numpy's SIMD ufuncs; numba does the
fused passes that numpy would need several temporaries for.  All kernels work on flat (1-D)
C-contiguous arrays of one float dtype; scalars are passed in that same dtype.  They are serial and
cached: memory-bound element-wise loops gain little from a second thread, and cached kernels cost
no compile time after the first run on a machine.
"""
from __future__ import annotations

import numpy as np

from ._config import jit

__all__ = [
    "relu_fwd", "relu_bwd", "leaky_relu_fwd", "leaky_relu_bwd", "tanh_bwd", "sigmoid_bwd",
    "softplus_bwd",
]


@jit
def relu_fwd(x, y):  # pragma: no cover - compiled
    """y = max(x, 0); NaN stays NaN."""
    for t in range(x.shape[0]):
        v = x[t]
        if v <= 0:
            y[t] = 0
        else:
            y[t] = v


@jit
def relu_bwd(dy, y, dx):  # pragma: no cover - compiled
    """dx = dy * [y > 0]."""
    for t in range(dy.shape[0]):
        if y[t] > 0:
            dx[t] = dy[t]
        else:
            dx[t] = 0


@jit
def leaky_relu_fwd(x, slope, y):  # pragma: no cover - compiled
    """y = x if x > 0 else slope * x."""
    for t in range(x.shape[0]):
        v = x[t]
        y[t] = v if v > 0 else slope * v


@jit
def leaky_relu_bwd(dy, y, slope, dx):  # pragma: no cover - compiled
    """dx = dy if y > 0 else slope * dy (valid for slope >= 0, where sign(y) = sign(a))."""
    for t in range(dy.shape[0]):
        dx[t] = dy[t] if y[t] > 0 else slope * dy[t]


@jit
def tanh_bwd(dy, y, dx):  # pragma: no cover - compiled
    """dx = dy * (1 - y^2)."""
    one = y.dtype.type(1)
    for t in range(dy.shape[0]):
        v = y[t]
        dx[t] = dy[t] * (one - v * v)


@jit
def sigmoid_bwd(dy, y, dx):  # pragma: no cover - compiled
    """dx = dy * y * (1 - y)."""
    one = y.dtype.type(1)
    for t in range(dy.shape[0]):
        v = y[t]
        dx[t] = dy[t] * (v * (one - v))


@jit
def softplus_bwd(dy, y, dx):  # pragma: no cover - compiled
    """dx = dy * sigmoid(a) = dy * (1 - exp(-y)) since y = softplus(a)."""
    for t in range(dy.shape[0]):
        dx[t] = -dy[t] * np.expm1(-y[t])
