"""What every check shares: call the student's function safely, stop at the first mistake found.

A check is a function `body(check)` that calls the student's function through `check.call`, looks
at what came back, and either returns the success message or stops with `check.fail(...)` (or
`check.fail_first(TABLE, facts)`, which fails with the first row of a mistakes table that
recognises the facts). `run_check` turns any of these endings into a `CheckResult`; it never raises.
"""

import sys
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Callable

import torch

from . import guard
from .errors import CallRecorder, hint_for
from .errors import facts as error_facts
from .guard import (
    CHANGES_HINT,
    TIMEOUT_HINT,
    CappedOutput,
    call_with_limit,
    changes_message,
    printed_note,
    timeout_message,
)
from .result import ERROR, FAILED, NOT_DONE, PASSED, CheckResult


@dataclass(frozen=True)
class Mistake:
    """One known mistake: its stable code, how it is recognised, and what the student reads.

    recognise(facts) -> bool looks at the facts a check measured (a SimpleNamespace). message and
    hint may name facts in braces, e.g. "{batch} times too big", filled in with str.format.
    """

    code: str
    recognise: Callable[[SimpleNamespace], bool]
    message: str
    hint: str = ""


def equals_wrong_answer(code, message, hint=""):
    """A Mistake recognised when the student's answer equals the wrong answer computed under the same
    name: the check puts the names of the wrong answers it matches in facts.matching (a set)."""
    return Mistake(code, lambda facts: code in facts.matching, message, hint)


def first_match(table, facts):
    """The first Mistake of `table` whose recogniser accepts `facts`, or None."""
    return next((row for row in table if row.recognise(facts)), None)


def codes(*tables):
    """Every diagnosis code in the given mistakes tables, in order."""
    return tuple(row.code for table in tables for row in table)


class Verdict(Exception):
    """Raised inside a check to stop at the first problem found; carries the result."""

    def __init__(self, result):
        super().__init__(result.message)
        self.result = result


def describe_error(error, limit=400):
    text = str(error).strip()
    if len(text) > limit:
        text = text[:limit] + " ..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def function_name(fn):
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return f"`{name}`"


def shape(tensor):
    return str(tuple(tensor.shape))


def values(tensor, digits=3):
    """A short, deterministic rendering of a few numbers: [0.368, 0.779, 1.28]."""
    return "[" + ", ".join(f"{float(v):.{digits}g}" for v in tensor.reshape(-1)[:6]) + "]"


def close(a, b, rtol=1e-4, atol=1e-4):
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def nice(value, target, rtol=2e-3, atol=1e-5):
    """A fitted number is `target` up to float32 rounding."""
    return abs(value - target) <= rtol * abs(target) + atol


def rows_identical(draws, rtol=1e-6):
    return bool((draws - draws[:1]).abs().max() <= rtol * (1 + draws.abs().max()))


# What came back instead of a floating-point tensor. Facts: value, what, expected.
OUTPUT_TYPE_MISTAKES = (
    Mistake(
        "not_floating_point",
        lambda f: isinstance(f.value, torch.Tensor) and not f.value.is_floating_point(),
        "Your function returned a tensor of dtype {value.dtype}; {what} should be a floating-point "
        "tensor like its inputs.",
        "Integer tensors cannot hold these values; keep the float32 tensors the inputs come in.",
    ),
    Mistake(
        "returns_none",
        lambda f: f.value is None,
        "Your function returned None (is the `return` statement missing?); it should return {what}, {expected}.",
        "End your function with `return` and the value it computed.",
    ),
    Mistake(
        "returns_tuple",
        lambda f: isinstance(f.value, (tuple, list)),
        "Your function returned a {kind} of {count} values; it should return only {what}, {expected}.",
        "Return just {what}; keep any intermediate values (like std or eps) inside the function.",
    ),
    Mistake(
        "returns_number",
        lambda f: isinstance(f.value, (int, float)),
        "Your function returned a Python {kind} ({value:.4g}); it should return {what} as a tensor, "
        "{expected}. .item(), float() and math.* functions turn tensors into plain numbers, which also "
        "cuts the gradient.",
        "Stay with tensor operations (torch.exp, .sum(...)) and return the tensor itself.",
    ),
    Mistake(
        "returns_wrong_type",
        lambda f: not isinstance(f.value, torch.Tensor),
        "Your function returned an object of type {kind}; it should return {what} as a torch tensor, {expected}.",
        "Use torch operations throughout (torch.exp, torch.randn_like, .sum(...)), not numpy.",
    ),
)

INPUT_MISTAKES = (
    Mistake(
        "modifies_input",
        lambda f: f.changed is not None,
        "Your function changed its input `{changed}` in place. In-place operations (the ones ending in "
        "an underscore like .exp_(), .mul_(), .add_(), or `x += ...`, `x[...] = ...`) overwrite the "
        "tensor the caller passed in, so `{changed}` is wrong afterwards and backpropagation through it breaks.",
        "Use the out-of-place forms (torch.exp(x), x * 0.5, a + b), or call the in-place ones only on a "
        "new tensor you made inside the function (e.g. logvar.mul(0.5).exp_()).",
    ),
)

# Endings that are not a wrong answer: the stub, a failed call, an output too odd to analyse.
HARNESS_CODES = ("not_callable", "not_done", "raised", "unreadable_output", "changes_global_state", "timed_out")


class Check:
    """One run of one check: builds its results and calls the student's function safely."""

    def __init__(self, exercise, formula, fn, signature, error_hints):
        self.exercise = exercise
        self.formula = formula
        self.fn = fn
        self.signature = signature
        self.error_hints = error_hints
        self.notes = []  # what the check assumed about the student's output, added to any failure
        self.changes = []  # global settings the student's function changed (and the check put back)
        self.printed = CappedOutput()  # what the student's function printed, shown once at the end
        self.cautions = []  # (code, text): right answers that are inexact at extreme inputs

    def result(self, status, message, diagnosis, hint=""):
        return CheckResult(self.exercise, status, message, diagnosis, hint, self.formula)

    def fail(self, diagnosis, message, hint=""):
        message = "\n".join([message, *self.notes])
        raise Verdict(self.result(FAILED, message, diagnosis, hint))

    def fail_with(self, mistake, facts=None, extra=""):
        fields = vars(facts) if facts is not None else {}
        self.fail(mistake.code, mistake.message.format(**fields) + extra, mistake.hint.format(**fields))

    def fail_first(self, table, facts, extra=""):
        """Fail with the first row of `table` that recognises `facts`; return if none does."""
        mistake = first_match(table, facts)
        if mistake is not None:
            self.fail_with(mistake, facts, extra)

    def caution_first(self, table, facts):
        """Note the first row of `table` that recognises `facts` as a caution: the answer still passes.

        For a right answer that is inexact only at extreme inputs (a library's formula included);
        the result passes, its diagnosis is the caution's code and its message ends with the caution.
        """
        mistake = first_match(table, facts)
        if mistake is not None:
            fields = vars(facts)
            self.cautions.append((mistake.code, "Caution: " + mistake.message.format(**fields) + " "
                                  + mistake.hint.format(**fields)))

    def call(self, *args, described, target=None):
        """fn(*args); a NotImplementedError means "not done yet", any other exception is reported.

        The call runs under guard.call_with_limit: global torch settings it changes are put back at
        once and noted, it is abandoned after guard.TIME_LIMIT_S, and what it prints is capped. The
        hint for an exception comes from errors.hint_for (its type and the torch function that raised).
        target: call this instead of fn, with the same safety (a method of an object fn built,
        e.g. the forward pass of the student's module).
        """
        target = self.fn if target is None else target
        name = function_name(target)
        recorder = CallRecorder()
        outcome = call_with_limit(target, args, output=self.printed, recorder=recorder)
        if not outcome.finished:
            raise Verdict(self.result(ERROR, timeout_message(guard.TIME_LIMIT_S, described, outcome.stopped),
                                      "timed_out", TIMEOUT_HINT))
        self.changes += [change for change in outcome.changes if change not in self.changes]
        value, error = outcome.value, outcome.error
        if error is None:
            return value
        if isinstance(error, NotImplementedError):
            text = str(error).strip()
            raised = f'NotImplementedError("{text}")' if text else "NotImplementedError"
            raise Verdict(
                CheckResult(
                    self.exercise,
                    NOT_DONE,
                    f"Not done yet: {name} still raises {raised}, so the lesson continues with "
                    "vae_lesson's reference implementation.",
                    "not_done",
                    "Replace the `raise NotImplementedError(...)` line with your code, run that cell, "
                    "then run this check again.",
                )
            )
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: the user's, not a mistake
            raise error
        # The student's own exception: report it, never re-raise.
        raise Verdict(
            self.result(
                ERROR,
                f"Your function {name} raised {describe_error(error)}\n(the check called it as {described}).",
                "raised",
                hint_for(error, error_facts(error, target, recorder), self.error_hints, self.signature),
            )
        )

    def tensor(self, value, what, expected):
        """The returned value as a floating-point tensor, or a failure saying what came back instead."""
        facts = SimpleNamespace(value=value, what=what, expected=expected, kind=type(value).__name__,
                                count=len(value) if isinstance(value, (tuple, list)) else 0)
        self.fail_first(OUTPUT_TYPE_MISTAKES, facts)
        return value

    def unmodified(self, snapshot):
        """Fail if an input recorded by `snapshot` was changed in place."""
        changed = next((name for name, (tensor, copy, version) in snapshot.items()
                        if tensor._version != version or tensor.shape != copy.shape
                        or not torch.equal(tensor.detach(), copy)), None)
        self.fail_first(INPUT_MISTAKES, SimpleNamespace(changed=changed))


def snapshot(**tensors):
    """Copies and version counters of the inputs, to notice in-place changes afterwards."""
    return {name: (t, t.detach().clone(), t._version) for name, t in tensors.items()}


def run_check(exercise, formula, fn, body, check_name, signature, error_hints=()):
    """Run `body(check)` with the caller's random state and grad mode protected; never raises."""
    check = Check(exercise, formula, fn, signature, error_hints)
    if not callable(fn):
        if fn is None:
            got = "None (did the cell that defines your function run? Or did you pass what it returned?)"
        elif isinstance(fn, torch.Tensor):
            got = f"a tensor of shape {shape(fn)}, which is what your function returns, not the function"
        else:
            got = f"an object of type {type(fn).__name__}, which is not a function"
        return CheckResult(
            exercise,
            ERROR,
            f"{check_name} needs your function itself, but got {got}.",
            "not_callable",
            f"Pass the function's name without calling it: {check_name}(my_function), "
            f"not {check_name}(my_function(...)).",
        )
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        try:
            result = CheckResult(exercise, PASSED, body(check), "passed")  # no formula: nothing to compare
        except Verdict as verdict:
            result = verdict.result
        except Exception as error:  # an output too odd to analyse: explain instead of raising
            result = check.result(
                ERROR,
                f"The check could not make sense of what your function returned ({describe_error(error)}).",
                "unreadable_output",
                f"Make sure your function takes {signature} and returns what the exercise asks for.",
            )
    if result.passed and check.cautions:
        text = "\n".join([result.message] + [caution for _, caution in check.cautions])
        result = replace(result, message=text, diagnosis=check.cautions[0][0])
    check.printed.replay(sys.stdout)
    if check.printed.hidden:
        result = replace(result, message=result.message + "\n" + printed_note(check.printed))
    if check.changes:
        if result.passed:  # right values, but calling it in the lesson would change the kernel's settings
            return check.result(FAILED, changes_message(check.changes), "changes_global_state", CHANGES_HINT)
        return replace(result, message=result.message + "\n" + changes_message(check.changes))
    return result
