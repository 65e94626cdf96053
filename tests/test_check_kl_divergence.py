"""vae_lesson.checks.kl_divergence: a catalogue of student answers, each wrong one named for what it is.

Every buggy implementation in MISTAKES makes one known mistake and must fail with its own diagnosis
(a stable code plus a phrase of the message the student reads); every variant in CORRECT, written
the ways students really write them, must pass.
"""

import pytest
import torch
from torch.distributions import Normal, kl_divergence as torch_kl

import vae_lesson
from vae_lesson.checks import check_kl_divergence, kl_divergence

from check_helpers import assert_fails


# ----------------------------------------------------------------------------------------------
# KL divergence


def _kl_loop(mu, logvar):
    total = torch.zeros(mu.shape[0])
    for j in range(mu.shape[1]):
        total = total + 0.5 * (mu[:, j] ** 2 + logvar[:, j].exp() - 1 - logvar[:, j])
    return total


def _kl_via_std_stable(mu, logvar):
    std = torch.exp(0.5 * logvar)
    return 0.5 * (mu**2 + std**2 - 1 - 2 * torch.log(std)).sum(dim=1)


def _kl_per_dimension_then_sum(mu, logvar):
    per_dimension = -0.5 * (1 + logvar - mu * mu - torch.exp(logvar))
    return per_dimension.sum(dim=1)


CORRECT = {
    "reference": vae_lesson.kl_divergence,
    "lecture_form": lambda mu, logvar: -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1),
    "rearranged": lambda mu, logvar: 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1),
    "method_chain": lambda mu, logvar: (mu.pow(2) + logvar.exp() - logvar - 1).mul(0.5).sum(1),
    "einsum": lambda mu, logvar: 0.5 * torch.einsum("bd->b", mu * mu + torch.exp(logvar) - logvar - 1),
    "loop_over_dimensions": _kl_loop,
    "via_std_stable": _kl_via_std_stable,
    "per_dimension_then_sum": _kl_per_dimension_then_sum,
    "square_via_mul": lambda mu, logvar: 0.5 * torch.sum(mu * mu + torch.exp(logvar) - 1.0 - logvar, dim=-1),
}


def _kl_in_place(mu, logvar):
    var = logvar.exp_()  # overwrites logvar
    return 0.5 * (mu**2 + var - 1 - var.log()).sum(-1)


def _kl_numpy(mu, logvar):
    import numpy as np

    m, lv = mu.detach().numpy(), logvar.detach().numpy()
    return torch.from_numpy(0.5 * (m**2 + np.exp(lv) - 1 - lv).sum(-1))


def _kl_log_of_variance(mu, logvar):
    var = logvar.exp()
    return 0.5 * (mu**2 + var - 1 - torch.log(var)).sum(-1)


def _kl_log_of_std_squared(mu, logvar):
    std = torch.exp(0.5 * logvar)
    return 0.5 * (mu**2 + std**2 - 1 - torch.log(std**2)).sum(-1)


def _kl(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar)


def _kl_logvar_as_log_std(mu, logvar):
    std = logvar.exp()  # logvar read as log sigma
    return 0.5 * (mu**2 + std**2 - 1 - 2 * torch.log(std)).sum(-1)


def _kl_log_with_epsilon(mu, logvar):
    # "+ 1e-8 for stability": right for ordinary values, but log(1e-8) = -18.4 where log sigma^2 is -120
    return 0.5 * (mu**2 + logvar.exp() - 1 - torch.log(logvar.exp() + 1e-8)).sum(-1)


MISTAKES = [
    ("9", lambda mu, lv: 0.5 * torch.sum(1 + lv - mu.pow(2) - lv.exp(), dim=1), "kl_sign_flipped", "sign flipped"),
    ("10", lambda mu, lv: -torch.sum(1 + lv - mu.pow(2) - lv.exp(), dim=1), "kl_half_missing", "factor 1/2"),
    ("9+10", lambda mu, lv: torch.sum(1 + lv - mu.pow(2) - lv.exp(), dim=1), "kl_sign_and_half", "both the sign"),
    ("11", lambda mu, lv: _kl(mu, lv).mean(-1), "kl_mean_over_latent", "averaged over the latent dimensions"),
    ("12", lambda mu, lv: _kl(mu, lv).sum(), "kl_summed_over_batch", "summed over the whole batch"),
    ("12", lambda mu, lv: _kl(mu, lv).sum(-1).mean(), "kl_mean_over_batch", "averaged over the batch"),
    ("12", lambda mu, lv: _kl(mu, lv).sum(0), "kl_summed_over_wrong_dim", "summed over the batch (dim=0)"),
    ("12", lambda mu, lv: _kl(mu, lv), "kl_not_summed", "not summed over the latent dimensions"),
    ("12", lambda mu, lv: _kl(mu, lv).sum(-1, keepdim=True), "kl_keepdim", "keepdim=True"),
    ("12", lambda mu, lv: _kl(mu, lv).mean(), "kl_mean_over_everything", "mean over every entry"),
    ("13", lambda mu, lv: 0.5 * (mu + lv.exp() - 1 - lv).sum(-1), "kl_mu_not_squared", "mu is not squared"),
    ("13", lambda mu, lv: 0.5 * (mu**2 + lv - 1 - lv.exp()).sum(-1), "kl_exp_logvar_swapped", "swapped"),
    ("13", lambda mu, lv: 0.5 * (mu**2 + lv.exp() - 1 - lv.exp()).sum(-1), "kl_variance_for_log_variance", "where its log is needed"),
    ("13", lambda mu, lv: 0.5 * (mu**2 + lv - 1 - torch.log(lv)).sum(-1), "kl_not_finite", "log or square root of logvar"),
    ("extra", lambda mu, lv: 0.5 * (mu**2 + lv.exp() - 1 - 0.5 * lv).sum(-1), "kl_log_std_for_log_variance", "log sigma = 0.5 * logvar"),
    ("extra", lambda mu, lv: 0.5 * (mu**2 + (0.5 * lv).exp() - 1 - lv).sum(-1), "kl_std_for_variance", "standard deviation"),
    ("extra", lambda mu, lv: 0.5 * (mu**2 + lv.exp() - lv).sum(-1), "kl_minus_one_missing", "the - 1 inside the sum"),
    ("extra", lambda mu, lv: 0.5 * (mu**2 + lv.exp() + 1 - lv).sum(-1), "kl_one_sign", "+ 1 where - 1"),
    ("extra", lambda mu, lv: 0.5 * (mu**2 + lv.exp() - 1 + lv).sum(-1), "kl_logvar_sign", "logvar term"),
    ("extra", lambda mu, lv: -0.5 * torch.sum(1 + lv + mu.pow(2) - lv.exp(), dim=1), "kl_mu_sign", "mu^2 term"),
    ("extra", lambda mu, lv: -0.5 * torch.sum(1 + lv - mu.pow(2) + lv.exp(), dim=1), "kl_exp_sign", "exp(logvar) term"),
    ("extra", lambda mu, lv: 0.25 * (mu**2 + lv.exp() - 1 - lv).sum(-1), "kl_scaled", "0.5 times the expected value"),
    ("extra", lambda mu, lv: _kl(mu, lv).sum(-1).detach(), "kl_no_gradient", "no gradient flows"),
    ("extra", _kl_numpy, "kl_no_gradient", "numpy"),
    ("extra", lambda mu, lv: _kl(mu.detach(), lv).sum(-1), "kl_gradient_mismatch", "gradients do not match"),
    ("extra", _kl_in_place, "modifies_input", "changed its input `logvar` in place"),
    ("extra", lambda mu, lv: float(_kl(mu, lv).sum()), "returns_number", "Python float"),
    ("extra", lambda mu, lv: _kl(mu, lv).sum(-1)[:3] if mu.shape[0] == 3 else _kl(mu, lv).sum(), "kl_wrong_shape", "depend on the batch or latent size"),
    ("extra", _kl_logvar_as_log_std, "kl_logvar_as_log_std", "logvar = log sigma, the log standard deviation"),
    ("extra", lambda mu, lv: -torch.sum(1 + lv - mu.pow(2) - lv.exp()), "kl_scalar", "one number for the whole batch"),
    ("extra", lambda mu, lv: 0.5 * (mu + lv.exp() - lv).sum(-1), "kl_wrong", "does not match the closed form"),
]


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_kl_divergence_passes(name):
    result = check_kl_divergence(CORRECT[name])
    assert result.passed, str(result)


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", MISTAKES, ids=[m[2] + "-" + m[0] for m in MISTAKES])
def test_kl_mistake_is_named(issue, fn, diagnosis, phrase):
    assert_fails(check_kl_divergence(fn), diagnosis, phrase)


def _distributions_kl(mu, logvar):
    return torch_kl(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)


# Right answers that are inexact only at extreme logvar: they pass, with a caution naming the range.
# torch.distributions computes log(scale ** 2), exactly what a student's log(exp(logvar)) does, so
# the check cannot (and must not) tell them apart.
CAUTIONS = [
    ("library", _distributions_kl, "kl_not_finite_large_logvar", "torch.distributions.kl_divergence"),
    ("14", _kl_log_of_variance, "kl_not_finite_large_logvar", "log(exp(logvar))"),
    ("14", _kl_log_of_std_squared, "kl_not_finite_large_logvar", "log(std ** 2)"),
    ("extra", _kl_log_with_epsilon, "kl_inaccurate_large_logvar", "inexact for large |logvar|"),
]


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", CAUTIONS, ids=[c[2] + "-" + c[0] for c in CAUTIONS])
def test_kl_inexact_only_at_extreme_logvar_passes_with_a_caution(issue, fn, diagnosis, phrase):
    result = check_kl_divergence(fn)
    assert result.passed and result.diagnosis == diagnosis, result
    assert "Caution: your KL is right for ordinary values" in result.message and phrase in result.message
    assert "stays finite for large |logvar|" not in result.message


def test_kl_mistakes_are_distinguishable_on_the_probe():
    mu, logvar = kl_divergence.probe_inputs()
    mu, logvar = mu.double(), logvar.double()
    values = {"correct": vae_lesson.kl_divergence(mu, logvar)}
    values.update({d: mistake(mu, logvar) for d, mistake in kl_divergence.VALUE_OF.items()})
    names = list(values)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not torch.allclose(values[a], values[b], rtol=1e-2, atol=1e-2), (a, b)
