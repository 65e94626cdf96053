"""The course opened anywhere: launch links and an install cell on every notebook, a notebook run outside
any clone from the installed wheel, and the student edition without its solutions.

tools/notebook_headers.py writes the first two cells of every notebook from [tool.vae-lesson] in
pyproject.toml; tools/student_edition.py writes the student edition. Both are run here as a maintainer
runs them (`make headers`, `make student`), on copies in tmp_path unless a test says otherwise.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS = REPO_ROOT / "tools"
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
QUICK_NOTEBOOK = REPO_ROOT / "notebooks" / "03_reparameterization_trick.ipynb"  # a few seconds, no training
CONFIG = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["vae-lesson"]
# An address where nothing listens: every download fails at once, as with no network at all.
NO_NETWORK = "http://127.0.0.1:9"


def run_tool(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def read(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def execute(path, cwd, env, timeout=600):
    """Run a notebook top to bottom in a fresh kernel started with exactly `env`; return it with its outputs."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
                   ).execute(env=env)
    return notebook


def text_outputs(cell):
    """The text a cell printed or returned, as one string."""
    texts = []
    for output in cell.get("outputs", []):
        for value in (output.get("text"), output.get("data", {}).get("text/plain")):
            if value:
                texts.append(value if isinstance(value, str) else "".join(value))
    return "".join(texts)


# --- (b) every notebook starts with the launch links and the install cell ----------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_starts_with_launch_links_and_the_install_cell(path):
    cells = read(path)["cells"]
    links, install, title = cells[0], cells[1], cells[2]
    assert (links["id"], links["cell_type"]) == ("launch-links", "markdown")
    assert (install["id"], install["cell_type"]) == ("install-course", "code")
    assert source(title).startswith("# Lesson"), "the lesson's title cell follows the two header cells"
    repo, ref, notebook = CONFIG["repository"], CONFIG["ref"], f"notebooks/{path.name}"
    expected = [
        f"https://colab.research.google.com/github/{repo}/blob/{ref}/{notebook}",
        f"https://kaggle.com/kernels/welcome?src=https://github.com/{repo}/blob/{ref}/{notebook}",
        f"https://mybinder.org/v2/gh/{repo}/{ref}?urlpath=lab/tree/{notebook}",
    ]
    assert re.findall(r"\)\]\((https://[^)\s]+)\)", source(links)) == expected  # badges: Colab, Kaggle, then Binder
    assert f"vae-lesson @ git+https://github.com/{repo}@{ref}" in source(install)
    assert install["outputs"] == [], "in a clone the install cell prints nothing"


def test_notebooks_and_readme_are_up_to_date_with_the_configuration():
    result = run_tool(TOOLS / "notebook_headers.py", "--check")
    assert result.returncode == 0, f"{result.stdout}{result.stderr}"


def install_cell_code():
    return source(read(QUICK_NOTEBOOK)["cells"][1])


def test_the_install_cell_does_nothing_where_the_course_is_installed(capfd, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("the install cell ran pip in a clone"))
    exec(compile(install_cell_code(), "<install cell>", "exec"), {})
    assert capfd.readouterr() == ("", "")


def test_the_install_cell_installs_the_pinned_course_and_keeps_torch(monkeypatch):
    import importlib.metadata
    import importlib.util

    calls = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vae_lesson" else object())
    monkeypatch.setattr(subprocess, "run", lambda args, **k: calls.append(args) or subprocess.CompletedProcess(args, 0))
    exec(compile(install_cell_code(), "<install cell>", "exec"), {})
    (args,) = calls
    assert args[:5] == [sys.executable, "-m", "pip", "install", "--quiet"]
    assert f"vae-lesson @ git+https://github.com/{CONFIG['repository']}@{CONFIG['ref']}" in args
    # the torch that is there, pinned to itself: pip cannot replace it with another build or version
    assert f"torch=={importlib.metadata.version('torch')}" in args
    assert f"torchvision=={importlib.metadata.version('torchvision')}" in args
    assert "--upgrade" not in args and "-U" not in args


def test_a_failed_install_says_what_to_do(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vae_lesson" else object())
    monkeypatch.setattr(subprocess, "run", lambda args, **k: subprocess.CompletedProcess(args, 1))
    with pytest.raises(RuntimeError, match="Internet on"):
        exec(compile(install_cell_code(), "<install cell>", "exec"), {})


def copy_of_repository(tmp_path):
    root = tmp_path / "repo"
    for name in ("notebooks", "vae_lesson", "benchmarks", "tests", "tools"):
        shutil.copytree(REPO_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, root / name)
    return root


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_header_script_is_idempotent_and_a_fork_changes_one_line(tmp_path):
    root = copy_of_repository(tmp_path)
    before = snapshot(root)
    assert run_tool(TOOLS / "notebook_headers.py", "--root", root).returncode == 0
    assert snapshot(root) == before, "the committed files are already what the script writes"

    pyproject = root / "pyproject.toml"
    old = f'repository = "{CONFIG["repository"]}"'
    assert pyproject.read_text().count(old) == 1
    pyproject.write_text(pyproject.read_text().replace(old, 'repository = "a-teacher/vae-fork"'))
    assert run_tool(TOOLS / "notebook_headers.py", "--root", root).returncode == 0
    once = snapshot(root)
    assert run_tool(TOOLS / "notebook_headers.py", "--root", root).returncode == 0
    assert snapshot(root) == once, "running it twice changes nothing"
    changed_text = "".join(once[p].decode() for p in once if p.suffix in (".ipynb", ".md"))
    assert CONFIG["repository"] not in changed_text, "a link to the old repository was left"
    assert changed_text.count("a-teacher/vae-fork") >= 3 * (len(NOTEBOOKS) + 1)
    # only the header cells, the links to the course's files and the README changed
    for path in once:
        if path.suffix == ".ipynb":
            old_cells, new_cells = json.loads(before[path])["cells"], json.loads(once[path])["cells"]
            assert [c["id"] for c in old_cells] == [c["id"] for c in new_cells]
            for a, b in zip(old_cells[2:], new_cells[2:]):
                if a != b:
                    assert source(a).replace(CONFIG["repository"], "a-teacher/vae-fork") == source(b)


def test_relative_links_to_the_package_become_links_to_the_repository(tmp_path):
    root = copy_of_repository(tmp_path)
    path = root / "notebooks" / QUICK_NOTEBOOK.name
    notebook = read(path)
    notebook["cells"][2]["source"] = [
        "See [the loop](../vae_lesson/training.py#L10) and `vae_lesson/loss.py`, not `vae_lesson/nothing.py`.\n",
        "```python\n# `vae_lesson/kl.py` in a code block stays as it is\n```\n",
    ]
    path.write_text(json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert run_tool(TOOLS / "notebook_headers.py", "--root", root).returncode == 0
    text = source(read(path)["cells"][2])
    blob = f"https://github.com/{CONFIG['repository']}/blob/{CONFIG['ref']}"
    assert f"[the loop]({blob}/vae_lesson/training.py#L10)" in text
    assert f"[`vae_lesson/loss.py`]({blob}/vae_lesson/loss.py)" in text
    assert "not `vae_lesson/nothing.py`." in text  # no such file: left alone
    assert "# `vae_lesson/kl.py` in a code block stays as it is" in text


# --- (c) the student edition --------------------------------------------------------------------------------

SOLUTION = re.compile(r"<!--\s*solution-for:\s*(\w+)\s*-->\s*```python[ \t]*\n(.*?)```", re.DOTALL)


@pytest.fixture(scope="module")
def student_edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    result = run_tool(TOOLS / "student_edition.py", "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def test_the_student_edition_holds_no_solution(student_edition):
    solutions_seen = 0
    for path in NOTEBOOKS:
        original, copy = read(path), read(student_edition / path.name)
        copy_text = json.dumps(copy, ensure_ascii=False)
        solution_cells = [c for c in original["cells"] if SOLUTION.search(source(c))]
        other_text = "".join(source(c) for c in original["cells"] if c not in solution_cells)
        for cell in solution_cells:
            for _, code in SOLUTION.findall(source(cell)):
                solutions_seen += 1
                # lines of the solution that the lesson does not show elsewhere (the stub's `def` line it does)
                lines = [line.strip() for line in code.splitlines() if line.strip()]
                telling = [line for line in lines if line not in other_text]
                assert telling, f"{path.name}: no line tells this solution apart from the rest of the lesson"
                for line in telling:
                    assert json.dumps(line, ensure_ascii=False)[1:-1] not in copy_text, f"{path.name}: {line!r}"
        assert "solution-for" not in copy_text and "Show a solution" not in copy_text, path.name
        assert [c["id"] for c in copy["cells"]][0] == "install-course", "launch links dropped, install cell kept"
    assert solutions_seen >= 4


def test_the_student_edition_clears_the_exercise_cells_and_keeps_the_lesson(student_edition):
    original, copy = read(QUICK_NOTEBOOK), read(student_edition / QUICK_NOTEBOOK.name)
    check_cells = [c for c in copy["cells"] if "check_reparameterize(my_reparameterize)" in source(c)]
    assert check_cells and all(c["outputs"] == [] for c in check_cells)
    kept = {c["id"]: c for c in copy["cells"]}
    # the other cells are the lesson's, outputs and all (the check of the lecture's function included)
    for cell in original["cells"]:
        if cell["id"] in kept and cell not in check_cells and "my_reparameterize" not in source(cell):
            assert kept[cell["id"]] == cell


def test_the_student_edition_runs_top_to_bottom(student_edition, tmp_path):
    env = {**os.environ, "VAE_LESSON_CHECKPOINTS": str(tmp_path / "checkpoints")}
    notebook = execute(student_edition / QUICK_NOTEBOOK.name, tmp_path, env)
    check_cell = next(c for c in notebook.cells if "check_reparameterize(my_reparameterize)" in c.source)
    assert "not done yet" in text_outputs(check_cell)


# --- (a) a student elsewhere: the wheel installed alone, one notebook in an empty folder, no network -------

def test_a_notebook_runs_from_the_installed_wheel_outside_any_clone(tmp_path):
    source_copy, wheels, target = tmp_path / "source", tmp_path / "wheels", tmp_path / "site-packages"
    shutil.copytree(REPO_ROOT / "vae_lesson", source_copy / "vae_lesson", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO_ROOT / name, source_copy / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels,
                            source_copy], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("vae_lesson-*.whl")
    installed = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", target, wheel],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    package_files = snapshot(target)

    home, folder = tmp_path / "home", tmp_path / "student"
    home.mkdir()
    folder.mkdir()
    shutil.copy(QUICK_NOTEBOOK, folder / QUICK_NOTEBOOK.name)
    # Only what a fresh machine has: no VAE_LESSON_*, no XDG_*, the wheel alone on PYTHONPATH, no network.
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("VAE_LESSON_", "XDG_", "PYTHON")) and "PROXY" not in name.upper()}
    env.update(HOME=str(home), PYTHONPATH=str(target), PYTHONDONTWRITEBYTECODE="1",
               http_proxy=NO_NETWORK, https_proxy=NO_NETWORK, HTTP_PROXY=NO_NETWORK, HTTPS_PROXY=NO_NETWORK)
    notebook = nbformat.read(folder / QUICK_NOTEBOOK.name, as_version=4)
    # After the lesson: where things went, and one small model through the cache as later lessons do.
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import json, vae_lesson\n"
        "vae_lesson.trained_model('vae-2d', hidden_dim=16, epochs=1, progress=False)\n"
        "print(json.dumps({'package': vae_lesson.__file__, 'data': str(vae_lesson.paths.data_dir()),\n"
        "                  'checkpoints': str(vae_lesson.paths.checkpoint_dir()), 'n_train': len(train_images)}))"))
    nbformat.write(notebook, folder / QUICK_NOTEBOOK.name)
    executed = execute(folder / QUICK_NOTEBOOK.name, folder, env, timeout=300)

    where = json.loads(text_outputs(executed.cells[-1]).strip().splitlines()[-1])
    assert Path(where["package"]).parent == target / "vae_lesson", "the kernel imported another vae_lesson"
    assert where["data"] == str(home / ".cache" / "vae-lesson" / "data")
    assert where["checkpoints"] == str(home / ".cache" / "vae-lesson" / "checkpoints")
    assert where["n_train"] == 4000, "with no network the course uses the offline sample's 4,000 training digits"
    assert text_outputs(executed.cells[1]) == "", "the install cell found the package and did nothing"
    assert snapshot(target) == package_files, "something was written next to the installed package"
    assert [p.name for p in folder.iterdir()] == [QUICK_NOTEBOOK.name], "something was written beside the notebook"
    assert (home / ".cache" / "vae-lesson" / "data").is_dir()
    assert len(list((home / ".cache" / "vae-lesson" / "checkpoints").glob("*.pt"))) == 1, "the model was not cached"
