"""vae_lesson.checks.vae_model: a catalogue of student VAE classes, each wrong one named for what it is.

Every buggy class in MISTAKES makes one known mistake and must fail with its own diagnosis (a stable
code plus a phrase of the message the student reads); every variant in CORRECT, written the ways
students really write them, must pass.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal

import vae_lesson
from vae_lesson.checks import check_vae_model

from check_helpers import assert_fails


class LessonVAE(nn.Module):
    """The notebook's solution: separate nn.Linear layers, F.relu, view."""

    def __init__(self, latent_dim=20, hidden_dim=500):
        super().__init__()
        self.hidden = nn.Linear(784, hidden_dim)
        self.to_mu = nn.Linear(hidden_dim, latent_dim)
        self.to_logvar = nn.Linear(hidden_dim, latent_dim)
        self.decoder_hidden = nn.Linear(latent_dim, hidden_dim)
        self.decoder_out = nn.Linear(hidden_dim, 784)

    def encode(self, images):
        h = F.relu(self.hidden(images.view(len(images), -1)))
        return self.to_mu(h), self.to_logvar(h)

    def sample(self, mu, logvar):
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def scale(self, logvar):
        return torch.exp(0.5 * logvar)

    def forward(self, images):
        mu, logvar = self.encode(images)
        z = mu + self.scale(logvar) * torch.randn_like(mu)
        return self.decode_logits(z), mu, logvar

    def decode_logits(self, z):
        return self.decoder_out(F.relu(self.decoder_hidden(z)))


class SequentialVAE(nn.Module):
    """nn.Sequential with nn.ReLU and nn.Flatten; one Linear with 2 * latent_dim outputs, split."""

    def __init__(self, latent_dim=20, hidden_dim=500):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden_dim), nn.ReLU(),
                                     nn.Linear(hidden_dim, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 784))

    def encode(self, images):
        mu, logvar = self.encoder(images).chunk(2, dim=1)
        return mu, logvar

    def forward(self, images):
        mu, logvar = self.encode(images)
        return self.decoder(vae_lesson.reparameterize(mu, logvar)), mu, logvar


class FlattenRsampleVAE(LessonVAE):
    """flatten(1), torch.distributions' rsample."""

    def encode(self, images):
        h = torch.relu(self.hidden(images.flatten(1)))
        return self.to_mu(h), self.to_logvar(h)

    def forward(self, images):
        mu, logvar = self.encode(images)
        z = Normal(mu, torch.exp(0.5 * logvar)).rsample()
        return self.decode_logits(z), mu, logvar


class TensorSplitVAE(LessonVAE):
    """One head of 2 * latent_dim outputs, sliced; std from exp(logvar).sqrt(); reshape."""

    def __init__(self, latent_dim=20, hidden_dim=500):
        nn.Module.__init__(self)
        self.latent_dim = latent_dim
        self.hidden = nn.Linear(784, hidden_dim)
        self.heads = nn.Linear(hidden_dim, 2 * latent_dim)
        self.decoder_hidden = nn.Linear(latent_dim, hidden_dim)
        self.decoder_out = nn.Linear(hidden_dim, 784)

    def encode(self, images):
        out = self.heads(F.relu(self.hidden(images.reshape(-1, 784))))
        return out[:, :self.latent_dim], out[:, self.latent_dim:]

    def scale(self, logvar):
        return logvar.exp().sqrt()


class EncoderDecoderModulesVAE(nn.Module):
    """Separate Encoder and Decoder submodules, eps with torch.randn(mu.shape)."""

    class Encoder(nn.Module):
        def __init__(self, latent_dim, hidden_dim):
            super().__init__()
            self.fc = nn.Linear(784, hidden_dim)
            self.fc_mu = nn.Linear(hidden_dim, latent_dim)
            self.fc_logvar = nn.Linear(hidden_dim, latent_dim)

        def forward(self, x):
            h = F.relu(self.fc(torch.flatten(x, start_dim=1)))
            return self.fc_mu(h), self.fc_logvar(h)

    class Decoder(nn.Module):
        def __init__(self, latent_dim, hidden_dim):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(latent_dim, hidden_dim), nn.Linear(hidden_dim, 784)

        def forward(self, z):
            return self.fc2(F.relu(self.fc1(z)))

    def __init__(self, latent_dim=20, hidden_dim=500):
        super().__init__()
        self.encoder = self.Encoder(latent_dim, hidden_dim)
        self.decoder = self.Decoder(latent_dim, hidden_dim)

    def encode(self, images):
        return self.encoder(images)

    def forward(self, images):
        mu, logvar = self.encode(images)
        std = torch.exp(logvar / 2)
        return self.decoder(mu + std * torch.randn(mu.shape)), mu, logvar


class TanhVAE(LessonVAE):
    """A tanh hidden layer in the encoder: a different nonlinearity is still a VAE."""

    def encode(self, images):
        h = torch.tanh(self.hidden(images.view(images.shape[0], 784)))
        return self.to_mu(h), self.to_logvar(h)


CORRECT = {"lesson": LessonVAE, "sequential_chunk": SequentialVAE, "flatten_rsample": FlattenRsampleVAE,
           "one_head_sliced": TensorSplitVAE, "encoder_decoder_modules": EncoderDecoderModulesVAE, "tanh": TanhVAE}


def _variant(name, **methods):
    """A LessonVAE subclass with some methods replaced: one mistake each."""
    return type(name, (LessonVAE,), methods)


def _forward_with(sample):
    def forward(self, images):
        mu, logvar = self.encode(images)
        return self.decode_logits(sample(mu, logvar)), mu, logvar
    return forward


def _encode_with(head):
    def encode(self, images):
        h = F.relu(self.hidden(images.view(len(images), -1)))
        return self.to_mu(h), head(self, h)
    return encode


class NoFlatten(LessonVAE):
    def encode(self, images):
        h = F.relu(self.hidden(images))
        return self.to_mu(h), self.to_logvar(h)


class NotAModule:
    def __init__(self, latent_dim=20, hidden_dim=500):
        pass


class SeededForward(LessonVAE):
    def forward(self, images):
        torch.manual_seed(0)
        return super().forward(images)


class FixedNoise(LessonVAE):
    def __init__(self, latent_dim=20, hidden_dim=500):
        super().__init__(latent_dim, hidden_dim)
        self.register_buffer("eps", torch.randn(1, latent_dim))

    def forward(self, images):
        mu, logvar = self.encode(images)
        return self.decode_logits(mu + torch.exp(0.5 * logvar) * self.eps), mu, logvar


class ExtraLayer(LessonVAE):
    def __init__(self, latent_dim=20, hidden_dim=500):
        super().__init__(latent_dim, hidden_dim)
        self.unused = nn.Linear(hidden_dim, hidden_dim)


class TwoHiddenLayers(LessonVAE):
    def __init__(self, latent_dim=20, hidden_dim=500):
        super().__init__(latent_dim, hidden_dim)
        self.hidden2 = nn.Linear(hidden_dim, hidden_dim)

    def encode(self, images):
        h = F.relu(self.hidden2(F.relu(self.hidden(images.view(len(images), -1)))))
        return self.to_mu(h), self.to_logvar(h)


class SmallDefaults(LessonVAE):
    def __init__(self, latent_dim=2, hidden_dim=500):
        super().__init__(latent_dim, hidden_dim)


class FunctionalDecoderNoSampling(LessonVAE):
    """Decodes mu through F.linear: no nn.Linear receives z, so the check sees only the logits."""

    def decode_logits(self, z):
        h = F.relu(F.linear(z, self.decoder_hidden.weight, self.decoder_hidden.bias))
        return F.linear(h, self.decoder_out.weight, self.decoder_out.bias)

    def forward(self, images):
        mu, logvar = self.encode(images)
        return self.decode_logits(mu), mu, logvar


class DetachedLogvar(LessonVAE):
    def encode(self, images):
        mu, logvar = super().encode(images)
        return mu, logvar.detach()


MISTAKES = [
    ("class", NotAModule, "not_a_module", "not an nn.Module"),
    ("class", LessonVAE(3, 16), "instance_not_class", "already built"),
    ("encode", _variant("EncodeOne", encode=lambda self, x: F.relu(self.hidden(x.view(len(x), -1)))), "encode_not_pair", "the pair (mu, logvar)"),
    ("encode", _variant("EncodeTransposed", encode=lambda self, x: tuple(t.T for t in LessonVAE.encode(self, x))), "encode_wrong_shape", "(3, 8)"),
    ("forward", _variant("ForwardPair", forward=lambda self, x: LessonVAE.forward(self, x)[:2]), "forward_not_triple", "(logits, mu, logvar)"),
    ("forward", _variant("ForwardImages", forward=lambda self, x: (LessonVAE.forward(self, x)[0].view(-1, 1, 28, 28), *LessonVAE.forward(self, x)[1:])), "logits_not_flat", "flat rows"),
    ("forward", _variant("ForwardZ", forward=lambda self, x: (LessonVAE.forward(self, x)[0], *self.encode(x), 0)[:3][::-1]), "forward_wrong_shape", "should be"),
    ("output", _variant("Sigmoid", decode_logits=lambda self, z: torch.sigmoid(LessonVAE.decode_logits(self, z))), "returns_probabilities", "not logits"),
    ("heads", _variant("OneHead", encode=_encode_with(lambda self, h: self.to_mu(h))), "logvar_is_mu", "one head serves for both"),
    ("logvar", _variant("ReluLogvar", encode=_encode_with(lambda self, h: F.relu(self.to_logvar(h)))), "logvar_relu", "sigma = exp(logvar / 2) >= 1"),
    ("logvar", _variant("SoftplusLogvar", encode=_encode_with(lambda self, h: F.softplus(self.to_logvar(h)))), "logvar_positive", "never more certain"),
    ("logvar", _variant("ExpLogvar", encode=_encode_with(lambda self, h: torch.exp(self.to_logvar(h)))), "logvar_positive", "sigma < 1"),
    ("noise", _variant("NoSampling", forward=_forward_with(lambda mu, logvar: mu)), "z_is_mu", "never samples z"),
    ("noise", SeededForward, "noise_seeded", "set its own seed"),
    ("noise", FixedNoise, "noise_fixed", "drawn once"),
    ("noise", _variant("SharedNoise", forward=_forward_with(lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(1, mu.shape[1]))), "noise_shared_by_batch", "whole batch"),
    ("noise", _variant("ColumnNoise", forward=_forward_with(lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(len(mu), 1))), "noise_shared_by_dimensions", "every latent dimension"),
    ("noise", _variant("VarianceScale", scale=lambda self, lv: torch.exp(lv)), "std_is_variance", "variance sigma^2"),
    ("noise", _variant("NoScale", scale=lambda self, lv: 1.0), "sigma_missing", "not scaled by sigma"),
    ("noise", _variant("UniformNoise", forward=_forward_with(lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.rand_like(mu))), "noise_not_standard_normal", "uniform: "),
    ("noise", FunctionalDecoderNoSampling, "no_fresh_noise", "same logits on every call"),
    ("structure", ExtraLayer, "parameter_unused", "unused.weight"),
    ("structure", DetachedLogvar, "parameter_unused", "to_logvar.weight"),
    ("structure", TwoHiddenLayers, "parameter_count", "lecture's layers have"),
    ("structure", SmallDefaults, "wrong_defaults", "784-500-20"),
]


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_vae_model_passes(name):
    result = check_vae_model(CORRECT[name])
    assert result.passed, str(result)


@pytest.mark.parametrize("issue, cls, diagnosis, phrase", MISTAKES, ids=[m[2] + "-" + str(i) for i, m in enumerate(MISTAKES)])
def test_vae_model_mistake_is_named(issue, cls, diagnosis, phrase):
    assert_fails(check_vae_model(cls), diagnosis, phrase)


def test_vae_model_without_flattening_explains_the_error():
    result = check_vae_model(NoFlatten)
    assert result.status == "error" and "images.flatten(1)" in result.hint, result


def test_vae_model_stub_is_not_done():
    class Stub(nn.Module):
        def __init__(self, latent_dim=20, hidden_dim=500):
            super().__init__()
            raise NotImplementedError("Replace this line with your code")

    assert check_vae_model(Stub).diagnosis == "not_done"


def test_vae_model_check_leaves_the_random_state_alone():
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    check_vae_model(LessonVAE)
    assert torch.equal(torch.random.get_rng_state(), before)
