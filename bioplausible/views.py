"""Views: augmentations, (anchor, positive, negative) sampling and minibatch iteration.

Self-supervised rules learn from two *views* of one image (the positive pair) and views of other
images (negatives).  This module makes them fast and reproducible:

* :func:`augment` -- random resized crop (+ horizontal flip) with bilinear resize back to the input
  size, colour jitter (brightness, contrast, saturation, random order), random grayscale and
  additive Gaussian noise, on float32 NHWC batches with values in [0, 1] (C = 1 or 3).  The random
  parameters are drawn in numpy from the caller's :class:`numpy.random.Generator` and handed to the
  numba kernels in :mod:`bioplausible.kernels.augment` as arrays.
* :class:`ViewConfig` and :func:`preset` -- the protocol's views (``cifar10``, ``fashion_mnist``).
* :func:`triplets` and :class:`ViewSampler` -- two views per image, and negatives that are views of
  *other* images of the same batch (a random derangement, so no image is its own negative).
* :func:`batches` -- the shuffled minibatch index iterator shared by all training loops.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["ViewConfig", "PRESETS", "preset", "augment", "resized_crop", "color_jitter",
           "sample_crop_boxes", "derangement", "triplets", "ViewSampler", "batches", "to_float"]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """How one view is drawn.  Output images have the input's size.

    crop_scale: (min, max) fraction of the image area kept by the random resized crop, or None for
        no crop.  crop_ratio: (min, max) aspect ratio w/h of the crop (drawn log-uniformly).
    flip_p: probability of a horizontal flip.
    jitter_p: probability that colour jitter is applied; brightness/contrast/saturation ``s`` draw
        factors uniformly from [max(0, 1 - s), 1 + s] (torchvision's convention), applied in a
        random order.
    grayscale_p: probability of converting to gray (C = 3 only).
    noise_std: standard deviation of additive Gaussian noise (0 = none; not clipped).
    """

    crop_scale: tuple | None = (0.2, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    grayscale_p: float = 0.0
    noise_std: float = 0.0

    def __post_init__(self):
        if self.crop_scale is not None:
            lo, hi = self.crop_scale
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1; got {self.crop_scale}")
            object.__setattr__(self, "crop_scale", (float(lo), float(hi)))
        lo, hi = self.crop_ratio
        if not 0.0 < lo <= hi:
            raise ValueError(f"crop_ratio must satisfy 0 < min <= max; got {self.crop_ratio}")
        object.__setattr__(self, "crop_ratio", (float(lo), float(hi)))
        for f in ("flip_p", "jitter_p", "grayscale_p"):
            if not 0.0 <= getattr(self, f) <= 1.0:
                raise ValueError(f"{f} must be a probability in [0, 1]; got {getattr(self, f)}")
        for f in ("brightness", "contrast", "saturation", "noise_std"):
            if getattr(self, f) < 0:
                raise ValueError(f"{f} must be >= 0; got {getattr(self, f)}")

    @property
    def uses_color(self) -> bool:
        jitter = self.jitter_p > 0 and (self.brightness > 0 or self.contrast > 0 or self.saturation > 0)
        return bool(jitter or self.grayscale_p > 0)


PRESETS = {
    # protocol: crop 0.2-1.0, aspect 3/4-4/3, flip 0.5, jitter 0.4 (p=0.8), grayscale p=0.2
    "cifar10": ViewConfig(crop_scale=(0.2, 1.0), flip_p=0.5, jitter_p=0.8, brightness=0.4,
                          contrast=0.4, saturation=0.4, grayscale_p=0.2),
    # protocol: crop 0.6-1.0, aspect 3/4-4/3, flip 0.5, no colour
    "fashion_mnist": ViewConfig(crop_scale=(0.6, 1.0), flip_p=0.5),
    "mnist": ViewConfig(crop_scale=(0.6, 1.0), flip_p=0.0),  # digits are not mirror-symmetric
    "stl10": ViewConfig(crop_scale=(0.2, 1.0), flip_p=0.5, jitter_p=0.8, brightness=0.4,
                        contrast=0.4, saturation=0.4, grayscale_p=0.2),
    "none": ViewConfig(crop_scale=None, flip_p=0.0),
}


def preset(name: str, **overrides) -> ViewConfig:
    """The named view preset (``cifar10``, ``fashion_mnist``, ``mnist``, ``stl10``, ``none``),
    with any field overridden, e.g. ``preset("cifar10", noise_std=0.05)``."""
    key = name.lower().replace("-", "_")
    if key not in PRESETS:
        raise ValueError(f"unknown view preset {name!r}; allowed: {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[key], **overrides)


# --------------------------------------------------------------------------------------------
# Checked wrappers around the kernels
# --------------------------------------------------------------------------------------------
def to_float(x) -> np.ndarray:
    """uint8 images -> float32 in [0, 1]; float images -> C-contiguous float32 copy."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return np.multiply(x, np.float32(1 / 255), dtype=np.float32)
    return np.array(x, dtype=np.float32, order="C", copy=True)


def _check_batch(x, name="x"):
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"{name} must be an NHWC array (N, H, W, C); got {getattr(x, 'shape', type(x))}")
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        raise TypeError(f"{name} must be C-contiguous float32; got {x.dtype}")
    if x.shape[3] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels; got {x.shape[3]}")


def resized_crop(x, top, left, height, width, flip=None, out_size=None) -> np.ndarray:
    """Crop box ``[top:top+height, left:left+width]`` of each image, bilinearly resized to
    ``out_size`` (default: the input size), horizontally flipped where ``flip`` is true."""
    from .kernels.augment import resized_crop_kernel

    _check_batch(x)
    n, h, w, c = x.shape
    top, left, height, width = (np.ascontiguousarray(np.broadcast_to(np.asarray(a, np.int64), (n,)))
                                for a in (top, left, height, width))
    if np.any(height < 1) or np.any(width < 1) or np.any(top < 0) or np.any(left < 0) \
            or np.any(top + height > h) or np.any(left + width > w):
        raise ValueError("crop boxes must lie inside the images and be at least 1x1")
    flip = np.zeros(n, np.uint8) if flip is None else \
        np.ascontiguousarray(np.broadcast_to(np.asarray(flip, bool), (n,)), dtype=np.uint8)
    oh, ow = (h, w) if out_size is None else out_size
    out = np.empty((n, int(oh), int(ow), c), np.float32)
    if n:
        resized_crop_kernel(x, top, left, height, width, flip, out)
    return out


def color_jitter(x, apply, brightness, contrast, saturation, order, gray, inplace=False) -> np.ndarray:
    """Colour jitter with given per-image factors and order, then grayscale where ``gray``."""
    from .kernels.augment import color_kernel

    _check_batch(x)
    n = x.shape[0]
    img = x if inplace else x.copy()

    def vec(a, dtype):
        return np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype), (n,)))
    order = np.ascontiguousarray(np.broadcast_to(np.asarray(order, np.int64), (n, 3)))
    if np.any(np.sort(order, axis=1) != np.arange(3)):
        raise ValueError("order rows must be permutations of (0, 1, 2)")
    if n:
        color_kernel(img, vec(apply, bool).astype(np.uint8), vec(brightness, np.float32),
                     vec(contrast, np.float32), vec(saturation, np.float32), order,
                     vec(gray, bool).astype(np.uint8))
    return img


# --------------------------------------------------------------------------------------------
# Random parameters (numpy, from the caller's Generator)
# --------------------------------------------------------------------------------------------
def sample_crop_boxes(n, height, width, scale, ratio, rng, attempts: int = 10):
    """torchvision's RandomResizedCrop boxes, vectorised: ``(top, left, h, w)`` int64 arrays.

    Each box covers a uniform fraction ``scale`` of the area with a log-uniform aspect ratio
    ``ratio``; of ``attempts`` draws the first that fits is used, otherwise the central crop with
    the ratio clamped into range.
    """
    area = height * width
    target = rng.uniform(scale[0], scale[1], size=(n, attempts)) * area
    logr = rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=(n, attempts))
    r = np.exp(logr)
    cw = np.round(np.sqrt(target * r)).astype(np.int64)
    ch = np.round(np.sqrt(target / r)).astype(np.int64)
    ok = (cw > 0) & (cw <= width) & (ch > 0) & (ch <= height)
    first = np.argmax(ok, axis=1)
    rows = np.arange(n)
    ch, cw = ch[rows, first], cw[rows, first]
    found = ok[rows, first]
    # fallback: central crop (torchvision)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fh, fw = height, int(round(height * ratio[1]))
    else:
        fw, fh = width, height
    ch = np.where(found, ch, fh)
    cw = np.where(found, cw, fw)
    top = rng.integers(0, height - ch + 1)
    left = rng.integers(0, width - cw + 1)
    top = np.where(found, top, (height - ch) // 2)
    left = np.where(found, left, (width - cw) // 2)
    return top.astype(np.int64), left.astype(np.int64), ch.astype(np.int64), cw.astype(np.int64)


def augment(x, cfg: ViewConfig, rng: np.random.Generator) -> np.ndarray:
    """One random view of every image: a new float32 NHWC array (input untouched).

    x: float32 NHWC with values in [0, 1] (uint8 is scaled by 1/255), C = 1 or 3.
    Order: resized crop + flip, colour jitter (probability ``jitter_p``), grayscale, noise.
    The same ``rng`` state gives the same views.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator")
    x = np.asarray(x)
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        x = to_float(x)
    _check_batch(x)
    n, h, w, c = x.shape
    flip = rng.random(n) < cfg.flip_p if cfg.flip_p > 0 else np.zeros(n, bool)
    if cfg.crop_scale is not None:
        top, left, ch, cw = sample_crop_boxes(n, h, w, cfg.crop_scale, cfg.crop_ratio, rng)
        out = resized_crop(x, top, left, ch, cw, flip)
    elif flip.any():
        out = resized_crop(x, 0, 0, h, w, flip)
    else:
        out = x.copy()
    if cfg.uses_color:
        apply = rng.random(n) < cfg.jitter_p
        factors = []
        for s in (cfg.brightness, cfg.contrast, cfg.saturation):
            factors.append(rng.uniform(max(0.0, 1.0 - s), 1.0 + s, size=n).astype(np.float32))
        order = np.argsort(rng.random((n, 3)), axis=1)
        gray = rng.random(n) < cfg.grayscale_p
        color_jitter(out, apply, *factors, order, gray, inplace=True)
    if cfg.noise_std > 0:
        out += cfg.noise_std * rng.standard_normal(out.shape, dtype=np.float32)
    return out


# --------------------------------------------------------------------------------------------
# Negatives, triplets, samplers
# --------------------------------------------------------------------------------------------
def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation ``p`` of ``range(n)`` with ``p[i] != i`` for all i (n >= 2).

    Rejection sampling of uniform permutations (about e = 2.72 draws on average).
    """
    if n < 2:
        raise ValueError("a derangement needs at least 2 items (a batch of 1 has no negatives)")
    idx = np.arange(n)
    while True:
        p = rng.permutation(n)
        if not np.any(p == idx):
            return p


def _standardize(v, mean, std):
    if mean is not None:
        v -= np.asarray(mean, np.float32)
    if std is not None:
        v /= np.asarray(std, np.float32)
    return v


def triplets(x_batch, cfg: ViewConfig, rng: np.random.Generator, return_perm: bool = False):
    """(anchor, positive, negative) for a batch: two views of every image, and as negative the
    positive view of another image of the batch (``negative = positive[perm]``, ``perm`` a
    derangement).  With ``return_perm=True`` also returns ``perm``."""
    anchor = augment(x_batch, cfg, rng)
    positive = augment(x_batch, cfg, rng)
    perm = derangement(len(anchor), rng)
    negative = positive[perm]
    return (anchor, positive, negative, perm) if return_perm else (anchor, positive, negative)


def batches(n: int, batch_size: int, rng: np.random.Generator | None, drop_last: bool = False):
    """Yield int64 index arrays covering ``range(n)`` in minibatches of ``batch_size``.

    rng: shuffles the order (a new permutation per call = per epoch); None keeps 0..n-1 in order
    (evaluation).  drop_last: skip a final batch smaller than ``batch_size``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = np.arange(n, dtype=np.int64) if rng is None else rng.permutation(n).astype(np.int64)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


class ViewSampler:
    """Epochs of shuffled minibatches of two views per image.

    ``for view1, view2, index in sampler:`` runs one epoch; ``index`` are the images' rows in ``x``.
    ``sampler.triplets()`` runs one epoch of ``(anchor, positive, negative, index, negative_index)``
    where the negative of image ``index[i]`` is the positive view of image ``negative_index[i]``,
    another image of the same batch.

    x: uint8 (scaled by 1/255) or float32 [0, 1] NHWC images, or an ``ImageSet``.
    mean, std: optional per-channel statistics applied to the views *after* augmentation
        (``(v - mean) / std``, e.g. from ``datasets.channel_stats``).
    drop_last: default True, so that every batch has negatives (a batch of one has none).
    """

    def __init__(self, x, cfg: ViewConfig, batch_size: int, rng: np.random.Generator, *,
                 drop_last: bool = True, mean=None, std=None):
        x = getattr(x, "x", x)
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[3] not in (1, 3):
            raise ValueError(f"x must be NHWC with 1 or 3 channels; got shape {x.shape}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError("rng must be a numpy.random.Generator")
        if batch_size < 2:
            raise ValueError("batch_size must be >= 2 (negatives come from the same batch)")
        if x.shape[0] < 2:
            raise ValueError("need at least 2 images")
        self.x, self.cfg, self.batch_size, self.rng = x, cfg, int(batch_size), rng
        self.drop_last, self.mean, self.std = drop_last, mean, std

    def __len__(self):
        n = self.x.shape[0]
        full, rest = divmod(n, self.batch_size)
        return full + (0 if self.drop_last or rest == 0 else 1)

    def _views(self, idx):
        xb = self.x[idx]
        v1 = _standardize(augment(xb, self.cfg, self.rng), self.mean, self.std)
        v2 = _standardize(augment(xb, self.cfg, self.rng), self.mean, self.std)
        return v1, v2

    def __iter__(self):
        for idx in batches(self.x.shape[0], self.batch_size, self.rng, self.drop_last):
            v1, v2 = self._views(idx)
            yield v1, v2, idx

    def triplets(self):
        """One epoch of ``(anchor, positive, negative, index, negative_index)``."""
        for idx in batches(self.x.shape[0], self.batch_size, self.rng, self.drop_last):
            if len(idx) < 2:  # a trailing batch of one (drop_last=False) has no negative
                continue
            v1, v2 = self._views(idx)
            perm = derangement(len(idx), self.rng)
            yield v1, v2, v2[perm], idx, idx[perm]
