"""Check for the exercise ``class MyVAE(nn.Module)``: encode -> (mu, logvar), forward -> (logits, mu, logvar).

The check builds the student's class with small sizes and judges it by behaviour only: the shapes
of what encode and forward return, logits rather than probabilities, two separate heads for mu and
logvar, logvar free to be negative, fresh noise in every forward pass, gradients reaching every
parameter, and the parameter count of the lecture's layers. The latent code z is read where the
decoder receives it: the input of any nn.Linear with latent_dim input features.
"""

from types import SimpleNamespace

import torch
from torch import nn

from ..loss import vae_loss
from ..models import N_PIXELS
from . import normal_draws
from .errors import MATRIX_PRODUCTS, ErrorHint
from .harness import Mistake, close, codes, run_check, shape, values

FORMULA = (
    "h = F.relu(self.hidden(images.flatten(1)));  mu, logvar = self.to_mu(h), self.to_logvar(h);  "
    "z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu);  logits = self.decoder(z)"
)
LATENT, HIDDEN = 3, 16
STRUCTURAL = (normal_draws.FIXED, normal_draws.SEEDED, normal_draws.ONE_VALUE, normal_draws.ONE_ROW,
              normal_draws.ONE_COLUMN)  # problems of where the noise comes from, not of its distribution
N_SHAPE, N_STATS = 8, 2000
# Inputs far beyond [0, 1] spread the untrained heads' outputs: logvar of both signs, |logvar| of several units.
WIDE_INPUT_SCALE = 10.0


def parameter_count(latent_dim, hidden_dim):
    """784-hidden-(mu, logvar) encoder and latent-hidden-784 decoder, every nn.Linear with a bias."""
    encoder = N_PIXELS * hidden_dim + hidden_dim + 2 * (hidden_dim * latent_dim + latent_dim)
    decoder = latent_dim * hidden_dim + hidden_dim + hidden_dim * N_PIXELS + N_PIXELS
    return encoder + decoder


LECTURE_COUNT = parameter_count(20, 500)
ERROR_HINTS = (
    ErrorHint((RuntimeError,), lambda f: f.called in MATRIX_PRODUCTS and "28, 28)" in f.shapes,
              "The images arrive as (N, 1, 28, 28); the first nn.Linear needs (N, 784). Flatten them inside the "
              "model, first thing in encode: images.view(len(images), -1) or images.flatten(1) (your {called} got "
              "{shapes})."),
)

# Facts: model (what the class built), fn (what was passed).
CLASS_MISTAKES = (
    Mistake("instance_not_class", lambda f: isinstance(f.fn, nn.Module),
            "check_vae_model needs your class itself, MyVAE, but got a model already built from it. The check "
            "builds its own, with small sizes.",
            "Pass the class: check_vae_model(MyVAE), not check_vae_model(MyVAE())."),
    Mistake("not_a_module", lambda f: not isinstance(f.model, nn.Module),
            "Building your class gave an object of type {kind}, not an nn.Module: the optimizer cannot find its "
            "parameters and the model cannot be called.",
            "Write class MyVAE(nn.Module): and call super().__init__() first in __init__."),
)

# Facts: out (what encode returned), n, latent, out_shapes.
ENCODE_MISTAKES = (
    Mistake("encode_not_pair", lambda f: not (isinstance(f.out, (tuple, list)) and len(f.out) == 2),
            "encode returned {out_kind}; it should return the pair (mu, logvar), two tensors of shape "
            "({n}, {latent}).",
            "End encode with: return self.to_mu(h), self.to_logvar(h)."),
    Mistake("encode_wrong_shape", lambda f: f.out_shapes != [(f.n, f.latent)] * 2,
            "encode returned mu and logvar of shapes {out_shapes}; for {n} images and latent_dim={latent} both "
            "should be ({n}, {latent}).",
            "mu and logvar each come from an nn.Linear(hidden_dim, latent_dim) applied to the hidden layer."),
)

# Facts: out (what forward returned), n, latent, out_shapes.
FORWARD_MISTAKES = (
    Mistake("forward_not_triple", lambda f: not (isinstance(f.out, (tuple, list)) and len(f.out) == 3),
            "forward returned {out_kind}; it should return the triple (logits, mu, logvar): the loss needs all "
            "three.",
            "End forward with: return logits, mu, logvar."),
    Mistake("logits_not_flat", lambda f: f.out_shapes[0] == (f.n, 1, 28, 28),
            "forward's logits have shape {logits_shape}; the exercise asks for flat rows ({n}, 784), the shape "
            "the decoder's last nn.Linear gives and the loss compares with the flattened images.",
            "Return the decoder's output as it is, without reshaping it to images."),
    Mistake("forward_wrong_shape", lambda f: f.out_shapes != [(f.n, N_PIXELS), (f.n, f.latent), (f.n, f.latent)],
            "forward returned shapes {out_shapes}; for {n} images and latent_dim={latent} they should be "
            "({n}, 784), ({n}, {latent}), ({n}, {latent}).",
            "logits come from nn.Linear(hidden_dim, 784); mu and logvar from encode."),
)

# Facts: logits, mu, logvar (a batch of forward's outputs), zero_fraction.
OUTPUT_MISTAKES = (
    Mistake("returns_probabilities", lambda f: bool(((f.logits >= 0) & (f.logits <= 1)).all()),
            "forward's first output lies in [0, 1] everywhere: these are probabilities (a sigmoid at the end), "
            "not logits. The loss F.binary_cross_entropy_with_logits applies the sigmoid itself, so it would be "
            "applied twice.",
            "Drop the sigmoid from forward; return the last nn.Linear's raw output."),
    Mistake("logvar_is_mu", lambda f: close(f.mu, f.logvar, rtol=1e-5, atol=1e-6),
            "Your mu and logvar are the same tensor: one head serves for both. The mean and the log-variance are "
            "different things, and each needs its own weights.",
            "Two heads: self.to_mu = nn.Linear(hidden_dim, latent_dim) and self.to_logvar = nn.Linear(hidden_dim, "
            "latent_dim) (or one nn.Linear with 2 * latent_dim outputs, split in two)."),
    Mistake("logvar_relu", lambda f: bool((f.logvar >= 0).all()) and f.zero_fraction > 0.05,
            "Your logvar is never negative, and {zero_fraction:.0%} of its values are exactly 0: a ReLU sits on "
            "the logvar head. Then sigma = exp(logvar / 2) >= 1: every code is at least as spread as the prior "
            "N(0, 1) and never more certain than it, so the codes are mostly noise and the reconstructions blur. "
            "logvar is a logarithm; a negative value simply means sigma < 1.",
            "Leave the logvar head linear: logvar = self.to_logvar(h), with no activation."),
    Mistake("logvar_positive", lambda f: bool((f.logvar > 0).all()),
            "Your logvar is positive for every input (smallest value {logvar_min:.3g}): an activation (softplus, "
            "exp, abs, a square) forces it. Then sigma = exp(logvar / 2) >= 1: every code is at least as spread "
            "as the prior N(0, 1) and never more certain than it, so the codes are mostly noise and the "
            "reconstructions blur. logvar is a logarithm; a negative value simply means sigma < 1.",
            "Leave the logvar head linear: logvar = self.to_logvar(h), with no activation."),
)

# Facts: captured (z was found), z_is_mu, noise (a normal_draws problem of eps = (z - mu) / sigma or None),
# scale (the form of sigma that makes eps standard normal, or None), logits_same (across two seeds).
NOISE_MISTAKES = (
    Mistake("no_fresh_noise", lambda f: not f.captured and f.logits_same,
            "forward gives the same logits on every call, whatever the random seed: z is not sampled (z = mu), "
            "or the noise is drawn with a seed of its own.",
            "z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu), in forward, with no seed inside."),
    Mistake("z_is_mu", lambda f: f.z_is_mu,
            "Your decoder receives mu itself: forward never samples z. Without noise the KL's pull on sigma "
            "has nothing to act against, and the decoder never learns to handle codes near mu, which is what "
            "sampling from the prior needs.",
            "z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) (lesson 3's reparameterize)."),
    Mistake("noise_fixed", lambda f: f.noise == normal_draws.FIXED,
            "The noise in your forward is the same for every image and every call: it was drawn once (in "
            "__init__, say) or is a constant.",
            "Draw it inside forward, every call: torch.randn_like(mu)."),
    Mistake("noise_seeded", lambda f: f.noise == normal_draws.SEEDED,
            "Your noise is random across images but the same on every call, even when the caller's seed "
            "changes: forward seems to set its own seed (torch.manual_seed inside it, or a new torch.Generator).",
            "Remove the seeding from forward; let the caller seed if it wants repeatable runs."),
    Mistake("noise_shared_by_batch", lambda f: f.noise in (normal_draws.ONE_VALUE, normal_draws.ONE_ROW),
            "Your forward draws one noise vector for the whole batch (like torch.randn(1, latent_dim)): every "
            "image's z moves the same way.",
            "One draw per image and dimension: torch.randn_like(mu)."),
    Mistake("noise_shared_by_dimensions", lambda f: f.noise == normal_draws.ONE_COLUMN,
            "Your noise has the same value in every latent dimension (like torch.randn(len(mu), 1) broadcast).",
            "One draw per image and dimension: torch.randn_like(mu)."),
    Mistake("std_is_variance", lambda f: f.scale == "variance",
            "z - mu is exp(logvar) * eps: exp(logvar) is the variance sigma^2, not the standard deviation.",
            "sigma = torch.exp(0.5 * logvar): halve logvar before the exp."),
    Mistake("sigma_missing", lambda f: f.scale == "one",
            "z - mu is plain eps: the noise is not scaled by sigma, so every code has spread 1 whatever the "
            "encoder says.",
            "z = mu + torch.exp(0.5 * logvar) * eps."),
    Mistake("noise_not_standard_normal", lambda f: f.noise is not None or f.scale is None,
            "(z - mu) / sigma with sigma = exp(logvar / 2) should be fresh N(0, 1) noise, but yours is not "
            "({noise_text}).",
            "eps = torch.randn_like(mu) (normal, not torch.rand); z = mu + torch.exp(0.5 * logvar) * eps."),
)

# Facts: count, expected, latent, hidden, unused (names of parameters no gradient reached), default_count.
STRUCTURE_MISTAKES = (
    Mistake("parameter_unused", lambda f: bool(f.unused),
            "No gradient of the loss reaches {unused_text}: a layer is created but not used in forward (or its "
            "output is detached), so training never changes it.",
            "Use every layer in forward, without .detach() or torch.no_grad()."),
    Mistake("parameter_count", lambda f: f.count != f.expected,
            "Your model built with latent_dim={latent}, hidden_dim={hidden} has {count:,} parameters; the lecture's "
            "layers have {expected:,}: nn.Linear(784, {hidden}), nn.Linear({hidden}, {latent}) for mu, "
            "nn.Linear({hidden}, {latent}) for logvar, nn.Linear({latent}, {hidden}), nn.Linear({hidden}, 784), "
            "each with a bias.",
            "One hidden layer in the encoder, two heads, one hidden layer in the decoder."),
    Mistake("wrong_defaults", lambda f: f.default_count != LECTURE_COUNT,
            "MyVAE() with its default sizes has {default_count:,} parameters; the lecture's 784-500-20 VAE has "
            f"{LECTURE_COUNT:,}.",
            "def __init__(self, latent_dim=20, hidden_dim=500):"),
)

CODES = codes(CLASS_MISTAKES, ENCODE_MISTAKES, FORWARD_MISTAKES, OUTPUT_MISTAKES, NOISE_MISTAKES, STRUCTURE_MISTAKES)


def check_vae_model(cls):
    """Check a student's VAE class ``MyVAE(latent_dim=20, hidden_dim=500)``.

    encode(images) -> (mu, logvar), each (N, latent_dim); forward(images) -> (logits (N, 784), mu,
    logvar) with z = mu + exp(logvar / 2) * eps sampled afresh on every call. images: (N, 1, 28, 28).
    Returns a CheckResult.
    """
    return run_check("MyVAE", FORMULA, cls, _body, "check_vae_model", "MyVAE(latent_dim, hidden_dim)", ERROR_HINTS)


def _run(check, fn, *args, described):
    """fn(*args) through the check's guard (time limit, global state, exceptions explained)."""
    student, check.fn = check.fn, fn
    try:
        return check.call(*args, described=described)
    finally:
        check.fn = student


def _kind(value):
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    return f"an object of type {type(value).__name__}"


def _shapes(out):
    return [tuple(t.shape) if isinstance(t, torch.Tensor) else None for t in out]


def probe_images(n, seed):
    """(n, 1, 28, 28) images in [0, 1] with a zero background."""
    images = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    images[images < 0.5] = 0.0
    return images


def _build(check, latent, hidden):
    torch.default_generator.manual_seed(0)  # inside the check's forked RNG: the same weights every time
    model = _run(check, check.fn, latent, hidden,
                 described=f"{check.fn.__name__}(latent_dim={latent}, hidden_dim={hidden})")
    check.fail_first(CLASS_MISTAKES[1:], SimpleNamespace(model=model, fn=check.fn, kind=type(model).__name__))
    return model


def _forward(check, model, images, seed, recorded):
    recorded.clear()
    torch.default_generator.manual_seed(seed)
    out = _run(check, model, images, described=f"model(images) with images {shape(images)}")
    facts = SimpleNamespace(out=out, out_kind=_kind(out), n=len(images), latent=LATENT)
    check.fail_first(FORWARD_MISTAKES[:1], facts)
    facts.out_shapes = _shapes(out)
    facts.logits_shape = facts.out_shapes[0]
    check.fail_first(FORWARD_MISTAKES[1:], facts)
    return out, (recorded[0].double() if recorded else None)


def _body(check):
    check.fail_first(CLASS_MISTAKES[:1], SimpleNamespace(fn=check.fn))
    model = _build(check, LATENT, HIDDEN)
    model.train()
    images = probe_images(N_SHAPE, seed=0)

    out = _run(check, model.encode, images, described=f"model.encode(images) with images {shape(images)}")
    facts = SimpleNamespace(out=out, out_kind=_kind(out), n=N_SHAPE, latent=LATENT)
    check.fail_first(ENCODE_MISTAKES[:1], facts)
    facts.out_shapes = _shapes(out)
    check.fail_first(ENCODE_MISTAKES[1:], facts)

    recorded = []
    for layer in model.modules():  # the decoder's first layer: the one that takes z
        if isinstance(layer, nn.Linear) and layer.in_features == LATENT:
            layer.register_forward_pre_hook(lambda module, inputs: recorded.append(inputs[0].detach().clone()))
    _forward(check, model, images, seed=0, recorded=recorded)

    wide = torch.randn(N_STATS, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * WIDE_INPUT_SCALE
    (logits, mu, logvar), _ = _forward(check, model, wide, seed=1, recorded=recorded)
    logits, mu, logvar = (t.detach().double() for t in (logits, mu, logvar))
    check.fail_first(OUTPUT_MISTAKES, SimpleNamespace(
        logits=logits, mu=mu, logvar=logvar, zero_fraction=float((logvar == 0).double().mean()),
        logvar_min=float(logvar.min())))

    # The noise itself, on images in [0, 1] (moderate sigma, so eps = (z - mu) / sigma is recovered exactly).
    images = probe_images(N_STATS, seed=1)
    (logits1, mu1, logvar1), z1 = _forward(check, model, images, seed=1, recorded=recorded)
    (logits2, _, _), z2 = _forward(check, model, images, seed=2, recorded=recorded)
    mu1, sigma1 = mu1.detach().double(), torch.exp(0.5 * logvar1.detach().double())
    noise = SimpleNamespace(captured=z1 is not None and z2 is not None and z1.shape == mu1.shape,
                            logits_same=torch.equal(logits1, logits2), z_is_mu=False, noise=None, scale="sigma",
                            noise_text="")
    if noise.captured:
        noise.z_is_mu = close(z1, mu1, rtol=1e-5, atol=1e-6)
        eps1 = (z1 - mu1) / sigma1
        noise.noise = normal_draws.problem(eps1, (z2 - mu1) / sigma1)
        if noise.noise not in STRUCTURAL:  # which sigma scales the noise: seen where logvar is far from 0
            (_, mu_wide, _), z_wide = _forward(check, model, wide, seed=3, recorded=recorded)
            forms = {"sigma": torch.exp(0.5 * logvar), "variance": torch.exp(logvar), "one": torch.ones_like(logvar)}
            offset = z_wide - mu_wide.detach().double()
            noise.scale = next((name for name, scale in forms.items() if _standard_normal(offset / scale)), None)
            if noise.scale is not None:
                noise.noise = None
        if noise.noise is None and noise.scale is None:
            noise.noise_text = f"per dimension mean {values(eps1.mean(dim=0))}, std {values(eps1.std(dim=0))}"
        if noise.noise is not None:
            noise.noise_text = noise.noise + ": " + ", ".join(
                f"{k} {v:.3g}" for k, v in normal_draws.described(eps1).items())
    check.fail_first(NOISE_MISTAKES, noise)
    _structure(check, model)
    return (
        "Your VAE encodes to (mu, logvar) with two separate heads, leaves logvar free to be negative, samples "
        "z = mu + sigma * eps with fresh noise on every forward pass, returns logits, and has the lecture's "
        "layers: every parameter gets a gradient from the loss."
    )


def _standard_normal(eps):
    """(N, D) draws look like N(0, 1): the shared shape test, mean about 0 and std about 1 per dimension."""
    n = eps.shape[0]
    return (normal_draws.statistics(eps)[1] < normal_draws.MAX_KURTOSIS
            and bool((eps.mean(dim=0).abs() < 6 / n ** 0.5).all())
            and bool(((eps.std(dim=0) - 1).abs() < 0.1).all()))


def _structure(check, model):
    model.zero_grad()
    images = probe_images(N_SHAPE, seed=3)
    logits, mu, logvar = _run(check, model, images, described=f"model(images) with images {shape(images)}")
    vae_loss(logits, images, mu, logvar).total.backward()
    unused = [name for name, p in model.named_parameters()
              if p.requires_grad and (p.grad is None or not bool(p.grad.abs().max() > 0))]
    count = sum(p.numel() for p in model.parameters())
    default = _run(check, check.fn, described=f"{check.fn.__name__}()")
    facts = SimpleNamespace(count=count, expected=parameter_count(LATENT, HIDDEN), latent=LATENT, hidden=HIDDEN,
                            unused=unused, unused_text=", ".join(unused),
                            default_count=sum(p.numel() for p in default.parameters())
                            if isinstance(default, nn.Module) else -1)
    check.fail_first(STRUCTURE_MISTAKES, facts)
