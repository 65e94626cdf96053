"""Files written atomically: into a temporary file beside the target, then renamed onto it.

A rename within one folder is atomic, so a reader sees the old file or the new one, never half of
one, and an interrupted write leaves the old file as it was.
"""

import os
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
