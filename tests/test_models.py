import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vae_lesson import VAE, Autoencoder, build_model, set_output_bias_to_mean_image
from vae_lesson.models import flatten_images


class LectureVAE(nn.Module):
    """The source lecture's model, written out as it appears there (784-500-20, ReLU, sigmoid output)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 500)
        self.fc21 = nn.Linear(500, 20)
        self.fc22 = nn.Linear(500, 20)
        self.fc3 = nn.Linear(20, 500)
        self.fc4 = nn.Linear(500, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))


def copy_lecture_weights(lecture, vae):
    pairs = [(lecture.fc1, vae.encoder_hidden), (lecture.fc21, vae.to_mu), (lecture.fc22, vae.to_logvar),
             (lecture.fc3, vae.decoder.hidden), (lecture.fc4, vae.decoder.out)]
    with torch.no_grad():
        for source, target in pairs:
            target.weight.copy_(source.weight)
            target.bias.copy_(source.bias)


def n_parameters(model):
    return sum(p.numel() for p in model.parameters())


def test_default_vae_is_the_lecture_model_784_500_20():
    vae = VAE()
    assert (vae.latent_dim, vae.hidden_dim) == (20, 500)
    assert tuple(vae.encoder_hidden.weight.shape) == (500, 784)
    assert tuple(vae.to_mu.weight.shape) == (20, 500)
    assert tuple(vae.to_logvar.weight.shape) == (20, 500)
    assert tuple(vae.decoder.hidden.weight.shape) == (500, 20)
    assert tuple(vae.decoder.out.weight.shape) == (784, 500)
    assert n_parameters(vae) == n_parameters(LectureVAE()) == 815_824


def test_vae_computes_what_the_lecture_model_computes():
    torch.manual_seed(0)
    lecture, vae = LectureVAE(), VAE()
    copy_lecture_weights(lecture, vae)
    x = torch.rand(5, 1, 28, 28)
    mu, logvar = vae.encode(x)
    lecture_mu, lecture_logvar = lecture.encode(x.view(-1, 784))
    torch.testing.assert_close(mu, lecture_mu)
    torch.testing.assert_close(logvar, lecture_logvar)
    z = torch.randn(5, 20)
    torch.testing.assert_close(vae.decode(z).reshape(5, 784), lecture.decode(z))


def test_autoencoder_shares_the_building_blocks():
    ae, vae = Autoencoder(), VAE()
    assert type(ae.encoder_hidden) is type(vae.encoder_hidden) and type(ae.decoder) is type(vae.decoder)
    # Same encoder/decoder sizes; the AE has one head (z) where the VAE has two (mu, logvar).
    assert n_parameters(vae) - n_parameters(ae) == 500 * 20 + 20


@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (6, 784)])
def test_shapes(shape):
    x = torch.rand(shape)
    vae, ae = VAE(latent_dim=3, hidden_dim=16), Autoencoder(latent_dim=3, hidden_dim=16)
    logits, mu, logvar = vae(x)
    assert logits.shape == (6, 784) and mu.shape == (6, 3) and logvar.shape == (6, 3)
    logits, z = ae(x)
    assert logits.shape == (6, 784) and z.shape == (6, 3)
    assert ae.encode(x).shape == (6, 3)
    for model in (vae, ae):
        assert model.decode_logits(torch.zeros(6, 3)).shape == (6, 784)
        assert model.decode(torch.zeros(6, 3)).shape == (6, 1, 28, 28)
        assert model.loss(x).total.dim() == 0


@pytest.mark.parametrize("shape", [(6, 28, 28), (6, 1, 28, 27), (6, 3, 28, 28), (784,), (6, 783), (1, 6, 784)])
def test_bad_shapes_raise_naming_the_expected_shapes(shape):
    for model in (VAE(latent_dim=2, hidden_dim=4), Autoencoder(latent_dim=2, hidden_dim=4)):
        with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 28, 28\) or \(N, 784\)"):
            model(torch.rand(shape))


def test_flatten_images():
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(flatten_images(x), x.reshape(3, 784))
    assert flatten_images(x.reshape(3, 784)).shape == (3, 784)


def test_decode_gives_probabilities_even_for_extreme_codes():
    torch.manual_seed(0)
    vae = VAE(latent_dim=2, hidden_dim=8)
    z = torch.tensor([[1e4, -1e4], [-1e4, 1e4], [0.0, 0.0]])
    images = vae.decode(z)
    assert images.min() >= 0 and images.max() <= 1
    # Far-out codes saturate some pixels, so the bounds are really exercised.
    assert (images == 0).any() or (images == 1).any()
    torch.testing.assert_close(images.reshape(3, 784), torch.sigmoid(vae.decode_logits(z)))


def test_vae_samples_z_with_the_given_generator():
    torch.manual_seed(0)
    vae = VAE(latent_dim=2, hidden_dim=8)
    x = torch.rand(4, 784)
    first = vae(x, generator=torch.Generator().manual_seed(1))[0]
    again = vae(x, generator=torch.Generator().manual_seed(1))[0]
    other = vae(x, generator=torch.Generator().manual_seed(2))[0]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # z is mu + std * eps with eps from the generator.
    mu, logvar = vae.encode(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(first, vae.decode_logits(mu + torch.exp(0.5 * logvar) * eps))


def test_autoencoder_is_deterministic():
    ae = Autoencoder(latent_dim=2, hidden_dim=8)
    x = torch.rand(4, 784)
    assert torch.equal(ae(x)[0], ae(x)[0])


def test_config_and_build_model_round_trip():
    for model in (VAE(latent_dim=3, hidden_dim=7), Autoencoder(latent_dim=5, hidden_dim=9)):
        rebuilt = build_model(model.config)
        assert type(rebuilt) is type(model)
        assert rebuilt.config == model.config
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
               {k: v.shape for k, v in model.state_dict().items()}
    assert VAE().config == {"kind": "vae", "latent_dim": 20, "hidden_dim": 500}
    assert Autoencoder().kind == "autoencoder"


def test_bad_configurations_raise():
    with pytest.raises(ValueError, match="unknown model kind 'gan'"):
        build_model({"kind": "gan", "latent_dim": 2, "hidden_dim": 4})
    with pytest.raises(ValueError, match="must be positive"):
        VAE(latent_dim=0)
    with pytest.raises(ValueError, match="must be positive"):
        Autoencoder(hidden_dim=-1)


# ----- the course's start: the decoder at the mean image -----

def _real_digits(n=500):
    from vae_lesson.data import offline_sample

    return offline_sample("train")[0][:n]


@pytest.mark.parametrize("cls", [VAE, Autoencoder])
def test_output_bias_is_the_logit_of_the_clamped_mean_image(cls):
    images = _real_digits()
    torch.manual_seed(0)
    model = set_output_bias_to_mean_image(cls(latent_dim=2, hidden_dim=16), images)
    # The mean image computed separately, in float64 with numpy, clamped as documented.
    mean = np.clip(images.double().numpy().reshape(len(images), 784).mean(axis=0), 1e-3, 1 - 1e-3)
    started = torch.sigmoid(model.decoder.out.bias.detach().double()).numpy()
    np.testing.assert_allclose(started, mean, rtol=1e-5, atol=1e-7)
    assert (mean == 1e-3).any()  # MNIST's border is black in all 500: the clamp is exercised


def test_an_untrained_decoder_then_draws_the_mean_image_for_any_z():
    images = _real_digits()
    model = set_output_bias_to_mean_image(VAE(latent_dim=2, hidden_dim=16), images)
    with torch.no_grad():
        model.decoder.out.weight.zero_()  # leave the bias alone: decode(z) = sigmoid(bias)
    drawn = model.decode(torch.randn(3, 2))
    expected = images.mean(dim=0).clamp(1e-3, 1 - 1e-3)
    for image in drawn:
        torch.testing.assert_close(image, expected, rtol=1e-5, atol=1e-6)


def test_the_mean_image_start_lowers_the_untrained_loss():
    from vae_lesson import evaluate

    images = _real_digits()
    torch.manual_seed(0)
    default = VAE(latent_dim=2, hidden_dim=16)
    started = set_output_bias_to_mean_image(copy.deepcopy(default), images)
    default_loss, started_loss = evaluate(default, images).total, evaluate(started, images).total
    # Grey noise (every pixel ~0.5) costs ~784 * log 2 = 543 nats; the mean image far less.
    assert default_loss > 500 and started_loss < 0.5 * default_loss


def test_mean_image_start_refuses_bad_images():
    model = VAE(latent_dim=2, hidden_dim=16)
    with pytest.raises(ValueError, match=r"\[0, 1\].*from 0 to 255.*divide raw 0-255 images by 255"):
        set_output_bias_to_mean_image(model, torch.arange(784.0).reshape(1, 784) % 256)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 28, 28\) or \(N, 784\)"):
        set_output_bias_to_mean_image(model, torch.rand(5, 28, 28))
    with pytest.raises(ValueError, match="at least one image"):
        set_output_bias_to_mean_image(model, torch.rand(0, 784))
