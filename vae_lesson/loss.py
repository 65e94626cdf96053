"""The training objectives: the VAE's negative ELBO and the autoencoder's reconstruction loss.

Both are in nats per image, the source lecture's convention (BCE + KLD) / batch_size:
a sum over the 784 pixels and the latent dimensions, then a mean over the batch.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .collapse import free_bits_kl
from .kl import kl_divergence


class LossTerms(NamedTuple):
    """total = reconstruction + beta * kl, each averaged over the batch (nats per image)."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def reconstruction_loss(logits, images):
    """Bernoulli negative log-likelihood of the pixels, summed over pixels, mean over the batch.

    logits: (N, 784) decoder outputs before the sigmoid. images: (N, 1, 28, 28) or (N, 784)
    in [0, 1]. Using logits (not probabilities) is the numerically stable form of the BCE.
    """
    n = logits.shape[0]
    targets = images.reshape(n, -1)
    if targets.shape != logits.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and images {tuple(images.shape)} do not match: "
            "expected one logit per pixel."
        )
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / n


def vae_loss(logits, images, mu, logvar, beta=1.0, free_bits=0.0):
    """Negative ELBO: reconstruction + beta * KL(q(z|x) || N(0, I)), per image.

    beta=1 is the true ELBO; other values give the beta-VAE trade-off. free_bits > 0 trains on
    the KL with a floor of free_bits nats per latent dimension (collapse.free_bits_kl) instead.
    Returns LossTerms(total, reconstruction, kl) of scalar tensors; kl is always the plain KL.
    """
    reconstruction = reconstruction_loss(logits, images)
    kl = kl_divergence(mu, logvar).mean()
    trained_kl = free_bits_kl(mu, logvar, free_bits) if free_bits else kl
    return LossTerms(reconstruction + beta * trained_kl, reconstruction, kl)


def autoencoder_loss(logits, images):
    """The autoencoder's loss: the same reconstruction term, and no KL (reported as 0)."""
    reconstruction = reconstruction_loss(logits, images)
    return LossTerms(reconstruction, reconstruction, torch.zeros_like(reconstruction))
