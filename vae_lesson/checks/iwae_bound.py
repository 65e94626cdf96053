"""Check for the exercise ``iwae_bound(log_weights) -> (N,)``: log (1/k) sum_i w_i for each image.

log_weights has shape (k, N): log w_i = log p(x, z_i) - log q(z_i | x) for k draws per image. The
check's log-weights lie near -120 and -800, as real ones do for MNIST and for larger images: exp()
of them is 0 in float32 (below about -104) and even in float64 (below about -745), so only a
logsumexp survives. Each wrong answer is compared with the value its mistake gives.
"""

import math
from types import SimpleNamespace

import torch

from ..likelihood import iwae_bound
from .harness import Mistake, equals_wrong_answer, close, codes, run_check, shape, snapshot, values

FORMULA = "torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])"
K, N = 5, 4  # k != N, so a result over the wrong axis has the wrong shape
CENTRES = (-120.0, -800.0)  # float32 exp underflows at the first, float64 exp at the second


def probe_inputs(centre):
    """(K, N) float32 log-weights around `centre`, spread by a few nats as real ones are."""
    generator = torch.Generator().manual_seed(int(-centre))
    return centre + 3 * torch.randn(K, N, generator=generator)


def wrong_answers(log_weights):
    """What each classic mistake returns for these log-weights (float64, shape (N,))."""
    w = log_weights.double()
    log_k = math.log(w.shape[0])
    return {
        "elbo_mean": w.mean(dim=0),
        "log_k_missing": torch.logsumexp(w, dim=0),
        "log_k_added": torch.logsumexp(w, dim=0) + log_k,
        "k_not_log_k": torch.logsumexp(w, dim=0) - w.shape[0],
        "max_only": w.max(dim=0).values,
    }


# Facts: out (float64 result), k, n, out_shape.
SHAPE_MISTAKES = (
    Mistake("wrong_axis", lambda f: tuple(f.out.shape) == (f.k,),
            "Your result has shape {out_shape}, one value per draw: the average was taken over the N = {n} images "
            "(dim=1) instead of over the k = {k} draws (dim=0). The bound is one number per image.",
            "log_weights is (k, N): reduce over dim=0."),
    Mistake("not_per_image", lambda f: f.out.numel() == 1,
            "Your result is a single number; the bound is one number per image, shape ({n},).",
            "Reduce over the draws only: torch.logsumexp(log_weights, dim=0), not over every entry."),
    Mistake("wrong_shape", lambda f: tuple(f.out.shape) != (f.n,),
            "Your result has shape {out_shape}; for log_weights of shape ({k}, {n}) the bound has shape ({n},).",
            "Reduce over dim=0, the k draws."),
)

# Facts: out, expected, finite (out is finite everywhere), matching (names of wrong_answers it equals), centre.
VALUE_MISTAKES = (
    Mistake("exp_underflow", lambda f: not f.finite,
            "Your result is {out_values} for log-weights near {centre:g}, where the bound is {expected_values}: "
            "exp() of such numbers underflows to 0 (below about -104 in float32, -745 in float64), and the log "
            "of 0 is -inf. Real log-weights of MNIST images are near -100, so log(mean(exp(.))) breaks exactly "
            "where it is needed.",
            "Never exponentiate the log-weights: torch.logsumexp(log_weights, dim=0) subtracts the largest one "
            "first and adds it back, so nothing underflows; then subtract log k."),
    equals_wrong_answer("elbo_mean",
            "Your result is the mean of the log-weights, (1/k) sum_i log w_i: that is the ELBO estimated with k "
            "samples, not the importance-weighted bound. The bound averages the weights w_i themselves, then "
            "takes the log: log (1/k) sum_i w_i, which is higher (Jensen's inequality).",
            "Average the weights, not their logs: torch.logsumexp(log_weights, dim=0) - log k."),
    equals_wrong_answer("log_k_missing",
            "Your result is log sum_i w_i, without the 1/k: it is log k = {log_k:.3f} too high with the check's "
            "k = {k}, and would grow with k even for a perfect model.",
            "Subtract math.log(k), where k = log_weights.shape[0]."),
    equals_wrong_answer("log_k_added",
            "Your result is log k too high twice over: log k was added instead of subtracted.",
            "log (1/k) sum_i w_i = logsumexp(log w) - log k."),
    equals_wrong_answer("k_not_log_k",
            "Your result subtracts k = {k} instead of log k = {log_k:.3f}: inside the log, 1/k becomes - log k.",
            "Subtract math.log(k), not k."),
    equals_wrong_answer("max_only",
            "Your result is the largest log-weight of each image. logsumexp is close to the maximum when one "
            "weight dominates, but the other draws count too, and the 1/k is missing.",
            "torch.logsumexp(log_weights, dim=0) - math.log(k)."),
    Mistake("wrong_value", lambda f: True,
            "Your result is {out_values} for log-weights near {centre:g}, where the bound is {expected_values}, "
            "and not in any of the ways the check knows (the mean of the log-weights, log k missing or added).",
            "Build it in two parts: s = torch.logsumexp(log_weights, dim=0), then s - math.log(k)."),
)

CODES = codes(SHAPE_MISTAKES, VALUE_MISTAKES)


def check_iwae_bound(fn):
    """Check a student's ``iwae_bound(log_weights) -> bound``.

    log_weights: (k, N), log p(x_n, z_i) - log q(z_i | x_n) for k draws per image. The bound of
    each image is log (1/k) sum_i w_i = logsumexp over the k draws minus log k, shape (N,).
    Returns a CheckResult.
    """
    return run_check("iwae_bound(log_weights)", FORMULA, fn, _body, "check_iwae_bound", "fn(log_weights)")


def _body(check):
    for centre in CENTRES:
        log_weights = probe_inputs(centre)
        inputs = snapshot(log_weights=log_weights)
        out = check.call(log_weights, described=f"fn(log_weights) with log_weights of shape {shape(log_weights)} "
                                                f"near {centre:g}")
        out = check.tensor(out, "the bound", f"a tensor of shape ({N},)")
        check.unmodified(inputs)
        out = out.detach().double()
        check.fail_first(SHAPE_MISTAKES, SimpleNamespace(out=out, k=K, n=N, out_shape=shape(out)))
        expected = iwae_bound(log_weights.double())
        if not close(out, expected, rtol=1e-6, atol=1e-3):
            matching = {name for name, value in wrong_answers(log_weights).items()
                        if close(out, value, rtol=1e-6, atol=1e-3)}
            check.fail_first(VALUE_MISTAKES, SimpleNamespace(
                out=out, expected=expected, finite=bool(torch.isfinite(out).all()), matching=matching,
                centre=centre, k=K, log_k=math.log(K), out_values=values(out, 5), expected_values=values(expected, 5)))
    return (
        "Your bound is log (1/k) sum_i w_i for each image, computed without ever forming the weights: it stays "
        "finite for log-weights near -120 and -800, where exp() underflows even in float64."
    )
