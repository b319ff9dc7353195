"""Layers: backward vs finite differences (float64), vs PyTorch autograd, shapes, errors, buffers."""
import pickle

import numpy as np
import pytest

from bioplausible.layers import (LAYERS, AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool, Identity,
                                 LeakyReLU, MaxPool2d, ReLU, ReLUMaxPool2d, ShapeError, Sigmoid,
                                 Softplus, Tanh)

from conftest import torch_or_skip


# ----------------------------------------------------------------------------------- helpers
def away_from(x, points=(0.0,), margin=0.05):
    """Push entries at least ``margin`` away from kinks so central differences are exact."""
    x = x.copy()
    for p in points:
        close = np.abs(x - p) < margin
        x[close] = p + np.sign(x[close] - p + 1e-300) * margin * (1 + np.abs(x[close]))
    return x


def numeric_grad(f, a, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of ``a`` (in place)."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        fp = f()
        a[idx] = old - eps
        fm = f()
        a[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


def rel_err(a, b):
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-12)
    return np.abs(a - b).max() / scale


def check_gradients(layer, x, rng, tol=1e-6):
    """L = sum(g * y) with random g, so dy = g; compare dx and every param grad with central FD."""
    if layer.params:
        layer.astype(np.float64)
    x = x.astype(np.float64)
    y, cache = layer.forward(x)
    g = rng.standard_normal(y.shape)
    dx, grads = layer.backward(cache, g, need_dx=True)
    assert set(grads) == set(layer.params)

    def loss():
        return float(np.sum(g * layer.forward(x)[0]))

    assert rel_err(numeric_grad(loss, x), dx) < tol
    for k, p in layer.params.items():
        assert grads[k].shape == p.shape and grads[k].dtype == p.dtype
        assert rel_err(numeric_grad(loss, p), grads[k]) < tol, k
    return y, dx, grads


CONV_CONFIGS = [  # c_in, c_out, kernel, stride, padding, input (N, H, W), bias
    (3, 4, 3, 1, 1, (2, 7, 5), True),
    (3, 2, 3, 2, 0, (2, 7, 5), True),
    (2, 3, 5, 1, 2, (1, 6, 6), True),
    (3, 4, 1, 1, 0, (2, 5, 4), True),
    (2, 3, (3, 2), (2, 1), (1, 0), (2, 6, 5), True),
    (1, 2, 3, 3, 2, (1, 5, 5), False),
]


# ------------------------------------------------------------------- finite-difference checks
@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_conv2d_gradients_finite_differences(cfg, rng):
    c_in, c_out, k, s, p, (n, h, w), bias = cfg
    layer = Conv2d(c_in, c_out, k, stride=s, padding=p, rng=rng, bias=bias)
    x = rng.standard_normal((n, h, w, c_in))
    y, _, _ = check_gradients(layer, x, rng)
    assert y.shape == (n,) + layer.output_shape((h, w, c_in))


@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradients_finite_differences(bias, rng):
    layer = Dense(5, 3, rng=rng, bias=bias)
    check_gradients(layer, rng.standard_normal((4, 5)), rng)


@pytest.mark.parametrize("cls,size,stride", [(MaxPool2d, 2, None), (MaxPool2d, 3, 2), (MaxPool2d, (2, 3), (1, 2)),
                                             (ReLUMaxPool2d, 2, None), (ReLUMaxPool2d, 3, 1),
                                             (AvgPool2d, 2, None), (AvgPool2d, 3, 2), (AvgPool2d, (3, 1), 1)])
def test_pool_gradients_finite_differences(cls, size, stride, rng):
    x = rng.permutation(2 * 7 * 5 * 3).reshape(2, 7, 5, 3) / 50.0 - 1.0  # distinct values: no ties
    if cls is ReLUMaxPool2d:
        x = away_from(x)
    check_gradients(cls(size, stride), x, rng)


def test_global_avg_pool_and_flatten_gradients(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    z, _, _ = check_gradients(GlobalAvgPool(), x, rng)
    np.testing.assert_allclose(z, x.mean(axis=(1, 2)))
    f, _, _ = check_gradients(Flatten(), x, rng)
    np.testing.assert_array_equal(f, x.reshape(2, -1))


@pytest.mark.parametrize("layer", [ReLU(), LeakyReLU(0.1), LeakyReLU(0.0), Tanh(), Sigmoid(), Softplus(),
                                   Identity()], ids=repr)
def test_activation_gradients_finite_differences(layer, rng):
    x = away_from(rng.standard_normal((3, 4, 2, 2)) * 2)
    check_gradients(layer, x, rng)


@pytest.mark.parametrize("layer", [ReLU(), LeakyReLU(0.2), Tanh(), Sigmoid(), Softplus(), Identity(),
                                   ReLUMaxPool2d(1)], ids=repr)
def test_grad_from_output_is_derivative(layer, rng):
    """rho'(a) from the cached output equals central differences of rho at a."""
    a = away_from(rng.standard_normal((4, 3, 2, 5)) * 3)
    y, cache = layer.forward(a)
    rho_prime = layer.grad_from_output(cache if not isinstance(layer, ReLUMaxPool2d) else cache.y)
    eps = 1e-6
    num = (layer.forward(a + eps)[0] - layer.forward(a - eps)[0]) / (2 * eps)
    assert rel_err(num, rho_prime) < 1e-6
    if hasattr(layer, "derivative"):
        np.testing.assert_allclose(layer.derivative(a), rho_prime, rtol=1e-12)


def test_sigmoid_softplus_extreme_inputs_are_finite():
    a = np.array([-200.0, -30.0, 0.0, 30.0, 200.0], np.float32)
    s = Sigmoid()(a)
    assert np.all(np.isfinite(s)) and s[0] == 0 and s[-1] == 1 and s[1] > 0
    sp = Softplus()(a)
    assert np.all(np.isfinite(sp)) and sp[-1] == 200


# --------------------------------------------------------------------------- need_dx=False
def _param_free_examples(rng):
    x4 = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    return [(MaxPool2d(2), x4), (ReLUMaxPool2d(2), x4), (AvgPool2d(2), x4), (GlobalAvgPool(), x4),
            (Flatten(), x4), (ReLU(), x4), (Tanh(), x4), (Identity(), x4)]


def test_need_dx_false_returns_none_and_same_grads(rng):
    cases = [(Conv2d(3, 4, 3, padding=1, rng=rng), rng.standard_normal((2, 6, 6, 3)).astype(np.float32)),
             (Dense(5, 3, rng=rng), rng.standard_normal((4, 5)).astype(np.float32))]
    cases += _param_free_examples(rng)
    for layer, x in cases:
        y, cache = layer.forward(x)
        g = rng.standard_normal(y.shape).astype(np.float32)
        dx, grads = layer.backward(cache, g, need_dx=True)
        assert dx is not None and dx.shape == x.shape and dx.dtype == np.float32
        grads = {k: v.copy() for k, v in grads.items()}
        dx2, grads2 = layer.backward(cache, g, need_dx=False)
        assert dx2 is None, layer
        assert set(grads2) == set(grads) == set(layer.params)
        for k in grads:
            np.testing.assert_array_equal(grads[k], grads2[k])


# -------------------------------------------------------------------------------- PyTorch
def _conv_torch(torch, layer, x, g):
    """Forward/backward of the same convolution in torch (NCHW), returned in our layouts."""
    F = torch.nn.functional
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_(True)
    wt = torch.from_numpy(np.ascontiguousarray(layer.params["w"].transpose(3, 2, 0, 1))).requires_grad_(True)
    bt = torch.from_numpy(layer.params["b"].copy()).requires_grad_(True) if layer.bias else None
    yt = F.conv2d(xt, wt, bt, stride=layer.stride, padding=layer.padding)
    yt.backward(torch.from_numpy(np.ascontiguousarray(g.transpose(0, 3, 1, 2))))
    out = {"y": yt.detach().numpy().transpose(0, 2, 3, 1), "dx": xt.grad.numpy().transpose(0, 2, 3, 1),
           "w": wt.grad.numpy().transpose(2, 3, 1, 0)}
    if layer.bias:
        out["b"] = bt.grad.numpy()
    return out


PREC = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONV_CONFIGS + [(32, 64, 3, 1, 1, (4, 14, 14), True)])
def test_conv2d_matches_torch(cfg, dtype, rng):
    torch = torch_or_skip()
    c_in, c_out, k, s, p, (n, h, w), bias = cfg
    layer = Conv2d(c_in, c_out, k, stride=s, padding=p, rng=rng, bias=bias).astype(dtype)
    x = rng.standard_normal((n, h, w, c_in)).astype(dtype)
    y, cache = layer.forward(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    dx, grads = layer.backward(cache, g)
    ref = _conv_torch(torch, layer, x, g)
    assert rel_err(y, ref["y"]) < PREC[dtype]
    assert rel_err(dx, ref["dx"]) < PREC[dtype]
    for key in grads:
        assert rel_err(grads[key], ref[key]) < PREC[dtype], key


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pools_activations_dense_match_torch(dtype, rng):
    torch = torch_or_skip()
    F = torch.nn.functional
    x = rng.standard_normal((3, 9, 7, 4)).astype(dtype)

    def nchw(a):
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))

    def nhwc(t):
        return t.detach().numpy().transpose(0, 2, 3, 1)

    cases = [
        (MaxPool2d(2), lambda t: F.max_pool2d(t, 2), True),
        (MaxPool2d(3, 2), lambda t: F.max_pool2d(t, 3, 2), True),
        (ReLUMaxPool2d(2), lambda t: F.max_pool2d(F.relu(t), 2), True),
        (AvgPool2d(2), lambda t: F.avg_pool2d(t, 2), True),
        (AvgPool2d((3, 2), (2, 1)), lambda t: F.avg_pool2d(t, (3, 2), (2, 1)), True),
        (GlobalAvgPool(), lambda t: t.mean(dim=(2, 3)), False),
        (ReLU(), F.relu, True),
        (LeakyReLU(0.1), lambda t: F.leaky_relu(t, 0.1), True),
        (Tanh(), torch.tanh, True),
        (Sigmoid(), torch.sigmoid, True),
        (Softplus(), lambda t: F.softplus(t, threshold=1000), True),
    ]
    for layer, fn, image_out in cases:
        y, cache = layer.forward(x)
        g = rng.standard_normal(y.shape).astype(dtype)
        dx, _ = layer.backward(cache, g)
        xt = nchw(x).requires_grad_(True)
        yt = fn(xt)
        yt.backward(nchw(g) if image_out else torch.from_numpy(g))
        y_ref = nhwc(yt) if image_out else yt.detach().numpy()
        assert rel_err(y, y_ref) < PREC[dtype], layer
        assert rel_err(dx, nhwc(xt.grad)) < PREC[dtype], layer

    dense = Dense(6, 5, rng=rng).astype(dtype)
    xd = rng.standard_normal((4, 6)).astype(dtype)
    y, cache = dense.forward(xd)
    g = rng.standard_normal(y.shape).astype(dtype)
    dx, grads = dense.backward(cache, g)
    xt = torch.from_numpy(xd).requires_grad_(True)
    wt = torch.from_numpy(dense.params["w"].T.copy()).requires_grad_(True)
    bt = torch.from_numpy(dense.params["b"].copy()).requires_grad_(True)
    yt = F.linear(xt, wt, bt)
    yt.backward(torch.from_numpy(g))
    assert rel_err(y, yt.detach().numpy()) < PREC[dtype]
    assert rel_err(dx, xt.grad.numpy()) < PREC[dtype]
    assert rel_err(grads["w"], wt.grad.numpy().T) < PREC[dtype]
    assert rel_err(grads["b"], bt.grad.numpy()) < PREC[dtype]


@pytest.mark.torch
@pytest.mark.parametrize("fused", [False, True])
def test_conv3_network_matches_torch(fused, rng):
    """The protocol's encoder (fused or separate ReLU/pool) against torch.nn, forward and backward."""
    torch = torch_or_skip()
    nn = torch.nn
    x = rng.standard_normal((3, 12, 10, 3)).astype(np.float32)
    convs = [Conv2d(3, 8, 3, padding=1, rng=rng), Conv2d(8, 16, 3, padding=1, rng=rng),
             Conv2d(16, 32, 3, padding=1, rng=rng)]

    def pool():
        return [ReLUMaxPool2d(2)] if fused else [ReLU(), MaxPool2d(2)]

    ours = [convs[0], *pool(), convs[1], *pool(), convs[2], ReLU()]
    tnet = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
    tconvs = [tnet[0], tnet[3], tnet[6]]
    with torch.no_grad():
        for t, c in zip(tconvs, convs):
            t.weight.copy_(torch.from_numpy(c.params["w"].transpose(3, 2, 0, 1).copy()))
            t.bias.copy_(torch.from_numpy(c.params["b"]))

    h, caches = x, []
    for layer in ours:
        h, c = layer.forward(h)
        caches.append(c)
    g_top = rng.standard_normal(h.shape).astype(np.float32)
    g, grads = g_top, {}
    for i in range(len(ours) - 1, -1, -1):
        g, grads[i] = ours[i].backward(caches[i], g, need_dx=i > 0)
    assert g is None  # no input gradient for the first layer

    yt = tnet(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    yt.backward(torch.from_numpy(np.ascontiguousarray(g_top.transpose(0, 3, 1, 2))))
    assert rel_err(h, yt.detach().numpy().transpose(0, 2, 3, 1)) < 1e-5
    conv_idx = [i for i, layer in enumerate(ours) if isinstance(layer, Conv2d)]
    for i, t in zip(conv_idx, tconvs):
        assert rel_err(grads[i]["w"], t.weight.grad.numpy().transpose(2, 3, 1, 0)) < 1e-4
        assert rel_err(grads[i]["b"], t.bias.grad.numpy()) < 1e-4


# ------------------------------------------------------------------------ shapes and errors
def test_output_shapes_match_forward(rng):
    x = rng.standard_normal((2, 11, 9, 3)).astype(np.float32)
    seq = [Conv2d(3, 5, 3, stride=2, padding=1, rng=rng), ReLU(), MaxPool2d(2), AvgPool2d(1),
           Conv2d(5, 6, (1, 2), rng=rng), Tanh(), Flatten(), Dense(6 * 3 * 1, 4, rng=rng), Sigmoid()]
    shape = x.shape[1:]
    h = x
    for layer in seq:
        shape = layer.output_shape(shape)
        h = layer(h)
        assert h.shape == (2,) + shape, layer
        assert h.dtype == np.float32
    assert GlobalAvgPool().output_shape((5, 4, 7)) == (7,)


@pytest.mark.parametrize("make,x,pattern", [
    (lambda r: Conv2d(3, 4, 3, rng=r), np.zeros((8, 32, 32, 1), np.float32),
     r"Conv2d expects NHWC float32 input with 3 channels, got shape \(8, 32, 32, 1\)"),
    (lambda r: Conv2d(3, 4, 3, rng=r), np.zeros((32, 32, 3), np.float32), r"got shape \(32, 32, 3\)"),
    (lambda r: Conv2d(3, 4, 3, rng=r), np.zeros((2, 8, 8, 3), np.float64), r"dtype float32.*got dtype float64"),
    (lambda r: Conv2d(3, 4, 3, rng=r), np.zeros((2, 8, 8, 3), np.int64), r"dtype float32"),
    (lambda r: Conv2d(3, 4, 5, rng=r), np.zeros((2, 4, 8, 3), np.float32), r"does not fit a 4x8 image"),
    (lambda r: Dense(10, 2, rng=r), np.zeros((4, 2, 5), np.float32), r"\(N, 10\).*use Flatten"),
    (lambda r: Dense(10, 2, rng=r), np.zeros((4, 9), np.float32), r"\(N, 10\) float32 input, got shape \(4, 9\)"),
    (lambda r: MaxPool2d(2), np.zeros((4, 9), np.float32), r"MaxPool2d expects NHWC.*got shape \(4, 9\)"),
    (lambda r: MaxPool2d(3), np.zeros((1, 2, 8, 1), np.float32), r"window 3x3 does not fit a 2x8 image"),
    (lambda r: AvgPool2d(2), np.zeros((1, 4, 4, 1), np.int32), r"float32"),
    (lambda r: GlobalAvgPool(), np.zeros((4, 9), np.float32), r"GlobalAvgPool expects NHWC"),
    (lambda r: ReLU(), [1.0, 2.0], r"numpy array"),
])
def test_bad_inputs_raise_shape_error(make, x, pattern, rng):
    with pytest.raises(ShapeError, match=pattern):
        make(rng).forward(x)


def test_bad_dy_raises_shape_error(rng):
    conv = Conv2d(3, 4, 3, padding=1, rng=rng)
    y, cache = conv.forward(np.zeros((2, 5, 5, 3), np.float32))
    with pytest.raises(ShapeError, match=r"dy of the output's shape \(2, 5, 5, 4\)"):
        conv.backward(cache, np.zeros((2, 5, 5, 3), np.float32))
    with pytest.raises(ShapeError, match="dtype float32"):
        conv.backward(cache, np.zeros(y.shape, np.float64))
    pool = MaxPool2d(2)
    y, cache = pool.forward(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ShapeError, match="MaxPool2d.backward"):
        pool.backward(cache, np.zeros((2, 4, 4, 3), np.float32))


def test_constructor_validation(rng):
    for make in (lambda: Dense(3, 2), lambda: Conv2d(3, 2, 3), lambda: Dense(3, 2, rng=0),
                 lambda: Conv2d(3, 2, 3, rng=np.random.RandomState(0))):
        with pytest.raises(TypeError, match="numpy.random.Generator"):
            make()
    with pytest.raises(ValueError):
        Conv2d(3, 2, 0, rng=rng)
    with pytest.raises(ValueError):
        Conv2d(3, 2, 3, padding=-1, rng=rng)
    with pytest.raises(ValueError):
        MaxPool2d((2, 2, 2))
    with pytest.raises(ValueError):
        LeakyReLU(-0.1)


# ------------------------------------------------------------------------ initialisation
def test_init_like_pytorch_and_reproducible():
    conv = Conv2d(16, 300, 3, rng=np.random.default_rng(7))
    bound = 1 / np.sqrt(3 * 3 * 16)
    w = conv.params["w"]
    assert w.shape == (3, 3, 16, 300) and w.dtype == np.float32 and w.flags.c_contiguous
    assert conv.params["b"].shape == (300,) and conv.params["b"].dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.02 * bound  # uniform on [-bound, bound]
    assert np.abs(conv.params["b"]).max() <= bound
    again = Conv2d(16, 300, 3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(again.params["w"], w)
    other = Conv2d(16, 300, 3, rng=np.random.default_rng(8))
    assert not np.array_equal(other.params["w"], w)
    dense = Dense(50, 7, rng=np.random.default_rng(0), bias=False)
    assert list(dense.params) == ["w"] and np.abs(dense.params["w"]).max() <= 1 / np.sqrt(50)


def test_registry_has_recipe_names():
    for name in ["dense", "conv2d", "maxpool2d", "avgpool2d", "gap", "flatten", "relu", "leaky_relu",
                 "tanh", "sigmoid", "identity"]:
        assert name in LAYERS
    assert LAYERS["conv2d"] is Conv2d and LAYERS["gap"] is GlobalAvgPool and LAYERS["relu"] is ReLU


# --------------------------------------------------------------- caches for local rules
def test_conv_cache_exposes_receptive_fields_and_weight_grads(rng):
    conv = Conv2d(2, 3, 3, stride=2, padding=1, rng=rng)
    x = rng.standard_normal((2, 5, 6, 2)).astype(np.float32)
    y, cache = conv.forward(x)
    assert cache.x_cols.shape == (2 * 3 * 3, 3 * 3 * 2)
    np.testing.assert_allclose(cache.x_cols @ conv.params["w"].reshape(-1, 3) + conv.params["b"],
                               y.reshape(-1, 3), rtol=1e-5, atol=1e-6)
    delta = rng.standard_normal(y.shape).astype(np.float32)
    upd = conv.weight_grads(cache, delta)
    # Δw_{i,j,c,d} = Σ_{n,oh,ow} x[n, 2oh-1+i, 2ow-1+j, c] δ[n,oh,ow,d], written out directly
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ref = np.zeros((3, 3, 2, 3))
    for i in range(3):
        for j in range(3):
            patch = xp[:, i:i + 5:2, j:j + 5:2, :][:, :3, :3]
            ref[i, j] = np.einsum("nhwc,nhwd->cd", patch, delta)
    np.testing.assert_allclose(upd["w"], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(upd["b"], delta.sum(axis=(0, 1, 2)), rtol=1e-5)


def test_maxpool_cache_argmax_and_winner_mask(rng):
    x = rng.standard_normal((2, 4, 6, 3)).astype(np.float32)
    pool = MaxPool2d(2)
    y, cache = pool.forward(x)
    mask = pool.winner_mask(cache)
    assert mask.sum() == y.size
    np.testing.assert_array_equal(np.sort(x[mask == 1]), np.sort(y.ravel()))  # winners = maxima
    win = x.reshape(2, 2, 2, 3, 2, 3).transpose(0, 1, 3, 5, 2, 4).reshape(2, 2, 3, 3, 4)
    np.testing.assert_array_equal(cache.arg, np.argmax(win, axis=-1))
    np.testing.assert_array_equal(np.take_along_axis(win, cache.arg[..., None].astype(np.int64), -1)[..., 0], y)


# ----------------------------------------------------------------------- pooled buffers
def test_outputs_held_by_caller_are_never_overwritten(rng):
    """Two forwards before one backward (anchor and positive views): both caches stay intact."""
    conv = Conv2d(3, 4, 3, padding=1, rng=rng)
    relu, pool = ReLU(), MaxPool2d(2)
    xa = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    xb = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    ya, ca = conv.forward(xa)
    ra, rca = relu.forward(ya)
    pa, pca = pool.forward(ra)
    snap = [a.copy() for a in (ya, ca.cols, ra, pa, pca.arg)]
    yb, cb = conv.forward(xb)
    rb, _ = relu.forward(yb)
    pb, _ = pool.forward(rb)
    for a, s in zip((ya, ca.cols, ra, pa, pca.arg), snap):
        np.testing.assert_array_equal(a, s)
    assert not np.shares_memory(ya, yb) and not np.shares_memory(ca.cols, cb.cols)
    # gradients computed later from the first cache are those of the first input
    g = rng.standard_normal(ya.shape).astype(np.float32)
    fresh = Conv2d(3, 4, 3, padding=1, rng=np.random.default_rng(0))
    fresh.params = {k: v.copy() for k, v in conv.params.items()}
    np.testing.assert_allclose(conv.backward(ca, g)[1]["w"], fresh.backward(fresh.forward(xa)[1], g)[1]["w"],
                               rtol=1e-6)


def test_dropped_buffers_are_reused_and_layers_pickle(rng):
    conv = Conv2d(3, 4, 3, padding=1, rng=rng)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    y, cache = conv.forward(x)
    addr = y.__array_interface__["data"][0]
    expected = y.copy()
    del y, cache
    y2, _ = conv.forward(x)
    assert y2.__array_interface__["data"][0] == addr
    np.testing.assert_array_equal(y2, expected)
    clone = pickle.loads(pickle.dumps(conv))
    np.testing.assert_array_equal(clone(x), y2)
    assert "_pool" not in pickle.loads(pickle.dumps(conv)).__dict__


def test_conv2d_chunked_backward_and_empty_batch(rng, monkeypatch):
    """dx is computed in blocks of images; any block size (here 1 and 3 images) gives the same dx."""
    import bioplausible.layers.conv as lconv
    conv = Conv2d(3, 4, 3, stride=2, padding=1, rng=rng)
    x = rng.standard_normal((7, 9, 8, 3)).astype(np.float32)
    y, cache = conv.forward(x)
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx_full = conv.backward(cache, g)[0].copy()
    per_img = y.shape[1] * y.shape[2] * 27 * 4
    for imgs in (1, 3):
        monkeypatch.setattr(lconv, "_CHUNK_BYTES", imgs * per_img)
        np.testing.assert_allclose(conv.backward(cache, g)[0], dx_full, rtol=1e-6, atol=1e-7)
    y0, c0 = conv.forward(np.zeros((0, 9, 8, 3), np.float32))
    dx0, g0 = conv.backward(c0, y0)
    assert y0.shape == (0, 5, 4, 4) and dx0.shape == (0, 9, 8, 3)
    np.testing.assert_array_equal(g0["w"], 0)


def test_float32_and_float64_agree(rng):
    conv = Conv2d(3, 5, 3, stride=2, padding=2, rng=rng)
    x = rng.standard_normal((2, 9, 7, 3)).astype(np.float32)
    y32 = conv(x).copy()
    y64 = conv.astype(np.float64)(x.astype(np.float64))
    assert y64.dtype == np.float64
    assert rel_err(y32, y64) < 1e-5
