"""Augmentation kernels against slow numpy references; samplers and minibatches.

All images here are synthetic (random arrays), labelled as such in the names.
"""
import math

import numpy as np
import pytest

from bioplausible import views as V
from bioplausible.kernels import augment as K

GRAY_W = np.array([0.2989, 0.587, 0.114])


# ---------------------------------------------------------------- slow references
def ref_resized_crop(x, top, left, h, w, flip, out_size):
    """Obviously correct: flip the crop, then bilinear resize (align_corners=False, clamped), one
    pixel at a time (the kernel instead mirrors the sampling grid)."""
    n, _, _, c = x.shape
    oh, ow = out_size
    out = np.zeros((n, oh, ow, c))
    for b in range(n):
        crop = x[b, top[b]:top[b] + h[b], left[b]:left[b] + w[b]].astype(np.float64)
        if flip[b]:
            crop = crop[:, ::-1]
        for i in range(oh):
            for j in range(ow):
                sy = min(max((i + 0.5) * h[b] / oh - 0.5, 0.0), h[b] - 1)
                sx = min(max((j + 0.5) * w[b] / ow - 0.5, 0.0), w[b] - 1)
                y0, x0 = int(math.floor(sy)), int(math.floor(sx))
                y1, x1 = min(y0 + 1, h[b] - 1), min(x0 + 1, w[b] - 1)
                fy, fx = sy - y0, sx - x0
                out[b, i, j] = ((1 - fy) * (1 - fx) * crop[y0, x0] + (1 - fy) * fx * crop[y0, x1]
                                + fy * (1 - fx) * crop[y1, x0] + fy * fx * crop[y1, x1])
    return out


def ref_gray(img):
    if img.shape[-1] == 1:
        return img[..., 0].astype(np.float64)
    return img.astype(np.float64) @ GRAY_W


def ref_color(x, apply, bri, con, sat, order, gray):
    out = x.astype(np.float64).copy()
    for b in range(len(out)):
        img = out[b]
        if apply[b]:
            for op in order[b]:
                if op == 0:
                    img = np.clip(bri[b] * img, 0, 1)
                elif op == 1:
                    m = ref_gray(img).mean()
                    img = np.clip(con[b] * img + (1 - con[b]) * m, 0, 1)
                elif img.shape[-1] == 3:
                    g = ref_gray(img)[..., None]
                    img = np.clip(sat[b] * img + (1 - sat[b]) * g, 0, 1)
        if gray[b] and img.shape[-1] == 3:
            img = np.repeat(ref_gray(img)[..., None], 3, axis=-1)
        out[b] = img
    return out


SHAPES = [(1, 5, 7, 1), (3, 8, 8, 3), (4, 13, 9, 3), (2, 1, 1, 3), (5, 6, 11, 1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("out_size", [None, (7, 5)])
def test_resized_crop_matches_reference(shape, out_size, rng):
    x = rng.random(shape, dtype=np.float32)  # synthetic images
    n, h, w, _ = shape
    ch = rng.integers(1, h + 1, n)
    cw = rng.integers(1, w + 1, n)
    top = rng.integers(0, h - ch + 1)
    left = rng.integers(0, w - cw + 1)
    flip = rng.random(n) < 0.5
    got = V.resized_crop(x, top, left, ch, cw, flip, out_size=out_size)
    want = ref_resized_crop(x, top, left, ch, cw, flip, out_size or (h, w))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_resized_crop_edge_cases(rng):
    x = rng.random((3, 6, 6, 3), dtype=np.float32)  # synthetic
    # full box, no flip: identity (all weights are exactly zero)
    np.testing.assert_array_equal(V.resized_crop(x, 0, 0, 6, 6), x)
    # full box with flip: the mirror image
    np.testing.assert_array_equal(V.resized_crop(x, 0, 0, 6, 6, flip=True), x[:, :, ::-1])
    # a 1x1 box fills the output with that pixel
    out = V.resized_crop(x, 2, 3, 1, 1)
    np.testing.assert_array_equal(out, np.broadcast_to(x[:, 2:3, 3:4, :], x.shape))
    # zeros stay zeros
    assert not V.resized_crop(np.zeros_like(x), 1, 1, 3, 4).any()
    with pytest.raises(ValueError, match="inside"):
        V.resized_crop(x, 4, 0, 3, 3)
    with pytest.raises(TypeError, match="float32"):
        V.resized_crop(x.astype(np.float64), 0, 0, 6, 6)


def test_parallel_kernels_equal_serial(rng):
    x = rng.random((7, 12, 10, 3), dtype=np.float32)  # synthetic
    n = len(x)
    top, left, ch, cw = V.sample_crop_boxes(n, 12, 10, (0.2, 1.0), (0.75, 4 / 3), rng)
    flip = (rng.random(n) < 0.5).astype(np.uint8)
    a, b = np.empty_like(x), np.empty_like(x)
    K.resized_crop_serial(x, top, left, ch, cw, flip, a)
    K.resized_crop_parallel(x, top, left, ch, cw, flip, b)
    np.testing.assert_array_equal(a, b)
    args = (np.ones(n, np.uint8), rng.uniform(0.6, 1.4, n).astype(np.float32),
            rng.uniform(0.6, 1.4, n).astype(np.float32), rng.uniform(0.6, 1.4, n).astype(np.float32),
            np.argsort(rng.random((n, 3)), axis=1), (rng.random(n) < 0.5).astype(np.uint8))
    c1, c2 = x.copy(), x.copy()
    K.color_serial(c1, *args)
    K.color_parallel(c2, *args)
    np.testing.assert_array_equal(c1, c2)


@pytest.mark.parametrize("shape", [(1, 4, 4, 3), (6, 7, 5, 3), (4, 6, 6, 1), (2, 1, 1, 3)])
def test_color_jitter_and_grayscale_match_reference(shape, rng):
    x = rng.random(shape, dtype=np.float32)  # synthetic
    n = shape[0]
    apply = rng.random(n) < 0.7
    bri, con, sat = (rng.uniform(0.5, 1.5, n).astype(np.float32) for _ in range(3))
    order = np.argsort(rng.random((n, 3)), axis=1)
    gray = rng.random(n) < 0.5
    got = V.color_jitter(x, apply, bri, con, sat, order, gray)
    want = ref_color(x, apply, bri, con, sat, order, gray)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)
    assert got is not x and not np.shares_memory(got, x)


def test_grayscale_only(rng):
    x = rng.random((4, 5, 5, 3), dtype=np.float32)  # synthetic
    out = V.color_jitter(x, False, 1, 1, 1, [0, 1, 2], True)
    want = np.repeat((x.astype(np.float64) @ GRAY_W)[..., None], 3, axis=-1)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="permutation"):
        V.color_jitter(x, True, 1, 1, 1, [0, 0, 2], False)


def test_flip_only_view_is_mirror(rng):
    x = rng.random((5, 6, 7, 3), dtype=np.float32)  # synthetic
    out = V.augment(x, V.ViewConfig(crop_scale=None, flip_p=1.0), rng)
    np.testing.assert_array_equal(out, x[:, :, ::-1])
    same = V.augment(x, V.preset("none"), rng)
    np.testing.assert_array_equal(same, x)
    assert same is not x


def test_crop_boxes_follow_scale_and_ratio(rng):
    n, h, w = 4000, 32, 32
    top, left, ch, cw = V.sample_crop_boxes(n, h, w, (0.2, 1.0), (3 / 4, 4 / 3), rng)
    assert np.all(top >= 0) and np.all(left >= 0)
    assert np.all(top + ch <= h) and np.all(left + cw <= w)
    area = ch * cw / (h * w)
    # rounding to whole pixels moves the area a little around the drawn fraction
    assert area.min() > 0.15 and area.max() <= 1.0
    ratio = cw / ch
    assert ratio.min() > 0.6 and ratio.max() < 1.6
    assert 0.45 < area.mean() < 0.65  # mean of U(0.2, 1) = 0.6, minus rejected large boxes
    # positions are spread over the image, not always centred
    assert len(np.unique(top)) > 10
    # impossible ratio -> fallback central crop with ratio clamped into range
    t, l_, hh, ww = V.sample_crop_boxes(10, 10, 40, (0.99, 1.0), (1.0, 1.0), rng)
    assert np.all((hh == 10) & (ww == 10) & (l_ == 15) & (t == 0))


def test_augment_is_deterministic_and_in_range(rng):
    x = rng.random((16, 12, 12, 3), dtype=np.float32)  # synthetic
    cfg = V.preset("cifar10")
    a = V.augment(x, cfg, np.random.default_rng(7))
    b = V.augment(x, cfg, np.random.default_rng(7))
    c = V.augment(x, cfg, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == x.shape
    assert a.min() >= 0.0 and a.max() <= 1.0
    # uint8 input is scaled to [0, 1] first
    u8 = (x * 255).round().astype(np.uint8)
    np.testing.assert_allclose(V.augment(u8, V.preset("none"), rng), u8 / 255.0, atol=1e-6)


def test_augment_single_channel_and_noise(rng):
    x = rng.random((8, 10, 10, 1), dtype=np.float32)  # synthetic
    x_before = x.copy()
    out = V.augment(x, V.preset("cifar10"), rng)  # colour ops on gray images: defined, finite
    assert out.shape == x.shape and np.isfinite(out).all()
    np.testing.assert_array_equal(x, x_before)  # input untouched
    big = rng.random((64, 16, 16, 3), dtype=np.float32)
    noisy = V.augment(big, V.ViewConfig(crop_scale=None, flip_p=0.0, noise_std=0.1), rng)
    assert abs((noisy - big).std() - 0.1) < 0.005


def test_views_differ_between_images_and_calls(rng):
    x = np.repeat(rng.random((1, 16, 16, 3), dtype=np.float32), 32, axis=0)  # synthetic copies
    out = V.augment(x, V.preset("cifar10"), rng)
    # identical inputs get independent random views
    assert len({out[i].tobytes() for i in range(32)}) > 28


def test_presets_follow_protocol():
    c = V.preset("cifar10")
    assert c.crop_scale == (0.2, 1.0) and c.crop_ratio == pytest.approx((3 / 4, 4 / 3))
    assert (c.flip_p, c.jitter_p, c.brightness, c.contrast, c.saturation, c.grayscale_p) == \
        (0.5, 0.8, 0.4, 0.4, 0.4, 0.2)
    f = V.preset("fashion_mnist")
    assert f.crop_scale == (0.6, 1.0) and f.flip_p == 0.5 and not f.uses_color
    assert V.preset("cifar10", noise_std=0.1).noise_std == 0.1
    with pytest.raises(ValueError, match="allowed"):
        V.preset("imagenet")
    with pytest.raises(ValueError, match="crop_scale"):
        V.ViewConfig(crop_scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="probability"):
        V.ViewConfig(flip_p=2.0)


def test_derangement(rng):
    for n in (2, 3, 5, 64, 257):
        for _ in range(20):
            p = V.derangement(n, rng)
            assert sorted(p) == list(range(n)) and np.all(p != np.arange(n))
    with pytest.raises(ValueError, match="at least 2"):
        V.derangement(1, rng)
    # for n = 3 both derangements appear (not always the same cycle)
    seen = {tuple(V.derangement(3, rng)) for _ in range(50)}
    assert seen == {(1, 2, 0), (2, 0, 1)}


def test_triplets_negatives_are_other_images(rng):
    x = rng.random((10, 8, 8, 3), dtype=np.float32)  # synthetic
    anchor, positive, negative, perm = V.triplets(x, V.preset("cifar10"), rng, return_perm=True)
    assert anchor.shape == positive.shape == negative.shape == x.shape
    np.testing.assert_array_equal(negative, positive[perm])
    assert np.all(perm != np.arange(10))
    a2 = V.triplets(x, V.preset("cifar10"), np.random.default_rng(3))
    b2 = V.triplets(x, V.preset("cifar10"), np.random.default_rng(3))
    for u, v in zip(a2, b2):
        np.testing.assert_array_equal(u, v)


def test_batches(rng):
    idx = list(V.batches(10, 4, rng))
    assert [len(i) for i in idx] == [4, 4, 2]
    assert sorted(np.concatenate(idx)) == list(range(10))
    assert all(i.dtype == np.int64 for i in idx)
    assert [len(i) for i in V.batches(10, 4, rng, drop_last=True)] == [4, 4]
    np.testing.assert_array_equal(np.concatenate(list(V.batches(7, 3, None))), np.arange(7))
    e1 = np.concatenate(list(V.batches(100, 10, np.random.default_rng(1))))
    e2 = np.concatenate(list(V.batches(100, 10, np.random.default_rng(1))))
    np.testing.assert_array_equal(e1, e2)
    assert not np.array_equal(e1, np.arange(100))
    with pytest.raises(ValueError):
        next(V.batches(10, 0, rng))


def test_view_sampler_epochs(rng):
    x = (rng.random((23, 8, 8, 3)) * 255).astype(np.uint8)  # synthetic uint8 images
    s = V.ViewSampler(x, V.preset("cifar10"), 5, rng, drop_last=False)
    assert len(s) == 5
    seen = []
    for v1, v2, idx in s:
        assert v1.shape == v2.shape == (len(idx), 8, 8, 3) and v1.dtype == np.float32
        assert not np.array_equal(v1, v2)
        seen.append(idx)
    assert sorted(np.concatenate(seen)) == list(range(23))
    # two epochs are shuffled differently
    e2 = np.concatenate([i for _, _, i in s])
    assert not np.array_equal(np.concatenate(seen), e2)
    assert len(V.ViewSampler(x, V.preset("cifar10"), 5, rng)) == 4


def test_view_sampler_triplets_and_standardisation(rng):
    x = (rng.random((40, 8, 8, 3)) * 255).astype(np.uint8)  # synthetic uint8 images
    mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.2, 0.25, 0.3])
    s = V.ViewSampler(x, V.preset("none"), 8, rng, mean=mean, std=std)
    n_batches = 0
    for anchor, positive, negative, idx, neg_idx in s.triplets():
        n_batches += 1
        assert np.all(neg_idx != idx)
        assert set(neg_idx) == set(idx)  # negatives come from the same batch
        # with identity views the negative is exactly the standardised other image
        want = (x[neg_idx] / 255.0 - mean) / std
        np.testing.assert_allclose(negative, want, atol=1e-5)
        np.testing.assert_allclose(anchor, (x[idx] / 255.0 - mean) / std, atol=1e-5)
    assert n_batches == 5
    with pytest.raises(ValueError, match="batch_size"):
        V.ViewSampler(x, V.preset("none"), 1, rng)


def test_view_sampler_is_reproducible(rng):
    x = rng.random((20, 6, 6, 1), dtype=np.float32)  # synthetic
    runs = []
    for _ in range(2):
        s = V.ViewSampler(x, V.preset("fashion_mnist"), 6, np.random.default_rng(11))
        runs.append([t for batch in s.triplets() for t in batch])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
