"""vae_lesson.checks.reparameterize: a catalogue of student answers, each wrong one named for what it is.

Every buggy implementation in MISTAKES makes one known mistake and must fail with its own diagnosis
(a stable code plus a phrase of the message the student reads); every variant in CORRECT, written
the ways students really write them, must pass.
"""

import math

import pytest
import torch
from torch.distributions import Normal

import vae_lesson
from vae_lesson.checks import check_reparameterize, reparameterize

from check_helpers import assert_fails


# ----------------------------------------------------------------------------------------------
# Reparameterization


def _sigma(logvar):
    return torch.exp(0.5 * logvar)


CORRECT = {
    "lesson": lambda mu, logvar: mu + torch.exp(0.5 * logvar) * torch.randn_like(mu),
    "reference": vae_lesson.reparameterize,
    "exp_method": lambda mu, logvar: mu + (0.5 * logvar).exp() * torch.randn_like(logvar),
    "mul_exp_inplace_on_copy": lambda mu, logvar: mu + logvar.mul(0.5).exp_() * torch.randn_like(mu),
    "sqrt_of_variance": lambda mu, logvar: mu + torch.sqrt(torch.exp(logvar)) * torch.randn_like(mu),
    "variance_pow_half": lambda mu, logvar: mu + torch.exp(logvar) ** 0.5 * torch.randn_like(mu),
    "divide_by_two": lambda mu, logvar: mu + torch.exp(logvar / 2) * torch.randn(mu.shape),
    "normal_rsample": lambda mu, logvar: Normal(mu, _sigma(logvar)).rsample(),
    # pytorch/examples' form: in-place ops, but only on tensors made inside the function
    "pytorch_examples": lambda mu, logvar: torch.randn_like(logvar).mul(logvar.mul(0.5).exp_()).add_(mu),
    "addcmul": lambda mu, logvar: torch.addcmul(mu, _sigma(logvar), torch.randn_like(mu)),
    "normal_inplace_fill": lambda mu, logvar: mu + _sigma(logvar) * torch.empty_like(mu).normal_(),
    "randn_with_size": lambda mu, logvar: mu + _sigma(logvar) * torch.randn(*mu.size(), dtype=mu.dtype),
}


def _reparam_exp_logvar_plus_half(mu, logvar):  # the source lecture's line
    sd = torch.exp(logvar + 0.5)
    return torch.randn_like(sd).mul(sd).add_(mu)


def _reparam_in_place_logvar(mu, logvar):
    std = logvar.mul_(0.5).exp_()
    return mu + std * torch.randn_like(std)


def _reparam_in_place_mu(mu, logvar):
    mu += _sigma(logvar) * torch.randn_like(mu)
    return mu


def _reparam_seeded(mu, logvar):
    torch.manual_seed(0)
    return mu + _sigma(logvar) * torch.randn_like(mu)


def _reparam_new_generator(mu, logvar):
    return mu + _sigma(logvar) * torch.randn(mu.shape, generator=torch.Generator())


def _reparam_detached_std(mu, logvar):
    return mu + _sigma(logvar).detach() * torch.randn_like(mu)


def _reparam_no_return(mu, logvar):
    mu + _sigma(logvar) * torch.randn_like(mu)


def _reparam_laplace(mu, logvar):
    eps = torch.distributions.Laplace(0.0, 1.0 / math.sqrt(2)).sample(mu.shape)
    return mu + _sigma(logvar) * eps


def _reparam_hard_coded_latent(mu, logvar):
    return mu + _sigma(logvar) * torch.randn(mu.shape[0], 20)


def _reparam_half_correlated(mu, logvar):
    eps = torch.randn(mu.shape[0], 2).repeat(1, 2)
    return mu + _sigma(logvar) * eps


def _reparam_in_place_on_exp(mu, logvar):
    # pytorch/examples' chain with exp() instead of exp_(): mul_ overwrites the exp's output,
    # which the exp's gradient needs, so backward() fails.
    std = logvar.mul(0.5).exp()
    return std.mul_(torch.randn_like(std)).add_(mu)


MISTAKES = [
    # (issue number or "extra", implementation, diagnosis, phrase the student reads)
    ("1", _reparam_exp_logvar_plus_half, "std_exp_logvar_plus_half", "exp(logvar + 0.5)"),
    ("2", lambda mu, lv: mu + torch.exp(lv) * torch.randn_like(mu), "std_is_variance", "the variance, not the standard deviation"),
    ("3", lambda mu, lv: mu + lv * torch.randn_like(mu), "std_is_logvar", "logvar is used directly"),
    ("3", lambda mu, lv: mu + torch.sqrt(lv) * torch.randn_like(mu), "std_is_sqrt_logvar", "square root of logvar"),
    ("4", lambda mu, lv: mu, "no_noise_z_is_mu", "no noise is added"),
    ("4", lambda mu, lv: mu + _sigma(lv), "no_noise_mu_plus_std", "noise eps replaced by 1"),
    ("4", lambda mu, lv: mu + torch.exp(lv), "no_noise", "no randomness"),
    ("5", lambda mu, lv: torch.normal(mu, _sigma(lv)), "no_gradient", "No gradient reaches mu and logvar"),
    ("5", lambda mu, lv: Normal(mu, _sigma(lv)).sample(), "no_gradient", "Normal(mu, std).sample()"),
    ("5", _reparam_detached_std, "no_gradient_logvar", "reaches mu but not logvar"),
    ("5", lambda mu, lv: mu + torch.normal(torch.zeros_like(mu), _sigma(lv)), "no_gradient_logvar", "torch.normal(0, std)"),
    ("5", lambda mu, lv: mu.detach() + _sigma(lv) * torch.randn_like(mu), "no_gradient_mu", "not mu"),
    ("6", lambda mu, lv: mu + _sigma(lv) * torch.randn(mu.shape[1]), "shared_noise_batch", "same noise for every example"),
    ("6", lambda mu, lv: mu + _sigma(lv) * torch.randn(mu.shape[0], 1), "shared_noise_latent", "same noise for all latent dimensions"),
    ("6", lambda mu, lv: mu + _sigma(lv) * torch.randn(1), "shared_noise_single", "one single noise value"),
    ("7", lambda mu, lv: mu + _sigma(lv) * torch.rand_like(mu), "uniform_noise", "looks uniform"),
    ("7", lambda mu, lv: mu + _sigma(lv) * (torch.rand_like(mu) * 2 - 1) * math.sqrt(3), "uniform_noise", "torch.rand_like draw uniform numbers"),
    ("8", _reparam_in_place_logvar, "modifies_input", "changed its input `logvar` in place"),
    ("8", _reparam_in_place_mu, "modifies_input", "changed its input `mu` in place"),
    ("8", lambda mu, lv: (mu + _sigma(lv) * torch.randn_like(mu)).sum(-1), "wrong_shape", "one value per example"),
    ("8", lambda mu, lv: mu + _sigma(lv) * torch.randn(mu.shape[0], 1, mu.shape[1]), "wrong_shape", "must have the shape of mu"),
    ("extra", lambda mu, lv: _sigma(lv) * torch.randn_like(mu), "forgot_mu", "mu is not added"),
    ("extra", lambda mu, lv: mu + torch.randn_like(mu), "std_missing", "z = mu + eps"),
    ("extra", lambda mu, lv: mu + 0.5 * lv * torch.randn_like(mu), "std_is_half_logvar", "the exp is missing"),
    ("extra", lambda mu, lv: mu + torch.exp(-0.5 * lv) * torch.randn_like(mu), "std_inverted", "1 / sigma"),
    ("extra", lambda mu, lv: mu + torch.sqrt(_sigma(lv)) * torch.randn_like(mu), "std_sqrt_twice", "taken twice"),
    ("extra", lambda mu, lv: mu + 0.5 * _sigma(lv) * torch.randn_like(mu), "std_wrong", "does not match"),
    ("extra", lambda mu, lv: lv + _sigma(mu) * torch.randn_like(mu), "arguments_swapped", "arguments seem swapped"),
    ("extra", lambda mu, lv: mu + 1 + _sigma(lv) * torch.randn_like(mu), "mean_wrong", "not centred on mu"),
    ("extra", _reparam_seeded, "seeded_inside", "set its own seed"),
    ("extra", _reparam_new_generator, "seeded_inside", "new torch.Generator"),
    ("extra", _reparam_laplace, "noise_not_normal", "heavier tails"),
    ("extra", _reparam_half_correlated, "noise_correlated", "correlated"),
    ("extra", _reparam_no_return, "returns_none", "`return` statement missing"),
    ("extra", lambda mu, lv: (mu + _sigma(lv) * torch.randn_like(mu), _sigma(lv)), "returns_tuple", "return only z"),
    ("extra", lambda mu, lv: (mu + _sigma(lv) * torch.randn_like(mu)).numpy(), "returns_wrong_type", "ndarray"),
    ("extra", _reparam_in_place_on_exp, "backward_failed", "Backpropagating through your z failed"),
    # arguments taken as (logvar, mu) and mu's square root as the std: NaN where mu < 0, not where logvar < 0
    ("extra", lambda mu, lv: lv + torch.sqrt(mu) * torch.randn_like(mu), "not_finite", "NaN or infinite"),
]


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_reparameterize_passes(name):
    result = check_reparameterize(CORRECT[name])
    assert result.passed, str(result)
    assert result.diagnosis == "passed" and bool(result)


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", MISTAKES, ids=[m[2] + "-" + m[0] for m in MISTAKES])
def test_reparameterize_mistake_is_named(issue, fn, diagnosis, phrase):
    assert_fails(check_reparameterize(fn), diagnosis, phrase)


def test_reparameterize_hard_coded_size_explains_the_error():
    result = check_reparameterize(_reparam_hard_coded_latent)
    assert result.status == "error" and result.diagnosis == "raised"
    assert "RuntimeError" in result.message and "size of tensor" in result.message
    assert "Don't hard-code sizes" in result.hint


def test_std_mistakes_are_distinguishable_on_the_probe():
    # Each wrong std formula must differ from the right one and from every other by far more than
    # the check's tolerance in at least one latent dimension, or two diagnoses would blur.
    logvar = torch.tensor(reparameterize.LOGVAR, dtype=torch.float64)
    candidates = [("correct", _sigma)] + list(reparameterize.SPREAD_OF.items())
    for i, (name_a, a) in enumerate(candidates):
        for name_b, b in candidates[i + 1:]:
            gap = (a(logvar) / b(logvar) - 1).abs().max()
            assert gap > 3 * reparameterize.STD_TOLERANCE, (name_a, name_b, gap)
