"""Numbers that say how an autoencoder's latent space differs from a VAE's.

Two questions, each with its own yardstick:

- Does decoding z ~ N(0, I) give digits? A small classifier trained on real MNIST judges the
  decoded prior samples: `confident_fraction` is the share it labels with high confidence, and
  `effective_class_count` says how many different digits those confident samples are (a model that
  draws only 3s scores high on the first and 1 on the second).
- How far is the aggregate posterior (all encoded training images together) from the prior
  N(0, I)? `gaussian_fit_kl` fits one Gaussian to the codes and gives its KL to N(0, I) in
  closed form; `mmd_to_standard_normal` compares the codes with prior samples directly, without
  assuming the codes are Gaussian.
"""

import math

import torch
from torch import nn

from . import validate
from .data import iterate_batches
from .models import N_PIXELS, flatten_images


class DigitClassifier(nn.Module):
    """An MLP 784 -> hidden (ReLU) -> 10: images (N, 1, 28, 28) or (N, 784) -> logits (N, 10)."""

    def __init__(self, hidden_dim=256):
        super().__init__()
        self.hidden = nn.Linear(N_PIXELS, hidden_dim)
        self.out = nn.Linear(hidden_dim, 10)

    def forward(self, images):
        return self.out(torch.relu(self.hidden(flatten_images(images))))


def not_digits(images, generator=None):
    """Images (N, 1, 28, 28) that are no digit: half uniform noise of random brightness, half the
    given digits with their pixels shuffled (the same ink, no shape)."""
    n = images.shape[0]
    brightness = torch.rand(n // 2, 1, 1, 1, generator=generator)
    noise = torch.rand(n // 2, 1, 28, 28, generator=generator) * brightness
    shuffled = flatten_images(images[n // 2:])[:, torch.randperm(N_PIXELS, generator=generator)]
    return torch.cat([noise, shuffled.reshape(-1, 1, 28, 28)])


def train_digit_classifier(images, labels, epochs=3, batch_size=64, lr=2e-3, hidden_dim=256, outlier_weight=0.5,
                           seed=0):
    """Train a DigitClassifier with Adam on images (N, 1, 28, 28) and labels (N,); returns it in eval mode.

    Loss: cross-entropy on the digits + outlier_weight * cross-entropy from the uniform distribution
    on `not_digits` images ("outlier exposure", Hendrycks et al., 2019). Without that term an MLP
    labels most uniform-noise images as some digit with over 90% confidence, and a judge of
    generated images must not be that easy to please. Seeded; the global random state is left as
    it was. Three epochs on full MNIST give about 97% test accuracy; five on the 4,000-digit offline
    sample (a third as many steps) give over 90%.
    """
    images = validate.images(images, dtype=torch.float32)
    labels = validate.labels(labels, "labels", images.shape[0])
    epochs, batch_size = validate.whole_number(epochs, "epochs"), validate.whole_number(batch_size, "batch_size")
    lr = validate.learning_rate(lr)
    outlier_weight = validate.number(outlier_weight, "outlier_weight", minimum=0)
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        classifier = DigitClassifier(hidden_dim)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    classifier.train()
    for _ in range(epochs):
        for batch_images, batch_labels in iterate_batches(images, labels, batch_size=batch_size, generator=generator):
            loss = nn.functional.cross_entropy(classifier(batch_images), batch_labels)
            if outlier_weight:
                log_probs = torch.log_softmax(classifier(not_digits(batch_images, generator)), dim=1)
                loss = loss - outlier_weight * log_probs.mean()  # mean over classes: CE to uniform
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return classifier.eval()


@torch.no_grad()
def _class_probabilities(classifier, images, batch_size):
    classifier.eval()
    parts = [torch.softmax(classifier(batch), dim=1)
             for (batch,) in iterate_batches(images, batch_size=batch_size, shuffle=False)]
    return torch.cat(parts)


def classifier_accuracy(classifier, images, labels, batch_size=1000):
    """Share of images (N, 1, 28, 28) whose most probable class is their label (N,): a float in [0, 1]."""
    images = validate.images(images, dtype=validate.parameter_dtype(classifier))
    labels = validate.labels(labels, "labels", images.shape[0])
    batch_size = validate.whole_number(batch_size, "batch_size")
    predicted = _class_probabilities(classifier, images, batch_size).argmax(dim=1)
    return (predicted == labels.to(predicted.device)).float().mean().item()


def confident_fraction(classifier, images, threshold=0.9, batch_size=1000):
    """Share of images (N, 1, 28, 28) that the classifier assigns to one digit with probability >= threshold.

    Applied to decoded prior samples it asks: how many of them look clearly like some digit?
    The classifier must return logits (N, 10). Returns a float in [0, 1].
    """
    if not 0.0 < validate.number(threshold, "threshold") <= 1.0:
        raise ValueError(f"threshold is a probability in (0, 1], got {threshold}.")
    images = validate.images(images, dtype=validate.parameter_dtype(classifier))
    batch_size = validate.whole_number(batch_size, "batch_size")
    confidence = _class_probabilities(classifier, images, batch_size).max(dim=1).values
    return (confidence >= threshold).float().mean().item()


def effective_class_count(classifier, images, threshold=0.9, batch_size=1000):
    """How many digit classes the confidently classified images spread over: exp(entropy) of their labels.

    Keeps the images (N, 1, 28, 28) whose top class probability is >= threshold, takes the share
    p_c of them in each class c, and returns exp(-sum_c p_c log p_c) (0 log 0 = 0): 1 when they are
    all one digit, m when they split evenly over m digits, 10 at most. 0.0 when no image is
    confident. Applied to decoded prior samples it measures coverage: how many kinds of digit the
    generator draws, which the confident fraction alone cannot see.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold is a probability in (0, 1], got {threshold}.")
    if images.shape[0] == 0:
        raise ValueError("effective_class_count needs at least one image.")
    confidence, predicted = _class_probabilities(classifier, images, batch_size).max(dim=1)
    confident = predicted[confidence >= threshold]
    if confident.numel() == 0:
        return 0.0
    shares = torch.bincount(confident, minlength=10).double() / confident.numel()
    shares = shares[shares > 0]
    return math.exp(-(shares * shares.log()).sum().item())


def _check_latents(latents, min_points):
    return validate.latents(latents, min_points=min_points).detach().to(torch.float64)


def gaussian_fit_kl(latents):
    """KL(N(m, S) || N(0, I)) in nats for the Gaussian fitted to latents (N, D) (sample mean and covariance).

    Closed form: 1/2 (tr S + m^T m - D - log det S). Zero only when the codes have mean 0 and
    covariance I; it grows with shifted, stretched or squashed codes.
    """
    z = _check_latents(latents, min_points=2)
    d = z.shape[1]
    mean = z.mean(dim=0)
    cov = torch.cov(z.T).reshape(d, d)  # reshape: torch.cov returns a scalar when D == 1
    sign, logdet = torch.linalg.slogdet(cov)
    if sign <= 0:
        raise ValueError(
            "the latents' covariance is singular (some direction has no spread, or N <= latent_dim), "
            "so the fitted Gaussian has no density and its KL is infinite; pass more, non-degenerate codes."
        )
    return 0.5 * (torch.trace(cov) + mean @ mean - d - logdet).item()


def mmd_to_standard_normal(latents, n=2000, bandwidth=None, generator=None):
    """Squared maximum mean discrepancy between latents (N, D) and n samples of N(0, I).

    RBF kernel k(x, y) = exp(-|x - y|^2 / (2 h^2)), h = bandwidth (default sqrt(D), the scale of
    distances under the prior). Uses at most n codes (a random subset) and as many prior samples.
    The unbiased estimate (Gretton et al., 2012): about 0 when the codes follow N(0, I) (it can
    dip slightly below 0), larger the further they are from it.
    """
    z = _check_latents(latents, min_points=2)
    d = z.shape[1]
    h = math.sqrt(d) if bandwidth is None else validate.number(bandwidth, "bandwidth", above=0)
    n = validate.whole_number(n, "n", minimum=2)
    if z.shape[0] > n:
        z = z[torch.randperm(z.shape[0], generator=generator)[:n]]
    m = z.shape[0]
    prior = torch.randn(m, d, generator=generator, dtype=torch.float64)

    def kernel(a, b):
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * h * h))

    def mean_off_diagonal(k):  # the unbiased estimate leaves out each point's kernel with itself
        return (k.sum() - k.diagonal().sum()) / (m * (m - 1))

    return (mean_off_diagonal(kernel(z, z)) + mean_off_diagonal(kernel(prior, prior))
            - 2 * kernel(z, prior).mean()).item()
