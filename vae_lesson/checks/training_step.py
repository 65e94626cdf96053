"""Check for the exercise ``train_step(model, optimizer, images) -> float``: one optimisation step.

The check gives the student's function a small course autoencoder and plain SGD (where the size of
a step follows the size of the gradient, unlike Adam, which would hide a loss scaled by a
constant), calls it on two batches in a row, and compares with the reference `vl.train_step` from
the same start: the loss it returned and the weights after each call. Known wrong versions (no
zero_grad, a loss summed over the batch or averaged over the pixels) are simulated from the same
start, so a wrong update is named by the version it matches. The optimizer notes whether gradients
were there when its step() was called.
"""

import copy
import numbers
from types import SimpleNamespace

import torch

from ..models import N_PIXELS, Autoencoder
from ..training import train_step as reference_step
from .errors import BCE, ErrorHint
from .harness import Mistake, codes, nice, run_check

FORMULA = ("optimizer.zero_grad();  logits, z = model(images);  "
           "loss = F.binary_cross_entropy_with_logits(logits, images.view(len(images), -1), reduction='sum') "
           "/ len(images);  "
           "loss.backward();  optimizer.step();  return loss.item()")
N = 6  # images per batch
LR = 0.01
CLOSE = 1e-3  # relative distance between two updates that counts as the same update (float32 sums differ a little)
ERROR_HINTS = (
    ErrorHint((AttributeError,), lambda f: f.entered,
              "model(images) returns a pair, (logits, z), and a tuple has no tensor methods: unpack it, "
              "logits, z = model(images), and give the loss the logits."),
    ErrorHint((TypeError,), lambda f: f.called in BCE,
              "model(images) returns a pair, (logits, z): unpack it, logits, z = model(images), and give the loss "
              "the logits."),
    ErrorHint((ValueError, RuntimeError), lambda f: f.called in BCE,
              "The loss compares the logits, shape (N, 784), with the images, shape (N, 1, 28, 28): flatten the "
              "images to the logits' shape, images.view(len(images), -1)."),
    ErrorHint((RuntimeError,), lambda f: f.called == "backward",
              "loss.backward() found no graph to go back through: was the forward pass inside torch.no_grad(), or "
              "the loss turned into a number (.item(), float()) before backward? Call .item() only on the value "
              "you return."),
)


class RecordingSGD(torch.optim.SGD):
    """Plain SGD that notes, at each step(), whether any gradient was there to follow."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.steps_with_gradient = []

    def step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"]]
        self.steps_with_gradient.append(any(g is not None and bool(g.abs().sum() > 0) for g in grads))
        return super().step(closure)


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()


def _simulate(start, batches, scale=1.0, zero_grad=True):
    """Weights after each step of a variant: the loss times `scale`, zero_grad before each step or never."""
    model = copy.deepcopy(start)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    weights = []
    for images in batches:
        if zero_grad:
            optimizer.zero_grad()
        (model.loss(images).total * scale).backward()
        optimizer.step()
        weights.append(_flat(model))
    return weights


def same_update(start, after, reference):
    """`after` moved from `start` as `reference` did, up to float32 rounding."""
    step = reference - start
    return bool((after - reference).norm() <= CLOSE * step.norm() + 1e-9)


# Facts: value (what the first call returned), kind.
RETURN_MISTAKES = (
    Mistake("returns_tensor", lambda f: isinstance(f.value, torch.Tensor),
            "Your train_step returns a tensor ({value_text}); the exercise asks for the loss as a Python float. "
            "A tensor keeps the whole computation graph of the batch alive: a list of them, one per batch, "
            "fills the memory, and plotting them needs conversions.",
            "Return loss.item()."),
    Mistake("returns_none", lambda f: f.value is None,
            "Your train_step returns None (is the `return` missing?); it should return the batch's loss as a "
            "Python float, so that the loop can record it.",
            "End with return loss.item()."),
    Mistake("returns_wrong_type", lambda f: isinstance(f.value, bool) or not isinstance(f.value, numbers.Real),
            "Your train_step returns an object of type {kind}; it should return the batch's loss as a Python float.",
            "Return loss.item(), and nothing else."),
)

# Facts: steps (how many times step() ran), unchanged (weights as at the start), first_had_gradient.
ORDER_MISTAKES = (
    Mistake("no_step", lambda f: f.steps == 0,
            "After two calls of your train_step the weights have not changed: optimizer.step() is never called. "
            "backward() only computes the gradients; the optimizer's step() is what moves the weights.",
            "After loss.backward(), call optimizer.step()."),
    Mistake("step_before_backward", lambda f: not f.first_had_gradient,
            "Your train_step calls optimizer.step() before loss.backward(): at the first call's step there was no "
            "gradient yet, so that step did nothing, and every later step follows the previous batch's gradient "
            "(or none, if zero_grad comes between).",
            "The order is: optimizer.zero_grad(), the loss, loss.backward(), optimizer.step()."),
)

# Facts: value, expected, ratio (value / expected), n, update (which variant the first update matches).
LOSS_MISTAKES = (
    Mistake("loss_summed_over_batch", lambda f: nice(f.ratio, f.n, rtol=1e-3) or f.update == "summed",
            "Your loss is summed over the batch instead of averaged per image: it is {n} times the reference (the "
            "batch has {n} images), so your steps grow with the batch size and the number is not 'nats per image'.",
            "Divide the summed BCE by the number of images: F.binary_cross_entropy_with_logits(..., reduction='sum') "
            "/ len(images)."),
    Mistake("loss_mean_over_pixels", lambda f: nice(f.ratio, 1 / N_PIXELS, rtol=1e-3) or f.update == "pixel_mean",
            "Your loss is averaged over the pixels as well as the images (the default reduction='mean'): it is 784 "
            "times smaller than the reconstruction loss, -log p(x|z) in nats per image, and so are your steps.",
            "Sum over the pixels, then divide by the number of images: reduction='sum', then / len(images)."),
    Mistake("wrong_loss_value", lambda f: not nice(f.value, f.expected, rtol=1e-4),
            "Your train_step returned {value:.4f} for the first batch; the reconstruction loss of that batch "
            "before the step is {expected:.4f} nats per image (the binary cross-entropy of the logits against the "
            "flattened images, summed over the 784 pixels, averaged over the images).",
            "loss = F.binary_cross_entropy_with_logits(logits, images.view(len(images), -1), reduction='sum') "
            "/ len(images), "
            "computed before the step; return loss.item()."),
)

# Facts: call (1 or 2), update ("reference", "accumulated", ... or None), distance (relative).
UPDATE_MISTAKES = (
    Mistake("no_zero_grad", lambda f: f.update == "accumulated",
            "Your second step follows the sum of both batches' gradients: zero_grad is missing, so gradients "
            "pile up from call to call (PyTorch adds each backward() to what is already in .grad), and every step "
            "repeats all the earlier ones.",
            "Start the step with optimizer.zero_grad()."),
    Mistake("wrong_update", lambda f: f.update != "reference",
            "After call {call} the weights differ from one reference step from the same start (by {distance:.1%} of "
            "the step's size): your function trains on a different loss, or changes the weights another way.",
            "Take exactly one step: optimizer.zero_grad(), the reconstruction loss, loss.backward(), "
            "optimizer.step()."),
)

# Facts: training (the model's mode after the calls).
MODE_MISTAKES = (
    Mistake("leaves_eval_mode", lambda f: not f.training,
            "Your train_step leaves the model in evaluation mode (model.eval() without model.train() after it). "
            "Layers such as dropout and batch normalisation act differently in evaluation mode, so every "
            "following step would train with their test-time behaviour. (This course's models have neither, "
            "so the weights still come out right here; the habit matters in every other network.)",
            "Don't call model.eval() in the training step; if you evaluate inside it, call model.train() afterwards."),
)

CODES = codes(RETURN_MISTAKES, ORDER_MISTAKES, LOSS_MISTAKES, UPDATE_MISTAKES, MODE_MISTAKES)


def check_training_step(fn):
    """Check a student's ``train_step(model, optimizer, images) -> float``.

    model: an autoencoder whose forward returns (logits (N, 784), z); images: (N, 1, 28, 28) in [0, 1].
    One step of the optimizer on the reconstruction loss (binary cross-entropy summed over the pixels,
    averaged over the images), returning that loss as a Python float. Returns a CheckResult.
    """
    return run_check("train_step(model, optimizer, images)", FORMULA, fn, _body, "check_training_step",
                     "fn(model, optimizer, images)", ERROR_HINTS)


def _which(start, after, variants):
    return next((name for name, weights in variants.items() if same_update(start, after, weights)), None)


def _body(check):
    torch.manual_seed(0)  # inside run_check's forked RNG: the same small model every time
    start = Autoencoder(latent_dim=2, hidden_dim=16)
    generator = torch.Generator().manual_seed(1)
    batches = [torch.rand(N, 1, 28, 28, generator=generator) for _ in range(2)]

    reference = copy.deepcopy(start)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=LR)
    expected_losses, reference_weights = [], []
    for images in batches:
        expected_losses.append(float(reference_step(reference, reference_optimizer, images)))
        reference_weights.append(_flat(reference))
    simulated = {"reference": reference_weights, "accumulated": _simulate(start, batches, zero_grad=False),
                 "summed": _simulate(start, batches, scale=N),
                 "pixel_mean": _simulate(start, batches, scale=1 / N_PIXELS)}
    variants = [{name: weights[i] for name, weights in simulated.items()} for i in range(2)]

    model = copy.deepcopy(start).train()
    optimizer = RecordingSGD(model.parameters(), lr=LR)
    w0 = _flat(model)
    values, weights = [], []
    for call, images in enumerate(batches, start=1):
        values.append(check.call(model, optimizer, images.clone(),
                                 described=f"fn(model, optimizer, images) with {N} images, call {call} of 2"))
        weights.append(_flat(model))
        value = values[-1]
        check.fail_first(RETURN_MISTAKES, SimpleNamespace(
            value=value, kind=type(value).__name__,
            value_text=f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else ""))

    steps = optimizer.steps_with_gradient
    check.fail_first(ORDER_MISTAKES, SimpleNamespace(steps=len(steps), first_had_gradient=bool(steps) and steps[0]))
    first_update = _which(w0, weights[0], variants[0])
    check.fail_first(LOSS_MISTAKES, SimpleNamespace(
        value=float(values[0]), expected=expected_losses[0], ratio=float(values[0]) / expected_losses[0], n=N,
        update=first_update))
    for call, (after, variant) in enumerate(zip(weights, variants), start=1):
        update = _which(w0, after, variant)
        distance = float((after - variant["reference"]).norm() / (variant["reference"] - w0).norm())
        check.fail_first(UPDATE_MISTAKES, SimpleNamespace(call=call, update=update, distance=distance))
    check.fail_first(MODE_MISTAKES, SimpleNamespace(training=model.training))
    return (
        "Your train_step takes exactly the reference step: after two calls on two batches the weights are those "
        "of vl.train_step from the same start, and it returns the batch's reconstruction loss "
        f"({values[0]:.2f} nats per image for the first batch) as a Python float."
    )
