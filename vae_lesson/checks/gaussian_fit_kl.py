"""Check for the exercise ``gaussian_fit_kl(codes) -> kl``: KL(N(m, S) || N(0, I)) of the fitted Gaussian.

codes: (N, D). m is their mean, S their covariance (a full D x D matrix), and the KL to the prior
has the closed form 1/2 (tr S + m^T m - D - log det S). The check's codes are shifted, stretched,
squashed and correlated at once, so every part of the formula changes the answer, and a wrong
answer is compared with the value each classic mistake gives.
"""

import math
from types import SimpleNamespace

import torch

from ..metrics import gaussian_fit_kl
from .harness import Mistake, equals_wrong_answer, codes, run_check, shape, snapshot

FORMULA = (
    "m = codes.mean(dim=0);  S = torch.cov(codes.T);  "
    "0.5 * (torch.trace(S) + m @ m - D - torch.logdet(S))"
)
N_CODES, LATENT = 2000, 3
# Divisor N or N - 1 for S both count as right: with 2,000 codes they differ by well under 0.01 nats.
ATOL, RTOL = 0.01, 1e-3
HUGE = 1000.0  # nats: far beyond any mistake's value for the check's codes (the right one is about 2)


def probe_codes(index):
    """(2000, 3) codes: a shifted, stretched and correlated Gaussian cloud (float32)."""
    generator = torch.Generator().manual_seed(200 + index)
    mix = torch.tensor([[1.6, 0.0, 0.0], [0.9, 0.5, 0.0], [-0.3, 0.4, 0.8]]) * (1 + 0.3 * index)
    return torch.randn(N_CODES, LATENT, generator=generator) @ mix.T + torch.tensor([1.0, -0.5, 0.25])


def parts(z):
    """tr S, m^T m, D, log det S (float64) and the diagonal-only log det, of codes z (N, D)."""
    z = z.double()
    m = z.mean(dim=0)
    s = torch.cov(z.T)
    return SimpleNamespace(trace=float(torch.trace(s)), mean_sq=float(m @ m), d=z.shape[1],
                           logdet=float(torch.logdet(s)), logdet_diagonal=float(s.diagonal().log().sum()),
                           s=s, m=m)


def wrong_answers(z):
    """What each classic mistake returns for codes z (floats)."""
    p = parts(z)
    inverse = torch.linalg.inv(p.s)
    return {
        "diagonal_only": 0.5 * (p.trace + p.mean_sq - p.d - p.logdet_diagonal),
        "mean_missing": 0.5 * (p.trace - p.d - p.logdet),
        "minus_d_missing": 0.5 * (p.trace + p.mean_sq - p.logdet),
        "half_missing": p.trace + p.mean_sq - p.d - p.logdet,
        "logdet_sign": 0.5 * (p.trace + p.mean_sq - p.d + p.logdet),
        "logdet_missing": 0.5 * (p.trace + p.mean_sq - p.d),
        "std_for_variance": 0.5 * (float(p.s.diagonal().sqrt().sum()) + p.mean_sq - p.d - p.logdet),
        "reversed": 0.5 * (float(torch.trace(inverse)) + float(p.m @ inverse @ p.m) - p.d + p.logdet),
    }


# Facts: value (the number returned, float), expected, matching (names of wrong_answers it equals), d.
VALUE_MISTAKES = (
    Mistake("covariance_of_rows", lambda f: not math.isfinite(f.value) or abs(f.value) > HUGE,
            "Your result is {value:.6g} for codes whose fitted Gaussian has a KL of {expected:.4f}. The usual "
            "cause: torch.cov treats each ROW as a variable, so torch.cov(codes) is the {n} x {n} covariance "
            "between codes (singular, with a log det of -inf or rounding noise near it), not the {d} x {d} "
            "covariance between latent dimensions.",
            "Transpose first: S = torch.cov(codes.T), a (D, D) matrix."),
    equals_wrong_answer("diagonal_only",
            "Your result uses only the variance of each latent dimension (the diagonal of S), as if the dimensions "
            "were independent. The check's codes are correlated; the fitted Gaussian N(m, S) has the full "
            "covariance, and its log det S is smaller than the sum of the log variances when dimensions are "
            "correlated, so your KL is too small by {diagonal_gap:.3f} nats.",
            "S = torch.cov(codes.T) (the full D x D matrix), and use torch.logdet(S) rather than the log of "
            "the variances."),
    equals_wrong_answer("mean_missing",
            "Your result leaves out the mean: the m^T m term is missing, so codes shifted away from 0 cost "
            "nothing. The check's codes have mean {mean_values}.",
            "Add m @ m, with m = codes.mean(dim=0)."),
    equals_wrong_answer("minus_d_missing",
            "Your result is {half_d:g} nats too high: the - D is missing (D = {d} latent dimensions), so even "
            "codes drawn from N(0, I) itself would get a KL of {half_d:g} instead of 0.",
            "Subtract D = codes.shape[1] inside the bracket."),
    equals_wrong_answer("half_missing",
            "Your result is twice the KL: the factor 1/2 is missing.",
            "KL = 0.5 * (tr S + m^T m - D - log det S)."),
    equals_wrong_answer("logdet_sign",
            "Your result adds log det S instead of subtracting it.",
            "KL = 0.5 * (tr S + m^T m - D - log det S): a squashed cloud (det S < 1) must cost more, not less."),
    equals_wrong_answer("logdet_missing",
            "Your result has no log det S term, so it can be negative: a squashed cloud (tiny S) would get a KL "
            "near -D/2 instead of a large one.",
            "Subtract torch.logdet(S) inside the bracket."),
    equals_wrong_answer("std_for_variance",
            "Your trace term sums the standard deviations; tr S is the sum of the variances (the diagonal of "
            "the covariance).",
            "torch.trace(S) with S = torch.cov(codes.T)."),
    equals_wrong_answer("reversed",
            "Your result is the KL the other way round, KL(N(0, I) || N(m, S)). The table measures how far the "
            "codes' Gaussian is from the prior, KL(N(m, S) || N(0, I)): with the prior second, the formula has "
            "S and m, not their inverses.",
            "KL(N(m, S) || N(0, I)) = 0.5 * (tr S + m^T m - D - log det S)."),
    Mistake("wrong_value", lambda f: True,
            "Your result is {value:.4f}; for the check's codes the KL of the fitted Gaussian is {expected:.4f} "
            "(tr S {trace:.4f}, m^T m {mean_sq:.4f}, D {d}, log det S {logdet:.4f}).",
            "Print each part and compare: 0.5 * (tr S + m^T m - D - log det S)."),
)

# Facts: value (what came back), d, n.
RETURN_MISTAKES = (
    Mistake("per_dimension", lambda f: isinstance(f.value, torch.Tensor) and tuple(f.value.shape) == (f.d,),
            "Your function returned {d} numbers, one per latent dimension; the KL of the fitted Gaussian is one "
            "number for the whole cloud of codes.",
            "Use the full covariance S = torch.cov(codes.T) and return one number."),
    Mistake("not_one_number", lambda f: isinstance(f.value, torch.Tensor) and f.value.numel() != 1,
            "Your function returned a tensor of shape {value_shape}; the KL is one number.",
            "Return 0.5 * (tr S + m^T m - D - log det S) as a float (or a 0-d tensor)."),
)

CODES = codes(RETURN_MISTAKES, VALUE_MISTAKES)


def check_gaussian_fit_kl(fn):
    """Check a student's ``gaussian_fit_kl(codes) -> kl``.

    codes: (N, D) latent codes. Fit N(m, S) (their mean and covariance) and return
    KL(N(m, S) || N(0, I)) = 1/2 (tr S + m^T m - D - log det S) in nats, as a float or a 0-d
    tensor (S with divisor N - 1 or N). Returns a CheckResult.
    """
    return run_check("gaussian_fit_kl(codes)", FORMULA, fn, _body, "check_gaussian_fit_kl", "fn(codes)")


def _number(check, value):
    """The returned KL as a float: a Python number, or a tensor holding one number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    check.fail_first(RETURN_MISTAKES, SimpleNamespace(value=value, d=LATENT, value_shape=shape(value)
                                                      if isinstance(value, torch.Tensor) else ""))
    value = check.tensor(value, "the KL", "one number (a float or a 0-d tensor)")
    return float(value.detach().reshape(()))


def _body(check):
    for index in range(2):
        z = probe_codes(index)
        inputs = snapshot(codes=z)
        value = _number(check, check.call(z, described=f"fn(codes) with codes of shape {shape(z)}"))
        check.unmodified(inputs)
        expected = gaussian_fit_kl(z.double())
        if abs(value - expected) > ATOL + RTOL * abs(expected):
            p = parts(z)
            answers = wrong_answers(z)
            matching = {name for name, wrong in answers.items() if abs(value - wrong) <= ATOL + RTOL * abs(wrong)}
            check.fail_first(VALUE_MISTAKES, SimpleNamespace(
                value=value, expected=expected, matching=matching, d=p.d, n=N_CODES, half_d=p.d / 2,
                diagonal_gap=expected - answers["diagonal_only"], mean_values=[round(float(v), 3) for v in p.m],
                trace=p.trace, mean_sq=p.mean_sq, logdet=p.logdet))
    return (
        "Your KL is that of the fitted Gaussian N(m, S) to N(0, I), with the full covariance S: "
        "1/2 (tr S + m^T m - D - log det S), for shifted, stretched and correlated codes."
    )
