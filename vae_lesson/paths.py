"""Where the course keeps its files: the MNIST download and the cache of trained models.

First match wins:
1. the environment variables VAE_LESSON_DATA and VAE_LESSON_CHECKPOINTS;
2. run from a clone of the repository (this package next to pyproject.toml and notebooks/):
   the clone's data/ and checkpoints/ (both git-ignored);
3. installed as a package (pip, Colab, Kaggle, a shared JupyterHub): a per-user cache,
   $XDG_CACHE_HOME/vae-lesson/ or else ~/.cache/vae-lesson/, with data/ and checkpoints/ inside.
Never the installed package's own folder: site-packages is shared and often read-only.
"""

import os
import uuid
from pathlib import Path

DATA_ENV_VAR = "VAE_LESSON_DATA"
CHECKPOINTS_ENV_VAR = "VAE_LESSON_CHECKPOINTS"
CACHE_NAME = "vae-lesson"  # the folder under the user's cache directory
_CLONE_ROOT = Path(__file__).resolve().parent.parent


class UnwritableLocationError(OSError):
    """The course needs to write to a folder it cannot create or write to."""


def clone_root():
    """The repository's root when the package runs from a clone of it, else None (an installed package)."""
    is_clone = (_CLONE_ROOT / "pyproject.toml").is_file() and (_CLONE_ROOT / "notebooks").is_dir()
    return _CLONE_ROOT if is_clone else None


def user_cache_dir():
    """$XDG_CACHE_HOME/vae-lesson, or ~/.cache/vae-lesson (the XDG spec ignores a relative XDG_CACHE_HOME)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / CACHE_NAME


def _location(env_var, name):
    value = os.environ.get(env_var)
    if value:
        return Path(value).expanduser()
    root = clone_root()
    return (root if root is not None else user_cache_dir()) / name


def data_dir():
    """The folder MNIST is read from and downloaded into (see the module's docstring for the order)."""
    return _location(DATA_ENV_VAR, "data")


def checkpoint_dir():
    """The folder of the trained-model cache (see the module's docstring for the order)."""
    return _location(CHECKPOINTS_ENV_VAR, "checkpoints")


def cannot_write_message(path, env_var, error):
    """What to tell a student whose `path` cannot be written: the folder, the reason, and the fix."""
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return (
        f"The course cannot write to {path} ({reason}). Point {env_var} at a folder you can write to, "
        f"for example in a cell before this one: import os; os.environ[{env_var!r}] = "
        f"os.path.expanduser('~/vae-lesson/{'data' if env_var == DATA_ENV_VAR else 'checkpoints'}') "
        f"(or `export {env_var}=/a/writable/folder` before starting Jupyter)."
    )


def ensure_writable(path, env_var):
    """Create `path` if needed and check that a file can be written in it; return it as a Path.

    Raises UnwritableLocationError naming the folder and the environment variable that moves it.
    """
    path = Path(path)
    probe = path / f".write-test-{os.getpid()}-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as exc:
        raise UnwritableLocationError(cannot_write_message(path, env_var, exc)) from exc
    return path
