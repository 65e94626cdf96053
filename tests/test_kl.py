import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from vae_lesson import kl_divergence, kl_monte_carlo
from vae_lesson.kl import gaussian_log_density


def reference_kl(mu, logvar):
    """torch.distributions' KL(N(mu, std^2) || N(0, 1)), summed over the last dimension."""
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return torch_kl(q, p).sum(-1)


def test_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = 2 * torch.randn(64, 20, generator=g)
    logvar = 3 * torch.randn(64, 20, generator=g)
    kl = kl_divergence(mu, logvar)
    assert kl.shape == (64,)
    torch.testing.assert_close(kl, reference_kl(mu, logvar), rtol=1e-5, atol=1e-5)


def test_zero_exactly_at_the_prior():
    assert torch.equal(kl_divergence(torch.zeros(3, 5), torch.zeros(3, 5)), torch.zeros(3))


def test_positive_away_from_the_prior():
    assert (kl_divergence(torch.tensor([[0.1, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, -0.1]])) > 0).all()


def test_finite_and_correct_for_logvar_from_minus_30_to_30():
    logvar = torch.linspace(-30, 30, 121).unsqueeze(1)
    mu = torch.full_like(logvar, 0.5)
    kl = kl_divergence(mu, logvar)
    assert torch.isfinite(kl).all()
    expected = reference_kl(mu.double(), logvar.double())  # float64: no overflow or cancellation
    torch.testing.assert_close(kl.double(), expected, rtol=1e-5, atol=1e-5)


def test_gaussian_log_density_matches_normal_log_prob():
    g = torch.Generator().manual_seed(1)
    z, mu, logvar = (torch.randn(7, 4, generator=g, dtype=torch.float64) for _ in range(3))
    expected = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar), expected)


def monte_carlo_standard_deviation(mu, logvar, n=200_000):
    """Standard deviation of one draw of log q(z) - log p(z), z ~ q, estimated with torch.distributions."""
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = q.sample((n,))
    return (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).std(0)


def test_monte_carlo_estimate_converges_to_the_closed_form():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    mu = torch.randn(200, 5, generator=g, dtype=torch.float64)
    logvar = torch.randn(200, 5, generator=g, dtype=torch.float64)
    exact = reference_kl(mu, logvar)
    sd = monte_carlo_standard_deviation(mu[:5], logvar[:5])
    mean_errors = []
    for n in (100, 10_000):
        estimate = kl_monte_carlo(mu, logvar, n, generator=torch.Generator().manual_seed(n))
        assert estimate.shape == (200,)
        error = (estimate - exact).abs()
        # Each of the first 5 rows within 5 standard errors of its closed form.
        assert (error[:5] < 5 * sd / n**0.5).all()
        mean_errors.append(error.mean())
    # The error shrinks like 1/sqrt(n): 100x the samples, ~10x smaller (averaged over 200 rows,
    # so the ratio itself is accurate to ~10%); require at least 5x.
    assert mean_errors[1] < mean_errors[0] / 5


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same shape"):
        kl_divergence(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        kl_monte_carlo(torch.zeros(2, 3), torch.zeros(2, 3), 0)
