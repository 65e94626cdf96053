import math

import pytest
import torch
from torch.distributions import Normal

from vae_lesson import reparameterize


def mu_logvar(shape=(4, 3), dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype), torch.randn(shape, generator=g, dtype=dtype)


def test_equals_normal_rsample_given_the_same_seed():
    mu, logvar = mu_logvar()
    torch.manual_seed(3)
    expected = Normal(mu, torch.exp(0.5 * logvar)).rsample()
    actual = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_uses_the_noise_it_is_given():
    mu, logvar = mu_logvar(dtype=torch.float64)
    eps = torch.randn(mu.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    # Independent route to the same sample: push eps through N(0,1)'s CDF and N(mu, std)'s inverse CDF.
    expected = Normal(mu, torch.exp(0.5 * logvar)).icdf(Normal(0.0, 1.0).cdf(eps))
    torch.testing.assert_close(reparameterize(mu, logvar, noise=eps), expected, rtol=1e-7, atol=1e-7)


def test_std_is_exp_half_logvar_not_exp_logvar():
    # logvar = log(4) means variance 4 and standard deviation 2.
    z = reparameterize(torch.zeros(1), torch.tensor([math.log(4.0)]), noise=torch.ones(1))
    assert z.item() == pytest.approx(2.0)


def test_same_generator_seed_same_sample_and_fresh_noise_otherwise():
    mu, logvar = mu_logvar()
    a = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(5))
    b = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(5))
    c = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_gradcheck_with_fixed_noise():
    mu, logvar = mu_logvar(dtype=torch.float64)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    eps = torch.randn(mu.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.autograd.gradcheck(lambda m, lv: reparameterize(m, lv, noise=eps), (mu, logvar))


def test_gradients_reach_mu_and_logvar_with_the_closed_form_values():
    mu, logvar = mu_logvar(dtype=torch.float64)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    eps = torch.randn(mu.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    reparameterize(mu, logvar, noise=eps).sum().backward()
    # dz/dmu = 1, dz/dlogvar = 0.5 * exp(0.5 * logvar) * eps
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    torch.testing.assert_close(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps)


def test_sample_mean_and_variance_match_mu_and_exp_logvar():
    n = 200_000
    mu = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
    logvar = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    z = reparameterize(mu.expand(n, 3), logvar.expand(n, 3), generator=torch.Generator().manual_seed(0))
    variance = logvar.exp()
    # Tolerance: 5 standard errors. For a Gaussian, the sample mean's standard error is
    # sqrt(var / n) and the sample variance's is var * sqrt(2 / (n - 1)); with n = 200,000 that
    # is about 0.2-0.6% of the standard deviation and 0.3% of the variance.
    assert ((z.mean(0) - mu).abs() < 5 * torch.sqrt(variance / n)).all()
    assert ((z.var(0) - variance).abs() < 5 * variance * math.sqrt(2 / (n - 1))).all()


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="same shape"):
        reparameterize(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="noise must have the shape of mu"):
        reparameterize(torch.zeros(4, 3), torch.zeros(4, 3), noise=torch.zeros(3))
