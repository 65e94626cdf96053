"""Run time and peak memory of every notebook, each on its own with an empty model cache, and in sequence.

Each notebook runs top to bottom in a fresh kernel (nbclient, the engine behind nbconvert and nbval),
with VAE_LESSON_CHECKPOINTS pointing at an empty temporary folder, so it trains every model it
needs: what a student who opens just that notebook waits for. After the last cell the kernel reports
its own peak resident memory (ru_maxrss) and, on Linux, how much of what is resident at the end is
file-backed (RssFile: pages of torch's shared libraries, which the kernel can drop and read again
under memory pressure, unlike the arrays a notebook allocates). Then, with --sequence, all
notebooks run in course order sharing one (initially empty) cache, as `make test` and a student
working through the course do.

    export VAE_LESSON_DATA=/path/holding/MNIST/raw   # the committed outputs are from the full MNIST
    .venv/bin/python benchmarks/bench_notebooks.py                 # each on its own, then the sequence
    .venv/bin/python benchmarks/bench_notebooks.py 05 06           # only notebooks whose name starts so
    .venv/bin/python benchmarks/bench_notebooks.py --write         # also save the outputs (re-execute)
    .venv/bin/python benchmarks/bench_notebooks.py --no-alone --write --cache checkpoints  # make notebooks

Targets (issue 5, 2-core CPU): each notebook at most 3 minutes on its own with an empty cache, the
whole sequence at most 10 minutes, peak memory of any kernel at most 1.5 GB. The baseline printed
next to the notebooks is the kernel itself: starting it and importing torch and vae_lesson.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from vae_lesson.cache import CACHE_ENV_VAR
from vae_lesson.data import ENV_VAR as DATA_ENV_VAR

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TARGET_NOTEBOOK_S = 180
TARGET_SEQUENCE_S = 600
TARGET_PEAK_GB = 1.5
PEAK_TAG = "BENCH-PEAK-RSS-KIB "
FILE_TAG = "BENCH-RSS-FILE-KIB "
PEAK_CELL = (f"import os, resource; print({PEAK_TAG!r} + str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
             f"if os.path.exists('/proc/self/status'):\n"
             f"    print({FILE_TAG!r} + next((line.split()[1] for line in open('/proc/self/status') "
             f"if line.startswith('RssFile:')), '0'))")


def _cell_seconds(cell):
    """Seconds a code cell took, from the timestamps nbclient records in its metadata (0 for markdown)."""
    timing = cell.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" not in timing or "shell.execute_reply" not in timing:
        return 0.0
    start, end = (datetime.fromisoformat(timing[key].replace("Z", "+00:00"))
                  for key in ("iopub.execute_input", "shell.execute_reply"))
    return (end - start).total_seconds()


def run_notebook(path, cache, *, write=False, timeout=900):
    """Execute one notebook in a fresh kernel; return (seconds, peak RSS, file-backed RSS at the end), in bytes.

    The last is 0 where /proc is missing (macOS)."""
    nb = nbformat.read(path, as_version=4)
    # nbclient saves the state of the widgets a run creates, but keeps old state when a run creates
    # none: a run that loads its models from the cache would carry the progress bars of an earlier one.
    nb.metadata.pop("widgets", None)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    os.environ[CACHE_ENV_VAR] = str(cache)  # the kernel inherits it
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    peak_cell = nb.cells.pop()
    slowest = sorted(((_cell_seconds(cell), index) for index, cell in enumerate(nb.cells)), reverse=True)[:3]
    print("    slowest cells: " + ", ".join(f"#{index} {secs:.1f} s" for secs, index in slowest), flush=True)
    text = "".join(output.get("text", "") for output in peak_cell.outputs)
    kib = int(text.split(PEAK_TAG)[1].split()[0])  # ru_maxrss is in KiB on Linux
    file_kib = int(text.split(FILE_TAG)[1].split()[0]) if FILE_TAG in text else 0
    if write:
        temporary = path.with_suffix(".ipynb.tmp")
        nbformat.write(nb, temporary)
        os.replace(temporary, path)  # atomic: a failed run never leaves a half-written notebook
    return seconds, kib * 1024, file_kib * 1024


def kernel_baseline(cache):
    """The same measurement for a notebook that only imports what every lesson imports."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import torch, matplotlib.pyplot as plt\nimport vae_lesson as vl"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "baseline.ipynb"
        nbformat.write(nb, path)
        return run_notebook(path, cache)


def verdict(ok):
    return "meets" if ok else "MISSES"


def report(name, seconds, peak, file_backed, target_s):
    gb = peak / 1e9
    print(f"{name:<36} {seconds:7.1f} s   peak {gb:5.2f} GB ({file_backed / 1e9:4.2f} file-backed at the end)   "
          f"[time {verdict(seconds <= target_s)}, memory {verdict(gb <= TARGET_PEAK_GB)}]", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("prefixes", nargs="*", help="run only notebooks whose file name starts with one of these")
    parser.add_argument("--write", action="store_true", help="save each notebook's new outputs in place")
    parser.add_argument("--no-alone", action="store_true", help="skip the one-by-one runs with empty caches")
    parser.add_argument("--no-sequence", action="store_true", help="skip the run of all notebooks in sequence")
    parser.add_argument("--cache", type=Path, default=None,
                        help="for the sequence: use this model cache (e.g. checkpoints) instead of an empty one")
    args = parser.parse_args(argv)
    if os.environ.get(DATA_ENV_VAR):
        # Kernels run in notebooks/, so a relative path would point somewhere else there.
        os.environ[DATA_ENV_VAR] = str(Path(os.environ[DATA_ENV_VAR]).resolve())

    paths = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")
                   if not args.prefixes or p.name.startswith(tuple(args.prefixes)))
    if not paths:
        sys.exit(f"no notebook in {NOTEBOOKS} starts with {' or '.join(args.prefixes)}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{DATA_ENV_VAR}={os.environ.get(DATA_ENV_VAR, '(unset)')}, "
          f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        report("(kernel + imports, baseline)", *kernel_baseline(Path(cache)), TARGET_NOTEBOOK_S)
    if not args.no_alone:
        print("\neach notebook on its own, fresh kernel, empty model cache:")
        for path in paths:
            with tempfile.TemporaryDirectory() as cache:
                seconds, peak, file_backed = run_notebook(path, Path(cache), write=args.write)
            results[path.stem] = {"alone_s": seconds, "alone_peak_bytes": peak, "alone_file_bytes": file_backed}
            report(path.stem, seconds, peak, file_backed, TARGET_NOTEBOOK_S)
    if not args.no_sequence:
        where = f"the cache in {args.cache}" if args.cache else "one shared model cache, empty at the start"
        print(f"\nall in sequence, {where}:")
        total = 0.0
        with tempfile.TemporaryDirectory() as empty:
            cache = args.cache.resolve() if args.cache else Path(empty)
            for path in paths:
                seconds, peak, file_backed = run_notebook(path, cache, write=args.write and args.no_alone)
                total += seconds
                results.setdefault(path.stem, {}).update({"sequence_s": seconds, "sequence_peak_bytes": peak,
                                                         "sequence_file_bytes": file_backed})
                report(path.stem, seconds, peak, file_backed, TARGET_NOTEBOOK_S)
        print(f"{'sequence total':<36} {total:7.1f} s   [{verdict(total <= TARGET_SEQUENCE_S)} the "
              f"{TARGET_SEQUENCE_S // 60}-minute target]")
    print(f"load average at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
