"""Per-process cache of open files, keyed by path and identity (size, mtime).

Graphs carry only :class:`~lazyimg._formats.FileId` recipes; the first task in
a process (a thread of the local scheduler or a dask worker) to need a file
opens it here, and later tasks reuse the handle. Before and after every read
the file's identity is checked again, so a file that changed after
:func:`lazyimg.load` gives :class:`~lazyimg.errors.FileChangedError` instead of
stale or mixed data.

Uncompressed files are read with ``os.pread`` on a shared descriptor, which
needs no lock. Compressed streams and nibabel images that are not thread-safe
(HDF5 behind MINC2, netCDF behind MINC1) are used under a per-entry lock.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ._formats import FileId, Source
from .errors import FileChangedError, ImageNotFoundError

#: How many files one process keeps open.
MAX_OPEN = 64

#: Bytes handed to callers by the read functions of this module, per process.
#: Tests use it to check that a selection reads only what it needs.
bytes_read = 0


class _Entry:
    __slots__ = ("close", "handle", "lock")

    def __init__(self, handle: Any, close: Callable[[], None]) -> None:
        self.handle = handle
        self.close = close
        self.lock = threading.Lock()


_cache: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
_cache_lock = threading.Lock()


def _clear_after_fork() -> None:
    global _cache, _cache_lock
    _cache = OrderedDict()
    _cache_lock = threading.Lock()


os.register_at_fork(after_in_child=_clear_after_fork)


def check_identity(fid: FileId) -> None:
    """Raise if the file is gone or is no longer the one that was opened."""
    try:
        st = os.stat(fid.path)
    except FileNotFoundError:
        raise ImageNotFoundError(
            f"{fid.path}: the file was removed after it was opened with lazyimg.load"
            f"{_where()}. Restore it, or load the new file again."
        ) from None
    if st.st_size != fid.size or st.st_mtime_ns != fid.mtime_ns:
        raise FileChangedError(
            f"{fid.path}: the file changed after it was opened with lazyimg.load "
            f"(size {fid.size} -> {st.st_size} bytes, mtime changed: "
            f"{st.st_mtime_ns != fid.mtime_ns}){_where()}. Results would mix old and new data; "
            "call lazyimg.load again to read the new file."
        )


def _where() -> str:
    try:
        from distributed import get_worker

        return f" (on dask worker {get_worker().address})"
    except (ImportError, ValueError):
        return ""


def entry(key: tuple[Any, ...], opener: Callable[[], tuple[Any, Callable[[], None]]]) -> _Entry:
    """The cached entry for `key`, opening it with `opener` on first use."""
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    handle, close = opener()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:  # another thread won the race
            close()
            return hit
        new = _Entry(handle, close)
        _cache[key] = new
        while len(_cache) > MAX_OPEN:
            _, old = _cache.popitem(last=False)
            old.close()
        return new


def raw_file(source: Source) -> _Entry:
    """Open the data file of a raw Source: a descriptor, or a decompressing stream."""
    fid = source.files[0]

    def opener() -> tuple[Any, Callable[[], None]]:
        if source.compression is None:
            fd = os.open(fid.path, os.O_RDONLY)
            return fd, lambda: os.close(fd)
        stream = _open_compressed(fid.path, source.compression)
        return stream, stream.close

    return entry(("raw", fid, source.compression), opener)


def _open_compressed(path: str, compression: str) -> Any:
    if compression == "gzip":
        try:
            from indexed_gzip import IndexedGzipFile

            return IndexedGzipFile(path, spacing=1024 * 1024, readbuf_size=4 * 1024 * 1024)
        except ImportError:  # pragma: no cover - indexed_gzip is a dependency
            import gzip

            return gzip.open(path, "rb")
    if compression == "bz2":
        import bz2

        return bz2.open(path, "rb")
    return _zstd_open(path)


def _zstd_open(path: str) -> Any:
    try:
        from compression import zstd  # type: ignore[import-not-found]

        return zstd.open(path, "rb")
    except ImportError:
        from backports import zstd as bzstd  # type: ignore[import-not-found]

        return bzstd.open(path, "rb")


def nibabel_image(source: Source) -> _Entry:
    """A nibabel image reopened from its path (for formats lazyimg does not read itself)."""

    def opener() -> tuple[Any, Callable[[], None]]:
        import nibabel as nib

        img = nib.load(source.path)
        return img, lambda: None

    return entry(("nibabel", source.files), opener)


def pread_into(fd: int, buf: memoryview, offset: int, path: str) -> None:
    """Fill `buf` from `offset` of an open file, or say the file is too short."""
    global bytes_read
    done = 0
    while done < len(buf):
        n = os.preadv(fd, [buf[done:]], offset + done)
        if n == 0:
            raise OSError(
                f"{path}: the file ended at byte {offset + done}, before the {len(buf)} bytes "
                f"needed from offset {offset}. It is truncated; copy or export it again."
            )
        done += n
    bytes_read += done


def stream_into(stream: Any, buf: memoryview, offset: int, path: str) -> None:
    """Fill `buf` from a decompressing stream (caller holds the entry's lock)."""
    global bytes_read
    stream.seek(offset)
    done = 0
    while done < len(buf):
        n = stream.readinto(buf[done:])
        if not n:
            raise OSError(
                f"{path}: the compressed stream ended at uncompressed byte {offset + done}, "
                f"before the {len(buf)} bytes needed from offset {offset}. It is truncated or "
                "corrupt; copy or export it again."
            )
        done += n
    bytes_read += done
