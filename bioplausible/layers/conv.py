"""2-D convolution on NHWC images: numba im2col + one BLAS matrix product."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels.conv import col2im_kernel, conv_out_size, im2col_kernel
from ._util import ParamLayer, check_float, check_grad, pair, positive_int, require_rng, uniform_init
from .base import Layer, ShapeError


_CHUNK_BYTES = 8 << 20  # size of the dy Wᵀ block that col2im consumes while it is still in cache


class ConvCache(NamedTuple):
    """What :meth:`Conv2d.backward` (and a local rule) needs.

    cols : (N*Ho*Wo, kh*kw*c_in [+1]) the im2col matrix: row ``(n*Ho + oh)*Wo + ow`` is the
           receptive field (pre-synaptic activity) of output pixel (n, oh, ow), column
           ``(i*kw + j)*c_in + c``.  With a bias, the last column is the constant input 1.
    x_shape : shape of the input (N, H, W, c_in).
    y_shape : shape of the output (N, Ho, Wo, c_out).
    k_in : kh*kw*c_in, the number of pre-synaptic inputs per output neuron.
    """
    cols: np.ndarray
    x_shape: tuple
    y_shape: tuple
    k_in: int

    @property
    def x_cols(self) -> np.ndarray:
        """The receptive fields without the bias column: (N*Ho*Wo, kh*kw*c_in) (a view)."""
        return self.cols[:, :self.k_in]


class Conv2d(ParamLayer, Layer):
    r"""2-D convolution (cross-correlation, like PyTorch) on NHWC images.

    .. math:: y_{n,o_h,o_w,d} = b_d + \sum_{i,j,c} W_{i,j,c,d}\; x_{n,\,o_h s_h - p_h + i,\; o_w s_w - p_w + j,\; c}

    with zeros outside the image.  ``kernel``, ``stride`` and ``padding`` are ints or (H, W)
    pairs; output size ``Ho = (H + 2 p_h - k_h) // s_h + 1``.

    Parameters: ``w`` (kh, kw, c_in, c_out), ``b`` (c_out,), drawn from U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) with fan_in = kh*kw*c_in (PyTorch's default), ``w`` first.

    Computation: ``cols = im2col(x)`` (numba, parallel), then one sgemm
    ``y = cols @ [W; b]`` -- the bias enters as a weight row on a constant-1 column of ``cols`` --
    whose (N*Ho*Wo, c_out) result is the NHWC output.  Backward: ``[dW; db] = colsᵀ dy`` (one
    sgemm); ``dx = col2im(dy Wᵀ)`` (sgemm + numba, in blocks of images so that ``dy Wᵀ`` is read
back from cache, not memory), skipped when ``need_dx=False``.

    Cache: :class:`ConvCache` with the im2col matrix ``cols`` (kept so backward does not recompute
    it).  :meth:`weight_grads` turns any post-synaptic factor δ of the output's shape into
    ``{"w", "b"}`` = Σ over positions of x_i δ_j, the update a local rule needs.
    """

    def __init__(self, c_in: int, c_out: int, kernel, stride=1, padding=0, rng=None,
                 bias: bool = True):
        super().__init__()
        self.c_in = positive_int(c_in, "c_in", "Conv2d")
        self.c_out = positive_int(c_out, "c_out", "Conv2d")
        self.kernel = pair(kernel, "kernel", "Conv2d")
        self.stride = pair(stride, "stride", "Conv2d")
        self.padding = pair(padding, "padding", "Conv2d", minimum=0)
        self.bias = bool(bias)
        rng = require_rng(rng, "Conv2d")
        kh, kw = self.kernel
        fan_in = kh * kw * self.c_in
        self.params = {"w": uniform_init(rng, (kh, kw, self.c_in, self.c_out), fan_in)}
        if self.bias:
            self.params["b"] = uniform_init(rng, (self.c_out,), fan_in)

    def __repr__(self):
        return (f"Conv2d({self.c_in}->{self.c_out}, kernel={self.kernel}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias})")

    # -- shapes ----------------------------------------------------------------------------
    def _out_hw(self, h, w):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return conv_out_size(h, kh, sh, ph), conv_out_size(w, kw, sw, pw)

    def output_shape(self, input_shape: tuple) -> tuple:
        if len(input_shape) != 3 or input_shape[2] != self.c_in:
            raise ShapeError(f"Conv2d expects per-sample shape (H, W, {self.c_in}), got "
                             f"{tuple(input_shape)}")
        ho, wo = self._out_hw(input_shape[0], input_shape[1])
        if ho < 1 or wo < 1:
            raise ShapeError(f"Conv2d kernel {self.kernel} with padding {self.padding} does not fit "
                             f"a {input_shape[0]}x{input_shape[1]} image")
        return (ho, wo, self.c_out)

    def _check(self, x):
        w = self.params["w"]
        expected = f"NHWC {w.dtype.name} input with {self.c_in} channels"
        x = check_float(x, "Conv2d", expected, w.dtype)
        if x.ndim != 4 or x.shape[3] != self.c_in:
            raise ShapeError(f"Conv2d expects {expected}, got shape {x.shape}")
        self.output_shape(x.shape[1:])
        return x

    # -- compute ---------------------------------------------------------------------------
    def _w_aug(self):
        w = self.params["w"]
        w2 = w.reshape(-1, self.c_out)
        if not self.bias:
            return w2
        return np.concatenate([w2, self.params["b"].reshape(1, -1).astype(w.dtype, copy=False)])

    def forward(self, x):
        x = self._check(x)
        n, h, w_, c = x.shape
        ho, wo = self._out_hw(h, w_)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        m = n * ho * wo
        k = kh * kw * c + int(self.bias)
        dtype = x.dtype
        cols = self._get((m, k), dtype)
        if m:
            im2col_kernel(x, kh, kw, sh, sw, ph, pw, cols)
        y = self._get((m, self.c_out), dtype)
        np.matmul(cols, self._w_aug(), out=y)
        return y.reshape(n, ho, wo, self.c_out), ConvCache(cols, x.shape, (n, ho, wo, self.c_out),
                                                       kh * kw * c)

    def weight_grads(self, cache: ConvCache, delta: np.ndarray) -> dict:
        """``{"w": Σ_pos x_cols ⊗ δ, "b": Σ_pos δ}`` for δ of the output's shape (N, Ho, Wo, c_out)."""
        delta = check_grad(delta, cache.y_shape, cache.cols.dtype, "Conv2d")
        d2 = delta.reshape(-1, self.c_out)
        g = cache.cols.T @ d2  # (K [+1], c_out): the bias gradient is the last row
        grads = {"w": np.ascontiguousarray(g[:cache.k_in]).reshape(self.params["w"].shape)}
        if self.bias:
            grads["b"] = g[-1].copy()
        return grads

    def backward(self, cache: ConvCache, dy, need_dx: bool = True):
        dy = check_grad(dy, cache.y_shape, cache.cols.dtype, "Conv2d")
        grads = self.weight_grads(cache, dy)
        if not need_dx:
            return None, grads
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        n = cache.x_shape[0]
        rows = cache.y_shape[1] * cache.y_shape[2]  # im2col rows per image
        w2 = self.params["w"].reshape(-1, self.c_out)
        d2 = dy.reshape(n, rows, self.c_out)
        dx = self._get(cache.x_shape, dy.dtype)
        # dcols = dy Wᵀ, then col2im, in chunks of images whose dcols stay in cache (~8 MB)
        per_img = max(1, rows * w2.shape[0] * dy.dtype.itemsize)
        chunk = int(max(1, min(n, _CHUNK_BYTES // per_img)))
        dcols = self._get((chunk * rows, w2.shape[0]), dy.dtype)
        dc = None
        for b0 in range(0, n, chunk):
            b1 = min(n, b0 + chunk)
            dc = dcols[:(b1 - b0) * rows]
            np.matmul(d2[b0:b1].reshape(-1, self.c_out), w2.T, out=dc)
            if dc.size:
                col2im_kernel(dc, kh, kw, sh, sw, ph, pw, dx[b0:b1])
            else:
                dx[b0:b1] = 0
        del dcols, dc  # back to the pool
        return dx, grads
