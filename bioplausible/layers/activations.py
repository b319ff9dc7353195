"""Element-wise activation layers.

Every activation caches its **output** ``y = rho(a)`` (no copy: the cache *is* ``y``) and computes
its derivative from it.  A local learning rule that needs the post-synaptic factor rho'(a_j) calls::

    y, cache = act.forward(a)
    rho_prime = act.grad_from_output(cache)      # == act.derivative(a)

``derivative(a)`` gives the same from the pre-activation.  Conventions at kinks follow PyTorch:
ReLU'(0) = 0, LeakyReLU'(0) = slope.
"""
from __future__ import annotations

import numpy as np

from ..kernels import activations as K
from ._parallel import plan, run
from ._util import PooledLayer, check_float, check_grad
from .base import Layer


class Activation(PooledLayer, Layer):
    """Base class: shape-preserving, no parameters, cache = output ``y``."""

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def __repr__(self):
        return f"{type(self).__name__}()"

    # subclasses implement _fwd(x1, y1) and _bwd(dy1, y1, dx1) on flat arrays
    def forward(self, x):
        x = check_float(x, type(self).__name__, "a float32 array")
        y = self._get(x.shape, x.dtype)
        x1, y1 = x.reshape(-1), y.reshape(-1)
        run(plan(x1.size, x1.size), lambda i, a, b: self._fwd(x1[a:b], y1[a:b]))
        return y, y

    def backward(self, cache, dy, need_dx: bool = True):
        y = cache
        dy = check_grad(dy, y.shape, y.dtype, type(self).__name__)
        if not need_dx:
            return None, {}
        dx = self._get(y.shape, y.dtype)
        dy1, y1, dx1 = dy.reshape(-1), y.reshape(-1), dx.reshape(-1)
        run(plan(dy1.size, dy1.size), lambda i, a, b: self._bwd(dy1[a:b], y1[a:b], dx1[a:b]))
        return dx, {}

    def grad_from_output(self, y: np.ndarray) -> np.ndarray:
        """rho'(a) computed from the cached output y = rho(a) (new array, y's dtype)."""
        y = check_float(y, type(self).__name__, "an output array")
        d = np.empty_like(y)
        self._bwd(np.ones(y.size, y.dtype), y.reshape(-1), d.reshape(-1))
        return d

    def derivative(self, a: np.ndarray) -> np.ndarray:
        """rho'(a) from the pre-activation a."""
        return self.grad_from_output(np.array(self.forward(a)[0]))


class Identity(Activation):
    r"""``y = a``, ``rho'(a) = 1``."""

    def forward(self, x):
        x = check_float(x, "Identity", "a float32 array")
        return x, x

    def backward(self, cache, dy, need_dx: bool = True):
        dy = check_grad(dy, cache.shape, cache.dtype, "Identity")
        return (dy if need_dx else None), {}

    def grad_from_output(self, y):
        return np.ones_like(y)


class ReLU(Activation):
    r"""``y = max(a, 0)``, ``rho'(a) = [a > 0] = [y > 0]``."""

    def _fwd(self, x, y):
        K.relu_fwd(x, y)

    def _bwd(self, dy, y, dx):
        K.relu_bwd(dy, y, dx)

    def grad_from_output(self, y):
        return (np.asarray(y) > 0).astype(np.asarray(y).dtype)


class LeakyReLU(Activation):
    r"""``y = a if a > 0 else slope*a`` (slope >= 0), ``rho'(a) = 1 if y > 0 else slope``."""

    def __init__(self, slope: float = 0.01):
        super().__init__()
        slope = float(slope)
        if not slope >= 0:
            raise ValueError(f"LeakyReLU slope must be >= 0 (so that sign(y) = sign(a)), got {slope}")
        self.slope = slope

    def __repr__(self):
        return f"LeakyReLU(slope={self.slope})"

    def _fwd(self, x, y):
        K.leaky_relu_fwd(x, x.dtype.type(self.slope), y)

    def _bwd(self, dy, y, dx):
        K.leaky_relu_bwd(dy, y, y.dtype.type(self.slope), dx)


class Tanh(Activation):
    r"""``y = tanh(a)``, ``rho'(a) = 1 - y^2``."""

    def _fwd(self, x, y):
        np.tanh(x, out=y)

    def _bwd(self, dy, y, dx):
        K.tanh_bwd(dy, y, dx)


class Sigmoid(Activation):
    r"""``y = 1 / (1 + exp(-a))`` (computed without overflow), ``rho'(a) = y (1 - y)``."""

    def _fwd(self, x, y):
        # e = exp(-|a|) in (0, 1];  y = 1/(1+e) for a >= 0,  e/(1+e) for a < 0
        np.abs(x, out=y)
        np.negative(y, out=y)
        np.exp(y, out=y)
        num = np.where(x >= 0, y.dtype.type(1), y)
        np.add(y, 1, out=y)
        np.divide(num, y, out=y)

    def _bwd(self, dy, y, dx):
        K.sigmoid_bwd(dy, y, dx)


class Softplus(Activation):
    r"""``y = log(1 + exp(a))``, ``rho'(a) = sigmoid(a) = 1 - exp(-y)``."""

    def _fwd(self, x, y):
        np.logaddexp(x, x.dtype.type(0), out=y)

    def _bwd(self, dy, y, dx):
        K.softplus_bwd(dy, y, dx)
