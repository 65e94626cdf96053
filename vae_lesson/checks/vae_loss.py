"""Check for the exercise ``vae_loss(logits, images, mu, logvar) -> loss``, the negative ELBO per image.

loss = (BCE-with-logits summed over pixels + KL summed over latent dimensions) / batch. The check
runs four probes whose reconstruction and KL vary independently, fits the student's totals as
a * reconstruction + b * KL, and reads the mistake off the weights a and b with two table look-ups.
"""

from types import SimpleNamespace

import torch

from ..kl import kl_divergence
from ..loss import reconstruction_loss
from ..models import N_PIXELS
from .errors import BCE, ELEMENTWISE, ErrorHint
from .harness import Mistake, close, codes, nice, run_check, shape, snapshot
from .loss_forms import FORM_MISTAKES, fit, kl_forms, reconstruction_forms

FORMULA = (
    "(F.binary_cross_entropy_with_logits(logits, images.view(-1, 784), reduction='sum') "
    "+ kl_divergence(mu, logvar).sum()) / batch_size"
)
# Neither size is a constant a student plausibly writes (a KL weight of 0.5, 2 or 4, a latent size of 2 or
# 20), so that such a constant shows up as itself rather than as "summed over the batch".
BATCH, LATENT = 6, 3
MU_SCALES = (3.0, 1.0, 0.4, 2.0)  # KL and BCE vary independently across the four probes
_FLATTEN = (
    "images arrive as (batch, 1, 28, 28) and logits as (batch, 784): flatten the images with "
    "images.view(-1, 784) (or images.reshape(len(images), -1)) before comparing them (your {called} got {shapes})."
)
ERROR_HINTS = (
    ErrorHint((ValueError, RuntimeError), lambda f: f.called in BCE and not f.same_shapes, _FLATTEN),
    ErrorHint((RuntimeError,), lambda f: f.called == "binary_cross_entropy",
              "F.binary_cross_entropy expects probabilities in [0, 1], but logits are raw scores: use "
              "F.binary_cross_entropy_with_logits(logits, x, reduction='sum'), which applies the sigmoid itself."),
    ErrorHint((RuntimeError,), lambda f: f.called in ELEMENTWISE, _FLATTEN),
)


def probe_inputs(index):
    """One probe: logits (6, 784), images (6, 1, 28, 28) in [0, 1] with a zero background, mu, logvar (6, 3)."""
    generator = torch.Generator().manual_seed(100 + index)
    logits = (torch.randn(BATCH, N_PIXELS, generator=generator) * 2).clamp(-6, 6)
    images = torch.rand(BATCH, 1, 28, 28, generator=generator)
    images[images < 0.5] = 0.0
    mu = torch.randn(BATCH, LATENT, generator=generator) * MU_SCALES[index]
    logvar = torch.randn(BATCH, LATENT, generator=generator) * 0.7
    return logits, images, mu, logvar


# a is pinned down to ~1e-7 by the large reconstruction term; b only to ~1e-4, because float32
# rounding of a loss near 800 is comparable to a KL weight error times a KL of a few nats.
def _a_is(target):
    return lambda f: nice(f.a, target(f) if callable(target) else target)


def _b_is(target):
    return lambda f: nice(f.b, target(f) if callable(target) else target, atol=1e-3)


# Facts: a, b (fitted weights), batch, latent, divisor, recon_part, kl_part.
# 1. Both terms carry the same weight a = b != 1: the whole loss is scaled.
WHOLE_LOSS_MISTAKES = (
    Mistake("loss_summed_over_batch", _a_is(lambda f: f.batch),
            "Your loss is summed over the batch, not averaged: it is {batch} times the expected value with the "
            "check's batch of {batch}. The ELBO is per image, so the loss should not grow with the batch size.",
            "Divide the summed loss by the batch size, images.shape[0]."),
    Mistake("returns_elbo", _a_is(-1),
            "Your loss is the ELBO itself, with the sign flipped: the optimiser minimises the loss, and we want "
            "to maximise the ELBO, so the loss is the negative ELBO = reconstruction BCE + KL.",
            "Return BCE + KL (both positive), not -(BCE + KL) or log-likelihood - KL."),
    Mistake("loss_divided_twice", _a_is(lambda f: 1 / f.batch),
            "Your loss is divided by the batch size twice: it is 1/{batch} of the expected value with the "
            "check's batch of {batch}.",
            "Average once: (sum over pixels, dims and batch) / batch_size."),
    Mistake("loss_zero", _a_is(0), "Your loss is 0 whatever the inputs.", "Return reconstruction + kl."),
    Mistake("loss_scaled", lambda f: True,
            "Your whole loss is {a:.4g} times the expected value: as if it were divided by {divisor:.4g} instead "
            "of by the batch size ({batch} in the check). A fixed number like 128 is wrong for a last, smaller "
            "batch and for the check.",
            "Divide by the actual batch size: images.shape[0] (or len(images))."),
)

# 2. Otherwise the reconstruction weight a and the KL weight b are read separately.
RECONSTRUCTION_WEIGHT_MISTAKES = (
    Mistake("reconstruction_mean_over_pixels", _a_is(1 / N_PIXELS),
            "Your reconstruction term is averaged over the 784 pixels instead of summed (reduction='mean' does "
            "this): it is 784 times too small, so the KL dominates the loss. With the check's first batch your "
            "reconstruction part is {recon_part:.3g} against a KL of {kl_part:.3g}. Trained like that, the model "
            "finds it cheapest to ignore the images: the encoder collapses to the prior and every reconstruction "
            "and sample is the same blurry average digit.",
            "Use reduction='sum' (then divide the total by the batch size): the BCE is the log-likelihood of all "
            "784 pixels, and each one counts."),
    Mistake("reconstruction_not_divided", _a_is(lambda f: f.batch),
            "Your reconstruction term is summed over the batch but not divided by the batch size ({batch} times "
            "too big), while the KL is averaged.",
            "Divide both terms by the batch size."),
    Mistake("reconstruction_divided_twice", _a_is(lambda f: 1 / f.batch),
            "Your reconstruction term is divided by the batch size twice.",
            "Divide the summed BCE by the batch size once."),
    Mistake("reconstruction_missing", _a_is(0),
            "Your loss has no reconstruction term: it does not depend on the logits or the images.",
            "Add the BCE: F.binary_cross_entropy_with_logits(logits, x, reduction='sum')."),
    Mistake("reconstruction_sign", _a_is(-1),
            "Your reconstruction term has the wrong sign: it is subtracted, so minimising the loss would make "
            "the reconstructions worse.",
            "The BCE is a negative log-likelihood, already positive: add it."),
    Mistake("reconstruction_scaled", lambda f: not nice(f.a, 1),
            "Your reconstruction term is {a:.3g} times the expected value.",
            "The reconstruction term is the BCE summed over the 784 pixels, divided by the batch size."),
)

KL_WEIGHT_MISTAKES = (
    Mistake("kl_missing", _b_is(0),
            "Your loss has no KL term: it is the reconstruction alone, which trains a plain autoencoder. The KL "
            "is what keeps the codes close to the prior N(0, I), so that sampling from the prior works.",
            "Add the KL: kl_divergence(mu, logvar).sum() / batch_size."),
    Mistake("kl_summed_over_batch", _b_is(lambda f: f.batch),
            "Your KL term is summed over the batch but not divided by the batch size: it is {batch} times too "
            "big next to the averaged reconstruction term.",
            "Divide the summed KL by the batch size too (or take .mean() of the per-example KL)."),
    Mistake("kl_mean_over_latent", _b_is(lambda f: 1 / f.latent),
            "Your KL term is averaged over the latent dimensions instead of summed (1/{latent} of the expected "
            "value with the check's {latent} latent dimensions).",
            "Sum the KL over the latent dimensions: .sum(dim=1), then average over the batch."),
    Mistake("kl_half_missing", _b_is(2),
            "Your KL term is twice the expected value: the factor 1/2 of the KL is missing (or it is weighted 2, "
            "a beta-VAE's weight; with beta = 1 the loss is exactly the negative ELBO).",
            "KL = 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)."),
    Mistake("kl_subtracted", _b_is(-1),
            "Your KL term is subtracted instead of added: the negative ELBO is reconstruction + KL. Minimising "
            "reconstruction - KL pushes the codes away from the prior without limit.",
            "Add the KL: loss = reconstruction + kl (the KL itself is never negative)."),
    Mistake("kl_divided_twice", _b_is(lambda f: 1 / f.batch),
            "Your KL term is divided by the batch size twice (a mean over the batch, then / batch_size again).",
            "Average the KL over the batch once."),
    Mistake("kl_weight_not_one", lambda f: not nice(f.b, 1, atol=1e-3),
            "Your KL term is weighted {b:.4g} instead of 1. With beta = 1 the loss is exactly the negative "
            "ELBO: reconstruction + 1 * KL.",
            "Drop the extra factor (other weights give a beta-VAE, a later lesson)."),
)

# Facts: loss (the returned tensor), batch.
OUTPUT_MISTAKES = (
    Mistake("loss_per_example", lambda f: tuple(f.loss.shape) == (f.batch,),
            "Your loss has shape {loss_shape}, one value per image; the loss for loss.backward() is one number: "
            "the per-image values averaged over the batch.",
            "Sum over pixels and latent dimensions, then divide by the batch size (or .mean() the per-image values)."),
    Mistake("loss_not_scalar", lambda f: f.loss.numel() != 1,
            "Your loss has shape {loss_shape}; it should be a single number (shape ()), the negative ELBO "
            "averaged over the batch.",
            "Use reduction='sum' in the BCE and .sum() on the KL, then divide by the batch size."),
    Mistake("loss_not_finite", lambda f: not bool(torch.isfinite(f.loss).all()),
            "Your loss is {value} for ordinary inputs (logits between -6 and 6, pixels in [0, 1]).",
            "A log of 0 (BCE on probabilities without the with_logits form) or of a negative number is the "
            "usual cause; F.binary_cross_entropy_with_logits is stable."),
)

# Facts: requires_grad, reached (names of the leaves a nonzero gradient reached), mismatched (a name or None).
GRADIENT_MISTAKES = (
    Mistake("loss_no_gradient", lambda f: not f.requires_grad,
            "Your loss has the right value, but no gradient flows through it: it was computed outside autograd "
            "(.item(), float(), numpy, .detach() or torch.no_grad), so loss.backward() cannot train anything.",
            "Keep the loss a tensor built with torch operations."),
) + tuple(
    Mistake(f"loss_no_gradient_{name}", lambda f, name=name: name not in f.reached,
            f"Your loss has the right value, but no gradient reaches {name}: the {part} is cut off from autograd "
            "(.detach(), .data, .item() or torch.no_grad).",
            "Compute every part of the loss with torch operations on the tensors you were given.")
    for name, part in (("logits", "reconstruction term"), ("mu", "KL term"), ("logvar", "KL term"))
) + (
    Mistake("loss_gradient_mismatch", lambda f: f.mismatched is not None,
            "Your loss has the right value, but its gradient with respect to {mismatched} does not match the "
            "negative ELBO's.",
            "Build the loss from differentiable torch operations only."),
)

# A confident decoder: logits of +-30 (a trained decoder gives about that for background pixels) on
# binary images. In float32 sigmoid(30) is exactly 1, so log(1 - sigmoid(30)) = log(0) = -inf.
SATURATED_LOGIT = 30.0
_SATURATED = "a batch where the decoder is confident (logits of +-{logit:g}, right and wrong)"
# Facts: loss, loss_value, reference (the negative ELBO there), expected (its value), logit.
SATURATED_MISTAKES = (
    Mistake("loss_log_sigmoid", lambda f: not bool(torch.isfinite(f.loss).all()),
            "Your loss is {loss_value} for " + _SATURATED + ", where the negative ELBO is {expected:.6g}. In "
            "float32 sigmoid({logit:g}) is exactly 1, so log(1 - sigmoid(logits)) is log(0) = -inf (and 0 * -inf "
            "= nan): the log is taken of sigmoid(logits) directly.",
            "Use F.binary_cross_entropy_with_logits(logits, x, reduction='sum'), or F.logsigmoid(logits) and "
            "F.logsigmoid(-logits) for log p and log(1 - p): they are exact for any logit."),
)
SATURATED_CAUTIONS = (
    Mistake("loss_inexact_saturated", lambda f: not close(f.loss, f.reference, rtol=1e-4, atol=1e-3),
            "for " + _SATURATED + " your loss is {loss_value:.6g}, the negative ELBO {expected:.6g}: the "
            "probabilities are clamped or an epsilon is added before the log (F.binary_cross_entropy on "
            "sigmoid(logits) clamps each log at -100). It trains, but confident mistakes are counted wrong and "
            "give almost no gradient.",
            "F.binary_cross_entropy_with_logits(logits, x, reduction='sum') is exact for any logit."),
)

CODES = codes(FORM_MISTAKES, WHOLE_LOSS_MISTAKES, RECONSTRUCTION_WEIGHT_MISTAKES, KL_WEIGHT_MISTAKES,
              OUTPUT_MISTAKES, GRADIENT_MISTAKES, SATURATED_MISTAKES, SATURATED_CAUTIONS)


def check_vae_loss(fn):
    """Check a student's ``vae_loss(logits, images, mu, logvar) -> loss``.

    logits: (batch, 784) decoder outputs before the sigmoid; images: (batch, 1, 28, 28) in [0, 1];
    mu, logvar: (batch, latent_dim). The loss is the negative ELBO per image with beta = 1:
    (BCE-with-logits summed over the pixels + KL summed over the latent dimensions), both summed
    over the batch and divided by the batch size. Return a scalar tensor (a tuple or LossTerms
    whose first element is the total is accepted too). Returns a CheckResult.
    """
    return run_check("vae_loss(logits, images, mu, logvar)", FORMULA, fn, _body, "check_vae_loss",
                     "fn(logits, images, mu, logvar)", ERROR_HINTS)


def _call(check, logits, images, mu, logvar):
    value = check.call(
        logits, images, mu, logvar,
        described=f"fn(logits, images, mu, logvar) with logits {shape(logits)}, images {shape(images)}, "
        f"mu and logvar {shape(mu)}",
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
    check.fail_first(OUTPUT_MISTAKES[:2], SimpleNamespace(loss=loss, batch=len(logits), loss_shape=shape(loss)))
    return loss.reshape(())


def _body(check):
    totals, reconstructions, kls = [], [], []
    for index in range(len(MU_SCALES)):
        logits, images, mu, logvar = probe_inputs(index)
        inputs = snapshot(logits=logits, images=images, mu=mu, logvar=logvar)
        loss = _call(check, logits, images, mu, logvar)
        check.unmodified(inputs)
        check.fail_first(OUTPUT_MISTAKES[2:], SimpleNamespace(loss=loss, value=float(loss)))
        totals.append(float(loss.detach()))
        reconstructions.append(reconstruction_forms(logits.double(), images.double()))
        kls.append(kl_forms(mu.double(), logvar.double()))
    _values(check, torch.tensor(totals, dtype=torch.float64), reconstructions, kls)
    _gradients(check)
    _saturated(check)
    return (
        "Your loss is the negative ELBO per image: the BCE summed over the 784 pixels plus the KL summed "
        "over the latent dimensions, averaged over the batch, with gradients reaching the logits, mu and logvar."
    )


def _values(check, totals, reconstructions, kls):
    """Fit total = a * reconstruction + b * KL over the probes, then name what a and b reveal."""
    recon, kl = float(reconstructions[0]["bce"]), float(kls[0]["kl"])
    seen = (
        f"\n(For the check's first batch your loss is {float(totals[0]):.5g}; the expected {recon + kl:.5g} is "
        f"reconstruction {recon:.5g} + KL {kl:.4g}, per image.)"
    )
    form, kl_form, a, b = fit(totals, reconstructions, kls)
    facts = SimpleNamespace(form=form, kl_form=kl_form, a=a, b=b, batch=BATCH, latent=LATENT,
                            divisor=BATCH / a if a else 0.0, recon_part=a * recon, kl_part=b * kl)
    if form is None:
        check.fail_with(FORM_MISTAKES[-1], facts, extra=seen)
    problems = [row for row in FORM_MISTAKES if row.recognise(facts)]  # the most telling first
    if not (nice(a, 1) and nice(b, 1, atol=1e-3)):
        if nice(a, b, atol=1e-3):
            tables = (WHOLE_LOSS_MISTAKES,)
        else:
            tables = (RECONSTRUCTION_WEIGHT_MISTAKES, KL_WEIGHT_MISTAKES)
        problems += [row for row in (next((r for r in t if r.recognise(facts)), None) for t in tables) if row]
    if problems:
        first, *others = problems
        also = "".join(f"\nAlso: {other.message.format(**vars(facts))}" for other in others)
        check.fail(first.code, first.message.format(**vars(facts)) + also + seen, first.hint)


def _gradients(check):
    logits, images, mu, logvar = probe_inputs(0)
    leaves = [t.clone().requires_grad_(True) for t in (logits, mu, logvar)]
    loss = _call(check, leaves[0], images, leaves[1], leaves[2])
    facts = SimpleNamespace(requires_grad=loss.requires_grad, reached=(), mismatched=None)
    if loss.requires_grad:
        loss.backward()
        references = [t.clone().requires_grad_(True) for t in (logits, mu, logvar)]
        expected = reconstruction_loss(references[0], images) + kl_divergence(references[1], references[2]).mean()
        expected.backward()
        names = ("logits", "mu", "logvar")
        facts.reached = [n for n, leaf in zip(names, leaves) if leaf.grad is not None and bool(leaf.grad.abs().max() > 0)]
        facts.mismatched = next((n for n, leaf, ref in zip(names, leaves, references)
                                 if n in facts.reached and not close(leaf.grad, ref.grad, rtol=1e-3, atol=1e-6)), None)
    check.fail_first(GRADIENT_MISTAKES, facts)


def _saturated(check):
    """A confident decoder's logits: a loss built on log(sigmoid(.)) fails, a clamped one gets a caution."""
    generator = torch.Generator().manual_seed(99)
    logits = SATURATED_LOGIT * torch.randint(0, 2, (BATCH, N_PIXELS), generator=generator).float() * 2 - SATURATED_LOGIT
    images = torch.randint(0, 2, (BATCH, 1, 28, 28), generator=generator).float()
    mu = torch.randn(BATCH, LATENT, generator=generator)
    logvar = torch.randn(BATCH, LATENT, generator=generator) * 0.7
    loss = _call(check, logits, images, mu, logvar).detach().double()
    expected = reconstruction_loss(logits.double(), images.double()) + kl_divergence(mu.double(), logvar.double()).mean()
    facts = SimpleNamespace(loss=loss, loss_value=float(loss), reference=expected, expected=float(expected),
                            logit=SATURATED_LOGIT)
    check.fail_first(SATURATED_MISTAKES, facts)
    check.caution_first(SATURATED_CAUTIONS, facts)
