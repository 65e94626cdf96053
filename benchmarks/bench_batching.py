"""Batching overhead of one training epoch: iterate_batches vs a DataLoader over a TensorDataset.

One epoch = 60,000 MNIST-shaped images, batch size 128, shuffled with a seeded generator.
Only the batching is timed (each batch is produced and dropped; no model runs). The DataLoader
is the baseline, measured in the same run on the same tensors. A third line times one plain copy
of the images (`images.clone()`): any shuffled batching must move that much memory, so it is the
floor on this machine at this moment (on a shared, busy machine wall time is well above CPU time;
both are printed).

    .venv/bin/python benchmarks/bench_batching.py            # --repeats 5 by default

Uses the full MNIST training set when VAE_LESSON_DATA is set, else random tensors of the same shape
and dtype (batching cost does not depend on the pixel values).
"""

import argparse
import os
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from vae_lesson.data import iterate_batches, load_mnist

N_IMAGES = 60_000
BATCH_SIZE = 128
SEED = 0


def training_tensors():
    if os.environ.get("VAE_LESSON_DATA"):
        images, labels = load_mnist("train")
        if len(images) == N_IMAGES:
            return images, labels, "full MNIST train split"
    generator = torch.Generator().manual_seed(SEED)
    images = torch.rand(N_IMAGES, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (N_IMAGES,), generator=generator)
    return images, labels, "random tensors (set VAE_LESSON_DATA for the real MNIST)"


def epoch_iterate_batches(images, labels):
    generator = torch.Generator().manual_seed(SEED)
    seen = 0
    for batch_images, _ in iterate_batches(images, labels, batch_size=BATCH_SIZE, shuffle=True, generator=generator):
        seen += len(batch_images)
    return seen


def epoch_dataloader(images, labels):
    generator = torch.Generator().manual_seed(SEED)
    loader = DataLoader(TensorDataset(images, labels), batch_size=BATCH_SIZE, shuffle=True, generator=generator)
    seen = 0
    for batch_images, _ in loader:
        seen += len(batch_images)
    return seen


def epoch_copy_floor(images, labels):
    images.clone()
    return len(images)


def time_epochs(epoch, images, labels, repeats):
    """Wall-clock and process CPU seconds of each of `repeats` epochs."""
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        seen = epoch(images, labels)
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
        assert seen == len(images), "an epoch must visit every image once"
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per method (default 5)")
    args = parser.parse_args()

    images, labels, source = training_tensors()
    print(f"data: {source}, {tuple(images.shape)} {images.dtype}; batch {BATCH_SIZE}, shuffled, seed {SEED}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {args.repeats} epochs each")
    epoch_iterate_batches(images[:1024], labels[:1024])  # warm-up: first-call allocations and imports

    results = {
        "iterate_batches": time_epochs(epoch_iterate_batches, images, labels, args.repeats),
        "DataLoader(TensorDataset)": time_epochs(epoch_dataloader, images, labels, args.repeats),
        "floor: images.clone()": time_epochs(epoch_copy_floor, images, labels, args.repeats),
    }
    median = {name: (statistics.median(wall), statistics.median(cpu)) for name, (wall, cpu) in results.items()}
    for name, (wall, cpu) in results.items():
        print(f"{name:>26}: wall median {median[name][0]:.3f} s/epoch (min {min(wall):.3f}, max {max(wall):.3f}), "
              f"CPU median {median[name][1]:.3f} s")
    ratio = median["DataLoader(TensorDataset)"][0] / median["iterate_batches"][0]
    print(f"{'speed-up':>26}: {ratio:.1f}x  (DataLoader / iterate_batches, wall medians)")
    wall = median["iterate_batches"][0]
    print(f"iterate_batches {'meets' if wall < 0.2 else 'MISSES'} the 0.2 s/epoch target in wall time ({wall:.3f} s)")


if __name__ == "__main__":
    main()
