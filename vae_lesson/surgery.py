"""ELBO surgery (Hoffman and Johnson, 2016): where the KL term's nats go.

Over a data set of N images x_n, the encoder's Gaussians q(z | x_n) together form the
*aggregate posterior* q(z) = 1/N sum_n q(z | x_n), the cloud of all codes. The KL term of the
ELBO, averaged over the images, splits exactly into two parts:

    mean_n KL(q(z | x_n) || p(z)) = I(x; z) + KL(q(z) || p(z))

- I(x; z) = mean_n KL(q(z | x_n) || q(z)): the mutual information between the image and its code
  under q, what the code carries about the image. It is at most log N.
- KL(q(z) || p(z)): how far the cloud of all codes is from the prior, what sampling from p(z)
  has to live with.

Both need log q(z), a mixture of N Gaussians, which has no closed form for its entropy. Here it is
computed exactly at Monte Carlo draws z_m ~ q(z | x_m) (each image's code sampled
`samples_per_code` times), and

    I(x; z) ~ mean_m [log q(z_m | x_m) - log q(z_m)],   KL(q(z) || p(z)) = mean_n KL_n - I(x; z),

with the average KL in closed form, so the two parts add up to it exactly. The difference of logs
has little noise: for codes that never overlap it is exactly log N at every draw. The cost is
N^2 * samples_per_code * D: fine for N = 10,000.
"""

import math
from typing import NamedTuple

import torch

_LOG_2PI = math.log(2 * math.pi)
# (draws x codes) pairs evaluated at once: 2 million float64 log densities (16 MB) per matrix.
MAX_PAIRS = 2_000_000


class SurgeryTerms(NamedTuple):
    """average_kl = mutual_information + marginal_kl, all in nats per image (floats)."""

    average_kl: float
    mutual_information: float
    marginal_kl: float


def _check_posteriors(mu, logvar):
    if not isinstance(mu, torch.Tensor) or not isinstance(logvar, torch.Tensor):
        raise TypeError(f"mu and logvar must be tensors, got {type(mu).__name__} and {type(logvar).__name__}.")
    if mu.shape != logvar.shape or mu.dim() != 2 or mu.shape[0] == 0 or mu.shape[1] == 0:
        raise ValueError(f"mu and logvar must both have shape (N, latent_dim) with N >= 1, one row per image, "
                         f"got {tuple(mu.shape)} and {tuple(logvar.shape)}.")
    if not (torch.isfinite(mu).all() and torch.isfinite(logvar).all()):
        raise ValueError("mu and logvar must be finite; a NaN or inf here means the encoder diverged.")
    return mu.detach().double(), logvar.detach().double()


def aggregate_log_density(z, mu, logvar):
    """log q(z) for the aggregate posterior q(z) = 1/N sum_n N(z; mu_n, diag(exp(logvar_n))): (M,).

    z: (M, D) points; mu, logvar: (N, D), one Gaussian per image. Computed in float64 with
    logsumexp over the N components, in chunks of points so memory stays bounded.
    """
    mu, logvar = _check_posteriors(mu, logvar)
    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != mu.shape[1]:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must be a tensor of shape (M, {mu.shape[1]}), got {shape}.")
    z = z.detach().double()
    inverse_variance = torch.exp(-logvar)
    # log N(z; mu_n, sigma_n^2) = c_n - 1/2 sum_d (z_d^2 - 2 z_d mu_nd) / sigma_nd^2, with the sums over d
    # written as matrix products, so no (points x codes x D) tensor is ever made.
    constant = -0.5 * (_LOG_2PI * mu.shape[1] + logvar.sum(dim=1) + (mu.pow(2) * inverse_variance).sum(dim=1))
    scaled_mu = mu * inverse_variance
    chunk = max(1, MAX_PAIRS // mu.shape[0])
    # Every chunk is computed in place in one buffer made up front. With new (points x codes) temporaries
    # in each chunk, the allocator's memory grew chunk after chunk on some runs, depending on which thread
    # freed what when; a loop that allocates nothing large cannot (tests/test_surgery.py).
    log_density = torch.empty(z.shape[0], dtype=torch.float64)
    buffer = torch.empty(min(chunk, z.shape[0]), mu.shape[0], dtype=torch.float64)
    for start in range(0, z.shape[0], chunk):
        points = z[start:start + chunk]  # (m, D) against the N codes
        log_components = buffer[:points.shape[0]]  # (m, N): log N(z_m; mu_n, sigma_n^2)
        torch.mm(points.pow(2), inverse_variance.T, out=log_components)
        log_components.addmm_(points, scaled_mu.T, alpha=-2).mul_(-0.5).add_(constant)
        # log sum_n exp(.) over the codes, in place (torch.logsumexp would make a second (m, N) tensor)
        largest = log_components.amax(dim=1, keepdim=True)
        log_density[start:start + chunk] = log_components.sub_(largest).exp_().sum(dim=1).log_() + largest[:, 0]
    return log_density - math.log(mu.shape[0])


def elbo_surgery(mu, logvar, *, samples_per_code=1, generator=None):
    """Split the average KL into I(x; z) + KL(q(z) || p(z)) for encoder outputs mu, logvar (N, D).

    samples_per_code: draws z ~ q(z | x_n) per image for the Monte Carlo entropy of q(z); more
    lowers the noise in how the KL is shared between the two parts. generator: a torch.Generator
    for repeatable draws. Returns SurgeryTerms(average_kl, mutual_information, marginal_kl), nats.
    """
    mu, logvar = _check_posteriors(mu, logvar)
    if isinstance(samples_per_code, bool) or not isinstance(samples_per_code, int) or samples_per_code < 1:
        raise ValueError(f"samples_per_code must be a positive integer, got {samples_per_code!r}.")
    noise = torch.randn((samples_per_code, *mu.shape), generator=generator, dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * noise  # (samples_per_code, N, D): z ~ q(z | x_n) for every n
    # log q(z | x_n) at its own draw: the Gaussian's log density, with (z - mu) / sigma = noise
    log_code = -0.5 * (_LOG_2PI + logvar + noise.pow(2)).sum(dim=-1).reshape(-1)
    log_aggregate = aggregate_log_density(z.reshape(-1, mu.shape[1]), mu, logvar)
    mutual_information = (log_code - log_aggregate).mean()
    average_kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()
    return SurgeryTerms(average_kl.item(), mutual_information.item(), (average_kl - mutual_information).item())
