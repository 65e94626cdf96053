"""When the KL wins: which latent dimensions a VAE uses, and two remedies for the ones it drops.

- `kl_per_dimension`: the KL term split over the latent dimensions, averaged over the images.
- `latent_activity` and `active_units` (Burda, Grosse and Salakhutdinov, 2015): dimension d is
  *active* when its mean E_q[z_d | x] moves with the image, Var_x(mu_d(x)) > threshold (0.01).
  An inactive dimension sends the decoder the same value for every image: it carries nothing.
- `free_bits_kl` (Kingma et al., 2016): the KL term with a floor of `free_bits` nats per
  dimension, so the first nats a dimension spends on the image cost nothing.
- `warmup_beta`: KL warm-up, the weight of the KL raised linearly from 0 to beta over the first
  steps, so the decoder learns to read the code before the KL has pushed it to the prior.
"""

import torch

from .data import iterate_batches

ACTIVE_UNITS_THRESHOLD = 0.01  # Burda et al. (2015)'s threshold on the variance of the means


def _as_codes(values, name, min_rows=1):
    """A float tensor (N, D) with N >= min_rows, or a ValueError/TypeError naming `name`."""
    if not isinstance(values, torch.Tensor):
        try:
            values = torch.as_tensor(values)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a tensor of shape (N, latent_dim), got {type(values).__name__}.") from None
    if values.dim() != 2 or values.shape[0] < min_rows or values.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, latent_dim) with N >= {min_rows} rows (one per image), "
                         f"got {tuple(values.shape)}; for a single image's code add a batch dimension.")
    return values.detach() if values.is_floating_point() else values.double()


def kl_per_dimension(mu, logvar):
    """KL(q(z_d | x) || N(0, 1)) for each latent dimension d, averaged over the images: (D,).

    mu, logvar: (N, D). Entry d is mean_n 1/2 (mu_nd^2 + sigma_nd^2 - 1 - log sigma_nd^2); the
    entries sum to the batch-mean KL that the loss uses. Differentiable (free bits trains on it).
    """
    if not isinstance(mu, torch.Tensor) or not isinstance(logvar, torch.Tensor):
        raise TypeError(f"mu and logvar must be tensors, got {type(mu).__name__} and {type(logvar).__name__}.")
    if mu.shape != logvar.shape or mu.dim() != 2 or mu.shape[0] == 0:
        raise ValueError(f"mu and logvar must both have shape (N, latent_dim) with N >= 1, got "
                         f"{tuple(mu.shape)} and {tuple(logvar.shape)}.")
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(dim=0)


def latent_activity(mu):
    """Var_x(E_q[z_d | x]) for each latent dimension d: (D,), the unbiased variance over the N images.

    mu: (N, D), the encoder's means over a data set (N >= 2).
    """
    return _as_codes(mu, "mu", min_rows=2).var(dim=0)


def active_units(mu, threshold=ACTIVE_UNITS_THRESHOLD):
    """How many latent dimensions are active: Var_x(mu_d(x)) > threshold (Burda et al., 2015). An int.

    mu: (N, D), the encoder's means over a data set, one row per image (N >= 2).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"threshold must be a positive number (a variance), got {threshold!r}.")
    return int((latent_activity(mu) > threshold).sum())


@torch.no_grad()
def encode_with_logvar(model, images, batch_size=2000):
    """(mu, logvar), each (N, latent_dim) on the CPU: a VAE's q(z|x) for many images, batch by batch."""
    if getattr(model, "kind", None) != "vae":
        raise TypeError(f"encode_with_logvar needs a VAE (it returns q(z|x)'s logvar), got {type(model).__name__}.")
    model.eval()
    device = next(model.parameters()).device
    parts = [model.encode(batch.to(device)) for (batch,) in iterate_batches(images, batch_size=batch_size,
                                                                             shuffle=False)]
    return torch.cat([mu.cpu() for mu, _ in parts]), torch.cat([logvar.cpu() for _, logvar in parts])


def free_bits_kl(mu, logvar, free_bits):
    """The KL term with free bits: sum_d max(free_bits, mean_n KL_nd), a scalar (Kingma et al., 2016).

    mu, logvar: (N, D), one batch. The floor applies to each dimension's KL averaged over the
    batch, so below `free_bits` nats a dimension's KL has no gradient: the model may spend that
    much on each dimension for free. free_bits=0 gives the usual batch-mean KL.
    """
    if isinstance(free_bits, bool) or not isinstance(free_bits, (int, float)) or not free_bits >= 0:
        raise ValueError(f"free_bits must be a number of nats >= 0 (0 switches it off), got {free_bits!r}.")
    return kl_per_dimension(mu, logvar).clamp(min=free_bits).sum()


def warmup_beta(step, warmup_steps, beta=1.0):
    """The KL weight at optimisation step `step` (1, 2, ...): beta * min(1, step / warmup_steps).

    warmup_steps=0 means no warm-up: beta from the first step.
    """
    if warmup_steps < 0 or step < 0:
        raise ValueError(f"step and warmup_steps must be >= 0, got step={step}, warmup_steps={warmup_steps}.")
    if warmup_steps == 0:
        return beta
    return beta * min(1.0, step / warmup_steps)
