"""Command line: `python -m vae_lesson train ...` trains a model and writes what a course needs.

    python -m vae_lesson train --model vae --latent-dim 20 --epochs 10 --out checkpoints/vae-20d

writes, in the --out folder:
    model.pt      the checkpoint (load it with vae_lesson.load_checkpoint)
    history.json  the per-epoch losses (nats per image)
    samples.png   test images, their reconstructions, and samples from the prior
Every file is written atomically, so an interrupted run never leaves a half-written one.
"""

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import torch

from .checkpoint import save_checkpoint
from .data import load_mnist
from .models import MODELS, build_model, set_output_bias_to_mean_image
from .sampling import encode_dataset, sample_prior
from .training import LR_SCHEDULES, train

N_RECONSTRUCTIONS = 8
N_PRIOR_SAMPLES = 16


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be zero or positive, got {text}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m vae_lesson",
        description="Tools for the vae-lesson course. `train` trains an autoencoder or a VAE on MNIST "
                    "and writes its checkpoint, history and a figure of samples.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    t = commands.add_parser(
        "train",
        help="train a model and write model.pt, history.json and samples.png to --out",
        description="Train an autoencoder or a VAE on MNIST (Adam on BCE + beta * KL, nats per image) and write\n"
                    "  OUT/model.pt      the checkpoint (vae_lesson.load_checkpoint reads it)\n"
                    "  OUT/history.json  train and test losses per epoch\n"
                    "  OUT/samples.png   test images, their reconstructions and prior samples",
        epilog="example (the course's 20-D VAE, as notebooks 05 and 06 train it):\n"
               "  python -m vae_lesson train --model vae --latent-dim 20 --epochs 30 --batch-size 256 --lr 2e-3 \\\n"
               "      --lr-schedule cosine --out checkpoints/vae-20d",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--model", choices=sorted(MODELS), default="vae", help="which model to train (default: %(default)s)")
    t.add_argument("--latent-dim", type=_positive_int, default=20, help="size of the latent code z (default: %(default)s)")
    t.add_argument("--hidden-dim", type=_positive_int, default=500, help="units in the hidden layer (default: %(default)s)")
    t.add_argument("--epochs", type=_positive_int, default=10, help="passes over the training set (default: %(default)s)")
    t.add_argument("--batch-size", type=_positive_int, default=128, help="images per Adam step (default: %(default)s)")
    t.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    t.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant",
                   help="constant, or cosine: decay the rate to 0 by the last batch (default: %(default)s)")
    t.add_argument("--beta", type=_non_negative_float, default=1.0,
                   help="weight of the KL term: 1 is the ELBO; ignored by the autoencoder (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0, help="seeds the initial weights, batch order and noise (default: %(default)s)")
    t.add_argument("--device", default=None, help="cpu, cuda or mps (default: cpu)")
    t.add_argument("--data", type=Path, default=None,
                   help="folder holding MNIST/raw/ (default: $VAE_LESSON_DATA, else data/ in the repository)")
    t.add_argument("--out", type=Path, required=True, help="folder to write the three files to (created if needed)")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _write_atomically(path, write):
    """Call write(temporary_path), then rename the result onto path; nothing is left behind on failure.

    The temporary name is unique (pid + random suffix), and the file is created with open() rather
    than tempfile.mkstemp so it gets the usual permissions (umask), not mkstemp's owner-only 0600.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_history(path, history):
    """history (a dict of per-epoch lists) as JSON, one key per line."""
    lines = ",\n".join(f"  {json.dumps(key)}: {json.dumps(values)}" for key, values in history.items())

    def write(tmp):
        with open(tmp, "x") as f:
            f.write("{\n" + lines + "\n}\n")

    _write_atomically(Path(path), write)


def write_samples_figure(path, model, test_images, seed=0):
    """Save a figure: N_RECONSTRUCTIONS test images over their reconstructions, then prior samples.

    The test images are evenly spaced through the set, so a set sorted by digit shows several digits.
    """
    from matplotlib.figure import Figure  # no pyplot: no display backend, no global figure state

    from .plotting import show_images

    device = next(model.parameters()).device
    originals = test_images[torch.linspace(0, test_images.shape[0] - 1, N_RECONSTRUCTIONS).long()]
    with torch.no_grad():
        reconstructions = model.decode(encode_dataset(model, originals).to(device)).cpu()
    generator = torch.Generator(device=device).manual_seed(seed)  # on the model's device, as randn requires
    samples = sample_prior(model, N_PRIOR_SAMPLES, generator=generator).cpu()

    fig = Figure(figsize=(8, 5.6), layout="constrained")
    top, middle, bottom = fig.subplots(3, 1, height_ratios=[1, 1, 2])
    show_images(originals, nrow=N_RECONSTRUCTIONS, ax=top, title="test images")
    show_images(reconstructions, nrow=N_RECONSTRUCTIONS, ax=middle,
                title="reconstructions (decoded means)" if model.kind == "vae" else "reconstructions")
    show_images(samples, nrow=N_PRIOR_SAMPLES // 2, ax=bottom, title="decoded samples z ~ N(0, I)")
    fig.suptitle(f"{model.kind}, latent_dim={model.latent_dim}, hidden_dim={model.hidden_dim}")
    def write(tmp):
        with open(tmp, "xb") as f:
            fig.savefig(f, format="png", dpi=100)

    _write_atomically(Path(path), write)


def run_train(args):
    train_data = load_mnist("train", root=args.data)
    test_data = load_mnist("test", root=args.data)
    with torch.random.fork_rng(devices=[]):  # initial weights from --seed, as vae_lesson.cache does
        torch.manual_seed(args.seed)
        model = build_model({"kind": args.model, "latent_dim": args.latent_dim, "hidden_dim": args.hidden_dim})
    set_output_bias_to_mean_image(model, train_data[0])  # the decoder starts at the mean image, as in the course
    print(f"training {model.kind} {model.latent_dim}-D (hidden {model.hidden_dim}) on "
          f"{train_data[0].shape[0]} images for {args.epochs} epochs, testing on {test_data[0].shape[0]}")
    start = time.perf_counter()
    history = train(model, train_data, test_data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    lr_schedule=args.lr_schedule, beta=args.beta, seed=args.seed, device=args.device, progress=not args.no_progress)
    seconds = time.perf_counter() - start

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "model.pt", model, history)
    write_history(out / "history.json", history)
    write_samples_figure(out / "samples.png", model, test_data[0], seed=args.seed)
    print(f"done in {seconds:.0f} s ({seconds / args.epochs:.1f} s per epoch): "
          f"train loss {history['train_loss'][-1]:.2f}, test loss {history['test_loss'][-1]:.2f} nats per image "
          f"(reconstruction {history['test_reconstruction'][-1]:.2f} + KL {history['test_kl'][-1]:.2f})")
    for name in ("model.pt", "history.json", "samples.png"):
        print(f"wrote {out / name}")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return run_train(args)
    raise AssertionError(f"unhandled command {args.command}")  # argparse only accepts known commands


if __name__ == "__main__":
    sys.exit(main())
