"""vae_lesson.checks: a catalogue of student answers, each wrong one named for what it is.

Every buggy implementation below makes one known mistake and must fail with its own diagnosis
(a stable code plus a phrase of the message the student reads); every correct variant must pass.
The correct variants are written the ways students really write them, so a check that is too
strict shows up here as well as one that is too lenient.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence as torch_kl

import vae_lesson
from vae_lesson import checks
from vae_lesson.checks import (
    CheckResult,
    check_kl_divergence,
    check_reparameterize,
    check_sample_prior,
    check_vae_loss,
    use_if_passed,
)


def _stub(*args):
    raise NotImplementedError("Replace this line with your code")


def assert_fails(result, diagnosis, phrase):
    assert not result.passed, f"expected {diagnosis}, but the check passed:\n{result}"
    assert result.status == "failed", result
    assert result.diagnosis == diagnosis, f"expected {diagnosis}, got {result.diagnosis}:\n{result}"
    assert phrase in result.message, f"{phrase!r} not in:\n{result.message}"


# ----------------------------------------------------------------------------------------------
# Reparameterization


def _sigma(logvar):
    return torch.exp(0.5 * logvar)


REPARAM_CORRECT = {
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


REPARAM_MISTAKES = [
    # (issue number or "extra", implementation, diagnosis, phrase the student reads)
    ("1", _reparam_exp_logvar_plus_half, "std_exp_logvar_plus_half", "exp(logvar + 0.5)"),
    ("2", lambda mu, lv: mu + torch.exp(lv) * torch.randn_like(mu), "std_is_variance", "That is the variance"),
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
]


@pytest.mark.parametrize("name", sorted(REPARAM_CORRECT))
def test_correct_reparameterize_passes(name):
    result = check_reparameterize(REPARAM_CORRECT[name])
    assert result.passed, str(result)
    assert result.diagnosis == "passed" and bool(result)


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", REPARAM_MISTAKES, ids=[m[2] + "-" + m[0] for m in REPARAM_MISTAKES])
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
    logvar = torch.tensor(checks._REPARAM_LOGVAR, dtype=torch.float64)
    candidates = [("correct", _sigma)] + [(d, guess) for d, guess, _, _ in checks._REPARAM_STD_MISTAKES]
    for i, (name_a, a) in enumerate(candidates):
        for name_b, b in candidates[i + 1:]:
            gap = (a(logvar) / b(logvar) - 1).abs().max()
            assert gap > 3 * checks._STD_TOLERANCE, (name_a, name_b, gap)


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


KL_CORRECT = {
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


KL_MISTAKES = [
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
    ("14", _kl_log_of_variance, "kl_not_finite_large_logvar", "log(exp(logvar))"),
    ("14", _kl_log_of_std_squared, "kl_not_finite_large_logvar", "log(std ** 2)"),
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
]


@pytest.mark.parametrize("name", sorted(KL_CORRECT))
def test_correct_kl_divergence_passes(name):
    result = check_kl_divergence(KL_CORRECT[name])
    assert result.passed, str(result)


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", KL_MISTAKES, ids=[m[2] + "-" + m[0] for m in KL_MISTAKES])
def test_kl_mistake_is_named(issue, fn, diagnosis, phrase):
    assert_fails(check_kl_divergence(fn), diagnosis, phrase)


def test_torch_distributions_kl_is_right_but_named_for_large_logvar():
    # torch.distributions computes log(scale ** 2): exactly mistake 14, so the check cannot (and must
    # not) tell it apart from a student's log(exp(logvar)); its message says so by name.
    def distributions_kl(mu, logvar):
        return torch_kl(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)

    result = check_kl_divergence(distributions_kl)
    assert_fails(result, "kl_not_finite_large_logvar", "torch.distributions.kl_divergence")
    assert "right for ordinary values" in result.message


def test_kl_mistakes_are_distinguishable_on_the_probe():
    mu, logvar = checks._kl_inputs()
    mu, logvar = mu.double(), logvar.double()
    values = {"correct": vae_lesson.kl_divergence(mu, logvar)}
    values.update({d: mistake(mu, logvar) for d, mistake, _, _ in checks._KL_MISTAKES})
    names = list(values)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not torch.allclose(values[a], values[b], rtol=1e-2, atol=1e-2), (a, b)


# ----------------------------------------------------------------------------------------------
# VAE loss


def _flat(images):
    return images.view(-1, 784)


def _kl_sum(mu, logvar):
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def _loss_lecture(logits, images, mu, logvar):
    bce = F.binary_cross_entropy_with_logits(logits, _flat(images), reduction="sum")
    return (bce + _kl_sum(mu, logvar)) / images.shape[0]


def _loss_probabilities(logits, images, mu, logvar):
    bce = F.binary_cross_entropy(torch.sigmoid(logits), _flat(images), reduction="sum")
    return (bce + _kl_sum(mu, logvar)) / len(images)


def _loss_manual(logits, images, mu, logvar):
    x = images.reshape(len(images), -1)
    log_likelihood = x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)
    return -log_likelihood.sum() / len(x) + vae_lesson.kl_divergence(mu, logvar).mean()


def _loss_per_image_then_mean(logits, images, mu, logvar):
    bce = F.binary_cross_entropy_with_logits(logits, images.flatten(1), reduction="none").sum(dim=1)
    return (bce + vae_lesson.kl_divergence(mu, logvar)).mean()


def _loss_tuple(logits, images, mu, logvar):
    reconstruction = F.binary_cross_entropy_with_logits(logits, _flat(images), reduction="sum") / len(images)
    kl = _kl_sum(mu, logvar) / len(images)
    return reconstruction + kl, reconstruction, kl


_BCE_MODULE = nn.BCEWithLogitsLoss(reduction="sum")


def _loss_module(logits, images, mu, logvar):
    return (_BCE_MODULE(logits, _flat(images)) + _kl_sum(mu, logvar)) / logits.size(0)


def _loss_distributions_kl(logits, images, mu, logvar):
    bce = F.binary_cross_entropy_with_logits(logits, _flat(images), reduction="sum")
    kl = torch_kl(Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum()
    return (bce + kl) / len(images)


def _loss_keepdim_scalar(logits, images, mu, logvar):
    return _loss_lecture(logits, images, mu, logvar).reshape(1)


LOSS_CORRECT = {
    "reference_loss_terms": vae_lesson.vae_loss,
    "lecture": _loss_lecture,
    "bce_on_probabilities": _loss_probabilities,
    "manual_logsigmoid": _loss_manual,
    "per_image_then_mean": _loss_per_image_then_mean,
    "tuple_total_first": _loss_tuple,
    "bce_module": _loss_module,
    "distributions_kl": _loss_distributions_kl,
    "one_element_tensor": _loss_keepdim_scalar,
}


def _bce(logits, images, reduction="sum"):
    return F.binary_cross_entropy_with_logits(logits, _flat(images), reduction=reduction)


def _with_kl(reconstruction, mu, logvar, n, weight=1.0):
    return reconstruction / n + weight * _kl_sum(mu, logvar) / n


def _loss_in_place_sigmoid(logits, images, mu, logvar):
    probabilities = logits.sigmoid_()
    bce = F.binary_cross_entropy(probabilities, _flat(images), reduction="sum")
    return (bce + _kl_sum(mu, logvar)) / len(images)


LOSS_MISTAKES = [
    ("15", lambda l, x, mu, lv: _bce(l, x, "mean") + _kl_sum(mu, lv) / len(x), "reconstruction_mean_over_pixels", "the KL dominates"),
    ("15", lambda l, x, mu, lv: _bce(l, x, "mean") + vae_lesson.kl_divergence(mu, lv).mean() / 3, "reconstruction_mean_over_pixels", "Also: Your KL term is averaged over the latent"),
    ("16", lambda l, x, mu, lv: _with_kl(_bce(torch.sigmoid(l), x), mu, lv, len(x)), "sigmoid_twice", "sigmoid is applied twice"),
    ("16", lambda l, x, mu, lv: _with_kl(F.binary_cross_entropy(torch.sigmoid(torch.sigmoid(l)), _flat(x), reduction="sum"), mu, lv, len(x)), "sigmoid_twice", "cannot tell the two apart"),
    ("17", lambda l, x, mu, lv: _bce(l, x) / len(x), "kl_missing", "no KL term"),
    ("17", lambda l, x, mu, lv: _with_kl(_bce(l, x), mu, lv, len(x), weight=0.5), "kl_weight_not_one", "weighted 0.5"),
    ("12 (reverse)", lambda l, x, mu, lv: _bce(l, x) / len(x) + _kl_sum(mu, lv), "kl_summed_over_batch", "not divided by the batch size"),
    ("extra", lambda l, x, mu, lv: _bce(l, x) + _kl_sum(mu, lv), "loss_summed_over_batch", "summed over the batch, not averaged"),
    ("extra", lambda l, x, mu, lv: _bce(l, x) + _kl_sum(mu, lv) / len(x), "reconstruction_not_divided", "not divided by the batch size"),
    ("extra", lambda l, x, mu, lv: (_bce(l, x) + _kl_sum(mu, lv)) / 128, "loss_scaled", "divided by 128"),
    ("extra", lambda l, x, mu, lv: -_loss_lecture(l, x, mu, lv), "returns_elbo", "the ELBO itself"),
    ("extra", lambda l, x, mu, lv: _bce(l, x) / len(x) - _kl_sum(mu, lv) / len(x), "kl_subtracted", "subtracted instead of added"),
    ("extra", lambda l, x, mu, lv: _bce(l, x) / len(x) + vae_lesson.kl_divergence(mu, lv).mean() / 3, "kl_mean_over_latent", "averaged over the latent dimensions"),
    ("extra", lambda l, x, mu, lv: _with_kl(_bce(l, x), mu, lv, len(x), weight=2.0), "kl_half_missing", "factor 1/2"),
    ("extra", lambda l, x, mu, lv: _with_kl(((torch.sigmoid(l) - _flat(x)) ** 2).sum(), mu, lv, len(x)), "mse", "squared error"),
    ("extra", lambda l, x, mu, lv: _bce(l, x, "none").sum(1) + vae_lesson.kl_divergence(mu, lv), "loss_per_example", "one value per image"),
    ("extra", lambda l, x, mu, lv: _loss_lecture(l, x, mu, lv).item(), "returns_number", ".item()"),
    ("extra", lambda l, x, mu, lv: (_bce(l, x) / len(x), _kl_sum(mu, lv) / len(x)), "kl_missing", "took the first one as the total"),
    ("extra", lambda l, x, mu, lv: _loss_lecture(l, x, mu, lv).detach(), "loss_no_gradient", "no gradient flows"),
    ("extra", lambda l, x, mu, lv: _loss_lecture(l, x, mu.detach(), lv.detach()), "loss_no_gradient_mu", "KL term is cut off"),
    ("extra", _loss_in_place_sigmoid, "modifies_input", "changed its input `logits` in place"),
]


@pytest.mark.parametrize("name", sorted(LOSS_CORRECT))
def test_correct_vae_loss_passes(name):
    result = check_vae_loss(LOSS_CORRECT[name])
    assert result.passed, str(result)


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", LOSS_MISTAKES, ids=[m[2] + "-" + m[0] for m in LOSS_MISTAKES])
def test_vae_loss_mistake_is_named(issue, fn, diagnosis, phrase):
    assert_fails(check_vae_loss(fn), diagnosis, phrase)


def test_vae_loss_bce_on_logits_explains_the_error():
    # Mistake 16's other face: F.binary_cross_entropy given logits raises inside the student's code.
    result = check_vae_loss(lambda l, x, mu, lv: _with_kl(F.binary_cross_entropy(l, _flat(x), reduction="sum"), mu, lv, len(x)))
    assert result.status == "error" and "binary_cross_entropy_with_logits" in result.hint


def test_vae_loss_unflattened_images_explain_the_error():
    result = check_vae_loss(lambda l, x, mu, lv: _with_kl(F.binary_cross_entropy_with_logits(l, x, reduction="sum"), mu, lv, len(x)))
    assert result.status == "error" and "images.view(-1, 784)" in result.hint


def test_mean_over_pixels_reports_the_kl_dominating_with_numbers():
    result = check_vae_loss(LOSS_MISTAKES[0][1])
    assert "784 times too small" in result.message
    assert "your reconstruction part is" in result.message and "against a KL of" in result.message


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


SAMPLE_CORRECT = {
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


SAMPLE_MISTAKES = [
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
]


@pytest.mark.parametrize("name", sorted(SAMPLE_CORRECT))
def test_correct_sample_prior_passes(name):
    result = check_sample_prior(SAMPLE_CORRECT[name])
    assert result.passed, str(result)


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", SAMPLE_MISTAKES, ids=[m[2] for m in SAMPLE_MISTAKES])
def test_sample_prior_mistake_is_named(issue, fn, diagnosis, phrase):
    assert_fails(check_sample_prior(fn), diagnosis, phrase)


def test_sample_prior_hard_coded_latent_size_explains_the_error():
    result = check_sample_prior(lambda model, n: model.decode(torch.randn(n, 20)))
    assert result.status == "error" and "model.latent_dim" in result.hint


def test_sample_prior_model_call_explains_the_error():
    result = check_sample_prior(lambda model, n: model(torch.randn(n, model.latent_dim)))
    assert result.status == "error" and "model.decode(z)" in result.hint


# ----------------------------------------------------------------------------------------------
# What every check shares: not done yet, errors, determinism, display, and the helper.

ALL_CHECKS = [check_reparameterize, check_kl_divergence, check_vae_loss, check_sample_prior]


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_stub_is_not_done_yet(check):
    result = check(_stub)
    assert result.status == "not done" and not result.passed
    assert result.message.startswith("Not done yet: `_stub` still raises NotImplementedError")
    assert "the lesson continues with vae_lesson's reference implementation" in result.message


@pytest.mark.parametrize("check", ALL_CHECKS)
@pytest.mark.parametrize("value, phrase", [(None, "got None"), (torch.zeros(2, 3), "a tensor of shape (2, 3)"), ("f", "type str")])
def test_not_callable_is_explained(check, value, phrase):
    result = check(value)
    assert result.status == "error" and result.diagnosis == "not_callable" and not result.passed
    assert phrase in result.message and f"{check.__name__}(my_function)" in result.hint


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_raising_function_is_reported_with_its_exception(check):
    def broken(*args):
        raise ValueError("mu looks odd")

    result = check(broken)
    assert result.status == "error" and result.diagnosis == "raised"
    assert "`broken` raised ValueError: mu looks odd" in result.message


def test_wrong_number_of_arguments_points_at_the_signature():
    result = check_kl_divergence(lambda mu: mu.sum(-1))
    assert result.status == "error" and "fn(mu, logvar)" in result.hint


@pytest.mark.parametrize(
    "check, fn",
    [
        (check_reparameterize, _reparam_exp_logvar_plus_half),
        (check_reparameterize, _reparam_laplace),
        (check_kl_divergence, KL_MISTAKES[0][1]),
        (check_vae_loss, LOSS_MISTAKES[0][1]),
        (check_sample_prior, SAMPLE_MISTAKES[7][1]),
    ],
)
def test_checks_are_deterministic(check, fn):
    assert str(check(fn)) == str(check(fn))


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_reparameterize(_reparam_seeded)
    check_sample_prior(_sample_lesson)
    assert torch.equal(torch.rand(3), expected)


def test_checks_work_inside_no_grad():
    # A notebook may have gradients switched off; the gradient tests must still run.
    with torch.no_grad():
        assert check_reparameterize(REPARAM_CORRECT["lesson"]).passed
        assert_fails(check_reparameterize(lambda mu, lv: torch.normal(mu, _sigma(lv))), "no_gradient", "No gradient")
    assert torch.is_grad_enabled()


def test_result_displays_in_terminal_and_notebook():
    failed = check_reparameterize(_reparam_exp_logvar_plus_half)
    text = str(failed)
    assert text.splitlines()[0] == "✗ reparameterize(mu, logvar): not right yet"
    assert "Hint:" in text and "Compare with:  z = mu + torch.exp(0.5 * logvar) * eps" in text
    assert repr(failed) == text
    assert max(len(line) for line in text.splitlines() if "Compare with" not in line) <= 88
    page = failed._repr_html_()
    assert page.startswith("<div") and page.endswith("</div>") and "<script" not in page
    assert "#b71c1c" in page and "exp(logvar + 0.5)" in page and "<code" in page
    passed = check_reparameterize(REPARAM_CORRECT["lesson"])
    assert str(passed).startswith("✓ reparameterize(mu, logvar): passed")
    assert "#1b5e20" in passed._repr_html_()
    assert "#8a4b00" in check_reparameterize(_stub)._repr_html_()


def test_html_escapes_the_students_exception_text():
    def shouting(mu, logvar):
        raise RuntimeError("<b>bad</b> & worse")

    page = check_reparameterize(shouting)._repr_html_()
    assert "&lt;b&gt;bad&lt;/b&gt; &amp; worse" in page and "<b>bad</b>" not in page


def test_use_if_passed_picks_the_students_function_only_when_it_passed():
    student, reference = REPARAM_CORRECT["lesson"], vae_lesson.reparameterize
    assert use_if_passed(check_reparameterize(student), student, reference) is student
    assert use_if_passed(check_reparameterize(_stub), _stub, reference) is reference
    assert use_if_passed(check_reparameterize(_reparam_exp_logvar_plus_half), _stub, reference) is reference
    with pytest.raises(TypeError, match="CheckResult"):
        use_if_passed(True, student, reference)


def test_result_is_a_plain_value():
    result = CheckResult("x(y)", "failed", "message", "some_code", "hint", "formula")
    assert not result and not result.passed
    with pytest.raises(AttributeError):
        result.status = "passed"
