"""Call the student's function so that the lesson survives it: settings put back, a time limit,
printing capped.

A student's function may change state that outlives the call: torch.set_default_dtype, gradients
switched off with torch.set_grad_enabled(False), torch.manual_seed, torch.set_num_threads. The
check measures each setting before the call, puts back any that changed, and names them, so a
later cell of the notebook behaves as before and the student learns what their function did.
A call that does not return within a few seconds is abandoned and, where Python allows, stopped.
What the function prints is kept up to MAX_PRINTED_LINES and shown once, before the result.
"""

import contextlib
import ctypes
import io
import threading
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class Setting:
    """A global torch setting: what it is called, how to read and restore it, what usually changes it."""

    name: str
    read: Callable[[], Any]
    restore: Callable[[Any], None]
    usual_cause: str


def _restore_seed(state):
    torch.set_rng_state(state[1])


# The random generator is read as (seed, state) but compared by seed only: drawing numbers moves
# the state, as it should; only a new seed (torch.manual_seed inside the function) is a change.
GLOBAL_SETTINGS = (
    Setting("the default dtype", torch.get_default_dtype, torch.set_default_dtype, "torch.set_default_dtype"),
    Setting("the default device", torch.get_default_device, torch.set_default_device, "torch.set_default_device"),
    Setting("gradient mode", torch.is_grad_enabled, torch.set_grad_enabled,
            "torch.set_grad_enabled(False)"),
    Setting("the number of CPU threads", torch.get_num_threads, torch.set_num_threads, "torch.set_num_threads"),
    Setting("deterministic algorithms", torch.are_deterministic_algorithms_enabled, torch.use_deterministic_algorithms,
            "torch.use_deterministic_algorithms"),
    Setting("anomaly detection", torch.is_anomaly_enabled, torch.set_anomaly_enabled, "torch.autograd.set_detect_anomaly"),
    Setting("the random seed", lambda: (torch.initial_seed(), torch.get_rng_state()), _restore_seed, "torch.manual_seed"),
)


def _same(setting, before, after):
    if setting.name == "the random seed":
        return before[0] == after[0]
    return before == after


def read_settings():
    return [setting.read() for setting in GLOBAL_SETTINGS]


def restore_settings(before):
    """Put back every setting that differs from `before`; say what each one had become."""
    changes = []
    for setting, old in zip(GLOBAL_SETTINGS, before):
        new = setting.read()
        if not _same(setting, old, new):
            setting.restore(old)
            what = "reseeded" if setting.name == "the random seed" else f"{old} -> {new}"
            changes.append(f"{setting.name} ({what}, usually {setting.usual_cause})")
    return changes


def guarded_call(fn, args, abandoned=None):
    """(fn(*args) or the exception it raised, [what it changed]); every changed setting is put back.

    Runs in the calling thread (gradient mode is per thread), so it can wrap a call made in a
    worker thread too. The exception, if any, is returned, not raised. A call the check has
    `abandoned` (an Event, set when it ran past the time limit) restores nothing when it finally
    ends: by then the settings belong to later cells, and the check has put back its own.
    """
    before = read_settings()
    value, error = None, None
    try:
        value = fn(*args)
    except BaseException as raised:  # noqa: B036 - reported to the check, which decides what to say
        error = raised
    if abandoned is not None and abandoned.is_set():
        return value, error, []
    return value, error, restore_settings(before)


def changes_message(changes):
    """The paragraph a result gets when the student's function changed global settings."""
    return (
        "Your function changed global torch settings that outlive the call: " + "; ".join(changes) + ". "
        "The check put them back, so the next cells run as before; but wherever the lesson calls your "
        "function (every training step), the change would happen again."
    )


CHANGES_HINT = (
    "Leave global settings alone inside the function: use `with torch.no_grad():` blocks rather than "
    "torch.set_grad_enabled(False), pass dtype= to the tensors you create, and seed only outside it."
)


# A check calls the student's function a few times, each well under a second for a usual answer
# (decoding 2,000 codes one at a time, correct but slow, takes seconds on a busy shared CPU); a call
# still running after this long is stuck (an endless loop, a huge tensor).
TIME_LIMIT_S = 10.0
# After asking a stuck call to stop, how long to wait to see whether it did.
STOP_GRACE_S = 1.0


class StoppedByCheck(Exception):
    """Raised inside a student's function that ran past the time limit, to stop it."""


@dataclass
class Outcome:
    """What one call of the student's function did: value or error, settings changed, timing."""

    value: Any = None
    error: BaseException = None
    changes: tuple = ()
    finished: bool = False  # returned or raised within the time limit
    stopped: bool = False  # ran past it, and then stopped when asked


def _ask_to_stop(thread):
    """Raise StoppedByCheck inside `thread` at its next Python instruction (CPython only)."""
    set_async_exc = getattr(ctypes.pythonapi, "PyThreadState_SetAsyncExc", None)
    if set_async_exc is not None:
        set_async_exc(ctypes.c_ulong(thread.ident), ctypes.py_object(StoppedByCheck))


def call_with_limit(fn, args, seconds=None, output=None, recorder=None):
    """Call fn(*args) in a daemon thread, wait at most `seconds` (TIME_LIMIT_S), return an Outcome.

    What it prints goes to `output` (a CappedOutput); `recorder`, a context manager entered in the
    worker thread, can watch the call (errors.CallRecorder). Python cannot kill a thread. A call past the limit is asked to stop (an exception raised inside
    it at its next Python instruction); a loop written in Python stops at once, a single long torch
    operation only when it returns. Outcome.stopped says which; a daemon thread never keeps the
    kernel from exiting.
    """
    seconds = TIME_LIMIT_S if seconds is None else seconds
    outcome = Outcome()

    def watched(*arguments):
        with recorder if recorder is not None else contextlib.nullcontext():
            return fn(*arguments)

    abandoned = threading.Event()
    before = read_settings()

    def run():
        value, error, changes = guarded_call(watched, args, abandoned)
        outcome.value, outcome.error, outcome.changes = value, error, tuple(changes)

    thread = threading.Thread(target=run, name="vae_lesson check", daemon=True)
    with captured(output if output is not None else CappedOutput()):
        thread.start()
        try:
            thread.join(seconds)
        except BaseException:  # the user interrupted the kernel: stop the call too, then let it through
            abandoned.set()
            _ask_to_stop(thread)
            restore_settings(before)
            raise
        outcome.finished = not thread.is_alive()
        if not outcome.finished:
            abandoned.set()
            _ask_to_stop(thread)
            thread.join(STOP_GRACE_S)
            outcome.stopped = not thread.is_alive()
            outcome.changes = tuple(restore_settings(before))  # gradient mode is the worker's own
    return outcome


def timeout_message(seconds, described, stopped):
    """What the student reads when their function did not return in time."""
    if stopped:
        after = "The check then interrupted it, so it is not running any more."
    else:
        after = (
            "The check asked it to stop, but it is still inside one long operation, and Python cannot "
            "stop a function from outside: it may go on in the background, keeping a CPU busy, until that "
            "operation ends. If the notebook stays slow, restart the kernel (Kernel > Restart)."
        )
    return (
        f"Your function had not returned after {seconds:g} second{'' if seconds == 1 else 's'} (the check called it as {described}), "
        f"so the check stopped waiting; a correct answer takes a second or two at most. {after}"
    )


TIMEOUT_HINT = (
    "Look for a loop that never ends (a `while` whose condition stays true, a loop over a growing list) "
    "or a tensor far larger than the inputs; run your function on a small example in a cell of its own."
)


# What a check lets through of the student's own prints (debugging prints are welcome; a print
# inside a loop over 8,192 rows would bury the notebook).
MAX_PRINTED_LINES = 20
MAX_PRINTED_CHARS = 4000


class CappedOutput(io.TextIOBase):
    """A stand-in for sys.stdout/sys.stderr that keeps the first lines written and counts the rest."""

    def __init__(self):
        super().__init__()
        self.kept = []
        self.kept_chars = 0
        self.lines = 0
        self._partial = ""

    def writable(self):
        return True

    def write(self, text):
        pieces = (self._partial + str(text)).split("\n")
        self._partial = pieces.pop()
        for line in pieces:
            self._keep(line)
        return len(text)

    def _keep(self, line):
        self.lines += 1
        if len(self.kept) < MAX_PRINTED_LINES and self.kept_chars + len(line) <= MAX_PRINTED_CHARS:
            self.kept.append(line)
            self.kept_chars += len(line) + 1

    def close_line(self):
        if self._partial:
            self._keep(self._partial)
            self._partial = ""

    @property
    def hidden(self):
        return self.lines - len(self.kept)

    def replay(self, stream):
        """Write the kept lines to `stream`, then one line saying how many were left out."""
        self.close_line()
        for line in self.kept:
            print(line, file=stream)
        if self.hidden:
            print(f"[... {self.hidden:,} more lines your function printed are not shown]", file=stream)


@contextlib.contextmanager
def captured(output):
    """Send everything printed while inside (from any thread) to `output`."""
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        yield


def printed_note(output):
    """The sentence a result gets when the student's function printed more than is shown."""
    if not output.hidden:
        return ""
    return (f"(Your function printed {output.lines:,} lines while the check ran; the first {len(output.kept)} "
            "are shown above the result.)")
