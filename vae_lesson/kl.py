"""The KL term of the ELBO: how far the encoder's Gaussian is from the prior N(0, I).

For q = N(mu, diag(sigma^2)) and p = N(0, I) the KL divergence has a closed form,
summed over the latent dimensions j:

    KL(q || p) = 1/2 * sum_j ( mu_j^2 + sigma_j^2 - 1 - log sigma_j^2 )

`kl_monte_carlo` estimates the same quantity by sampling, E_q[log q(z) - log p(z)],
so a lesson can watch the estimate converge to the closed form.
"""

import math

import torch

from .reparameterize import reparameterize

_LOG_2PI = math.log(2 * math.pi)


def kl_divergence(mu, logvar):
    """Closed-form KL(N(mu, diag(exp(logvar))) || N(0, I)) per example.

    mu, logvar: (batch, latent_dim). Returns (batch,): summed over latent dimensions,
    not averaged, and not summed over the batch. Working with logvar (never sigma) keeps it
    finite for large |logvar|.
    """
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}."
        )
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def gaussian_log_density(z, mu, logvar):
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * (_LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(dim=-1)


def kl_monte_carlo(mu, logvar, n_samples, *, generator=None):
    """Monte Carlo estimate of the same KL: mean over n_samples of log q(z) - log p(z), z ~ q.

    mu, logvar: (batch, latent_dim). Returns (batch,). Unbiased; its error shrinks like
    1 / sqrt(n_samples).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples}.")
    mu_s = mu.expand(n_samples, *mu.shape)
    logvar_s = logvar.expand(n_samples, *logvar.shape)
    z = reparameterize(mu_s, logvar_s, generator=generator)
    log_q = gaussian_log_density(z, mu_s, logvar_s)
    log_p = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
    return (log_q - log_p).mean(dim=0)
