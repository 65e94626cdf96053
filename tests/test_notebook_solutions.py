"""Every exercise solution shown in the notebooks passes its own check, so solutions can never rot.

A solution sits in a markdown cell after a marker naming its check,

    <!-- solution-for: check_reparameterize -->
    ```python
    def my_reparameterize(mu, logvar):
        ...
    ```

and the notebook calls that check on the student's stub in a code cell
(`vl.checks.check_reparameterize(my_reparameterize)`). This file finds both kinds of cell in every
notebooks/*.ipynb, runs each solution through vae_lesson.checks.<name>, and makes sure no check
cell is left without a solution (and no solution without a check cell).
"""

import json
import math
import re
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vae_lesson
import vae_lesson.checks

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
SOLUTION_RE = re.compile(r"<!--\s*solution-for:\s*(\w+)\s*-->\s*```python[ \t]*\n(.*?)```", re.DOTALL)
MARKER_RE = re.compile(r"<!--\s*solution-for:\s*(\w+)\s*-->")
# A check cell: vl.checks.check_x(my_function) (or vae_lesson.checks.check_x(...)).
CHECK_CALL_RE = re.compile(r"\b(?:vl|vae_lesson)\.checks\.(check_\w+)\s*\(\s*(\w+)")


def _cells(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        source = cell["source"]
        yield cell["cell_type"], "".join(source) if isinstance(source, list) else source


def _solutions(path):
    """[(check name, solution code)] from the notebook's markdown cells, in order."""
    found = []
    for kind, source in _cells(path):
        if kind != "markdown":
            continue
        blocks = SOLUTION_RE.findall(source)
        markers = MARKER_RE.findall(source)
        if len(blocks) != len(markers):
            raise AssertionError(
                f"{path.name}: a `<!-- solution-for: ... -->` marker is not followed by a ```python block "
                f"(markers {markers}, code blocks found for {[name for name, _ in blocks]})."
            )
        found.extend(blocks)
    return found


def _check_calls(path):
    """{check name: {names of the functions passed to it}} from the notebook's code cells."""
    calls = {}
    for kind, source in _cells(path):
        if kind == "code":
            for name, argument in CHECK_CALL_RE.findall(source):
                calls.setdefault(name, set()).add(argument)
    return calls


NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SOLUTIONS = [
    pytest.param(path, name, solution, id=f"{path.stem}::{name}")
    for path in NOTEBOOKS
    for name, solution in _solutions(path)
]


def _defined_function(solution, label):
    """Exec the solution in a fresh namespace holding what the notebooks import; return its one function or class."""
    namespace = {"__name__": "notebook_solution", "torch": torch, "math": math, "vl": vae_lesson, "nn": nn, "F": F}
    before = set(namespace)
    exec(compile(solution, f"<solution {label}>", "exec"), namespace)
    functions = [value for key, value in namespace.items()
                 if key not in before and isinstance(value, (types.FunctionType, type))]
    assert len(functions) == 1, (
        f"the solution for {label} must define exactly one function or class (the stub's), "
        f"found {[f.__name__ for f in functions]}"
    )
    return functions[0]


@pytest.mark.parametrize("path, check_name, solution", SOLUTIONS)
def test_solution_passes_its_check(path, check_name, solution):
    check = getattr(vae_lesson.checks, check_name, None)
    assert callable(check), f"{path.name} has a solution for {check_name}, but vae_lesson.checks has no such check"
    function = _defined_function(solution, f"{path.name}::{check_name}")
    stubs = _check_calls(path).get(check_name, set())
    assert function.__name__ in stubs, (
        f"{path.name}: the solution defines {function.__name__}, but the notebook's {check_name} cell checks "
        f"{sorted(stubs) or 'nothing'}; the solution must define the stub's function name"
    )
    result = check(function)
    assert result.passed, f"{path.name}: the solution for {check_name} fails its check:\n{result.message}"


def test_course_has_solutions():
    assert len(SOLUTIONS) >= 2, f"expected at least 2 exercise solutions in {NOTEBOOK_DIR}, found {len(SOLUTIONS)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_check_cell_has_a_solution(path):
    solved = {name for name, _ in _solutions(path)}
    unsolved = sorted(set(_check_calls(path)) - solved)
    assert not unsolved, (
        f"{path.name} calls {unsolved} but has no `<!-- solution-for: NAME -->` solution for "
        f"{'it' if len(unsolved) == 1 else 'them'}"
    )
