"""Per-process cache of open files, keyed by path and identity (size, mtime, inode, ctime).

Graphs carry only :class:`~lazyimg._io.formats.FileId` recipes; the first task in
a process (a thread of the local scheduler or a dask worker) to need a file
opens it here, and later tasks reuse the handle. Before and after every read
the file's identity is checked again, so a file that changed after
:func:`lazyimg.load` gives :class:`~lazyimg.errors.FileChangedError` instead of
stale or mixed data.

Uncompressed files are read with ``os.pread`` on a shared descriptor, which
needs no lock. A gzip file is read through one :class:`~lazyimg._io.gzip.reader.GzipReader`
per process (seek-point index, parallel inflating; see :mod:`lazyimg._io.gzip.reader`).
Other compressed streams and nibabel images that are not thread-safe (HDF5
behind MINC2, netCDF behind MINC1) are used under a per-entry lock.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from lazyimg._io.cache import Entry, entry
from lazyimg._io.formats import Source, reopen
from lazyimg._io.identity import FileId, check_readable
from lazyimg._io.probe import open_stream
from lazyimg._io.source import LocalFile, is_remote, open_source
from lazyimg.errors import CorruptImageError, FileChangedError, ImageNotFoundError

#: Bytes handed to callers by the read functions of this module, per process.
#: Tests use it to check that a selection reads only what it needs.
bytes_read = 0
_count_lock = threading.Lock()


def count_read(nbytes: int) -> None:
    """Add to :data:`bytes_read` (threads of one process read concurrently)."""
    global bytes_read
    with _count_lock:
        bytes_read += nbytes


def total_bytes_read() -> int:
    """Voxel bytes lazyimg has read in this process since it started.

    Counts the uncompressed bytes lazyimg's reads hand over (for a compressed
    file, what was decompressed for the selection, not the bytes on disk). Each
    process counts its own reads: on a dask cluster ask every worker, e.g.
    ``client.run(lazyimg.bytes_read)``.

    Examples
    --------
    >>> import lazyimg
    >>> isinstance(lazyimg.bytes_read(), int)
    True
    """
    return bytes_read


class ByteCount:
    """Bytes read in this process inside a ``with count_bytes() as n:`` block (``n.bytes``)."""

    def __init__(self) -> None:
        self._start = bytes_read
        self._end: int | None = None

    @property
    def bytes(self) -> int:
        """Bytes read so far inside the block, or in all of it once the block has ended."""
        return (bytes_read if self._end is None else self._end) - self._start

    def __repr__(self) -> str:
        return f"<ByteCount {self.bytes} bytes>"


@contextlib.contextmanager
def count_bytes() -> Iterator[ByteCount]:
    """Count the voxel bytes lazyimg reads in this process inside a ``with`` block.

    Yields
    ------
    ByteCount
        Its ``bytes`` attribute holds the uncompressed bytes read in the block
        (by every thread of this process; reads on other processes, such as
        dask workers, are not seen: see :func:`lazyimg.bytes_read`).

    Examples
    --------
    >>> import numpy as np, tempfile, lazyimg
    >>> from lazyimg.testing import make_image
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = make_image(tmp.name + "/img.nii", np.zeros((8, 8, 4, 10), "int16"))
    >>> img = lazyimg.load(path)
    >>> with lazyimg.count_bytes() as n:
    ...     vol = img.slicecopy[..., 3]
    >>> n.bytes  # one 8 x 8 x 4 volume of int16
    512
    >>> tmp.cleanup()
    """
    counter = ByteCount()
    try:
        yield counter
    finally:
        counter._end = bytes_read


def check_identity(fid: FileId) -> None:
    """Raise if the file is gone or is no longer the one that was opened.

    Messages name the file and, inside a task on a dask worker, the worker: on
    a cluster the usual cause is a worker that does not see the file at the
    path the client opened, or sees another copy of it.
    """
    if is_remote(fid):
        from lazyimg._io.remote_fs import check

        check(fid)  # type: ignore[arg-type]
        return
    worker = _where()
    try:
        st = os.stat(fid.path)
    except FileNotFoundError:
        if worker is None:
            raise ImageNotFoundError(
                f"{fid.path}: the file was removed or moved after it was opened with "
                "lazyimg.load. Restore it, or load the new file again."
            ) from None
        raise ImageNotFoundError(
            f"{fid.path}: no such file on dask worker {worker}, "
            "though it existed when lazyimg.load opened it. Every worker must see the file at "
            "this same path (a shared file system mounted at the same place, or identical "
            "copies); if it was moved or removed, restore it or load it again."
        ) from None
    changed = fid.changes(st)
    if changed:
        check_readable(fid.path)  # a chmod changes the ctime too: say what matters
        where = f" as seen by dask worker {worker}" if worker else ""
        copies = (
            " If the workers read their own copies, copy the file with its modification time "
            "(cp -p, rsync -t)."
            if worker
            else ""
        )
        raise FileChangedError(
            f"{fid.path}: the file changed after it was opened with lazyimg.load{where} "
            f"(changed: {'; '.join(changed)}). Results would mix old and new data; "
            f"call lazyimg.load again to read the new file.{copies}"
        )


def _where() -> str | None:
    """The address of the dask worker running the current task, or None."""
    if "distributed" not in sys.modules:  # no worker in a process that never imported it
        return None
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def raw_file(source: Source) -> Entry:
    """Open the data file of a raw Source: a descriptor, or a decompressing reader.

    A gzip file gets a :class:`~lazyimg._io.gzip.reader.GzipReader`, which does its own
    locking (reads through a saved or built index need none); other streams
    (bzip2, zstd) are used under the entry's lock.
    """
    fid = source.files[0]

    def opener() -> tuple[Any, Callable[[], None]]:
        if not is_remote(fid):
            check_readable(fid.path)  # a decoder handed an unreadable path may crash
        if source.compression is None:
            src = open_source(fid)  # a local file or a remote object
            if isinstance(src, LocalFile) and fid.changes(os.fstat(src.fd)):
                src.close()  # replaced between the check and the open
                check_identity(fid)
            return src, src.close
        if source.compression == "gzip":
            from lazyimg._io.gzip.reader import GzipReader

            nbytes = int(np.prod(source.shape, dtype=np.int64)) * source.stored.itemsize
            reader = GzipReader(fid, data_end=source.offset + nbytes)
            return reader, reader.close
        if is_remote(fid):
            raw = open_source(fid).stream()
            stream = open_stream(raw, source.compression)
        else:
            stream = open_stream(fid.path, source.compression)
        return stream, stream.close

    return entry(("raw", fid, source.compression), opener, source)


def nibabel_image(source: Source) -> Entry:
    """A nibabel image reopened from its path (for formats lazyimg does not read itself)."""

    def opener() -> tuple[Any, Callable[[], None]]:
        for fid in source.files:
            check_readable(fid.path)
        return reopen(source), lambda: None

    return entry(("nibabel", source.files), opener, source)


def pread_into(fd: int, buf: memoryview, offset: int, path: str) -> None:
    """Fill `buf` from `offset` of an open file, or say the file is too short."""
    done = 0
    while done < len(buf):
        n = os.preadv(fd, [buf[done:]], offset + done)
        if n == 0:
            raise OSError(
                f"{path}: the file ended at byte {offset + done}, before the {len(buf)} bytes "
                f"needed from offset {offset}. It is truncated; copy or export it again."
            )
        done += n
    count_read(done)


def stream_into(stream: Any, buf: memoryview, offset: int, path: str) -> None:
    """Fill `buf` from uncompressed `offset` of a decompressing stream.

    A :class:`~lazyimg._io.gzip.reader.GzipReader` locks for itself; for any other stream
    the caller holds the entry's lock. A stream that ends early or fails to
    decode raises :class:`~lazyimg.errors.CorruptImageError` naming the file
    and the offset; `buf` is then not to be used.
    """
    if hasattr(stream, "read_runs"):
        stream.read_into(buf, offset)
        count_read(len(buf))
        return
    done = 0
    try:
        stream.seek(offset)
        while done < len(buf):
            n = stream.readinto(buf[done:])
            if not n:
                break
            done += n
    except (OSError, EOFError, ValueError) as err:
        raise CorruptImageError(
            f"{path}: the compressed stream is corrupt or truncated near uncompressed byte "
            f"{offset + done} ({type(err).__name__}: {err}). Copy or export the file again."
        ) from None
    if done < len(buf):
        raise CorruptImageError(
            f"{path}: the compressed stream ended at uncompressed byte {offset + done}, "
            f"before the {len(buf)} bytes needed from offset {offset}. It is truncated; "
            "copy or export it again."
        )
    count_read(done)
