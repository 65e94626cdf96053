"""Command line: `python -m vae_lesson train ...` trains a model and writes what a course needs.

    python -m vae_lesson train --recipe vae-20d-lecture --out checkpoints/vae-20d-lecture

writes, in the --out folder:
    model.pt      the checkpoint (load it with vae_lesson.load_checkpoint)
    history.json  the per-epoch losses (nats per image)
    samples.png   test images, their reconstructions, and samples from the prior
The folder is written beside --out first and then moved into place as one unit, so an interrupted
run leaves the previous run's folder or the new one, never a mix; and --out is checked before training,
so a run that could not be saved is not started.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from .atomic import recover_folder, remove_stale_temporaries, replace_folder, temporary_path, write_atomically
from .checkpoint import save_checkpoint
from .data import load_mnist
from .models import MODELS, model_device
from .recipes import RECIPES, as_config, fresh_model
from .sampling import encode_dataset, sample_prior
from .training import LR_SCHEDULES, train

RUN_FILES = ("model.pt", "history.json", "samples.png")
N_RECONSTRUCTIONS = 8
N_PRIOR_SAMPLES = 16
DEFAULT_RECIPE = "vae-20d"
# Command-line option -> TrainingConfig field: an option given on the command line overrides the recipe.
CONFIG_OPTIONS = {"model": "kind", "latent_dim": "latent_dim", "hidden_dim": "hidden_dim", "epochs": "epochs",
                  "batch_size": "batch_size", "lr": "lr", "lr_schedule": "lr_schedule", "beta": "beta",
                  "seed": "seed", "warmup_epochs": "warmup_epochs", "free_bits": "free_bits"}
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
    recipes = "\n".join(f"  {name:18s} {describe_config(config)}" for name, config in RECIPES.items())
    t = commands.add_parser(
        "train",
        help="train a model and write model.pt, history.json and samples.png to --out",
        description="Train an autoencoder or a VAE on MNIST (Adam on BCE + beta * KL, nats per image) and write\n"
                    "  OUT/model.pt      the checkpoint (vae_lesson.load_checkpoint reads it)\n"
                    "  OUT/history.json  train and test losses per epoch\n"
                    "  OUT/samples.png   test images, their reconstructions and prior samples\n"
                    "The settings come from --recipe (the course's models, vae_lesson.RECIPES); every option\n"
                    "given overrides the recipe's value.",
        epilog=f"recipes:\n{recipes}\n\n"
               "example (the course's 20-D VAE, as notebooks 05 and 06 train it):\n"
               "  python -m vae_lesson train --recipe vae-20d-lecture --out checkpoints/vae-20d-lecture",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    default = RECIPES[DEFAULT_RECIPE]
    t.add_argument("--recipe", choices=list(RECIPES), default=DEFAULT_RECIPE, metavar="NAME",
                   help="the course's settings to start from (default: %(default)s; the list is below)")
    t.add_argument("--model", choices=sorted(MODELS),
                   help=f"which model to train (recipe {DEFAULT_RECIPE}: {default.kind})")
    t.add_argument("--latent-dim", type=_positive_int, help=f"size of the latent code z ({default.latent_dim})")
    t.add_argument("--hidden-dim", type=_positive_int, help=f"units in the hidden layer ({default.hidden_dim})")
    t.add_argument("--epochs", type=_positive_int, help=f"passes over the training set ({default.epochs})")
    t.add_argument("--batch-size", type=_positive_int, help=f"images per Adam step ({default.batch_size})")
    t.add_argument("--lr", type=_positive_float, help=f"Adam learning rate ({default.lr:g})")
    t.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help=f"constant, or cosine: decay the rate to 0 by the last batch ({default.lr_schedule})")
    t.add_argument("--beta", type=_non_negative_float,
                   help=f"weight of the KL term: 1 is the ELBO; ignored by the autoencoder ({default.beta:g})")
    t.add_argument("--seed", type=int, help=f"seeds the initial weights, batch order and noise ({default.seed})")
    t.add_argument("--warmup-epochs", type=int, help="KL warm-up: raise the KL's weight from 0 to beta over this "
                   f"many epochs ({default.warmup_epochs})")
    t.add_argument("--free-bits", type=_non_negative_float,
                   help=f"floor in nats on each latent dimension's KL in the loss; 0 is off ({default.free_bits:g})")
    t.add_argument("--device", default=None, help="cpu, cuda or mps (default: cpu)")
    t.add_argument("--data", type=Path, default=None,
                   help="folder holding MNIST/raw/ (default: $VAE_LESSON_DATA, else data/ in the repository)")
    t.add_argument("--out", type=Path, required=True, help="folder to write the three files to (created if needed)")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def describe_config(config):
    """One line: the model and how it is trained."""
    beta = f", beta {config.beta:g}" if config.beta != 1 else ""
    epochs = f"{config.epochs} epoch" + ("s" if config.epochs != 1 else "")
    return (f"{config.kind} 784-{config.hidden_dim}-{config.latent_dim}, {epochs}, batch "
            f"{config.batch_size}, lr {config.lr:g} {config.lr_schedule}{beta}"
            + (f", KL warm-up over {config.warmup_epochs} epochs" if config.warmup_epochs else "")
            + (f", free bits {config.free_bits:g} nats" if config.free_bits else ""))


def config_from_args(args):
    """The recipe named by --recipe, with every option given on the command line applied."""
    changes = {field: getattr(args, option) for option, field in CONFIG_OPTIONS.items()
               if getattr(args, option) is not None}
    return as_config(args.recipe, **changes)


def write_history(path, history):
    """history (a dict of per-epoch lists) as JSON, one key per line."""
    lines = ",\n".join(f"  {json.dumps(key)}: {json.dumps(values)}" for key, values in history.items())
    write_atomically(Path(path), lambda f: f.write("{\n" + lines + "\n}\n"), binary=False)


def write_samples_figure(path, model, test_images, seed=0):
    """Save a figure: N_RECONSTRUCTIONS test images over their reconstructions, then prior samples.

    The test images are evenly spaced through the set, so a set sorted by digit shows several digits.
    """
    from matplotlib.figure import Figure  # no pyplot: no display backend, no global figure state

    from .plotting import show_images

    device = model_device(model)
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
    write_atomically(Path(path), lambda f: fig.savefig(f, format="png", dpi=100))


class OutputError(ValueError):
    """--out cannot take the run: found before training starts."""


def staging_folder(out):
    """Check that a run can be written to `out` and return a new temporary folder beside it to write it in.

    Raises OutputError naming the problem and the fix: `out` is a file, holds files other than a
    run's (replacing the folder would delete them), or its parent cannot be written to.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; pass a folder (it will hold {', '.join(RUN_FILES)}).")
    try:
        recover_folder(out)  # a previous run interrupted while its folder was being replaced
        if out.is_dir():
            others = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
            if others:
                raise OutputError(f"--out {out} holds other files ({', '.join(others[:5])}), which replacing the run "
                                  "folder would delete: pass a new or empty folder, or the folder of a previous run.")
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
        staging = temporary_path(out)
        staging.mkdir()
    except OSError as exc:
        raise OutputError(f"cannot write the run to --out {out} ({type(exc).__name__}: {exc.strerror or exc}); "
                          "pass a folder you can write to, e.g. --out ~/vae-runs/NAME.") from exc
    return staging


def run_train(args):
    config = config_from_args(args)
    staging = staging_folder(args.out)  # before any long work: a run that cannot be saved is not started
    try:
        train_data = load_mnist("train", root=args.data)
        test_data = load_mnist("test", root=args.data)
        model = fresh_model(config, train_data[0])
        changed = ", changed" if config != RECIPES[args.recipe] else ""
        print(f"training {describe_config(config)} (recipe {args.recipe}{changed}) on {train_data[0].shape[0]} "
              f"images, testing on {test_data[0].shape[0]}")
        start = time.perf_counter()
        history = train(model, train_data, test_data, device=args.device, progress=not args.no_progress,
                        **config.train_settings)
        seconds = time.perf_counter() - start

        save_checkpoint(staging / "model.pt", model, history)
        write_history(staging / "history.json", history)
        write_samples_figure(staging / "samples.png", model, test_data[0], seed=config.seed)
        replace_folder(staging, args.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already if the run was moved into place
    print(f"done in {seconds:.0f} s ({seconds / config.epochs:.1f} s per epoch): "
          f"train loss {history['train_loss'][-1]:.2f}, test loss {history['test_loss'][-1]:.2f} nats per image "
          f"(reconstruction {history['test_reconstruction'][-1]:.2f} + KL {history['test_kl'][-1]:.2f})")
    for name in RUN_FILES:
        print(f"wrote {args.out / name}")
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        try:
            return run_train(args)
        except OutputError as exc:
            print(f"{parser.prog} train: error: {exc}", file=sys.stderr)
            return 2
    raise AssertionError(f"unhandled command {args.command}")  # argparse only accepts known commands


if __name__ == "__main__":
    sys.exit(main())
