"""Temporary files of a save: recognisable names, sweeping, and OS errors that name the target.

A save writes into a hidden temporary file next to its target and renames it at
the end (:mod:`lazyimg._write.atomic`). Its name says which process made it,
``.<target>.<host>~<pid>~<token>.lazyimg-tmp``: a save killed with SIGKILL cannot
clean up, so every later save into the same folder removes temporary files of
processes on this host that are gone, once they have not been touched for
:data:`STALE_SECONDS`. A file of a live process is never removed.

:func:`naming` turns an ``OSError`` of the file system (no space, a read-only
file system, no permission) into a :class:`~lazyimg.errors.SaveError` (or
:class:`~lazyimg.errors.ImagePermissionError`) that names the target, not the
temporary file, and says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
import uuid
from collections.abc import Iterator

from lazyimg.errors import ImagePermissionError, LazyImgError, SaveError

SUFFIX = ".lazyimg-tmp"
#: A dead process's temporary file is left alone until untouched for this long.
STALE_SECONDS = 60.0

_HOST = socket.gethostname().replace("~", "-").replace("/", "-")


def temporary_name(target: str) -> str:
    """A fresh temporary path next to `target`, naming this host and process."""
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}.{_HOST}~{os.getpid()}~{uuid.uuid4().hex[:12]}{SUFFIX}")


def _owner(name: str) -> tuple[str, int] | None:
    """(host, pid) of a temporary file's name, or None for other names."""
    if SUFFIX not in name:
        return None
    parts = name.split(SUFFIX)[0].rsplit("~", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0].rsplit(".", 1)[-1], int(parts[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep(folder: str, now: float | None = None) -> list[str]:
    """Remove abandoned temporary files of dead processes of this host from `folder`.

    Returns the names removed. Errors (a file removed meanwhile, no permission)
    are ignored: sweeping is a courtesy, never a reason for a save to fail.
    """
    now = time.time() if now is None else now
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder or ".") as entries:
        for e in entries:
            owner = _owner(e.name)
            if owner is None or owner[0] != _HOST or _alive(owner[1]):
                continue
            with contextlib.suppress(OSError):
                if now - e.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                    os.unlink(e.path)
                    removed.append(e.name)
    return removed


_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@contextlib.contextmanager
def naming(target: str, doing: str, nbytes: int | None = None) -> Iterator[None]:
    """Re-raise file-system errors while `doing` as errors that name `target`."""
    try:
        yield
    except LazyImgError:
        raise
    except OSError as err:
        raise write_error(err, target, doing, nbytes) from err


def write_error(err: OSError, target: str, doing: str, nbytes: int | None = None) -> OSError:
    """The :class:`~lazyimg.errors.LazyImgError` for an ``OSError`` of a save to `target`."""
    code = err.errno
    folder = os.path.dirname(target) or "."
    untouched = "; the target was not changed" if os.path.exists(target) else ""
    if code in _SPACE:
        need = f" (the image needs {nbytes} bytes" if nbytes else ""
        need += ", and a .nii.gz needs them twice while it is compressed)" if need else ""
        what = {
            errno.EDQUOT: "the disk quota is exhausted",
            errno.EFBIG: "the file would exceed the allowed file size",
        }.get(code or 0, "no space is left on the device")
        msg = (
            f"{target}: could not save: {what} while lazyimg was {doing}{untouched}. "
            f"Free space in {folder}{need} or save somewhere else."
        )
    elif code == errno.EROFS:
        msg = (
            f"{target}: could not save: {folder} is on a read-only file system{untouched}. "
            "Save somewhere writable."
        )
    elif code in (errno.EACCES, errno.EPERM):
        out = ImagePermissionError(
            f"{target}: could not save: permission denied while {doing} in {folder}{untouched}. "
            "Save into a folder you may write to."
        )
        out.errno = code
        return out
    else:
        msg = (
            f"{target}: could not save: {err.strerror or err} while {doing}{untouched}. "
            "Check the folder and the file system, then save again."
        )
    out2 = SaveError(msg)
    out2.errno = code
    return out2
