"""vae_lesson.checks.sample_prior: a catalogue of student answers, each wrong one named for what it is.

Every buggy implementation in MISTAKES makes one known mistake and must fail with its own diagnosis
(a stable code plus a phrase of the message the student reads); every variant in CORRECT, written
the ways students really write them, must pass.
"""

import pytest
import torch
from torch.distributions import Laplace, Normal

from vae_lesson.checks import check_sample_prior

from check_helpers import assert_fails


# ----------------------------------------------------------------------------------------------
# Sampling from the prior


def _sample_lesson(model, n):
    z = torch.randn(n, model.latent_dim)
    return model.decode(z)


def _sample_no_grad_eval(model, n):
    model.eval()
    with torch.no_grad():
        return model.decode(torch.randn(n, model.latent_dim))


def _sample_one_at_a_time(model, n):
    return torch.cat([model.decode(torch.randn(1, model.latent_dim)) for _ in range(n)])


CORRECT = {
    "lesson": _sample_lesson,
    "no_grad_eval": _sample_no_grad_eval,
    "decode_logits_sigmoid": lambda model, n: torch.sigmoid(model.decode_logits(torch.randn(n, model.latent_dim))).view(n, 1, 28, 28),
    "decoder_module": lambda model, n: model.decoder(torch.randn(n, model.latent_dim)).sigmoid().reshape(-1, 1, 28, 28),
    "normal_sample": lambda model, n: model.decode(Normal(0.0, 1.0).sample((n, model.latent_dim))),
    "empty_normal_": lambda model, n: model.decode(torch.empty(n, model.latent_dim).normal_()),
    "multivariate_normal": lambda model, n: model.decode(
        torch.distributions.MultivariateNormal(torch.zeros(model.latent_dim), torch.eye(model.latent_dim)).sample((n,))
    ),
    "on_model_device": lambda model, n: model.decode(torch.randn(n, model.latent_dim, device=next(model.parameters()).device)),
    "one_at_a_time": _sample_one_at_a_time,
}


def _sample_seeded(model, n):
    torch.manual_seed(0)
    return model.decode(torch.randn(n, model.latent_dim))


def _sample_centred_codes(model, n):
    z = torch.randn(n, model.latent_dim)
    return model.decode(z - z.mean(dim=1, keepdim=True))  # each code shifted to mean 0: dimensions anti-correlated


MISTAKES = [
    ("extra", lambda model, n: model.decode(torch.rand(n, model.latent_dim)), "uniform_codes", "look uniform"),
    ("extra", lambda model, n: model.decode_logits(torch.randn(n, model.latent_dim)).view(n, 1, 28, 28), "returns_logits", "sigmoid is missing"),
    ("extra", lambda model, n: model.decode(torch.randn(n, model.latent_dim)).view(n, 784), "flat_images", "flat rows"),
    ("extra", lambda model, n: model.decode(torch.randn(n, model.latent_dim)).view(n, 28, 28), "wrong_image_shape", "(7, 28, 28)"),
    ("extra", lambda model, n: model.decode(torch.randn(1, model.latent_dim).expand(n, -1)), "shared_code", "one single code"),
    ("extra", lambda model, n: model.decode(torch.randn(n, 1).expand(-1, model.latent_dim)), "shared_latent_value", "same value in every latent dimension"),
    ("extra", lambda model, n: model.decode(torch.zeros(n, model.latent_dim)), "z_zero", "decodes z = 0"),
    ("extra", lambda model, n: model.decode(0.3 * torch.randn(n, model.latent_dim)), "codes_std_wrong", "standard deviation"),
    ("extra", lambda model, n: model.decode(1 + torch.randn(n, model.latent_dim)), "codes_mean_wrong", "not centred on 0"),
    ("extra", _sample_seeded, "seeded_inside", "set its own seed"),
    ("extra", lambda model, n: torch.bernoulli(model.decode(torch.randn(n, model.latent_dim))), "binarized_images", "binary"),
    ("extra", lambda model, n: model.decode(torch.randn(64, model.latent_dim)), "wrong_number_of_codes", "decoded 64 latent codes"),
    ("extra", lambda model, n: torch.rand(n, 1, 28, 28), "never_decoded", "never ran the model's decoder"),
    ("extra", lambda model, n: 1 - model.decode(torch.randn(n, model.latent_dim)), "not_decoded_codes", "not model.decode(z)"),
    ("extra", lambda model, n: (model.decode(torch.randn(n, model.latent_dim)), None), "returns_tuple", "return only the images"),
    ("extra", _sample_centred_codes, "codes_correlated", "correlated"),
    ("extra", lambda model, n: model.decode(Laplace(0.0, 1.0).sample((n, model.latent_dim))), "codes_not_normal", "tails are too heavy"),
    ("extra", lambda model, n: model.decode(torch.ones(n, model.latent_dim)), "no_randomness", "same fixed z"),
    ("extra", lambda model, n: model.decode(torch.randn(n, model.latent_dim))[0], "wrong_number_of_images", "returned 1"),
    ("extra", lambda model, n: (model.decode(torch.randn(n, model.latent_dim)) * 255).to(torch.uint8), "not_floating_point", "torch.uint8"),
]


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_sample_prior_passes(name):
    result = check_sample_prior(CORRECT[name])
    assert result.passed, str(result)


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", MISTAKES, ids=[m[2] for m in MISTAKES])
def test_sample_prior_mistake_is_named(issue, fn, diagnosis, phrase):
    assert_fails(check_sample_prior(fn), diagnosis, phrase)


def test_sample_prior_hard_coded_latent_size_explains_the_error():
    result = check_sample_prior(lambda model, n: model.decode(torch.randn(n, 20)))
    assert result.status == "error" and "model.latent_dim" in result.hint


def test_sample_prior_model_call_explains_the_error():
    result = check_sample_prior(lambda model, n: model(torch.randn(n, model.latent_dim)))
    assert result.status == "error" and "model.decode(z)" in result.hint
