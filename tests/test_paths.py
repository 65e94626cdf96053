"""Where the course writes: the clone's data/ and checkpoints/, else a per-user cache, never site-packages.

The installed case is tested for real in test_open_anywhere.py (a wheel in a temporary folder); here
the decisions are tested one by one by pointing vae_lesson.paths at a folder that is or is not a clone.
"""

import warnings
from pathlib import Path

import pytest
import torch

import vae_lesson
from vae_lesson import cache, data, paths

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_env(monkeypatch):
    for name in (paths.DATA_ENV_VAR, paths.CHECKPOINTS_ENV_VAR, "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def installed(monkeypatch, tmp_path, no_env):
    """The package as if installed: its folder sits in a site-packages with no clone around it."""
    site_packages = tmp_path / "site-packages"
    (site_packages / "vae_lesson").mkdir(parents=True)
    monkeypatch.setattr(paths, "_CLONE_ROOT", site_packages)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    return site_packages, home


def test_a_clone_keeps_data_and_checkpoints_in_the_clone(no_env):
    assert paths.clone_root() == REPO_ROOT
    assert paths.data_dir() == REPO_ROOT / "data"
    assert paths.checkpoint_dir() == REPO_ROOT / "checkpoints"
    # the two public entry points delegate to the same decision
    assert data.data_root() == REPO_ROOT / "data"
    assert cache.cache_dir() == REPO_ROOT / "checkpoints"


def test_an_installed_package_uses_the_users_cache_not_site_packages(installed):
    site_packages, home = installed
    assert paths.clone_root() is None
    assert paths.data_dir() == home / ".cache" / "vae-lesson" / "data"
    assert paths.checkpoint_dir() == home / ".cache" / "vae-lesson" / "checkpoints"
    assert data.data_root() == paths.data_dir() and cache.cache_dir() == paths.checkpoint_dir()
    for location in (paths.data_dir(), paths.checkpoint_dir()):
        assert site_packages not in location.parents


def test_a_folder_with_only_a_pyproject_is_not_taken_for_a_clone(installed):
    site_packages, _ = installed
    (site_packages / "pyproject.toml").write_text("[project]\nname = 'something-else'\n")
    assert paths.clone_root() is None


def test_xdg_cache_home_is_honoured_when_absolute(installed, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.data_dir() == tmp_path / "xdg" / "vae-lesson" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec says: ignore it
    _, home = installed
    assert paths.checkpoint_dir() == home / ".cache" / "vae-lesson" / "checkpoints"


def test_the_environment_variables_win_everywhere(installed, monkeypatch, tmp_path):
    monkeypatch.setenv(paths.DATA_ENV_VAR, str(tmp_path / "my-data"))
    monkeypatch.setenv(paths.CHECKPOINTS_ENV_VAR, "~/my-models")
    assert data.data_root() == tmp_path / "my-data"
    assert cache.cache_dir() == Path.home() / "my-models"
    monkeypatch.setattr(paths, "_CLONE_ROOT", REPO_ROOT)  # in a clone too
    assert paths.data_dir() == tmp_path / "my-data"


def unwritable_folder(tmp_path):
    """A folder nobody can create, root included (who ignores permission bits): its parent is a file."""
    parent = tmp_path / "a-file"
    parent.write_text("not a folder")
    return parent / "folder"


def test_ensure_writable_names_the_folder_and_the_fix(tmp_path):
    assert paths.ensure_writable(tmp_path / "new" / "folder", paths.DATA_ENV_VAR).is_dir()
    assert list((tmp_path / "new" / "folder").iterdir()) == []  # the probe file is gone
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(paths.UnwritableLocationError) as info:
        paths.ensure_writable(blocked, paths.CHECKPOINTS_ENV_VAR)
    assert str(blocked) in str(info.value) and "VAE_LESSON_CHECKPOINTS" in str(info.value)


def test_a_download_into_a_read_only_folder_says_so_instead_of_falling_back(tmp_path, monkeypatch):
    folder = unwritable_folder(tmp_path)
    monkeypatch.setenv(paths.DATA_ENV_VAR, str(folder / "mnist"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no quiet fall back to the 5,000-digit sample
        with pytest.raises(paths.UnwritableLocationError) as info:
            data.load_mnist("test")
    message = str(info.value)
    assert str(folder / "mnist") in message and "VAE_LESSON_DATA" in message


def test_an_unwritable_cache_warns_and_still_returns_the_trained_model(tmp_path, monkeypatch):
    folder = unwritable_folder(tmp_path)
    monkeypatch.setenv(paths.CHECKPOINTS_ENV_VAR, str(folder))
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(64, 1, 28, 28, generator=gen)
    with pytest.warns(UserWarning, match="VAE_LESSON_CHECKPOINTS") as record:
        model, history = vae_lesson.trained_model("vae-2d", hidden_dim=8, epochs=1, batch_size=32,
                                                  train_data=images, test_data=images[:16], progress=False)
    assert str(folder) in str(record[0].message)
    assert isinstance(model, vae_lesson.VAE) and len(history["train_loss"]) == 1
    assert not folder.exists()
