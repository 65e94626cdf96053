"""Check for the exercise ``active_units(mu, threshold=0.01) -> int`` (lesson 8).

Dimension d is active when the variance over the images of its mean, Var_n(mu_nd), is above the
threshold (Burda et al., 2015). The probe's columns are chosen so that each known mistake gives
its own pair of counts at thresholds 0.01 and 0.5: four active columns (variance 0.25 to 4), three
with a standard deviation of 0.03 (variance 0.0009: counted only by a mistaken std), two with a
constant mean of 1.5 (a large KL-like term, no variance), one at 0.12 (mu^2 = 0.0144 is above 0.01,
half of it is not) and three collapsed at 0.
"""

from types import SimpleNamespace

import numpy as np
import torch

from ..collapse import active_units
from .harness import Mistake, codes, run_check, shape, snapshot

FORMULA = "int((mu.var(dim=0) > threshold).sum())   # variance over the images (rows), one per dimension"
THRESHOLDS = (0.01, 0.5)


def probe_codes(n=300, seed=0):
    """(n, 13) float32 means; the right counts are 4 at threshold 0.01 and 3 at 0.5."""
    g = torch.Generator().manual_seed(seed)
    columns = [s * torch.randn(n, generator=g) for s in (0.5, 1.0, 1.5, 2.0)]
    columns += [0.03 * torch.randn(n, generator=g) for _ in range(3)]
    columns += [1.5 + 0.001 * torch.randn(n, generator=g) for _ in range(2)]
    columns += [0.12 + 0.001 * torch.randn(n, generator=g)]
    columns += [1e-4 * torch.randn(n, generator=g) for _ in range(3)]
    return torch.stack(columns, dim=1)


def _counts(score, mu):
    """The count each threshold gives when `score` (a function of float64 mu) is compared with it."""
    return tuple(int((score(mu) > threshold).sum()) for threshold in THRESHOLDS)


# What each mistake counts on the probe, at the two thresholds. Facts: counts, right, n, d.
_BY_COUNT = (
    ("variance_over_latent_dims", lambda mu: _counts(lambda m: m.var(dim=1), mu),
     "Your count is {counts[0]}, but the probe has only {d} latent dimensions: you took the variance of each "
     "image's code over its {d} latent dimensions (dim=1), then counted images. Activity is a property of a "
     "dimension: how much its mean changes from one image to the next, a variance over the images.",
     "mu has one row per image: mu.var(dim=0) gives one variance per latent dimension."),
    ("std_not_variance", lambda mu: _counts(lambda m: m.std(dim=0), mu),
     "Your count is {counts[0]} instead of {right[0]}: you compared the standard deviation with the threshold. "
     "The threshold 0.01 is a variance; a standard deviation of 0.03 (variance 0.0009) is not active.",
     "Use .var(dim=0) (or .std(dim=0) ** 2)."),
    ("kl_not_means", lambda mu: _counts(lambda m: 0.5 * m.pow(2).mean(dim=0), mu),
     "Your count is {counts[0]} instead of {right[0]}: it counts the dimensions whose mean is far from 0 "
     "(a KL-like term, 0.5 * mean(mu^2)), not the ones whose mean changes with the image. A dimension whose "
     "mean is 1.5 for every image costs KL but tells the decoder nothing: its variance over the images is 0.",
     "Activity is the variance of mu over the images, mu.var(dim=0), not mu^2 or the KL."),
    ("second_moment_not_variance", lambda mu: _counts(lambda m: m.pow(2).mean(dim=0), mu),
     "Your count is {counts[0]} instead of {right[0]}: you averaged mu^2 without subtracting the mean first, "
     "which measures how far the codes are from 0 (like the KL), not how much they vary. A dimension whose mean "
     "is 1.5 for every image would count as active.",
     "Subtract each dimension's mean before squaring, or simply use mu.var(dim=0)."),
    ("counts_inactive", lambda mu: tuple(mu.shape[1] - count for count in _counts(lambda m: m.var(dim=0), mu)),
     "Your count is {counts[0]}: that is the number of inactive dimensions ({d} - {right[0]}). The comparison "
     "is the wrong way round.",
     "Count the dimensions whose variance is above the threshold: (variance > threshold).sum()."),
)
VALUE_OF = {code: counts for code, counts, _, _ in _BY_COUNT}

COUNT_MISTAKES = tuple(Mistake(code, (lambda c: lambda f: f.counts == VALUE_OF[c](f.mu))(code), message, hint)
                       for code, _, message, hint in _BY_COUNT) + (
    Mistake("threshold_ignored", lambda f: f.counts[0] == f.right[0] and f.counts[1] != f.right[1],
            "Your count is right at the default threshold 0.01, but with threshold=0.5 you return {counts[1]} "
            "instead of {right[1]}: the function ignores its `threshold` argument.",
            "Compare with the `threshold` parameter, not with the number 0.01."),
    Mistake("active_units_wrong", lambda f: True,
            "Your count is {counts[0]} at threshold 0.01 and {counts[1]} at 0.5; the probe's {d} dimensions have "
            "{right[0]} and {right[1]} with a variance over the images above those thresholds.",
            "Compute mu.var(dim=0), one variance per latent dimension, and count those above threshold."),
)

# What came back instead of a count. Facts: value, kind, shape, d, n, right, mask_count.
RETURN_MISTAKES = (
    Mistake("returns_mask", lambda f: f.shape == (f.d,) and f.is_mask,
            "Your function returned a mask {shape_text}, one True/False per latent dimension{agrees}, "
            "not the number of active dimensions. The exercise asks for the count, a Python int.",
            "Sum the mask and turn it into an int: int((variance > threshold).sum())."),
    Mistake("returns_per_image", lambda f: f.shape == (f.n,),
            "Your function returned values {shape_text}, one per image: the variance was taken over each image's "
            "latent dimensions (dim=1). Activity is one number per latent dimension, a variance over the images.",
            "mu has one row per image: mu.var(dim=0), then count the dimensions above threshold."),
    Mistake("returns_variances", lambda f: f.shape == (f.d,),
            "Your function returned numbers {shape_text}, one per latent dimension (the variances?), not the "
            "number of active dimensions.",
            "Compare the variances with threshold and count: int((variance > threshold).sum())."),
    Mistake("not_a_count", lambda f: True,
            "Your function returned {kind} {shape_text}; the exercise asks for one whole number, the count of "
            "active dimensions.",
            "Return int((mu.var(dim=0) > threshold).sum())."),
)

CODES = codes(RETURN_MISTAKES, COUNT_MISTAKES)


def check_active_units(fn):
    """Check a student's ``active_units(mu, threshold=0.01) -> int``.

    mu: (N, D), the encoder's means over N images. Returns how many of the D dimensions have a
    variance over the images above threshold, as an int (a 0-d tensor or numpy integer is also
    accepted). Returns a CheckResult.
    """
    return run_check("active_units(mu, threshold=0.01)", FORMULA, fn, _body, "check_active_units",
                     "fn(mu, threshold)")


def _as_count(check, value, mu):
    """The student's answer as an int, or a failure saying what came back instead."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
    if isinstance(array, (bool, np.bool_)) or array is None:
        array = None
    elif isinstance(array, (int, float, np.integer, np.floating)) or (isinstance(array, np.ndarray) and array.ndim == 0):
        number = float(array)
        if number == int(number):
            return int(number)
    n, d = mu.shape
    shape_of = tuple(np.shape(array)) if array is not None else ()
    is_mask = (isinstance(array, np.ndarray) and array.dtype == bool) or (
        isinstance(array, np.ndarray) and array.size and np.isin(array, (0, 1)).all())
    right = active_units(mu)
    agrees = (" (the right ones, as it happens)" if is_mask and shape_of == (d,) and int(np.sum(array)) == right
              else "")
    kind = "None" if value is None else f"a {type(value).__name__}"
    check.fail_first(RETURN_MISTAKES, SimpleNamespace(
        value=value, kind=kind, shape=shape_of, shape_text=f"of shape {shape_of}" if shape_of else f"({value!r})",
        d=d, n=n, is_mask=is_mask, agrees=agrees))


def _body(check):
    mu = probe_codes()
    inputs = snapshot(mu=mu)
    counts = []
    for threshold in THRESHOLDS:
        value = check.call(mu, threshold, described=f"fn(mu, {threshold}) with mu of shape {shape(mu)}")
        check.unmodified(inputs)
        counts.append(_as_count(check, value, mu))
    right = tuple(active_units(mu, threshold) for threshold in THRESHOLDS)
    counts = tuple(counts)
    if counts != right:
        check.fail_first(COUNT_MISTAKES, SimpleNamespace(counts=counts, right=right, mu=mu.double(), d=mu.shape[1]))
    # Another probe, another size, and the default threshold: nothing hard-coded to the first one.
    small = probe_codes(n=80, seed=1)[:, [0, 4, 7, 10, 1]]
    value = check.call(small, described=f"fn(mu) with mu of shape {shape(small)} and the default threshold")
    count = _as_count(check, value, small)
    if count != active_units(small):
        check.fail("active_units_wrong",
                   f"On a second probe of shape {shape(small)} (2 active dimensions) with the default threshold your "
                   f"function returns {count}: it seems to depend on the first probe's sizes, or the default "
                   "threshold is not 0.01.", "Write `def active_units(mu, threshold=0.01):` and use mu's own shape.")
    return ("Your active_units counts the dimensions whose mean varies over the images (rows) by more than the "
            "threshold, for both thresholds and both probes the check tried.")

