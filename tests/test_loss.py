import pytest
import torch
import torch.nn.functional as F

from vae_lesson import autoencoder_loss, reconstruction_loss, vae_loss


def batch(n=16, latent_dim=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, 784, generator=g, dtype=dtype)
    images = torch.rand(n, 1, 28, 28, generator=g, dtype=dtype)  # grey levels, like MNIST in [0, 1]
    mu = torch.randn(n, latent_dim, generator=g, dtype=dtype)
    logvar = torch.randn(n, latent_dim, generator=g, dtype=dtype)
    return logits, images, mu, logvar


def lecture_loss(recon_probabilities, images, mu, logvar):
    """The source lecture's loss_function, divided by the batch size as the lecture reports it."""
    bce = F.binary_cross_entropy(recon_probabilities, images.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    n = images.shape[0]
    return (bce + kld) / n, bce / n, kld / n


def test_vae_loss_equals_the_lecture_formula():
    logits, images, mu, logvar = batch()
    terms = vae_loss(logits, images, mu, logvar)
    total, bce, kld = lecture_loss(torch.sigmoid(logits), images, mu, logvar)
    torch.testing.assert_close(terms.total, total)
    torch.testing.assert_close(terms.reconstruction, bce)
    torch.testing.assert_close(terms.kl, kld)
    assert terms.total.dim() == 0


def test_flat_and_image_shaped_targets_give_the_same_loss():
    logits, images, mu, logvar = batch()
    assert torch.equal(vae_loss(logits, images, mu, logvar).total,
                       vae_loss(logits, images.reshape(-1, 784), mu, logvar).total)


@pytest.mark.parametrize("beta", [0.0, 0.5, 4.0])
def test_beta_weighs_only_the_kl(beta):
    logits, images, mu, logvar = batch()
    plain = vae_loss(logits, images, mu, logvar)
    weighted = vae_loss(logits, images, mu, logvar, beta=beta)
    _, bce, kld = lecture_loss(torch.sigmoid(logits), images, mu, logvar)
    torch.testing.assert_close(weighted.total, bce + beta * kld)
    assert torch.equal(weighted.reconstruction, plain.reconstruction)
    assert torch.equal(weighted.kl, plain.kl)


def test_autoencoder_loss_is_the_same_reconstruction_term_without_kl():
    logits, images, mu, logvar = batch()
    ae = autoencoder_loss(logits, images)
    _, bce, _ = lecture_loss(torch.sigmoid(logits), images, mu, logvar)
    torch.testing.assert_close(ae.reconstruction, bce)
    assert torch.equal(ae.reconstruction, vae_loss(logits, images, mu, logvar).reconstruction)
    assert torch.equal(ae.total, ae.reconstruction)
    assert ae.kl.item() == 0.0


def test_reconstruction_is_stable_for_saturated_logits():
    # Probabilities of exactly 0 or 1 make the probability-form BCE clamp at 100 nats per pixel;
    # on logits the loss stays exact: a confident correct pixel costs ~0, a wrong one |logit|.
    logits = torch.tensor([[200.0, -200.0] * 392])
    images = torch.tensor([[1.0, 1.0] * 392])
    loss = reconstruction_loss(logits, images)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(392 * 200.0)


def test_gradient_with_respect_to_logits_is_sigmoid_minus_target_over_n():
    logits, images, _, _ = batch(n=8)
    logits.requires_grad_(True)
    reconstruction_loss(logits, images).backward()
    torch.testing.assert_close(logits.grad, (torch.sigmoid(logits.detach()) - images.reshape(8, -1)) / 8)


def test_mismatched_logits_and_images_raise():
    with pytest.raises(ValueError, match="one logit per pixel"):
        reconstruction_loss(torch.zeros(4, 784), torch.zeros(4, 1, 14, 14))
