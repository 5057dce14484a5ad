"""Write one NIfTI file atomically: regions in parallel, then an atomic rename.

The file-level half of :func:`lazyimg.save` (:mod:`lazyimg.write` builds the
header and the dask graph around it). One save is a :class:`SaveJob`, run as
tasks in three steps:

1. **Header and allocation.** :meth:`SaveJob.begin` creates a temporary file next
   to the target (named by :mod:`lazyimg._write.tmpfiles`), writes the header
   (and, for MGH, the footer after the data) and reserves the file's final size
   on disk (``posix_fallocate``), so a full disk fails here, as an error naming
   the target, and never later inside a memory map (SIGBUS). Where the file
   system cannot reserve space the file is only extended and regions are
   written without memory maps.
2. **Regions.** Every chunk goes to a :class:`RegionWriter`, a picklable object
   that holds only the path, the data offset, shape and dtype; it opens the
   file, ``pwrite``\\ s its region and closes it, so regions are written in
   parallel, by threads or by workers, with no shared handle.
3. **Finish.** :meth:`SaveJob.finish` flushes the file to disk (``fsync``) and
   renames it over the target: the target appears only when complete, and an
   existing file of that name is never touched before that.
   :meth:`SaveJob.abort` removes the temporary files instead, and late tasks of
   an abandoned save refuse to write.

A gzip stream can only be written in order, while regions are written in any
order and on any worker; so a ``.nii.gz`` is first written uncompressed as
above (in parallel) and then compressed in one sequential pass through
:mod:`gzip` at `compresslevel`, streaming 4 MiB at a time. It needs the
uncompressed size in free disk space for a while. The result is one ordinary
gzip member (``gzip -t`` passes; nibabel reads it).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lazyimg._write.tmpfiles import naming

__all__ = ["RegionWriter"]

_COPY_BYTES = 4 * 2**20
#: Regions whose contiguous runs are shorter than this are written through memory maps.
_SHORT_RUN = 64 * 2**10
#: Largest piece of a run copied and written at once.
_PIECE = 8 * 2**20
#: Largest span of the file one memory map covers.
_WINDOW = 16 * 2**20

# temporary files whose save was abandoned in this process: late tasks must not revive them
_aborted: set[str] = set()
_aborted_lock = threading.Lock()


# --------------------------------------------------------------------------- the writer


@dataclass(frozen=True)
class RegionWriter:
    """Writes regions of a Fortran-ordered array into a file: path-only, picklable.

    ``writer[region] = block`` is what ``dask.array.store`` calls; each call
    opens the file, writes with ``os.pwrite`` and closes it again, so writers
    running in different threads or processes never share a handle. The file
    must exist (created with its header by :meth:`SaveJob.begin`): a region never
    re-creates a file that was removed because the save was abandoned.
    """

    path: str
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    target: str = ""
    """The file the save produces, named in errors (`path` is its temporary file)."""
    reserved: bool = False
    """Whether the file's blocks are allocated: only then are memory maps safe to write."""

    def __setitem__(self, key: tuple[slice, ...], value: Any) -> None:
        block = np.asarray(value, dtype=self.dtype)
        with naming(self.target or self.path, "writing its data", self._nbytes()):
            self._write(key, block)

    def _nbytes(self) -> int:
        return self.offset + math.prod(self.shape) * self.dtype.itemsize

    def _write(self, key: tuple[slice, ...], block: np.ndarray) -> None:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (len(self.shape) - len(key))
        starts = [k.indices(n)[0] for k, n in zip(key, self.shape, strict=True)]
        if block.size == 0:
            return
        shape, ndim = self.shape, len(self.shape)
        # axes below `p` are whole, so axes 0..p of the block are one run in the file
        p = 0
        while p < ndim - 1 and block.shape[p] == shape[p]:
            p += 1
        run_bytes = self.dtype.itemsize * math.prod(block.shape[: p + 1])
        short = run_bytes < _SHORT_RUN and block.size * self.dtype.itemsize > run_bytes
        if short and self.reserved:
            self._write_mapped(starts, block, p)
            return
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for file_offset, piece in self._runs(starts, block, p):
                _pwrite_all(fd, piece, file_offset)
        finally:
            os.close(fd)

    def _strides(self) -> list[int]:
        return [self.dtype.itemsize * math.prod(self.shape[:a]) for a in range(len(self.shape))]

    def _runs(self, starts: list[int], block: np.ndarray, p: int) -> Any:
        """``(file offset, bytes)`` of every contiguous run of `block` at `starts`.

        A run is cut into pieces of at most ``_PIECE`` bytes along axis `p`: a
        block that is not Fortran-contiguous (broadcasting often gives such
        layouts) is then copied a piece at a time, never whole.
        """
        strides = self._strides()
        base = self.offset + sum(s * st for s, st in zip(starts, strides, strict=True))
        per = max(1, _PIECE // strides[p]) if block.shape[p] else 1
        for rest in np.ndindex(*block.shape[p + 1 :]):
            at = base + sum(r * strides[p + 1 + a] for a, r in enumerate(rest))
            for g0 in range(0, block.shape[p], per):
                piece = block[(slice(None),) * p + (slice(g0, g0 + per), *rest)]
                yield at + g0 * strides[p], np.ravel(piece, order="F").view(np.uint8).data

    def _write_mapped(self, starts: list[int], block: np.ndarray, p: int) -> None:
        """Write a region made of many short runs through memory maps of the file.

        One ``pwrite`` per run would cost a system call per few bytes (chunks
        split along the fastest axes); instead windows of at most ``_WINDOW``
        bytes of the file are mapped one at a time, the region's part is copied
        in, and the window is unmapped again, so resident memory stays small.
        Regions of different chunks touch different bytes, so parallel writers
        never overwrite each other's values.
        """
        shape, ndim = self.shape, len(self.shape)
        strides = self._strides()
        q = p + 1  # map axes 0..q-1 whole, a group of positions of axis q at a time
        while q < ndim - 1 and strides[q + 1] <= _WINDOW:
            q += 1
        group = max(1, _WINDOW // strides[q])
        inner = tuple(slice(s, s + n) for s, n in zip(starts[:q], block.shape[:q], strict=True))
        for rest in np.ndindex(*block.shape[q + 1 :]):
            base = self.offset + sum(
                (starts[q + 1 + a] + r) * strides[q + 1 + a] for a, r in enumerate(rest)
            )
            for g0 in range(0, block.shape[q], group):
                g1 = min(block.shape[q], g0 + group)
                window = np.memmap(
                    self.path,
                    dtype=self.dtype,
                    mode="r+",
                    offset=base + (starts[q] + g0) * strides[q],
                    shape=(*shape[:q], g1 - g0),
                    order="F",
                )
                window[(*inner, slice(None))] = block[(slice(None),) * q + (slice(g0, g1), *rest)]
                del window  # unmaps: the pages stay in the page cache, not in this process


def _pwrite_all(fd: int, buf: memoryview, offset: int) -> None:
    done = 0
    while done < len(buf):
        done += os.pwrite(fd, buf[done:], offset + done)


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class SaveJob:
    """Everything the tasks of one save need: paths, header bytes, layout."""

    target: str
    tmp: str
    header: bytes
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    compresslevel: int | None
    footer: bytes = b""
    """Bytes after the data (MGH's scan parameters)."""

    @property
    def tmp_gz(self) -> str:
        return self.tmp + ".gz"

    @property
    def nbytes(self) -> int:
        return self.offset + math.prod(self.shape) * self.dtype.itemsize

    def begin(self) -> RegionWriter:
        """Create the temporary file with its header, its final size reserved on disk."""
        _check_live(self.tmp)
        with naming(self.target, "creating its temporary file"):
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with naming(self.target, "reserving its space on disk", self.nbytes):
                _pwrite_all(fd, memoryview(self.header), 0)
                reserved = _reserve(fd, self.nbytes + len(self.footer))
                if self.footer:
                    _pwrite_all(fd, memoryview(self.footer), self.nbytes)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            raise
        os.close(fd)
        return RegionWriter(self.tmp, self.offset, self.shape, self.dtype, self.target, reserved)

    def finish(self, stored: Any) -> Path:
        """Flush, compress if asked, and rename into place."""
        _check_live(self.tmp)
        with naming(self.target, "finishing the file", self.nbytes):
            if self.compresslevel is None:
                _fsync(self.tmp)
                os.replace(self.tmp, self.target)
            else:
                self._compress()
                os.unlink(self.tmp)
                os.replace(self.tmp_gz, self.target)
        _fsync_dir(os.path.dirname(self.target))
        return Path(self.target)

    def _compress(self) -> None:
        fd = os.open(self.tmp_gz, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, "wb") as raw, open(self.tmp, "rb") as src:
            # no file name and a zero mtime in the gzip header: same data, same bytes
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, compresslevel=self.compresslevel or 6, mtime=0
            ) as gz:
                buf = bytearray(_COPY_BYTES)
                view = memoryview(buf)
                while n := src.readinto(buf):
                    _check_live(self.tmp)
                    gz.write(view[:n])
            raw.flush()
            os.fsync(raw.fileno())

    def abort(self) -> None:
        """Remove the temporary files; late tasks of this save will refuse to run."""
        with _aborted_lock:
            _aborted.add(self.tmp)
        for name in (self.tmp, self.tmp_gz):
            with contextlib.suppress(OSError):  # never created, or a read-only file system
                os.unlink(name)


def _reserve(fd: int, nbytes: int) -> bool:
    """Give the file `nbytes` with its blocks allocated; False where that is not supported.

    A sparse file (``ftruncate``) has no blocks yet: a store into a memory map
    of it on a full disk kills the process with SIGBUS. ``posix_fallocate``
    allocates them now, so running out of space is an ``OSError`` here.
    """
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, 0, nbytes)
            return True
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    os.ftruncate(fd, nbytes)
    return False


def _check_live(tmp: str) -> None:
    with _aborted_lock:
        if tmp in _aborted:
            raise RuntimeError(f"{tmp}: this save was abandoned; not writing.")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
