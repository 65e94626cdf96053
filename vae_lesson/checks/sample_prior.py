"""Check for the exercise ``sample_prior(model, n) -> images``: images = model.decode(z), z ~ N(0, I).

The check hands the student's function a small VAE whose decoder records every latent batch it
is given, so it can judge the codes themselves (fresh, independent, standard normal, n of them)
and compare the images with model.decode of exactly those codes.
"""

import math
from types import SimpleNamespace

import torch

from ..models import N_PIXELS, VAE
from . import normal_draws
from .errors import MATRIX_PRODUCTS, ErrorHint, from_module
from .harness import Mistake, close, codes, run_check, shape, values

FORMULA = "z = torch.randn(n, model.latent_dim);  images = model.decode(z)"
LATENT = 5
N_SHAPE, N_STATS = 7, 2000  # 2000 codes: sample std within 1.6% (one sd)
ERROR_HINTS = (
    ErrorHint((RuntimeError,), lambda f: f.mixed_dtypes,
              "Draw z as float32 like the model's weights: torch.randn(n, model.latent_dim) (your {called} got {dtypes})."),
    ErrorHint((RuntimeError,), lambda f: f.called in MATRIX_PRODUCTS,
              f"z must have model.latent_dim columns ({LATENT} for the check's model): draw it with "
              "torch.randn(n, model.latent_dim) instead of a hard-coded size (the decoder's {called} got {shapes})."),
    ErrorHint((ValueError,), lambda f: from_module(f, "vae_lesson.models"),
              "model(...) expects images (it encodes first); to decode latent codes use model.decode(z)."),
)

# Facts: decoded (the recorded 2-D code batches), n, total, matching (batches of n codes).
DECODED_MISTAKES = (
    Mistake("never_decoded", lambda f: not f.decoded,
            "Your function never ran the model's decoder: the images must be decoded from latent codes z drawn "
            "from the prior.",
            "Use model.decode(z) with z = torch.randn(n, model.latent_dim)."),
    Mistake("wrong_number_of_codes", lambda f: f.total != f.n and not f.matching,
            "Asked for n = {n} images, your function decoded {total} latent codes.",
            "Draw exactly n codes: z = torch.randn(n, model.latent_dim); don't hard-code the number."),
)

# Facts: images (shape), n.
IMAGE_SHAPE_MISTAKES = (
    Mistake("wrong_number_of_images", lambda f: f.images.shape[0] != f.n,
            "Asked for n = {n} images, your function returned {count} (shape {images_shape}).",
            "Draw exactly n codes and decode them; don't hard-code the number of samples."),
    Mistake("flat_images", lambda f: tuple(f.images.shape) == (f.n, N_PIXELS),
            "Your images have shape {images_shape}, flat rows of 784 pixels; the exercise asks for images of "
            "shape ({n}, 1, 28, 28), ready to show.",
            "model.decode(z) already returns (n, 1, 28, 28); or reshape with .view(n, 1, 28, 28)."),
    Mistake("wrong_image_shape", lambda f: tuple(f.images.shape) != (f.n, 1, 28, 28),
            "Your images have shape {images_shape}; the exercise asks for ({n}, 1, 28, 28).",
            "model.decode(z) returns exactly this shape."),
)

# Facts: out (the images, float64), logits (the decoder's logits for the recorded codes).
IMAGE_VALUE_MISTAKES = (
    Mistake("returns_logits", lambda f: close(f.out, f.logits, rtol=1e-4, atol=1e-5),
            "Your function returns the decoder's logits (raw scores, any real number), not pixel probabilities "
            "in [0, 1]: the sigmoid is missing.",
            "model.decode(z) applies the sigmoid for you (model.decode_logits(z) does not)."),
    Mistake("binarized_images", lambda f: bool(((f.out == 0) | (f.out == 1)).all()),
            "Your images are binary (every pixel 0 or 1): the pixel probabilities were sampled or thresholded "
            "(torch.bernoulli, > 0.5). The exercise asks for the probabilities model.decode(z) themselves, the "
            "mean image of each code.",
            "Return model.decode(z) as it is."),
    Mistake("not_decoded_codes", lambda f: True,
            "Your images are not model.decode(z) for the codes z your function decoded: the output was changed "
            "afterwards, or comes from somewhere else.",
            "Return model.decode(z) as it is."),
)

# Facts: noise (a normal_draws problem or None), zero, correlation, kurtosis, beyond_two, means, spreads, n.
CODE_MISTAKES = (
    Mistake("z_zero", lambda f: f.noise == normal_draws.FIXED and f.zero,
            "Your function decodes z = 0, the prior's mean, for every sample: all images are the same average "
            "digit. Sampling means drawing a fresh random z for each image.",
            "z = torch.randn(n, model.latent_dim)."),
    Mistake("no_randomness", lambda f: f.noise == normal_draws.FIXED,
            "Your function decodes the same fixed z for every sample and every call: there is no randomness.",
            "z = torch.randn(n, model.latent_dim)."),
    Mistake("seeded_inside", lambda f: f.noise == normal_draws.SEEDED,
            "Your codes are random, but the same on every call even when the caller's seed changes: the function "
            "seems to set its own seed (torch.manual_seed inside it, or a new torch.Generator).",
            "Remove the seeding from the function; let the caller seed if it wants repeatable samples."),
    Mistake("shared_code", lambda f: f.noise in (normal_draws.ONE_VALUE, normal_draws.ONE_ROW),
            "Your function decodes one single code for all n images (like torch.randn(1, latent_dim) repeated): "
            "all samples are the same digit.",
            "Draw one code per image: z = torch.randn(n, model.latent_dim)."),
    Mistake("shared_latent_value", lambda f: f.noise == normal_draws.ONE_COLUMN,
            "Your codes have the same value in every latent dimension (like torch.randn(n, 1) broadcast): the "
            "samples only explore a line through the latent space.",
            "Draw every entry independently: z = torch.randn(n, model.latent_dim)."),
    Mistake("codes_correlated", lambda f: f.noise == normal_draws.CORRELATED,
            "The latent dimensions of your codes are correlated (up to {correlation:.2f}); the prior N(0, I) has "
            "independent dimensions.",
            "z = torch.randn(n, model.latent_dim)."),
    Mistake("uniform_codes", lambda f: f.noise == normal_draws.UNIFORM,
            "Your codes look uniform, not normal: {beyond_two:.1%} of the values lie beyond 2 standard "
            "deviations, where normal draws have 4.6% (kurtosis {kurtosis:.2f}, normal 3). torch.rand draws "
            "uniform numbers in [0, 1); the prior is the standard normal N(0, I).",
            "Use torch.randn(n, model.latent_dim): the n in randn is for normal."),
    Mistake("codes_not_normal", lambda f: f.noise == normal_draws.HEAVY_TAILED,
            "Your codes are not normal: their tails are too heavy (kurtosis {kurtosis:.2f}, normal 3).",
            "z = torch.randn(n, model.latent_dim)."),
    Mistake("codes_mean_wrong", lambda f: bool((f.means.abs() > 6 / math.sqrt(f.n)).any()),
            "Your codes are not centred on 0: per latent dimension their mean is {means_values}. The prior "
            "N(0, I) has mean 0.",
            "z = torch.randn(n, model.latent_dim), without a shift."),
    Mistake("codes_std_wrong", lambda f: bool(((f.spreads - 1).abs() > 0.1).any()),
            "Your codes have standard deviation {spreads_values} per latent dimension; the prior N(0, I) has 1. "
            "(Scaling the codes, a 'temperature', changes how varied the samples are; this exercise asks for "
            "the prior itself.)",
            "z = torch.randn(n, model.latent_dim), without scaling."),
)

CODES = codes(DECODED_MISTAKES, IMAGE_SHAPE_MISTAKES, IMAGE_VALUE_MISTAKES, CODE_MISTAKES)


class RecordingVAE(VAE):
    """A small VAE whose decoder notes every latent batch it is given, however it is called."""

    def __init__(self):
        torch.default_generator.manual_seed(0)  # inside the check's forked RNG: the same weights every time
        super().__init__(latent_dim=LATENT, hidden_dim=32)
        self.eval()
        self.decoded = []
        self.decoder.hidden.register_forward_pre_hook(self._record)

    def _record(self, module, inputs):
        self.decoded.append(inputs[0].detach().clone())


def check_sample_prior(fn):
    """Check a student's ``sample_prior(model, n) -> images``.

    model: a trained VAE (or Autoencoder) with .latent_dim and .decode(z). Draws n codes from the
    prior, z = torch.randn(n, model.latent_dim), and returns model.decode(z): pixel probabilities
    of shape (n, 1, 28, 28) in [0, 1]. Returns a CheckResult.
    """
    return run_check("sample_prior(model, n)", FORMULA, fn, _body, "check_sample_prior", "fn(model, n)", ERROR_HINTS)


def _call(check, model, n, seed):
    """The images the student's function returned and the codes it decoded (float64)."""
    model.decoded.clear()
    torch.default_generator.manual_seed(seed)  # CPU only: fork_rng restores just the CPU state
    images = check.call(model, n, described=f"fn(model, {n}) with a VAE of latent_dim {LATENT}")
    images = check.tensor(images, "the images", f"a tensor of shape ({n}, 1, 28, 28)")
    decoded = [z for z in model.decoded if z.dim() == 2]
    total = sum(len(z) for z in decoded)
    matching = [z for z in decoded if len(z) == n]
    check.fail_first(DECODED_MISTAKES, SimpleNamespace(decoded=decoded, n=n, total=total, matching=matching))
    return images, (torch.cat(decoded) if total == n else matching[-1]).double()


def _body(check):
    model = RecordingVAE()
    n = N_SHAPE
    images, z = _call(check, model, n, seed=0)
    check.fail_first(IMAGE_SHAPE_MISTAKES, SimpleNamespace(images=images, n=n, count=images.shape[0],
                                                           images_shape=shape(images)))
    with torch.no_grad():
        logits = model.decoder(z.float()).double().reshape(n, 1, 28, 28)
    out = images.detach().double()
    if not close(out, torch.sigmoid(logits), rtol=1e-4, atol=1e-5):
        check.fail_first(IMAGE_VALUE_MISTAKES, SimpleNamespace(out=out, logits=logits))

    _, z1 = _call(check, model, N_STATS, seed=1)
    _, z2 = _call(check, model, N_STATS, seed=2)
    noise = normal_draws.problem(z1, z2)
    measured = normal_draws.described(z1) if noise not in (normal_draws.FIXED, normal_draws.SEEDED,
                                                          normal_draws.ONE_VALUE, normal_draws.ONE_ROW) else {}
    means, spreads = z1.mean(dim=0), z1.std(dim=0)
    check.fail_first(CODE_MISTAKES, SimpleNamespace(
        noise=noise, zero=bool((z1 == 0).all()), n=N_STATS, means=means, spreads=spreads,
        means_values=values(means), spreads_values=values(spreads), **measured))
    return (
        "Your samples are model.decode(z) for z ~ N(0, I): n fresh, independent standard normal codes "
        "of size model.latent_dim, returned as (n, 1, 28, 28) pixel probabilities."
    )
