"""The reparameterization trick: a sample from N(mu, sigma^2) that gradients can flow through.

Instead of drawing z ~ N(mu, sigma^2) directly (a random node that blocks backprop),
draw eps ~ N(0, I) and compute z = mu + sigma * eps. The randomness now lives in eps,
and z is a differentiable function of mu and logvar.
"""

import torch


def reparameterize(mu, logvar, *, generator=None, noise=None):
    """Sample z = mu + exp(0.5 * logvar) * eps with eps ~ N(0, I).

    mu, logvar: tensors of the same shape, e.g. (batch, latent_dim). logvar is log(sigma^2),
    so the standard deviation is exp(0.5 * logvar) -- not exp(logvar), and not exp(logvar + 0.5)
    as the source lecture wrote it.
    generator: optional torch.Generator for reproducible noise.
    noise: optional eps to use instead of fresh noise (same shape as mu); handy in tests.
    Returns z with the shape of mu.
    """
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got mu {tuple(mu.shape)} and "
            f"logvar {tuple(logvar.shape)}; both come from the encoder, one value per latent dimension."
        )
    if noise is None:
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    elif noise.shape != mu.shape:
        raise ValueError(f"noise must have the shape of mu {tuple(mu.shape)}, got {tuple(noise.shape)}.")
    std = torch.exp(0.5 * logvar)
    return mu + std * noise
