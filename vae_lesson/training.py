"""Training and evaluation for both models, on in-memory tensors.

The loop is the usual one (pytorch/examples' VAE): for every batch, zero the gradients, compute
the loss, backpropagate, take an Adam step (`train_step`); after every epoch, the test loss.
Each model's `loss(images, beta, generator)` returns LossTerms(total, reconstruction, kl), so one
loop serves the autoencoder and the VAE. Everything random (the batch order and the VAE's noise)
comes from generators seeded with `seed`: the same seed on the same machine gives the same history.
What makes it fast on a CPU lives in speedups.py and changes no result.
"""

import math

import torch

from . import validate
from .collapse import warmup_beta
from .data import iterate_batches
from .loss import LossTerms, autoencoder_loss
from .models import model_device
from .speedups import Speedups, adam, after_step, progress_bar

# The version of the training behaviour: bump it whenever a change here (or in the models, the
# losses, the seeded start) changes the weights a configuration trains to. Cached models trained by
# another version are retrained (vae_lesson.cache); tests/test_recipes.py pins what this version learns.
TRAINING_VERSION = 1

# Learning-rate schedules by name: (optimizer, total number of steps) -> a scheduler stepped after
# every batch, or None to keep the rate at lr. "cosine" lowers it along half a cosine,
# lr * (1 + cos(pi * step / total_steps)) / 2, to zero at the last batch.
LR_SCHEDULERS = {
    "constant": lambda optimizer, total_steps: None,
    "cosine": lambda optimizer, total_steps: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps),
}
LR_SCHEDULES = tuple(LR_SCHEDULERS)
HISTORY_KEYS = ("train_loss", "train_reconstruction", "train_kl", "test_loss", "test_reconstruction", "test_kl")


def resolve_device(device=None):
    """None -> CPU (the course's default); otherwise a torch.device from "cpu", "cuda", "mps", ..."""
    return torch.device("cpu" if device is None else device)


class StepLoss(float):
    """A batch's loss (nats per image) as a float, carrying its two terms for the history."""

    def __new__(cls, terms):
        loss = super().__new__(cls, terms.total.item())
        loss.reconstruction, loss.kl = terms.reconstruction.item(), terms.kl.item()
        return loss


def loss_terms(model, images, beta=1.0, generator=None, **options):
    """LossTerms of a batch: model.loss for the course's models; for any other module whose forward
    returns (logits, z), like the autoencoder lesson 1 has you write, the reconstruction loss."""
    if hasattr(model, "loss"):
        return model.loss(images, beta=beta, generator=generator, **options)
    logits, _ = model(images)
    return autoencoder_loss(logits, images)


def train_step(model, optimizer, images, *, beta=1.0, generator=None, free_bits=0.0):
    """One step of gradient descent on a batch; returns the batch's loss, nats per image, as a float.

    images: (B, 1, 28, 28) on the model's device. beta weighs the KL term (the VAE's loss);
    generator seeds the VAE's noise; free_bits > 0 floors each latent dimension's KL (vae_loss).
    The float also carries .reconstruction and .kl.
    model: a course model, or a module whose forward returns (logits, z) (see loss_terms).
    """
    optimizer.zero_grad()
    # free_bits is passed only when it is on, so a model whose loss knows no free bits trains as before.
    options = {"free_bits": free_bits} if free_bits else {}
    terms = loss_terms(model, images, beta=beta, generator=generator, **options)
    terms.total.backward()
    optimizer.step()
    return StepLoss(terms)


@torch.no_grad()
def evaluate(model, images, *, beta=1.0, batch_size=1000, seed=0):
    """Average loss terms (nats per image) over `images`, without updating the model.

    images: tensor (N, 1, 28, 28) or an (images, labels) pair. For the VAE the noise is drawn
    from a generator seeded with `seed`, so the number is repeatable. Returns LossTerms of floats.
    """
    validate.model(model)
    images = validate.images_or_pair(images, "images", validate.parameter_dtype(model))
    beta = validate.kl_weight(beta)
    batch_size = validate.whole_number(batch_size, "batch_size")
    device = model_device(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    for (batch,) in iterate_batches(images, batch_size=batch_size, shuffle=False):
        terms = model.loss(batch.to(device), beta=beta, generator=generator)
        sums += torch.stack([t.detach().double().cpu() for t in terms]) * batch.shape[0]
    model.train(was_training)
    return LossTerms(*(sums / images.shape[0]).tolist())


def train(model, train_data, test_data=None, *, epochs, batch_size=128, lr=1e-3, lr_schedule="constant", beta=1.0,
          seed=0, warmup_epochs=0, free_bits=0.0, device=None, progress=True, on_epoch_end=None, speedups=None):
    """Train `model` with Adam on in-memory images; return the per-epoch history.

    train_data, test_data: images (N, 1, 28, 28) or (images, labels) pairs.
    lr_schedule: "constant" keeps the learning rate at `lr`; "cosine" lowers it after every batch
    along half a cosine, to zero at the last batch.
    warmup_epochs: KL warm-up, the KL's weight raised linearly from 0 to beta over the first
    warmup_epochs epochs, batch by batch (collapse.warmup_beta); 0 trains with beta throughout.
    free_bits: a floor in nats on each latent dimension's batch-mean KL in the loss (0: off).
    The training history records the loss as trained (with the warm-up's weight and the floor);
    the test history always uses beta and the plain KL.
    on_epoch_end: called as on_epoch_end(epoch, history) after each epoch (and its test pass).
    speedups: a speedups.Speedups (default: all on); none of them changes the result.
    Returns a dict of lists, one value per epoch: "epoch", "train_loss", "train_reconstruction",
    "train_kl" (means over the epoch's batches) and, with test_data, "test_loss",
    "test_reconstruction", "test_kl" (evaluated after the epoch). Losses are nats per image.
    Raises FloatingPointError naming the epoch and batch if the loss stops being finite.
    """
    validate.model(model)
    epochs = validate.whole_number(epochs, "epochs")
    batch_size = validate.whole_number(batch_size, "batch_size")
    lr, beta = validate.learning_rate(lr), validate.kl_weight(beta)
    seed = validate.whole_number(seed, "seed", minimum=0)
    if lr_schedule not in LR_SCHEDULERS:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}.")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be a whole number >= 0 (0: no warm-up), got {warmup_epochs!r}.")
    if isinstance(free_bits, bool) or not isinstance(free_bits, (int, float)) or not free_bits >= 0:
        raise ValueError(f"free_bits must be a number of nats >= 0 (0: off), got {free_bits!r}.")
    speedups = Speedups() if speedups is None else speedups
    device = resolve_device(device)
    dtype = validate.parameter_dtype(model)
    train_images = validate.images_or_pair(train_data, "train_data", dtype).to(device)
    test_images = None if test_data is None else validate.images_or_pair(test_data, "test_data", dtype)
    model.to(device)
    model.train()
    optimizer = adam(model.parameters(), lr, device, speedups)
    n_batches = -(-train_images.shape[0] // batch_size)
    scheduler = LR_SCHEDULERS[lr_schedule](optimizer, epochs * n_batches)
    warmup_steps = warmup_epochs * n_batches
    shuffle_generator = torch.Generator().manual_seed(seed)
    noise_generator = torch.Generator(device=device).manual_seed(seed + 1)
    history = {"epoch": []}
    history.update({key: [] for key in HISTORY_KEYS if test_images is not None or key.startswith("train")})

    step = 0
    with progress_bar(epochs * n_batches, f"training {model.kind}", progress, speedups) as bar:
        for epoch in range(1, epochs + 1):
            sums = [0.0, 0.0, 0.0]  # total, reconstruction, KL, each times the batch size
            batches = iterate_batches(train_images, batch_size=batch_size, generator=shuffle_generator)
            for batch_index, (images,) in enumerate(batches, start=1):
                step_beta = warmup_beta(step + 1, warmup_steps, beta)  # beta itself when warmup_steps is 0
                loss = train_step(model, optimizer, images, beta=step_beta, generator=noise_generator,
                                  free_bits=free_bits)
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"the loss became {loss} at epoch {epoch}, batch {batch_index}: training "
                        f"stopped. Try a smaller learning rate (lr={lr}) or check the loss function."
                    )
                if scheduler is not None:
                    scheduler.step()
                step += 1
                after_step(optimizer, step, device, speedups)
                terms = (loss, loss.reconstruction, loss.kl)
                sums = [total + value * images.shape[0] for total, value in zip(sums, terms)]
                bar.update(1)

            history["epoch"].append(epoch)
            for key, total in zip(("train_loss", "train_reconstruction", "train_kl"), sums):
                history[key].append(total / train_images.shape[0])
            if test_images is not None:
                test_terms = evaluate(model, test_images, beta=beta, seed=seed)
                for key, value in zip(("test_loss", "test_reconstruction", "test_kl"), test_terms):
                    history[key].append(value)
            bar.set_postfix({key: f"{values[-1]:.1f}" for key, values in history.items() if key.endswith("_loss")})
            if on_epoch_end is not None:
                on_epoch_end(epoch, history)
    model.eval()
    return history
