import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

import vae_lesson.likelihood as likelihood_module
from vae_lesson import VAE, Autoencoder, iwae_bound, log_likelihood

LATENT_DIM = 2


def tiny_vae(seed=0, dtype=torch.float64):
    """A VAE with a 2-D latent space and 8 hidden units, fixed random weights (float64 by default)."""
    torch.manual_seed(seed)
    return VAE(latent_dim=LATENT_DIM, hidden_dim=8).to(dtype)


def binary_images(n, seed=1, dtype=torch.float64):
    return (torch.rand(n, 784, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) < 0.3).to(dtype)


@pytest.fixture(scope="module")
def true_log_px():
    """Brute-force log p(x) of binary_images(4) under tiny_vae(0); it depends on the decoder only."""
    return brute_force_log_px(tiny_vae(), binary_images(4))


def fit_encoder_to_posterior(vae):
    """Make q(z|x) the same Gaussian for every x, a bit wider than these models' posteriors.

    For tiny_vae(0) and binary_images(4) the posteriors (read off the grid) have means near
    (-1.6, 0.45) and standard deviations (0.6-0.8, 0.26-0.43); a slightly wider q makes the
    importance sampler well behaved, so k=1000 gets within a few hundredths of a nat.
    """
    with torch.no_grad():
        vae.to_mu.weight.zero_()
        vae.to_mu.bias.copy_(torch.tensor([-1.6, 0.45]))
        vae.to_logvar.weight.zero_()
        vae.to_logvar.bias.copy_(torch.tensor([0.9, 0.5]).pow(2).log())
    return vae


def brute_force_log_px(vae, images, n_grid=151, extent=6.0, rows_per_chunk=5000):
    """log p(x) = log of the integral of p(x|z) p(z) dz, as a Riemann sum on an n_grid^2 grid over [-extent, extent]^2.

    The integrand is a smooth bump with standard deviations >= 0.26 and the grid step is 0.08; a
    Riemann sum of such a bump converges faster than any power of the step (201 and 301 points
    agreed with 601 to 3e-5 nats when the test was written); the prior's mass outside +-6 is ~1e-9.
    """
    axis = torch.linspace(-extent, extent, n_grid, dtype=torch.float64)
    z1, z2 = torch.meshgrid(axis, axis, indexing="ij")
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)
    log_prior = Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_joint = []
    with torch.no_grad():
        for start in range(0, z.shape[0], rows_per_chunk):
            zc = z[start:start + rows_per_chunk]
            probs = torch.sigmoid(vae.decode_logits(zc))  # (rows, 784)
            # Bernoulli log-likelihood of each image under each grid point's probabilities.
            log_lik = images @ probs.log().T + (1 - images) @ torch.log1p(-probs).T  # (N, rows)
            log_joint.append(log_lik + log_prior[start:start + rows_per_chunk])
    cell_area = (axis[1] - axis[0]) ** 2
    return torch.logsumexp(torch.cat(log_joint, dim=1), dim=1) + torch.log(cell_area)


def test_shape_dtype_and_device():
    vae = tiny_vae()
    estimate = log_likelihood(vae, binary_images(3).float().reshape(3, 1, 28, 28).double(), k=5)
    assert estimate.shape == (3,)
    assert estimate.dtype == torch.float64
    assert estimate.device.type == "cpu"
    assert torch.isfinite(estimate).all()


def test_k1_is_the_single_sample_elbo_with_the_same_noise():
    vae = tiny_vae()
    images = binary_images(5)
    estimate = log_likelihood(vae, images, k=1, generator=torch.Generator().manual_seed(7))

    # The documented noise draw: one chunk of shape (k, N, latent_dim) from the generator.
    noise = torch.randn((1, 5, LATENT_DIM), generator=torch.Generator().manual_seed(7), dtype=torch.float64)[0]
    with torch.no_grad():
        mu, logvar = vae.encode(images)
        std = torch.exp(0.5 * logvar)
        z = mu + std * noise
        probs = torch.sigmoid(vae.decode_logits(z))
        log_p_x_given_z = -F.binary_cross_entropy(probs, images, reduction="none").sum(-1)
        log_p_z = Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_q_z = Normal(mu, std).log_prob(z).sum(-1)
    torch.testing.assert_close(estimate, log_p_x_given_z + log_p_z - log_q_z, rtol=0, atol=1e-9)


def test_k1_averages_to_minus_the_negative_elbo():
    vae = tiny_vae()
    image = binary_images(1)
    n = 4000
    draws = log_likelihood(vae, image.expand(n, -1), k=1, generator=torch.Generator().manual_seed(0))

    # Independent estimate of the ELBO: the lecture's BCE on probabilities over z ~ q drawn by
    # torch.distributions, plus torch.distributions' closed-form KL.
    with torch.no_grad():
        mu, logvar = vae.encode(image)
        q = Normal(mu[0], torch.exp(0.5 * logvar[0]))
        torch.manual_seed(123)
        z = q.sample((n,))
        probs = torch.sigmoid(vae.decode_logits(z))
        reconstruction = F.binary_cross_entropy(probs, image.expand(n, -1), reduction="none").sum(-1)
        kl = kl_divergence(q, Normal(0.0, 1.0)).sum()
    elbo = -(reconstruction.mean() + kl)
    # Two independent means of n draws each: allow 5 standard errors of their difference.
    standard_error = math.sqrt(draws.var() / n + reconstruction.var() / n)
    assert abs(draws.mean() - elbo) < 5 * standard_error
    assert standard_error < 0.3  # the test has power: the tolerance is a fraction of a nat


def test_bound_increases_with_k_on_average():
    # With a random encoder q(z|x) is far from the posterior, so the gaps between k=1, 10 and
    # 100 are several nats; 400 independent estimates each give standard errors of ~0.1-0.5.
    vae = tiny_vae(dtype=torch.float32)
    images = binary_images(1, dtype=torch.float32).expand(400, -1)
    means, errors = [], []
    for seed, k in enumerate((1, 10, 100)):
        draws = log_likelihood(vae, images, k=k, generator=torch.Generator().manual_seed(seed))
        means.append(draws.mean())
        errors.append(draws.std() / math.sqrt(draws.numel()))
    for i in range(2):
        assert means[i + 1] - means[i] > 3 * math.hypot(errors[i], errors[i + 1])


@pytest.mark.parametrize("batch_size, max_rows", [(100, likelihood_module.MAX_DECODER_ROWS), (3, 600)])
def test_large_k_matches_brute_force_integration(monkeypatch, true_log_px, batch_size, max_rows):
    # The second case splits the 32 images into batches of 3 (and a last one of 2) and the
    # samples into chunks of 200 (600 // 3) and 300, so the chunked logsumexp is checked too.
    monkeypatch.setattr(likelihood_module, "MAX_DECODER_ROWS", max_rows)
    vae = fit_encoder_to_posterior(tiny_vae())
    images = binary_images(4)
    repeats = 8
    estimates = log_likelihood(vae, images.repeat(repeats, 1), k=1000, batch_size=batch_size,
                               generator=torch.Generator().manual_seed(0)).reshape(repeats, 4)
    errors = estimates - true_log_px
    # Each image: within 0.05 nats (the estimates' spread at k=1000 is ~0.02-0.04, so the mean
    # of 8 has a standard error near 0.01).
    assert errors.mean(0).abs().max() < 0.05
    # A lower bound in expectation: not significantly above the truth (3 standard errors).
    assert errors.mean() < 3 * errors.std() / math.sqrt(errors.numel())


def test_single_sample_elbo_is_clearly_below_brute_force_log_px(true_log_px):
    # Shows the reference can tell a bound from the truth: with the untrained encoder the ELBO
    # (k=1, averaged) sits nats below log p(x), while k=1000 closes the gap (the test above).
    vae = tiny_vae()
    image = binary_images(1)
    draws = log_likelihood(vae, image.expand(1000, -1), k=1, generator=torch.Generator().manual_seed(0))
    assert draws.mean() < true_log_px[0] - 1.0


def test_memory_is_bounded_by_chunking(monkeypatch):
    vae = VAE(latent_dim=3, hidden_dim=4)
    rows = []
    decode_logits = vae.decode_logits

    def counting_decode_logits(z):
        rows.append(z.shape[0])
        return decode_logits(z)

    monkeypatch.setattr(vae, "decode_logits", counting_decode_logits)
    monkeypatch.setattr(likelihood_module, "MAX_DECODER_ROWS", 1000)
    estimate = log_likelihood(vae, torch.rand(250, 784), k=30, batch_size=100)
    assert estimate.shape == (250,)
    assert max(rows) <= 1000
    assert sum(rows) == 250 * 30  # every image got exactly k samples


def test_autoencoder_is_refused():
    with pytest.raises(TypeError, match="needs a VAE, got Autoencoder"):
        log_likelihood(Autoencoder(latent_dim=2, hidden_dim=4), torch.rand(2, 784), k=3)


@pytest.mark.parametrize("k", [0, -1, 2.5])
def test_bad_k_is_refused(k):
    with pytest.raises(ValueError, match="k .* positive integer"):
        log_likelihood(VAE(latent_dim=2, hidden_dim=4), torch.rand(2, 784), k=k)


def test_bad_image_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\) or \(N, 784\)"):
        log_likelihood(VAE(latent_dim=2, hidden_dim=4), torch.rand(2, 28, 28), k=3)


def test_restores_training_mode():
    vae = VAE(latent_dim=2, hidden_dim=4)
    vae.train()
    log_likelihood(vae, torch.rand(2, 784), k=2)
    assert vae.training


# ----------------------------------------------------------------------------------------------
# iwae_bound: log (1/k) sum_i exp(log_weights[i]) per image, against exact decimal arithmetic


def _decimal_log_mean_exp(column):
    """log of the mean of exp(w) over a list of floats, in 50-digit decimal arithmetic (no underflow)."""
    from decimal import Decimal, getcontext

    getcontext().prec = 50
    total = sum(Decimal(float(w)).exp() for w in column)
    return float((total / len(column)).ln())


@pytest.mark.parametrize("shift", [0.0, -100.0, -1000.0])
def test_iwae_bound_matches_exact_arithmetic(shift):
    log_weights = torch.randn(7, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 4 + shift
    expected = torch.tensor([_decimal_log_mean_exp(log_weights[:, n].tolist()) for n in range(5)], dtype=torch.float64)
    bound = iwae_bound(log_weights)
    assert bound.shape == (5,)
    assert torch.allclose(bound, expected, rtol=0, atol=1e-9)


def test_iwae_bound_stays_finite_in_float32_where_exp_underflows():
    log_weights = torch.full((10, 3), -120.0)  # exp(-120) is 0 in float32
    assert torch.exp(log_weights).sum() == 0
    assert torch.allclose(iwae_bound(log_weights), torch.full((3,), -120.0))


def test_iwae_bound_of_one_draw_is_that_draw():
    log_weights = torch.randn(1, 4)
    assert torch.equal(iwae_bound(log_weights), log_weights[0])


@pytest.mark.parametrize("bad", [torch.zeros(5), torch.zeros(0, 3), torch.zeros(2, 3, 4)])
def test_iwae_bound_refuses_other_shapes(bad):
    with pytest.raises(ValueError, match=r"\(k, N\)"):
        iwae_bound(bad)


def test_iwae_bound_refuses_a_list():
    with pytest.raises(TypeError, match="log_weights"):
        iwae_bound([[0.0]])
