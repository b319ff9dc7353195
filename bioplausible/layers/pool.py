"""Pooling layers on NHWC images (no padding, floor mode, like PyTorch's defaults)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels.pool import (avgpool_bwd_kernel, avgpool_fwd_kernel, maxpool_bwd_kernel,
                            maxpool_fwd_kernel)
from ._parallel import plan, run
from ._util import PooledLayer, check_float, check_grad, pair
from .base import Layer, ShapeError


class MaxPoolCache(NamedTuple):
    """arg : (N, Ho, Wo, C) int32, window index ``i*kw + j`` of each maximum (input pixel
    ``(oh*sh + i, ow*sw + j)``); y : the output; x_shape : the input's shape."""
    arg: np.ndarray
    y: np.ndarray
    x_shape: tuple


class PoolCache(NamedTuple):
    x_shape: tuple
    dtype: np.dtype


class _Pool2d(PooledLayer, Layer):
    _name = "Pool2d"

    def __init__(self, size, stride=None):
        super().__init__()
        self.size = pair(size, "size", self._name)
        self.stride = self.size if stride is None else pair(stride, "stride", self._name)

    def __repr__(self):
        return f"{type(self).__name__}(size={self.size}, stride={self.stride})"

    def output_shape(self, input_shape: tuple) -> tuple:
        if len(input_shape) != 3:
            raise ShapeError(f"{self._name} expects per-sample shape (H, W, C), got "
                             f"{tuple(input_shape)}")
        h, w, c = input_shape
        (kh, kw), (sh, sw) = self.size, self.stride
        if h < kh or w < kw:
            raise ShapeError(f"{self._name} window {kh}x{kw} does not fit a {h}x{w} image")
        return ((h - kh) // sh + 1, (w - kw) // sw + 1, c)

    def _check(self, x):
        x = check_float(x, self._name, "NHWC float32 input")
        if x.ndim != 4:
            raise ShapeError(f"{self._name} expects NHWC float32 input (N, H, W, C), got shape "
                             f"{x.shape}")
        return x, (x.shape[0],) + self.output_shape(x.shape[1:])


class MaxPool2d(_Pool2d):
    r"""Max-pooling  ``y[n,oh,ow,c] = max_{i<kh, j<kw} x[n, oh*sh+i, ow*sw+j, c]``.

    ``stride`` defaults to ``size``.  Backward routes ``dy`` to the (first) maximum of each window:
    ``dx[n, oh*sh+i*, ow*sw+j*, c] += dy[n,oh,ow,c]``.  Cache: :class:`MaxPoolCache` with the int32
    ``arg`` (window index ``i*kw + j`` of each maximum) -- e.g. for a local rule that needs to know
    which pre-pool neuron won.
    """
    _name = "MaxPool2d"
    _relu = False

    def forward(self, x):
        x, out_shape = self._check(x)
        y = self._get(out_shape, x.dtype)
        arg = self._get(out_shape, np.int32)
        (kh, kw), (sh, sw) = self.size, self.stride
        relu = self._relu

        def part(i, b0, b1):
            if b1 > b0 and y.size:
                maxpool_fwd_kernel(x[b0:b1], kh, kw, sh, sw, relu, y[b0:b1], arg[b0:b1])

        run(plan(x.shape[0], x.size), part)
        return y, MaxPoolCache(arg, y, x.shape)

    def backward(self, cache: MaxPoolCache, dy, need_dx: bool = True):
        dy = check_grad(dy, cache.y.shape, cache.y.dtype, self._name)
        if not need_dx:
            return None, {}
        dx = self._get(cache.x_shape, dy.dtype)
        (kh, kw), (sh, sw) = self.size, self.stride
        arg, y, relu = cache.arg, cache.y, self._relu

        def part(i, b0, b1):
            if b1 <= b0:
                return
            if dy.size:
                maxpool_bwd_kernel(dy[b0:b1], arg[b0:b1], y[b0:b1], relu, kh, kw, sh, sw,
                                   dx[b0:b1])
            else:
                dx[b0:b1] = 0

        run(plan(dx.shape[0], dx.size), part)
        return dx, {}

    def winner_mask(self, cache: MaxPoolCache) -> np.ndarray:
        """(N, H, W, C) float array: 1 at each window's maximum (that also passed the ReLU), else 0."""
        return self.backward(cache, np.ones(cache.y.shape, cache.y.dtype))[0].astype(bool).astype(
            cache.y.dtype)


class ReLUMaxPool2d(MaxPool2d):
    r"""Fused ``MaxPool2d(ReLU(x))`` in one pass (equal to ``ReLU(MaxPool2d(x))``).

    ``y[n,oh,ow,c] = max(0, max_{i,j} x[n, oh*sh+i, ow*sw+j, c])``; backward
    ``dx[winner] += dy * [y > 0]``.  Saves one full pass over the largest activation of a
    conv -> ReLU -> pool block in forward and two in backward.  ρ'(a) of the pooled neurons is
    :meth:`grad_from_output` ``(y) = [y > 0]``.
    """
    _name = "ReLUMaxPool2d"
    _relu = True

    @staticmethod
    def grad_from_output(y: np.ndarray) -> np.ndarray:
        """ReLU derivative ``[y > 0]`` of the pooled outputs, in y's dtype."""
        return (y > 0).astype(y.dtype)


class AvgPool2d(_Pool2d):
    r"""Average pooling  ``y[n,oh,ow,c] = 1/(kh kw) Σ_{i<kh, j<kw} x[n, oh*sh+i, ow*sw+j, c]``.

    ``stride`` defaults to ``size``.  Backward spreads ``dy/(kh kw)`` evenly over each window.
    """
    _name = "AvgPool2d"

    def forward(self, x):
        x, out_shape = self._check(x)
        y = self._get(out_shape, x.dtype)
        (kh, kw), (sh, sw) = self.size, self.stride
        if y.size:
            avgpool_fwd_kernel(x, kh, kw, sh, sw, y)
        return y, PoolCache(x.shape, x.dtype)

    def backward(self, cache: PoolCache, dy, need_dx: bool = True):
        (kh, kw), (sh, sw) = self.size, self.stride
        out_shape = (cache.x_shape[0],) + self.output_shape(cache.x_shape[1:])
        dy = check_grad(dy, out_shape, cache.dtype, self._name)
        if not need_dx:
            return None, {}
        dx = self._get(cache.x_shape, dy.dtype)
        if dy.size:
            avgpool_bwd_kernel(dy, kh, kw, sh, sw, dx)
        else:
            dx[...] = 0
        return dx, {}


class GlobalAvgPool(PooledLayer, Layer):
    r"""Global average pooling NHWC -> (N, C):  ``z[n,c] = 1/(HW) Σ_{h,w} x[n,h,w,c]``.

    Backward: ``dx[n,h,w,c] = dz[n,c] / (HW)``.  This is how a block's code z_l is read out.
    """

    def output_shape(self, input_shape: tuple) -> tuple:
        if len(input_shape) != 3:
            raise ShapeError(f"GlobalAvgPool expects per-sample shape (H, W, C), got "
                             f"{tuple(input_shape)}")
        return (input_shape[2],)

    def forward(self, x):
        x = check_float(x, "GlobalAvgPool", "NHWC float32 input")
        if x.ndim != 4:
            raise ShapeError(f"GlobalAvgPool expects NHWC float32 input (N, H, W, C), got shape "
                             f"{x.shape}")
        n, h, w, c = x.shape
        z = self._get((n, c), x.dtype)
        np.mean(x.reshape(n, h * w, c), axis=1, out=z)
        return z, PoolCache(x.shape, x.dtype)

    def backward(self, cache: PoolCache, dy, need_dx: bool = True):
        n, h, w, c = cache.x_shape
        dy = check_grad(dy, (n, c), cache.dtype, "GlobalAvgPool")
        if not need_dx:
            return None, {}
        dx = self._get(cache.x_shape, dy.dtype)
        np.multiply(dy.reshape(n, 1, 1, c), dy.dtype.type(1.0 / (h * w)) if h * w else 0, out=dx)
        return dx, {}
