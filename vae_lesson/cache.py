"""Train once, reuse everywhere: a cache of trained models keyed by their configuration.

A notebook asks for, say, a 2-D VAE trained for 10 epochs; the first notebook that asks trains
it and saves a checkpoint under checkpoints/, later ones load it in a second. Training is
seeded, so a cached model is the same model a fresh run would train.
"""

import os
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .data import REPO_ROOT, load_mnist
from .models import build_model, set_output_bias_to_mean_image
from .training import train

CACHE_ENV_VAR = "VAE_LESSON_CHECKPOINTS"


def cache_dir():
    """$VAE_LESSON_CHECKPOINTS if set, else checkpoints/ at the repository root (git-ignored)."""
    return Path(os.environ.get(CACHE_ENV_VAR) or REPO_ROOT / "checkpoints")


def cache_key(kind, latent_dim, hidden_dim, epochs, beta, lr, batch_size, seed, n_train, lr_schedule="constant"):
    """A file name that changes whenever anything that changes the trained weights changes."""
    schedule = "" if lr_schedule == "constant" else f"-{lr_schedule}"
    # "-meanbias": the models start from the mean image (set_output_bias_to_mean_image); checkpoints
    # trained before that change have other names and are not loaded.
    return (f"{kind}-z{latent_dim}-h{hidden_dim}-e{epochs}-beta{beta:g}-lr{lr:g}{schedule}-bs{batch_size}"
            f"-seed{seed}-n{n_train}-meanbias")


def trained_model(kind="vae", latent_dim=2, hidden_dim=500, *, epochs=10, beta=1.0, lr=1e-3, lr_schedule="constant",
                  batch_size=128, seed=0, train_data=None, test_data=None, progress=True):
    """Return (model, history) for this configuration, loading it from the cache or training it.

    kind: "autoencoder" or "vae". train_data/test_data default to load_mnist("train"/"test").
    The other arguments are those of `train` (lr_schedule: "constant" or "cosine").
    The model's initial weights come from torch.manual_seed(seed) (without disturbing the
    global random state), and its decoder starts at the mean training image
    (set_output_bias_to_mean_image), so the result depends only on the arguments and the data.
    """
    if train_data is None:
        train_data = load_mnist("train")
    if test_data is None:
        test_data = load_mnist("test")
    train_images = train_data[0] if isinstance(train_data, (tuple, list)) else train_data
    n_train = train_images.shape[0]
    key = cache_key(kind, latent_dim, hidden_dim, epochs, beta, lr, batch_size, seed, n_train, lr_schedule)
    path = cache_dir() / f"{key}.pt"
    config = {"kind": kind, "latent_dim": latent_dim, "hidden_dim": hidden_dim}
    if path.is_file():
        try:
            return load_checkpoint(path)
        except ValueError:
            pass  # an unreadable cache entry is retrained and overwritten, never trusted
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(config)
    set_output_bias_to_mean_image(model, train_images)
    history = train(model, train_data, test_data, epochs=epochs, batch_size=batch_size, lr=lr,
                    lr_schedule=lr_schedule, beta=beta, seed=seed, progress=progress)
    save_checkpoint(path, model, history)
    return model, history
