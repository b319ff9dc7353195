"""Layers with explicit forward and backward (see :mod:`bioplausible.layers.base` for the contract).

Images are NHWC float32; conv weights are ``(kh, kw, c_in, c_out)``.  Every layer returns
``(y, cache)`` from ``forward`` and ``(dx or None, grads)`` from ``backward``.  What a local rule can
read from the caches:

* :class:`Dense` / :class:`Conv2d`: the pre-synaptic input (``cache.x``; for conv the im2col matrix
  ``cache.cols`` / ``cache.x_cols``) and ``layer.weight_grads(cache, delta)`` = Σ x_i δ_j;
* activations: the cache is the output y; ``act.grad_from_output(y)`` = rho'(a);
* :class:`MaxPool2d`: ``cache.arg`` (window index of each maximum), ``layer.winner_mask(cache)``.

``LAYERS`` maps recipe names to classes.  Importing this package compiles nothing (numba kernels
compile on first call).
"""
from .activations import Activation, Identity, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from .base import Layer, ShapeError
from .conv import ConvCache, Conv2d
from .dense import Dense, DenseCache
from .pool import AvgPool2d, GlobalAvgPool, MaxPool2d, MaxPoolCache, ReLUMaxPool2d
from .reshape import Flatten

LAYERS = {
    "dense": Dense,
    "conv2d": Conv2d,
    "maxpool2d": MaxPool2d,
    "relu_maxpool2d": ReLUMaxPool2d,
    "avgpool2d": AvgPool2d,
    "gap": GlobalAvgPool,
    "flatten": Flatten,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "softplus": Softplus,
    "identity": Identity,
}

__all__ = [
    "Layer", "ShapeError", "Dense", "DenseCache", "Conv2d", "ConvCache", "MaxPool2d",
    "ReLUMaxPool2d", "MaxPoolCache", "AvgPool2d", "GlobalAvgPool", "Flatten", "Activation", "ReLU",
    "LeakyReLU", "Tanh", "Sigmoid", "Softplus", "Identity", "LAYERS",
]
