"""Check for the exercise ``reparameterize(mu, logvar) -> z``: z = mu + exp(0.5 * logvar) * eps.

mu, logvar, z: (batch, latent_dim). The check feeds one (mu, logvar) pair per latent dimension,
repeated down the batch, so the rows of z are samples of one distribution whose mean, spread and
shape can be measured; then it differentiates z.sum() to see the gradients reach mu and logvar.
"""

import math
from types import SimpleNamespace

import torch

from . import normal_draws
from .errors import ELEMENTWISE, ErrorHint
from .harness import Mistake, close, codes, describe_error, run_check, shape, snapshot, values

FORMULA = "z = mu + torch.exp(0.5 * logvar) * eps,   eps = torch.randn_like(mu)"
# The logvars make each wrong std formula below give a different spread in at least one
# dimension (by 20% or more).
MU = (1.5, -2.0, 0.5, 3.0)
LOGVAR = (-2.0, -0.5, 0.5, 1.5)
ROWS = 8192
STD_TOLERANCE = 0.06  # relative; the sample std of 8192 draws is within 0.8% (one sd) of the truth

SHAPE_MISTAKES = (
    Mistake(
        "wrong_shape",
        lambda f: f.z.shape != f.mu.shape,
        "Your z has shape {z_shape}, but mu and logvar have shape {mu_shape}: z must have the shape of mu, "
        "one sample per example and latent dimension.{why}",
        "Make the noise with torch.randn_like(mu) so it matches mu's shape, and don't reduce over any dimension.",
    ),
)

NOT_FINITE_MISTAKES = (
    Mistake(
        "std_is_sqrt_logvar",
        lambda f: torch.equal(f.bad_columns, f.logvar[0] < 0),
        "Your z is NaN exactly where logvar is negative: it looks like the square root of logvar "
        "(torch.sqrt(logvar) or logvar ** 0.5) is used as the standard deviation. logvar is log(sigma^2), "
        "the log of the variance; it is negative whenever sigma < 1, and its square root is not sigma.",
        "Convert logvar with the exponential: sigma = exp(0.5 * logvar).",
    ),
    Mistake(
        "not_finite",
        lambda f: True,
        f"Your z contains NaN or infinite values for ordinary inputs (mu = {list(MU)}, logvar = "
        f"{list(LOGVAR)} per latent dimension).",
        "Look for a log or square root of a negative number, or a division by zero.",
    ),
)

# Facts: noise (a normal_draws problem or None), zero (z is exactly mu), eps_is_one, and the
# measured correlation, kurtosis and beyond_two.
NOISE_MISTAKES = (
    Mistake(
        "no_noise_z_is_mu",
        lambda f: f.zero,
        "Your z is exactly mu: no noise is added, so every sample is the mean and the decoder never sees "
        "the spread the encoder asks for (the model becomes a plain autoencoder).",
        "Draw eps = torch.randn_like(mu) and return mu + sigma * eps.",
    ),
    Mistake(
        "no_noise_mu_plus_std",
        lambda f: f.noise == normal_draws.FIXED and f.eps_is_one,
        "Your z is mu + sigma, the same for every example and every call: that is the noise eps replaced "
        "by 1. The trick needs a fresh random eps ~ N(0, I) each time.",
        "Draw eps = torch.randn_like(sigma) and return mu + sigma * eps.",
    ),
    Mistake(
        "no_noise",
        lambda f: f.noise == normal_draws.FIXED,
        "Your z is the same for every example and every call, even with a different random seed: there "
        "is no randomness in it, so it is not a sample from N(mu, sigma^2).",
        "Draw eps = torch.randn_like(mu) inside the function and return mu + sigma * eps.",
    ),
    Mistake(
        "seeded_inside",
        lambda f: f.noise == normal_draws.SEEDED,
        "Your z is random across the batch, but it comes out the same on every call even when the "
        "caller's random seed changes: the function seems to set its own seed (torch.manual_seed inside "
        "it, or a new torch.Generator). Then every training step reuses the same noise.",
        "Remove the seeding from the function; draw eps = torch.randn_like(mu) from the global generator.",
    ),
    Mistake(
        "shared_noise_single",
        lambda f: f.noise == normal_draws.ONE_VALUE,
        "Your z uses one single noise value for everything: every example and every latent dimension gets "
        "the same eps (like torch.randn(1)). Each entry of z needs its own independent draw.",
        "Draw eps with the shape of mu: eps = torch.randn_like(mu).",
    ),
    Mistake(
        "shared_noise_batch",
        lambda f: f.noise == normal_draws.ONE_ROW,
        "Your z uses the same noise for every example in the batch (like torch.randn(latent_dim), "
        "broadcast over the rows): all examples get identical eps. Each example needs its own draw.",
        "Draw eps with the full shape of mu, (batch, latent_dim): eps = torch.randn_like(mu).",
    ),
    Mistake(
        "shared_noise_latent",
        lambda f: f.noise == normal_draws.ONE_COLUMN,
        "Your z uses the same noise for all latent dimensions of an example (like torch.randn(batch, 1), "
        "broadcast over the columns): the dimensions move together. Each latent dimension needs its own "
        "independent draw.",
        "Draw eps with the full shape of mu, (batch, latent_dim): eps = torch.randn_like(mu).",
    ),
    Mistake(
        "noise_correlated",
        lambda f: f.noise == normal_draws.CORRELATED,
        "The noise in different latent dimensions of your z is correlated (correlations up to "
        "{correlation:.2f}); the prior N(0, I) needs independent noise in every dimension.",
        "Draw eps with the full shape of mu in one go: eps = torch.randn_like(mu).",
    ),
    Mistake(
        "uniform_noise",
        lambda f: f.noise == normal_draws.UNIFORM,
        "Your noise looks uniform, not normal: {beyond_two:.1%} of the draws lie beyond 2 standard "
        "deviations, where normal noise has 4.6% (kurtosis {kurtosis:.2f}, normal 3, uniform 1.8). "
        "torch.rand / torch.rand_like draw uniform numbers in [0, 1); the reparameterization needs "
        "standard normal noise.",
        "Use torch.randn_like(mu): the n in randn is for normal.",
    ),
    Mistake(
        "noise_not_normal",
        lambda f: f.noise == normal_draws.HEAVY_TAILED,
        "Your noise is not normal: it has heavier tails (kurtosis {kurtosis:.2f}; a normal distribution "
        "has 3, with 4.6% of draws beyond 2 standard deviations, yours {beyond_two:.1%}).",
        "Draw eps = torch.randn_like(mu) and use it as it is (don't square, multiply or exponentiate it).",
    ),
)

# Facts: centred_on (a function: is the mean of z within sampling error of this vector?).
MEAN_MISTAKES = (
    Mistake("mean_std_swapped", lambda f: f.centred_on(f.sigma) and f.spread_is(f.mu.abs()),
            "Your z is centred on sigma = exp(0.5 * logvar) and spread by |mu|: the mean and the standard "
            "deviation are swapped, z = sigma + mu * eps. {seen}",
            "z = mu + sigma * eps: mu is the centre, sigma scales the noise."),
    Mistake("forgot_mu", lambda f: f.centred_on(0.0),
            "Your z is centred on 0, not on mu: mu is not added. {seen}", "Return mu + sigma * eps."),
    Mistake("arguments_swapped", lambda f: f.centred_on(f.logvar),
            "Your z is centred on logvar instead of mu: the two arguments seem swapped. {seen}",
            "The check calls fn(mu, logvar): mu first, then logvar."),
    Mistake("mean_wrong", lambda f: True, "Your z is not centred on mu. {seen}",
            "With eps ~ N(0, I) the mean of z = mu + sigma * eps is mu: add mu unchanged, and don't shift the noise."),
)

# Mistakes recognised by the spread of z, one row each: (code, the std it gives as a function of
# logvar, message, hint).
_BY_SPREAD = (
    ("std_exp_logvar_plus_half", lambda logvar: torch.exp(logvar + 0.5),
     "The spread of your z matches std = exp(logvar + 0.5): the 0.5 is added to logvar instead of "
     "multiplying it (the source lecture has this very bug).",
     "The 0.5 belongs inside as a factor: exp(0.5 * logvar) = sqrt(sigma^2) = sigma, while "
     "exp(logvar + 0.5) = 1.65 * sigma^2."),
    ("std_is_variance", torch.exp,
     "The spread of your z matches std = exp(logvar) = sigma^2, the variance, not the standard deviation "
     "sigma: either exp(logvar) is taken as sigma (as if logvar were log sigma, the convention of some other "
     "courses; here it is log(sigma^2)), or the noise is multiplied by sigma twice.",
     "Halve logvar before exponentiating: sigma = exp(0.5 * logvar) (the same as sqrt(exp(logvar)))."),
    ("std_is_logvar", torch.abs,
     "The spread of your z matches std = logvar: logvar is used directly as the standard deviation. "
     "But logvar is log(sigma^2), the log of the variance: it is negative whenever sigma < 1, and it "
     "has to be turned into sigma first.",
     "Convert it: sigma = exp(0.5 * logvar)."),
    ("std_is_half_logvar", lambda logvar: (0.5 * logvar).abs(),
     "The spread of your z matches std = 0.5 * logvar: that is log(sigma), the log of the standard "
     "deviation; the exp is missing.",
     "Exponentiate it: sigma = exp(0.5 * logvar)."),
    ("std_missing", torch.ones_like,
     "Your z has standard deviation 1 in every latent dimension, whatever logvar is: the noise is "
     "added unscaled, z = mu + eps, so the encoder's logvar has no effect.",
     "Multiply the noise by sigma = exp(0.5 * logvar) before adding it to mu."),
    ("std_inverted", lambda logvar: torch.exp(-0.5 * logvar),
     "The spread of your z matches std = exp(-0.5 * logvar) = 1 / sigma: the sign in the exponent is flipped.",
     "sigma = exp(+0.5 * logvar): a larger logvar means a wider distribution."),
    ("std_sqrt_twice", lambda logvar: torch.exp(0.25 * logvar),
     "The spread of your z matches std = exp(0.25 * logvar) = sqrt(sigma): the square root is taken "
     "twice. exp(0.5 * logvar) is already sigma, not the variance.",
     "Use sigma = exp(0.5 * logvar) as it is, without another sqrt."),
)


# The std each wrong formula gives, by code (the test checks that no two are alike on the probe).
SPREAD_OF = {code: spread for code, spread, _, _ in _BY_SPREAD}


def _spread_is(code):
    return lambda f: bool(((f.spreads / SPREAD_OF[code](f.logvar) - 1).abs() <= STD_TOLERANCE).all())


STD_MISTAKES = tuple(Mistake(code, _spread_is(code), message, hint) for code, _, message, hint in _BY_SPREAD) + (
    Mistake("std_wrong", lambda f: True, "The spread of your z does not match sigma = exp(0.5 * logvar).",
            "logvar = log(sigma^2), so sigma = exp(0.5 * logvar); multiply eps by sigma."),
)

_NO_GRADIENT = (
    "No gradient reaches mu and logvar through your z: it was sampled directly (torch.normal(mu, std), "
    "Normal(mu, std).sample(), or inside torch.no_grad / after .detach()). Sampling like that is a dead "
    "end for backpropagation; it is exactly what the reparameterization trick avoids, by drawing the "
    "randomness separately."
)
_NO_GRADIENT_HINT = (
    "Draw eps = torch.randn_like(mu) and return mu + sigma * eps, or use Normal(mu, sigma).rsample() "
    "(r for reparameterized)."
)
# Facts: mu_reached, logvar_reached (a nonzero gradient arrived), grads_right.
GRADIENT_MISTAKES = (
    Mistake("no_gradient", lambda f: not f.mu_reached and not f.logvar_reached, _NO_GRADIENT, _NO_GRADIENT_HINT),
    Mistake("no_gradient_logvar", lambda f: not f.logvar_reached,
            "A gradient reaches mu but not logvar: the noise's scale is cut off from autograd "
            "(torch.normal(0, std), std.detach(), std computed under torch.no_grad, or .data). Then the "
            "encoder can never learn its variances.",
            "Compute sigma = torch.exp(0.5 * logvar) with ordinary tensor operations and multiply: mu + sigma * eps."),
    Mistake("no_gradient_mu", lambda f: not f.mu_reached,
            "A gradient reaches logvar but not mu (mu.detach(), .data or a copy outside autograd): the "
            "encoder could never learn its means.",
            "Use mu itself in mu + sigma * eps."),
)

BACKWARD_MISTAKES = (
    Mistake("backward_failed", lambda f: f.error is not None,
            "Backpropagating through your z failed: {error}",
            "An in-place operation on a tensor autograd still needs is the usual cause (std.mul_(eps) "
            "overwrites the exp's output, which its gradient needs); use out-of-place operations."),
)

CODES = codes(SHAPE_MISTAKES, NOT_FINITE_MISTAKES, NOISE_MISTAKES, MEAN_MISTAKES, STD_MISTAKES,
              GRADIENT_MISTAKES, BACKWARD_MISTAKES)

ERROR_HINTS = (
    ErrorHint((RuntimeError,), lambda f: f.called in ELEMENTWISE,
              "Don't hard-code sizes: draw the noise with torch.randn_like(mu) (or torch.randn(mu.shape)) so it has "
              "mu's shape whatever the batch size and latent size; the check uses a latent size of 4 (your "
              "{called} got shapes {shapes})."),
)


def probe_inputs(rows, requires_grad=False):
    """(rows, 4) mu and logvar: MU and LOGVAR repeated down the batch."""
    mu = torch.tensor(MU).repeat(rows, 1).requires_grad_(requires_grad)
    logvar = torch.tensor(LOGVAR).repeat(rows, 1).requires_grad_(requires_grad)
    return mu, logvar


def check_reparameterize(fn):
    """Check a student's ``reparameterize(mu, logvar) -> z``.

    mu, logvar: (batch, latent_dim) tensors from the encoder, logvar = log(sigma^2). The function
    returns one sample z of the same shape, z = mu + exp(0.5 * logvar) * eps with fresh
    eps ~ N(0, I), so that gradients reach mu and logvar. Returns a CheckResult.
    """
    return run_check("reparameterize(mu, logvar)", FORMULA, fn, _body, "check_reparameterize",
                     "fn(mu, logvar)", ERROR_HINTS)


def _call(check, mu, logvar, seed):
    torch.default_generator.manual_seed(seed)  # CPU only: fork_rng restores just the CPU state
    z = check.call(mu, logvar, described=f"fn(mu, logvar) with mu and logvar of shape {shape(mu)}")
    z = check.tensor(z, "z", f"a tensor with the shape of mu, {shape(mu)}")
    rows, dims = mu.shape
    why = ""
    if tuple(z.shape) == (rows,):
        why = " It has one value per example: was z summed or averaged over the latent dimensions?"
    elif z.dim() > mu.dim():
        why = " An extra dimension usually comes from noise of the wrong shape being broadcast."
    check.fail_first(SHAPE_MISTAKES, SimpleNamespace(z=z, mu=mu, z_shape=shape(z), mu_shape=shape(mu), why=why))
    return z


def _body(check):
    # 1. A few rows without autograd (so in-place operations show up instead of raising).
    mu, logvar = probe_inputs(6)
    inputs = snapshot(mu=mu, logvar=logvar)
    z = _call(check, mu, logvar, seed=0)
    check.unmodified(inputs)
    if not torch.isfinite(z).all():
        bad_columns = (~torch.isfinite(z)).any(dim=0)
        check.fail_first(NOT_FINITE_MISTAKES, SimpleNamespace(bad_columns=bad_columns, logvar=logvar))

    # 2. Many rows of the same distribution, two calls with different seeds: compare the rows'
    #    mean, spread and shape with N(mu, exp(logvar)).
    mu, logvar = probe_inputs(ROWS)
    z1 = _call(check, mu, logvar, seed=1).detach().double()
    z2 = _call(check, mu, logvar, seed=2).detach().double()
    _statistics(check, z1, z2)

    # 3. Gradients: z.sum() differentiated must give 1 for mu and 0.5 * sigma * eps for logvar.
    mu, logvar = probe_inputs(5, requires_grad=True)
    _gradients(check, _call(check, mu, logvar, seed=3), mu, logvar)
    return (
        "z = mu + exp(0.5 * logvar) * eps: the right shape, fresh independent standard normal noise "
        "for every example and latent dimension, the right mean and standard deviation, gradients "
        "reach mu and logvar, and the inputs are left untouched."
    )


def _statistics(check, z1, z2):
    rows = z1.shape[0]
    mu = torch.tensor(MU, dtype=torch.float64)
    logvar = torch.tensor(LOGVAR, dtype=torch.float64)
    sigma = torch.exp(0.5 * logvar)
    eps1, eps2 = (z1 - mu) / sigma, (z2 - mu) / sigma
    zero = bool(eps1.abs().max() == 0)
    noise = None if zero else normal_draws.problem(eps1, eps2)
    measured = normal_draws.described(eps1) if noise in (normal_draws.CORRELATED, normal_draws.UNIFORM,
                                                         normal_draws.HEAVY_TAILED) else {}
    check.fail_first(NOISE_MISTAKES, SimpleNamespace(
        zero=zero, noise=noise, eps_is_one=close(eps1[0], torch.ones_like(sigma), rtol=1e-4, atol=1e-6), **measured))

    means, spreads = z1.mean(dim=0), z1.std(dim=0)
    tolerance = 6 * spreads / math.sqrt(rows) + 1e-4
    if bool(((means - mu).abs() > tolerance).any()):
        seen = f"Per latent dimension the mean of your z is {values(means)}, while mu is {values(mu)}."
        check.fail_first(MEAN_MISTAKES, SimpleNamespace(
            mu=mu, logvar=logvar, sigma=sigma, seen=seen,
            centred_on=lambda centre: bool(((means - centre).abs() <= tolerance).all()),
            spread_is=lambda std: bool(((spreads / std - 1).abs() <= STD_TOLERANCE).all())))
    if bool(((spreads / sigma - 1).abs() > STD_TOLERANCE).any()):
        measured = (
            f"\n(Measured over {rows} samples per latent dimension with logvar = {values(logvar)}: "
            f"the standard deviation of your z is {values(spreads)}; exp(0.5 * logvar) is {values(sigma)}.)"
        )
        check.fail_first(STD_MISTAKES, SimpleNamespace(spreads=spreads, logvar=logvar), extra=measured)


def _gradients(check, z, mu, logvar):
    if not z.requires_grad:
        check.fail_with(GRADIENT_MISTAKES[0])
    error = None
    try:
        z.sum().backward()
    except Exception as failure:  # autograd's own complaint about the student's graph
        error = failure
    if error is not None:
        check.fail_first(BACKWARD_MISTAKES, SimpleNamespace(error=describe_error(error)))

    def reached(grad):
        return grad is not None and bool(grad.abs().max() > 0)

    check.fail_first(GRADIENT_MISTAKES, SimpleNamespace(mu_reached=reached(mu.grad), logvar_reached=reached(logvar.grad)))
