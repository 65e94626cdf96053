"""Check for the exercise ``kl_divergence(mu, logvar) -> kl``, one KL per example.

KL(N(mu, sigma^2) || N(0, I)) = 0.5 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2). The check
compares the student's values on a (3, 5) probe with the closed form and with what each known
mistake gives, then checks the gradients and the behaviour at extreme logvar.
"""

from types import SimpleNamespace

import torch

from ..kl import kl_divergence
from .errors import ELEMENTWISE, ErrorHint
from .harness import Mistake, close, codes, run_check, shape, snapshot, values

FORMULA = "kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)   # shape (batch,)"
_SIZES = "Don't hard-code sizes: the check uses a batch of 3 and a latent size of 5; sum with .sum(dim=-1)."
ERROR_HINTS = (
    ErrorHint((IndexError,), lambda f: f.entered, _SIZES),
    ErrorHint((RuntimeError,), lambda f: f.called in ELEMENTWISE, _SIZES),
)


def probe_inputs():
    """(3, 5) mu and logvar: a batch size unlike the latent size, so reductions show in the shape."""
    generator = torch.Generator().manual_seed(7)
    mu = torch.randn(3, 5, generator=generator) * 1.2
    logvar = torch.randn(3, 5, generator=generator)
    return mu, logvar


def _sum(terms):
    return 0.5 * terms.sum(dim=-1)


_BOTH_FORMS = "0.5 * sum(mu^2 + exp(logvar) - 1 - logvar), or -0.5 * sum(1 + logvar - mu^2 - exp(logvar))."

# Mistakes recognised by value, one row each: (code, what it computes from float64 (mu, logvar), message, hint).
_BY_VALUE = (
    ("kl_sign_flipped", lambda mu, lv: -kl_divergence(mu, lv),
     "Your KL is the expected value with the sign flipped: it comes out negative, and a KL divergence is "
     "never negative. In the form -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) the minus in front matters.",
     "Either keep the leading minus of -0.5 * sum(1 + logvar - mu^2 - exp(logvar)), or write "
     "0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)."),
    ("kl_half_missing", lambda mu, lv: 2 * kl_divergence(mu, lv),
     "Your KL is twice the expected value: the factor 1/2 in front of the sum is missing.",
     "KL = 0.5 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)."),
    ("kl_sign_and_half", lambda mu, lv: -2 * kl_divergence(mu, lv),
     "Your KL is -2 times the expected value: both the sign is flipped and the factor 1/2 is missing.",
     "Write 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar), or -0.5 * sum(1 + logvar - mu^2 - exp(logvar))."),
    ("kl_mean_over_latent", lambda mu, lv: kl_divergence(mu, lv) / mu.shape[-1],
     "Your KL is averaged over the latent dimensions instead of summed (it is 1/5 of the expected value "
     "with the check's 5 latent dimensions). The KL of independent dimensions adds up; averaging makes "
     "the term shrink as the latent space grows.",
     "Use .sum(dim=-1) (or torch.sum(..., dim=1)), not .mean(dim=-1)."),
    ("kl_mu_not_squared", lambda mu, lv: _sum(mu + lv.exp() - 1 - lv),
     "Your KL uses mu where mu^2 belongs: mu is not squared, so negative means lower the KL.",
     "The mean term is mu.pow(2) (or mu ** 2, mu * mu)."),
    ("kl_exp_logvar_swapped", lambda mu, lv: _sum(mu**2 + lv - 1 - lv.exp()),
     "Your KL has logvar.exp() and logvar swapped: the variance sigma^2 = exp(logvar) goes where "
     "log sigma^2 = logvar belongs, and the other way round.",
     "The terms are + sigma^2 = + logvar.exp() and - log sigma^2 = - logvar."),
    ("kl_variance_for_log_variance", lambda mu, lv: _sum(mu**2 + lv.exp() - 1 - lv.exp()),
     "Your KL uses the variance exp(logvar) where its log is needed: the - log sigma^2 term is written as "
     "- exp(logvar), so the two variance terms cancel and only 0.5 * sum(mu^2 - 1) is left.",
     "log sigma^2 is logvar itself: - log sigma^2 = - logvar."),
    ("kl_log_std_for_log_variance", lambda mu, lv: _sum(mu**2 + lv.exp() - 1 - 0.5 * lv),
     "Your KL uses log sigma = 0.5 * logvar where log sigma^2 = logvar belongs.",
     "The last term is - log sigma^2 = - logvar (no 0.5)."),
    ("kl_std_for_variance", lambda mu, lv: _sum(mu**2 + (0.5 * lv).exp() - 1 - lv),
     "Your KL uses the standard deviation sigma = exp(0.5 * logvar) where the variance sigma^2 = exp(logvar) belongs.",
     "The variance term is sigma^2 = logvar.exp()."),
    ("kl_logvar_as_log_std", lambda mu, lv: _sum(mu**2 + (2 * lv).exp() - 1 - 2 * lv),
     "Your KL is the closed form for logvar = log sigma, the log standard deviation (the convention of some "
     "other courses and papers): 0.5 * sum(mu^2 + exp(2 * logvar) - 1 - 2 * logvar). Here the encoder's "
     "logvar is log sigma^2, the log of the variance.",
     "With logvar = log sigma^2 there is no factor 2: sigma^2 = exp(logvar) and log sigma^2 = logvar."),
    ("kl_mu_missing", lambda mu, lv: _sum(lv.exp() - 1 - lv),
     "Your KL has no mu^2 term: 0.5 * sum(exp(logvar) - 1 - logvar) measures only the spread, so nothing "
     "pulls the means towards 0 and the codes can drift anywhere.",
     "Add mu^2: 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)."),
    ("kl_arguments_swapped", lambda mu, lv: kl_divergence(lv, mu),
     "Your KL is the closed form with mu and logvar swapped: the check calls fn(mu, logvar), mu first.",
     "Keep the order of the signature: def kl_divergence(mu, logvar)."),
    ("kl_minus_one_missing", lambda mu, lv: _sum(mu**2 + lv.exp() - lv),
     "Your KL is too large by 0.5 per latent dimension, for every example: the - 1 inside the sum is missing. "
     "Without it the KL of the prior with itself (mu = 0, logvar = 0) would be 0.5 per dimension instead of 0.",
     "0.5 * sum(mu^2 + exp(logvar) - 1 - logvar): the - 1 is summed over the latent dimensions too."),
    ("kl_one_sign", lambda mu, lv: _sum(mu**2 + lv.exp() + 1 - lv),
     "Your KL is too large by 1 per latent dimension: the constant has the wrong sign (+ 1 where - 1 belongs).",
     _BOTH_FORMS),
    ("kl_logvar_sign", lambda mu, lv: _sum(mu**2 + lv.exp() - 1 + lv),
     "Your KL has the logvar term with the wrong sign: + log sigma^2 where - log sigma^2 belongs.",
     _BOTH_FORMS),
    ("kl_mu_sign", lambda mu, lv: _sum(-(mu**2) + lv.exp() - 1 - lv),
     "Your KL has the mu^2 term with the wrong sign: moving the mean away from 0 should raise the KL, yours lowers it.",
     "In -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) the mu^2 is subtracted inside the brackets."),
    ("kl_exp_sign", lambda mu, lv: _sum(mu**2 - lv.exp() - 1 - lv),
     "Your KL has the exp(logvar) term with the wrong sign: + sigma^2 belongs in "
     "0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2).",
     "In -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) the exp(logvar) is subtracted inside the brackets."),
)

# What each mistake computes, by code (the test checks that no two are alike on the probe).
VALUE_OF = {code: value for code, value, _, _ in _BY_VALUE}


def _value_is(code):
    return lambda f: close(f.kl, VALUE_OF[code](f.mu, f.logvar))


# Facts: kl (the student's values, float64), mu, logvar (float64), ratio (kl / closed form).
VALUE_MISTAKES = tuple(Mistake(code, _value_is(code), message, hint) for code, _, message, hint in _BY_VALUE) + (
    Mistake("kl_scaled", lambda f: bool((f.ratio - f.ratio[0]).abs().max() < 1e-3 * f.ratio[0].abs()),
            "Your KL is {factor:.4g} times the expected value for every example: a constant factor is off.",
            "Check the 0.5 in front, and sum (not average) over the latent dimensions."),
    Mistake("kl_wrong", lambda f: True, "Your KL does not match the closed form.",
            "Compare term by term with the formula below."),
)

# Facts: kl, batch, latent, per_dimension (the closed form's terms, (batch, latent)).
SHAPE_MISTAKES = (
    Mistake("kl_summed_over_batch",
            lambda f: f.kl.numel() == 1 and close(f.kl.reshape(()), f.per_dimension.sum()),
            "Your function returns one number, the KL summed over the whole batch; this exercise asks for one "
            "KL per example, shape ({batch},). (The loss averages it over the batch later.)",
            "Sum over the latent dimensions only: .sum(dim=-1) (or dim=1), not .sum()."),
    Mistake("kl_mean_over_batch",
            lambda f: f.kl.numel() == 1 and close(f.kl.reshape(()), f.per_dimension.sum(dim=-1).mean()),
            "Your function returns one number, the KL averaged over the batch; this exercise asks for one KL "
            "per example, shape ({batch},). (Averaging over the batch is the loss's job.)",
            "Sum over the latent dimensions only: .sum(dim=-1), and leave the batch dimension alone."),
    Mistake("kl_mean_over_everything",
            lambda f: f.kl.numel() == 1 and close(f.kl.reshape(()), f.per_dimension.mean()),
            "Your function returns one number, the mean over every entry (batch and latent dimensions "
            "together): the exercise asks for one KL per example, shape ({batch},), summed over the latent dimensions.",
            "Use .sum(dim=-1) rather than .mean()."),
    Mistake("kl_scalar", lambda f: f.kl.numel() == 1,
            "Your function returns one number for the whole batch; the exercise asks for one KL per example, "
            "shape ({batch},).",
            "Sum over the latent dimensions only: .sum(dim=-1)."),
    Mistake("kl_summed_over_wrong_dim", lambda f: tuple(f.kl.shape) == (f.latent,),
            "Your KL has shape ({latent},), one value per latent dimension: {which} The exercise asks for one "
            "KL per example, shape ({batch},).",
            "mu and logvar are (batch, latent_dim): sum with .sum(dim=1) or .sum(dim=-1)."),
    Mistake("kl_not_summed", lambda f: tuple(f.kl.shape) == (f.batch, f.latent),
            "Your KL has shape ({batch}, {latent}), one value per example and latent dimension: it is not summed "
            "over the latent dimensions. The KL of the whole latent vector is the sum of the per-dimension KLs, "
            "one number per example, shape ({batch},).",
            "Add .sum(dim=-1) at the end."),
    Mistake("kl_keepdim", lambda f: tuple(f.kl.shape) == (f.batch, 1),
            "Your KL has shape ({batch}, 1); the exercise asks for shape ({batch},). A trailing dimension of size "
            "1 (keepdim=True) broadcasts badly later: adding a ({batch},) reconstruction term to it gives a "
            "({batch}, {batch}) matrix.",
            "Sum with .sum(dim=-1) without keepdim=True (or .squeeze(-1) the result)."),
    Mistake("kl_wrong_shape", lambda f: tuple(f.kl.shape) != (f.batch,),
            "Your KL has shape {kl_shape}; with mu and logvar of shape ({batch}, {latent}) the exercise asks "
            "for one KL per example, shape ({batch},).",
            "Compute the per-dimension terms elementwise, then .sum(dim=-1)."),
)

NOT_FINITE_MISTAKES = (
    Mistake("kl_not_finite", lambda f: True,
            "Your KL is NaN or infinite for ordinary inputs (logvar between {low:.2f} and {high:.2f}). A log or "
            "square root of logvar does this: logvar is already the log of the variance and is negative "
            "whenever sigma < 1.",
            "The formula needs logvar itself and exp(logvar), no further log or sqrt."),
)

# Facts: kl_requires_grad, grads_right.
GRADIENT_MISTAKES = (
    Mistake("kl_no_gradient", lambda f: not f.kl_requires_grad,
            "Your KL has the right values, but no gradient flows through it: it was computed outside autograd "
            "(.item(), float(), numpy, .detach(), .data or torch.no_grad). The loss needs this gradient to pull "
            "the encoder towards the prior.",
            "Use torch operations on mu and logvar directly."),
    Mistake("kl_gradient_mismatch", lambda f: not f.grads_right,
            "Your KL has the right values, but its gradients do not match the closed form's (d KL / d mu = mu, "
            "d KL / d logvar = 0.5 * (exp(logvar) - 1)): part of it is detached from autograd.",
            "Build it from mu and logvar with torch operations only, no .detach() or .data."),
)

# At logvar = -120 (exp underflows to 0 in float32) and 60. Facts: kl, expected, logvar, bad.
EXTREME_MISTAKES = (
    Mistake("kl_wrong_shape", lambda f: tuple(f.kl.shape) != (2,),
            "For a batch of 2 with 3 latent dimensions your KL has shape {kl_shape}, not (2,): the function "
            "seems to depend on the batch or latent size the first test used.",
            "Don't hard-code sizes; sum with .sum(dim=-1)."),
)
# A KL that is right for ordinary values and wrong only there is right, written as exp-then-log:
# torch.distributions.kl_divergence between two Normals computes log(scale ** 2) the same way. It
# passes, with a caution naming the range.
EXTREME_CAUTIONS = (
    Mistake("kl_not_finite_large_logvar", lambda f: f.bad is not None,
            "your KL is right for ordinary values, but it is {bad_value} for an example with logvar = {extreme:g}, "
            "where the closed form 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar) is finite ({bad_expected:.6g}). "
            "In float32 exp(logvar) loses digits below logvar = -87 and is 0 below -104, so a formula that "
            "takes log(exp(logvar)) or log(std ** 2) is off there and then log(0) = -inf (torch.distributions.kl_divergence "
            "between two Normals computes log(std ** 2) the same way). An encoder rarely goes that far, but "
            "one inf makes the whole loss inf.",
            "Use logvar itself wherever log sigma^2 appears; never exponentiate and then take the log."),
    Mistake("kl_inaccurate_large_logvar", lambda f: not close(f.kl, f.expected, rtol=1e-4, atol=1e-3),
            "your KL is right for ordinary values but inexact for large |logvar|: for logvar = {logvar_values} "
            "it gives {kl_values}, the closed form {expected_values} (an epsilon added before a log changes "
            "log sigma^2 where sigma^2 is tiny).",
            "Use logvar itself wherever log sigma^2 appears, and exp(logvar) for sigma^2."),
)

CODES = codes(VALUE_MISTAKES, SHAPE_MISTAKES, NOT_FINITE_MISTAKES, GRADIENT_MISTAKES, EXTREME_MISTAKES,
              EXTREME_CAUTIONS)


def check_kl_divergence(fn):
    """Check a student's ``kl_divergence(mu, logvar) -> kl``.

    mu, logvar: (batch, latent_dim). Returns (batch,): KL(N(mu, diag(exp(logvar))) || N(0, I))
    for each example, 0.5 * sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j), summed over the latent
    dimensions (not averaged, and not summed over the batch). Returns a CheckResult.
    """
    return run_check("kl_divergence(mu, logvar)", FORMULA, fn, _body, "check_kl_divergence",
                     "fn(mu, logvar)", ERROR_HINTS)


def _call(check, mu, logvar):
    kl = check.call(mu, logvar, described=f"fn(mu, logvar) with mu and logvar of shape {shape(mu)}")
    return check.tensor(kl, "kl", f"one value per example, shape ({mu.shape[0]},)")


def _body(check):
    mu, logvar = probe_inputs()
    inputs = snapshot(mu=mu, logvar=logvar)
    kl = _call(check, mu, logvar)
    check.unmodified(inputs)
    mu64, logvar64 = mu.double(), logvar.double()
    expected = kl_divergence(mu64, logvar64)
    kl = kl.detach().double()
    batch, latent = mu.shape
    per_dimension = 0.5 * (mu64**2 + logvar64.exp() - 1 - logvar64)
    which = ("it is summed over the batch (dim=0) instead of over the latent dimensions (dim=1)."
             if tuple(kl.shape) == (latent,) and close(kl, per_dimension.sum(dim=0))
             else "the sum runs over the wrong dimension.")
    check.fail_first(SHAPE_MISTAKES, SimpleNamespace(kl=kl, batch=batch, latent=latent, per_dimension=per_dimension,
                                                     which=which, kl_shape=shape(kl)))
    if not torch.isfinite(kl).all():
        check.fail_with(NOT_FINITE_MISTAKES[0], SimpleNamespace(low=float(logvar.min()), high=float(logvar.max())))
    if not close(kl, expected):
        seen = f"\n(For the check's 3 examples your KL is {values(kl)}; the closed form gives {values(expected)}.)"
        ratio = kl / expected
        check.fail_first(VALUE_MISTAKES, SimpleNamespace(kl=kl, mu=mu64, logvar=logvar64, ratio=ratio,
                                                         factor=float(ratio[0])), extra=seen)
    _gradients(check, mu, logvar)
    _extreme_logvar(check)
    matches = ("Your KL matches the closed form 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar) for every example, "
               "summed over the latent dimensions; gradients flow")
    return matches + ("." if check.cautions else ", and it stays finite for large |logvar|.")


def _gradients(check, mu, logvar):
    mu = mu.clone().requires_grad_(True)
    logvar = logvar.clone().requires_grad_(True)
    kl = _call(check, mu, logvar)
    facts = SimpleNamespace(kl_requires_grad=kl.requires_grad, grads_right=False)
    if kl.requires_grad:
        kl.sum().backward()
        facts.grads_right = (mu.grad is not None and logvar.grad is not None and close(mu.grad, mu.detach())
                             and close(logvar.grad, 0.5 * (logvar.detach().exp() - 1)))
    check.fail_first(GRADIENT_MISTAKES, facts)


def _extreme_logvar(check):
    # exp(-120) underflows to 0 in float32. The closed form in logvar stays finite there;
    # forms that take log(exp(logvar)) or log(std ** 2) get log(0) = -inf.
    mu = torch.tensor([[0.5, -1.0, 0.2], [1.0, 0.0, -0.3]])
    logvar = torch.tensor([[-120.0, 0.5, -1.0], [60.0, -0.3, 2.0]])
    kl = _call(check, mu, logvar).detach().double()
    expected = kl_divergence(mu.double(), logvar.double())
    facts = SimpleNamespace(kl=kl, expected=expected, kl_shape=shape(kl), bad=None,
                            logvar_values=values(logvar), kl_values=values(kl), expected_values=values(expected))
    if tuple(kl.shape) == (2,) and not torch.isfinite(kl).all():
        bad = int((~torch.isfinite(kl)).nonzero()[0, 0])
        facts.bad, facts.bad_value, facts.bad_expected = bad, float(kl[bad]), float(expected[bad])
        facts.extreme = float(logvar[bad][logvar[bad].abs().argmax()])
    check.fail_first(EXTREME_MISTAKES, facts)
    check.caution_first(EXTREME_CAUTIONS, facts)
