"""vae_lesson.checks.gaussian_fit_kl: a catalogue of student answers, each wrong one named for what it is.

Every buggy implementation in MISTAKES makes one known mistake and must fail with its own diagnosis
(a stable code plus a phrase of the message the student reads); every variant in CORRECT, written
the ways students really write them, must pass.
"""

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from vae_lesson.checks import check_gaussian_fit_kl

from check_helpers import assert_fails, stub


def _lesson(codes):
    m = codes.mean(dim=0)
    s = torch.cov(codes.T)
    return (0.5 * (torch.trace(s) + m @ m - codes.shape[1] - torch.logdet(s))).item()


def _biased_covariance(codes):
    m = codes.mean(dim=0)
    centred = codes - m
    s = centred.T @ centred / len(codes)  # divisor N, not N - 1
    return 0.5 * (s.trace() + m.dot(m) - codes.shape[1] - torch.linalg.slogdet(s)[1])


def _distributions(codes):
    d = codes.shape[1]
    fitted = MultivariateNormal(codes.mean(dim=0), covariance_matrix=torch.cov(codes.T))
    return kl_divergence(fitted, MultivariateNormal(torch.zeros(d), torch.eye(d)))


def _numpy(codes):
    z = codes.numpy().astype(np.float64)
    m, s = z.mean(axis=0), np.cov(z, rowvar=False)
    return float(0.5 * (np.trace(s) + m @ m - z.shape[1] - np.linalg.slogdet(s)[1]))


def _eigenvalues(codes):
    eigenvalues = torch.linalg.eigvalsh(torch.cov(codes.T.double()))
    m = codes.double().mean(0)
    return 0.5 * float((eigenvalues - 1 - eigenvalues.log()).sum() + m.pow(2).sum())


CORRECT = {"lesson": _lesson, "biased_covariance": _biased_covariance, "distributions": _distributions,
           "numpy": _numpy, "eigenvalues": _eigenvalues}


def _formula(trace, mean_sq, d, logdet, half=0.5):
    return lambda codes: half * (trace(codes) + mean_sq(codes) - d(codes) - logdet(codes))


def _cov(codes):
    return torch.cov(codes.T)


TRACE = lambda z: torch.trace(_cov(z))  # noqa: E731
MEAN_SQ = lambda z: z.mean(0).pow(2).sum()  # noqa: E731
D = lambda z: z.shape[1]  # noqa: E731
LOGDET = lambda z: torch.logdet(_cov(z))  # noqa: E731


def _diagonal(codes):
    var = codes.var(dim=0)
    m = codes.mean(dim=0)
    return float(0.5 * (var + m ** 2 - 1 - var.log()).sum())


def _reversed(codes):
    d = codes.shape[1]
    fitted = MultivariateNormal(codes.mean(dim=0), covariance_matrix=torch.cov(codes.T))
    return kl_divergence(MultivariateNormal(torch.zeros(d), torch.eye(d)), fitted)


MISTAKES = [
    ("rows", lambda z: 0.5 * (torch.trace(torch.cov(z)) + MEAN_SQ(z) - D(z) - torch.logdet(torch.cov(z))), "covariance_of_rows", "torch.cov(codes) is the 2000 x 2000"),
    ("diag", _diagonal, "diagonal_only", "correlated"),
    ("diag", lambda z: 0.5 * (z.var(0) + z.mean(0) ** 2 - 1 - z.var(0).log()), "per_dimension", "one per latent dimension"),
    ("mean", _formula(TRACE, lambda z: 0.0, D, LOGDET), "mean_missing", "m^T m term is missing"),
    ("d", _formula(TRACE, MEAN_SQ, lambda z: 0, LOGDET), "minus_d_missing", "- D is missing"),
    ("half", _formula(TRACE, MEAN_SQ, D, LOGDET, half=1.0), "half_missing", "factor 1/2"),
    ("logdet", _formula(TRACE, MEAN_SQ, D, lambda z: -LOGDET(z)), "logdet_sign", "adds log det S"),
    ("logdet", _formula(TRACE, MEAN_SQ, D, lambda z: 0.0), "logdet_missing", "no log det S"),
    ("std", _formula(lambda z: z.std(0).sum(), MEAN_SQ, D, LOGDET), "std_for_variance", "standard deviations"),
    ("reversed", _reversed, "reversed", "other way round"),
    ("other", _formula(TRACE, MEAN_SQ, D, LOGDET, half=0.4), "wrong_value", "tr S"),
    ("shape", lambda z: torch.stack([torch.tensor(_lesson(z))] * 2), "not_one_number", "(2,)"),
    ("input", lambda z: _lesson(z.sub_(z.mean(0))), "modifies_input", "in place"),
    ("type", lambda z: str(_lesson(z)), "returns_wrong_type", "str"),
]


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_gaussian_fit_kl_passes(name):
    result = check_gaussian_fit_kl(CORRECT[name])
    assert result.passed, str(result)


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", MISTAKES, ids=[m[2] for m in MISTAKES])
def test_gaussian_fit_kl_mistake_is_named(issue, fn, diagnosis, phrase):
    assert_fails(check_gaussian_fit_kl(fn), diagnosis, phrase)


def test_gaussian_fit_kl_stub_is_not_done():
    assert check_gaussian_fit_kl(stub).diagnosis == "not_done"
