"""Recipes, the fresh model they start from, and the pins that tie the training code to its behaviour."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vae_lesson.training as training
from vae_lesson import RECIPES, TrainingConfig, fresh_model, recipe, train


def tiny_digits(n=96, seed=0):
    """Fixed binary images, four prototypes with 5% of their pixels flipped: something a model can learn.
    Drawn from torch's CPU generator, which gives the same numbers on every machine."""
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(4, 1, 28, 28, generator=g) < 0.3).float()
    flips = (torch.rand(n, 1, 28, 28, generator=g) < 0.05).float()
    return (prototypes[torch.arange(n) % 4] - flips).abs()


def plain_reference(config, images):
    """The course's training path before recipes existed, written with torch only: layers created in the
    order VAE/Autoencoder create them under torch.manual_seed(seed), the output bias at logit(mean image)
    (clamped to [0.001, 0.999]), fused Adam, the cosine schedule, the batch order from randperm on a
    generator seeded with seed and the noise from one seeded with seed + 1. Returns the layers."""
    h, d = config.hidden_dim, config.latent_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        layers = {"encoder_hidden": nn.Linear(784, h), "decoder.hidden": nn.Linear(d, h),
                  "decoder.out": nn.Linear(h, 784)}
        heads = ("to_mu", "to_logvar") if config.kind == "vae" else ("to_latent",)
        layers.update({name: nn.Linear(h, d) for name in heads})
    with torch.no_grad():
        layers["decoder.out"].bias.copy_(torch.logit(images.reshape(len(images), 784).mean(0).clamp(1e-3, 1 - 1e-3)))
    optimizer = torch.optim.Adam([p for layer in layers.values() for p in layer.parameters()], lr=config.lr, fused=True)
    n_batches = -(-len(images) // config.batch_size)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * n_batches)
                 if config.lr_schedule == "cosine" else None)
    shuffle, noise = torch.Generator().manual_seed(config.seed), torch.Generator().manual_seed(config.seed + 1)
    for _ in range(config.epochs):
        order = torch.randperm(len(images), generator=shuffle)
        for start in range(0, len(images), config.batch_size):
            x = images[order[start:start + config.batch_size]].reshape(-1, 784)
            hidden = torch.relu(layers["encoder_hidden"](x))
            if config.kind == "vae":
                mu, logvar = layers["to_mu"](hidden), layers["to_logvar"](hidden)
                z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=noise)
            else:
                z = layers["to_latent"](hidden)
            logits = layers["decoder.out"](torch.relu(layers["decoder.hidden"](z)))
            loss = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
            if config.kind == "vae":
                loss = loss + config.beta * (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    return layers


SMALL_CONFIGS = [
    TrainingConfig(kind="vae", latent_dim=3, hidden_dim=16, epochs=2, batch_size=64, lr=2e-3, lr_schedule="cosine",
                   beta=0.5, seed=5),
    TrainingConfig(kind="autoencoder", latent_dim=3, hidden_dim=16, epochs=2, batch_size=128, lr=2e-3, seed=5),
    TrainingConfig(kind="vae", latent_dim=3, hidden_dim=16, epochs=2, batch_size=100, lr=2e-3, seed=5),
]


@pytest.mark.parametrize("config", SMALL_CONFIGS, ids=lambda c: f"{c.kind}-{c.lr_schedule}-bs{c.batch_size}")
def test_a_recipe_trains_to_the_weights_of_the_plain_torch_path_bit_for_bit(config):
    """Behaviour kept: fresh_model + train give exactly the weights of the path written out with torch
    (which gave the same bits as the code before recipes, train_step and speedups.py were split out)."""
    images = tiny_digits(300)
    model = fresh_model(config, images)
    train(model, images, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
          lr_schedule=config.lr_schedule, beta=config.beta, seed=config.seed, progress=False)
    reference = plain_reference(config, images)
    for name, layer in reference.items():
        ours = model.get_submodule(name)
        assert torch.equal(ours.weight, layer.weight) and torch.equal(ours.bias, layer.bias), name


# What TRAINING_VERSION learns: the mean training loss of the last epoch, on tiny_digits(), for two small
# configs. If a change to the training code moves these numbers, it changes the weights the course's
# models train to, and cached models trained before it must not be reused: bump
# vae_lesson.training.TRAINING_VERSION and add its numbers here (the old ones stay, for the record).
PINNED_CONFIGS = {
    "vae": TrainingConfig(kind="vae", latent_dim=2, hidden_dim=32, epochs=4, batch_size=16, lr=1e-2,
                          lr_schedule="cosine", beta=0.5, seed=1),
    "autoencoder": TrainingConfig(kind="autoencoder", latent_dim=2, hidden_dim=32, epochs=4, batch_size=16, lr=1e-2,
                                  seed=1),
}
PINNED_LOSSES = {
    1: {"vae": 288.8538004557292, "autoencoder": 180.05062357584634},
}
# Float sums may round differently on another processor; a change in behaviour moves the loss by far more.
PIN_TOLERANCE = 1e-4


def pinned_loss(config, **changes):
    images = tiny_digits()
    model = fresh_model(config, images)
    settings = {**config.train_settings, **changes}
    return train(model, images, progress=False, **settings)["train_loss"][-1]


@pytest.mark.parametrize("kind", sorted(PINNED_CONFIGS))
def test_the_training_version_is_tied_to_what_training_learns(kind):
    version = training.TRAINING_VERSION
    assert version in PINNED_LOSSES, (
        f"TRAINING_VERSION is {version} but tests/test_recipes.py pins no losses for it: add "
        f"PINNED_LOSSES[{version}] with the losses this version trains to.")
    loss = pinned_loss(PINNED_CONFIGS[kind])
    assert loss == pytest.approx(PINNED_LOSSES[version][kind], rel=PIN_TOLERANCE), (
        f"the training code now trains the pinned {kind} to a loss of {loss!r}, not "
        f"{PINNED_LOSSES[version][kind]!r}: it changed what models learn, so cached models are stale. Bump "
        "TRAINING_VERSION in vae_lesson/training.py and pin the new losses in PINNED_LOSSES.")


@pytest.mark.parametrize("change", [dict(lr=1.01e-2), dict(beta=0.505), dict(seed=2), dict(batch_size=17),
                                    dict(lr_schedule="constant")])
def test_the_pin_notices_small_changes_to_training(change):
    """The tolerance is tight enough that a 1% different learning rate or beta, another seed or batch size fail it."""
    base = pinned_loss(PINNED_CONFIGS["vae"])
    assert pinned_loss(PINNED_CONFIGS["vae"], **change) != pytest.approx(base, rel=PIN_TOLERANCE)


def test_fresh_model_is_seeded_starts_at_the_mean_image_and_leaves_the_global_rng_alone():
    config, images = RECIPES["vae-2d"], tiny_digits()
    state = torch.get_rng_state()
    a, b = fresh_model(config, images), fresh_model(config, images)
    assert torch.equal(torch.get_rng_state(), state)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name
    torch.manual_seed(config.seed)
    unstarted = type(a)(latent_dim=config.latent_dim, hidden_dim=config.hidden_dim)
    assert torch.equal(a.encoder_hidden.weight, unstarted.encoder_hidden.weight)
    mean = images.reshape(len(images), 784).mean(0).clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(torch.sigmoid(a.decoder.out.bias), mean)


def test_recipe_names_and_changes():
    assert recipe("vae-20d-lecture") is RECIPES["vae-20d-lecture"]
    assert RECIPES["vae-20d-collapse-sweep"].replace(beta=4).beta == 4.0
    with pytest.raises(ValueError, match="unknown recipe 'vae-3d'; the course's recipes are ae-2d, vae-2d"):
        recipe("vae-3d")


@pytest.mark.parametrize("field, value, message", [
    ("kind", "gan", r"kind must be one of \['autoencoder', 'vae'\], got 'gan'"),
    ("latent_dim", 0, "latent_dim must be a positive whole number, got 0"),
    ("epochs", 2.5, "epochs must be a positive whole number, got 2.5"),
    ("batch_size", True, "batch_size must be a positive whole number, got True"),
    ("lr", 0, r"lr must be a positive number .*got 0"),
    ("lr_schedule", "linear", r"lr_schedule must be one of \('constant', 'cosine'\), got 'linear'"),
    ("beta", -1.0, "beta must be zero or positive .*got -1.0"),
    ("seed", "0", "seed must be a whole number, got '0'"),
    ("warmup_epochs", -1, r"warmup_epochs must be a whole number >= 0 \(0: no warm-up\), got -1"),
    ("free_bits", -0.5, r"free_bits must be a number of nats >= 0 \(0: off\), got -0.5"),
])
def test_a_bad_config_is_refused_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**{field: value})
