"""Fully connected layer."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._blas import matmul
from ._util import ParamLayer, check_float, check_grad, positive_int, require_rng, uniform_init
from .base import Layer, ShapeError


class DenseCache(NamedTuple):
    """What :meth:`Dense.backward` (and a local rule) needs.

    x : (N, n_in) the pre-synaptic activity (the layer's input, not copied).
    """
    x: np.ndarray

    def take(self, rows) -> "DenseCache":
        """The cache of the samples ``rows`` only (a copy of their inputs)."""
        return DenseCache(np.take(self.x, rows, axis=0))


class Dense(ParamLayer, Layer):
    r"""Fully connected layer  ``y = x W + b``.

    .. math:: y_{nj} = \sum_i x_{ni} W_{ij} + b_j

    Parameters: ``w`` (n_in, n_out), ``b`` (n_out,) when ``bias``; both drawn from
    U(-1/sqrt(n_in), 1/sqrt(n_in)) (PyTorch's default) with the Generator ``rng``, ``w`` first.

    Backward:  dW = xᵀ dy,  db = Σ_n dy,  dx = dy Wᵀ.
    Cache: :class:`DenseCache` ``(x,)``; :meth:`weight_grads` turns any post-synaptic factor
    δ (N, n_out) into ``{"w": xᵀδ, "b": Σδ}`` -- the outer product a local rule needs.
    """

    def __init__(self, n_in: int, n_out: int, rng=None, bias: bool = True):
        super().__init__()
        self.n_in = positive_int(n_in, "n_in", "Dense")
        self.n_out = positive_int(n_out, "n_out", "Dense")
        self.bias = bool(bias)
        rng = require_rng(rng, "Dense")
        self.params = {"w": uniform_init(rng, (self.n_in, self.n_out), self.n_in)}
        if self.bias:
            self.params["b"] = uniform_init(rng, (self.n_out,), self.n_in)

    def output_shape(self, input_shape: tuple) -> tuple:
        if tuple(input_shape) != (self.n_in,):
            raise ShapeError(f"Dense expects inputs of shape ({self.n_in},) per sample, got "
                             f"{tuple(input_shape)}")
        return (self.n_out,)

    def _check(self, x):
        w = self.params["w"]
        expected = f"(N, {self.n_in}) {w.dtype.name} input"
        x = check_float(x, "Dense", expected, w.dtype)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            hint = " (use Flatten first)" if x.ndim > 2 else ""
            raise ShapeError(f"Dense expects {expected}, got shape {x.shape}{hint}")
        return x

    def forward(self, x):
        x = self._check(x)
        w = self.params["w"]
        y = self._get((x.shape[0], self.n_out), w.dtype)
        matmul(x, w, out=y)
        if self.bias:
            y += self.params["b"]
        return y, DenseCache(x)

    def weight_grads(self, cache: DenseCache, delta: np.ndarray) -> dict:
        """``{"w": xᵀ δ, "b": Σ_n δ}`` for a post-synaptic factor δ of the output's shape."""
        x = cache.x
        delta = check_grad(delta, (x.shape[0], self.n_out), x.dtype, "Dense")
        grads = {"w": matmul(x.T, delta)}
        if self.bias:
            grads["b"] = delta.sum(axis=0)
        return grads

    def weight_grads_rows(self, cache: DenseCache, delta: np.ndarray, rows) -> dict:
        """:meth:`weight_grads` of the samples ``rows`` only (``delta`` holds their δ, in that
        order): the copy of their inputs is small for a dense layer."""
        return self.weight_grads(cache.take(rows), delta)

    def backward(self, cache: DenseCache, dy, need_dx: bool = True):
        grads = self.weight_grads(cache, dy)
        dx = None
        if need_dx:
            dy = check_grad(dy, (cache.x.shape[0], self.n_out), cache.x.dtype, "Dense")
            dx = self._get(cache.x.shape, dy.dtype)
            matmul(dy, self.params["w"].T, out=dx)
        return dx, grads
