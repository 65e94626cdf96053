"""Call the student's function so that the lesson survives it: global torch settings put back.

A student's function may change state that outlives the call: torch.set_default_dtype, gradients
switched off with torch.set_grad_enabled(False), torch.manual_seed, torch.set_num_threads. The
check measures each setting before the call, puts back any that changed, and names them, so a
later cell of the notebook behaves as before and the student learns what their function did.
"""

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


def guarded_call(fn, args):
    """(fn(*args) or the exception it raised, [what it changed]); every changed setting is put back.

    Runs in the calling thread (gradient mode is per thread), so it can wrap a call made in a
    worker thread too. The exception, if any, is returned, not raised.
    """
    before = [setting.read() for setting in GLOBAL_SETTINGS]
    value, error = None, None
    try:
        value = fn(*args)
    except BaseException as raised:  # noqa: B036 - reported to the check, which decides what to say
        error = raised
    changes = []
    for setting, old in zip(GLOBAL_SETTINGS, before):
        new = setting.read()
        if not _same(setting, old, new):
            setting.restore(old)
            what = "reseeded" if setting.name == "the random seed" else f"{old} -> {new}"
            changes.append(f"{setting.name} ({what}, usually {setting.usual_cause})")
    return value, error, changes


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
