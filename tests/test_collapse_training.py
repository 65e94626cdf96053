"""KL warm-up and free bits in the trainer: off by default, and when on, the loss written out by hand."""

import copy

import pytest
import torch
import torch.nn.functional as F

import vae_lesson as vl
from vae_lesson import RECIPES, TrainingConfig, fresh_model, train


def binary_images(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=g) < 0.2).float()


def reference_training(model, images, *, epochs, batch_size, lr, beta, warmup_epochs, free_bits, seed):
    """The warm-up and free-bits objective written out with torch: for batch k (1, 2, ...) the KL weight is
    beta * min(1, k / (warmup_epochs * batches per epoch)), and the KL is sum_d max(free_bits, mean_n KL_nd)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    shuffle, noise = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    n_batches = -(-len(images) // batch_size)
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=shuffle)
        for start in range(0, len(images), batch_size):
            step += 1
            x = images[order[start:start + batch_size]]
            mu, logvar = model.encode(x)
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=noise)
            reconstruction = F.binary_cross_entropy_with_logits(model.decode_logits(z), x.reshape(len(x), -1),
                                                                 reduction="sum") / len(x)
            kl_per_dimension = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).mean(dim=0)
            weight = beta * min(1.0, step / (warmup_epochs * n_batches)) if warmup_epochs else beta
            loss = reconstruction + weight * torch.maximum(kl_per_dimension, torch.tensor(free_bits)).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


@pytest.mark.parametrize("warmup_epochs, free_bits", [(2, 0.0), (0, 0.3), (1, 0.3)])
def test_warmup_and_free_bits_train_the_objective_written_by_hand(warmup_epochs, free_bits):
    config = TrainingConfig(kind="vae", latent_dim=4, hidden_dim=16, epochs=3, batch_size=32, lr=3e-3, beta=2.0,
                            seed=3, warmup_epochs=warmup_epochs, free_bits=free_bits)
    images = binary_images()
    model = fresh_model(config, images)
    reference = reference_training(copy.deepcopy(model), images, epochs=3, batch_size=32, lr=3e-3, beta=2.0,
                                   warmup_epochs=warmup_epochs, free_bits=free_bits, seed=3)
    train(model, images, progress=False, **config.train_settings)
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=name)


def test_the_remedies_change_the_weights():
    """The test above could pass with the options ignored if they changed nothing; they do change the result."""
    images = binary_images()
    base = TrainingConfig(kind="vae", latent_dim=4, hidden_dim=16, epochs=2, batch_size=32, lr=3e-3, beta=2.0, seed=3)
    weights = []
    for config in (base, base.replace(warmup_epochs=1), base.replace(free_bits=0.3)):
        model = fresh_model(config, images)
        train(model, images, progress=False, **config.train_settings)
        weights.append(model.to_mu.weight.detach().clone())
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_warmup_raises_the_weight_batch_by_batch_and_the_test_pass_uses_beta():
    class RecordingVAE(vl.VAE):
        def __init__(self):
            super().__init__(latent_dim=2, hidden_dim=8)
            self.betas = []

        def loss(self, images, beta=1.0, generator=None, free_bits=0.0):
            self.betas.append((self.training, beta))
            return super().loss(images, beta=beta, generator=generator, free_bits=free_bits)

    model = RecordingVAE()
    images = binary_images(100)  # 4 batches of 25 per epoch
    history = train(model, images, images, epochs=3, batch_size=25, beta=4.0, warmup_epochs=2, progress=False)
    trained = [beta for training, beta in model.betas if training]
    assert trained == pytest.approx([4.0 * k / 8 for k in range(1, 9)] + [4.0] * 4)
    assert {beta for training, beta in model.betas if not training} == {4.0}
    assert len(history["test_loss"]) == 3


def test_off_by_default_and_a_loss_without_free_bits_still_trains():
    class PlainLossVAE(vl.VAE):
        def loss(self, images, beta=1.0, generator=None):  # a model written before free bits existed
            return super().loss(images, beta=beta, generator=generator)

    assert TrainingConfig().warmup_epochs == 0 and TrainingConfig().free_bits == 0.0
    for name, config in RECIPES.items():
        if name not in ("vae-20d-collapse-warmup", "vae-20d-collapse-free-bits"):
            assert (config.warmup_epochs, config.free_bits) == (0, 0.0), name
    images = binary_images()
    torch.manual_seed(0)
    plain = PlainLossVAE(latent_dim=2, hidden_dim=8)
    ours = copy.deepcopy(plain)
    train(plain, images, epochs=1, batch_size=40, progress=False)
    train(ours, images, epochs=1, batch_size=40, warmup_epochs=0, free_bits=0.0, progress=False)
    for a, b in zip(plain.parameters(), ours.parameters()):
        assert torch.equal(a, b)


def test_vae_loss_with_free_bits_floors_the_trained_kl_and_reports_the_plain_one():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 784, generator=g)
    images = (torch.rand(8, 1, 28, 28, generator=g) < 0.3).float()
    mu, logvar = 0.1 * torch.randn(8, 3, generator=g), 0.1 * torch.randn(8, 3, generator=g)
    plain = vl.vae_loss(logits, images, mu, logvar, beta=2.0)
    floored = vl.vae_loss(logits, images, mu, logvar, beta=2.0, free_bits=1.0)
    assert floored.kl == plain.kl and floored.reconstruction == plain.reconstruction
    torch.testing.assert_close(floored.total, plain.reconstruction + 2.0 * 3 * 1.0)  # every dimension under 1 nat


def test_bad_warmup_is_refused_before_training():
    with pytest.raises(ValueError, match="warmup_epochs must be a whole number >= 0"):
        train(vl.VAE(latent_dim=2, hidden_dim=8), binary_images(10), epochs=1, warmup_epochs=-1, progress=False)
