"""Training and evaluation for both models, on in-memory tensors.

One loop serves the autoencoder and the VAE: each model's `loss(images, beta, generator)`
returns LossTerms(total, reconstruction, kl), and the loop minimises `total` with Adam.
Everything random (the batch order and the VAE's noise) comes from generators seeded
with `seed`, so the same seed on the same machine gives an identical history.
"""

import math

import torch
from tqdm.auto import tqdm

from .data import iterate_batches
from .loss import LossTerms

LR_SCHEDULES = ("constant", "cosine")
PROGRESS_INTERVAL_S = 1.0
HISTORY_KEYS = ("train_loss", "train_reconstruction", "train_kl", "test_loss", "test_reconstruction", "test_kl")
# On a CPU, train() clears subnormal numbers out of Adam's state every this many batches (see below).
SUBNORMAL_SWEEP_INTERVAL = 32


def resolve_device(device=None):
    """None -> CPU (the course's default); otherwise a torch.device from "cpu", "cuda", "mps", ..."""
    return torch.device("cpu" if device is None else device)


def _images_of(data, name):
    """Accept an images tensor or an (images, labels) pair, as load_mnist returns it."""
    images = data[0] if isinstance(data, (tuple, list)) else data
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be an images tensor or an (images, labels) pair, got {type(images).__name__}.")
    if images.dim() not in (2, 4) or images.shape[0] == 0:
        raise ValueError(f"{name} must hold images of shape (N, 1, 28, 28) or (N, 784), got {tuple(images.shape)}.")
    return images


def _model_device(model):
    return next(model.parameters()).device


@torch.no_grad()
def zero_subnormal_moments(optimizer):
    """Set every number in the optimizer's state smaller in size than the dtype's smallest normal
    number (float32: ~1.2e-38) to zero, in place. Returns how many it changed.

    Why: a ReLU unit that never fires gets gradients of exactly 0, so Adam multiplies its running
    mean by 0.9 at every step. That sinks into the subnormal floats and stays there, because 0.9 times
    the smallest of them rounds back to itself. x86 CPUs compute on subnormals many times slower: with
    the 784-400-20 VAE about a third of the encoder's units die early, and without this sweep an epoch
    took 2.07-2.21 s instead of 1.94-2.03 s (benchmarks/bench_training.py --no-subnormal-sweep).
    Zeroing them moves no weight (the update they make is ~1e-37), and it is what the CPU's
    flush-to-zero mode would do, which torch.set_flush_denormal sets for the calling thread only.
    """
    changed = 0
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                subnormal = (value != 0) & (value.abs() < torch.finfo(value.dtype).tiny)
                changed += int(subnormal.sum())
                value.masked_fill_(subnormal, 0.0)
    return changed


@torch.no_grad()
def evaluate(model, images, *, beta=1.0, batch_size=1000, seed=0):
    """Average loss terms (nats per image) over `images`, without updating the model.

    images: tensor (N, 1, 28, 28) or an (images, labels) pair. For the VAE the noise is drawn
    from a generator seeded with `seed`, so the number is repeatable. Returns LossTerms of floats.
    """
    images = _images_of(images, "images")
    device = _model_device(model)
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
          seed=0, device=None, progress=True):
    """Train `model` with Adam on in-memory images; return the per-epoch history.

    train_data, test_data: images (N, 1, 28, 28) or (images, labels) pairs.
    lr_schedule: "constant" keeps the learning rate at `lr`; "cosine" lowers it after every batch
    along half a cosine, lr * (1 + cos(pi * step / total_steps)) / 2, to zero at the last batch.
    Returns a dict of lists, one value per epoch: "epoch", "train_loss", "train_reconstruction",
    "train_kl" (running means over the epoch's batches) and, with test_data, "test_loss",
    "test_reconstruction", "test_kl" (evaluated after the epoch). Losses are nats per image.
    Raises FloatingPointError naming the epoch and batch if the loss stops being finite.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}.")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}.")
    device = resolve_device(device)
    train_images = _images_of(train_data, "train_data").to(device)
    test_images = None if test_data is None else _images_of(test_data, "test_data")
    model.to(device)
    model.train()
    # fused=True: the same Adam update, computed for all parameters in one pass. PyTorch's default
    # on a CPU is a loop over the parameter tensors, which took ~40% of each training step of the
    # 784-400-20 VAE (torch.profiler); benchmarks/bench_training.py measured an epoch, test pass
    # included, at 1.9-2.1 s fused against 2.1-2.2 s before, on 2 cores.
    fused = device.type in ("cpu", "cuda")  # not every device has it ("mps" before torch 2.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=fused)
    sweep_subnormals = device.type == "cpu"  # GPUs compute on subnormal numbers at full speed
    shuffle_generator = torch.Generator().manual_seed(seed)
    noise_generator = torch.Generator(device=device).manual_seed(seed + 1)

    history = {"epoch": []}
    history.update({key: [] for key in HISTORY_KEYS if test_images is not None or key.startswith("train")})
    n_batches = -(-train_images.shape[0] // batch_size)
    scheduler = None
    if lr_schedule == "cosine":
        # Big steps while the loss is high, small ones at the end to settle into a minimum. It pays
        # with a higher starting rate (the course's 20-D VAE: 2e-3 cosine ends at 102.05 after 30 epochs,
        # constant 1e-3 at 102.4); at the same rate over a short run it can end higher (benchmarks/).
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * n_batches)
    # One redraw a second (tqdm's default is ten): in JupyterLab every redraw of the bar is a widget
    # message, and a long training run at ten a second floods the kernel's output channel, enough that
    # nbval (which waits at most 5 s for each message after a cell ends) times out.
    bar = tqdm(total=epochs * n_batches, desc=f"training {model.kind}", unit="batch", mininterval=PROGRESS_INTERVAL_S,
               disable=not progress)
    try:
        for epoch in range(1, epochs + 1):
            sums = [0.0, 0.0, 0.0]  # total, reconstruction, KL, each times the batch size
            for batch_index, (batch,) in enumerate(
                iterate_batches(train_images, batch_size=batch_size, generator=shuffle_generator), start=1
            ):
                terms = model.loss(batch, beta=beta, generator=noise_generator)
                values = [t.item() for t in terms]  # three numbers for the history: cheaper than tensor ops
                if not math.isfinite(values[0]):
                    raise FloatingPointError(
                        f"the loss became {values[0]} at epoch {epoch}, batch {batch_index}: training "
                        f"stopped. Try a smaller learning rate (lr={lr}) or check the loss function."
                    )
                optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if sweep_subnormals and ((epoch - 1) * n_batches + batch_index) % SUBNORMAL_SWEEP_INTERVAL == 0:
                    zero_subnormal_moments(optimizer)
                sums = [total + value * batch.shape[0] for total, value in zip(sums, values)]
                bar.update(1)
            means = [total / train_images.shape[0] for total in sums]
            history["epoch"].append(epoch)
            for key, value in zip(("train_loss", "train_reconstruction", "train_kl"), means):
                history[key].append(value)
            postfix = {"epoch": epoch, "train_loss": f"{means[0]:.1f}"}
            if test_images is not None:
                test_terms = evaluate(model, test_images, beta=beta, seed=seed)
                for key, value in zip(("test_loss", "test_reconstruction", "test_kl"), test_terms):
                    history[key].append(value)
                postfix["test_loss"] = f"{test_terms.total:.1f}"
            bar.set_postfix(postfix)
    finally:
        bar.close()
    model.eval()
    return history
