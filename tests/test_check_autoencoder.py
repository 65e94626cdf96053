"""vae_lesson.checks.autoencoder: a catalogue of student autoencoders, each wrong one named for what it is.

Every class in MISTAKES makes one known mistake and must fail with its own diagnosis (a stable code
plus a phrase of the message the student reads); every class in CORRECT, written the ways students
really write them, must pass.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vae_lesson.checks import check_autoencoder

from check_helpers import assert_fails


# ----------------------------------------------------------------------------------------------
# Correct autoencoders


class SequentialAE(nn.Module):
    """nn.Sequential halves, nn.Flatten inside the encoder, nn.ReLU."""

    def __init__(self, latent_dim=2, hidden_dim=500):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden_dim), nn.ReLU(),
                                     nn.Linear(hidden_dim, latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 784))

    def forward(self, images):
        z = self.encoder(images)
        return self.decoder(z), z


class SeparateLayersAE(nn.Module):
    """Four separate nn.Linear attributes, F.relu, view."""

    def __init__(self, latent_dim=2, hidden_dim=500):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, latent_dim)
        self.fc3 = nn.Linear(latent_dim, hidden_dim)
        self.fc4 = nn.Linear(hidden_dim, 784)

    def forward(self, images):
        x = images.view(images.size(0), -1)
        z = self.fc2(F.relu(self.fc1(x)))
        return self.fc4(F.relu(self.fc3(z))), z


class EncodeDecodeAE(nn.Module):
    """encode/decode methods, torch.relu, flatten(1)."""

    def __init__(self, latent_dim=2, hidden_dim=500):
        super().__init__()
        self.enc_hidden, self.enc_out = nn.Linear(784, hidden_dim), nn.Linear(hidden_dim, latent_dim)
        self.dec_hidden, self.dec_out = nn.Linear(latent_dim, hidden_dim), nn.Linear(hidden_dim, 784)

    def encode(self, images):
        return self.enc_out(torch.relu(self.enc_hidden(images.flatten(1))))

    def decode(self, z):
        return self.dec_out(torch.relu(self.dec_hidden(z)))

    def forward(self, images):
        z = self.encode(images)
        return self.decode(z), z


class ModuleListTanhAE(nn.Module):
    """nn.ModuleList, tanh as the nonlinearity, reshape(-1, 784)."""

    def __init__(self, latent_dim=2, hidden_dim=500):
        super().__init__()
        sizes = [784, hidden_dim, latent_dim, hidden_dim, 784]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, images):
        h = torch.tanh(self.layers[0](images.reshape(-1, 784)))
        z = self.layers[1](h)
        return self.layers[3](torch.tanh(self.layers[2](z))), z


class LeakyKeywordAE(nn.Module):
    """LeakyReLU, nn.Unflatten-free decoder, keyword-only construction of the layers, einops-free view(-1, 28*28)."""

    def __init__(self, latent_dim=2, hidden_dim=500):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(in_features=28 * 28, out_features=hidden_dim), nn.LeakyReLU(0.1),
                                     nn.Linear(in_features=hidden_dim, out_features=latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.LeakyReLU(0.1),
                                     nn.Linear(hidden_dim, 28 * 28))

    def forward(self, images):
        z = self.encoder(images.view(-1, 28 * 28))
        logits = self.decoder(z)
        return logits, z


def _course_subclass():
    import vae_lesson as vl

    class CourseAE(vl.Autoencoder):
        """The course's own model, with the exercise's defaults."""

        def __init__(self, latent_dim=2, hidden_dim=500):
            super().__init__(latent_dim=latent_dim, hidden_dim=hidden_dim)

    return CourseAE


CORRECT = {
    "sequential_flatten_relu": SequentialAE,
    "separate_linear_F_relu_view": SeparateLayersAE,
    "encode_decode_torch_relu_flatten": EncodeDecodeAE,
    "modulelist_tanh_reshape": ModuleListTanhAE,
    "leaky_relu_keywords": LeakyKeywordAE,
    "course_autoencoder_subclass": _course_subclass(),
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_autoencoder_passes(name):
    result = check_autoencoder(CORRECT[name])
    assert result.passed, str(result)


# ----------------------------------------------------------------------------------------------
# Wrong autoencoders: each a small change to SequentialAE or SeparateLayersAE


def _sequential(encoder, decoder, flatten=True, out=None):
    """A class like SequentialAE built from layer factories; `out(logits, z)` changes what forward returns."""

    class AE(nn.Module):
        def __init__(self, latent_dim=2, hidden_dim=500):
            super().__init__()
            self.encoder = nn.Sequential(*encoder(latent_dim, hidden_dim))
            self.decoder = nn.Sequential(*decoder(latent_dim, hidden_dim))

        def forward(self, images):
            z = self.encoder(images.flatten(1) if flatten else images)
            logits = self.decoder(z)
            return (logits, z) if out is None else out(logits, z)

    return AE


def _encoder(latent, hidden):
    return [nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, latent)]


def _decoder(latent, hidden):
    return [nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 784)]


class PlainListAE(nn.Module):
    def __init__(self, latent_dim=2, hidden_dim=500):
        super().__init__()
        self.layers = [nn.Linear(784, hidden_dim), nn.Linear(hidden_dim, latent_dim),
                       nn.Linear(latent_dim, hidden_dim), nn.Linear(hidden_dim, 784)]  # a plain list: not registered

    def forward(self, images):
        a, b, c, d = self.layers
        z = b(F.relu(a(images.flatten(1))))
        return d(F.relu(c(z))), z


class HardCodedAE(SeparateLayersAE):
    def __init__(self, latent_dim=2, hidden_dim=500):
        super().__init__(2, 500)


class NoSuperInitAE(nn.Module):
    def __init__(self, latent_dim=2, hidden_dim=500):
        self.fc1 = nn.Linear(784, hidden_dim)

    def forward(self, images):
        return self.fc1(images)


class DetachedCodeAE(SeparateLayersAE):
    def forward(self, images):
        z = self.fc2(F.relu(self.fc1(images.view(len(images), -1))))
        return self.fc4(F.relu(self.fc3(z.detach()))), z


class WrongDefaultsAE(SeparateLayersAE):
    def __init__(self, latent_dim=20, hidden_dim=500):
        super().__init__(latent_dim, hidden_dim)


class SwappedArgumentsAE(SeparateLayersAE):
    def __init__(self, hidden_dim=500, latent_dim=2):
        super().__init__(latent_dim, hidden_dim)


def _linear_encoder(latent, hidden):
    return [nn.Linear(784, hidden), nn.Linear(hidden, latent)]


def _linear_decoder(latent, hidden):
    return [nn.Linear(latent, hidden), nn.Linear(hidden, 784)]


def _hidden_three(latent, hidden):
    return [nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, latent)]


MISTAKES = [
    ("extra", SequentialAE(), "passed_an_instance", "the class itself"),
    ("extra", lambda *sizes: "model", "not_a_module", "not a PyTorch module"),
    ("extra", PlainListAE, "no_parameters", "no parameters at all"),
    ("extra", HardCodedAE, "sizes_ignored", "arguments are ignored"),
    ("extra", _sequential(_hidden_three, _decoder), "wrong_parameter_count", "have 26,003"),
    ("15", _sequential(_encoder, _decoder, flatten=False), "not_flattened", "flattening is missing"),
    ("extra", _sequential(_encoder, _decoder, out=lambda logits, z: logits), "returns_one_tensor", "(logits, z)"),
    ("extra", _sequential(_encoder, _decoder, out=lambda logits, z: {"logits": logits, "z": z}), "not_a_pair", "dict"),
    ("extra", _sequential(_encoder, _decoder, out=lambda logits, z: (z, logits)), "outputs_swapped", "swapped"),
    ("extra", _sequential(_encoder, _decoder, out=lambda logits, z: (logits.view(-1, 1, 28, 28), z)),
     "logits_as_images", "shape of images"),
    ("extra", _sequential(_encoder, _decoder, out=lambda logits, z: (logits[:, :392], z)),
     "wrong_logits_shape", "(12, 392)"),
    ("extra", _sequential(_encoder, _decoder, out=lambda logits, z: (logits, z[:, :1])),
     "wrong_latent_shape", "(12, 1)"),
    ("extra", SwappedArgumentsAE, "sizes_swapped", "seem swapped"),
    ("15", _sequential(_encoder, lambda l, h: [*_decoder(l, h), nn.Sigmoid()]), "returns_probabilities", "sigmoid"),
    ("extra", _sequential(_encoder, lambda l, h: [*_decoder(l, h), nn.ReLU()]), "relu_on_logits", "a ReLU after"),
    ("15", DetachedCodeAE, "no_gradient", "fc1.weight"),
    ("15", _sequential(_linear_encoder, _linear_decoder), "linear_autoencoder", "what PCA finds"),
    ("extra", _sequential(_linear_encoder, _decoder), "linear_encoder", "encoder is linear"),
    ("extra", _sequential(_encoder, _linear_decoder), "linear_decoder", "decoder is linear"),
    ("extra", WrongDefaultsAE, "wrong_defaults", "a code of size 20"),
]


@pytest.mark.parametrize("issue, cls, diagnosis, phrase", MISTAKES, ids=[m[2] for m in MISTAKES])
def test_autoencoder_mistake_is_named(issue, cls, diagnosis, phrase):
    assert_fails(check_autoencoder(cls), diagnosis, phrase)


def test_missing_super_init_explains_the_error():
    result = check_autoencoder(NoSuperInitAE)
    assert result.status == "error" and "super().__init__()" in result.hint


def test_flattening_the_whole_batch_explains_the_error():
    class WholeBatchFlatten(SeparateLayersAE):
        def forward(self, images):
            z = self.fc2(F.relu(self.fc1(images.flatten())))
            return self.fc4(F.relu(self.fc3(z))), z

    result = check_autoencoder(WholeBatchFlatten)
    assert result.status == "error" and "images.flatten(1)" in result.hint


def test_check_leaves_the_random_state_alone():
    state = torch.get_rng_state()
    check_autoencoder(SequentialAE)
    assert torch.equal(torch.get_rng_state(), state)
