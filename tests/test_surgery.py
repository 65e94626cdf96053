import math
import platform
import subprocess
import sys

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

import vae_lesson as vl
from vae_lesson.surgery import aggregate_log_density, elbo_surgery


def random_posteriors(n, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = 1.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    logvar = -3 * torch.rand(n, d, generator=g, dtype=torch.float64)  # sigma from 0.22 to 1
    return mu, logvar


def mixture(mu, logvar):
    """torch.distributions' uniform mixture of the diagonal Gaussians: the reference q(z)."""
    components = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    return MixtureSameFamily(Categorical(logits=torch.zeros(mu.shape[0], dtype=mu.dtype)), components)


def test_aggregate_log_density_matches_torch_mixture():
    mu, logvar = random_posteriors(40, d=3)
    z = torch.randn(500, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    torch.testing.assert_close(aggregate_log_density(z, mu, logvar), mixture(mu, logvar).log_prob(z))


def test_surgery_matches_brute_force_integration_on_a_2d_grid():
    mu, logvar = random_posteriors(30)
    # Riemann sums on a fine grid that holds all but a negligible tail of every Gaussian.
    axis = torch.linspace(-9, 9, 721, dtype=torch.float64)
    cell = (axis[1] - axis[0]) ** 2
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)
    log_q = mixture(mu, logvar).log_prob(grid)
    q = log_q.exp()
    assert (q.sum() * cell).item() == pytest.approx(1.0, abs=1e-6)
    log_prior = Independent(Normal(torch.zeros(2, dtype=torch.float64), 1.0), 1).log_prob(grid)
    marginal_kl = ((q * (log_q - log_prior)).sum() * cell).item()
    # I(x; z) = mean_n KL(q(z|x_n) || q(z)), each KL integrated on the same grid
    log_qn = Normal(mu[:, None, :], torch.exp(0.5 * logvar)[:, None, :]).log_prob(grid).sum(-1)  # (N, grid)
    mutual_information = ((log_qn.exp() * (log_qn - log_q)).sum(dim=1) * cell).mean().item()

    terms = elbo_surgery(mu, logvar, samples_per_code=4000, generator=torch.Generator().manual_seed(2))
    assert terms.mutual_information == pytest.approx(mutual_information, abs=0.02)
    assert terms.marginal_kl == pytest.approx(marginal_kl, abs=0.02)
    assert mutual_information + marginal_kl == pytest.approx(terms.average_kl, abs=1e-4)


def test_parts_add_up_to_the_closed_form_average_kl():
    mu, logvar = random_posteriors(200, d=5, seed=3)
    terms = elbo_surgery(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert terms.average_kl == pytest.approx(vl.kl_divergence(mu, logvar).mean().item(), rel=1e-12)
    assert terms.mutual_information + terms.marginal_kl == pytest.approx(terms.average_kl, rel=1e-12)
    assert 0 < terms.mutual_information < math.log(200)
    assert terms.marginal_kl > 0


def test_gaussian_toy_with_a_closed_form():
    # Codes mu_n from N(0, a^2 I) (whitened: sample mean 0, covariance exactly a^2 I) and q(z|x_n) = N(mu_n, s^2 I):
    # q(z) is close to N(0, (a^2 + s^2) I), so I = D/2 log(1 + a^2/s^2) and KL(q(z)||p) is Gaussian-to-Gaussian.
    n, d, a, s = 4000, 2, 1.0, 0.6
    mu = torch.randn(n, d, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    mu = mu - mu.mean(dim=0)
    mu = a * mu @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(mu.T, correction=0))).T
    logvar = torch.full_like(mu, math.log(s * s))
    terms = elbo_surgery(mu, logvar, samples_per_code=5, generator=torch.Generator().manual_seed(5))
    v = a * a + s * s
    assert terms.mutual_information == pytest.approx(d / 2 * math.log(1 + a * a / (s * s)), abs=0.02)
    assert terms.marginal_kl == pytest.approx(d / 2 * (v - 1 - math.log(v)), abs=0.02)


def test_separated_codes_carry_log_n_nats():
    # Codes far apart with tiny sigma: the code names the image, I(x; z) = log N, its maximum.
    side = torch.arange(7, dtype=torch.float64) * 10
    mu = torch.stack(torch.meshgrid(side, side, indexing="ij"), dim=-1).reshape(-1, 2)
    logvar = torch.full_like(mu, math.log(0.01 ** 2))
    terms = elbo_surgery(mu, logvar, generator=torch.Generator().manual_seed(6))
    assert terms.mutual_information == pytest.approx(math.log(49), abs=1e-6)  # float64 rounding at sigma = 0.01


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="mu and logvar"):
        elbo_surgery(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="samples_per_code"):
        elbo_surgery(torch.zeros(5, 2), torch.zeros(5, 2), samples_per_code=0)
    with pytest.raises(ValueError, match="finite"):
        elbo_surgery(torch.full((5, 2), float("nan")), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="z must be"):
        aggregate_log_density(torch.zeros(3, 3), torch.zeros(5, 2), torch.zeros(5, 2))


# Run in a fresh interpreter: glibc told to serve every allocation under 64 MB from its heap (mallopt
# M_MMAP_THRESHOLD), as it does on its own once a program has freed a large block. There, new
# (points x codes) temporaries in every chunk let the process grow far past them on some runs (lesson
# 8's kernel by about 0.8 GB). The loop now works in one buffer of 200 x 10,000 float64 (16 MB).
MEMORY_PROBE = """
import ctypes, torch
from vae_lesson.surgery import aggregate_log_density
ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024 * 1024)  # M_MMAP_THRESHOLD
status = lambda key: int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(key)))
g = torch.Generator().manual_seed(0)
mu, logvar = torch.randn(10_000, 2, generator=g), torch.full((10_000, 2), -2.0)
z = torch.randn(10_000, 2, generator=g)
aggregate_log_density(z[:10], mu, logvar)      # start torch's thread pool and libraries first
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
before = status("VmRSS:")
aggregate_log_density(z, mu, logvar)
print((status("VmHWM:") - before) // 1024)
"""


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
                    reason="mallopt and /proc/self/clear_refs are glibc and Linux")
def test_aggregate_log_density_works_in_one_buffer_however_many_chunks():
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, check=True)
    growth_mb = int(result.stdout.split()[-1])
    assert growth_mb < 50, f"aggregate_log_density on 10,000 points and codes raised the peak memory by {growth_mb} MB"
