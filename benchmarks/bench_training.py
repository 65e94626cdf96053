"""Training speed, test loss and memory: vae_lesson.train against the usual PyTorch loop, in one run.

The baseline is the loop of pytorch/examples' vae/main.py, written out below: a DataLoader over
torchvision.datasets.MNIST with ToTensor(), a model that outputs sigmoid probabilities, and
loss = F.binary_cross_entropy(recon, x, reduction="sum") + KLD; after every epoch the test loss
per image. vae_lesson.train trains the same 784-H-20 architecture (batch 128, Adam 1e-3: the recipe
"vae-20d-examples" in vae_lesson/recipes.py) on in-memory tensors, from the course's start
(vae_lesson.fresh_model: the decoder's output bias set to the mean training image; --no-mean-bias leaves
PyTorch's default initialization, like the baseline). Each variant runs in its own subprocess, so each peak resident memory (ru_maxrss) is its
own. Seconds per epoch include the test pass, for both variants.

    export VAE_LESSON_DATA=/path/holding/MNIST/raw
    .venv/bin/python benchmarks/bench_training.py                     # 784-400-20, 10 epochs each
    .venv/bin/python benchmarks/bench_training.py --seeds 0 1 2 3 4 5 6 7  # the same, over 8 seeds, with means
    .venv/bin/python benchmarks/bench_training.py --skip-baseline --lr-schedule cosine  # the trainer's cosine option
    .venv/bin/python benchmarks/bench_training.py --skip-baseline --no-subnormal-sweep  # what the sweep saves
    .venv/bin/python benchmarks/bench_training.py --skip-baseline --no-mean-bias  # the default initialization
    .venv/bin/python benchmarks/bench_training.py --lecture-epochs 30  # the lecture's 784-500-20 model, course recipe

Targets (issue 3, 2-core CPU, full MNIST): an epoch at least 3x faster than the baseline; test loss
<= 105.6 after 10 epochs (784-400-20) and no worse than the baseline's; the lecture's 784-500-20
model <= 102.5 after the course's budget (the recipe "vae-20d-lecture": what notebooks 05 and 06 train);
peak resident memory of a 10-epoch run <= 1.2 GB.
On a shared machine wall time is inflated by other processes; CPU time is printed too.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean, median, stdev

import torch
import torch.nn.functional as F
from torch import nn

LATENT_DIM = 20
# pytorch/examples' settings, for the baseline (which does not import vae_lesson, so that its memory is
# its own); the trainer uses the recipe EXAMPLES_RECIPE and checks that it agrees.
BATCH_SIZE = 128
LR = 1e-3
EXAMPLES_RECIPE = "vae-20d-examples"
LECTURE_RECIPE = "vae-20d-lecture"
TARGET_SPEEDUP = 3.0
TARGET_LOSS_400 = 105.6
TARGET_LOSS_LECTURE = 102.5
TARGET_PEAK_GB = 1.2
RESULT_PREFIX = "RESULT "


def mnist_root():
    """$VAE_LESSON_DATA if it holds the four raw MNIST files; otherwise exit with a clear message."""
    from vae_lesson.data import ENV_VAR, RAW_FILES

    root = os.environ.get(ENV_VAR)
    if not root:
        sys.exit(f"This benchmark needs the full MNIST: set {ENV_VAR} to a folder holding MNIST/raw/ "
                 f"(torchvision's layout), e.g. `export {ENV_VAR}=/path/to/data`.")
    raw = Path(root).expanduser() / "MNIST" / "raw"
    missing = [name for names in RAW_FILES.values() for name in names if not (raw / name).is_file()]
    if missing:
        sys.exit(f"{ENV_VAR}={root} lacks {', '.join(missing)} in {raw}; point it at a folder holding "
                 "the full MNIST (MNIST/raw/, torchvision's layout).")
    return Path(root).expanduser()


# ----- the baseline: pytorch/examples vae/main.py, written out -----

class ExamplesVAE(nn.Module):
    def __init__(self, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, LATENT_DIM)
        self.fc22 = nn.Linear(hidden_dim, LATENT_DIM)
        self.fc3 = nn.Linear(LATENT_DIM, hidden_dim)
        self.fc4 = nn.Linear(hidden_dim, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def examples_loss(recon_x, x, mu, logvar):
    """pytorch/examples' loss_function: BCE summed over pixels and batch, plus the KL, summed."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def examples_test_loss(forward, test_loader):
    """The examples' test loss: summed over the test set, then divided by its size (nats per image).

    forward(x) -> (probabilities (N, 784), mu, logvar), z sampled as in training (the examples do).
    """
    total = 0.0
    with torch.no_grad():
        for data, _ in test_loader:
            recon, mu, logvar = forward(data)
            total += examples_loss(recon, data, mu, logvar).item()
    return total / len(test_loader.dataset)


def examples_loaders(root):
    from torchvision import datasets, transforms

    train_set = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    test_set = datasets.MNIST(root, train=False, download=False, transform=transforms.ToTensor())
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=BATCH_SIZE, shuffle=False)
    return train_loader, test_loader


def run_baseline(hidden_dim, epochs, seed, report, options):
    root = mnist_root()
    torch.manual_seed(seed)
    model = ExamplesVAE(hidden_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    train_loader, test_loader = examples_loaders(root)

    epoch_seconds, epoch_cpu, test_losses = [], [], []
    for epoch in range(1, epochs + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        model.train()
        for data, _ in train_loader:
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = examples_loss(recon_batch, data, mu, logvar)
            loss.backward()
            optimizer.step()
        model.eval()
        test_loss = examples_test_loss(model, test_loader)
        epoch_seconds.append(time.perf_counter() - start)
        epoch_cpu.append(time.process_time() - start_cpu)
        test_losses.append(test_loss)
        report(epoch, epoch_seconds[-1], epoch_cpu[-1], test_loss)
    return {"epoch_seconds": epoch_seconds, "epoch_cpu_seconds": epoch_cpu, "test_loss": test_losses}


# ----- vae_lesson.train -----

def run_trainer(hidden_dim, epochs, seed, report, options):
    """options: "recipe" (a name in vae_lesson.RECIPES), "changes" (fields to change), "mean_bias" and
    "subnormal_sweep" (False: leave out the course's start or that speed-up, to measure what it does)."""
    from vae_lesson import RECIPES, build_model, fresh_model, load_mnist, train
    from vae_lesson.speedups import Speedups

    config = RECIPES[options["recipe"]].replace(hidden_dim=hidden_dim, epochs=epochs, seed=seed,
                                                **options.get("changes", {}))
    if options["recipe"] == EXAMPLES_RECIPE and (config.batch_size, config.lr) != (BATCH_SIZE, LR):
        sys.exit(f"the recipe {EXAMPLES_RECIPE} no longer trains like pytorch/examples (batch {BATCH_SIZE}, "
                 f"Adam {LR:g}); the comparison would not be like for like.")
    root = mnist_root()
    start = time.perf_counter()
    train_data, test_data = load_mnist("train", root=root), load_mnist("test", root=root)
    load_seconds = time.perf_counter() - start
    if options.get("mean_bias", True):  # the course's start, as the cache and the command line build it
        model = fresh_model(config, train_data[0])
    else:
        torch.manual_seed(seed)
        model = build_model(config.model_config)
    speedups = Speedups(subnormal_sweep_every=Speedups().subnormal_sweep_every if options.get("subnormal_sweep", True)
                        else None)
    # The first optimizer a process creates imports torch._dynamo (~0.9 s here). The baseline creates
    # its optimizer before its clock starts; train() creates one inside, so pay the import here first.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])

    # A clock reading after each epoch's test pass gives per-epoch times (training + test, like the baseline).
    marks = [(time.perf_counter(), time.process_time())]  # at the start, then after each epoch's test pass

    def timed(epoch, history):
        marks.append((time.perf_counter(), time.process_time()))
        report(epoch, marks[-1][0] - marks[-2][0], marks[-1][1] - marks[-2][1], history["test_loss"][-1])

    history = train(model, train_data, test_data, progress=False, on_epoch_end=timed, speedups=speedups,
                    **config.train_settings)
    # Cross-check the trainer's test loss against the examples' own formula (probabilities, BCE sum).
    _, test_loader = examples_loaders(root)
    model.eval()

    def forward(data):
        logits, mu, logvar = model(data)
        return torch.sigmoid(logits), mu, logvar

    return {
        "epoch_seconds": [b[0] - a[0] for a, b in zip(marks, marks[1:])],
        "epoch_cpu_seconds": [b[1] - a[1] for a, b in zip(marks, marks[1:])],
        "test_loss": history["test_loss"],
        "final_test_loss_examples_formula": examples_test_loss(forward, test_loader),
        "data_load_seconds": load_seconds,
    }


VARIANTS = {"baseline": run_baseline, "trainer": run_trainer}


def child_main(variant, hidden_dim, epochs, seed, threads, options):
    """Run one variant in this (fresh) process; print progress to stderr and a JSON result to stdout."""
    if threads:
        torch.set_num_threads(threads)

    def report(epoch, seconds, cpu_seconds, test_loss):
        print(f"  {variant:>8} 784-{hidden_dim}-{LATENT_DIM} epoch {epoch:>2}: {seconds:6.2f} s "
              f"(CPU {cpu_seconds:6.2f} s), test loss {test_loss:.2f}", file=sys.stderr, flush=True)

    result = VARIANTS[variant](hidden_dim, epochs, seed, report, options)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    result["threads"] = torch.get_num_threads()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_in_subprocess(variant, hidden_dim, epochs, seed, threads, options=None):
    """options: for the trainer variant, see run_trainer."""
    command = [sys.executable, __file__, "--child", variant, "--hidden-dim", str(hidden_dim),
               "--epochs", str(epochs), "--seed", str(seed), "--threads", str(threads or 0),
               "--train-options", json.dumps(options or {})]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True)  # stderr streams through
    if completed.returncode != 0:
        sys.exit(f"the {variant} run failed (exit code {completed.returncode}); see its output above.")
    line = [ln for ln in completed.stdout.splitlines() if ln.startswith(RESULT_PREFIX)][-1]
    return json.loads(line[len(RESULT_PREFIX):])


def verdict(ok):
    return "meets" if ok else "MISSES"


def print_machine(args):
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}")
    print(f"load average at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          "(a shared machine inflates wall times; compare CPU times too)")


def compare(args):
    for hidden_dim in args.model_sizes:
        runs = [compare_one(args, hidden_dim, seed) for seed in args.seeds]
        if len(runs) > 1:
            summarize(args, hidden_dim, runs)


def compare_one(args, hidden_dim, seed):
    """Train both variants with one seed, print the per-epoch table and verdicts; return both results."""
    schedule = "" if args.lr_schedule == "constant" else f" ({args.lr_schedule} learning rate for vae_lesson.train)"
    start = "PyTorch's default initialization" if args.no_mean_bias else "the decoder at the mean image"
    if args.no_subnormal_sweep:
        start += ", subnormals left in Adam's state"
    print(f"\n== 784-{hidden_dim}-{LATENT_DIM} VAE, batch {BATCH_SIZE}, Adam {LR:g}{schedule}, seed {seed}; "
          f"vae_lesson.train from {start} ==")
    trainer = run_in_subprocess("trainer", hidden_dim, args.epochs, seed, args.threads,
                                {"recipe": EXAMPLES_RECIPE, "changes": {"lr_schedule": args.lr_schedule},
                                 "mean_bias": not args.no_mean_bias, "subnormal_sweep": not args.no_subnormal_sweep})
    baseline = None
    if not args.skip_baseline:
        baseline = run_in_subprocess("baseline", hidden_dim, args.baseline_epochs, seed, args.threads)

    header = f"{'epoch':>5} | {'vae_lesson s':>12} {'test loss':>9}"
    if baseline:
        header += f" | {'baseline s':>10} {'test loss':>9} | {'speed-up':>8}"
    print(header)
    for i in range(max(args.epochs, args.baseline_epochs if baseline else 0)):
        row = f"{i + 1:>5} | "
        row += (f"{trainer['epoch_seconds'][i]:>12.2f} {trainer['test_loss'][i]:>9.2f}"
                if i < args.epochs else " " * 22)
        if baseline:
            if i < args.baseline_epochs:
                row += f" | {baseline['epoch_seconds'][i]:>10.2f} {baseline['test_loss'][i]:>9.2f}"
                if i < args.epochs:
                    row += f" | {baseline['epoch_seconds'][i] / trainer['epoch_seconds'][i]:>7.1f}x"
        print(row)

    t_wall, t_cpu = mean(trainer["epoch_seconds"]), mean(trainer["epoch_cpu_seconds"])
    print(f"vae_lesson.train: {t_wall:.2f} s per epoch (CPU {t_cpu:.2f} s), final test loss "
          f"{trainer['test_loss'][-1]:.2f} (examples' formula on probabilities: "
          f"{trainer['final_test_loss_examples_formula']:.2f}), peak RSS {trainer['peak_rss_mb']:.0f} MiB, "
          f"data load {trainer['data_load_seconds']:.1f} s")
    if baseline:
        b_wall, b_cpu = mean(baseline["epoch_seconds"]), mean(baseline["epoch_cpu_seconds"])
        print(f"baseline loop:    {b_wall:.2f} s per epoch (CPU {b_cpu:.2f} s), final test loss "
              f"{baseline['test_loss'][-1]:.2f}, peak RSS {baseline['peak_rss_mb']:.0f} MiB")
        ratio = b_wall / t_wall
        print(f"speed-up: {ratio:.1f}x wall, {b_cpu / t_cpu:.1f}x CPU  "
              f"[{verdict(ratio >= TARGET_SPEEDUP)} the {TARGET_SPEEDUP:g}x target]")
        if args.baseline_epochs == args.epochs:
            ok = trainer["test_loss"][-1] <= baseline["test_loss"][-1] + 0.5
            print(f"test loss after {args.epochs} epochs: {trainer['test_loss'][-1]:.2f} vs baseline "
                  f"{baseline['test_loss'][-1]:.2f} [{verdict(ok)} 'as good as the usual loop' (within 0.5)]")
    if hidden_dim == 400 and args.epochs == 10:
        print(f"test loss {trainer['test_loss'][-1]:.2f} [{verdict(trainer['test_loss'][-1] <= TARGET_LOSS_400)} "
              f"the <= {TARGET_LOSS_400} target after 10 epochs]")
    if args.epochs >= 10:
        peak_gb = trainer["peak_rss_mb"] * 2**20 / 1e9  # MiB -> GB (10^9 bytes), the stricter reading
        print(f"peak RSS {peak_gb:.2f} GB ({trainer['peak_rss_mb']:.0f} MiB) "
              f"[{verdict(peak_gb <= TARGET_PEAK_GB)} the <= {TARGET_PEAK_GB} GB target]")
    return trainer, baseline


def mean_and_error(values):
    """Mean and its standard error, stdev / sqrt(n) (needs two values or more)."""
    return mean(values), stdev(values) / len(values) ** 0.5


def summarize(args, hidden_dim, runs):
    """Seed-to-seed spread is larger than the differences the targets ask about: report means."""
    print(f"\n== summary over seeds {' '.join(map(str, args.seeds))}: 784-{hidden_dim}-{LATENT_DIM}, "
          f"{args.epochs} epochs ==")
    ours = [trainer["test_loss"][-1] for trainer, _ in runs]
    ours_examples = [trainer["final_test_loss_examples_formula"] for trainer, _ in runs]
    print("vae_lesson.train final test loss:   " + " ".join(f"{v:.2f}" for v in ours)
          + "   mean {:.2f} +- {:.2f}".format(*mean_and_error(ours)))
    print("  (examples' formula on probabilities) " + " ".join(f"{v:.2f}" for v in ours_examples)
          + "   mean {:.2f} +- {:.2f}".format(*mean_and_error(ours_examples)))
    if hidden_dim == 400 and args.epochs == 10:
        m = mean(ours)
        print(f"mean {m:.2f} [{verdict(m <= TARGET_LOSS_400)} the <= {TARGET_LOSS_400} target after 10 epochs]; "
              f"{sum(v <= TARGET_LOSS_400 for v in ours)} of {len(ours)} seeds meet it")
    if args.skip_baseline:
        return
    theirs = [baseline["test_loss"][-1] for _, baseline in runs]
    print("baseline loop final test loss:      " + " ".join(f"{v:.2f}" for v in theirs)
          + "   mean {:.2f} +- {:.2f}".format(*mean_and_error(theirs)))
    if args.baseline_epochs == args.epochs:
        # The two models start from different weights even with the same seed (different layer
        # order), so the seeds are not paired: compare the means, with the error of their difference.
        (m_ours, e_ours), (m_theirs, e_theirs) = mean_and_error(ours), mean_and_error(theirs)
        d = m_ours - m_theirs
        print(f"difference of the means (vae_lesson - baseline): {d:+.2f} +- {(e_ours ** 2 + e_theirs ** 2) ** 0.5:.2f} "
              f"nats [{verdict(d <= 0.5)} 'as good as the usual loop' (within 0.5)]")
    ratios = [mean(b["epoch_seconds"]) / mean(t["epoch_seconds"]) for t, b in runs]
    print("speed-up per seed (wall): " + " ".join(f"{r:.1f}x" for r in ratios)
          + f"; median {median(ratios):.1f}x [{verdict(median(ratios) >= TARGET_SPEEDUP)} the "
          f"{TARGET_SPEEDUP:g}x target]; {sum(r >= TARGET_SPEEDUP for r in ratios)} of {len(ratios)} runs meet it")


def lecture(args):
    from vae_lesson import RECIPES

    course = RECIPES[LECTURE_RECIPE]
    epochs = args.lecture_epochs
    recipe = f"batch_size {course.batch_size}, lr {course.lr:g}, lr_schedule {course.lr_schedule}"
    recipe += ", default initialization" if args.no_mean_bias else ", decoder starting at the mean image"
    print(f"\n== the lecture's 784-{course.hidden_dim}-{course.latent_dim} VAE ({LECTURE_RECIPE}), {epochs} epochs "
          f"with vae_lesson.train ({recipe}), seed {args.seeds[0]} ==")
    result = run_in_subprocess("trainer", course.hidden_dim, epochs, args.seeds[0], args.threads,
                               {"recipe": LECTURE_RECIPE, "mean_bias": not args.no_mean_bias})
    for epoch, (seconds, loss) in enumerate(zip(result["epoch_seconds"], result["test_loss"]), start=1):
        print(f"epoch {epoch:>2}: test loss {loss:.2f}  ({seconds:.1f} s)")
    total = sum(result["epoch_seconds"])
    final = result["test_loss"][-1]
    print(f"{epochs} epochs took {total:.0f} s ({total / 60:.1f} min; CPU {sum(result['epoch_cpu_seconds']):.0f} s), "
          f"peak RSS {result['peak_rss_mb']:.0f} MiB; final test loss {final:.2f}")
    if epochs >= course.epochs:
        print(f"[{verdict(final <= TARGET_LOSS_LECTURE)} the <= {TARGET_LOSS_LECTURE} target]")
    else:
        print(f"(the <= {TARGET_LOSS_LECTURE} target is for the course's {course.epochs}-epoch budget)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--epochs", type=int, default=10, help="epochs for vae_lesson.train (default 10)")
    parser.add_argument("--baseline-epochs", type=int, default=None,
                        help="epochs for the baseline loop (default: --epochs)")
    parser.add_argument("--model-sizes", type=int, nargs="+", default=[400], metavar="HIDDEN",
                        help="hidden-layer sizes to compare, 784-HIDDEN-20 (default 400)")
    parser.add_argument("--skip-baseline", action="store_true", help="time vae_lesson.train only")
    parser.add_argument("--lecture-epochs", type=int, default=None, metavar="N",
                        help="instead: train the lecture's 784-500-20 model for N epochs with the recipe "
                             f"{LECTURE_RECIPE} "
                             "(the notebooks train it for 30) and print the test loss per epoch")
    parser.add_argument("--seed", "--seeds", dest="seeds", type=int, nargs="+", default=[0], metavar="SEED",
                        help="seeds the initial weights and the data order; several: one run each, then means")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                        help="vae_lesson.train's learning-rate schedule (the baseline keeps the examples' constant "
                             "rate; default constant, like for like)")
    parser.add_argument("--no-mean-bias", action="store_true",
                        help="vae_lesson.train from PyTorch's default initialization, without "
                             "set_output_bias_to_mean_image (the course's start)")
    parser.add_argument("--no-subnormal-sweep", action="store_true",
                        help="vae_lesson.train without clearing subnormal numbers out of Adam's state (what it "
                             "saves: compare the seconds per epoch with a run without this flag)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--hidden-dim", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--train-options", type=json.loads, default={}, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("epochs", "baseline_epochs", "lecture_epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.child:
        child_main(args.child, args.hidden_dim, args.epochs, args.seeds[0], args.threads, args.train_options)
        return
    mnist_root()  # fail fast, before starting any subprocess
    if args.baseline_epochs is None:
        args.baseline_epochs = args.epochs
    print_machine(args)
    if args.lecture_epochs:
        lecture(args)
    else:
        compare(args)
    print(f"load average at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
