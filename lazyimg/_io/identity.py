"""Which file, exactly: identities that catch replaced files, and readability checks.

A :class:`FileId` is what a read task carries instead of an open handle: a path
and what ``stat`` says about it. :func:`check_readable` is called before any
decoder sees a path (indexed_gzip crashes on a file it may not open).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib

from lazyimg.errors import ImagePermissionError


@dataclass(frozen=True)
class FileId:
    """A file by path and identity: a task refuses to read it if either changed.

    The identity is the size, the modification time, the inode number and the
    status-change time. ``os.utime`` can restore a modification time but not a
    ctime, and a file renamed over the original has another inode, so a
    replaced file is never taken for the one :func:`lazyimg.load` saw. What no
    identity can catch: an in-place rewrite of the same size within one tick of
    the file system's timestamps (see ``docs/guarantees.md``). Sources that are
    not local files leave ``inode`` and ``ctime_ns`` at 0.
    """

    path: str
    size: int
    mtime_ns: int
    inode: int = 0
    ctime_ns: int = 0

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileId:
        # absolute, so a worker (or a notebook that changes directory) finds the same file
        path = os.path.abspath(path)
        return cls.from_stat(path, os.stat(path))

    @classmethod
    def from_stat(cls, path: str, st: os.stat_result) -> FileId:
        """The identity of `path` from a ``stat`` result already at hand."""
        return cls(path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)

    def changes(self, st: os.stat_result) -> list[str]:
        """What differs between this identity and `st` (empty if nothing does)."""
        now = FileId.from_stat(self.path, st)
        out = []
        if now.size != self.size:
            out.append(f"size {self.size} -> {now.size} bytes")
        if now.mtime_ns != self.mtime_ns:
            out.append("modification time")
        if self.inode and now.inode != self.inode:
            out.append("inode (the file was replaced by another one)")
        if self.ctime_ns and now.ctime_ns != self.ctime_ns:
            out.append("status-change time (rewritten, replaced, or its metadata changed)")
        return out


#: Name endings every nibabel image class maps to the one file itself (no companion
#: ``.hdr``/``.img``/``.mat``/``.BRIK``): asking each of the ~15 classes costs ~0.3 ms a file.
SINGLE_FILE_SUFFIXES = (".nii", ".nii.gz", ".nii.bz2", ".nii.zst", ".mgh", ".mgz")


def files_of(path: Path) -> list[str]:
    """`path` and every existing file nibabel could open with it (``.img`` of a ``.hdr``, ...)."""
    names = [os.fspath(path)]
    if names[0].lower().endswith(SINGLE_FILE_SUFFIXES):
        return names
    for klass in nib.imageclasses.all_image_classes:
        try:
            file_map = klass.filespec_to_file_map(path)
        except Exception:  # not a name this class uses
            continue
        for holder in file_map.values():
            name = holder.filename
            if isinstance(name, str) and name not in names and os.path.isfile(name):
                names.append(name)
    return names


def check_readable(name: str | os.PathLike[str]) -> None:
    """Raise :class:`~lazyimg.errors.ImagePermissionError` if `name` cannot be opened to read."""
    try:
        fd = os.open(name, os.O_RDONLY)
    except PermissionError:
        raise ImagePermissionError(unreadable(name)) from None
    os.close(fd)


def unreadable(name: str | os.PathLike[str]) -> str:
    return (
        f"{os.fspath(name)}: permission denied: this user may not read the file. "
        "Ask its owner for read access (chmod u+r / g+r), or copy it somewhere readable."
    )
