"""vae_lesson.checks.active_units: a catalogue of student answers, each wrong one named for what it is.

Every buggy implementation in MISTAKES makes one known mistake and must fail with its own diagnosis;
every variant in CORRECT, written the ways students really write them, must pass.
"""

import numpy as np
import pytest
import torch

import vae_lesson
from vae_lesson.checks import NOT_DONE, active_units, check_active_units

from check_helpers import assert_fails, stub


def _numpy_cov(mu, threshold=0.01):
    variances = np.cov(mu.numpy(), rowvar=False).diagonal()
    return int((variances > threshold).sum())


def _loop(mu, threshold=0.01):
    count = 0
    for d in range(mu.shape[1]):
        column = mu[:, d]
        if ((column - column.mean()) ** 2).mean() > threshold:
            count += 1
    return count


CORRECT = {
    "reference": vae_lesson.active_units,
    "torch_var": lambda mu, threshold=0.01: int((mu.var(dim=0) > threshold).sum()),
    "biased_variance": lambda mu, threshold=0.01: int((mu.var(dim=0, correction=0) > threshold).sum()),
    "std_squared": lambda mu, threshold=0.01: int((mu.std(0) ** 2 > threshold).sum().item()),
    "numpy_var": lambda mu, threshold=0.01: int(np.sum(np.var(mu.numpy(), axis=0) > threshold)),
    "numpy_cov": _numpy_cov,
    "count_nonzero_tensor": lambda mu, threshold=0.01: torch.count_nonzero(mu.var(0) > threshold),
    "numpy_integer": lambda mu, threshold=0.01: np.sum(mu.numpy().var(axis=0) > threshold),
    "greater_or_equal": lambda mu, threshold=0.01: int((mu.var(0) >= threshold).sum()),
    "loop_over_dimensions": _loop,
    "python_sum": lambda mu, threshold=0.01: sum(v > threshold for v in mu.var(dim=0).tolist()),
}


def _in_place(mu, threshold=0.01):
    mu -= mu.mean(dim=0)  # centres the caller's tensor
    return int((mu.pow(2).mean(dim=0) > threshold).sum())


MISTAKES = [
    ("variance over the latent dimensions", lambda mu, threshold=0.01: int((mu.var(dim=1) > threshold).sum()),
     "variance_over_latent_dims", "over its 13 latent dimensions"),
    ("standard deviation", lambda mu, threshold=0.01: int((mu.std(dim=0) > threshold).sum()),
     "std_not_variance", "compared the standard deviation"),
    ("the KL instead of the means", lambda mu, threshold=0.01: int(((0.5 * mu ** 2).mean(dim=0) > threshold).sum()),
     "kl_not_means", "KL-like term"),
    ("mean of mu squared", lambda mu, threshold=0.01: int((mu.pow(2).mean(dim=0) > threshold).sum()),
     "second_moment_not_variance", "without subtracting the mean"),
    ("the inactive ones", lambda mu, threshold=0.01: int((mu.var(dim=0) <= threshold).sum()),
     "counts_inactive", "number of inactive dimensions"),
    ("threshold ignored", lambda mu, threshold=0.01: int((mu.var(dim=0) > 0.01).sum()),
     "threshold_ignored", "ignores its `threshold` argument"),
    ("hard-coded answer", lambda mu, threshold=0.01: 5, "active_units_wrong", "the probe's 13 dimensions have 4"),
    ("depends on the first probe's size", lambda mu, threshold=0.01: 4 if threshold < 0.1 else 3,
     "active_units_wrong", "second probe"),
    ("boolean mask", lambda mu, threshold=0.01: mu.var(dim=0) > threshold, "returns_mask", "a mask of shape (13,)"),
    ("0/1 mask as floats", lambda mu, threshold=0.01: (mu.var(dim=0) > threshold).float(), "returns_mask",
     "the right ones, as it happens"),
    ("one value per image", lambda mu, threshold=0.01: mu.var(dim=1) > threshold, "returns_per_image",
     "one per image"),
    ("the variances", lambda mu, threshold=0.01: mu.var(dim=0), "returns_variances", "one per latent dimension"),
    ("a fraction", lambda mu, threshold=0.01: (mu.var(dim=0) > threshold).float().mean().item(), "not_a_count",
     "one whole number"),
    ("nothing returned", lambda mu, threshold=0.01: None, "not_a_count", "None"),
    ("mu changed in place", _in_place, "modifies_input", "changed its input `mu` in place"),
]


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_active_units_passes(name):
    result = check_active_units(CORRECT[name])
    assert result.passed, result


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", MISTAKES, ids=[m[2] + "-" + m[0] for m in MISTAKES])
def test_active_units_mistake_is_named(issue, fn, diagnosis, phrase):
    assert_fails(check_active_units(fn), diagnosis, phrase)


def test_the_stub_is_not_done_yet():
    result = check_active_units(stub)
    assert result.status == NOT_DONE and result.diagnosis == "not_done" and not result.passed


def test_mistakes_are_distinguishable_on_the_probe():
    mu = active_units.probe_codes().double()
    right = tuple(vae_lesson.active_units(mu, t) for t in active_units.THRESHOLDS)
    counts = {code: value(mu) for code, value in active_units.VALUE_OF.items()}
    assert right == (4, 3)
    assert len(set(counts.values())) == len(counts) and right not in counts.values()


def test_exported_under_both_names():
    assert vae_lesson.check_active_units is vae_lesson.checks.check_active_units is check_active_units
