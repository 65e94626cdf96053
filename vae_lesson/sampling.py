"""Using a trained model as a generator: prior samples, interpolations, the latent manifold.

All functions work for both models. For the autoencoder they are the experiments that show it
is no generator: nothing made its latent space look like N(0, I).
"""

import torch

from . import validate
from .data import iterate_batches
from .models import model_device


def _latent_means(model, images):
    """The point each image maps to: z for the autoencoder, the mean mu for the VAE."""
    encoded = model.encode(images)
    return encoded[0] if isinstance(encoded, tuple) else encoded


@torch.no_grad()
def sample_prior(model, n, generator=None):
    """Decode n draws z ~ N(0, I) of shape (n, latent_dim); returns images (n, 1, 28, 28)."""
    validate.model(model)
    n = validate.whole_number(n, "n")
    model.eval()
    z = torch.randn(n, model.latent_dim, generator=generator, device=model_device(model))
    return model.decode(z)


@torch.no_grad()
def encode_dataset(model, images, batch_size=2000):
    """Latent codes for many images: (N, latent_dim); the means mu for a VAE. Returned on the CPU."""
    validate.model(model)
    images = validate.images(images, dtype=validate.parameter_dtype(model))
    batch_size = validate.whole_number(batch_size, "batch_size")
    model.eval()
    device = model_device(model)
    parts = [_latent_means(model, batch.to(device)).cpu()
             for (batch,) in iterate_batches(images, batch_size=batch_size, shuffle=False)]
    return torch.cat(parts)


@torch.no_grad()
def interpolate(model, x_a, x_b, steps=10):
    """Decode `steps` evenly spaced points on the straight line between the codes of x_a and x_b.

    x_a, x_b: one image each, (1, 28, 28), (1, 1, 28, 28) or (784,). Returns (steps, 1, 28, 28),
    starting at x_a's reconstruction and ending at x_b's.
    """
    validate.model(model)
    steps = validate.whole_number(steps, "steps", minimum=2)  # the two end points
    model.eval()
    device = model_device(model)
    dtype = validate.parameter_dtype(model)
    ends = torch.cat([validate.one_image(x_a, "x_a", dtype), validate.one_image(x_b, "x_b", dtype)]).to(device)
    z_a, z_b = _latent_means(model, ends)
    t = torch.linspace(0, 1, steps, device=device).unsqueeze(1)
    return model.decode((1 - t) * z_a + t * z_b)


def latent_grid_coordinates(n=15, low=0.05, high=0.95):
    """n values of z along one axis: the standard normal's quantiles at evenly spaced probabilities.

    Kingma & Welling (2014, fig. 4) map a regular grid on the unit square through the inverse CDF
    of N(0, 1), so each cell covers the same prior probability.
    """
    n = validate.whole_number(n, "n")
    low, high = validate.number(low, "low", above=0), validate.number(high, "high", above=0)
    if not low < high < 1:
        raise ValueError(f"low and high are probabilities with 0 < low < high < 1, got low={low:g}, high={high:g}; "
                         "the default 0.05 and 0.95 leave out the prior's far tails.")
    probabilities = torch.linspace(low, high, n, dtype=torch.float64)
    return torch.distributions.Normal(0.0, 1.0).icdf(probabilities).float()


@torch.no_grad()
def latent_grid(model, n=15, low=0.05, high=0.95):
    """Decode an n x n grid over a 2-D latent space at Gaussian quantiles: (n*n, 1, 28, 28).

    Row-major, like the figure: the first row has the largest z2 and columns go from low to high z1.
    """
    validate.model(model)
    if model.latent_dim != 2:
        raise ValueError(f"latent_grid needs a model with latent_dim=2, got latent_dim={model.latent_dim}.")
    model.eval()
    values = latent_grid_coordinates(n, low, high)
    z2, z1 = torch.meshgrid(values.flip(0), values, indexing="ij")
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1).to(model_device(model))
    return model.decode(z)
