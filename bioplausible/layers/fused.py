"""A first block ``conv -> ReLU + max-pool`` computed in cache-sized blocks of images.

The first convolution of an image network has few inputs per unit (K = kh·kw·c_in = 9 or 27) but
the largest output of the network (N·H·W·32 floats: 26-34 MB at batch 256).  Run layer by layer,
that pre-pool activity ``a`` is written to memory by the convolution, read back by the pooling,
and in backward its gradient ``da`` is written by the pooling and read back by the weight
gradient -- four passes over the largest array, for a layer whose arithmetic is cheap.

Here both passes go through blocks of a few images whose ``a`` (or ``da``) stays in the core's L2
cache:

* forward, per block: im2col rows → one sgemm → ``a`` block → ReLU + max-pool kernel → ``y``, ``arg``;
* backward (weight gradient only -- the first block never needs dx), per block: max-pool gather
  kernel → ``da`` block → im2col rows → ``[dW; db] += colsᵀ da``.

The caches are exactly those of the layer-by-layer path (the convolution's input-keeping
:class:`~bioplausible.layers.conv.ConvCache`, the pool's
:class:`~bioplausible.layers.pool.MaxPoolCache` with ``x_shape`` = the shape of ``a``), so local
rules read them unchanged; ``a`` itself is never stored (nothing downstream needs it).
:class:`~bioplausible.encoders.Block` uses this path for blocks that :func:`fusable` accepts.
"""
from __future__ import annotations

import numpy as np

from ..kernels.conv import im2col_kernel
from ..kernels.pool import maxpool_bwd_kernel, maxpool_fwd_kernel
from ._blas import matmul
from ._parallel import plan, run
from ._util import check_grad

#: bytes of pre-pool activity per block of images (with its im2col rows it stays in a 2 MB L2;
#: 256-512 KB measured best on 28x28x1 and 32x32x3 images, 1-4 images per block)
BLOCK_BYTES = 384 << 10


def fusable(layers: list) -> bool:
    """True for ``[Conv2d keeping its input (few inputs per unit), MaxPool2d or ReLUMaxPool2d
    with non-overlapping windows]``."""
    from .conv import RECOMPUTE_MAX_K, Conv2d
    from .pool import MaxPool2d

    if len(layers) != 2 or type(layers[0]) is not Conv2d or not isinstance(layers[1], MaxPool2d):
        return False
    conv, pool = layers
    (kh, kw), (sh, sw) = pool.size, pool.stride
    return (conv.kernel[0] * conv.kernel[1] * conv.c_in <= RECOMPUTE_MAX_K
            and sh >= kh and sw >= kw)


def _work_plan(conv, n: int, rows: int, ld: int, c_out: int, dtype):
    """Slices of the batch (one per core), images per block, and per slice the two block buffers
    (im2col rows (block*rows, ld) and pre-pool activity or its gradient (block*rows, c_out))."""
    parts = plan(n, n * rows * c_out)
    block = int(max(1, BLOCK_BYTES // max(1, rows * c_out * np.dtype(dtype).itemsize)))
    bufs = [(conv._get((min(block, max(1, b1 - b0)) * rows, ld), dtype),
             conv._get((min(block, max(1, b1 - b0)) * rows, c_out), dtype)) for b0, b1 in parts]
    return parts, block, bufs


def forward(conv, pool, x):
    """``(y, [conv cache, pool cache])`` of ``pool(conv(x))`` without storing ``conv(x)``."""
    from .conv import ConvCache
    from .pool import MaxPoolCache

    x = conv._check(x)
    n = x.shape[0]
    ho, wo = conv._out_hw(x.shape[1], x.shape[2])
    a_shape = (n, ho, wo, conv.c_out)
    y_shape = (n,) + tuple(pool.output_shape(a_shape[1:]))
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel, conv.stride, conv.padding
    (qh, qw), (th, tw) = pool.size, pool.stride
    rows = ho * wo
    k_in = kh * kw * conv.c_in
    ld = k_in + int(conv.bias)
    y = pool._get(y_shape, x.dtype)
    arg = pool._get(y_shape, np.int32)
    w_aug = conv._w_aug()
    parts, block, bufs = _work_plan(conv, n, rows, ld, conv.c_out, x.dtype)
    relu = pool._relu

    def part(i, b0, b1):
        cbuf, abuf = bufs[i]
        for c0 in range(b0, b1, block):
            c1 = min(b1, c0 + block)
            m = (c1 - c0) * rows
            im2col_kernel(x[c0:c1], kh, kw, sh, sw, ph, pw, cbuf[:m])
            matmul(cbuf[:m], w_aug, out=abuf[:m])
            if y.size:
                maxpool_fwd_kernel(abuf[:m].reshape((c1 - c0,) + a_shape[1:]), qh, qw, th, tw,
                                   relu, y[c0:c1], arg[c0:c1])

    run(parts, part)
    del bufs
    ccache = ConvCache(None, x.shape, a_shape, k_in, x=x, geom=conv._geom())
    return y, [ccache, MaxPoolCache(arg, y, a_shape)]


def weight_grads(conv, pool, caches, dy) -> list:
    """``[conv grads, {}]``: the convolution's ``{"w", "b"}`` from the gradient ``dy`` at the pool's
    output, through the pool's winners, without storing the gradient at ``conv(x)``."""
    ccache, pcache = caches
    dy = check_grad(dy, pcache.y.shape, pcache.y.dtype, type(pool).__name__)
    n = ccache.x_shape[0]
    kh, kw, sh, sw, ph, pw, bias = ccache.geom
    (qh, qw), (th, tw) = pool.size, pool.stride
    a_shape = ccache.y_shape
    rows = a_shape[1] * a_shape[2]
    c_out = a_shape[3]
    ld = ccache.k_in + int(bias)
    parts, block, bufs = _work_plan(conv, n, rows, ld, c_out, dy.dtype)
    relu = pool._relu

    def part(i, b0, b1):
        cbuf, dbuf = bufs[i]
        g = np.zeros((ld, c_out), dy.dtype)
        for c0 in range(b0, b1, block):
            c1 = min(b1, c0 + block)
            m = (c1 - c0) * rows
            da = dbuf[:m].reshape((c1 - c0,) + a_shape[1:])
            if dy.size:
                maxpool_bwd_kernel(dy[c0:c1], pcache.arg[c0:c1], pcache.y[c0:c1], relu,
                                   qh, qw, th, tw, da)
            else:
                da[...] = 0
            im2col_kernel(ccache.x[c0:c1], kh, kw, sh, sw, ph, pw, cbuf[:m])
            g += matmul(cbuf[:m].T, dbuf[:m])
        return g

    gs = run(parts, part)
    del bufs
    return [conv._grads_from(ccache, gs, dy), {}]
