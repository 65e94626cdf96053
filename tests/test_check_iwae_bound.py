"""vae_lesson.checks.iwae_bound: a catalogue of student answers, each wrong one named for what it is.

Every buggy implementation in MISTAKES makes one known mistake and must fail with its own diagnosis
(a stable code plus a phrase of the message the student reads); every variant in CORRECT, written
the ways students really write them, must pass.
"""

import math

import numpy as np
import pytest
import torch

from vae_lesson.checks import check_iwae_bound

from check_helpers import assert_fails, stub


def _max_trick(log_weights):
    top = log_weights.max(dim=0, keepdim=True).values
    return top[0] + torch.log(torch.exp(log_weights - top).mean(dim=0))


def _loop_over_images(log_weights):
    k = log_weights.shape[0]
    return torch.stack([torch.logsumexp(log_weights[:, n], dim=0) - math.log(k) for n in range(log_weights.shape[1])])


CORRECT = {
    "lesson": lambda lw: torch.logsumexp(lw, dim=0) - math.log(lw.shape[0]),
    "method_and_tensor_log": lambda lw: lw.logsumexp(0) - torch.log(torch.tensor(float(len(lw)))),
    "one_over_k_inside": lambda lw: torch.logsumexp(lw - math.log(lw.shape[0]), dim=0),
    "max_trick_by_hand": _max_trick,
    "special_logsumexp": lambda lw: torch.special.logsumexp(lw, dim=0) - np.log(lw.shape[0]),
    "loop_over_images": _loop_over_images,
    "float64_then_back": lambda lw: (torch.logsumexp(lw.double(), dim=0) - math.log(lw.shape[0])).float(),
}


def _log_mean_exp_float64(log_weights):
    return torch.log(torch.exp(log_weights.double()).mean(dim=0))


MISTAKES = [
    ("exp", lambda lw: torch.log(torch.exp(lw).mean(dim=0)), "exp_underflow", "underflows to 0"),
    ("exp", _log_mean_exp_float64, "exp_underflow", "-745 in float64"),
    ("elbo", lambda lw: lw.mean(dim=0), "elbo_mean", "that is the ELBO"),
    ("log k", lambda lw: torch.logsumexp(lw, dim=0), "log_k_missing", "without the 1/k"),
    ("log k", lambda lw: torch.logsumexp(lw, dim=0) + math.log(lw.shape[0]), "log_k_added", "added instead of subtracted"),
    ("log k", lambda lw: torch.logsumexp(lw, dim=0) - lw.shape[0], "k_not_log_k", "instead of log k"),
    ("max", lambda lw: lw.max(dim=0).values, "max_only", "largest log-weight"),
    ("axis", lambda lw: torch.logsumexp(lw, dim=1) - math.log(lw.shape[1]), "wrong_axis", "over the N = 4 images"),
    ("axis", lambda lw: torch.logsumexp(lw.flatten(), dim=0) - math.log(lw.numel()), "not_per_image", "single number"),
    ("axis", lambda lw: torch.logsumexp(lw, dim=0, keepdim=True) - math.log(lw.shape[0]), "wrong_shape", "(1, 4)"),
    ("other", lambda lw: torch.logsumexp(lw, dim=0) - math.log(lw.shape[0]) + 0.5, "wrong_value", "not in any of the ways"),
    ("input", lambda lw: lw.sub_(math.log(lw.shape[0])).logsumexp(0), "modifies_input", "in place"),
    ("type", lambda lw: np.logaddexp.reduce(lw.numpy(), axis=0) - np.log(len(lw)), "returns_wrong_type", "ndarray"),
]


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_iwae_bound_passes(name):
    result = check_iwae_bound(CORRECT[name])
    assert result.passed, str(result)


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", MISTAKES, ids=[m[2] + "-" + m[0] for m in MISTAKES])
def test_iwae_bound_mistake_is_named(issue, fn, diagnosis, phrase):
    assert_fails(check_iwae_bound(fn), diagnosis, phrase)


def test_iwae_bound_stub_is_not_done():
    result = check_iwae_bound(stub)
    assert result.diagnosis == "not_done", result


def test_new_checks_are_exported_under_their_names():
    import vae_lesson
    import vae_lesson.checks

    for name in ("check_vae_model", "check_iwae_bound", "check_gaussian_fit_kl"):
        assert getattr(vae_lesson, name) is getattr(vae_lesson.checks, name)
    assert vae_lesson.iwae_bound is vae_lesson.likelihood.iwae_bound
