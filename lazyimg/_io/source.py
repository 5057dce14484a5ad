"""Byte sources: one small interface between the read path and where bytes live.

The graph carries an *identity*, never an open handle: a
:class:`~lazyimg._io.formats.FileId` (a local path with its size and mtime) or a
:class:`~lazyimg._io.remote.RemoteId` (a URL with its size, version tag and
storage options). Each process opens an identity into a :class:`ByteSource`
with :func:`open_source` (cached per process by :mod:`lazyimg._io.files`) and
tells them apart with :func:`is_remote`:

=====================  ======================================================
``name``               the path, or the URL without credentials, for messages
``size``               bytes in the file or object
``read_runs(buf, r)``  fill ``buf[at:at + n]`` from ``start`` for each
                       ``(start, at, n)`` in `r` (local: ``pread``; remote:
                       concurrent range requests)
``read_into(buf, o)``  one run
``pread(n, o)``        up to `n` bytes from `o` (headers, trailers, blocks)
``stream()``           a binary file object for one sequential pass
``read_overhead``      what one more separate read costs, in bytes (the
                       unproxy rule of :mod:`lazyimg._plan.reads`)
``close()``
=====================  ======================================================

:class:`~lazyimg._io.gzip.reader.GzipReader` reads its compressed bytes through
the same interface, so the planner, the unproxy rule and the gzip seek index
work alike over a local file and a remote object.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any, BinaryIO, Protocol

from lazyimg._io.identity import FileId
from lazyimg._io.remote import RemoteId
from lazyimg._plan.reads import READ_OVERHEAD_BYTES

__all__ = ["ByteSource", "LocalFile", "is_remote", "open_source"]

#: A local read at least this long asks the kernel for the bytes after it, too
#: (see :meth:`LocalFile._read_ahead`).
READ_AHEAD_MIN = 16 * 2**20


class ByteSource(Protocol):
    """What the read path needs from a file or an object (see the module docstring)."""

    name: str
    size: int
    read_overhead: int

    def read_runs(self, buf: memoryview, runs: Iterable[tuple[int, int, int]]) -> None: ...
    def read_into(self, buf: memoryview, offset: int) -> None: ...
    def pread(self, n: int, offset: int) -> bytes: ...
    def stream(self) -> BinaryIO: ...
    def close(self) -> None: ...


class LocalFile:
    """A local file read with ``os.pread`` on one descriptor (no lock needed)."""

    read_overhead = READ_OVERHEAD_BYTES

    def __init__(self, fid: FileId) -> None:
        self.fid, self.name, self.size = fid, fid.path, fid.size
        self.fd = os.open(fid.path, os.O_RDONLY)

    def fileno(self) -> int:
        return self.fd

    def read_into(self, buf: memoryview, offset: int) -> None:
        if len(buf) >= READ_AHEAD_MIN:
            self._read_ahead(offset + len(buf), len(buf))
        done = 0
        while done < len(buf):
            n = os.preadv(self.fd, [buf[done:]], offset + done)
            if n == 0:
                raise OSError(
                    f"{self.name}: the file ended at byte {offset + done}, before the "
                    f"{len(buf)} bytes needed from offset {offset}. It is truncated; copy or "
                    "export it again."
                )
            done += n

    def read_runs(self, buf: memoryview, runs: Iterable[tuple[int, int, int]]) -> None:
        for start, at, n in runs:
            self.read_into(buf[at : at + n], start)

    def _read_ahead(self, start: int, nbytes: int) -> None:
        """Have the kernel start reading ``[start, start + nbytes)`` in the background.

        A read this large is one chunk of a pass through the file, and the next
        chunk is most likely the bytes that follow. Asking for them now keeps
        the disk busy while this chunk is reduced (with both threads of a
        2-core machine reading and then computing in step, the disk otherwise
        idles in every compute phase). Pages already cached cost a lookup
        (~0.2 ms per 128 MiB); a pass that stops early has read one chunk too many.
        """
        nbytes = min(nbytes, self.size - start)
        if nbytes > 0:
            with contextlib.suppress(OSError):  # only a hint
                os.posix_fadvise(self.fd, start, nbytes, os.POSIX_FADV_WILLNEED)

    def pread(self, n: int, offset: int) -> bytes:
        return os.pread(self.fd, n, offset)

    def stream(self) -> BinaryIO:
        return open(self.name, "rb")

    def close(self) -> None:
        os.close(self.fd)


def open_source(ident: Any) -> Any:
    """Open a local file or a remote object for reading (a :class:`ByteSource`)."""
    if isinstance(ident, RemoteId):
        from lazyimg._io.remote_file import RemoteFile

        return RemoteFile(ident)
    return LocalFile(ident)


def is_remote(ident: Any) -> bool:
    return isinstance(ident, RemoteId)
