"""What makes train() fast on a laptop CPU, kept apart from the loop a student reads.

None of it changes what is learned: the same seed gives the same weights with or without each
speed-up (tests/test_training.py shows it). What each one saves is measured in benchmarks/README.md.
"""

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Speedups:
    """Switches for train()'s engineering; the defaults are what the course uses."""

    fused_adam: bool = True
    """Adam's update for all parameters in one fused pass, where the device has it (CPU, CUDA),
    instead of PyTorch's default loop over the parameter tensors. The same update."""

    subnormal_sweep_every: int | None = 32
    """On a CPU, set subnormal numbers in Adam's state to zero every this many batches (None: never);
    see zero_subnormal_moments."""

    progress_interval_s: float = 1.0
    """Seconds between redraws of the progress bar. tqdm's default redraws ten times a second; in
    JupyterLab each redraw is a widget message, and a long run floods the kernel's output channel
    until nbval, which waits at most 5 s for each message after a cell, times out."""


def adam(parameters, lr, device, speedups):
    """torch.optim.Adam, fused where `device` supports it and `speedups` asks for it."""
    fused = speedups.fused_adam and device.type in ("cpu", "cuda")  # not "mps" before torch 2.5
    return torch.optim.Adam(parameters, lr=lr, fused=fused)


@torch.no_grad()
def zero_subnormal_moments(optimizer):
    """Set every number in the optimizer's state smaller in size than the dtype's smallest normal
    number (float32: ~1.2e-38) to zero, in place. Returns how many it changed.

    Why: a ReLU unit that never fires gets gradients of exactly 0, so Adam multiplies its running
    mean by 0.9 at every step. That sinks into the subnormal floats and stays there, because 0.9 times
    the smallest of them rounds back to itself, and x86 CPUs compute on subnormals many times slower.
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


def after_step(optimizer, step, device, speedups):
    """Called after optimizer step number `step` (counting from 1 over the whole run)."""
    every = speedups.subnormal_sweep_every
    if device.type == "cpu" and every and step % every == 0:  # GPUs compute on subnormals at full speed
        zero_subnormal_moments(optimizer)


def progress_bar(total, description, enabled, speedups):
    """A tqdm bar over `total` batches that redraws at most every speedups.progress_interval_s."""
    return tqdm(total=total, desc=description, unit="batch", mininterval=speedups.progress_interval_s,
                disable=not enabled)
