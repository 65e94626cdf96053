import numpy as np
import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

import vae_lesson as vl
from vae_lesson.collapse import (
    active_units,
    encode_with_logvar,
    free_bits_kl,
    kl_per_dimension,
    latent_activity,
    warmup_beta,
)


def codes_with_spreads(spreads, n=5000, seed=0):
    """Means (n, len(spreads)) whose column d has standard deviation about spreads[d], and an offset."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, len(spreads), generator=g) * torch.tensor(spreads) + 3.0


def test_active_units_matches_numpy_covariance():
    mu = codes_with_spreads([0.0, 0.03, 0.05, 0.2, 1.0, 3.0])
    variances = np.cov(mu.numpy(), rowvar=False).diagonal()  # numpy: the variance over the data (rows)
    expected = int((variances > 0.01).sum())
    assert expected == 3  # 0.2, 1 and 3: std 0.05 is variance 0.0025, below the threshold
    assert active_units(mu) == expected
    assert type(active_units(mu)) is int
    np.testing.assert_allclose(latent_activity(mu).numpy(), variances, rtol=1e-4)


@pytest.mark.parametrize("threshold", [0.001, 0.01, 0.5, 2.0])
def test_active_units_threshold_and_numpy_input(threshold):
    mu = codes_with_spreads([0.02, 0.05, 0.2, 1.0, 3.0]).numpy()
    expected = int((np.var(mu, axis=0, ddof=1) > threshold).sum())
    assert active_units(mu, threshold=threshold) == expected


def test_an_offset_does_not_make_a_unit_active():
    mu = torch.zeros(100, 4)
    mu[:, 0] = 5.0  # far from the prior, but the same for every image: it carries nothing
    mu[:, 1] = torch.linspace(-1, 1, 100)
    assert active_units(mu) == 1


@pytest.mark.parametrize("bad", [torch.zeros(10), torch.zeros(1, 3), torch.zeros(2, 3, 4)])
def test_active_units_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="mu must have shape"):
        active_units(bad)


@pytest.mark.parametrize("threshold", [0, -0.1, "0.01", True])
def test_active_units_rejects_bad_thresholds(threshold):
    with pytest.raises(ValueError, match="threshold"):
        active_units(torch.randn(10, 2), threshold=threshold)


def test_kl_per_dimension_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mu = 2 * torch.randn(64, 7, generator=g, dtype=torch.float64)
    logvar = 2 * torch.randn(64, 7, generator=g, dtype=torch.float64)
    reference = torch_kl(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).mean(dim=0)
    per_dimension = kl_per_dimension(mu, logvar)
    assert per_dimension.shape == (7,)
    torch.testing.assert_close(per_dimension, reference)
    torch.testing.assert_close(per_dimension.sum(), vl.kl_divergence(mu, logvar).mean())


def test_kl_per_dimension_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mu and logvar"):
        kl_per_dimension(torch.zeros(4, 3), torch.zeros(4, 2))


def test_free_bits_floors_each_dimension_and_stops_its_gradient():
    g = torch.Generator().manual_seed(2)
    mu = torch.randn(32, 6, generator=g, dtype=torch.float64)
    mu[:, :3] *= 0.05  # three dimensions near the prior: KL far below the floor
    logvar = (0.1 * torch.randn(32, 6, generator=g, dtype=torch.float64)).requires_grad_()
    mu.requires_grad_()
    per_dimension = torch_kl(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).mean(dim=0).detach().numpy()
    floor = 0.25
    assert (per_dimension[:3] < floor).all() and (per_dimension[3:] > floor).all()
    loss = free_bits_kl(mu, logvar, floor)
    torch.testing.assert_close(loss.item(), float(np.maximum(per_dimension, floor).sum()))
    loss.backward()
    assert (mu.grad[:, :3] == 0).all() and (logvar.grad[:, :3] == 0).all()  # below the floor: free
    assert (mu.grad[:, 3:].abs().sum(dim=0) > 0).all()


def test_free_bits_zero_is_the_usual_kl():
    g = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randn(16, 5, generator=g,
                                                                                    dtype=torch.float64)
    torch.testing.assert_close(free_bits_kl(mu, logvar, 0.0), vl.kl_divergence(mu, logvar).mean())


@pytest.mark.parametrize("free_bits", [-0.5, None, "1"])
def test_free_bits_rejects_bad_values(free_bits):
    with pytest.raises(ValueError, match="free_bits"):
        free_bits_kl(torch.zeros(2, 2), torch.zeros(2, 2), free_bits)


def test_warmup_beta_rises_linearly_then_stays():
    assert [warmup_beta(step, 4) for step in range(7)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_beta(1, 10, beta=2.0) == pytest.approx(0.2)
    assert warmup_beta(1, 0) == 1.0 and warmup_beta(5, 0, beta=4.0) == 4.0
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_beta(1, -1)


def test_encode_with_logvar_matches_encode():
    torch.manual_seed(0)
    vae = vl.VAE(latent_dim=3, hidden_dim=16)
    images = torch.rand(25, 1, 28, 28)
    mu, logvar = encode_with_logvar(vae, images, batch_size=10)
    with torch.no_grad():
        expected_mu, expected_logvar = vae.encode(images)
    torch.testing.assert_close(mu, expected_mu)
    torch.testing.assert_close(logvar, expected_logvar)
    with pytest.raises(TypeError, match="needs a VAE"):
        encode_with_logvar(vl.Autoencoder(latent_dim=3, hidden_dim=16), images)
