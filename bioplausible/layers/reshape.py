"""Shape-only layers."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._util import check_float, check_grad
from .base import Layer, ShapeError


class FlattenCache(NamedTuple):
    x_shape: tuple
    dtype: np.dtype


class Flatten(Layer):
    r"""``(N, d1, d2, ...) -> (N, d1*d2*...)`` in C order (a view, no copy).

    On NHWC images the feature index is ``(h*W + w)*C + c`` -- channels fastest, unlike PyTorch's
    NCHW ``flatten`` (``(c*H + h)*W + w``); transpose weights accordingly when importing them.
    Backward reshapes ``dy`` back to the input's shape.
    """

    def output_shape(self, input_shape: tuple) -> tuple:
        return (int(np.prod(input_shape, dtype=np.int64)),)

    def forward(self, x):
        x = check_float(x, "Flatten", "a float32 array with a batch axis")
        if x.ndim < 1:
            raise ShapeError(f"Flatten expects an array with a batch axis, got shape {x.shape}")
        return x.reshape(x.shape[0], -1), FlattenCache(x.shape, x.dtype)

    def backward(self, cache: FlattenCache, dy, need_dx: bool = True):
        n = cache.x_shape[0]
        dy = check_grad(dy, (n,) + self.output_shape(cache.x_shape[1:]), cache.dtype, "Flatten")
        return (dy.reshape(cache.x_shape) if need_dx else None), {}

    def __repr__(self):
        return "Flatten()"
