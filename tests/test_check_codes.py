"""Every diagnosis code in the checks' mistakes tables is reached by a student-like wrong function.

Each exercise module of vae_lesson.checks lists its codes in CODES; tests/test_check_<name>.py has
the MISTAKES catalogue (and CAUTIONS, right answers inexact at extreme inputs) whose rows are
asserted there to produce their code; tests/test_check_harness.py's FALLBACKS add specific
mistakes whose hint is asserted too. A code no catalogue
row reaches is either a mistake no test shows the check can recognise, or dead: add the wrong
function that makes it, or delete the row.
"""

import importlib

import pytest

from vae_lesson import checks

from test_check_harness import FALLBACKS, HARNESS_CASES

CATALOGUES = {
    module.__name__.rsplit(".", 1)[1]: importlib.import_module(f"test_check_{module.__name__.rsplit('.', 1)[1]}")
    for module in checks.EXERCISES
}


def _reached(name):
    """Codes asserted by the catalogues: MISTAKES (fail with the code), CAUTIONS (pass with it), and
    test_check_harness's FALLBACKS for this exercise (fail with the code, the fix in the hint)."""
    catalogue = CATALOGUES[name]
    check = getattr(checks, f"check_{name}")
    fallbacks = [row[1:] for row in FALLBACKS if row[0] is check]
    return {row[2] for row in [*catalogue.MISTAKES, *getattr(catalogue, "CAUTIONS", [])]} | {row[1] for row in fallbacks}


@pytest.mark.parametrize("module", checks.EXERCISES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_every_code_of_an_exercise_is_reached(module):
    name = module.__name__.rsplit(".", 1)[1]
    unreached = sorted(set(module.CODES) - _reached(name))
    assert not unreached, f"checks.{name}: no wrong function in tests/test_check_{name}.py reaches {unreached}"


@pytest.mark.parametrize("module", checks.EXERCISES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_every_catalogue_code_is_in_a_table(module):
    name = module.__name__.rsplit(".", 1)[1]
    shared = {row.code for row in checks.OUTPUT_TYPE_MISTAKES + checks.INPUT_MISTAKES}
    unknown = sorted(_reached(name) - set(module.CODES) - shared)
    assert not unknown, f"tests/test_check_{name}.py names codes no table of checks.{name} has: {unknown}"


def test_every_shared_code_is_reached():
    reached = set().union(*(_reached(name) for name in CATALOGUES)) | {case[0] for case in HARNESS_CASES}
    shared = [row.code for row in checks.OUTPUT_TYPE_MISTAKES + checks.INPUT_MISTAKES] + list(checks.HARNESS_CODES)
    unreached = sorted(set(shared) - reached)
    assert not unreached, f"no test reaches the harness's codes {unreached}"
