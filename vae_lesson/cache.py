"""Train once, reuse everywhere: a cache of trained models keyed by what they were trained from.

A notebook asks for a model by recipe, say vl.trained_model("vae-2d"); the first notebook that asks
trains it and saves a checkpoint in the cache folder, later ones load it in a second. The key is
the whole TrainingConfig, a fingerprint of the training and test images and the version of the
training code (training.TRAINING_VERSION): an entry trained from anything else is trained again,
never loaded. Training is seeded, so a cached model is the model a fresh run would train.
The folder is vae_lesson.paths.checkpoint_dir(): checkpoints/ in a clone,
~/.cache/vae-lesson/checkpoints for an installed package, or $VAE_LESSON_CHECKPOINTS.
"""

import dataclasses
import hashlib
import json
import warnings

import torch

from .checkpoint import load_weights, read_checkpoint, save_checkpoint
from .data import load_mnist
from .models import build_model
from .paths import CHECKPOINTS_ENV_VAR as CACHE_ENV_VAR, cannot_write_message, checkpoint_dir
from .recipes import TrainingConfig, as_config, fresh_model
from .training import TRAINING_VERSION, train
from .validate import images_or_pair


class CacheWriteWarning(UserWarning):
    """A trained model could not be saved to the cache; it is still returned."""


def cache_dir():
    """$VAE_LESSON_CHECKPOINTS if set, else checkpoints/ in a clone or ~/.cache/vae-lesson/checkpoints."""
    return checkpoint_dir()


def data_fingerprint(images):
    """A short hash of a tensor's shape, dtype and every value: two data sets of one size differ."""
    images = images.detach().cpu().contiguous()
    digest = hashlib.blake2b(f"{tuple(images.shape)} {images.dtype}".encode(), digest_size=8)
    digest.update(images.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


# Config fields added after the first TrainingConfig, whose default switches them off: left out of the
# identity while off, so the models cached before they existed (which trained exactly as with them off)
# keep their entries; any other value is in the identity like every other field.
OFF_BY_DEFAULT_FIELDS = ("warmup_epochs", "free_bits")


def cache_identity(config, train_images, test_images):
    """Everything a cached model depends on, as a dict of plain values (stored in its checkpoint)."""
    defaults = TrainingConfig()
    fields = {name: value for name, value in dataclasses.asdict(config).items()
              if not (name in OFF_BY_DEFAULT_FIELDS and value == getattr(defaults, name))}
    return {"config": fields, "train_data": data_fingerprint(train_images),
            "test_data": data_fingerprint(test_images), "training_version": TRAINING_VERSION}


def cache_key(identity):
    """A file name for a cache_identity: readable sizes, then a hash of the whole identity."""
    config = identity["config"]
    digest = hashlib.blake2b(json.dumps(identity, sort_keys=True).encode(), digest_size=8).hexdigest()
    return f"{config['kind']}-z{config['latent_dim']}-h{config['hidden_dim']}-e{config['epochs']}-{digest}"


def load_entry(path, identity, model_config):
    """(model, history) from the cache entry at `path` if it is readable, holds a model of `model_config`
    and was trained from `identity`; None otherwise (such an entry is trained again, never trusted)."""
    if not path.is_file():
        return None
    try:
        payload = read_checkpoint(path)
        if payload["metadata"] != identity or payload["config"] != model_config:
            return None
        model = load_weights(build_model(payload["config"]), payload, path)
    except (ValueError, KeyError, TypeError, RuntimeError, OSError):
        return None
    return model, payload["history"]


def trained_model(recipe, *, train_data=None, test_data=None, progress=True, **changes):
    """Return (model, history) for a recipe, loading it from the cache or training it.

    recipe: a name from vae_lesson.RECIPES ("ae-2d", "vae-2d", "vae-20d-lecture", ...) or a
    TrainingConfig. changes: fields of the config to change, e.g. beta=4.0.
    train_data/test_data: images or (images, labels) pairs; default load_mnist("train"/"test").
    The model starts from recipes.fresh_model (seeded weights, the decoder at the mean training
    image) and is trained with vae_lesson.train, so the result depends only on the config and the data.
    """
    config = as_config(recipe, **changes)
    if train_data is None:
        train_data = load_mnist("train")
    if test_data is None:
        test_data = load_mnist("test")
    train_images, test_images = images_or_pair(train_data, "train_data"), images_or_pair(test_data, "test_data")
    identity = cache_identity(config, train_images, test_images)
    path = cache_dir() / f"{cache_key(identity)}.pt"
    cached = load_entry(path, identity, config.model_config)
    if cached is not None:
        return cached
    model = fresh_model(config, train_images)
    history = train(model, train_images, test_images, progress=progress, **config.train_settings)
    try:
        save_checkpoint(path, model, history, metadata=identity)
    except OSError as exc:
        warnings.warn(f"the trained model could not be saved to the cache at {path}; it is returned, but will be "
                      f"trained again next time. {cannot_write_message(path.parent, CACHE_ENV_VAR, exc)}",
                      CacheWriteWarning, stacklevel=2)
    return model, history
