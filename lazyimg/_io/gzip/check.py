"""Load-time checks of gzip files, made before any data is read.

:func:`check_isize` fails a stream whose ISIZE trailer rules out the bytes the
image header needs (decompressing only where the trailer cannot tell);
:func:`diagnose` says what is wrong with a stream that nibabel could not read.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from lazyimg.errors import CorruptImageError

__all__ = ["FINISH_BYTES", "check_isize", "decompressed_length", "diagnose"]

#: A cold read ending at the image data finishes the stream if at most this much follows.
FINISH_BYTES = 64 * 2**20


def check_isize(path: str, size: int, needed: int) -> None:
    """Raise CorruptImageError if the gzip trailer rules out `needed` uncompressed bytes.

    The ISIZE trailer is the uncompressed size modulo 2**32 and deflate expands
    at most 1032-fold, so the true size is ``isize + k * 2**32`` for some
    ``k >= 0`` up to ``1032 * size``. When no such size reaches `needed`, the
    file is truncated or damaged, or it is a concatenation of gzip members
    (whose last ISIZE covers the last member only). That can only happen for
    files of a few MB, which are then decompressed up to `needed` to be sure.
    """
    if size < 18:
        raise CorruptImageError(
            f"{path}: the gzip file has only {size} bytes, fewer than an empty gzip stream. "
            "It is truncated; copy or export it again."
        )
    with open(path, "rb") as f:
        head = f.read(18)
        f.seek(size - 4)
        (isize,) = struct.unpack("<I", f.read(4))
    k = max(0, -(-(needed - isize) // 2**32))
    if isize + k * 2**32 <= 1032 * size + 2**16 or _is_bgzf(head):
        return
    got, why = decompressed_length(path, needed + FINISH_BYTES)
    if got >= needed and why is None:
        return
    raise CorruptImageError(
        f"{path}: the image header needs {needed} uncompressed bytes, but the gzip trailer "
        f"says the stream holds {isize} (mod 2**32), and decompressing it "
        + (f"failed at uncompressed byte {got} ({why})" if why else f"gave {got} bytes")
        + ". The file is truncated or corrupt; copy or export it again."
    )


def _is_bgzf(head: bytes) -> bool:
    """Blocked gzip (many members, each with a small ISIZE of its own)."""
    return len(head) >= 14 and bool(head[3] & 4) and head[12:14] == b"BC"


def decompressed_length(path: Any, limit: int) -> tuple[int, str | None]:
    """Uncompressed bytes readable from `path` (up to `limit`), and the error that stopped it.

    Counts exactly (the offset in an error is the byte where decoding failed,
    with the compressed byte), checks each member's CRC-32 and ISIZE, and, as
    nibabel does, ends the data at the first member followed by bytes that are
    not another gzip member (trailing garbage or zero padding).
    """
    got, cpos, member = 0, 0, 0
    d = zlib.decompressobj(31)
    try:
        with _opened(path) as f:
            while got < limit:
                data = d.unconsumed_tail or f.read(2**20)
                if not data:
                    if not d.eof:
                        return got, f"EOFError: the stream ends at compressed byte {cpos}"
                    break
                if not d.unconsumed_tail:
                    cpos += len(data)
                out = d.decompress(data, min(2**20, limit - got))
                got += len(out)
                if d.eof:  # a member ended: is another one next?
                    cpos -= len(d.unused_data)
                    f.seek(cpos)
                    if f.read(2) != b"\x1f\x8b":
                        break  # trailing bytes that are not a member: the data ends here
                    f.seek(cpos)
                    member, d = cpos, zlib.decompressobj(31)
    except (OSError, zlib.error) as err:
        text = str(err)
        for code, what in (("data check", "CRC-32"), ("length check", "ISIZE")):
            if code in text:  # the member decoded, but its trailer disagrees with the data
                return got, (
                    f"the {what} in the trailer of the gzip member starting at compressed "
                    f"byte {member} does not match its data, decoded to past uncompressed "
                    f"byte {got}"
                )
        return got, f"{type(err).__name__}: {err}, at or before compressed byte {cpos}"
    return got, None


@contextlib.contextmanager
def _opened(path: Any) -> Iterator[Any]:
    """A path opened for reading, or a file object (rewound, left open)."""
    if isinstance(path, (str, os.PathLike)):
        with open(path, "rb", buffering=0) as f:
            yield f
        return
    path.seek(0)
    yield path


def diagnose(path: str | os.PathLike[str], limit: int = FINISH_BYTES) -> str | None:
    """What is wrong with a gzip stream that a reader gave up on, or None if nothing is.

    Decompresses at most `limit` bytes (nibabel reads a few MB of a
    ``.nii.gz`` to find its header, so a stream it cannot read usually fails
    early).
    """
    got, why = decompressed_length(os.fspath(path), limit)
    if why is None:
        return None
    return (
        f"{os.fspath(path)}: the gzip stream is truncated or corrupt: decompressing it failed "
        f"at uncompressed byte {got} ({why}). Copy or export the file again."
    )
