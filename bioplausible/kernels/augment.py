"""Augmentation kernels on float32 NHWC image batches (values in [0, 1]).

Random numbers are drawn by the caller (``bioplausible.views``) and passed in as arrays, so the
kernels are deterministic functions of their inputs.

Resized crop with flip (bilinear, ``align_corners=False`` like PyTorch/torchvision, no antialias)::

    crop n = x[n, top:top+ch, left:left+cw, :]
    sy = (oy + 0.5) * ch / OH - 0.5, clamped to [0, ch - 1]  (sx likewise with cw, OW)
    out[n, oy, ox, c] = bilinear(crop, sy, sx')   with ox' = OW - 1 - ox when flip[n]

Colour (in place, per image, only where the masks are set), with
``gray(p) = 0.2989 R + 0.587 G + 0.114 B`` (the value itself for C = 1)::

    brightness b:  v <- clip(b * v, 0, 1)
    contrast   c:  v <- clip(c * v + (1 - c) * mean_image(gray), 0, 1)
    saturation s:  v <- clip(s * v + (1 - s) * gray(pixel), 0, 1)        (no-op for C = 1)
    order[n] is a permutation of (0, 1, 2) = (brightness, contrast, saturation);
    grayscale:     v <- gray(pixel) in every channel                     (no-op for C = 1)

Each kernel has a serial (cached) and a parallel (``prange`` over the batch, not cached) variant.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._config import jit, pjit

__all__ = ["resized_crop_kernel", "color_kernel", "PARALLEL_MIN"]

#: below this many output elements the serial (cached) variant runs.  The serial kernels already do
#: a 256x32x32x3 batch in about 2 ms; on a busy 2-core machine waking a second thread cost more
#: than it saved (8 ms), so only large batches (e.g. 96x96 STL-10 images) go parallel.
PARALLEL_MIN = 1 << 21

_WR = 0.2989
_WG = 0.587
_WB = 0.114


def _resized_crop(x, top, left, ch, cw, flip, out):  # pragma: no cover - compiled
    n, h, w, c = x.shape
    oh = out.shape[1]
    ow = out.shape[2]
    x1d = x.reshape(-1)
    o1d = out.reshape(-1)
    for b in prange(n):
        t = top[b]
        l0 = left[b]
        hh = ch[b]
        ww = cw[b]
        # horizontal source columns and weights, shared by all rows of this image
        xa = np.empty(ow, np.int64)
        xb = np.empty(ow, np.int64)
        wx = np.empty(ow, np.float32)
        sx_scale = ww / ow
        for ox in range(ow):
            oxx = ow - 1 - ox if flip[b] else ox
            sx = (oxx + 0.5) * sx_scale - 0.5
            if sx < 0.0:
                sx = 0.0
            x0 = int(sx)
            if x0 > ww - 1:
                x0 = ww - 1
            wx[ox] = max(sx - x0, 0.0)
            xa[ox] = (l0 + x0) * c
            xb[ox] = (l0 + (x0 + 1 if x0 < ww - 1 else x0)) * c
        sy_scale = hh / oh
        img0 = b * h * w * c
        for oy in range(oh):
            sy = (oy + 0.5) * sy_scale - 0.5
            if sy < 0.0:
                sy = 0.0
            y0 = int(sy)
            if y0 > hh - 1:
                y0 = hh - 1
            y1 = y0 + 1 if y0 < hh - 1 else y0
            wy = np.float32(max(sy - y0, 0.0))
            r0 = img0 + (t + y0) * w * c
            r1 = img0 + (t + y1) * w * c
            dst = ((b * oh + oy) * ow) * c
            for ox in range(ow):
                a0 = r0 + xa[ox]
                a1 = r0 + xb[ox]
                b0 = r1 + xa[ox]
                b1 = r1 + xb[ox]
                fx = wx[ox]
                for k in range(c):
                    tv = x1d[a0 + k] + (x1d[a1 + k] - x1d[a0 + k]) * fx
                    bv = x1d[b0 + k] + (x1d[b1 + k] - x1d[b0 + k]) * fx
                    o1d[dst + ox * c + k] = tv + (bv - tv) * wy


def _clip01(v):  # pragma: no cover - compiled
    if v < 0.0:
        return 0.0
    if v > 1.0:
        return 1.0
    return v


def _color(img, jitter, bri, con, sat, order, gray):  # pragma: no cover - compiled
    n, h, w, c = img.shape
    for b in prange(n):
        if jitter[b]:
            for step in range(3):
                op = order[b, step]
                if op == 0:
                    f = bri[b]
                    for i in range(h):
                        for j in range(w):
                            for k in range(c):
                                img[b, i, j, k] = _clip01(f * img[b, i, j, k])
                elif op == 1:
                    f = con[b]
                    m = 0.0
                    for i in range(h):
                        for j in range(w):
                            if c == 3:
                                m += _WR * img[b, i, j, 0] + _WG * img[b, i, j, 1] + _WB * img[b, i, j, 2]
                            else:
                                m += img[b, i, j, 0]
                    m = m / (h * w)
                    for i in range(h):
                        for j in range(w):
                            for k in range(c):
                                img[b, i, j, k] = _clip01(f * img[b, i, j, k] + (1.0 - f) * m)
                elif c == 3:
                    f = sat[b]
                    for i in range(h):
                        for j in range(w):
                            g = _WR * img[b, i, j, 0] + _WG * img[b, i, j, 1] + _WB * img[b, i, j, 2]
                            for k in range(3):
                                img[b, i, j, k] = _clip01(f * img[b, i, j, k] + (1.0 - f) * g)
        if gray[b] and c == 3:
            for i in range(h):
                for j in range(w):
                    g = _WR * img[b, i, j, 0] + _WG * img[b, i, j, 1] + _WB * img[b, i, j, 2]
                    img[b, i, j, 0] = g
                    img[b, i, j, 1] = g
                    img[b, i, j, 2] = g


_clip01 = jit(_clip01)
resized_crop_serial, resized_crop_parallel = jit(_resized_crop), pjit(_resized_crop)
color_serial, color_parallel = jit(_color), pjit(_color)


def resized_crop_kernel(x, top, left, ch, cw, flip, out):
    """out <- bilinear resize of the crops of x, flipped where ``flip`` (see module docstring).

    x, out: C-contiguous float32 (N, H, W, C) and (N, OH, OW, C); top, left, ch, cw: int64 (N,)
    with every box inside the image; flip: uint8 (N,).  The checked wrapper is
    ``bioplausible.views.resized_crop``.
    """
    k = resized_crop_parallel if out.size >= PARALLEL_MIN and out.shape[0] > 1 else resized_crop_serial
    k(x, top, left, ch, cw, flip, out)


def color_kernel(img, jitter, bri, con, sat, order, gray):
    """Colour jitter and grayscale of img (float32 NHWC) in place (see module docstring).

    jitter, gray: uint8 (N,) masks; bri, con, sat: float32 (N,) factors; order: int64 (N, 3).
    """
    k = color_parallel if img.size >= PARALLEL_MIN and img.shape[0] > 1 else color_serial
    k(img, jitter, bri, con, sat, order, gray)

