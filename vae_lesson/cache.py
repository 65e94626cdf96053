"""Train once, reuse everywhere: a cache of trained models keyed by their configuration.

A notebook asks for, say, a 2-D VAE trained for 10 epochs; the first notebook that asks trains
it and saves a checkpoint in the cache folder, later ones load it in a second. Training is
seeded, so a cached model is the same model a fresh run would train. The folder is
vae_lesson.paths.checkpoint_dir(): checkpoints/ in a clone, ~/.cache/vae-lesson/checkpoints for an
installed package, or $VAE_LESSON_CHECKPOINTS.
"""

import warnings

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .data import load_mnist
from .models import build_model, set_output_bias_to_mean_image
from .paths import CHECKPOINTS_ENV_VAR as CACHE_ENV_VAR, cannot_write_message, checkpoint_dir
from .training import train


def cache_dir():
    """$VAE_LESSON_CHECKPOINTS if set, else checkpoints/ in a clone or ~/.cache/vae-lesson/checkpoints."""
    return checkpoint_dir()


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
    try:
        save_checkpoint(path, model, history)
    except OSError as exc:  # a read-only cache must not throw away the model just trained
        warnings.warn(cannot_write_message(path.parent, CACHE_ENV_VAR, exc), stacklevel=2)
    return model, history
