"""Every numba kernel against a slow, obviously correct numpy reference (explicit loops)."""
import itertools
import subprocess
import sys

import numpy as np
import pytest

from bioplausible.kernels import activations as act
from bioplausible.kernels import conv as kconv
from bioplausible.kernels import pool as kpool
from bioplausible.kernels.conv import col2im, conv_out_size, im2col

VARIANTS = ["serial", "parallel"]  # every structured kernel exists in both; both are tested

TOL = {np.float32: 1e-6, np.float64: 1e-14}

# (N, H, W, C), kernel, stride, padding
CONV_CASES = [
    ((1, 4, 4, 1), (3, 3), (1, 1), (1, 1)),
    ((2, 7, 5, 3), (3, 3), (1, 1), (0, 0)),
    ((2, 7, 5, 3), (3, 3), (2, 2), (1, 1)),
    ((3, 7, 5, 3), (5, 5), (1, 1), (2, 2)),
    ((2, 7, 5, 3), (1, 1), (1, 1), (0, 0)),
    ((2, 7, 5, 3), (1, 1), (2, 2), (2, 2)),
    ((1, 6, 6, 2), (5, 5), (2, 2), (0, 0)),
    ((2, 5, 8, 4), (3, 2), (2, 1), (1, 0)),
    ((1, 3, 3, 2), (5, 5), (3, 3), (2, 2)),  # padding larger than the stride: rows of pure zeros
    ((2, 9, 9, 1), (3, 3), (3, 3), (1, 1)),  # stride == kernel
]


def ref_im2col(x, k, s, p):
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    cols = np.zeros((n * ho * wo, kh * kw * c), x.dtype)
    for b in range(n):
        for oh in range(ho):
            for ow in range(wo):
                for i in range(kh):
                    for j in range(kw):
                        ih, iw = oh * sh - ph + i, ow * sw - pw + j
                        if 0 <= ih < h and 0 <= iw < w:
                            for ch in range(c):
                                cols[(b * ho + oh) * wo + ow, (i * kw + j) * c + ch] = x[b, ih, iw, ch]
    return cols


def ref_col2im(cols, x_shape, k, s, p):
    n, h, w, c = x_shape
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    dx = np.zeros(x_shape, cols.dtype)
    for b in range(n):
        for oh in range(ho):
            for ow in range(wo):
                for i in range(kh):
                    for j in range(kw):
                        ih, iw = oh * sh - ph + i, ow * sw - pw + j
                        if 0 <= ih < h and 0 <= iw < w:
                            for ch in range(c):
                                dx[b, ih, iw, ch] += cols[(b * ho + oh) * wo + ow, (i * kw + j) * c + ch]
    return dx


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,s,p", CONV_CASES)
def test_im2col_matches_reference(shape, k, s, p, dtype, variant, rng):
    x = rng.standard_normal(shape).astype(dtype)
    ref = ref_im2col(x, k, s, p)
    got = np.full(ref.shape, np.nan, dtype)  # every entry must be written
    getattr(kconv, f"im2col_{variant}")(x, k[0], k[1], s[0], s[1], p[0], p[1], got)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(im2col(x, k, s, p), ref)  # the checked wrapper


@pytest.mark.parametrize("shape,k,s,p", CONV_CASES[:4])
def test_im2col_bias_column_and_zeros(shape, k, s, p):
    x = np.zeros(shape, np.float32)
    cols = im2col(x, k, s, p, bias_column=True)
    assert cols.shape[1] == k[0] * k[1] * shape[3] + 1
    np.testing.assert_array_equal(cols[:, :-1], 0)
    np.testing.assert_array_equal(cols[:, -1], 1)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,s,p", CONV_CASES)
def test_col2im_matches_reference(shape, k, s, p, dtype, variant, rng):
    n, h, w, c = shape
    m = n * conv_out_size(h, k[0], s[0], p[0]) * conv_out_size(w, k[1], s[1], p[1])
    cols = rng.standard_normal((m, k[0] * k[1] * c)).astype(dtype)
    ref = ref_col2im(cols, shape, k, s, p)
    got = np.full(shape, np.nan, dtype)
    getattr(kconv, f"col2im_{variant}")(cols, k[0], k[1], s[0], s[1], p[0], p[1], got)
    np.testing.assert_allclose(got, ref, rtol=TOL[dtype], atol=TOL[dtype] * 10)
    np.testing.assert_allclose(col2im(cols, shape, k, s, p), ref, rtol=TOL[dtype], atol=TOL[dtype] * 10)


@pytest.mark.parametrize("k,s,p", [((3, 3), (1, 1), (1, 1)), ((5, 3), (2, 2), (2, 0))])
def test_conv_kernels_large_inputs_dispatch_to_parallel(k, s, p, rng, monkeypatch):
    """Arrays above PARALLEL_MIN go through the wrapper's parallel path: same result as serial."""
    monkeypatch.setattr(kconv, "PARALLEL_MIN", 1 << 15)
    x = rng.standard_normal((5, 30, 29, 7)).astype(np.float32)
    cols = im2col(x, k, s, p, bias_column=True)
    assert cols.size >= kconv.PARALLEL_MIN
    ser = np.empty_like(cols)
    kconv.im2col_serial(x, k[0], k[1], s[0], s[1], p[0], p[1], ser)
    np.testing.assert_array_equal(cols, ser)
    dx = col2im(cols, x.shape, k, s, p)
    dx_ser = np.empty_like(dx)
    kconv.col2im_serial(cols, k[0], k[1], s[0], s[1], p[0], p[1], dx_ser)
    np.testing.assert_array_equal(dx, dx_ser)


@pytest.mark.parametrize("shape,k,s,p", CONV_CASES)
def test_col2im_is_adjoint_of_im2col(shape, k, s, p, rng):
    """<im2col(x), C> == <x, col2im(C)> for every x, C (float64)."""
    x = rng.standard_normal(shape)
    cols = rng.standard_normal(im2col(x, k, s, p).shape)
    lhs = np.sum(im2col(x, k, s, p) * cols)
    rhs = np.sum(x * col2im(cols, shape, k, s, p))
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


def test_col2im_ignores_bias_column(rng):
    shape, k = (2, 5, 5, 3), (3, 3)
    cols = rng.standard_normal((2 * 25, 28))
    np.testing.assert_allclose(col2im(cols, shape, k, 1, 1), ref_col2im(cols[:, :27], shape, k, (1, 1), (1, 1)))


def test_conv_wrappers_reject_bad_arguments():
    with pytest.raises(ValueError, match="larger than"):
        im2col(np.zeros((1, 2, 2, 1), np.float32), 3)
    with pytest.raises(TypeError, match="float32 or float64"):
        im2col(np.zeros((1, 4, 4, 1), np.int64), 3)
    with pytest.raises(ValueError, match="NHWC"):
        im2col(np.zeros((4, 4, 1), np.float32), 3)
    with pytest.raises(ValueError, match="cols must have shape"):
        col2im(np.zeros((5, 9), np.float32), (1, 4, 4, 1), 3, 1, 1)


# --------------------------------------------------------------------------------------- pooling
POOL_CASES = [  # shape, size, stride
    ((1, 4, 4, 1), (2, 2), (2, 2)),
    ((2, 7, 5, 3), (2, 2), (2, 2)),   # odd sizes: last row/column dropped (floor mode)
    ((2, 7, 5, 3), (3, 3), (2, 2)),   # overlapping windows
    ((2, 7, 5, 3), (3, 3), (1, 1)),
    ((2, 8, 8, 4), (2, 3), (3, 2)),   # stride larger than the window along H
    ((3, 5, 5, 2), (5, 5), (5, 5)),   # one window = global pooling
]


def ref_maxpool(x, k, s, relu=False):
    n, h, w, c = x.shape
    (kh, kw), (sh, sw) = k, s
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.zeros((n, ho, wo, c), x.dtype)
    arg = np.zeros((n, ho, wo, c), np.int32)
    for b in range(n):
        for oh in range(ho):
            for ow in range(wo):
                for ch in range(c):
                    win = x[b, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw, ch].ravel()
                    arg[b, oh, ow, ch] = np.argmax(win)
                    y[b, oh, ow, ch] = max(win.max(), 0) if relu else win.max()
    return y, arg


def ref_maxpool_bwd(dy, x, k, s, relu=False):
    n, h, w, c = x.shape
    (kh, kw), (sh, sw) = k, s
    y, arg = ref_maxpool(x, k, s, relu)
    dx = np.zeros_like(x)
    for b, oh, ow, ch in np.ndindex(dy.shape):
        if relu and y[b, oh, ow, ch] <= 0:
            continue
        i, j = divmod(int(arg[b, oh, ow, ch]), kw)
        dx[b, oh * sh + i, ow * sw + j, ch] += dy[b, oh, ow, ch]
    return dx


def run_maxpool(x, k, s, relu, variant="serial"):
    n, h, w, c = x.shape
    ho, wo = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    y = np.full((n, ho, wo, c), np.nan, x.dtype)
    arg = np.full((n, ho, wo, c), -1, np.int32)
    getattr(kpool, f"maxpool_fwd_{variant}")(x, k[0], k[1], s[0], s[1], relu, y, arg)
    return y, arg


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,s", POOL_CASES)
def test_maxpool_forward_backward_match_reference(shape, k, s, dtype, relu, variant, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y, arg = run_maxpool(x, k, s, relu, variant)
    y_ref, arg_ref = ref_maxpool(x, k, s, relu)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ref = ref_maxpool_bwd(dy, x, k, s, relu)
    kinds = ["scatter"] + (["gather"] if s[0] >= k[0] and s[1] >= k[1] else [])
    for kind in kinds:
        dx = np.full(shape, np.nan, dtype)  # the kernel must overwrite every entry
        getattr(kpool, f"maxpool_bwd_{kind}_{variant}")(dy, arg, y, relu, k[0], k[1], s[0], s[1], dx)
        np.testing.assert_allclose(dx, ref, rtol=TOL[dtype], atol=TOL[dtype])
    dx = np.full(shape, np.nan, dtype)
    kpool.maxpool_bwd_kernel(dy, arg, y, relu, k[0], k[1], s[0], s[1], dx)  # the dispatcher
    np.testing.assert_allclose(dx, ref, rtol=TOL[dtype], atol=TOL[dtype])


def test_maxpool_ties_zeros_and_nan():
    x = np.zeros((1, 4, 4, 2), np.float32)
    y, arg = run_maxpool(x, (2, 2), (2, 2), False)
    np.testing.assert_array_equal(y, 0)
    np.testing.assert_array_equal(arg, 0)  # first maximum wins, as in PyTorch
    x[0, 1, 1, 0] = np.nan
    x[0, 3, 3, 1] = -1.0
    y, arg = run_maxpool(x, (2, 2), (2, 2), True)
    assert np.isnan(y[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 3  # NaN propagates, even through ReLU
    assert y[0, 1, 1, 1] == 0


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,s", POOL_CASES)
def test_avgpool_forward_backward_match_reference(shape, k, s, dtype, variant, rng):
    x = rng.standard_normal(shape).astype(dtype)
    n, h, w, c = shape
    (kh, kw), (sh, sw) = k, s
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    y_ref = np.zeros((n, ho, wo, c))
    for oh in range(ho):
        for ow in range(wo):
            y_ref[:, oh, ow] = x[:, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw].mean(axis=(1, 2))
    y = np.full((n, ho, wo, c), np.nan, dtype)
    getattr(kpool, f"avgpool_fwd_{variant}")(x, kh, kw, sh, sw, y)
    np.testing.assert_allclose(y, y_ref, rtol=10 * TOL[dtype], atol=10 * TOL[dtype])

    dy = rng.standard_normal(y.shape).astype(dtype)
    dx_ref = np.zeros(shape)
    for oh in range(ho):
        for ow in range(wo):
            dx_ref[:, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw] += dy[:, oh:oh + 1, ow:ow + 1] / (kh * kw)
    dx = np.full(shape, np.nan, dtype)
    getattr(kpool, f"avgpool_bwd_{variant}")(dy, kh, kw, sh, sw, dx)
    np.testing.assert_allclose(dx, dx_ref, rtol=10 * TOL[dtype], atol=10 * TOL[dtype])


# ----------------------------------------------------------------------------------- activations
def _elementwise_cases(rng, dtype):
    x = np.concatenate([rng.standard_normal(997) * 3, [0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0]])
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_kernels_match_numpy(dtype, rng):
    x = _elementwise_cases(rng, dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = np.empty_like(x)
    dx = np.empty_like(x)
    tol = dict(rtol=10 * TOL[dtype], atol=10 * TOL[dtype])

    act.relu_fwd(x, y)
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0))
    act.relu_bwd(dy, y, dx)
    np.testing.assert_array_equal(dx, np.where(x > 0, dy, 0))

    s = dtype(0.1)
    act.leaky_relu_fwd(x, s, y)
    np.testing.assert_allclose(y, np.where(x > 0, x, s * x), **tol)
    act.leaky_relu_bwd(dy, y, s, dx)
    np.testing.assert_allclose(dx, np.where(x > 0, dy, s * dy), **tol)

    t = np.tanh(x.astype(np.float64))
    act.tanh_bwd(dy, t.astype(dtype), dx)
    np.testing.assert_allclose(dx, dy * (1 - t ** 2), rtol=20 * TOL[dtype], atol=20 * TOL[dtype])

    sg = 1 / (1 + np.exp(-x.astype(np.float64)))
    act.sigmoid_bwd(dy, sg.astype(dtype), dx)
    np.testing.assert_allclose(dx, dy * sg * (1 - sg), rtol=20 * TOL[dtype], atol=20 * TOL[dtype])

    sp = np.logaddexp(0, x.astype(np.float64))
    act.softplus_bwd(dy, sp.astype(dtype), dx)
    np.testing.assert_allclose(dx, dy * sg, rtol=20 * TOL[dtype], atol=20 * TOL[dtype])


def test_relu_kernel_propagates_nan():
    x = np.array([np.nan, -1.0, 2.0], np.float32)
    y = np.empty_like(x)
    act.relu_fwd(x, y)
    assert np.isnan(y[0]) and y[1] == 0 and y[2] == 2


# ------------------------------------------------------------------------- compilation policy
KERNELS = [kconv.im2col_serial, kconv.im2col_parallel, kconv.col2im_serial, kconv.col2im_parallel,
           *kpool.SERIAL_AND_PARALLEL, act.relu_fwd, act.relu_bwd, act.leaky_relu_fwd, act.leaky_relu_bwd,
           act.tanh_bwd, act.sigmoid_bwd, act.softplus_bwd]


def test_at_most_two_specialisations_per_kernel(rng, monkeypatch):
    """float32 and float64 only: the checked callers never pass other dtypes or layouts.

    Run every layer in both dtypes on small and large inputs (serial and parallel kernels), given
    as C-contiguous, Fortran-ordered and read-only arrays, with numpy ints as hyperparameters; then
    count the compiled signatures of every kernel.
    """
    from bioplausible import layers as L
    monkeypatch.setattr(kconv, "PARALLEL_MIN", 1 << 15)  # the large inputs take the parallel path
    monkeypatch.setattr(kpool, "PARALLEL_MIN", 1 << 15)
    for dtype in (np.float32, np.float64):
        for shape in [(2, 9, 8, 3), (2, 48, 48, 3)]:
            x = rng.standard_normal(shape).astype(dtype)
            x_ro = x.copy()
            x_ro.flags.writeable = False
            # K = 27: im2col rebuilt in blocks; K = 75: full im2col kept
            convs = [L.Conv2d(3, 8, np.int64(3), stride=1, padding=1, rng=rng).astype(dtype),
                     L.Conv2d(3, 8, 5, stride=1, padding=np.int64(2), rng=rng).astype(dtype)]
            others = [L.ReLU(), L.MaxPool2d(2), L.LeakyReLU(0.2), L.Tanh(), L.Sigmoid(), L.Softplus(),
                      L.ReLUMaxPool2d(3, 2), L.AvgPool2d(np.int32(2))]
            for inp, conv in itertools.product((x, np.asfortranarray(x), x_ro), convs):
                h, c = conv.forward(inp)
                for layer in others:
                    y, cy = layer.forward(h)
                    layer.backward(cy, np.asfortranarray(np.ones_like(y)))
                conv.backward(c, np.ones_like(h))
                c.cols  # noqa: B018 - the im2col matrix of a direct cache, built on demand
    for k in KERNELS:
        sigs = k.signatures
        assert 1 <= len(sigs) <= 2, (k, sigs)
        for sig in sigs:
            for t in sig:
                if hasattr(t, "dtype"):
                    assert str(t.dtype) in ("float32", "float64", "int32"), (k, sig)
                    assert t.layout == "C" and t.mutable, (k, sig)


def test_import_compiles_nothing_and_is_fast():
    code = (
        "import time; t = time.perf_counter()\n"
        "import bioplausible.layers as L\n"
        "dt = time.perf_counter() - t\n"
        "import bioplausible.kernels.conv as C, bioplausible.kernels.pool as P, "
        "bioplausible.kernels.activations as A\n"
        "ks = [C.im2col_serial, C.im2col_parallel, C.col2im_parallel, *P.SERIAL_AND_PARALLEL,\n"
        "      A.relu_fwd, A.relu_bwd]\n"
        "assert all(len(k.signatures) == 0 for k in ks), [k.signatures for k in ks]\n"
        "print(dt)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) < 3.0
