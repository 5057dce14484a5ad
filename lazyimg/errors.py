"""The lazyimg exception hierarchy.

Every error lazyimg raises on purpose derives from :class:`LazyImgError` *and*
from the built-in exception a caller would already catch for that situation,
so ``except FileNotFoundError`` or ``except ValueError`` keep working.
Messages name the file, say what was expected and what was found, and end with
what the user can do.
"""

from __future__ import annotations

__all__ = [
    "CorruptImageError",
    "DimensionError",
    "FileChangedError",
    "ImageNotFoundError",
    "ImagePermissionError",
    "LazyImgError",
    "MissingDependencyError",
    "NotAnImageError",
    "OutOfRangeError",
    "SaveError",
]


class LazyImgError(Exception):
    """Base class of every error raised by lazyimg."""


class ImageNotFoundError(LazyImgError, FileNotFoundError):
    """The path (or a file the image needs, such as a ``.REC`` or ``.BRIK``) does not exist."""


class ImagePermissionError(LazyImgError, PermissionError):
    """A file of the image (or the target of a save) may not be read or written by this user."""


class NotAnImageError(LazyImgError, ValueError):
    """No nibabel image class recognises the file."""


class CorruptImageError(LazyImgError, ValueError):
    """The header is impossible or the file is shorter than the header says."""


class FileChangedError(LazyImgError, OSError):
    """A file changed (size, modification time, inode or ctime) after :func:`lazyimg.load` opened it."""


class DimensionError(LazyImgError, ValueError):
    """A dimension name that matches no axis of the image (``chunks`` by name, dims to save)."""


class MissingDependencyError(LazyImgError, ImportError):
    """An optional package this file or feature needs is not installed; the message names the extra."""


class OutOfRangeError(LazyImgError, ValueError):
    """Values that the data type asked for on disk cannot hold (``save(..., dtype="stored")``)."""


class SaveError(LazyImgError, OSError):
    """:func:`lazyimg.save` could not write its target (no space, read-only, not a folder, ...).

    ``errno`` is the operating system's error number; the target is untouched.
    """
