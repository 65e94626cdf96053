"""Files and folders written atomically: into a temporary one beside the target, then renamed onto it.

A rename within one folder is atomic, so a reader sees the old file or the new one, never half of
one, and an interrupted write leaves the old file as it was. Temporary files that a killed write
left behind are removed by the next write of the same file.
"""

import os
import shutil
import time
import uuid
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


def temporary_path(path):
    """A unique hidden name beside `path`: .NAME.PID.RANDOM.tmp (one per writer, so writers never collide)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}")


def write_atomically(path, write, *, binary=True):
    """Call write(file) on a new temporary file, flush it to disk, then rename it onto `path`.

    The file is created with open(..., "x") rather than tempfile.mkstemp, so it gets the usual
    permissions (the umask) instead of mkstemp's owner-only 0600: others can read a shared cache.
    On any failure the temporary file is removed and `path` is left as it was. Returns `path`.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, "xb" if binary else "x") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# A temporary file or folder older than this whose writer is gone is left over from a killed write.
STALE_AFTER_S = 60


def writer_is_running(pid):
    """Whether a process with this id runs on this machine (the writer of a temporary file)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def remove_stale_temporaries(path):
    """Delete the temporary files and folders that killed writes of `path` left beside it: those
    whose writer (the pid in their name) is gone and that are older than STALE_AFTER_S. Returns their paths."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    prefix = f".{path.name}."
    for candidate in path.parent.iterdir():
        name = candidate.name
        if not (name.startswith(prefix) and name.endswith(TEMPORARY_SUFFIX)):
            continue
        pid = name[len(prefix):-len(TEMPORARY_SUFFIX)].split(".")[0]
        try:
            old = time.time() - candidate.lstat().st_mtime > STALE_AFTER_S
        except FileNotFoundError:
            continue
        if pid.isdigit() and old and not writer_is_running(int(pid)):
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def previous_path(folder):
    """Where replace_folder keeps the old folder while it swaps in the new one."""
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.previous")


def recover_folder(folder):
    """Finish or undo a replace_folder that was interrupted: afterwards `folder` holds the old
    contents or the new ones, never neither."""
    folder, previous = Path(folder), previous_path(folder)
    if previous.is_dir():
        if folder.exists():
            shutil.rmtree(previous, ignore_errors=True)  # the swap was done, only the clean-up was not
        else:
            os.rename(previous, folder)  # interrupted between the two renames: put the old one back


def replace_folder(new, folder):
    """Move the finished folder `new` to `folder`, replacing what was there as one unit.

    Two renames: the old folder aside, the new one in. An interruption between them leaves the old
    one aside under previous_path(folder), where recover_folder finds it and puts it back.
    """
    folder, previous = Path(folder), previous_path(folder)
    recover_folder(folder)
    if folder.exists():
        os.rename(folder, previous)
    os.rename(new, folder)
    shutil.rmtree(previous, ignore_errors=True)
    return folder
