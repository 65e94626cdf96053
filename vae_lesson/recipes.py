"""The course's models, each named once: what to build and how to train it.

A recipe is a TrainingConfig: the model's sizes and the training settings. The notebooks ask for
models by name (vl.trained_model("vae-20d-lecture")), and so do the command line
(python -m vae_lesson train --recipe NAME), the Makefile and the benchmarks, so a recipe changed
here changes everywhere. `fresh_model` builds the untrained model a config starts from.
"""

import dataclasses
from dataclasses import dataclass

import torch

from .models import MODELS, build_model, set_output_bias_to_mean_image
from .training import LR_SCHEDULES


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides the weights a model trains to, given the training images."""

    kind: str = "vae"
    """"autoencoder" or "vae"."""
    latent_dim: int = 20
    """Size of the latent code z."""
    hidden_dim: int = 500
    """Units in the hidden layer of the encoder and of the decoder."""
    epochs: int = 10
    """Passes over the training set."""
    batch_size: int = 128
    """Images per Adam step."""
    lr: float = 1e-3
    """Adam's learning rate (its starting value with the cosine schedule)."""
    lr_schedule: str = "constant"
    """"constant", or "cosine": lower the rate after every batch along half a cosine, to 0 at the end."""
    beta: float = 1.0
    """Weight of the KL term: 1 is the ELBO; other values give a beta-VAE (the autoencoder ignores it)."""
    seed: int = 0
    """Seeds the initial weights, the batch order and the VAE's noise."""
    warmup_epochs: int = 0
    """KL warm-up: the KL's weight rises linearly from 0 to beta over this many epochs (0: beta from the start)."""
    free_bits: float = 0.0
    """Free bits: each latent dimension's KL, averaged over the batch, counts as at least this many nats (0: off)."""

    def __post_init__(self):
        if self.kind not in MODELS:
            raise ValueError(f"kind must be one of {sorted(MODELS)}, got {self.kind!r}.")
        for name in ("latent_dim", "hidden_dim", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be a whole number, got {self.seed!r}.")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number (Adam takes steps of about lr), got {self.lr!r}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}.")
        if not isinstance(self.beta, (int, float)) or not self.beta >= 0:
            raise ValueError(f"beta must be zero or positive (the weight of the KL term), got {self.beta!r}.")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) or self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be a whole number >= 0 (0: no warm-up), got {self.warmup_epochs!r}.")
        if isinstance(self.free_bits, bool) or not isinstance(self.free_bits, (int, float)) or not self.free_bits >= 0:
            raise ValueError(f"free_bits must be a number of nats >= 0 (0: off), got {self.free_bits!r}.")
        # Stored as floats, so that beta=4 and beta=4.0 are one config (and one cache entry).
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "beta", float(self.beta))
        object.__setattr__(self, "free_bits", float(self.free_bits))

    @property
    def model_config(self):
        """The architecture, as build_model and checkpoints take it."""
        return {"kind": self.kind, "latent_dim": self.latent_dim, "hidden_dim": self.hidden_dim}

    @property
    def train_settings(self):
        """The keyword arguments of vae_lesson.train that this config fixes."""
        return {name: getattr(self, name) for name in ("epochs", "batch_size", "lr", "lr_schedule", "beta", "seed",
                                                      "warmup_epochs", "free_bits")}

    def replace(self, **changes):
        """A copy with some fields changed, e.g. config.replace(beta=4.0); an unknown name raises a TypeError."""
        unknown = sorted(set(changes) - {field.name for field in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"TrainingConfig has no field {', '.join(map(repr, unknown))}; "
                            f"the fields are {', '.join(field.name for field in dataclasses.fields(self))}.")
        return dataclasses.replace(self, **changes)


# The source lecture's 784-500-20 VAE, trained with larger batches, a higher rate and the cosine schedule.
LECTURE = TrainingConfig(kind="vae", latent_dim=20, epochs=30, batch_size=256, lr=2e-3, lr_schedule="cosine")
# Lesson 8's version of it: 3 epochs instead of 30, so that the lesson's six 20-D models fit in its time.
COLLAPSE = LECTURE.replace(epochs=3)

# Every model the course trains. The comments say where each one is used.
RECIPES = {
    # Lessons 1, 2, 4 and 7: the autoencoder with a 2-D code, drawn as a scatter of digits.
    "ae-2d": TrainingConfig(kind="autoencoder", latent_dim=2),
    # Lessons 6 and 7: the VAE with a 2-D code, beside the autoencoder's.
    "vae-2d": TrainingConfig(kind="vae", latent_dim=2),
    # Lessons 5 and 6, `make checkpoints`, bench_training --lecture-epochs.
    "vae-20d-lecture": LECTURE,
    # Lesson 8: at beta 1 for its section 1 and at several beta (trained_model(..., beta=...)); then at
    # beta 6, where the plain recipe switches dimensions off, with each of the two remedies.
    "vae-20d-collapse-sweep": COLLAPSE,
    "vae-20d-collapse-warmup": COLLAPSE.replace(beta=6.0, warmup_epochs=2),
    "vae-20d-collapse-free-bits": COLLAPSE.replace(beta=6.0, free_bits=0.5),
    # `python -m vae_lesson train` without --recipe: a 20-D VAE with the default settings.
    "vae-20d": TrainingConfig(kind="vae", latent_dim=20),
    # benchmarks/bench_training.py: the 784-400-20 VAE, batch 128, Adam 1e-3, as pytorch/examples trains it.
    "vae-20d-examples": TrainingConfig(kind="vae", latent_dim=20, hidden_dim=400),
}


def recipe(name):
    """The TrainingConfig named `name` in RECIPES."""
    if name not in RECIPES:
        hint = (f" ({name!r} is a kind of model: pass TrainingConfig(kind={name!r}, ...) for one of your own)"
                if name in MODELS else " (or pass a vae_lesson.TrainingConfig)")
        raise ValueError(f"unknown recipe {name!r}; the course's recipes are {', '.join(RECIPES)}{hint}.")
    return RECIPES[name]


def as_config(recipe_or_config, **changes):
    """A recipe name or a TrainingConfig, with `changes` applied: the TrainingConfig to train."""
    if isinstance(recipe_or_config, str):
        config = recipe(recipe_or_config)
    elif isinstance(recipe_or_config, TrainingConfig):
        config = recipe_or_config
    else:
        raise TypeError(f"expected a recipe name (one of {', '.join(RECIPES)}) or a TrainingConfig, "
                        f"got {type(recipe_or_config).__name__}.")
    return config.replace(**changes) if changes else config


def fresh_model(config, train_images):
    """The untrained model `config` starts from: initial weights drawn with torch.manual_seed(config.seed)
    (without disturbing the global random state), the decoder at the mean training image.

    train_images: (N, 1, 28, 28) or (N, 784) in [0, 1]. Returns the model, on the CPU.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_model(config.model_config)
    return set_output_bias_to_mean_image(model, train_images)
