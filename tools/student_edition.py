"""The student edition: copies of the notebooks with every solution taken out, for instructors to hand out.

A solution is a `<details>` block in a markdown cell that holds a `<!-- solution-for: check_name -->`
marker and a ```python block (the convention tests/test_notebook_solutions.py relies on). In each copy:
- every such block is removed, and a cell left with nothing else in it is dropped; a marker outside a
  `<details>` block is removed with the ```python block after it;
- the outputs of the exercise cells are cleared: the cell that defines the function a solution defines
  (the student's stub) and the cells that pass that function to its check;
- the launch-links cell is dropped (its badges open the full notebooks, solutions included); the install
  cell stays, so a copy uploaded to Colab or Kaggle still installs the course and runs.
The stubs are left as they are, so each copy runs top to bottom: the checks say "not done yet" and the
lesson goes on with the course's reference. A new exercise that follows the same convention needs no
change here.

    python tools/student_edition.py --out dist/student                  every notebook in notebooks/
    python tools/student_edition.py --out DIR notebooks/03_x.ipynb ...  only these
"""

import argparse
import re
import sys
from pathlib import Path

from notebook_headers import LINKS_ID, cell_source, read_notebook, write_notebook

REPO_ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!--\s*solution-for:\s*(\w+)\s*-->")
DETAILS = re.compile(r"<details\b.*?</details>[ \t]*\n?", re.DOTALL)
MARKER_AND_CODE = re.compile(MARKER.pattern + r"\s*```python[ \t]*\n.*?```[ \t]*\n?", re.DOTALL)
DEFINED_FUNCTION = re.compile(r"^def (\w+)\s*\(", re.MULTILINE)


def strip_solutions(text):
    """(text without its solutions, [(check name, solution text)] removed)."""
    removed = []

    def drop(match):
        block = match.group(0)
        if not MARKER.search(block):
            return block  # a <details> block that is not a solution (a hint, say) stays
        removed.extend((name, block) for name in MARKER.findall(block))
        return ""

    text = DETAILS.sub(drop, text)
    text = MARKER_AND_CODE.sub(lambda m: removed.append((m.group(1), m.group(0))) or "", text)
    return text, removed


def exercise_cell(source, functions):
    """Whether a code cell is part of an exercise: it defines a solved function or passes one to a check."""
    for function, check in functions:
        if re.search(rf"^def {function}\s*\(", source, re.MULTILINE):
            return True
        if re.search(rf"\b{check}\s*\(\s*{function}\b", source):
            return True
    return False


def student_notebook(notebook, name="notebook"):
    """A copy of `notebook` (a dict as in the .ipynb file) without solutions; the input is not changed."""
    cells, functions = [], []
    for cell in notebook["cells"]:
        if cell.get("id") == LINKS_ID:
            continue
        if cell["cell_type"] == "markdown" and MARKER.search(cell_source(cell)):
            text, removed = strip_solutions(cell_source(cell))
            if MARKER.search(text):
                raise SystemExit(f"{name}: a solution marker is not inside <details> and not followed by a "
                                 "```python block; the student edition cannot take it out")
            for check, block in removed:
                functions.extend((function, check) for function in DEFINED_FUNCTION.findall(block))
            if not text.strip():
                continue
            cell = {**cell, "source": text.splitlines(keepends=True)}
        cells.append(cell)
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and exercise_cell(cell_source(cell), functions):
            cells[i] = {**cell, "outputs": [], "execution_count": None}
    return {**notebook, "cells": cells}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the copies (created if needed)")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
    if not paths:
        raise SystemExit("no notebooks given and none found in notebooks/")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        write_notebook(args.out / path.name, student_notebook(read_notebook(path), path.name))
        print(f"wrote {args.out / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
