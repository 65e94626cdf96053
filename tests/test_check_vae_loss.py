"""vae_lesson.checks.vae_loss: a catalogue of student answers, each wrong one named for what it is.

Every buggy implementation in MISTAKES makes one known mistake and must fail with its own diagnosis
(a stable code plus a phrase of the message the student reads); every variant in CORRECT, written
the ways students really write them, must pass.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence as torch_kl

import vae_lesson
from vae_lesson.checks import check_vae_loss

from check_helpers import assert_fails


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


CORRECT = {
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


def _loss_variance_detached(logits, images, mu, logvar):
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp().detach())
    return (_bce(logits, images) + kl) / len(images)


def _loss_zero(logits, images, mu, logvar):
    loss = 0.0
    return torch.tensor(loss)


def _loss_log_sigmoid(logits, images, mu, logvar):
    x, p = _flat(images), torch.sigmoid(logits)
    log_likelihood = x * torch.log(p) + (1 - x) * torch.log(1 - p)
    return (-log_likelihood.sum() + _kl_sum(mu, logvar)) / len(x)


def _loss_log_sigmoid_epsilon(logits, images, mu, logvar):
    x, p = _flat(images), torch.sigmoid(logits)
    log_likelihood = x * torch.log(p + 1e-8) + (1 - x) * torch.log(1 - p + 1e-8)
    return (-log_likelihood.sum() + _kl_sum(mu, logvar)) / len(x)


MISTAKES = [
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
    # Student constants are named as themselves, not mistaken for the check's batch or latent size.
    ("extra", lambda l, x, mu, lv: _with_kl(_bce(l, x), mu, lv, len(x), weight=4.0), "kl_weight_not_one", "weighted 4 instead of 1"),
    ("extra", lambda l, x, mu, lv: _with_kl(_bce(l, x), mu, lv, len(x), weight=2.0), "kl_half_missing", "or it is weighted 2"),
    ("extra", lambda l, x, mu, lv: (_bce(l, x) + _kl_sum(mu, lv)) / 20, "loss_scaled", "divided by 20"),
    ("extra", lambda l, x, mu, lv: _with_kl(((torch.sigmoid(l) - _flat(x)) ** 2).sum(), mu, lv, len(x)), "mse", "squared error"),
    ("extra", lambda l, x, mu, lv: _bce(l, x, "none").sum(1) + vae_lesson.kl_divergence(mu, lv), "loss_per_example", "one value per image"),
    ("extra", lambda l, x, mu, lv: _loss_lecture(l, x, mu, lv).item(), "returns_number", ".item()"),
    ("extra", lambda l, x, mu, lv: (_bce(l, x) / len(x), _kl_sum(mu, lv) / len(x)), "kl_missing", "took the first one as the total"),
    ("extra", lambda l, x, mu, lv: _loss_lecture(l, x, mu, lv).detach(), "loss_no_gradient", "no gradient flows"),
    ("extra", lambda l, x, mu, lv: _loss_lecture(l, x, mu.detach(), lv.detach()), "loss_no_gradient_mu", "KL term is cut off"),
    ("extra", _loss_in_place_sigmoid, "modifies_input", "changed its input `logits` in place"),
    ("extra", lambda l, x, mu, lv: _bce(l, x) / len(x) + vae_lesson.kl_divergence(mu, lv).mean() / len(x), "kl_divided_twice", "divided by the batch size twice"),
    ("extra", lambda l, x, mu, lv: _loss_lecture(l, x, mu, lv) / len(x), "loss_divided_twice", "1/6 of the expected value"),
    ("extra", _loss_variance_detached, "loss_gradient_mismatch", "gradient with respect to logvar"),
    ("extra", lambda l, x, mu, lv: (_bce(l.detach(), x) + _kl_sum(mu, lv)) / len(x), "loss_no_gradient_logits", "no gradient reaches logits"),
    ("extra", lambda l, x, mu, lv: _loss_lecture(l, x, mu, lv.detach()), "loss_no_gradient_logvar", "no gradient reaches logvar"),
    ("extra", lambda l, x, mu, lv: (_bce(l, x) + 0.5 * torch.sum(mu**2 + lv - 1 - torch.log(lv))) / len(x), "loss_not_finite", "for ordinary inputs"),
    ("extra", lambda l, x, mu, lv: _bce(l, x, "none") / len(x) + _kl_sum(mu, lv) / len(x), "loss_not_scalar", "single number"),
    ("extra", lambda l, x, mu, lv: (_bce(l, x) + 0.5 * torch.sum(mu + lv.exp() - 1 - lv)) / len(x), "loss_wrong", "does not match the negative ELBO"),
    ("extra", _loss_zero, "loss_zero", "0 whatever the inputs"),
    ("extra", lambda l, x, mu, lv: _with_kl(((l - _flat(x)) ** 2).sum(), mu, lv, len(x)), "mse_logits", "between the logits and the images"),
    ("extra", lambda l, x, mu, lv: (_bce(l, x) / len(x) + _kl_sum(mu, lv)) / len(x), "reconstruction_divided_twice", "divided by the batch size twice"),
    ("extra", lambda l, x, mu, lv: _kl_sum(mu, lv) / len(x), "reconstruction_missing", "no reconstruction term"),
    ("extra", lambda l, x, mu, lv: (-_bce(l, x) + _kl_sum(mu, lv)) / len(x), "reconstruction_sign", "wrong sign"),
    ("extra", lambda l, x, mu, lv: _bce(l, x) / 128 + vae_lesson.kl_divergence(mu, lv).mean(), "reconstruction_scaled", "0.0469 times"),
    ("14: saturated logits", _loss_log_sigmoid, "loss_log_sigmoid", "the log is taken of sigmoid(logits) directly"),
]


# Right answers that are inexact only at extreme inputs: they pass, with a caution naming the range.
CAUTIONS = [
    ("14: saturated logits", _loss_probabilities, "loss_inexact_saturated", "clamps each log at -100"),
    ("14: saturated logits", _loss_log_sigmoid_epsilon, "loss_inexact_saturated", "an epsilon is added before the log"),
]


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", CAUTIONS, ids=[c[2] for c in CAUTIONS])
def test_vae_loss_inexact_only_at_extremes_passes_with_a_caution(issue, fn, diagnosis, phrase):
    result = check_vae_loss(fn)
    assert result.passed and result.diagnosis == diagnosis, result
    assert "Caution: " in result.message and phrase in result.message


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_vae_loss_passes(name):
    result = check_vae_loss(CORRECT[name])
    assert result.passed, str(result)


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", MISTAKES, ids=[m[2] + "-" + m[0] for m in MISTAKES])
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
    result = check_vae_loss(MISTAKES[0][1])
    assert "784 times too small" in result.message
    assert "your reconstruction part is" in result.message and "against a KL of" in result.message
