"""Pooling kernels on NHWC images (no padding, floor mode, like PyTorch's defaults).

Max-pooling::

    y[b, oh, ow, c]   = max_{i<kh, j<kw} x[b, oh*sh + i, ow*sw + j, c]
    arg[b, oh, ow, c] = i*kw + j of the first maximum (a NaN counts as the maximum, so NaNs propagate)

With ``relu=True`` the kernel returns ``relu(maxpool(x)) == maxpool(relu(x))`` in one pass; its
backward then also applies the ReLU derivative ``[y > 0]``.

Average pooling::

    y[b, oh, ow, c] = 1/(kh*kw) * sum_{i<kh, j<kw} x[b, oh*sh + i, ow*sw + j, c]

Max-pool backward *gathers* when windows do not overlap (stride >= size: each dx entry written
once, parallel over rows of windows) and otherwise scatter-adds, parallel over the batch so overlapping
windows are race-free.  Every kernel exists as ``*_serial`` (cached) and ``*_parallel`` (not
cached); the ``*_kernel`` entry points choose by size (:data:`PARALLEL_MIN`).  Every kernel takes
C-contiguous writeable float32 or float64 arrays, ``arg`` is always int32 and the flags are Python
ints/bools: two specialisations per kernel.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._config import jit, pjit

__all__ = ["maxpool_fwd_kernel", "maxpool_bwd_kernel", "avgpool_fwd_kernel", "avgpool_bwd_kernel",
           "PARALLEL_MIN"]

#: arrays with at least this many elements use the ``*_parallel`` kernels; off by default, see
#: ``bioplausible.kernels.conv.PARALLEL_MIN`` for why
PARALLEL_MIN = 1 << 62


def _maxpool_fwd(x, kh, kw, sh, sw, relu, y, arg):  # pragma: no cover - compiled
    """y, arg <- max-pool of x (see module docstring); y, arg have shape (N, Ho, Wo, C)."""
    n, h, w, c = x.shape
    ho = y.shape[1]
    wo = y.shape[2]
    x1 = x.reshape(-1)
    y1 = y.reshape(-1)
    a1 = arg.reshape(-1)
    for r in prange(n * ho):
        b = r // ho
        oh = r - b * ho
        for ow in range(wo):
            o = (r * wo + ow) * c
            yp = y1[o:o + c]
            ap = a1[o:o + c]
            s0 = ((b * h + oh * sh) * w + ow * sw) * c
            xp = x1[s0:s0 + c]
            for ch in range(c):
                yp[ch] = xp[ch]
                ap[ch] = 0
            for i in range(kh):
                for j in range(kw):
                    k = i * kw + j
                    if k == 0:
                        continue
                    s = ((b * h + oh * sh + i) * w + ow * sw + j) * c
                    xp = x1[s:s + c]
                    for ch in range(c):
                        v = xp[ch]
                        if v > yp[ch] or v != v:
                            yp[ch] = v
                            ap[ch] = k
            if relu:
                for ch in range(c):
                    if yp[ch] <= 0:
                        yp[ch] = 0


def _maxpool_bwd_gather(dy, arg, y, relu, kh, kw, sh, sw, dx):  # pragma: no cover - compiled
    """Non-overlapping windows (stride >= size): every dx entry is written exactly once.

    One iteration owns the input rows ``[oh*sh, (oh+1)*sh)`` of one image (up to the last row of
    the image for the last ``oh``).  Pixel (oh*sh + i, ow*sw + j) with i < kh, j < kw receives dy of
    window (oh, ow) iff it was that window's argmax (and y > 0 when relu); pixels in no window
    (the stride's gaps and the rows / columns past the last window) get 0.
    """
    n, h, w, c = dx.shape
    ho = dy.shape[1]
    wo = dy.shape[2]
    dy1 = dy.reshape(-1)
    y1 = y.reshape(-1)
    a1 = arg.reshape(-1)
    d1 = dx.reshape(-1)
    wc = w * c
    for r in prange(n * ho):
        b = r // ho
        oh = r - b * ho
        ih_end = h if oh == ho - 1 else (oh + 1) * sh
        for ih in range(oh * sh, ih_end):
            i = ih - oh * sh
            drow = d1[(b * h + ih) * wc:(b * h + ih + 1) * wc]
            if i >= kh:
                for t in range(wc):
                    drow[t] = 0
                continue
            for ow in range(wo):
                o = (r * wo + ow) * c
                gp = dy1[o:o + c]
                ap = a1[o:o + c]
                yp = y1[o:o + c]
                for j in range(kw):
                    k = i * kw + j
                    dp = drow[(ow * sw + j) * c:(ow * sw + j + 1) * c]
                    if relu:
                        for ch in range(c):
                            dp[ch] = gp[ch] if (ap[ch] == k and yp[ch] > 0) else 0
                    else:
                        for ch in range(c):
                            dp[ch] = gp[ch] if ap[ch] == k else 0
                # the stride's gap after this window, and the columns after the last window
                gap_end = w if ow == wo - 1 else (ow + 1) * sw
                for t in range((ow * sw + kw) * c, gap_end * c):
                    drow[t] = 0


def _maxpool_bwd_scatter(dy, arg, y, relu, kh, kw, sh, sw, dx):  # pragma: no cover - compiled
    """Any stride: zero dx, then scatter-add dy to each window's argmax; parallel over the batch."""
    n, h, w, c = dx.shape
    ho = dy.shape[1]
    wo = dy.shape[2]
    dy1 = dy.reshape(-1)
    y1 = y.reshape(-1)
    a1 = arg.reshape(-1)
    d1 = dx.reshape(-1)
    hwc = h * w * c
    for b in prange(n):
        db = d1[b * hwc:(b + 1) * hwc]
        for t in range(hwc):
            db[t] = 0
        for oh in range(ho):
            for ow in range(wo):
                o = ((b * ho + oh) * wo + ow) * c
                gp = dy1[o:o + c]
                ap = a1[o:o + c]
                yp = y1[o:o + c]
                for ch in range(c):
                    if relu and not yp[ch] > 0:
                        continue
                    k = ap[ch]
                    i = k // kw
                    j = k - i * kw
                    db[((oh * sh + i) * w + ow * sw + j) * c + ch] += gp[ch]


def _avgpool_fwd(x, kh, kw, sh, sw, y):  # pragma: no cover - compiled
    """y <- average of each kh x kw window of x."""
    n, h, w, c = x.shape
    ho = y.shape[1]
    wo = y.shape[2]
    x1 = x.reshape(-1)
    y1 = y.reshape(-1)
    count = x1.dtype.type(kh * kw)
    for r in prange(n * ho):
        b = r // ho
        oh = r - b * ho
        for ow in range(wo):
            o = (r * wo + ow) * c
            yp = y1[o:o + c]
            for ch in range(c):
                yp[ch] = 0
            for i in range(kh):
                for j in range(kw):
                    s = ((b * h + oh * sh + i) * w + ow * sw + j) * c
                    xp = x1[s:s + c]
                    for ch in range(c):
                        yp[ch] += xp[ch]
            for ch in range(c):
                yp[ch] /= count


def _avgpool_bwd(dy, kh, kw, sh, sw, dx):  # pragma: no cover - compiled
    """dx <- every dy spread evenly (1/(kh*kw)) over its window, summed where windows overlap."""
    n, h, w, c = dx.shape
    ho = dy.shape[1]
    wo = dy.shape[2]
    dy1 = dy.reshape(-1)
    d1 = dx.reshape(-1)
    hwc = h * w * c
    count = dy1.dtype.type(kh * kw)
    for b in prange(n):
        g = np.empty(c, dy1.dtype)
        db = d1[b * hwc:(b + 1) * hwc]
        for t in range(hwc):
            db[t] = 0
        for oh in range(ho):
            for ow in range(wo):
                o = ((b * ho + oh) * wo + ow) * c
                gp = dy1[o:o + c]
                for ch in range(c):
                    g[ch] = gp[ch] / count
                for i in range(kh):
                    for j in range(kw):
                        s = ((oh * sh + i) * w + ow * sw + j) * c
                        dp = db[s:s + c]
                        for ch in range(c):
                            dp[ch] += g[ch]


def _pair_of(fn):
    return jit(fn), pjit(fn)


maxpool_fwd_serial, maxpool_fwd_parallel = _pair_of(_maxpool_fwd)
maxpool_bwd_gather_serial, maxpool_bwd_gather_parallel = _pair_of(_maxpool_bwd_gather)
maxpool_bwd_scatter_serial, maxpool_bwd_scatter_parallel = _pair_of(_maxpool_bwd_scatter)
avgpool_fwd_serial, avgpool_fwd_parallel = _pair_of(_avgpool_fwd)
avgpool_bwd_serial, avgpool_bwd_parallel = _pair_of(_avgpool_bwd)

SERIAL_AND_PARALLEL = [maxpool_fwd_serial, maxpool_fwd_parallel, maxpool_bwd_gather_serial,
                       maxpool_bwd_gather_parallel, maxpool_bwd_scatter_serial,
                       maxpool_bwd_scatter_parallel, avgpool_fwd_serial, avgpool_fwd_parallel,
                       avgpool_bwd_serial, avgpool_bwd_parallel]


def maxpool_fwd_kernel(x, kh, kw, sh, sw, relu, y, arg):
    """Unchecked entry point (see :func:`_maxpool_fwd`); parallel only for large inputs."""
    k = maxpool_fwd_parallel if x.size >= PARALLEL_MIN else maxpool_fwd_serial
    k(x, kh, kw, sh, sw, relu, y, arg)


def maxpool_bwd_kernel(dy, arg, y, relu, kh, kw, sh, sw, dx):
    """Unchecked entry point: gather when windows do not overlap, else scatter; parallel only for
    large inputs."""
    big = dx.size >= PARALLEL_MIN
    if sh >= kh and sw >= kw:
        k = maxpool_bwd_gather_parallel if big else maxpool_bwd_gather_serial
    else:
        k = maxpool_bwd_scatter_parallel if big and dx.shape[0] > 1 else maxpool_bwd_scatter_serial
    k(dy, arg, y, relu, kh, kw, sh, sw, dx)


def avgpool_fwd_kernel(x, kh, kw, sh, sw, y):
    """Unchecked entry point (see :func:`_avgpool_fwd`); parallel only for large inputs."""
    k = avgpool_fwd_parallel if x.size >= PARALLEL_MIN else avgpool_fwd_serial
    k(x, kh, kw, sh, sw, y)


def avgpool_bwd_kernel(dy, kh, kw, sh, sw, dx):
    """Unchecked entry point (see :func:`_avgpool_bwd`); parallel only for large inputs."""
    k = avgpool_bwd_parallel if dx.size >= PARALLEL_MIN and dx.shape[0] > 1 else avgpool_bwd_serial
    k(dy, kh, kw, sh, sw, dx)
