"""The layer contract shared by every layer, block and learning rule.

A **layer** owns its parameters in ``self.params`` (a dict of C-contiguous float32 arrays) and
exposes::

    y, cache = layer.forward(x)                       # x, y: float32, images are NHWC
    dx, grads = layer.backward(cache, dy, need_dx)    # grads: dict with the keys of params

``backward`` never changes the parameters; ``need_dx=False`` skips the input gradient (a local rule
at the first layer of a block never needs it) and returns ``dx=None``.  ``cache`` is whatever the
layer needs for its backward (inputs, masks, im2col buffers); it is opaque to callers.

Images are laid out **NHWC** (batch, height, width, channels) so that a convolution is one im2col
followed by one BLAS matrix product whose output is already NHWC.  Convolution weights are
``(kh, kw, c_in, c_out)``.

A **block** (e.g. conv -> ReLU -> max-pool) is the unit of locality: a local rule never sends a
gradient across a block boundary.
"""
from __future__ import annotations

import numpy as np


class ShapeError(ValueError):
    """An input has the wrong shape or dtype; the message says what was expected."""


class Layer:
    """Base class.  Subclasses set ``self.params`` in ``__init__`` and implement forward/backward."""

    params: dict

    def __init__(self):
        self.params = {}

    def forward(self, x: np.ndarray):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, cache, dy: np.ndarray, need_dx: bool = True):  # pragma: no cover
        raise NotImplementedError

    def output_shape(self, input_shape: tuple) -> tuple:  # pragma: no cover - interface
        """Shape of one sample's output given one sample's input shape (no batch axis)."""
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)[0]

    def __repr__(self):
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.params.items())
        return f"{type(self).__name__}({shapes})"
