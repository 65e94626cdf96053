"""The set-up files agree with each other: pip and conda list the same packages, the two commands
exist, CI runs what a user runs, and nbval's sanitize patterns hide only machine-dependent text."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from nbval.plugin import get_sanitize_patterns

REPO_ROOT = Path(__file__).resolve().parents[1]
# conda-forge name -> PyPI name, where they differ.
CONDA_TO_PIP = {"pytorch-cpu": "torch", "pytorch": "torch"}
# Not course dependencies: the interpreter and the installer themselves.
NOT_DEPENDENCIES = {"python", "pip"}


def split_requirement(text):
    """'ipywidgets >= 8' -> ('ipywidgets', '>=8'); names normalised as PyPI does (PEP 503)."""
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?", text)
    assert match, f"cannot parse requirement {text!r}"
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    return name, re.sub(r"\s+", "", match.group(3))


def pyproject_dependencies(extra=None):
    """{name: version bound} of the runtime dependencies, or of one optional extra."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return dict(split_requirement(r) for r in requirements)


def conda_dependencies():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    deps = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):  # the `pip:` sub-list installs the course itself, not a dependency
            continue
        name, spec = split_requirement(entry)
        if name not in NOT_DEPENDENCIES:
            deps[CONDA_TO_PIP.get(name, name)] = spec
    return deps


# What a notebook kernel imports, and nothing else: Colab and Kaggle install exactly this.
KERNEL_NEEDS = {"torch", "torchvision", "matplotlib", "numpy", "tqdm", "ipywidgets", "mlxtend"}


def test_runtime_dependencies_are_what_a_kernel_needs():
    assert set(pyproject_dependencies()) == KERNEL_NEEDS
    assert "jupyterlab" in pyproject_dependencies("lab")


def test_pip_and_conda_list_the_same_runtime_dependencies():
    # Binder's environment is the runtime plus the `lab` extra (JupyterLab for its front end); where
    # both name a package, the extra's bound is the one that holds once it is installed.
    pip, conda = {**pyproject_dependencies(), **pyproject_dependencies("lab")}, conda_dependencies()
    assert sorted(set(pip) - set(conda)) == [], "in pyproject.toml but missing from environment.yml"
    assert sorted(set(conda) - set(pip)) == [], "in environment.yml but missing from pyproject.toml"
    differing = {name: (pip[name], conda[name]) for name in pip if pip[name] != conda[name]}
    assert differing == {}, "version bounds differ (pyproject.toml, environment.yml)"


def test_conda_environment_is_cpu_only_and_installs_the_course():
    env_text = (REPO_ROOT / "environment.yml").read_text()
    env = yaml.safe_load(env_text)
    names = [split_requirement(e)[0] for e in env["dependencies"] if isinstance(e, str)]
    assert "pytorch-cpu" in names and "pytorch" not in names
    pip_lists = [e["pip"] for e in env["dependencies"] if isinstance(e, dict) and "pip" in e]
    installs_from_yml = any("-e ." in item or item.strip() == "." for items in pip_lists for item in items)
    post_build = REPO_ROOT / "postBuild"
    installs_from_post_build = post_build.is_file() and re.search(
        r"^\s*[^#\n]*pip install[^\n]*-e \.", post_build.read_text(), re.MULTILINE
    )
    assert installs_from_yml or installs_from_post_build


def test_dev_extra_has_what_the_tests_import():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    dev = project["optional-dependencies"]["dev"]
    assert {"pytest", "nbval", "pyyaml"} <= {split_requirement(r)[0] for r in dev}
    assert "vae-lesson[lab]" in dev  # the browser test runs JupyterLab


def test_make_lab_installs_the_lab_extra_and_make_test_the_dev_extra():
    text = (REPO_ROOT / "Makefile").read_text()
    assert "pip install -e '.[lab]'" in text and "pip install -e '.[dev]'" in text


def makefile_targets():
    text = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.MULTILINE))


def test_makefile_has_the_two_commands():
    assert {"lab", "test"} <= makefile_targets()


def test_ci_runs_make_test():
    lines = [line.split("#")[0].strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in lines
    workflow = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "test.yml").read_text())
    steps = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(line.strip() == "make test" for run in steps for line in run.splitlines())


# --- nbval sanitize patterns ---------------------------------------------------------------------

SANITIZE_FILE = REPO_ROOT / "notebooks" / "nbval_sanitize.cfg"


def sanitize(text):
    for regex, replace in get_sanitize_patterns(SANITIZE_FILE.read_text()):
        text = re.sub(regex, replace, text)
    return text


def test_sanitize_file_is_read_by_nbval_and_is_used_by_make_test():
    patterns = get_sanitize_patterns(SANITIZE_FILE.read_text())
    sections = re.findall(r"^\[[^\]]+\]$", SANITIZE_FILE.read_text(), re.MULTILINE)
    assert len(patterns) == len(sections) >= 5  # every section parsed into a regex/replace pair
    for regex, _ in patterns:
        re.compile(regex)
    assert "--nbval-sanitize-with notebooks/nbval_sanitize.cfg" in (REPO_ROOT / "Makefile").read_text()


@pytest.mark.parametrize(
    "here, there",
    [
        ("<Figure size 640x480 with 1 Axes> at 0x7f3a2c1b5d90", "<Figure size 640x480 with 1 Axes> at 0x55d0e4a1c2b0"),
        ("epoch 3 took 12.3s", "epoch 3 took 9.87s"),
        ("trained in 0:00:12", "trained in 0:01:05"),
        ("Wall time: 850 ms", "Wall time: 1.2 s"),
        (
            "epoch 3: 100%|██████████| 469/469 [00:12<00:00, 38.1it/s]\n",
            "epoch 3: 100%|██████████| 469/469 [00:09<00:00, 51.7it/s]\n",
        ),
        (
            "/work/main/vae_lesson/data.py:201: OfflineSampleWarning: Full MNIST is not in /work/main/data",
            "/Users/ann/vae-lesson/vae_lesson/data.py:188: OfflineSampleWarning: Full MNIST is not in /Users/ann/vae-lesson/data",
        ),
    ],
)
def test_machine_dependent_text_is_hidden(here, there):
    assert sanitize(here) == sanitize(there)


@pytest.mark.parametrize(
    "here, there",
    [
        ("test loss 104.21", "test loss 104.87"),
        ("torch.Size([60000, 1, 28, 28])", "torch.Size([4000, 1, 28, 28])"),
        ("3 samples per digit", "5 samples per digit"),
        ("10/10 epochs", "9/10 epochs"),
        ("see vae_lesson/data.py", "see vae_lesson/loss.py"),
        ("https://mybinder.org/v2/gh/vae-lesson/vae-lesson/HEAD", "https://mybinder.org/v2/gh/other/repo/HEAD"),
    ],
)
def test_course_results_are_still_compared(here, there):
    assert sanitize(here) != sanitize(there)


def test_every_package_of_the_course_is_installed():
    # pyproject lists packages by name, so a new subpackage (vae_lesson/checks/) must be added there,
    # or a non-editable install ships without it.
    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {str(init.parent.relative_to(REPO_ROOT)).replace("/", ".") for init in (REPO_ROOT / "vae_lesson").rglob("__init__.py")}
    assert on_disk == listed, f"pyproject.toml [tool.setuptools] packages {sorted(listed)} != packages on disk {sorted(on_disk)}"
