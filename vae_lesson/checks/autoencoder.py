"""Check for the exercise ``class MyAutoencoder(nn.Module)``: __init__(latent_dim=2, hidden_dim=500),
forward(images) -> (logits, z).

The check builds the student's class at small sizes, gives its weights seeded random values (so
that every ReLU switches on for some images and off for others), and judges the model by what it
does: the parameter count of the 784-hidden-latent encoder and its mirror-image decoder (the
course's `vl.Autoencoder` at the same sizes), the shapes it returns, logits rather than
probabilities, gradients reaching every weight, and a nonlinearity in the encoder and in the
decoder (an affine map is recognised by its exact midpoints, or an exact least-squares fit).
"""

import math
from types import SimpleNamespace

import torch
from torch import nn

from ..models import N_PIXELS, Autoencoder
from .errors import MATRIX_PRODUCTS, ErrorHint, from_module
from .harness import Mistake, Verdict, codes, run_check, shape

FORMULA = ("encoder: flatten, Linear(784, hidden_dim), ReLU, Linear(hidden_dim, latent_dim);  "
           "decoder: Linear(latent_dim, hidden_dim), ReLU, Linear(hidden_dim, 784);  forward returns (logits, z)")
LATENT, HIDDEN = 3, 16  # the sizes the check builds (small: fast, and unlike the defaults)
DEFAULT_LATENT, DEFAULT_HIDDEN = 2, 500
N = 12  # images per batch: more than latent_dim + 1, so an exact affine fit of the decoder means something
LINEAR_TOLERANCE = 1e-4  # relative: float32 rounding of an affine map stays far below; a ReLU far above
ERROR_HINTS = (
    ErrorHint((TypeError,), lambda f: f.called is None,
              f"The check builds MyAutoencoder({LATENT}, {HIDDEN}) and MyAutoencoder(), and calls model(images): "
              "write def __init__(self, latent_dim=2, hidden_dim=500) and def forward(self, images)."),
    ErrorHint((AttributeError,), lambda f: from_module(f, "torch.nn.modules.module"),
              "Call super().__init__() as the first line of __init__, before creating any layer: nn.Module "
              "sets up the bookkeeping of its layers there."),
    ErrorHint((RuntimeError,), lambda f: f.called in MATRIX_PRODUCTS and f"({N * N_PIXELS},)" in f.shapes,
              "Flatten each image, not the whole batch: images.flatten(1) or images.view(len(images), -1) keeps "
              "the batch dimension, (N, 1, 28, 28) -> (N, 784); images.flatten() makes one long row."),
)


def parameter_count(latent_dim, hidden_dim):
    """The number of weights and biases of the course's autoencoder at these sizes."""
    return sum(p.numel() for p in Autoencoder(latent_dim=latent_dim, hidden_dim=hidden_dim).parameters())


# Facts: fn (what was passed), model (what the class built).
BUILD_MISTAKES = (
    Mistake("passed_an_instance", lambda f: isinstance(f.fn, nn.Module),
            "You passed a model (an instance, already built); the check needs the class itself, to build "
            "models of its own sizes.",
            "Pass the class name without brackets: check_autoencoder(MyAutoencoder), not MyAutoencoder()."),
    Mistake("not_a_module", lambda f: not isinstance(f.model, nn.Module),
            "Calling your class gave an object of type {kind}, not a PyTorch module: its layers would not be "
            "found by the optimizer.",
            "Write class MyAutoencoder(nn.Module): and call super().__init__() first in __init__."),
)

# Facts: count, expected, default_count and swapped_count (the counts at the default and the swapped sizes).
COUNT_MISTAKES = (
    Mistake("no_parameters", lambda f: f.count == 0,
            "Your model has no parameters at all: the optimizer would have nothing to train. Layers kept in a "
            "plain Python list or dict, or created inside forward, are not registered with the module.",
            "Make each layer an attribute (self.encoder_hidden = nn.Linear(...)) or put them in nn.Sequential "
            "(or nn.ModuleList), all inside __init__."),
    Mistake("sizes_ignored", lambda f: f.count == f.default_count,
            "Built as MyAutoencoder({latent}, {hidden}), your model has {count:,} parameters: the number for "
            "latent_dim=2 and hidden_dim=500. The sizes seem hard-coded, so the arguments are ignored.",
            "Use latent_dim and hidden_dim in the layers: nn.Linear(784, hidden_dim), "
            "nn.Linear(hidden_dim, latent_dim), ..."),
    Mistake("sizes_swapped", lambda f: f.count == f.swapped_count,
            "Built as MyAutoencoder({latent}, {hidden}), your model has {count:,} parameters: the number for "
            "latent_dim={hidden} and hidden_dim={latent}. The two arguments seem swapped.",
            "The signature is __init__(self, latent_dim=2, hidden_dim=500): latent_dim first."),
    Mistake("wrong_parameter_count", lambda f: f.count != f.expected,
            "Built as MyAutoencoder({latent}, {hidden}), your model has {count:,} parameters; the 784-{hidden}-"
            "{latent} encoder and its mirror-image {latent}-{hidden}-784 decoder have {expected:,} (four Linear "
            "layers with their biases).",
            "Encoder: nn.Linear(784, hidden_dim), then nn.Linear(hidden_dim, latent_dim); decoder: "
            "nn.Linear(latent_dim, hidden_dim), then nn.Linear(hidden_dim, 784). No other layers."),
)

# Facts: none (recognised by the call: flat images work, images of shape (N, 1, 28, 28) fail).
FLATTEN_MISTAKES = (
    Mistake("not_flattened", lambda f: True,
            "Your forward works on flat images of shape ({n}, 784) but fails on images of shape ({n}, 1, 28, 28), "
            "as the lesson's batches come: the flattening is missing inside forward.",
            "Flatten first in forward: x = images.view(len(images), -1) (or images.flatten(1), or an nn.Flatten() "
            "layer at the start of the encoder)."),
)

# Facts: out (what forward returned), described, out_shape.
PAIR_MISTAKES = (
    Mistake("returns_one_tensor", lambda f: isinstance(f.out, torch.Tensor),
            "Your forward returns a single tensor of shape {out_shape}; it should return two: (logits, z), the "
            "decoder's logits and the code the encoder made.",
            "End forward with: return logits, z"),
    Mistake("not_a_pair", lambda f: not (isinstance(f.out, (tuple, list)) and len(f.out) == 2
                                         and all(isinstance(t, torch.Tensor) for t in f.out)),
            "Your forward returns {described}; it should return a pair of tensors (logits, z).",
            "End forward with: return logits, z"),
)

# Facts: logits_shape, z_shape (tuples), n, latent.
SHAPE_MISTAKES = (
    Mistake("outputs_swapped", lambda f: f.logits_shape == (f.n, f.latent) and f.z_shape == (f.n, N_PIXELS),
            "Your forward returns (z, logits): the order is swapped. The exercise asks for (logits, z).",
            "return logits, z"),
    Mistake("logits_as_images", lambda f: f.logits_shape == (f.n, 1, 28, 28),
            "Your logits have the shape of images, {logits}; the exercise asks for flat logits, ({n}, 784), one "
            "row per image, as the last Linear layer gives them (the loss compares them with the flattened images).",
            "Return the last Linear layer's output as it is; reshape only when you want to show images."),
    Mistake("wrong_logits_shape", lambda f: f.logits_shape != (f.n, N_PIXELS),
            "Your logits have shape {logits} for {n} images; the exercise asks for ({n}, 784), one logit per pixel.",
            "The decoder's last layer is nn.Linear(hidden_dim, 784)."),
    Mistake("wrong_latent_shape", lambda f: f.z_shape != (f.n, f.latent),
            "Your z has shape {z} for {n} images built with latent_dim={latent}; it should be ({n}, {latent}).",
            "The encoder's last layer is nn.Linear(hidden_dim, latent_dim); MyAutoencoder(latent_dim, hidden_dim) "
            "takes latent_dim first."),
)

# Facts: low, high (smallest and largest logit), zeros (share of logits exactly 0).
VALUE_MISTAKES = (
    Mistake("relu_on_logits", lambda f: f.low >= 0 and f.zeros > 0.05,
            "None of your logits is negative and {zeros:.0%} are exactly 0: a ReLU after the decoder's last layer. "
            "Logits must be free to be negative: a pixel that is surely black needs a large negative logit "
            "(sigmoid(-7) = 0.001), and a ReLU's zero gives only sigmoid(0) = 0.5.",
            "Nothing after the last nn.Linear(hidden_dim, 784): no activation."),
    Mistake("returns_probabilities", lambda f: f.low >= 0 and f.high <= 1,
            "All your logits lie between {low:.3f} and {high:.3f}: they look like probabilities, a sigmoid was "
            "applied. The loss works on logits (F.binary_cross_entropy_with_logits applies the sigmoid inside, "
            "in a numerically stable way); a second sigmoid would squash every pixel into (0.5, 0.73).",
            "Return the last Linear layer's output without torch.sigmoid; the sigmoid is for showing images."),
)

# Facts: without (names of parameters that got no gradient from the logits).
GRADIENT_MISTAKES = (
    Mistake("no_gradient", lambda f: bool(f.without),
            "No gradient reaches {without_names} from the logits: those weights would never learn from the "
            "reconstruction loss. Something cuts the graph: .detach(), .data, torch.no_grad(), .item() or numpy.",
            "Keep forward in plain torch operations on the tensors the layers return."),
)

# Facts: encoder_linear, decoder_linear (bools), latent.
LINEAR_MISTAKES = (
    Mistake("linear_autoencoder", lambda f: f.encoder_linear and f.decoder_linear,
            "Your autoencoder is linear from end to end: without a nonlinearity between the layers, two Linear "
            "layers in a row are just one matrix. A linear autoencoder can only learn what PCA finds: a flat "
            "{latent}-dimensional subspace (with a squared-error loss exactly the first {latent} principal "
            "components; with this loss on logits, its cousin logistic PCA), where the digits' shapes are curved.",
            "Put a ReLU after the hidden layer of the encoder and after that of the decoder "
            "(nn.ReLU() or torch.relu)."),
    Mistake("linear_encoder", lambda f: f.encoder_linear,
            "Your encoder is linear: its two Linear layers, with nothing between them, are one matrix, so z is a "
            "linear projection of the pixels (what PCA does).",
            "Put a ReLU between the encoder's two Linear layers: Linear(784, hidden_dim), ReLU, "
            "Linear(hidden_dim, latent_dim)."),
    Mistake("linear_decoder", lambda f: f.decoder_linear,
            "Your decoder is linear: its two Linear layers, with nothing between them, are one matrix, so every "
            "reconstruction is the mean image plus a fixed combination of {latent} image-sized patterns.",
            "Put a ReLU between the decoder's two Linear layers: Linear(latent_dim, hidden_dim), ReLU, "
            "Linear(hidden_dim, 784)."),
)

# Facts: count, default_latent (the size of z for MyAutoencoder()).
DEFAULT_MISTAKES = (
    Mistake("wrong_defaults", lambda f: f.count != f.expected or f.default_latent != DEFAULT_LATENT,
            "Built without arguments, MyAutoencoder() gives a code of size {default_latent} and {count:,} "
            "parameters; the exercise asks for defaults latent_dim=2 and hidden_dim=500 ({expected:,} parameters).",
            "def __init__(self, latent_dim=2, hidden_dim=500):"),
)

CODES = codes(BUILD_MISTAKES, COUNT_MISTAKES, FLATTEN_MISTAKES, PAIR_MISTAKES, SHAPE_MISTAKES, VALUE_MISTAKES,
              GRADIENT_MISTAKES, LINEAR_MISTAKES, DEFAULT_MISTAKES)


def check_autoencoder(cls):
    """Check a student's ``class MyAutoencoder(nn.Module)``; pass the class itself.

    MyAutoencoder(latent_dim=2, hidden_dim=500) is the 784-hidden_dim-latent_dim MLP encoder with a
    ReLU and its mirror-image decoder; forward(images) takes images (N, 1, 28, 28) and returns
    (logits (N, 784), z (N, latent_dim)). Returns a CheckResult.
    """
    return run_check("MyAutoencoder", FORMULA, cls, _body, "check_autoencoder", "MyAutoencoder(latent_dim, hidden_dim)",
                     ERROR_HINTS)


@torch.no_grad()
def _randomize(model):
    """Seeded weights of He scale and zero biases: every ReLU is on for some inputs and off for others."""
    for parameter in model.parameters():
        if parameter.dim() >= 2:
            parameter.normal_(0.0, math.sqrt(2.0 / parameter[0].numel()))
        else:
            parameter.zero_()


def _forward(check, model, images):
    """model(images) through the check's guard; if only flat (N, 784) images work, that is the mistake."""
    described = f"model(images) with images of shape {shape(images)}"
    try:
        return check.call(images, described=described, target=model)
    except Verdict as verdict:
        if verdict.result.diagnosis != "raised":
            raise
        try:
            check.call(images.reshape(len(images), N_PIXELS), described="model(images.view(-1, 784))", target=model)
        except Verdict:
            raise verdict from None
        check.fail_first(FLATTEN_MISTAKES, SimpleNamespace(n=len(images)))


def _is_affine(inputs, outputs):
    """outputs = inputs @ A + b exactly (up to float32 rounding), by least squares in float64."""
    design = torch.cat([inputs.double(), torch.ones(len(inputs), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, outputs.double()).solution
    residual = (design @ solution - outputs.double()).norm()
    return bool(residual <= LINEAR_TOLERANCE * (outputs.double() - outputs.double().mean(0)).norm())


def _encoder_affine(check, model, images, z):
    """z(images) is affine in the images: z at the midpoint of two batches is the mean of their z."""
    other = torch.rand(images.shape, generator=torch.Generator().manual_seed(2))
    z_other = _forward(check, model, other)[1].detach().double()
    z_mid = _forward(check, model, (images + other) / 2)[1].detach().double()
    z = z.detach().double()
    return bool((z_mid - (z + z_other) / 2).norm() <= LINEAR_TOLERANCE * (z - z_other).norm())


def _body(check):
    model = check.call(LATENT, HIDDEN, described=f"MyAutoencoder({LATENT}, {HIDDEN})") \
        if not isinstance(check.fn, nn.Module) else None
    check.fail_first(BUILD_MISTAKES, SimpleNamespace(fn=check.fn, model=model, kind=type(model).__name__))
    count, expected = sum(p.numel() for p in model.parameters()), parameter_count(LATENT, HIDDEN)
    check.fail_first(COUNT_MISTAKES, SimpleNamespace(count=count, expected=expected, latent=LATENT, hidden=HIDDEN,
                                                     default_count=parameter_count(DEFAULT_LATENT, DEFAULT_HIDDEN),
                                                     swapped_count=parameter_count(HIDDEN, LATENT)))

    torch.manual_seed(0)  # inside run_check's forked RNG
    _randomize(model)
    model.train()
    images = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    out = _forward(check, model, images)
    check.fail_first(PAIR_MISTAKES, SimpleNamespace(
        out=out, out_shape=shape(out) if isinstance(out, torch.Tensor) else "",
        described=(f"a {type(out).__name__} of {len(out)} values" if isinstance(out, (tuple, list))
                   else f"an object of type {type(out).__name__}")))
    logits, z = out
    check.fail_first(SHAPE_MISTAKES, SimpleNamespace(logits_shape=tuple(logits.shape), z_shape=tuple(z.shape),
                                                     logits=shape(logits), z=shape(z), n=N, latent=LATENT))
    values = logits.detach()
    check.fail_first(VALUE_MISTAKES, SimpleNamespace(low=values.min().item(), high=values.max().item(),
                                                     zeros=(values == 0).float().mean().item()))

    model.zero_grad(set_to_none=True)
    if logits.requires_grad:
        logits.sum().backward()
    without = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    check.fail_first(GRADIENT_MISTAKES, SimpleNamespace(without=without, without_names=", ".join(without[:6])))

    check.fail_first(LINEAR_MISTAKES, SimpleNamespace(
        encoder_linear=_encoder_affine(check, model, images, z),
        decoder_linear=_is_affine(z.detach(), logits.detach()), latent=LATENT))

    default_model = check.call(described="MyAutoencoder()")
    default_count = sum(p.numel() for p in default_model.parameters())
    _, default_z = _forward(check, default_model, images)
    check.fail_first(DEFAULT_MISTAKES, SimpleNamespace(
        count=default_count, expected=parameter_count(DEFAULT_LATENT, DEFAULT_HIDDEN),
        default_latent=default_z.shape[-1]))
    return (
        f"Your autoencoder has the {expected:,} parameters of the 784-{HIDDEN}-{LATENT} encoder and its mirror "
        f"image at MyAutoencoder({LATENT}, {HIDDEN}) (and {default_count:,} with the defaults, 784-500-2), "
        "flattens the images itself, returns (logits (N, 784), z (N, latent_dim)) with a nonlinearity in the "
        "encoder and in the decoder, and every weight gets a gradient from the logits."
    )
