"""Write the launch links and the install cell at the top of every notebook, and the README's launch links.

Everything comes from one place, [tool.vae-lesson] in pyproject.toml:

    repository = "vae-lesson/vae-lesson"   # owner/name on GitHub: the one line a fork changes
    ref = "v0.1.0"                         # the tag or commit the links open and the install cell installs

For each notebook in notebooks/ this writes two cells before the lesson's own first cell:
  launch-links    badges that open this notebook in Colab, Kaggle and Binder (Binder last), at `ref`;
  install-course  installs the course's package from the repository at `ref` where `vae_lesson` cannot
                  be imported (Colab, Kaggle, a plain Jupyter), keeping the torch already there; in a
                  clone, where `make lab` installed it, and so under nbval, it does nothing and prints nothing.
It also turns the lessons' links to the course's files (`../vae_lesson/training.py`, or a code span
naming such a file) into links to the file in the repository at `ref`, which work outside a clone.
In README.md it rewrites the badges between <!-- launch-links --> and <!-- /launch-links -->, the course
map's "open in" column and any github.com/OWNER/NAME of the previous repository.

Running it twice changes nothing; a cell whose text is already right keeps its outputs.
    python tools/notebook_headers.py           write
    python tools/notebook_headers.py --check   exit 1 and name the files that are out of date
"""

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
LINKS_ID = "launch-links"  # the ids of the two cells this script owns in every notebook
INSTALL_ID = "install-course"
PACKAGE = "vae-lesson"  # the distribution name pip installs
IMPORT_NAME = "vae_lesson"
# Top-level folders of the repository whose files a lesson may link to.
SOURCE_FOLDERS = ("vae_lesson", "benchmarks", "tests", "tools")
README_BLOCK = re.compile(r"(<!-- launch-links -->\n).*?(<!-- /launch-links -->)", re.DOTALL)


@dataclass(frozen=True)
class Config:
    """Where the course lives and which version the notebooks open and install."""

    repository: str  # "owner/name" on GitHub
    ref: str  # a tag or a commit: the launch links open it and the install cell installs it


def read_config(root=REPO_ROOT):
    table = tomllib.loads((Path(root) / "pyproject.toml").read_text(encoding="utf-8"))
    settings = table.get("tool", {}).get("vae-lesson", {})
    config = Config(settings.get("repository", ""), settings.get("ref", ""))
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", config.repository):
        raise SystemExit(f"[tool.vae-lesson] repository in pyproject.toml must be 'owner/name', "
                         f"got {config.repository!r}")
    if not re.fullmatch(r"[\w.+-]+", config.ref):
        raise SystemExit(f"[tool.vae-lesson] ref in pyproject.toml must be a tag or a commit, got {config.ref!r}")
    return config


# --- launch links ------------------------------------------------------------------------------------

def launch_links(config, notebook=None):
    """[(platform, badge image, url)] for a notebook path in the repository ("notebooks/x.ipynb"), or
    for the course as a whole (Colab and Kaggle open the first notebook, Binder the notebooks folder)."""
    first = notebook or "notebooks/00_setup_and_data.ipynb"
    return [
        ("Colab", "https://colab.research.google.com/assets/colab-badge.svg",
         f"https://colab.research.google.com/github/{config.repository}/blob/{config.ref}/{first}"),
        ("Kaggle", "https://kaggle.com/static/images/open-in-kaggle.svg",
         f"https://kaggle.com/kernels/welcome?src=https://github.com/{config.repository}/blob/{config.ref}/{first}"),
        ("Binder", "https://mybinder.org/badge_logo.svg",
         f"https://mybinder.org/v2/gh/{config.repository}/{config.ref}?urlpath=lab/tree/{notebook or 'notebooks'}"),
    ]


def badges(config, notebook=None):
    return "\n".join(f"[![Open in {name}]({image})]({url})" for name, image, url in launch_links(config, notebook))


def links_cell_source(config, notebook):
    return (
        "<!-- Written by tools/notebook_headers.py (make headers) from [tool.vae-lesson] in pyproject.toml. -->\n"
        f"{badges(config, notebook)}\n\n"
        "Run this lesson in your browser with nothing to install: in Colab or Kaggle (free accounts; on\n"
        "Kaggle, switch *Internet* on in the notebook's settings) or in Binder (no account, but its public\n"
        "service runs with reduced capacity, so it may be slow to start). The next cell installs the course's\n"
        "package there; where the course is already installed, as in a clone after `make lab`, it does nothing."
    )


def install_cell_source(config):
    spec = f"{PACKAGE} @ git+https://github.com/{config.repository}@{config.ref}"
    return (
        "# Installs the course's package where it is missing (Colab, Kaggle, a fresh Jupyter).\n"
        "# Where it is installed, as in a clone of the course after `make lab`, this cell does nothing.\n"
        "import importlib.util\n"
        "\n"
        f"if importlib.util.find_spec({json.dumps(IMPORT_NAME)}) is None:\n"
        "    import importlib.metadata, subprocess, sys\n"
        "\n"
        "    keep = []  # the torch already there, pinned to itself: pip neither reinstalls nor downgrades it\n"
        "    for name in (\"torch\", \"torchvision\"):\n"
        "        try:\n"
        "            keep.append(f\"{name}=={importlib.metadata.version(name)}\")\n"
        "        except importlib.metadata.PackageNotFoundError:\n"
        "            pass\n"
        "    pip = [sys.executable, \"-m\", \"pip\", \"install\", \"--quiet\",\n"
        f"           {json.dumps(spec)}, *keep]\n"
        "    if subprocess.run(pip).returncode != 0:\n"
        "        raise RuntimeError(\"pip could not install the course (its message is above). On Kaggle, \"\n"
        "                           \"switch Internet on in the notebook's settings, then run this cell again.\")\n"
        "    importlib.invalidate_caches()\n"
        f"    print({json.dumps(f'Installed {PACKAGE} {config.ref} from github.com/{config.repository}.')})"
    )


# --- links to the course's files ----------------------------------------------------------------------

def file_url(config, path, root):
    """The file or folder `path` (relative to the repository root) on GitHub at the configured ref."""
    kind = "tree" if (Path(root) / path).is_dir() else "blob"
    return f"https://github.com/{config.repository}/{kind}/{config.ref}/{path}"


def _exists(root, path):
    return bool(path) and not path.startswith("/") and (Path(root) / path.rstrip("/")).exists()


def rewrite_source_links(text, config, root, repositories):
    """Links from a lesson to the course's files, made to work outside a clone.

    `](../PATH)` and `](https://github.com/R/blob|tree/ANY/PATH)` for R in `repositories` (the current and
    previous owner/name) become `](URL)` at the configured ref; a code span `vae_lesson/...` that names an
    existing file becomes a link to it. Fenced code blocks are left alone."""
    repos = "|".join(re.escape(r) for r in sorted(repositories))
    link = re.compile(r"\]\((?:\.\./|https://github\.com/(?:" + repos + r")/(?:blob|tree)/[^/\s)]+/)"
                      r"([^)\s#]+)(#[^)\s]*)?\)")
    span = re.compile(r"(?<!\[)`((?:" + "|".join(SOURCE_FOLDERS) + r")/[\w./-]*)`(?!\]\()")

    def fix_link(match):
        path, anchor = match.group(1), match.group(2) or ""
        if not _exists(root, path):
            return match.group(0)
        return f"]({file_url(config, path.rstrip('/'), root)}{anchor})"

    def fix_span(match):
        path = match.group(1)
        if not _exists(root, path):
            return match.group(0)
        return f"[`{path}`]({file_url(config, path.rstrip('/'), root)})"

    parts = re.split(r"(```.*?```)", text, flags=re.DOTALL)  # odd parts are fenced code: unchanged
    for i in range(0, len(parts), 2):
        parts[i] = span.sub(fix_span, link.sub(fix_link, parts[i]))
    return "".join(parts)


# --- notebooks -----------------------------------------------------------------------------------------

def read_notebook(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_notebook(path, notebook):
    """Write as Jupyter does (nbformat: one-space indent, sorted keys, UTF-8), so diffs stay small."""
    text = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    Path(path).write_text(text, encoding="utf-8")


def cell_source(cell):
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _lines(text):
    return text.splitlines(keepends=True)


def _header_cell(old, cell_id, cell_type, source):
    """The cell with this id and source: `old` unchanged (outputs and all) where its source already matches."""
    if old is not None and old["cell_type"] == cell_type and cell_source(old) == source:
        return old
    cell = {"cell_type": cell_type, "id": cell_id, "metadata": {}, "source": _lines(source)}
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def repositories_in(text):
    """owner/name of every repository the launch links in `text` point at (to recognise a fork's old links)."""
    return set(re.findall(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/", text))


def update_notebook(notebook, config, notebook_path, root):
    """The notebook with fresh header cells and source links (a new dict; the input is not changed)."""
    cells = notebook["cells"]
    by_id = {cell.get("id"): cell for cell in cells}
    repositories = {config.repository} | repositories_in(cell_source(by_id.get(LINKS_ID, {})))
    header = [
        _header_cell(by_id.get(LINKS_ID), LINKS_ID, "markdown", links_cell_source(config, notebook_path)),
        _header_cell(by_id.get(INSTALL_ID), INSTALL_ID, "code", install_cell_source(config)),
    ]
    body = []
    for cell in cells:
        if cell.get("id") in (LINKS_ID, INSTALL_ID):
            continue
        if cell["cell_type"] == "markdown":
            text = cell_source(cell)
            new_text = rewrite_source_links(text, config, root, repositories)
            if new_text != text:
                cell = {**cell, "source": _lines(new_text)}
        body.append(cell)
    return {**notebook, "cells": header + body}


# --- README ----------------------------------------------------------------------------------------------

def update_readme(text, config):
    if not README_BLOCK.search(text):
        raise SystemExit("README.md has no <!-- launch-links --> ... <!-- /launch-links --> block to write into")
    old = repositories_in(README_BLOCK.search(text).group(0)) - {config.repository}
    text = README_BLOCK.sub(lambda m: m.group(1) + badges(config) + "\n" + m.group(2), text)

    def course_map_row(match):
        links = " · ".join(f"[{name}]({url})" for name, _, url in launch_links(config, match.group(2)))
        return f"{match.group(1)}{links} |"

    # | N | [stem](notebooks/stem.ipynb) | what you learn | run time | <launch links> |
    row = re.compile(r"^(\| *\d+ *\| *\[[^\]]+\]\((notebooks/[\w.-]+\.ipynb)\) *\|.*\| )[^|\n]*\|[ \t]*$", re.MULTILINE)
    text = row.sub(course_map_row, text)
    for repository in old:  # a fork: the clone command and any other link to the old repository
        text = text.replace(f"github.com/{repository}", f"github.com/{config.repository}")
    return text


def run(root=REPO_ROOT, check=False):
    """Update (or with check=True only compare) every notebook and the README; return the stale files."""
    root = Path(root)
    config = read_config(root)
    stale = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        notebook = read_notebook(path)
        updated = update_notebook(notebook, config, path.relative_to(root).as_posix(), root)
        if updated != notebook:
            stale.append(path)
            if not check:
                write_notebook(path, updated)
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    new_text = update_readme(text, config)
    if new_text != text:
        stale.append(readme)
        if not check:
            readme.write_text(new_text, encoding="utf-8")
    return stale


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the repository (default: this one)")
    args = parser.parse_args(argv)
    stale = run(args.root, check=args.check)
    for path in stale:
        print(f"{'out of date' if args.check else 'updated'}: {path.relative_to(args.root)}")
    if args.check and stale:
        print("run `make headers` (python tools/notebook_headers.py) to update them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
