"""Exercise checks: run a student's function, compare it with the reference, and name the mistake.

Each ``check_*`` function takes the student's function, runs it on inputs chosen so that every
classic mistake gives a recognisably different answer, and returns a `CheckResult`: ``.passed``,
``.message`` (the diagnosis), a hint and the formula to compare with. A wrong answer never
raises; it explains. The checks judge behaviour, never source text; they are deterministic
(fixed seeds, the caller's random state restored afterwards) and take well under a second on a CPU.

The exercises and the exact signatures the notebooks ask for:

    reparameterize(mu, logvar) -> z                  mu, logvar, z: (batch, latent_dim)
    kl_divergence(mu, logvar) -> kl                  kl: (batch,), one KL per example
    vae_loss(logits, images, mu, logvar) -> loss     a scalar tensor: negative ELBO per image
    sample_prior(model, n) -> images                 (n, 1, 28, 28) pixel probabilities

After a check, `use_if_passed` picks the student's function or the reference, so the lesson
continues either way.
"""

import html
import math
import textwrap
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .kl import kl_divergence
from .loss import reconstruction_loss
from .models import N_PIXELS, VAE

PASSED, FAILED, NOT_DONE, ERROR = "passed", "failed", "not done", "error"

# symbol, label, text colour, background colour for each status.
_STYLES = {
    PASSED: ("✓", "passed", "#1b5e20", "#e8f5e9"),
    FAILED: ("✗", "not right yet", "#b71c1c", "#ffebee"),
    NOT_DONE: ("○", "not done yet", "#8a4b00", "#fff3e0"),
    ERROR: ("✗", "could not be checked", "#b71c1c", "#ffebee"),
}


@dataclass(frozen=True, repr=False)
class CheckResult:
    """What a check found: a status, the diagnosis, a hint and the formula to compare with.

    status: "passed", "failed" (a wrong answer), "not done" (the stub still raises
    NotImplementedError) or "error" (not a function, or it raised). diagnosis: a short stable
    code naming the mistake ("std_is_variance", ...), handy in tests. `bool(result)` is `.passed`.
    Prints as plain text in a terminal and as a coloured box in a notebook.
    """

    exercise: str
    status: str
    message: str
    diagnosis: str
    hint: str = ""
    formula: str = ""

    @property
    def passed(self):
        return self.status == PASSED

    def __bool__(self):
        return self.passed

    @property
    def headline(self):
        symbol, label, _, _ = _STYLES[self.status]
        return f"{symbol} {self.exercise}: {label}"

    def __str__(self):
        lines = [self.headline]
        paragraphs = self.message.split("\n") + ([f"Hint: {self.hint}"] if self.hint else [])
        for paragraph in paragraphs:
            lines += textwrap.wrap(paragraph, width=88, initial_indent="  ", subsequent_indent="  ")
        if self.formula:
            lines.append(f"  Compare with:  {self.formula}")
        return "\n".join(lines)

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        _, _, colour, background = _STYLES[self.status]
        esc = html.escape
        parts = [
            f'<div style="border-left:6px solid {colour};background:{background};color:#1a1a1a;'
            'padding:8px 12px;margin:4px 0;font-family:system-ui,-apple-system,sans-serif;line-height:1.45">',
            f'<div style="color:{colour};font-weight:bold">{esc(self.headline)}</div>',
            f"<div>{esc(self.message).replace(chr(10), '<br>')}</div>",
        ]
        if self.hint:
            parts.append(f'<div style="margin-top:4px"><b>Hint:</b> {esc(self.hint)}</div>')
        if self.formula:
            parts.append(
                '<div style="margin-top:4px"><b>Compare with:</b> <code style="background:#ffffff;'
                f'color:#1a1a1a;padding:1px 5px;border-radius:3px">{esc(self.formula)}</code></div>'
            )
        parts.append("</div>")
        return "".join(parts)


def use_if_passed(result, student_fn, reference_fn):
    """`student_fn` if the check `result` passed, else `reference_fn`, so the lesson continues.

    In a notebook, after the exercise cell:
        result = check_reparameterize(my_reparameterize); result
        reparameterize = use_if_passed(result, my_reparameterize, vae_lesson.reparameterize)
    and the later cells call `reparameterize`, which is the student's own code once it is right.
    """
    if not isinstance(result, CheckResult):
        raise TypeError(
            f"use_if_passed needs the CheckResult a check returned, got {type(result).__name__}; "
            "call it as use_if_passed(check_x(my_fn), my_fn, reference_fn)."
        )
    return student_fn if result.passed else reference_fn


# ----------------------------------------------------------------------------------------------
# Machinery shared by the checks: call the student's function safely, stop at the first problem.


class _Verdict(Exception):
    """Raised inside a check to stop at the first problem found; carries the result."""

    def __init__(self, result):
        super().__init__(result.message)
        self.result = result


def _describe_error(error, limit=400):
    text = str(error).strip()
    if len(text) > limit:
        text = text[:limit] + " ..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _function_name(fn):
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return f"`{name}`"


def _shape(tensor):
    return str(tuple(tensor.shape))


def _values(tensor, digits=3):
    """A short, deterministic rendering of a few numbers: [0.368, 0.779, 1.28]."""
    return "[" + ", ".join(f"{float(v):.{digits}g}" for v in tensor.reshape(-1)[:6]) + "]"


class _Check:
    """One run of one check: builds its results and calls the student's function safely."""

    def __init__(self, exercise, formula, fn, signature, error_hints):
        self.exercise = exercise
        self.formula = formula
        self.fn = fn
        self.signature = signature
        self.error_hints = error_hints
        self.notes = []  # what the check assumed about the student's output, added to any failure

    def result(self, status, message, diagnosis, hint=""):
        return CheckResult(self.exercise, status, message, diagnosis, hint, self.formula)

    def fail(self, diagnosis, message, hint=""):
        message = "\n".join([message, *self.notes])
        raise _Verdict(self.result(FAILED, message, diagnosis, hint))

    def call(self, *args, described):
        """fn(*args); a NotImplementedError means "not done yet", any other exception is reported."""
        name = _function_name(self.fn)
        try:
            return self.fn(*args)
        except NotImplementedError as error:
            text = str(error).strip()
            raised = f'NotImplementedError("{text}")' if text else "NotImplementedError"
            raise _Verdict(
                CheckResult(
                    self.exercise,
                    NOT_DONE,
                    f"Not done yet: {name} still raises {raised}, so the lesson continues with "
                    "vae_lesson's reference implementation.",
                    "not_done",
                    "Replace the `raise NotImplementedError(...)` line with your code, run that cell, "
                    "then run this check again.",
                )
            ) from None
        except Exception as error:  # the student's own exception: report it, never re-raise
            raise _Verdict(
                self.result(
                    ERROR,
                    f"Your function {name} raised {_describe_error(error)}\n"
                    f"(the check called it as {described}).",
                    "raised",
                    self._hint_for(error),
                )
            ) from None

    def _hint_for(self, error):
        text = str(error)
        if isinstance(error, TypeError) and ("positional argument" in text or "takes" in text):
            return f"The check calls your function as {self.signature}: it should take exactly these arguments, in this order."
        for fragments, hint in self.error_hints:
            if any(fragment in text for fragment in fragments):
                return hint
        return "Run your function on a small example in a cell of its own to see where it fails."

    def tensor(self, value, what, expected):
        """The returned value as a tensor, or a failure saying what came back instead."""
        if isinstance(value, torch.Tensor):
            if not value.is_floating_point():
                self.fail(
                    "not_floating_point",
                    f"Your function returned a tensor of dtype {value.dtype}; {what} should be a "
                    "floating-point tensor like its inputs.",
                    "Integer tensors cannot hold these values; keep the float32 tensors the inputs come in.",
                )
            return value
        if value is None:
            self.fail(
                "returns_none",
                f"Your function returned None (is the `return` statement missing?); it should "
                f"return {what}, {expected}.",
                "End your function with `return` and the value it computed.",
            )
        if isinstance(value, (tuple, list)):
            self.fail(
                "returns_tuple",
                f"Your function returned a {type(value).__name__} of {len(value)} values; it should "
                f"return only {what}, {expected}.",
                f"Return just {what}; keep any intermediate values (like std or eps) inside the function.",
            )
        if isinstance(value, (int, float)):
            self.fail(
                "returns_number",
                f"Your function returned a Python {type(value).__name__} ({value:.4g}); it should "
                f"return {what} as a tensor, {expected}. .item(), float() and math.* functions turn "
                "tensors into plain numbers, which also cuts the gradient.",
                "Stay with tensor operations (torch.exp, .sum(...)) and return the tensor itself.",
            )
        self.fail(
            "returns_wrong_type",
            f"Your function returned an object of type {type(value).__name__}; it should return {what} as a torch "
            f"tensor, {expected}.",
            "Use torch operations throughout (torch.exp, torch.randn_like, .sum(...)), not numpy.",
        )


def _run_check(exercise, formula, fn, body, check_name, signature, error_hints=()):
    """Run `body(check)` with the caller's random state and grad mode protected; never raises."""
    check = _Check(exercise, formula, fn, signature, error_hints)
    if not callable(fn):
        if fn is None:
            got = "None (did the cell that defines your function run? Or did you pass what it returned?)"
        elif isinstance(fn, torch.Tensor):
            got = f"a tensor of shape {_shape(fn)}, which is what your function returns, not the function"
        else:
            got = f"an object of type {type(fn).__name__}, which is not a function"
        return CheckResult(
            exercise,
            ERROR,
            f"{check_name} needs your function itself, but got {got}.",
            "not_callable",
            f"Pass the function's name without calling it: {check_name}(my_function), "
            f"not {check_name}(my_function(...)).",
        )
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        try:
            message = body(check)
        except _Verdict as verdict:
            return verdict.result
        except Exception as error:  # an output too odd to analyse: explain instead of raising
            return check.result(
                ERROR,
                f"The check could not make sense of what your function returned ({_describe_error(error)}).",
                "unreadable_output",
                f"Make sure your function takes {signature} and returns what the exercise asks for.",
            )
    return CheckResult(exercise, PASSED, message, "passed")  # no formula: nothing to compare


def _snapshot(**tensors):
    """Copies and version counters of the inputs, to notice in-place changes afterwards."""
    return {name: (t, t.detach().clone(), t._version) for name, t in tensors.items()}


def _check_unmodified(check, snapshot):
    for name, (tensor, copy, version) in snapshot.items():
        if tensor._version != version or tensor.shape != copy.shape or not torch.equal(tensor.detach(), copy):
            check.fail(
                "modifies_input",
                f"Your function changed its input `{name}` in place. In-place operations (the ones "
                "ending in an underscore like .exp_(), .mul_(), .add_(), or `x += ...`, `x[...] = ...`) "
                f"overwrite the tensor the caller passed in, so `{name}` is wrong afterwards and "
                "backpropagation through it breaks.",
                "Use the out-of-place forms (torch.exp(x), x * 0.5, a + b), or call the in-place ones "
                "only on a new tensor you made inside the function (e.g. logvar.mul(0.5).exp_()).",
            )


def _close(a, b, rtol=1e-4, atol=1e-4):
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def _noise_statistics(deviations):
    """Shape-only statistics of (N, D) draws: each column standardised, then pooled.

    Returns (column correlations off the diagonal, kurtosis, fraction beyond 2 standard
    deviations). A standard normal has kurtosis 3 and 4.55% beyond 2 sd; uniform noise has 1.8
    and 0%.
    """
    centred = deviations - deviations.mean(dim=0)
    standardised = centred / centred.std(dim=0)
    n, d = standardised.shape
    correlation = standardised.T @ standardised / (n - 1)
    off_diagonal = correlation[~torch.eye(d, dtype=torch.bool)]
    kurtosis = float(standardised.pow(4).mean())
    beyond_two = float((standardised.abs() > 2).double().mean())
    return off_diagonal, kurtosis, beyond_two


def _rows_identical(values):
    return bool((values - values[:1]).abs().max() <= 1e-6 * (1 + values.abs().max()))


# ----------------------------------------------------------------------------------------------
# Reparameterization: z = mu + exp(0.5 * logvar) * eps.

_REPARAM_FORMULA = "z = mu + torch.exp(0.5 * logvar) * eps,   eps = torch.randn_like(mu)"
# One (mu, logvar) pair per latent dimension, repeated down the batch: every row is the same
# distribution, so the rows are samples of it. The logvars make each wrong std formula below
# give a different spread in at least one dimension (by 20% or more).
_REPARAM_MU = (1.5, -2.0, 0.5, 3.0)
_REPARAM_LOGVAR = (-2.0, -0.5, 0.5, 1.5)
_REPARAM_ROWS = 8192
_STD_TOLERANCE = 0.06  # relative; the sample std of 8192 draws is within 0.8% (one sd) of the truth

# diagnosis, std the mistake gives as a function of logvar, what the student sees, hint.
_REPARAM_STD_MISTAKES = (
    (
        "std_exp_logvar_plus_half",
        lambda logvar: torch.exp(logvar + 0.5),
        "The spread of your z matches std = exp(logvar + 0.5): the 0.5 is added to logvar instead "
        "of multiplying it (the source lecture has this very bug).",
        "The 0.5 belongs inside as a factor: exp(0.5 * logvar) = sqrt(sigma^2) = sigma, while "
        "exp(logvar + 0.5) = 1.65 * sigma^2.",
    ),
    (
        "std_is_variance",
        torch.exp,
        "The spread of your z matches std = exp(logvar). That is the variance sigma^2, not the "
        "standard deviation sigma: logvar is the log of the variance, log(sigma^2).",
        "Halve logvar before exponentiating: sigma = exp(0.5 * logvar) (the same as sqrt(exp(logvar))).",
    ),
    (
        "std_is_logvar",
        torch.abs,
        "The spread of your z matches std = logvar: logvar is used directly as the standard "
        "deviation. But logvar is log(sigma^2), the log of the variance: it is negative whenever "
        "sigma < 1, and it has to be turned into sigma first.",
        "Convert it: sigma = exp(0.5 * logvar).",
    ),
    (
        "std_is_half_logvar",
        lambda logvar: (0.5 * logvar).abs(),
        "The spread of your z matches std = 0.5 * logvar: that is log(sigma), the log of the "
        "standard deviation; the exp is missing.",
        "Exponentiate it: sigma = exp(0.5 * logvar).",
    ),
    (
        "std_missing",
        torch.ones_like,
        "Your z has standard deviation 1 in every latent dimension, whatever logvar is: the noise "
        "is added unscaled, z = mu + eps, so the encoder's logvar has no effect.",
        "Multiply the noise by sigma = exp(0.5 * logvar) before adding it to mu.",
    ),
    (
        "std_inverted",
        lambda logvar: torch.exp(-0.5 * logvar),
        "The spread of your z matches std = exp(-0.5 * logvar) = 1 / sigma: the sign in the "
        "exponent is flipped.",
        "sigma = exp(+0.5 * logvar): a larger logvar means a wider distribution.",
    ),
    (
        "std_sqrt_twice",
        lambda logvar: torch.exp(0.25 * logvar),
        "The spread of your z matches std = exp(0.25 * logvar) = sqrt(sigma): the square root is "
        "taken twice. exp(0.5 * logvar) is already sigma, not the variance.",
        "Use sigma = exp(0.5 * logvar) as it is, without another sqrt.",
    ),
)

_REPARAM_ERROR_HINTS = (
    (
        ("size of tensor", "must match the size", "shape", "expand"),
        "Don't hard-code sizes: draw the noise with torch.randn_like(mu) (or torch.randn(mu.shape)) so "
        "it has mu's shape whatever the batch size and latent size; the check uses a latent size of 4.",
    ),
    (
        ("in-place", "inplace"),
        "An in-place operation (a method ending in _, or +=) changed a tensor autograd needs; use "
        "the out-of-place form.",
    ),
)


def _reparam_inputs(rows, requires_grad=False):
    mu = torch.tensor(_REPARAM_MU).repeat(rows, 1).requires_grad_(requires_grad)
    logvar = torch.tensor(_REPARAM_LOGVAR).repeat(rows, 1).requires_grad_(requires_grad)
    return mu, logvar


def check_reparameterize(fn):
    """Check a student's ``reparameterize(mu, logvar) -> z``.

    mu, logvar: (batch, latent_dim) tensors from the encoder, logvar = log(sigma^2). The function
    returns one sample z of the same shape, z = mu + exp(0.5 * logvar) * eps with fresh
    eps ~ N(0, I), so that gradients reach mu and logvar. Returns a CheckResult.
    """
    return _run_check(
        "reparameterize(mu, logvar)",
        _REPARAM_FORMULA,
        fn,
        _check_reparameterize,
        "check_reparameterize",
        "fn(mu, logvar)",
        _REPARAM_ERROR_HINTS,
    )


def _reparam_call(check, mu, logvar, seed):
    torch.default_generator.manual_seed(seed)  # CPU only: fork_rng restores just the CPU state
    z = check.call(mu, logvar, described=f"fn(mu, logvar) with mu and logvar of shape {_shape(mu)}")
    return check.tensor(z, "z", f"a tensor with the shape of mu, {_shape(mu)}")


def _check_reparameterize(check):
    # 1. A few rows without autograd (so in-place operations show up instead of raising):
    #    the inputs are left alone, and z has the right shape and finite values.
    mu, logvar = _reparam_inputs(6)
    snapshot = _snapshot(mu=mu, logvar=logvar)
    z = _reparam_call(check, mu, logvar, seed=0)
    _check_unmodified(check, snapshot)
    _reparam_shape(check, z, mu)
    if not torch.isfinite(z).all():
        bad_columns = (~torch.isfinite(z)).any(dim=0)
        if torch.equal(bad_columns, logvar[0] < 0):
            check.fail(
                "std_is_sqrt_logvar",
                "Your z is NaN exactly where logvar is negative: it looks like the square root of "
                "logvar (torch.sqrt(logvar) or logvar ** 0.5) is used as the standard deviation. "
                "logvar is log(sigma^2), the log of the variance; it is negative whenever sigma < 1, "
                "and its square root is not sigma.",
                "Convert logvar with the exponential: sigma = exp(0.5 * logvar).",
            )
        check.fail(
            "not_finite",
            f"Your z contains NaN or infinite values for ordinary inputs (mu = {list(_REPARAM_MU)}, "
            f"logvar = {list(_REPARAM_LOGVAR)} per latent dimension).",
            "Look for a log or square root of a negative number, or a division by zero.",
        )

    # 2. Many rows of the same distribution: the rows are samples, so their mean, spread and
    #    shape can be compared with N(mu, exp(logvar)). Two calls with different seeds.
    mu, logvar = _reparam_inputs(_REPARAM_ROWS)
    z1 = _reparam_call(check, mu, logvar, seed=1)
    z2 = _reparam_call(check, mu, logvar, seed=2)
    _reparam_shape(check, z1, mu)
    _reparam_shape(check, z2, mu)
    _reparam_statistics(check, z1.detach().double(), z2.detach().double())

    # 3. Gradients: z.sum() differentiated must give 1 for mu and 0.5 * sigma * eps for logvar.
    mu, logvar = _reparam_inputs(5, requires_grad=True)
    z = _reparam_call(check, mu, logvar, seed=3)
    _reparam_gradients(check, z, mu, logvar)
    return (
        "z = mu + exp(0.5 * logvar) * eps: the right shape, fresh independent standard normal noise "
        "for every example and latent dimension, the right mean and standard deviation, gradients "
        "reach mu and logvar, and the inputs are left untouched."
    )


def _reparam_shape(check, z, mu):
    if z.shape != mu.shape:
        rows, dims = mu.shape
        if tuple(z.shape) == (rows,):
            why = " It has one value per example: was z summed or averaged over the latent dimensions?"
        elif z.dim() > mu.dim():
            why = " An extra dimension usually comes from noise of the wrong shape being broadcast."
        else:
            why = ""
        check.fail(
            "wrong_shape",
            f"Your z has shape {_shape(z)}, but mu and logvar have shape {_shape(mu)}: z must have "
            f"the shape of mu, one sample per example and latent dimension.{why}",
            "Make the noise with torch.randn_like(mu) so it matches mu's shape, and don't reduce over any dimension.",
        )


def _reparam_statistics(check, z1, z2):
    rows = z1.shape[0]
    mu = torch.tensor(_REPARAM_MU, dtype=torch.float64)
    logvar = torch.tensor(_REPARAM_LOGVAR, dtype=torch.float64)
    sigma = torch.exp(0.5 * logvar)
    deviation = z1 - mu

    if deviation.abs().max() == 0:
        check.fail(
            "no_noise_z_is_mu",
            "Your z is exactly mu: no noise is added, so every sample is the mean and the decoder "
            "never sees the spread the encoder asks for (the model becomes a plain autoencoder).",
            "Draw eps = torch.randn_like(mu) and return mu + sigma * eps.",
        )
    same_every_call = torch.equal(z1, z2)
    rows_same = _rows_identical(deviation)
    if same_every_call and rows_same:
        if _close(deviation[0], sigma, rtol=1e-4, atol=1e-6):
            check.fail(
                "no_noise_mu_plus_std",
                "Your z is mu + sigma, the same for every example and every call: that is the "
                "noise eps replaced by 1. The trick needs a fresh random eps ~ N(0, I) each time.",
                "Draw eps = torch.randn_like(sigma) and return mu + sigma * eps.",
            )
        check.fail(
            "no_noise",
            "Your z is the same for every example and every call, even with a different random "
            "seed: there is no randomness in it, so it is not a sample from N(mu, sigma^2).",
            "Draw eps = torch.randn_like(mu) inside the function and return mu + sigma * eps.",
        )
    if same_every_call:
        check.fail(
            "seeded_inside",
            "Your z is random across the batch, but it comes out the same on every call even when "
            "the caller's random seed changes: the function seems to set its own seed "
            "(torch.manual_seed inside it, or a new torch.Generator). Then every training step "
            "reuses the same noise.",
            "Remove the seeding from the function; draw eps = torch.randn_like(mu) from the global generator.",
        )
    if rows_same:
        eps_first_row = deviation[0] / sigma
        if bool((eps_first_row - eps_first_row[0]).abs().max() <= 1e-5 * (1 + eps_first_row.abs().max())):
            check.fail(
                "shared_noise_single",
                "Your z uses one single noise value for everything: every example and every latent "
                "dimension gets the same eps (like torch.randn(1)). Each entry of z needs its own "
                "independent draw.",
                "Draw eps with the shape of mu: eps = torch.randn_like(mu).",
            )
        check.fail(
            "shared_noise_batch",
            "Your z uses the same noise for every example in the batch (like torch.randn(latent_dim), "
            "broadcast over the rows): all examples get identical eps. Each example needs its own draw.",
            "Draw eps with the full shape of mu, (batch, latent_dim): eps = torch.randn_like(mu).",
        )

    correlation, kurtosis, beyond_two = _noise_statistics(deviation)
    if bool((correlation.abs() > 0.99).all()):
        check.fail(
            "shared_noise_latent",
            "Your z uses the same noise for all latent dimensions of an example (like "
            "torch.randn(batch, 1), broadcast over the columns): the dimensions move together. "
            "Each latent dimension needs its own independent draw.",
            "Draw eps with the full shape of mu, (batch, latent_dim): eps = torch.randn_like(mu).",
        )
    if bool((correlation.abs() > 0.2).any()):
        check.fail(
            "noise_correlated",
            f"The noise in different latent dimensions of your z is correlated (correlations up to "
            f"{float(correlation.abs().max()):.2f}); the prior N(0, I) needs independent noise in "
            "every dimension.",
            "Draw eps with the full shape of mu in one go: eps = torch.randn_like(mu).",
        )
    if kurtosis < 2.4 or beyond_two < 0.025:
        check.fail(
            "uniform_noise",
            f"Your noise looks uniform, not normal: {beyond_two:.1%} of the draws lie beyond 2 "
            f"standard deviations, where normal noise has 4.6% (kurtosis {kurtosis:.2f}, normal 3, "
            "uniform 1.8). torch.rand / torch.rand_like draw uniform numbers in [0, 1); the "
            "reparameterization needs standard normal noise.",
            "Use torch.randn_like(mu): the n in randn is for normal.",
        )
    if kurtosis > 3.6:
        check.fail(
            "noise_not_normal",
            f"Your noise is not normal: it has heavier tails (kurtosis {kurtosis:.2f}; a normal "
            f"distribution has 3, with 4.6% of draws beyond 2 standard deviations, yours "
            f"{beyond_two:.1%}).",
            "Draw eps = torch.randn_like(mu) and use it as it is (don't square, multiply or exponentiate it).",
        )

    means = z1.mean(dim=0)
    spreads = z1.std(dim=0)
    tolerance = 6 * spreads / math.sqrt(rows) + 1e-4
    if bool(((means - mu).abs() > tolerance).any()):
        seen = f"Per latent dimension the mean of your z is {_values(means)}, while mu is {_values(mu)}."
        if bool((means.abs() <= tolerance).all()):
            check.fail(
                "forgot_mu",
                f"Your z is centred on 0, not on mu: mu is not added. {seen}",
                "Return mu + sigma * eps.",
            )
        if bool(((means - logvar).abs() <= tolerance).all()):
            check.fail(
                "arguments_swapped",
                f"Your z is centred on logvar instead of mu: the two arguments seem swapped. {seen}",
                "The check calls fn(mu, logvar): mu first, then logvar.",
            )
        check.fail(
            "mean_wrong",
            f"Your z is not centred on mu. {seen}",
            "With eps ~ N(0, I) the mean of z = mu + sigma * eps is mu: add mu unchanged, and don't shift the noise.",
        )

    if bool(((spreads / sigma - 1).abs() > _STD_TOLERANCE).any()):
        measured = (
            f"\n(Measured over {rows} samples per latent dimension with logvar = {_values(logvar)}: "
            f"the standard deviation of your z is {_values(spreads)}; exp(0.5 * logvar) is {_values(sigma)}.)"
        )
        for diagnosis, guess, message, hint in _REPARAM_STD_MISTAKES:
            if bool(((spreads / guess(logvar) - 1).abs() <= _STD_TOLERANCE).all()):
                check.fail(diagnosis, message + measured, hint)
        check.fail(
            "std_wrong",
            "The spread of your z does not match sigma = exp(0.5 * logvar)." + measured,
            "logvar = log(sigma^2), so sigma = exp(0.5 * logvar); multiply eps by sigma.",
        )


def _reparam_gradients(check, z, mu, logvar):
    no_gradient = (
        "No gradient reaches mu and logvar through your z: it was sampled directly (torch.normal(mu, "
        "std), Normal(mu, std).sample(), or inside torch.no_grad / after .detach()). Sampling like "
        "that is a dead end for backpropagation; it is exactly what the reparameterization trick "
        "avoids, by drawing the randomness separately."
    )
    no_gradient_hint = (
        "Draw eps = torch.randn_like(mu) and return mu + sigma * eps, or use Normal(mu, sigma).rsample() "
        "(r for reparameterized)."
    )
    if not z.requires_grad:
        check.fail("no_gradient", no_gradient, no_gradient_hint)
    try:
        z.sum().backward()
    except Exception as error:  # autograd's own complaint about the student's graph
        check.fail(
            "backward_failed",
            f"Backpropagating through your z failed: {_describe_error(error)}",
            "An in-place operation on a tensor autograd still needs is the usual cause; use out-of-place operations.",
        )

    def reached(grad):
        return grad is not None and bool(grad.abs().max() > 0)

    mu_reached, logvar_reached = reached(mu.grad), reached(logvar.grad)
    if not mu_reached and not logvar_reached:
        check.fail("no_gradient", no_gradient, no_gradient_hint)
    if not logvar_reached:
        check.fail(
            "no_gradient_logvar",
            "A gradient reaches mu but not logvar: the noise's scale is cut off from autograd "
            "(torch.normal(0, std), std.detach(), std computed under torch.no_grad, or .data). Then "
            "the encoder can never learn its variances.",
            "Compute sigma = torch.exp(0.5 * logvar) with ordinary tensor operations and multiply: mu + sigma * eps.",
        )
    if not mu_reached:
        check.fail(
            "no_gradient_mu",
            "A gradient reaches logvar but not mu (mu.detach(), .data or a copy outside autograd): "
            "the encoder could never learn its means.",
            "Use mu itself in mu + sigma * eps.",
        )
    z = z.detach()
    expected_logvar_grad = 0.5 * (z - mu.detach())
    if not (_close(mu.grad, torch.ones_like(mu), atol=1e-5) and _close(logvar.grad, expected_logvar_grad, rtol=1e-3)):
        check.fail(
            "gradient_mismatch",
            "Your z has the right statistics, but its gradients are not those of z = mu + sigma * eps "
            "(d z / d mu should be 1 and d z / d logvar should be 0.5 * sigma * eps).",
            "Build z with differentiable operations only: sigma = torch.exp(0.5 * logvar); z = mu + sigma * eps.",
        )


# ----------------------------------------------------------------------------------------------
# KL term: KL(N(mu, sigma^2) || N(0, I)) = 0.5 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2).

_KL_FORMULA = "kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)   # shape (batch,)"
_KL_ERROR_HINTS = (
    (
        ("size of tensor", "must match the size", "out of range", "shape"),
        "Don't hard-code sizes: the check uses a batch of 3 and a latent size of 5; sum with .sum(dim=-1).",
    ),
)


def _kl_inputs():
    """(3, 5) mu and logvar: a batch size unlike the latent size, so reductions show in the shape."""
    generator = torch.Generator().manual_seed(7)
    mu = torch.randn(3, 5, generator=generator) * 1.2
    logvar = torch.randn(3, 5, generator=generator)
    return mu, logvar


def _kl_sum(terms):
    return 0.5 * terms.sum(dim=-1)


# diagnosis, value the mistake gives from float64 (mu, logvar), what the student sees, hint.
_KL_MISTAKES = (
    (
        "kl_sign_flipped",
        lambda mu, lv: -kl_divergence(mu, lv),
        "Your KL is the expected value with the sign flipped: it comes out negative, and a KL "
        "divergence is never negative. In the form -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) "
        "the minus in front matters.",
        "Either keep the leading minus of -0.5 * sum(1 + logvar - mu^2 - exp(logvar)), or write "
        "0.5 * sum(mu^2 + exp(logvar) - 1 - logvar).",
    ),
    (
        "kl_half_missing",
        lambda mu, lv: 2 * kl_divergence(mu, lv),
        "Your KL is twice the expected value: the factor 1/2 in front of the sum is missing.",
        "KL = 0.5 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2).",
    ),
    (
        "kl_sign_and_half",
        lambda mu, lv: -2 * kl_divergence(mu, lv),
        "Your KL is -2 times the expected value: both the sign is flipped and the factor 1/2 is missing.",
        "Write 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar), or -0.5 * sum(1 + logvar - mu^2 - exp(logvar)).",
    ),
    (
        "kl_mean_over_latent",
        lambda mu, lv: kl_divergence(mu, lv) / mu.shape[-1],
        "Your KL is averaged over the latent dimensions instead of summed (it is 1/5 of the expected "
        "value with the check's 5 latent dimensions). The KL of independent dimensions adds up; "
        "averaging makes the term shrink as the latent space grows.",
        "Use .sum(dim=-1) (or torch.sum(..., dim=1)), not .mean(dim=-1).",
    ),
    (
        "kl_mu_not_squared",
        lambda mu, lv: _kl_sum(mu + lv.exp() - 1 - lv),
        "Your KL uses mu where mu^2 belongs: mu is not squared, so negative means lower the KL.",
        "The mean term is mu.pow(2) (or mu ** 2, mu * mu).",
    ),
    (
        "kl_exp_logvar_swapped",
        lambda mu, lv: _kl_sum(mu**2 + lv - 1 - lv.exp()),
        "Your KL has logvar.exp() and logvar swapped: the variance sigma^2 = exp(logvar) goes "
        "where log sigma^2 = logvar belongs, and the other way round.",
        "The terms are + sigma^2 = + logvar.exp() and - log sigma^2 = - logvar.",
    ),
    (
        "kl_variance_for_log_variance",
        lambda mu, lv: _kl_sum(mu**2 + lv.exp() - 1 - lv.exp()),
        "Your KL uses the variance exp(logvar) where its log is needed: the - log sigma^2 term is "
        "written as - exp(logvar), so the two variance terms cancel and only 0.5 * sum(mu^2 - 1) is left.",
        "log sigma^2 is logvar itself: - log sigma^2 = - logvar.",
    ),
    (
        "kl_log_std_for_log_variance",
        lambda mu, lv: _kl_sum(mu**2 + lv.exp() - 1 - 0.5 * lv),
        "Your KL uses log sigma = 0.5 * logvar where log sigma^2 = logvar belongs.",
        "The last term is - log sigma^2 = - logvar (no 0.5).",
    ),
    (
        "kl_std_for_variance",
        lambda mu, lv: _kl_sum(mu**2 + (0.5 * lv).exp() - 1 - lv),
        "Your KL uses the standard deviation sigma = exp(0.5 * logvar) where the variance "
        "sigma^2 = exp(logvar) belongs.",
        "The variance term is sigma^2 = logvar.exp().",
    ),
    (
        "kl_minus_one_missing",
        lambda mu, lv: _kl_sum(mu**2 + lv.exp() - lv),
        "Your KL is too large by 0.5 per latent dimension, for every example: the - 1 inside the sum is "
        "missing. Without it the KL of the prior with itself (mu = 0, logvar = 0) would be 0.5 per "
        "dimension instead of 0.",
        "0.5 * sum(mu^2 + exp(logvar) - 1 - logvar): the - 1 is summed over the latent dimensions too.",
    ),
    (
        "kl_one_sign",
        lambda mu, lv: _kl_sum(mu**2 + lv.exp() + 1 - lv),
        "Your KL is too large by 1 per latent dimension: the constant has the wrong sign (+ 1 where - 1 belongs).",
        "0.5 * sum(mu^2 + exp(logvar) - 1 - logvar), or -0.5 * sum(1 + logvar - mu^2 - exp(logvar)).",
    ),
    (
        "kl_logvar_sign",
        lambda mu, lv: _kl_sum(mu**2 + lv.exp() - 1 + lv),
        "Your KL has the logvar term with the wrong sign: + log sigma^2 where - log sigma^2 belongs.",
        "0.5 * sum(mu^2 + exp(logvar) - 1 - logvar), or -0.5 * sum(1 + logvar - mu^2 - exp(logvar)).",
    ),
    (
        "kl_mu_sign",
        lambda mu, lv: _kl_sum(-(mu**2) + lv.exp() - 1 - lv),
        "Your KL has the mu^2 term with the wrong sign: moving the mean away from 0 should raise the "
        "KL, yours lowers it.",
        "In -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) the mu^2 is subtracted inside the brackets.",
    ),
    (
        "kl_exp_sign",
        lambda mu, lv: _kl_sum(mu**2 - lv.exp() - 1 - lv),
        "Your KL has the exp(logvar) term with the wrong sign: + sigma^2 belongs in "
        "0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2).",
        "In -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) the exp(logvar) is subtracted inside the brackets.",
    ),
)


def check_kl_divergence(fn):
    """Check a student's ``kl_divergence(mu, logvar) -> kl``.

    mu, logvar: (batch, latent_dim). Returns (batch,): KL(N(mu, diag(exp(logvar))) || N(0, I))
    for each example, 0.5 * sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j), summed over the latent
    dimensions (not averaged, and not summed over the batch). Returns a CheckResult.
    """
    return _run_check(
        "kl_divergence(mu, logvar)",
        _KL_FORMULA,
        fn,
        _check_kl_divergence,
        "check_kl_divergence",
        "fn(mu, logvar)",
        _KL_ERROR_HINTS,
    )


def _kl_call(check, mu, logvar):
    kl = check.call(mu, logvar, described=f"fn(mu, logvar) with mu and logvar of shape {_shape(mu)}")
    return check.tensor(kl, "kl", f"one value per example, shape ({mu.shape[0]},)")


def _check_kl_divergence(check):
    mu, logvar = _kl_inputs()
    snapshot = _snapshot(mu=mu, logvar=logvar)
    kl = _kl_call(check, mu, logvar)
    _check_unmodified(check, snapshot)
    mu64, logvar64 = mu.double(), logvar.double()
    expected = kl_divergence(mu64, logvar64)
    kl = kl.detach().double()
    _kl_shape(check, kl, mu64, logvar64)
    if not torch.isfinite(kl).all():
        check.fail(
            "kl_not_finite",
            f"Your KL is NaN or infinite for ordinary inputs (logvar between {float(logvar.min()):.2f} "
            f"and {float(logvar.max()):.2f}). A log or square root of logvar does this: logvar is "
            "already the log of the variance and is negative whenever sigma < 1.",
            "The formula needs logvar itself and exp(logvar), no further log or sqrt.",
        )
    if not _close(kl, expected):
        seen = f"\n(For the check's 3 examples your KL is {_values(kl)}; the closed form gives {_values(expected)}.)"
        for diagnosis, mistake, message, hint in _KL_MISTAKES:
            if _close(kl, mistake(mu64, logvar64)):
                check.fail(diagnosis, message + seen, hint)
        ratio = kl / expected
        if bool((ratio - ratio[0]).abs().max() < 1e-3 * ratio[0].abs()):
            check.fail(
                "kl_scaled",
                f"Your KL is {float(ratio[0]):.4g} times the expected value for every example: a constant "
                "factor is off." + seen,
                "Check the 0.5 in front, and sum (not average) over the latent dimensions.",
            )
        check.fail("kl_wrong", "Your KL does not match the closed form." + seen, "Compare term by term with the formula below.")

    _kl_gradients(check, mu, logvar)
    _kl_large_logvar(check)
    return (
        "Your KL matches the closed form 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar) for every example, "
        "summed over the latent dimensions; gradients flow, and it stays finite for large |logvar|."
    )


def _kl_shape(check, kl, mu, logvar):
    batch, latent = mu.shape
    per_dimension = 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
    expected = per_dimension.sum(dim=-1)
    if tuple(kl.shape) == (batch,):
        return
    if kl.numel() == 1:
        value = kl.reshape(())
        if _close(value, expected.sum()):
            check.fail(
                "kl_summed_over_batch",
                "Your function returns one number, the KL summed over the whole batch; this exercise "
                f"asks for one KL per example, shape ({batch},). (The loss averages it over the batch later.)",
                "Sum over the latent dimensions only: .sum(dim=-1) (or dim=1), not .sum().",
            )
        if _close(value, expected.mean()):
            check.fail(
                "kl_mean_over_batch",
                "Your function returns one number, the KL averaged over the batch; this exercise asks "
                f"for one KL per example, shape ({batch},). (Averaging over the batch is the loss's job.)",
                "Sum over the latent dimensions only: .sum(dim=-1), and leave the batch dimension alone.",
            )
        if _close(value, per_dimension.mean()):
            check.fail(
                "kl_mean_over_everything",
                "Your function returns one number, the mean over every entry (batch and latent "
                f"dimensions together): the exercise asks for one KL per example, shape ({batch},), "
                "summed over the latent dimensions.",
                "Use .sum(dim=-1) rather than .mean().",
            )
        check.fail(
            "kl_scalar",
            f"Your function returns one number for the whole batch; the exercise asks for one KL per "
            f"example, shape ({batch},).",
            "Sum over the latent dimensions only: .sum(dim=-1).",
        )
    if tuple(kl.shape) == (latent,):
        sums_batch = _close(kl, per_dimension.sum(dim=0))
        check.fail(
            "kl_summed_over_wrong_dim",
            f"Your KL has shape ({latent},), one value per latent dimension: "
            + ("it is summed over the batch (dim=0) instead of over the latent dimensions (dim=1)."
               if sums_batch else "the sum runs over the wrong dimension.")
            + f" The exercise asks for one KL per example, shape ({batch},).",
            "mu and logvar are (batch, latent_dim): sum with .sum(dim=1) or .sum(dim=-1).",
        )
    if tuple(kl.shape) == (batch, latent):
        check.fail(
            "kl_not_summed",
            f"Your KL has shape ({batch}, {latent}), one value per example and latent dimension: it is "
            "not summed over the latent dimensions. The KL of the whole latent vector is the sum of the "
            f"per-dimension KLs, one number per example, shape ({batch},).",
            "Add .sum(dim=-1) at the end.",
        )
    if tuple(kl.shape) == (batch, 1):
        check.fail(
            "kl_keepdim",
            f"Your KL has shape ({batch}, 1); the exercise asks for shape ({batch},). A trailing "
            f"dimension of size 1 (keepdim=True) broadcasts badly later: adding a ({batch},) "
            f"reconstruction term to it gives a ({batch}, {batch}) matrix.",
            "Sum with .sum(dim=-1) without keepdim=True (or .squeeze(-1) the result).",
        )
    check.fail(
        "kl_wrong_shape",
        f"Your KL has shape {_shape(kl)}; with mu and logvar of shape ({batch}, {latent}) the exercise "
        f"asks for one KL per example, shape ({batch},).",
        "Compute the per-dimension terms elementwise, then .sum(dim=-1).",
    )


def _kl_gradients(check, mu, logvar):
    mu = mu.clone().requires_grad_(True)
    logvar = logvar.clone().requires_grad_(True)
    kl = _kl_call(check, mu, logvar)
    if not kl.requires_grad:
        check.fail(
            "kl_no_gradient",
            "Your KL has the right values, but no gradient flows through it: it was computed outside "
            "autograd (.item(), float(), numpy, .detach(), .data or torch.no_grad). The loss needs "
            "this gradient to pull the encoder towards the prior.",
            "Use torch operations on mu and logvar directly.",
        )
    kl.sum().backward()
    expected_mu = mu.detach()
    expected_logvar = 0.5 * (logvar.detach().exp() - 1)
    if not (mu.grad is not None and logvar.grad is not None and _close(mu.grad, expected_mu)
            and _close(logvar.grad, expected_logvar)):
        check.fail(
            "kl_gradient_mismatch",
            "Your KL has the right values, but its gradients do not match the closed form's "
            "(d KL / d mu = mu, d KL / d logvar = 0.5 * (exp(logvar) - 1)): part of it is detached "
            "from autograd.",
            "Build it from mu and logvar with torch operations only, no .detach() or .data.",
        )


def _kl_large_logvar(check):
    # exp(-120) underflows to 0 in float32. The closed form in logvar stays finite there;
    # forms that take log(exp(logvar)) or log(std ** 2) get log(0) = -inf.
    mu = torch.tensor([[0.5, -1.0, 0.2], [1.0, 0.0, -0.3]])
    logvar = torch.tensor([[-120.0, 0.5, -1.0], [60.0, -0.3, 2.0]])
    kl = _kl_call(check, mu, logvar).detach().double()
    expected = kl_divergence(mu.double(), logvar.double())
    if tuple(kl.shape) != (2,):
        check.fail(
            "kl_wrong_shape",
            f"For a batch of 2 with 3 latent dimensions your KL has shape {_shape(kl)}, not (2,): the "
            "function seems to depend on the batch or latent size the first test used.",
            "Don't hard-code sizes; sum with .sum(dim=-1).",
        )
    if not torch.isfinite(kl).all():
        bad = int((~torch.isfinite(kl)).nonzero()[0, 0])
        extreme = float(logvar[bad][logvar[bad].abs().argmax()])
        check.fail(
            "kl_not_finite_large_logvar",
            f"Your KL is right for ordinary values, but it is {float(kl[bad])} for an example with "
            f"logvar = {extreme:g}, where the closed form 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar) "
            f"is finite ({float(expected[bad]):.6g}). exp(-120) underflows to 0 in float32, so a "
            "formula that takes log(exp(logvar)) or log(std ** 2) gets log(0) = -inf. "
            "(torch.distributions.kl_divergence between two Normals computes log(std ** 2) the same "
            "way, so it has this weakness too.)",
            "Use logvar itself wherever log sigma^2 appears; never exponentiate and then take the log.",
        )
    if not _close(kl, expected, rtol=1e-4, atol=1e-3):
        check.fail(
            "kl_inaccurate_large_logvar",
            f"Your KL is right for ordinary values but inaccurate for large |logvar|: for logvar = "
            f"{_values(logvar)} it gives {_values(kl)}, the closed form {_values(expected)}.",
            "Use logvar itself wherever log sigma^2 appears, and exp(logvar) for sigma^2.",
        )


# ----------------------------------------------------------------------------------------------
# Loss: negative ELBO per image = (BCE summed over pixels + KL summed over latent dims) / batch.

_LOSS_FORMULA = (
    "(F.binary_cross_entropy_with_logits(logits, images.view(-1, 784), reduction='sum') "
    "+ kl_divergence(mu, logvar).sum()) / batch_size"
)
_LOSS_BATCH, _LOSS_LATENT = 4, 3
_LOSS_MU_SCALES = (3.0, 1.0, 0.4, 2.0)  # KL and BCE vary independently across the four probes
_LOSS_ERROR_HINTS = (
    (
        ("Target size", "same size as input", "must match the size", "shape"),
        "images arrive as (batch, 1, 28, 28) and logits as (batch, 784): flatten the images with "
        "images.view(-1, 784) (or images.reshape(len(images), -1)) before comparing them.",
    ),
    (
        ("between 0 and 1",),
        "F.binary_cross_entropy expects probabilities in [0, 1], but logits are raw scores: use "
        "F.binary_cross_entropy_with_logits(logits, x, reduction='sum'), which applies the sigmoid itself.",
    ),
)


def _loss_inputs(index):
    """One probe: logits (4, 784), images (4, 1, 28, 28) in [0, 1] with a zero background, mu, logvar (4, 3)."""
    generator = torch.Generator().manual_seed(100 + index)
    logits = (torch.randn(_LOSS_BATCH, N_PIXELS, generator=generator) * 2).clamp(-6, 6)
    images = torch.rand(_LOSS_BATCH, 1, 28, 28, generator=generator)
    images[images < 0.5] = 0.0
    mu = torch.randn(_LOSS_BATCH, _LOSS_LATENT, generator=generator) * _LOSS_MU_SCALES[index]
    logvar = torch.randn(_LOSS_BATCH, _LOSS_LATENT, generator=generator) * 0.7
    return logits, images, mu, logvar


def check_vae_loss(fn):
    """Check a student's ``vae_loss(logits, images, mu, logvar) -> loss``.

    logits: (batch, 784) decoder outputs before the sigmoid; images: (batch, 1, 28, 28) in [0, 1];
    mu, logvar: (batch, latent_dim). The loss is the negative ELBO per image with beta = 1:
    (BCE-with-logits summed over the pixels + KL summed over the latent dimensions), both summed
    over the batch and divided by the batch size. Return a scalar tensor (a tuple or LossTerms
    whose first element is the total is accepted too). Returns a CheckResult.
    """
    return _run_check(
        "vae_loss(logits, images, mu, logvar)",
        _LOSS_FORMULA,
        fn,
        _check_vae_loss,
        "check_vae_loss",
        "fn(logits, images, mu, logvar)",
        _LOSS_ERROR_HINTS,
    )


def _loss_call(check, logits, images, mu, logvar):
    value = check.call(
        logits, images, mu, logvar,
        described=f"fn(logits, images, mu, logvar) with logits {_shape(logits)}, images {_shape(images)}, "
        f"mu and logvar {_shape(mu)}",
    )
    if isinstance(value, (tuple, list)):
        if not value:
            check.fail("returns_tuple", "Your function returned an empty tuple; it should return the loss, a scalar tensor.")
        # LossTerms(total, reconstruction, kl) or (total, ...): the total comes first. Say so on
        # failure, in case a student returned (reconstruction, kl) and wonders about the diagnosis.
        note = (
            f"(Your function returned a {type(value).__name__} of {len(value)} values; the check took "
            "the first one as the total loss.)"
        )
        if note not in check.notes:
            check.notes.append(note)
        value = value[0]
    loss = check.tensor(value, "the loss", "a scalar tensor (one number for the batch)")
    if loss.numel() == 1:
        return loss.reshape(())
    if tuple(loss.shape) == (len(logits),):
        check.fail(
            "loss_per_example",
            f"Your loss has shape {_shape(loss)}, one value per image; the loss for loss.backward() "
            "is one number: the per-image values averaged over the batch.",
            "Sum over pixels and latent dimensions, then divide by the batch size (or .mean() the per-image values).",
        )
    check.fail(
        "loss_not_scalar",
        f"Your loss has shape {_shape(loss)}; it should be a single number (shape ()), the negative "
        "ELBO averaged over the batch.",
        "Use reduction='sum' in the BCE and .sum() on the KL, then divide by the batch size.",
    )


def _reconstruction_variants(logits, images):
    """Reconstruction terms per image (summed over pixels, / batch) the loss may be built on."""
    x = images.reshape(len(logits), -1)
    n = len(logits)
    p = torch.sigmoid(logits)
    return {
        "bce": reconstruction_loss(logits, images),
        "sigmoid_twice": F.binary_cross_entropy_with_logits(p, x, reduction="sum") / n,
        "mse": (p - x).pow(2).sum() / n,
        "mse_logits": (logits - x).pow(2).sum() / n,
    }


_RECONSTRUCTION_FORMS = {
    "sigmoid_twice": (
        "Your reconstruction term matches BCE computed on sigmoid(sigmoid(logits)): the sigmoid is "
        "applied twice. Giving binary_cross_entropy_with_logits probabilities (torch.sigmoid(logits)) "
        "instead of logits is the same mistake; the check cannot tell the two apart.",
        "binary_cross_entropy_with_logits applies the sigmoid itself: pass it the raw logits. Or use "
        "F.binary_cross_entropy(torch.sigmoid(logits), x, reduction='sum'), with one sigmoid.",
    ),
    "mse": (
        "Your reconstruction term matches a squared error sum((sigmoid(logits) - x)^2), not the binary "
        "cross-entropy. The lesson's decoder models each pixel as a Bernoulli probability, whose negative "
        "log-likelihood is the BCE; a squared error is a different (and, for the ELBO, wrongly scaled) loss.",
        "Use F.binary_cross_entropy_with_logits(logits, x, reduction='sum').",
    ),
    "mse_logits": (
        "Your reconstruction term matches a squared error between the logits and the images, "
        "sum((logits - x)^2): logits are raw scores, not pixel values, and the lesson's loss is the "
        "binary cross-entropy.",
        "Use F.binary_cross_entropy_with_logits(logits, x, reduction='sum').",
    ),
}


def _nice(value, target, rtol=2e-3, atol=1e-5):
    return abs(value - target) <= rtol * abs(target) + atol


def _check_vae_loss(check):
    totals, reconstructions, kls = [], [], []
    for index in range(len(_LOSS_MU_SCALES)):
        logits, images, mu, logvar = _loss_inputs(index)
        snapshot = _snapshot(logits=logits, images=images, mu=mu, logvar=logvar)
        loss = _loss_call(check, logits, images, mu, logvar)
        _check_unmodified(check, snapshot)
        if not torch.isfinite(loss):
            check.fail(
                "loss_not_finite",
                f"Your loss is {float(loss)} for ordinary inputs (logits between -6 and 6, pixels in [0, 1]).",
                "A log of 0 (BCE on probabilities without the with_logits form) or of a negative number "
                "is the usual cause; F.binary_cross_entropy_with_logits is stable.",
            )
        totals.append(float(loss.detach()))
        reconstructions.append(_reconstruction_variants(logits.double(), images.double()))
        kls.append(float(kl_divergence(mu.double(), logvar.double()).mean()))
    _loss_values(check, torch.tensor(totals, dtype=torch.float64), reconstructions, torch.tensor(kls, dtype=torch.float64))
    _loss_gradients(check)
    return (
        "Your loss is the negative ELBO per image: the BCE summed over the 784 pixels plus the KL summed "
        "over the latent dimensions, averaged over the batch, with gradients reaching the logits, mu and logvar."
    )


def _loss_values(check, totals, reconstructions, kls):
    """Fit total = a * reconstruction + b * KL over the probes, then name what a and b reveal."""
    seen = (
        f"\n(For the check's first batch your loss is {float(totals[0]):.5g}; the expected "
        f"{float(reconstructions[0]['bce'] + kls[0]):.5g} is reconstruction {float(reconstructions[0]['bce']):.5g} "
        f"+ KL {float(kls[0]):.4g}, per image.)"
    )
    for form in ("bce", "sigmoid_twice", "mse", "mse_logits"):
        recon = torch.stack([variant[form] for variant in reconstructions])
        design = torch.stack([recon, kls], dim=1)
        a, b = torch.linalg.lstsq(design, totals[:, None]).solution[:, 0].tolist()
        residual = float((design @ torch.tensor([a, b], dtype=torch.float64) - totals).abs().max())
        if residual <= 1e-4 * float(totals.abs().max()) + 1e-5:
            break
    else:
        check.fail(
            "loss_wrong",
            "Your loss does not match the negative ELBO, and not in any of the ways the check knows "
            "(a term scaled, left out, or computed with MSE or a doubled sigmoid)." + seen,
            "Build it in two parts and print each: reconstruction = BCE summed over pixels; "
            "kl = the closed form summed over latent dimensions; then (reconstruction + kl) / batch_size.",
        )
    problems = []  # (diagnosis, message, hint), the most telling first
    if form != "bce":
        problems.append((form, *_RECONSTRUCTION_FORMS[form]))
    problems += _weight_problems(a, b, float(recon[0]), float(kls[0]))
    if not problems:
        return
    diagnosis, message, hint = problems[0]
    also = "".join(f"\nAlso: {other}" for _, other, _ in problems[1:])
    check.fail(diagnosis, message + also + seen, hint)


def _weight_problems(a, b, reconstruction, kl):
    """What the fitted weights of reconstruction (a) and KL (b) say, as (diagnosis, message, hint)."""
    # a is pinned down to ~1e-7 by the large reconstruction term; b only to ~1e-4, because float32
    # rounding of a loss near 800 is comparable to a KL weight error times a KL of a few nats.
    batch, latent = _LOSS_BATCH, _LOSS_LATENT
    if _nice(a, 1) and _nice(b, 1, atol=1e-3):
        return []
    if _nice(a, b, atol=1e-3):
        if _nice(a, batch):
            return [(
                "loss_summed_over_batch",
                f"Your loss is summed over the batch, not averaged: it is {batch} times the expected value "
                f"with the check's batch of {batch}. The ELBO is per image, so the loss should not grow with the batch size.",
                "Divide the summed loss by the batch size, images.shape[0].",
            )]
        if _nice(a, -1):
            return [(
                "returns_elbo",
                "Your loss is the ELBO itself, with the sign flipped: the optimiser minimises the loss, "
                "and we want to maximise the ELBO, so the loss is the negative ELBO = reconstruction BCE + KL.",
                "Return BCE + KL (both positive), not -(BCE + KL) or log-likelihood - KL.",
            )]
        if _nice(a, 1 / batch):
            return [(
                "loss_divided_twice",
                f"Your loss is divided by the batch size twice: it is 1/{batch} of the expected value "
                f"with the check's batch of {batch}.",
                "Average once: (sum over pixels, dims and batch) / batch_size.",
            )]
        if _nice(a, 0):
            return [("loss_zero", "Your loss is 0 whatever the inputs.", "Return reconstruction + kl.")]
        divisor = batch / a
        return [(
            "loss_scaled",
            f"Your whole loss is {a:.4g} times the expected value: as if it were divided by {divisor:.4g} "
            f"instead of by the batch size ({batch} in the check). A fixed number like 128 is wrong for a "
            "last, smaller batch and for the check.",
            "Divide by the actual batch size: images.shape[0] (or len(images)).",
        )]
    problems = []
    if _nice(a, 1 / N_PIXELS):
        problems.append((
            "reconstruction_mean_over_pixels",
            "Your reconstruction term is averaged over the 784 pixels instead of summed (reduction='mean' "
            "does this): it is 784 times too small, so the KL dominates the loss. With the check's first "
            f"batch your reconstruction part is {a * reconstruction:.3g} against a KL of {b * kl:.3g}. "
            "Trained like that, the model finds it cheapest to ignore the images: the encoder collapses "
            "to the prior and every reconstruction and sample is the same blurry average digit.",
            "Use reduction='sum' (then divide the total by the batch size): the BCE is the "
            "log-likelihood of all 784 pixels, and each one counts.",
        ))
    elif _nice(a, batch):
        problems.append((
            "reconstruction_not_divided",
            f"Your reconstruction term is summed over the batch but not divided by the batch size ({batch} "
            "times too big), while the KL is averaged.",
            "Divide both terms by the batch size.",
        ))
    elif _nice(a, 1 / batch):
        problems.append((
            "reconstruction_divided_twice",
            "Your reconstruction term is divided by the batch size twice.",
            "Divide the summed BCE by the batch size once.",
        ))
    elif _nice(a, 0):
        problems.append((
            "reconstruction_missing",
            "Your loss has no reconstruction term: it does not depend on the logits or the images.",
            "Add the BCE: F.binary_cross_entropy_with_logits(logits, x, reduction='sum').",
        ))
    elif _nice(a, -1):
        problems.append((
            "reconstruction_sign",
            "Your reconstruction term has the wrong sign: it is subtracted, so minimising the loss "
            "would make the reconstructions worse.",
            "The BCE is a negative log-likelihood, already positive: add it.",
        ))
    elif not _nice(a, 1):
        problems.append((
            "reconstruction_scaled",
            f"Your reconstruction term is {a:.4g} times the expected value.",
            "The reconstruction term is the BCE summed over the 784 pixels, divided by the batch size.",
        ))

    if _nice(b, 0, atol=1e-3):
        problems.append((
            "kl_missing",
            "Your loss has no KL term: it is the reconstruction alone, which trains a plain autoencoder. "
            "The KL is what keeps the codes close to the prior N(0, I), so that sampling from the prior works.",
            "Add the KL: kl_divergence(mu, logvar).sum() / batch_size.",
        ))
    elif _nice(b, batch, atol=1e-3):
        problems.append((
            "kl_summed_over_batch",
            f"Your KL term is summed over the batch but not divided by the batch size: it is {batch} times "
            "too big next to the averaged reconstruction term.",
            "Divide the summed KL by the batch size too (or take .mean() of the per-example KL).",
        ))
    elif _nice(b, 1 / latent, atol=1e-3):
        problems.append((
            "kl_mean_over_latent",
            f"Your KL term is averaged over the latent dimensions instead of summed (1/{latent} of the "
            f"expected value with the check's {latent} latent dimensions).",
            "Sum the KL over the latent dimensions: .sum(dim=1), then average over the batch.",
        ))
    elif _nice(b, 2, atol=1e-3):
        problems.append((
            "kl_half_missing",
            "Your KL term is twice the expected value: the factor 1/2 of the KL is missing.",
            "KL = 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar).",
        ))
    elif _nice(b, -1, atol=1e-3):
        problems.append((
            "kl_subtracted",
            "Your KL term is subtracted instead of added: the negative ELBO is reconstruction + KL. "
            "Minimising reconstruction - KL pushes the codes away from the prior without limit.",
            "Add the KL: loss = reconstruction + kl (the KL itself is never negative).",
        ))
    elif _nice(b, 1 / batch, atol=1e-3):
        problems.append((
            "kl_divided_twice",
            "Your KL term is divided by the batch size twice (a mean over the batch, then / batch_size again).",
            "Average the KL over the batch once.",
        ))
    elif not _nice(b, 1, atol=1e-3):
        problems.append((
            "kl_weight_not_one",
            f"Your KL term is weighted {b:.4g} instead of 1. With beta = 1 the loss is exactly the negative "
            "ELBO: reconstruction + 1 * KL.",
            "Drop the extra factor (other weights give a beta-VAE, a later lesson).",
        ))
    return problems


def _loss_gradients(check):
    logits, images, mu, logvar = _loss_inputs(0)
    leaves = [t.clone().requires_grad_(True) for t in (logits, mu, logvar)]
    loss = _loss_call(check, leaves[0], images, leaves[1], leaves[2])
    if not loss.requires_grad:
        check.fail(
            "loss_no_gradient",
            "Your loss has the right value, but no gradient flows through it: it was computed outside "
            "autograd (.item(), float(), numpy, .detach() or torch.no_grad), so loss.backward() cannot train anything.",
            "Keep the loss a tensor built with torch operations.",
        )
    loss.backward()
    references = [t.clone().requires_grad_(True) for t in (logits, mu, logvar)]
    expected = reconstruction_loss(references[0], images) + kl_divergence(references[1], references[2]).mean()
    expected.backward()
    names = ("logits", "mu", "logvar")
    for name, leaf, reference in zip(names, leaves, references):
        if leaf.grad is None or not bool(leaf.grad.abs().max() > 0):
            part = "reconstruction term" if name == "logits" else "KL term"
            check.fail(
                f"loss_no_gradient_{name}",
                f"Your loss has the right value, but no gradient reaches {name}: the {part} is cut off from "
                "autograd (.detach(), .data, .item() or torch.no_grad).",
                "Compute every part of the loss with torch operations on the tensors you were given.",
            )
        if not _close(leaf.grad, reference.grad, rtol=1e-3, atol=1e-6):
            check.fail(
                "loss_gradient_mismatch",
                f"Your loss has the right value, but its gradient with respect to {name} does not match "
                "the negative ELBO's.",
                "Build the loss from differentiable torch operations only.",
            )


# ----------------------------------------------------------------------------------------------
# Sampling from the prior: images = model.decode(z), z ~ N(0, I).

_SAMPLE_FORMULA = "z = torch.randn(n, model.latent_dim);  images = model.decode(z)"
_SAMPLE_LATENT = 5
_SAMPLE_N_SHAPE, _SAMPLE_N_STATS = 7, 2000  # 2000 codes: sample std within 1.6% (one sd)
_SAMPLE_ERROR_HINTS = (
    (
        ("mat1 and mat2 shapes", "size mismatch"),
        f"z must have model.latent_dim columns ({_SAMPLE_LATENT} for the check's model): draw it with "
        "torch.randn(n, model.latent_dim) instead of a hard-coded size.",
    ),
    (
        ("expected images of shape",),
        "model(...) expects images (it encodes first); to decode latent codes use model.decode(z).",
    ),
    (
        ("dtype", "Double", "scalar type"),
        "Draw z as float32 like the model's weights: torch.randn(n, model.latent_dim).",
    ),
)


class _RecordingVAE(VAE):
    """A small VAE whose decoder notes every latent batch it is given, however it is called."""

    def __init__(self):
        torch.default_generator.manual_seed(0)  # inside the check's forked RNG: the same weights every time
        super().__init__(latent_dim=_SAMPLE_LATENT, hidden_dim=32)
        self.eval()
        self.decoded = []
        self.decoder.hidden.register_forward_pre_hook(self._record)

    def _record(self, module, inputs):
        self.decoded.append(inputs[0].detach().clone())


def _recorded_codes(check, model, n):
    codes = [z for z in model.decoded if z.dim() == 2]
    if not codes:
        check.fail(
            "never_decoded",
            "Your function never ran the model's decoder: the images must be decoded from latent codes "
            "z drawn from the prior.",
            "Use model.decode(z) with z = torch.randn(n, model.latent_dim).",
        )
    total = sum(len(z) for z in codes)
    if total != n:
        matching = [z for z in codes if len(z) == n]
        if not matching:
            check.fail(
                "wrong_number_of_codes",
                f"Asked for n = {n} images, your function decoded {total} latent codes.",
                "Draw exactly n codes: z = torch.randn(n, model.latent_dim); don't hard-code the number.",
            )
        return matching[-1].double()
    return torch.cat(codes).double()


def check_sample_prior(fn):
    """Check a student's ``sample_prior(model, n) -> images``.

    model: a trained VAE (or Autoencoder) with .latent_dim and .decode(z). Draws n codes from the
    prior, z = torch.randn(n, model.latent_dim), and returns model.decode(z): pixel probabilities
    of shape (n, 1, 28, 28) in [0, 1]. Returns a CheckResult.
    """
    return _run_check(
        "sample_prior(model, n)",
        _SAMPLE_FORMULA,
        fn,
        _check_sample_prior,
        "check_sample_prior",
        "fn(model, n)",
        _SAMPLE_ERROR_HINTS,
    )


def _sample_call(check, model, n, seed):
    model.decoded.clear()
    torch.default_generator.manual_seed(seed)  # CPU only: fork_rng restores just the CPU state
    images = check.call(model, n, described=f"fn(model, {n}) with a VAE of latent_dim {_SAMPLE_LATENT}")
    return check.tensor(images, "the images", f"a tensor of shape ({n}, 1, 28, 28)")


def _check_sample_prior(check):
    model = _RecordingVAE()
    n = _SAMPLE_N_SHAPE
    images = _sample_call(check, model, n, seed=0)
    z = _recorded_codes(check, model, n)
    if images.shape[0] != n:
        check.fail(
            "wrong_number_of_images",
            f"Asked for n = {n} images, your function returned {images.shape[0]} (shape {_shape(images)}).",
            "Draw exactly n codes and decode them; don't hard-code the number of samples.",
        )
    if tuple(images.shape) == (n, N_PIXELS):
        check.fail(
            "flat_images",
            f"Your images have shape {_shape(images)}, flat rows of 784 pixels; the exercise asks for "
            f"images of shape ({n}, 1, 28, 28), ready to show.",
            "model.decode(z) already returns (n, 1, 28, 28); or reshape with .view(n, 1, 28, 28).",
        )
    if tuple(images.shape) != (n, 1, 28, 28):
        check.fail(
            "wrong_image_shape",
            f"Your images have shape {_shape(images)}; the exercise asks for ({n}, 1, 28, 28).",
            "model.decode(z) returns exactly this shape.",
        )
    with torch.no_grad():
        logits = model.decoder(z.float()).double().reshape(n, 1, 28, 28)
    out = images.detach().double()
    if not _close(out, torch.sigmoid(logits), rtol=1e-4, atol=1e-5):
        if _close(out, logits, rtol=1e-4, atol=1e-5):
            check.fail(
                "returns_logits",
                "Your function returns the decoder's logits (raw scores, any real number), not pixel "
                "probabilities in [0, 1]: the sigmoid is missing.",
                "model.decode(z) applies the sigmoid for you (model.decode_logits(z) does not).",
            )
        if bool(((out == 0) | (out == 1)).all()):
            check.fail(
                "binarized_images",
                "Your images are binary (every pixel 0 or 1): the pixel probabilities were sampled or "
                "thresholded (torch.bernoulli, > 0.5). The exercise asks for the probabilities "
                "model.decode(z) themselves, the mean image of each code.",
                "Return model.decode(z) as it is.",
            )
        check.fail(
            "not_decoded_codes",
            "Your images are not model.decode(z) for the codes z your function decoded: the output was "
            "changed afterwards, or comes from somewhere else.",
            "Return model.decode(z) as it is.",
        )

    _sample_call(check, model, _SAMPLE_N_STATS, seed=1)
    z1 = _recorded_codes(check, model, _SAMPLE_N_STATS)
    _sample_call(check, model, _SAMPLE_N_STATS, seed=2)
    z2 = _recorded_codes(check, model, _SAMPLE_N_STATS)
    _sample_statistics(check, z1, z2)
    return (
        "Your samples are model.decode(z) for z ~ N(0, I): n fresh, independent standard normal codes "
        "of size model.latent_dim, returned as (n, 1, 28, 28) pixel probabilities."
    )


def _sample_statistics(check, z1, z2):
    n = z1.shape[0]
    same_every_call = torch.equal(z1, z2)
    if same_every_call and _rows_identical(z1):
        if bool((z1 == 0).all()):
            check.fail(
                "z_zero",
                "Your function decodes z = 0, the prior's mean, for every sample: all images are the "
                "same average digit. Sampling means drawing a fresh random z for each image.",
                "z = torch.randn(n, model.latent_dim).",
            )
        check.fail(
            "no_randomness",
            "Your function decodes the same fixed z for every sample and every call: there is no randomness.",
            "z = torch.randn(n, model.latent_dim).",
        )
    if same_every_call:
        check.fail(
            "seeded_inside",
            "Your codes are random, but the same on every call even when the caller's seed changes: the "
            "function seems to set its own seed (torch.manual_seed inside it, or a new torch.Generator).",
            "Remove the seeding from the function; let the caller seed if it wants repeatable samples.",
        )
    if _rows_identical(z1):
        check.fail(
            "shared_code",
            "Your function decodes one single code for all n images (like torch.randn(1, latent_dim) "
            "repeated): all samples are the same digit.",
            "Draw one code per image: z = torch.randn(n, model.latent_dim).",
        )
    correlation, kurtosis, beyond_two = _noise_statistics(z1)
    if bool((correlation.abs() > 0.99).all()):
        check.fail(
            "shared_latent_value",
            "Your codes have the same value in every latent dimension (like torch.randn(n, 1) "
            "broadcast): the samples only explore a line through the latent space.",
            "Draw every entry independently: z = torch.randn(n, model.latent_dim).",
        )
    if bool((correlation.abs() > 0.2).any()):
        check.fail(
            "codes_correlated",
            f"The latent dimensions of your codes are correlated (up to {float(correlation.abs().max()):.2f}); "
            "the prior N(0, I) has independent dimensions.",
            "z = torch.randn(n, model.latent_dim).",
        )
    if kurtosis < 2.4 or beyond_two < 0.02:
        check.fail(
            "uniform_codes",
            f"Your codes look uniform, not normal: {beyond_two:.1%} of the values lie beyond 2 standard "
            f"deviations, where normal draws have 4.6% (kurtosis {kurtosis:.2f}, normal 3). torch.rand "
            "draws uniform numbers in [0, 1); the prior is the standard normal N(0, I).",
            "Use torch.randn(n, model.latent_dim): the n in randn is for normal.",
        )
    if kurtosis > 3.6:
        check.fail(
            "codes_not_normal",
            f"Your codes are not normal: their tails are too heavy (kurtosis {kurtosis:.2f}, normal 3).",
            "z = torch.randn(n, model.latent_dim).",
        )
    means, spreads = z1.mean(dim=0), z1.std(dim=0)
    if bool((means.abs() > 6 / math.sqrt(n)).any()):
        check.fail(
            "codes_mean_wrong",
            f"Your codes are not centred on 0: per latent dimension their mean is {_values(means)}. The prior "
            "N(0, I) has mean 0.",
            "z = torch.randn(n, model.latent_dim), without a shift.",
        )
    if bool(((spreads - 1).abs() > 0.1).any()):
        check.fail(
            "codes_std_wrong",
            f"Your codes have standard deviation {_values(spreads)} per latent dimension; the prior N(0, I) "
            "has 1. (Scaling the codes, a 'temperature', changes how varied the samples are; this exercise "
            "asks for the prior itself.)",
            "z = torch.randn(n, model.latent_dim), without scaling.",
        )
