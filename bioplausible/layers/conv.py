"""2-D convolution on NHWC images: numba im2col + one BLAS matrix product."""
from __future__ import annotations

import numpy as np

from ..kernels.conv import col2im_kernel, conv_out_size, im2col_kernel, take_images
from ._blas import matmul
from ._parallel import plan, run
from ._util import ParamLayer, check_float, check_grad, pair, positive_int, require_rng, uniform_init
from .base import Layer, ShapeError


_CHUNK_BYTES = 8 << 20  # size of the dy Wᵀ block that col2im consumes while it is still in cache

#: convolutions with at most this many inputs per output neuron (kh*kw*c_in) do not keep their
#: im2col matrix: forward and weight gradient rebuild it in blocks of images of about
#: :data:`_BLOCK_BYTES` that stay in the core's L2 cache, each followed at once by its (one-thread)
#: sgemm.  For the first layer of an image network (K = 9 or 27) the full matrix would be pure
#: memory traffic (K-deep sgemms are bandwidth-bound), and rebuilding it is cheap.  Set to 0 to
#: always keep the full im2col matrix.
RECOMPUTE_MAX_K = 32
_BLOCK_BYTES = 1 << 20


class ConvCache:
    """What :meth:`Conv2d.backward` (and a local rule) needs.

    cols : (N*Ho*Wo, kh*kw*c_in [+1]) the im2col matrix: row ``(n*Ho + oh)*Wo + ow`` is the
           receptive field (pre-synaptic activity) of output pixel (n, oh, ow), column
           ``(i*kw + j)*c_in + c``.  With a bias, the last column is the constant input 1.
    x_shape : shape of the input (N, H, W, c_in).
    y_shape : shape of the output (N, Ho, Wo, c_out).
    k_in : kh*kw*c_in, the number of pre-synaptic inputs per output neuron.
    x : the input itself (not copied) when the layer did not keep its im2col matrix (few inputs
        per neuron, see :data:`RECOMPUTE_MAX_K`); ``cols`` is then built from it on first access
        (and kept), so local rules that read ``cols`` keep working.  ``None`` for im2col caches.
    geom : ``(kh, kw, sh, sw, ph, pw, bias)``, needed only to build ``cols`` from ``x``.

    Constructed as ``ConvCache(cols, x_shape, y_shape, k_in)`` (an im2col cache) or with
    ``cols=None, x=..., geom=...`` (a cache that rebuilds ``cols`` from ``x``).  :meth:`take`
    restricts either kind to a subset of the samples.
    """

    __slots__ = ("_cols", "x_shape", "y_shape", "k_in", "x", "geom")

    def __init__(self, cols, x_shape, y_shape, k_in, x=None, geom=None):
        if cols is None and (x is None or geom is None):
            raise ValueError("ConvCache needs either cols or (x, geom)")
        self._cols = cols
        self.x_shape = tuple(x_shape)
        self.y_shape = tuple(y_shape)
        self.k_in = int(k_in)
        self.x = x
        self.geom = geom

    @property
    def has_x(self) -> bool:
        """True when the cache holds the input ``x`` rather than the im2col matrix ``cols``."""
        return self.x is not None

    @property
    def dtype(self):
        return (self.x if self.has_x else self._cols).dtype

    @property
    def cols(self) -> np.ndarray:
        if self._cols is None:
            kh, kw, sh, sw, ph, pw, bias = self.geom
            n = self.x_shape[0]
            ho, wo = self.y_shape[1], self.y_shape[2]
            cols = np.empty((n * ho * wo, self.k_in + int(bias)), self.x.dtype)
            if cols.size:
                im2col_kernel(self.x, kh, kw, sh, sw, ph, pw, cols)
            self._cols = cols
        return self._cols

    @property
    def x_cols(self) -> np.ndarray:
        """The receptive fields without the bias column: (N*Ho*Wo, kh*kw*c_in) (a view)."""
        return self.cols[:, :self.k_in]

    def take(self, rows) -> "ConvCache":
        """The cache of the samples ``rows`` only (a copy of their inputs or im2col rows)."""
        rows = np.asarray(rows)
        x_shape = (len(rows),) + self.x_shape[1:]
        y_shape = (len(rows),) + self.y_shape[1:]
        if self.has_x:
            return ConvCache(None, x_shape, y_shape, self.k_in, x=np.take(self.x, rows, axis=0),
                             geom=self.geom)
        n = self.x_shape[0]
        per = self._cols.shape[0] // n if n else 0
        cols = np.take(self._cols.reshape(n, per, -1), rows, axis=0).reshape(len(rows) * per, -1)
        return ConvCache(cols, x_shape, y_shape, self.k_in)

    def __repr__(self):
        kind = "x" if self.has_x else "cols"
        return f"ConvCache({kind}, x_shape={self.x_shape}, y_shape={self.y_shape}, k_in={self.k_in})"


class Conv2d(ParamLayer, Layer):
    r"""2-D convolution (cross-correlation, like PyTorch) on NHWC images.

    .. math:: y_{n,o_h,o_w,d} = b_d + \sum_{i,j,c} W_{i,j,c,d}\; x_{n,\,o_h s_h - p_h + i,\; o_w s_w - p_w + j,\; c}

    with zeros outside the image.  ``kernel``, ``stride`` and ``padding`` are ints or (H, W)
    pairs; output size ``Ho = (H + 2 p_h - k_h) // s_h + 1``.

    Parameters: ``w`` (kh, kw, c_in, c_out), ``b`` (c_out,), drawn from U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) with fan_in = kh*kw*c_in (PyTorch's default), ``w`` first.

    Computation: ``cols = im2col(x)`` (numba), then one sgemm ``y = cols @ [W; b]`` -- the bias
    enters as a weight row on a constant-1 column of ``cols`` -- whose (N*Ho*Wo, c_out) result is
    the NHWC output.  Backward: ``[dW; db] = colsᵀ dy`` (sgemm); ``dx = col2im(dy Wᵀ)`` (sgemm +
    numba, in blocks of images so that ``dy Wᵀ`` is read back from cache, not memory), skipped
    when ``need_dx=False``.  Large batches are cut into one slice of images per core, computed
    concurrently (``bioplausible.layers._parallel``); the slices' ``colsᵀ dy`` are summed.

    Cache: :class:`ConvCache` with the im2col matrix ``cols`` (kept so backward does not recompute
    it) -- except for layers with at most :data:`RECOMPUTE_MAX_K` inputs per neuron (the first
    layer of an image network), whose cache keeps the input ``x`` and whose forward and weight
    gradient rebuild ``cols`` in L2-sized blocks of images (``cache.cols`` is still available,
    built on first access).  :meth:`weight_grads` turns any post-synaptic factor δ of the output's
    shape into ``{"w", "b"}`` = Σ over positions of x_i δ_j, the update a local rule needs.
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

    def _geom(self):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return (kh, kw, sh, sw, ph, pw, self.bias)

    def forward(self, x):
        x = self._check(x)
        n, h, w_, c = x.shape
        ho, wo = self._out_hw(h, w_)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        rows = ho * wo  # output pixels (im2col rows) per image
        k_in = kh * kw * c
        dtype = x.dtype
        y = self._get((n, ho, wo, self.c_out), dtype)
        w_aug = self._w_aug()
        if k_in <= RECOMPUTE_MAX_K:
            parts = plan(n, y.size)
            block, bufs = self._blocks(parts, rows, k_in + int(self.bias), dtype)
            y2 = y.reshape(n * rows, self.c_out)

            def part(i, b0, b1):
                for c0 in range(b0, b1, block):
                    c1 = min(b1, c0 + block)
                    c = bufs[i][:(c1 - c0) * rows]
                    im2col_kernel(x[c0:c1], kh, kw, sh, sw, ph, pw, c)
                    matmul(c, w_aug, out=y2[c0 * rows:c1 * rows])

            run(parts, part)
            return y, ConvCache(None, x.shape, y.shape, k_in, x=x, geom=self._geom())
        cols = self._get((n * rows, k_in + int(self.bias)), dtype)
        y2 = y.reshape(n * rows, self.c_out)

        def part(i, b0, b1):
            if b1 > b0:
                c = cols[b0 * rows:b1 * rows]
                im2col_kernel(x[b0:b1], kh, kw, sh, sw, ph, pw, c)
                matmul(c, w_aug, out=y2[b0 * rows:b1 * rows])

        run(plan(n, cols.size), part)
        return y, ConvCache(cols, x.shape, y.shape, k_in)

    def _blocks(self, parts, rows, ld, dtype):
        """Images per im2col block (about _BLOCK_BYTES) and one block buffer per part."""
        block = int(max(1, _BLOCK_BYTES // max(1, rows * ld * np.dtype(dtype).itemsize)))
        bufs = [self._get((min(block, max(1, b1 - b0)) * rows, ld), dtype) for b0, b1 in parts]
        return block, bufs

    def _wgrad_part(self, cache: ConvCache, delta: np.ndarray, b0: int, b1: int,
                    buf=None, block: int = 1) -> np.ndarray:
        """``[dW; db]`` (K [+1], c_out) from the images ``b0:b1`` of the cache (an x cache
        rebuilds its im2col rows in blocks of ``block`` images in ``buf``)."""
        d2 = delta.reshape(-1, self.c_out)
        if cache.has_x:
            kh, kw, sh, sw, ph, pw, bias = cache.geom
            rows = cache.y_shape[1] * cache.y_shape[2]
            g = np.zeros((cache.k_in + int(bias), self.c_out), delta.dtype)
            for c0 in range(b0, b1, block):
                c1 = min(b1, c0 + block)
                c = buf[:(c1 - c0) * rows]
                im2col_kernel(cache.x[c0:c1], kh, kw, sh, sw, ph, pw, c)
                g += matmul(c.T, d2[c0 * rows:c1 * rows])
            return g
        n = cache.x_shape[0]
        rows = cache.cols.shape[0] // n if n else 0
        return matmul(cache.cols[b0 * rows:b1 * rows].T, d2[b0 * rows:b1 * rows])

    def _wgrad_all(self, cache: ConvCache, delta: np.ndarray, parts) -> list:
        """Per-part ``[dW; db]`` of every part (run concurrently)."""
        if not cache.has_x:
            return run(parts, lambda i, b0, b1: self._wgrad_part(cache, delta, b0, b1))
        rows = cache.y_shape[1] * cache.y_shape[2]
        block, bufs = self._blocks(parts, rows, cache.k_in + int(cache.geom[6]), delta.dtype)
        return run(parts, lambda i, b0, b1: self._wgrad_part(cache, delta, b0, b1, bufs[i], block))

    def _grads_from(self, cache: ConvCache, parts: list, delta: np.ndarray) -> dict:
        """Sum the per-slice ``[dW; db]`` and split it into ``{"w", "b"}``."""
        g = parts[0] if len(parts) == 1 else np.sum(parts, axis=0, dtype=parts[0].dtype)
        grads = {"w": np.ascontiguousarray(g[:cache.k_in]).reshape(self.params["w"].shape)}
        if self.bias:
            if g.shape[0] > cache.k_in:
                grads["b"] = g[-1].copy()
            else:  # an im2col cache without the bias column (made elsewhere): Σ δ directly
                grads["b"] = delta.reshape(-1, self.c_out).sum(axis=0)
        return grads

    @staticmethod
    def _work(cache: ConvCache, delta: np.ndarray) -> int:
        return max(delta.size, cache.x.size if cache.has_x else cache.cols.size)

    def weight_grads(self, cache: ConvCache, delta: np.ndarray) -> dict:
        """``{"w": Σ_pos x_cols ⊗ δ, "b": Σ_pos δ}`` for δ of the output's shape (N, Ho, Wo, c_out)."""
        delta = check_grad(delta, cache.y_shape, cache.dtype, "Conv2d")
        parts = plan(cache.x_shape[0], self._work(cache, delta))
        return self._grads_from(cache, self._wgrad_all(cache, delta, parts), delta)

    def weight_grads_rows(self, cache: ConvCache, delta: np.ndarray, rows) -> dict:
        """:meth:`weight_grads` of the samples ``rows`` only (``delta`` holds their δ, in the order
        of ``rows``), equal to ``weight_grads(cache.take(rows), delta)``.  For an im2col cache the
        samples' receptive fields are gathered in cache-sized chunks and summed chunk by chunk, so
        no copy of the selected im2col rows (most of the cache) is ever made."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if cache.has_x:                      # an x cache: the copy is the (small) input only
            return self.weight_grads(cache.take(rows), delta)
        y_shape = (len(rows),) + tuple(cache.y_shape[1:])
        delta = check_grad(delta, y_shape, cache.dtype, "Conv2d")
        if not len(rows):
            return {k: np.zeros_like(v, dtype=delta.dtype) for k, v in self.params.items()}
        n = cache.x_shape[0]
        per = cache.cols.shape[0] // n if n else 0
        ld = cache.cols.shape[1]
        cols3 = cache.cols.reshape(n, per, ld)
        d3 = delta.reshape(len(rows), per, self.c_out)
        parts = plan(len(rows), len(rows) * per * ld)
        chunk = int(max(1, _CHUNK_BYTES // max(1, per * ld * cache.dtype.itemsize)))
        bufs = [self._get((min(chunk, max(1, b1 - b0)), per, ld), cache.dtype) for b0, b1 in parts]

        def part(i, b0, b1):
            g = np.zeros((ld, self.c_out), delta.dtype)
            for c0 in range(b0, b1, chunk):
                c1 = min(b1, c0 + chunk)
                c = bufs[i][:c1 - c0]
                take_images(cols3, rows[c0:c1], c)
                g += matmul(c.reshape(-1, ld).T, d3[c0:c1].reshape(-1, self.c_out))
            return g

        g = run(parts, part)
        del bufs  # back to the pool
        return self._grads_from(cache, g, delta)

    def backward(self, cache: ConvCache, dy, need_dx: bool = True):
        dy = check_grad(dy, cache.y_shape, cache.dtype, "Conv2d")
        n = cache.x_shape[0]
        parts = plan(n, self._work(cache, dy))
        if not need_dx or cache.has_x:
            g = self._wgrad_all(cache, dy, parts)
            if not need_dx:
                return None, self._grads_from(cache, g, dy)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        rows = cache.y_shape[1] * cache.y_shape[2]  # im2col rows per image
        w2 = self.params["w"].reshape(-1, self.c_out)
        w2t = w2.T
        d2 = dy.reshape(n, rows, self.c_out)
        dx = self._get(cache.x_shape, dy.dtype)
        # dcols = dy Wᵀ, then col2im, in chunks of images whose dcols stay in cache (~8 MB),
        # one chunk buffer per part (the buffer pool is used from this thread only)
        per_img = max(1, rows * w2.shape[0] * dy.dtype.itemsize)
        chunks = [int(max(1, min(b1 - b0, _CHUNK_BYTES // per_img))) for b0, b1 in parts]
        bufs = [self._get((ch * rows, w2.shape[0]), dy.dtype) for ch in chunks]

        def part(i, b0, b1):
            g = None if cache.has_x else self._wgrad_part(cache, dy, b0, b1)
            chunk, dcols = chunks[i], bufs[i]
            for c0 in range(b0, b1, chunk):
                c1 = min(b1, c0 + chunk)
                dc = dcols[:(c1 - c0) * rows]
                matmul(d2[c0:c1].reshape(-1, self.c_out), w2t, out=dc)
                if dc.size:
                    col2im_kernel(dc, kh, kw, sh, sw, ph, pw, dx[c0:c1])
                else:
                    dx[c0:c1] = 0
            return g

        gx = run(parts, part)
        del bufs  # back to the pool
        if not cache.has_x:
            g = gx
        return dx, self._grads_from(cache, g, dy)
