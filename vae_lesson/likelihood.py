"""How likely is an image under a trained VAE? The importance-weighted estimate of log p(x).

The ELBO is only a lower bound on log p(x). Drawing k samples z_i ~ q(z|x) and averaging the
importance weights w_i = p(x|z_i) p(z_i) / q(z_i|x) gives a tighter one (Burda et al., 2016, IWAE):

    log p(x) >= E[ log (1/k) sum_i w_i ]

k=1 is the (single-sample) ELBO; the bound rises towards log p(x) as k grows. The weights are
combined with logsumexp, because the w_i themselves (around e^-100) underflow.
"""

import math

import torch
import torch.nn.functional as F

from . import validate
from .kl import gaussian_log_density
from .models import flatten_images, model_device

# Most decoder rows (image x sample pairs) evaluated at once: 10,000 rows of 784 float32 logits
# is ~31 MB, so k=1000 on the whole test set stays well under 1 GB whatever the batch size.
MAX_DECODER_ROWS = 10_000


def iwae_bound(log_weights):
    """The importance-weighted bound of each image: log (1/k) sum_i w_i, from log_weights (k, N).

    log_weights[i, n] = log p(x_n, z_i) - log q(z_i | x_n) for k draws z_i ~ q(z | x_n). Returns (N,):
    logsumexp over the k draws minus log k. The weights themselves (around e^-100) underflow, so
    they are never exponentiated directly. k=1 gives the single-sample ELBO, log_weights[0].
    """
    if not isinstance(log_weights, torch.Tensor):
        raise TypeError(f"log_weights must be a tensor of shape (k, N), got {type(log_weights).__name__}.")
    if log_weights.dim() != 2 or log_weights.shape[0] == 0:
        raise ValueError(
            f"log_weights must have shape (k, N), k >= 1 draws for each of N images, got {tuple(log_weights.shape)}; "
            "for a single image use log_weights.unsqueeze(1)."
        )
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


@torch.no_grad()
def log_likelihood(vae, images, k=1000, *, batch_size=100, generator=None):
    """Per-image IWAE estimate of log p(x) in nats: log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x).

    vae: a trained VAE (an autoencoder defines no p(x)). images: (N, 1, 28, 28) or (N, 784) in
    [0, 1]. k: samples z_i ~ q(z|x) per image. batch_size: images encoded at a time.
    generator: optional torch.Generator (on the model's device) for repeatable noise; for each
    batch of images the noise is drawn in chunks as torch.randn(samples, batch, latent_dim).
    Returns a tensor (N,) on the CPU. p(x|z) is the Bernoulli likelihood of the pixels, the same
    one the training loss uses, so k=1 averages to minus the loss (the negative ELBO).
    """
    if isinstance(vae, tuple):
        validate.model(vae, "vae")
    if getattr(vae, "kind", None) != "vae":
        raise TypeError(
            f"log_likelihood needs a VAE, got {type(vae).__name__}: the estimate samples z from the "
            "encoder's Gaussian q(z|x), and an autoencoder (which maps x to a single point) defines "
            "no density p(x)."
        )
    k = validate.whole_number(k, "k (samples per image)")
    batch_size = validate.whole_number(batch_size, "batch_size")
    flat = flatten_images(validate.images(images, dtype=validate.parameter_dtype(vae)))
    device = model_device(vae)
    was_training = vae.training
    vae.eval()
    estimates = []
    for start in range(0, flat.shape[0], batch_size):
        x = flat[start:start + batch_size].to(device)
        estimates.append(_log_likelihood_batch(vae, x, k, generator).cpu())
    vae.train(was_training)
    if not estimates:
        return torch.zeros(0)
    return torch.cat(estimates)


def _log_likelihood_batch(vae, x, k, generator):
    """x: (B, 784) on the model's device -> (B,) IWAE estimates, sampling k z's in chunks."""
    mu, logvar = vae.encode(x)
    samples_per_chunk = max(1, min(k, MAX_DECODER_ROWS // x.shape[0]))
    chunks = []
    for done in range(0, k, samples_per_chunk):
        s = min(samples_per_chunk, k - done)
        noise = torch.randn((s, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + torch.exp(0.5 * logvar) * noise  # (s, B, latent_dim), z ~ q(z|x)
        logits = vae.decode_logits(z.reshape(-1, z.shape[-1])).reshape(s, x.shape[0], -1)
        log_p_x_given_z = -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(dim=-1)
        log_p_z = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_q_z = gaussian_log_density(z, mu, logvar)
        chunks.append(log_p_x_given_z + log_p_z - log_q_z)  # (s, B) log-weights
    return iwae_bound(torch.cat(chunks))  # (k, B) log-weights: a few MB at most
