"""im2col / col2im for NHWC images: the numba half of a convolution (BLAS does the other half).

A convolution with weights ``W`` of shape ``(kh, kw, c_in, c_out)`` is computed as::

    cols = im2col(x)                 # (N*Ho*Wo, kh*kw*c_in), row = one output pixel's receptive field
    y    = cols @ W.reshape(-1, c_out)   # (N*Ho*Wo, c_out) == NHWC output, one sgemm

The column index of ``cols`` is ``(i*kw + j)*c_in + c`` for kernel offset ``(i, j)`` and input
channel ``c``, i.e. the C order of ``W``'s first three axes, so ``W.reshape(-1, c_out)`` needs no
copy.  Entries that fall into the zero padding are 0.

``col2im`` is the adjoint of ``im2col``: it sums every column entry back into the input pixel it was
read from (``dx = col2im(dy2d @ W2d.T)``).  It is written as a *gather* over input rows, so that every
parallel iteration writes a disjoint slice of the output: no races, no atomics, any stride.

Each kernel exists twice, compiled from the same source: ``*_serial`` (cached on disk) and
``*_parallel`` (``prange`` over output/input rows, not cached, per the numba policy).
``im2col_kernel`` / ``col2im_kernel`` pick the parallel one for arrays of at least
:data:`PARALLEL_MIN` elements.  Kernels take C-contiguous, writeable float32 or float64 arrays and
Python ints; the checked wrappers (:func:`im2col`, :func:`col2im`) and the layers guarantee this, so
numba compiles exactly two specialisations (float32, float64) of each kernel.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._config import jit, pjit

__all__ = ["conv_out_size", "im2col", "col2im", "im2col_kernel", "col2im_kernel", "PARALLEL_MIN"]

#: arrays with at least this many elements use the ``*_parallel`` kernels.  Off by default
#: (2**62): measured on 2 cores, alternating numba's OpenMP threads with OpenBLAS's threads (which
#: spin for a while after every sgemm) made the conv3 step ~30% *slower* than serial kernels next
#: to a 2-thread BLAS; on a busy machine much worse.  Set e.g. ``1 << 15`` to experiment.
PARALLEL_MIN = 1 << 62


def conv_out_size(size: int, k: int, stride: int, pad: int) -> int:
    """Output length of a convolution / pooling along one axis (floor mode, like PyTorch)."""
    return (size + 2 * pad - k) // stride + 1


def _im2col(x, kh, kw, sh, sw, ph, pw, cols):  # pragma: no cover - compiled
    """cols[(b*Ho+oh)*Wo+ow, (i*kw+j)*C+c] = x[b, oh*sh-ph+i, ow*sw-pw+j, c] (0 outside).

    ``cols`` may have more than ``kh*kw*C`` columns: the extra ones are set to 1 (the constant input
    that multiplies a bias row appended to the weight matrix).  For a fixed kernel row ``i`` the
    entries ``j_lo <= j < j_hi`` inside the image are one contiguous span of ``x`` of length
    ``(j_hi - j_lo)*C``: each is copied as a flat slice (slices let LLVM vectorise the copy).
    """
    n, h, w, c = x.shape
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (w + 2 * pw - kw) // sw + 1
    kc = kw * c
    kk = kh * kc
    ld = cols.shape[1]
    wc = w * c
    x1 = x.reshape(-1)
    c1 = cols.reshape(-1)
    for r in prange(n * ho):
        b = r // ho
        oh = r - b * ho
        ih0 = oh * sh - ph
        for ow in range(wo):
            crow = c1[(r * wo + ow) * ld:(r * wo + ow + 1) * ld]
            for t in range(kk, ld):
                crow[t] = 1
            iw0 = ow * sw - pw
            j_lo = min(max(0, -iw0), kw)
            j_hi = max(min(kw, w - iw0), j_lo)
            for i in range(kh):
                ih = ih0 + i
                seg = crow[i * kc:(i + 1) * kc]
                if ih < 0 or ih >= h:
                    for t in range(kc):
                        seg[t] = 0
                    continue
                for t in range(j_lo * c):
                    seg[t] = 0
                src = x1[(b * h + ih) * wc + (iw0 + j_lo) * c:(b * h + ih) * wc + (iw0 + j_hi) * c]
                dst = seg[j_lo * c:j_hi * c]
                for t in range(src.shape[0]):
                    dst[t] = src[t]
                for t in range(j_hi * c, kc):
                    seg[t] = 0


def _col2im(cols, kh, kw, sh, sw, ph, pw, dx):  # pragma: no cover - compiled
    """dx[b, ih, iw, c] = sum of every cols entry that im2col read from x[b, ih, iw, c].

    Columns beyond ``kh*kw*C`` (bias inputs) are ignored.  One iteration owns one input row
    ``dx[b, ih]`` and gathers into it from every (oh, i) with ``oh*sh - ph + i == ih``.
    """
    n, h, w, c = dx.shape
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (w + 2 * pw - kw) // sw + 1
    kc = kw * c
    ld = cols.shape[1]
    wc = w * c
    d1 = dx.reshape(-1)
    c1 = cols.reshape(-1)
    for r in prange(n * h):
        b = r // h
        ih = r - b * h
        drow = d1[r * wc:(r + 1) * wc]
        for t in range(wc):
            drow[t] = 0
        for i in range(kh):
            num = ih + ph - i
            if num < 0:
                break
            if num % sh != 0:
                continue
            oh = num // sh
            if oh >= ho:
                continue
            for ow in range(wo):
                iw0 = ow * sw - pw
                j_lo = max(0, -iw0)
                j_hi = min(kw, w - iw0)
                if j_hi <= j_lo:
                    continue
                start = ((b * ho + oh) * wo + ow) * ld + i * kc
                src = c1[start + j_lo * c:start + j_hi * c]
                dst = drow[(iw0 + j_lo) * c:(iw0 + j_hi) * c]
                for t in range(src.shape[0]):
                    dst[t] += src[t]


im2col_serial, im2col_parallel = jit(_im2col), pjit(_im2col)
col2im_serial, col2im_parallel = jit(_col2im), pjit(_col2im)


@jit
def take_images(src, idx, out):  # pragma: no cover - compiled
    """``out[k] = src[idx[k]]`` for the images ``idx`` of a (N, rows, K) array (``np.take`` along
    axis 0 into a given buffer, without holding the GIL, so cores gather their own slices)."""
    for k in range(idx.shape[0]):
        s = src[idx[k]]
        o = out[k]
        for r in range(s.shape[0]):
            for c in range(s.shape[1]):
                o[r, c] = s[r, c]


def im2col_kernel(x, kh, kw, sh, sw, ph, pw, cols):
    """Unchecked entry point: the parallel kernel for large arrays, the serial one for small."""
    if cols.size >= PARALLEL_MIN:
        im2col_parallel(x, kh, kw, sh, sw, ph, pw, cols)
    else:
        im2col_serial(x, kh, kw, sh, sw, ph, pw, cols)


def col2im_kernel(cols, kh, kw, sh, sw, ph, pw, dx):
    """Unchecked entry point: the parallel kernel for large arrays, the serial one for small."""
    if cols.size >= PARALLEL_MIN:
        col2im_parallel(cols, kh, kw, sh, sw, ph, pw, dx)
    else:
        col2im_serial(cols, kh, kw, sh, sw, ph, pw, dx)


def _check_float_c(name, a):
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if not (a.flags.c_contiguous and a.flags.writeable):
        raise ValueError(f"{name} must be C-contiguous and writeable")


def _pair(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
        a, b = int(v[0]), int(v[1])
    else:
        a = b = int(v)
    return a, b


def im2col(x, kernel, stride=1, padding=0, out=None, bias_column=False):
    """Checked wrapper: ``(N, H, W, C)`` -> ``(N*Ho*Wo, kh*kw*C)`` (written into ``out`` if given).

    ``kernel``, ``stride``, ``padding`` are ints or ``(along H, along W)`` pairs.  With
    ``bias_column=True`` the result has one more column, all ones.
    """
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel, "kernel"), _pair(stride, "stride"), _pair(padding, "padding")
    if x.ndim != 4:
        raise ValueError(f"im2col expects an NHWC array, got shape {x.shape}")
    x = np.ascontiguousarray(x)
    if not x.flags.writeable:
        x = x.copy()
    _check_float_c("x", x)
    n, h, w, c = x.shape
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise ValueError("kernel and stride must be >= 1 and padding >= 0")
    ho, wo = conv_out_size(h, kh, sh, ph), conv_out_size(w, kw, sw, pw)
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel {kh}x{kw} (padding {ph},{pw}) is larger than the {h}x{w} image")
    shape = (n * ho * wo, kh * kw * c + int(bool(bias_column)))
    if out is None:
        out = np.empty(shape, dtype=x.dtype)
    elif out.shape != shape or out.dtype != x.dtype:
        raise ValueError(f"out must be {shape} {x.dtype}, got {out.shape} {out.dtype}")
    _check_float_c("out", out)
    if x.size:
        im2col_kernel(x, kh, kw, sh, sw, ph, pw, out)
    return out


def col2im(cols, x_shape, kernel, stride=1, padding=0, out=None):
    """Checked wrapper, adjoint of :func:`im2col`: ``(N*Ho*Wo, kh*kw*C)`` -> ``x_shape`` (NHWC)."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel, "kernel"), _pair(stride, "stride"), _pair(padding, "padding")
    n, h, w, c = (int(s) for s in x_shape)
    cols = np.ascontiguousarray(cols)
    if not cols.flags.writeable:
        cols = cols.copy()
    _check_float_c("cols", cols)
    ho, wo = conv_out_size(h, kh, sh, ph), conv_out_size(w, kw, sw, pw)
    if cols.ndim != 2 or cols.shape[0] != n * ho * wo or cols.shape[1] < kh * kw * c:
        raise ValueError(f"cols must have shape {(n * ho * wo, kh * kw * c)} (extra bias columns "
                         f"allowed), got {cols.shape}")
    if out is None:
        out = np.empty((n, h, w, c), dtype=cols.dtype)
    elif out.shape != (n, h, w, c) or out.dtype != cols.dtype:
        raise ValueError(f"out must be {(n, h, w, c)} {cols.dtype}, got {out.shape} {out.dtype}")
    _check_float_c("out", out)
    if cols.size:
        col2im_kernel(cols, kh, kw, sh, sw, ph, pw, out)
    elif out.size:
        out[...] = 0
    return out
