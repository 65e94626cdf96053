"""An autoencoder and a variational autoencoder built from the same MLP pieces.

Both compress a 28x28 image (784 pixels) through a hidden layer to a small latent code
and decode it back. The one real difference sits in `encode`/`forward`:

- Autoencoder: the encoder maps x to a single point z.
- VAE: the encoder maps x to a Gaussian N(mu, diag(exp(logvar))), and z is a sample from it
  (drawn with the reparameterization trick so gradients flow).
"""

import torch
from torch import nn

from .loss import autoencoder_loss, vae_loss
from .reparameterize import reparameterize

IMAGE_SHAPE = (1, 28, 28)
N_PIXELS = 28 * 28


def flatten_images(images):
    """(N, 1, 28, 28) or (N, 784) -> (N, 784); anything else raises a ValueError."""
    if images.dim() == 4 and tuple(images.shape[1:]) == IMAGE_SHAPE:
        return images.reshape(images.shape[0], N_PIXELS)
    if images.dim() == 2 and images.shape[1] == N_PIXELS:
        return images
    raise ValueError(
        f"expected images of shape (N, 1, 28, 28) or (N, 784), got {tuple(images.shape)}; "
        "for a single image add a batch dimension with image.unsqueeze(0)."
    )


def model_device(model):
    """The device a model's parameters live on (the course's models keep them all on one)."""
    return next(model.parameters()).device


class Decoder(nn.Module):
    """latent z -> hidden (ReLU) -> 784 logits, one per pixel (sigmoid gives probabilities)."""

    def __init__(self, latent_dim, hidden_dim):
        super().__init__()
        self.hidden = nn.Linear(latent_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, N_PIXELS)

    def forward(self, z):
        return self.out(torch.relu(self.hidden(z)))


class _LatentModel(nn.Module):
    """What both models share: sizes, the encoder's hidden layer, a decoder, and decoding to images."""

    kind = None  # "autoencoder" or "vae"; used in checkpoints and caches

    def __init__(self, latent_dim, hidden_dim):
        super().__init__()
        if latent_dim < 1 or hidden_dim < 1:
            raise ValueError(f"latent_dim and hidden_dim must be positive, got {latent_dim} and {hidden_dim}.")
        self.latent_dim = int(latent_dim)
        self.hidden_dim = int(hidden_dim)
        # The first layer of both encoders (each model adds its own head); created first, as the
        # order in which layers draw their initial weights decides which weights a seed gives.
        self.encoder_hidden = nn.Linear(N_PIXELS, hidden_dim)
        self.decoder = Decoder(latent_dim, hidden_dim)

    @property
    def config(self):
        """The architecture as a plain dict: enough to rebuild the model (see checkpoint.py)."""
        return {"kind": self.kind, "latent_dim": self.latent_dim, "hidden_dim": self.hidden_dim}

    def hidden_features(self, images):
        """images (N, 1, 28, 28) or (N, 784) -> h = ReLU(W x + b), (N, hidden_dim): the encoders' shared layer."""
        return torch.relu(self.encoder_hidden(flatten_images(images)))

    def decode_logits(self, z):
        """z: (N, latent_dim) -> logits (N, 784)."""
        return self.decoder(z)

    def decode(self, z):
        """z: (N, latent_dim) -> pixel probabilities as images (N, 1, 28, 28), values in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z)).reshape(-1, *IMAGE_SHAPE)

    def extra_repr(self):
        return f"latent_dim={self.latent_dim}, hidden_dim={self.hidden_dim}"


class Autoencoder(_LatentModel):
    """Deterministic autoencoder: x -> z (a point) -> reconstruction."""

    kind = "autoencoder"

    def __init__(self, latent_dim=20, hidden_dim=500):
        super().__init__(latent_dim, hidden_dim)
        self.to_latent = nn.Linear(hidden_dim, latent_dim)

    def encode(self, images):
        """images: (N, 1, 28, 28) or (N, 784) -> z: (N, latent_dim)."""
        return self.to_latent(self.hidden_features(images))

    def forward(self, images, generator=None):
        """Returns (logits (N, 784), z). `generator` is accepted and unused, like the VAE's."""
        z = self.encode(images)
        return self.decode_logits(z), z

    def loss(self, images, beta=1.0, generator=None, free_bits=0.0):
        """Reconstruction loss in nats per image (beta and free_bits have no KL to act on here)."""
        logits, _ = self(images)
        return autoencoder_loss(logits, images)


class VAE(_LatentModel):
    """Variational autoencoder: x -> N(mu, sigma^2) -> sampled z -> reconstruction.

    Defaults are the source lecture's model: 784-500-20 with ReLU.
    """

    kind = "vae"

    def __init__(self, latent_dim=20, hidden_dim=500):
        super().__init__(latent_dim, hidden_dim)
        self.to_mu = nn.Linear(hidden_dim, latent_dim)
        self.to_logvar = nn.Linear(hidden_dim, latent_dim)

    def encode(self, images):
        """images -> (mu, logvar), each (N, latent_dim): the Gaussian q(z|x)."""
        h = self.hidden_features(images)
        return self.to_mu(h), self.to_logvar(h)

    def forward(self, images, generator=None):
        """Returns (logits (N, 784), mu, logvar), with z sampled by the reparameterization trick."""
        mu, logvar = self.encode(images)
        z = reparameterize(mu, logvar, generator=generator)
        return self.decode_logits(z), mu, logvar

    def loss(self, images, beta=1.0, generator=None, free_bits=0.0):
        """Negative ELBO terms (total, reconstruction, kl) in nats per image; free_bits: see vae_loss."""
        logits, mu, logvar = self(images, generator=generator)
        return vae_loss(logits, images, mu, logvar, beta=beta, free_bits=free_bits)


MODELS = {cls.kind: cls for cls in (Autoencoder, VAE)}

# A pixel that is black in every training image would need a bias of -inf; clamping the mean to
# [0.001, 0.999] starts it at a logit of -6.9 and leaves the rest to training.
MEAN_IMAGE_CLAMP = 1e-3


@torch.no_grad()
def set_output_bias_to_mean_image(model, images):
    """Start the decoder at the average image: output bias = logit(mean pixel value), in place.

    images: (N, 1, 28, 28) or (N, 784) in [0, 1], the training images. The output weights start
    small, so an untrained decoder then draws the mean image (clamped to [0.001, 0.999]) for any z,
    instead of grey noise, and the first steps are not spent learning that the border is black.
    The course trains every model from this start (recipes.fresh_model); it ends training a few
    tenths of a nat lower (benchmarks/README.md).
    Returns the model.
    """
    pixels = flatten_images(images)
    if pixels.shape[0] == 0:
        raise ValueError("need at least one image to compute the mean image.")
    low, high = pixels.min().item(), pixels.max().item()
    if low < 0 or high > 1:
        raise ValueError(f"pixel values must lie in [0, 1] (they are probabilities of a pixel being on), "
                         f"got values from {low:g} to {high:g}; divide raw 0-255 images by 255.")
    mean = pixels.mean(dim=0).clamp(MEAN_IMAGE_CLAMP, 1 - MEAN_IMAGE_CLAMP)
    bias = model.decoder.out.bias
    bias.copy_(torch.logit(mean).to(dtype=bias.dtype, device=bias.device))
    return model


def build_model(config):
    """Rebuild a model from its `config` dict ({"kind", "latent_dim", "hidden_dim"})."""
    try:
        cls = MODELS[config["kind"]]
    except KeyError:
        raise ValueError(f"unknown model kind {config.get('kind')!r}; expected one of {sorted(MODELS)}.") from None
    return cls(latent_dim=config["latent_dim"], hidden_dim=config["hidden_dim"])
