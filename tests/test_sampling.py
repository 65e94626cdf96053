from statistics import NormalDist

import pytest
import torch

from vae_lesson import VAE, Autoencoder, encode_dataset, interpolate, latent_grid, latent_grid_coordinates, sample_prior


def tiny(cls, latent_dim=2, seed=0):
    torch.manual_seed(seed)
    return cls(latent_dim=latent_dim, hidden_dim=8)


def record_decoded_codes(monkeypatch, model):
    """Make model.decode return its input z, so a test can read back which codes were decoded."""
    monkeypatch.setattr(model, "decode", lambda z: z.clone())


@pytest.mark.parametrize("cls", [VAE, Autoencoder])
def test_sample_prior_shape_range_and_reproducibility(cls):
    model = tiny(cls, latent_dim=3)
    images = sample_prior(model, 5, generator=torch.Generator().manual_seed(0))
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    again = sample_prior(model, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, again)


def test_sample_prior_decodes_standard_normal_codes(monkeypatch):
    model = tiny(VAE, latent_dim=3)
    record_decoded_codes(monkeypatch, model)
    z = sample_prior(model, 4, generator=torch.Generator().manual_seed(9))
    assert torch.equal(z, torch.randn(4, 3, generator=torch.Generator().manual_seed(9)))


def test_latent_grid_coordinates_are_normal_quantiles():
    values = latent_grid_coordinates(7, low=0.05, high=0.95)
    # Reference from the standard library: NormalDist().inv_cdf at evenly spaced probabilities.
    expected = torch.tensor([NormalDist().inv_cdf(0.05 + i * 0.9 / 6) for i in range(7)])
    torch.testing.assert_close(values, expected, rtol=1e-6, atol=1e-6)
    assert values[3].abs() < 1e-6  # the middle of an odd grid is z = 0


def test_latent_grid_rows_run_from_high_to_low_z2_and_columns_from_low_to_high_z1(monkeypatch):
    n = 5
    model = tiny(VAE)
    record_decoded_codes(monkeypatch, model)
    z = latent_grid(model, n=n).reshape(n, n, 2)  # (row, column, [z1, z2])
    values = latent_grid_coordinates(n)
    for row in range(n):
        for col in range(n):
            assert z[row, col, 0] == values[col]  # z1 grows left to right
            assert z[row, col, 1] == values[n - 1 - row]  # z2 is largest in the top row
    assert z[0, 0, 1] > z[-1, 0, 1] and z[0, 0, 0] < z[0, -1, 0]


@pytest.mark.parametrize("cls", [VAE, Autoencoder])
def test_latent_grid_images(cls):
    images = latent_grid(tiny(cls), n=4)
    assert images.shape == (16, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1


def test_latent_grid_needs_a_2d_latent_space():
    with pytest.raises(ValueError, match="latent_dim=2, got latent_dim=3"):
        latent_grid(tiny(VAE, latent_dim=3))


@pytest.mark.parametrize("cls", [VAE, Autoencoder])
def test_interpolate_ends_at_the_reconstructions_of_the_means(cls):
    model = tiny(cls, latent_dim=3)
    x_a, x_b = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    path = interpolate(model, x_a, x_b, steps=5)
    assert path.shape == (5, 1, 28, 28)
    with torch.no_grad():
        codes = model.encode(torch.stack([x_a, x_b]))
        means = codes[0] if cls is VAE else codes  # the VAE's mean, not a sample
        ends = model.decode(means)
        middle = model.decode(means.mean(0, keepdim=True))
    torch.testing.assert_close(path[0], ends[0])
    torch.testing.assert_close(path[-1], ends[1])
    torch.testing.assert_close(path[2], middle[0])


def test_interpolate_accepts_flat_and_batched_single_images():
    model = tiny(VAE)
    x_a, x_b = torch.rand(2, 784)
    flat = interpolate(model, x_a, x_b, steps=3)
    batched = interpolate(model, x_a.reshape(1, 1, 28, 28), x_b.reshape(1, 1, 28, 28), steps=3)
    torch.testing.assert_close(flat, batched)


def test_interpolate_needs_two_steps():
    with pytest.raises(ValueError, match="steps must be at least 2"):
        interpolate(tiny(VAE), torch.rand(784), torch.rand(784), steps=1)


def test_encode_dataset_returns_the_means_for_a_vae_in_order():
    model = tiny(VAE, latent_dim=3)
    images = torch.rand(25, 1, 28, 28)
    latents = encode_dataset(model, images, batch_size=10)  # 10 + 10 + 5: batches must stay in order
    assert latents.shape == (25, 3) and latents.device.type == "cpu"
    with torch.no_grad():
        mu, _ = model.encode(images)
    torch.testing.assert_close(latents, mu)
    # Deterministic (no sampling): the same call gives the same bits. Compared at the same batch size,
    # because a matrix product of 25 rows and one of 10 + 10 + 5 may round differently (they do with
    # AVX-512 MKL kernels).
    assert torch.equal(encode_dataset(model, images, batch_size=10), latents)


def test_encode_dataset_returns_z_for_an_autoencoder():
    model = tiny(Autoencoder, latent_dim=3)
    images = torch.rand(7, 784)
    with torch.no_grad():
        torch.testing.assert_close(encode_dataset(model, images, batch_size=3), model.encode(images))
