"""Kernels and code paths added for training speed, each against a reference.

* ``Conv2d`` with few inputs per neuron (im2col rebuilt in blocks, x kept in the cache) == with the
  full im2col matrix kept; its backward matches finite differences (float64);
* ``ConvCache`` that keeps x: ``cols`` built on demand, ``take`` of a subset of samples;
* the window-wise max-pool backward (gather) with gaps between windows, against the reference;
* batch-parallel layer work (slices of the batch on threads) == unsplit, errors propagate, BLAS
  thread count restored; small products on one BLAS thread.
"""
import numpy as np
import pytest

from bioplausible.kernels import pool as kpool
from bioplausible.layers import Conv2d, ReLUMaxPool2d
from bioplausible.layers import conv as lconv

from test_kernels import ref_im2col, ref_maxpool_bwd, run_maxpool

VARIANTS = ["serial", "parallel"]
from test_layers import check_gradients, rel_err

# ------------------------------------------------------------------------------ Conv2d paths
LAYER_CASES = [  # c_in, c_out, kernel, stride, padding, (N, H, W), bias
    (1, 4, 3, 1, 1, (1, 5, 7), True),
    (3, 5, 3, 1, 1, (2, 6, 5), True),
    (3, 2, 3, 2, 0, (2, 7, 5), False),
    (2, 3, (3, 2), (2, 1), (1, 0), (2, 6, 5), True),
]


@pytest.mark.parametrize("cfg", LAYER_CASES)
def test_conv2d_x_cache_equals_cols_cache(cfg, rng, monkeypatch):
    c_in, c_out, k, s, p, (n, h, w), bias = cfg
    conv = Conv2d(c_in, c_out, k, stride=s, padding=p, rng=rng, bias=bias)
    x = rng.standard_normal((n, h, w, c_in)).astype(np.float32)
    y, cache = conv.forward(x)
    assert cache.has_x and cache.x is not None
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx, grads = conv.backward(cache, g)
    y, dx, grads = y.copy(), dx.copy(), {kk: v.copy() for kk, v in grads.items()}
    monkeypatch.setattr(lconv, "RECOMPUTE_MAX_K", 0)
    y2, cache2 = conv.forward(x)
    assert not cache2.has_x
    dx2, grads2 = conv.backward(cache2, g)
    assert rel_err(y, y2) < 1e-5 and rel_err(dx, dx2) < 1e-5
    assert set(grads) == set(grads2) == set(conv.params)
    for kk in grads:
        assert grads[kk].shape == conv.params[kk].shape and grads[kk].dtype == np.float32
        assert rel_err(grads[kk], grads2[kk]) < 1e-5
    # the x cache builds the same im2col matrix on demand (== the reference im2col)
    np.testing.assert_array_equal(cache.cols, cache2.cols)
    np.testing.assert_array_equal(cache.x_cols, ref_im2col(x, conv.kernel, conv.stride, conv.padding))
    np.testing.assert_array_equal(cache.x_cols, cache2.x_cols)


@pytest.mark.parametrize("cfg", LAYER_CASES)
@pytest.mark.parametrize("block_bytes", [1, 1 << 20])  # one image per im2col block, or all
def test_conv2d_x_cache_gradients_finite_differences(cfg, block_bytes, rng, monkeypatch):
    monkeypatch.setattr(lconv, "_BLOCK_BYTES", block_bytes)
    c_in, c_out, k, s, p, (n, h, w), bias = cfg
    conv = Conv2d(c_in, c_out, k, stride=s, padding=p, rng=rng, bias=bias)
    assert conv.kernel[0] * conv.kernel[1] * c_in <= lconv.RECOMPUTE_MAX_K
    y, cache = conv.forward(rng.standard_normal((n, h, w, c_in)).astype(np.float32))
    assert cache.has_x
    check_gradients(conv, rng.standard_normal((n, h, w, c_in)), rng)


def test_conv_cache_take_and_zero_batch(rng, monkeypatch):
    """A local rule's sample subset: same weight gradient as the full cache with δ = 0 elsewhere."""
    for max_k in (lconv.RECOMPUTE_MAX_K, 0):
        monkeypatch.setattr(lconv, "RECOMPUTE_MAX_K", max_k)
        conv = Conv2d(3, 4, 3, padding=1, rng=np.random.default_rng(0))
        x = rng.standard_normal((5, 6, 7, 3)).astype(np.float32)
        y, cache = conv.forward(x)
        rows = np.array([4, 1])
        delta = np.zeros(y.shape, np.float32)
        delta[rows] = rng.standard_normal((2,) + y.shape[1:])
        sub = cache.take(rows)
        assert sub.has_x == cache.has_x and sub.x_shape == (2, 6, 7, 3)
        g_sub = conv.weight_grads(sub, np.ascontiguousarray(delta[rows]))
        g_all = conv.weight_grads(cache, delta)
        for kk in g_all:
            assert rel_err(g_sub[kk], g_all[kk]) < 1e-5
        y0, c0 = conv.forward(np.zeros((0, 6, 7, 3), np.float32))
        dx0, g0 = conv.backward(c0, y0)
        assert y0.shape == (0, 6, 7, 4) and dx0.shape == (0, 6, 7, 3)
        np.testing.assert_array_equal(g0["w"], 0)
        np.testing.assert_array_equal(g0["b"], 0)


def test_x_cache_conv_zero_input_and_float64(rng):
    conv = Conv2d(1, 3, 3, padding=1, rng=rng)
    y = conv(np.zeros((1, 5, 5, 1), np.float32))
    np.testing.assert_array_equal(y, np.broadcast_to(conv.params["b"], y.shape))
    x = rng.standard_normal((2, 5, 4, 1)).astype(np.float32)
    y32 = conv(x).copy()
    y64 = conv.astype(np.float64)(x.astype(np.float64))
    assert y64.dtype == np.float64 and rel_err(y32, y64) < 1e-6


# ------------------------------------------------------------------------------- max-pool
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape,k,s", [((2, 9, 11, 3), (2, 2), (3, 4)),   # gaps along H and W
                                       ((1, 5, 7, 1), (2, 2), (2, 2)),    # odd: rows/cols left over
                                       ((1, 4, 4, 2), (2, 1), (2, 3))])
def test_maxpool_gather_gaps(shape, k, s, relu, variant, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    y, arg = run_maxpool(x, k, s, relu, variant)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = np.full(shape, np.nan, np.float32)
    getattr(kpool, f"maxpool_bwd_gather_{variant}")(dy, arg, y, relu, k[0], k[1], s[0], s[1], dx)
    np.testing.assert_array_equal(dx, ref_maxpool_bwd(dy, x, k, s, relu))


def test_relu_maxpool_layer_zero_input():
    pool = ReLUMaxPool2d(2)
    y, cache = pool.forward(np.zeros((1, 5, 5, 2), np.float32))
    dx, _ = pool.backward(cache, np.ones_like(y))
    np.testing.assert_array_equal(y, 0)
    np.testing.assert_array_equal(dx, 0)  # ReLU'(0) = 0


# ------------------------------------------------------------------- batch-parallel layer work
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("cfg", LAYER_CASES)
def test_conv_weight_grads_rows_equals_take(cfg, split, rng, monkeypatch):
    """The gathered, chunked subset gradient equals the gradient of the copied subset (float64),
    for unsorted and repeated rows, every chunk size, split over cores or not, and no rows."""
    from bioplausible.layers import _parallel

    c_in, c_out, k, s, p, (n, h, w), bias = cfg
    if split:
        monkeypatch.setattr(_parallel, "MIN_SPLIT", 0)
        monkeypatch.setattr(_parallel, "n_workers", lambda: 3)
    for max_k, chunk_bytes in ((lconv.RECOMPUTE_MAX_K, 1 << 20), (0, 1 << 20), (0, 1)):
        monkeypatch.setattr(lconv, "RECOMPUTE_MAX_K", max_k)
        monkeypatch.setattr(lconv, "_CHUNK_BYTES", chunk_bytes)     # 1 byte: one image per chunk
        conv = Conv2d(c_in, c_out, k, stride=s, padding=p, bias=bias, rng=np.random.default_rng(0))
        conv.params["w"] = conv.params["w"].astype(np.float64)
        if bias:
            conv.params["b"] = conv.params["b"].astype(np.float64)
        x = rng.standard_normal((n + 4, h, w, c_in))
        y, cache = conv.forward(x)
        for rows in (np.array([n + 3, 0, 2, 2]), np.arange(n + 4), np.array([], np.int64)):
            delta = rng.standard_normal((len(rows),) + y.shape[1:])
            want = (conv.weight_grads(cache.take(rows), delta) if len(rows) else
                    {kk: np.zeros_like(v) for kk, v in conv.params.items()})
            got = conv.weight_grads_rows(cache, delta, rows)
            assert set(got) == set(want)
            for kk in want:
                assert got[kk].dtype == want[kk].dtype
                np.testing.assert_allclose(got[kk], want[kk], rtol=1e-12, atol=1e-12)


@pytest.fixture
def force_split(monkeypatch):
    """Split every layer call, into 3 slices (more than this machine's cores: tasks queue)."""
    from bioplausible.layers import _parallel
    monkeypatch.setattr(_parallel, "MIN_SPLIT", 0)
    monkeypatch.setattr(_parallel, "n_workers", lambda: 3)
    return _parallel


def test_plan_slices_cover_the_batch(force_split):
    for n in (0, 1, 2, 5, 256):
        parts = force_split.plan(n, 10)
        assert parts[0][0] == 0 and parts[-1][1] == n and len(parts) == max(1, min(3, n))
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))


def test_run_propagates_errors_and_nested_calls_run_inline(force_split):
    def fn(i, b0, b1):
        if i == 1:
            raise RuntimeError("part 1 failed")
        return i

    with pytest.raises(RuntimeError, match="part 1"):
        force_split.run([(0, 1), (1, 2), (2, 3)], fn)
    # a part that itself splits work runs its sub-parts inline (no deadlock on the pool)
    out = force_split.run([(0, 1), (1, 2)],
                          lambda i, a, b: force_split.run([(0, 1), (1, 2)], lambda j, c, d: (i, j)))
    assert out == [[(0, 0), (0, 1)], [(1, 0), (1, 1)]]


@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("c_in,k", [(3, 3), (8, 3)])  # x cache and cols cache
def test_split_layers_equal_unsplit(n, c_in, k, rng, monkeypatch):
    from bioplausible.layers import _parallel
    from bioplausible.layers import MaxPool2d, ReLU, Sigmoid

    def run_net(split):
        if split:
            monkeypatch.setattr(_parallel, "MIN_SPLIT", 0)
            monkeypatch.setattr(_parallel, "n_workers", lambda: 3)
        layers = [Conv2d(c_in, 6, k, padding=1, rng=np.random.default_rng(0)), ReLUMaxPool2d(2),
                  Conv2d(6, 4, 3, padding=1, rng=np.random.default_rng(1)), ReLU(), MaxPool2d(2),
                  Sigmoid()]
        x = np.random.default_rng(2).standard_normal((n, 9, 8, c_in)).astype(np.float32)
        h, caches = x, []
        for layer in layers:
            h, c = layer.forward(h)
            caches.append(c)
        out = [h.copy()]
        g = np.random.default_rng(3).standard_normal(h.shape).astype(np.float32)
        for layer, c in zip(layers[::-1], caches[::-1]):
            g, grads = layer.backward(c, g, need_dx=True)
            out += [g.copy()] + [grads[k].copy() for k in sorted(grads)]
        out += [v for k, v in sorted(layers[0].weight_grads(caches[0], np.ones((n, 9, 8, 6),
                                                                                np.float32)).items())]
        return out

    ref = run_net(False)
    got = run_net(True)
    assert len(ref) == len(got)
    for a, b in zip(ref, got):
        assert a.shape == b.shape and rel_err(a, b) < 1e-5


@pytest.mark.parametrize("cfg", [LAYER_CASES[1], (8, 3, 3, 1, 1, (3, 5, 4), True)])
def test_split_conv_gradients_finite_differences(cfg, rng, force_split):
    c_in, c_out, k, s, p, (n, h, w), bias = cfg
    conv = Conv2d(c_in, c_out, k, stride=s, padding=p, rng=rng, bias=bias)
    check_gradients(conv, rng.standard_normal((n, h, w, c_in)), rng)


def test_blas_threads_restored_and_one_inside_parts(force_split):
    from bioplausible.layers import _blas
    ctls = _blas._controllers()
    before = [c.num_threads for c in ctls]
    inside = force_split.run([(0, 1), (1, 2)], lambda i, a, b: [c.num_threads for c in ctls])
    assert [c.num_threads for c in ctls] == before
    for counts in inside:
        assert all(n == 1 for n in counts)
    x = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(_blas.matmul(x, x.T), np.full((3, 3), 4, np.float32))
    assert [c.num_threads for c in ctls] == before


@pytest.mark.parametrize("act", ["relu", "identity", "tanh", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooled_post_without_pooling_is_elementwise(act, dtype):
    """s = 1 (a block without max-pool) takes the element-wise path: δ = e · ρ'(a), written from
    r = ρ(a); checked against the formula, on a subset of rows (repeated, unsorted) and zero input."""
    from bioplausible.kernels.plasticity import pooled_post

    rng = np.random.default_rng(11)
    a = rng.standard_normal((5, 3, 4, 6))
    r = {"relu": np.maximum(a, 0), "identity": a, "tanh": np.tanh(a),
         "sigmoid": 1 / (1 + np.exp(-a))}[act].astype(dtype)
    e = rng.standard_normal(a.shape).astype(dtype)
    dr = {"relu": (r > 0).astype(dtype), "identity": np.ones_like(r), "tanh": 1 - r * r,
          "sigmoid": r * (1 - r)}[act]
    np.testing.assert_allclose(pooled_post(r, e, 1, act), e * dr, rtol=1e-6)
    rows = [4, 0, 4, 2]
    np.testing.assert_allclose(pooled_post(r, e, 1, act, rows=rows), (e * dr)[rows], rtol=1e-6)
    assert pooled_post(r, e, 1, act, rows=[]).shape == (0, 3, 4, 6)
    if act == "relu":
        assert not pooled_post(np.zeros_like(r), e, 1, act).any()


def test_supervised_data_parallel_step_equals_whole_batch(monkeypatch):
    """A supervised step split over the batch (3 uneven slices, each through every layer on its
    own replica of the network) gives the same loss, accuracy and updated weights as the whole
    batch at once; the replicas share the parameters (an update reaches all of them)."""
    from bioplausible import encoders
    from bioplausible.layers import _parallel
    from bioplausible.rules.backprop import Supervised

    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, 4, 10)
    results = {}
    for mode in ("whole", "split"):
        enc = encoders.build("conv3", (12, 12, 3), seed=1)
        rule = Supervised(enc, 4, lr=1e-2, seed=2)
        if mode == "split":
            monkeypatch.setattr(_parallel, "MIN_SPLIT", 0)
            monkeypatch.setattr(_parallel, "n_workers", lambda: 3)
        m = [rule.step(enc, {"x": x, "y": y, "rng": None}) for _ in range(2)]
        results[mode] = (m, [v.copy() for p in enc.params + rule.head.params for v in p.values()])
        if mode == "split":
            reps = rule._dp._replicas
            assert len(reps) == 2 and reps[0][0].layers[0] is not enc.blocks[0].layers[0]
            assert reps[0][0].layers[0].params is enc.blocks[0].layers[0].params
    (mw, pw), (ms, ps) = results["whole"], results["split"]
    for a, b in zip(mw, ms):
        assert a["acc"] == b["acc"]
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * max(1.0, abs(a["loss"]))
    for a, b in zip(pw, ps):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_data_parallel_gradients_float64():
    """The slices' gradients weighted by their share of the batch sum to the whole batch's
    gradient (float64, to 1e-12), for every layer of conv3 and the head."""
    from bioplausible import encoders
    from bioplausible.layers._parallel import replicate, weighted_sum
    from bioplausible.rules.backprop import Supervised

    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 12, 12, 3))
    y = rng.integers(0, 4, 7)
    enc = encoders.build("conv3", (12, 12, 3), seed=1)
    rule = Supervised(enc, 4, seed=2)
    blocks = list(enc.blocks) + [rule.head]
    for b in blocks:
        for layer in b.layers:
            if layer.params:
                layer.astype(np.float64)
    _, _, whole = rule._forward_backward(blocks, x, y)
    reps = replicate(blocks)
    parts = [rule._forward_backward(blocks, x[:3], y[:3]), rule._forward_backward(reps, x[3:], y[3:])]
    split = weighted_sum([p[2] for p in parts], [3 / 7, 4 / 7])
    assert len(split) == len(whole) and any(g for g in whole)
    for gw, gs in zip(whole, split):
        assert gw.keys() == gs.keys()
        for k in gw:
            np.testing.assert_allclose(gs[k], gw[k], rtol=1e-12, atol=1e-14)


def _layerwise(conv, pool, x, dy):
    a, cc = conv.forward(x)
    y, pc = pool.forward(a)
    da = pool.backward(pc, dy)[0]
    return y, pc, cc, conv.backward(cc, da, need_dx=False)[1]


@pytest.mark.parametrize("shape,n,relu", [((28, 28, 1), 5, True), ((13, 11, 3), 3, True),
                                          ((9, 9, 2), 1, False), ((8, 8, 3), 4, True)])
@pytest.mark.parametrize("split", [False, True])
def test_fused_first_block_equals_layer_by_layer(monkeypatch, shape, n, relu, split):
    """conv -> (ReLU +) max-pool in blocks of images (fused.forward / fused.weight_grads) gives the
    layer-by-layer output, caches and weight gradient (float64, 1e-12): odd sizes with leftover
    rows/columns, batch 1, one image per block, slices on 3 workers, zero input."""
    from bioplausible.layers import MaxPool2d, _parallel, fused

    if split:
        monkeypatch.setattr(_parallel, "MIN_SPLIT", 0)
        monkeypatch.setattr(_parallel, "n_workers", lambda: 3)
    monkeypatch.setattr(fused, "BLOCK_BYTES", 1)               # one image per block
    rng = np.random.default_rng(5)
    conv = Conv2d(shape[2], 6, 3, padding=1, rng=rng).astype(np.float64)
    pool = ReLUMaxPool2d(2) if relu else MaxPool2d(2)
    assert fused.fusable([conv, pool])
    for x in (rng.standard_normal((n,) + shape), np.zeros((n,) + shape)):
        y, (cc, pc) = fused.forward(conv, pool, x)
        y0, pc0, cc0, _ = _layerwise(conv, pool, x, rng.standard_normal(y.shape))
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(pc.arg, pc0.arg)
        assert pc.x_shape == pc0.x_shape and cc.has_x and cc.y_shape == cc0.y_shape
        dy = rng.standard_normal(y.shape)
        g = fused.weight_grads(conv, pool, [cc, pc], dy)
        g0 = _layerwise(conv, pool, x, dy)[3]
        assert g[1] == {}
        for k in ("w", "b"):
            np.testing.assert_allclose(g[0][k], g0[k], rtol=1e-12, atol=1e-12)


def test_fusable_only_for_first_blocks_with_disjoint_windows():
    from bioplausible.layers import MaxPool2d, ReLU, fused

    rng = np.random.default_rng(0)
    assert fused.fusable([Conv2d(3, 4, 3, rng=rng), ReLUMaxPool2d(2)])
    assert not fused.fusable([Conv2d(32, 4, 3, rng=rng), ReLUMaxPool2d(2)])     # K = 288: im2col kept
    assert not fused.fusable([Conv2d(3, 4, 3, rng=rng), MaxPool2d(3, 2)])        # overlapping windows
    assert not fused.fusable([Conv2d(3, 4, 3, rng=rng), ReLU()])
    assert not fused.fusable([Conv2d(3, 4, 3, rng=rng), ReLU(), MaxPool2d(2)])


def test_clapp_streamed_first_block_equals_plain(monkeypatch):
    """CLAPP's block-1 forward and update in blocks of images (no stored pre-pool activity or δ)
    change the weights exactly as the layer-by-layer path, with all inputs and with a subset."""
    from bioplausible import encoders, views
    from bioplausible.layers import fused
    from bioplausible.rules.clapp import CLAPP

    x = np.random.default_rng(1).standard_normal((12, 16, 16, 3)).astype(np.float32)
    out = {}
    for mode in ("streamed", "plain"):
        if mode == "plain":
            monkeypatch.setattr(fused, "fusable", lambda layers: False)
        for sparse in (0.0, 1.0):
            enc = encoders.build("conv3", (16, 16, 3), seed=0)
            rule = CLAPP(enc, views.preset("cifar10"), positives="views", lr=1e-3, seed=0,
                         sparse_below=sparse)
            assert rule.parts[0]._streamed() == (mode == "streamed")
            for P in rule.preds:              # large predictions: many hinges already satisfied
                P["w_pred"] *= 300.0
            for s in range(2):
                m = rule.step(enc, {"x": x, "y": None, "rng": np.random.default_rng(s)})
                assert 0.0 < m["plastic_b1"] < 1.0          # the subset path is used when sparse
            out[mode, sparse] = [v.copy() for v in enc.blocks[0].layers[0].params.values()]
    for sparse in (0.0, 1.0):
        for a, b in zip(out["streamed", sparse], out["plain", sparse]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_buffer_pool_stays_small_when_sizes_vary():
    """A request whose size changes from step to step (CLAPP encodes 1.5 views per image on
    average) reuses or replaces its buffer instead of hoarding one per new maximum; buffers still
    in use are never handed out again, and two arrays alive at once get two buffers."""
    from bioplausible.layers._util import BufferPool

    pool = BufferPool()
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(900, 1100))
        a = pool.get((n, 100), np.float32)       # e.g. im2col rows
        b = pool.get((n, 10), np.float32)        # e.g. the output, alive at the same time
        assert not np.shares_memory(a, b)
        a[...] = 1.0
        b[...] = 2.0
        assert a.min() == 1.0
        del a, b
    assert len(pool._bufs) <= 3
    assert sum(buf.nbytes for buf in pool._bufs) <= 2 * 1100 * 110 * 4
    keep = pool.get((1000, 100), np.float32)     # a caller keeps an array: a new one is made
    other = pool.get((1000, 100), np.float32)
    assert not np.shares_memory(keep, other)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_scaled_rows_matches_add_at(dtype):
    """out[idx[p]] += scale[p] * rows[p] equals np.add.at (repeated indices, zero scales, empty)."""
    from bioplausible.kernels.plasticity import scatter_scaled_rows

    rng = np.random.default_rng(2)
    idx = np.array([3, 0, 3, 3, 5, 1, 0], np.int64)
    scale = rng.standard_normal(7).astype(dtype)
    scale[2] = 0
    rows = rng.standard_normal((7, 4)).astype(dtype)
    out = rng.standard_normal((6, 4)).astype(dtype)
    ref = out.copy()
    np.add.at(ref, idx, scale[:, None] * rows)
    scatter_scaled_rows(out, idx, scale, rows)
    np.testing.assert_allclose(out, ref, rtol=1e-6 if dtype == np.float32 else 1e-14)
    before = out.copy()
    scatter_scaled_rows(out, idx[:0], scale[:0], rows[:0])
    np.testing.assert_array_equal(out, before)
