"""Random access and parallel decompression for gzip-compressed images.

Every gzip file lazyimg reads goes through one :class:`GzipReader` per process
(held by :mod:`lazyimg._io.files`, keyed by path and identity) and shared by all
tasks and threads of that process. A reader works in one of two modes:

*cold* (no index yet)
    Reads come, under a lock, from one sequential decoder that records seek
    points as it goes: rapidgzip (with all cores from 4 cores on; on fewer it
    decodes in one thread and the other cores consume the data), or
    indexed_gzip if rapidgzip is missing or refuses the stream (it rejects zero
    padding after the last member). Every uncompressed byte passes once, in
    order, through lazyimg's own CRC-32; a read far ahead decodes the gap
    through it (the decoder would decode the gap to seek anyway). When a read
    reaches the end of the image data the reader decodes the rest, compares
    CRC-32 and length with the gzip trailer, and only then keeps the seek
    points as a :class:`~lazyimg._io.gzip.index.GzipIndex`, so an index always
    comes from an intact stream. (rapidgzip's own CRC check is skipped after
    some seek patterns.)
*warm* (index complete)
    Reads inflate from the seek points of the index, in several threads and
    without a lock: :mod:`lazyimg._io.gzip.inflate`.

What an index holds, where it is saved and when a saved one is trusted:
:mod:`lazyimg._io.gzip.index`.

What is checked when an image is loaded, before any read:
:mod:`lazyimg._io.gzip.check`.

Integrity: reads before a stream's first complete pass cannot be checked
against its CRC-32, which covers the whole stream. A deflate error is reported
at once, a silent bit flip when a pass reaches the trailer (a full pass then
fails, and no index is kept). Both give :class:`~lazyimg.errors.CorruptImageError`
naming the file and the offsets; a stream that ends early never yields a short
result.

Why these libraries: output rates for a 708 MB int16 fMRI-like image at gzip
level 6, in page cache, on this project's 2-core machine (ranges over runs on
a machine shared with other jobs; ``benchmarks/bench_gzip.py`` prints them):

==============================================  ================
stdlib zlib, one stream                         140-280 MB/s
isal, one stream                                450-680 MB/s
indexed_gzip, building its index (nibabel)      80-170 MB/s
rapidgzip, 1 thread, building its index         480-560 MB/s
rapidgzip, 2 threads, building its index        190-300 MB/s
rapidgzip, 2 threads, imported index            570-1070 MB/s
lazyimg: isal from seek points, 2 threads       460-1240 MB/s
==============================================  ================

Building an index needs a decoder that reports deflate block boundaries, which
Python's zlib and isal do not; rapidgzip builds one 3-4x faster than
indexed_gzip. With the index in hand, isal inflating from seek points in each
thread is as fast as rapidgzip's parallel reader or faster, needs no lock, and
lets lazyimg count and check what it decompresses.
"""

from __future__ import annotations

import atexit
import os
import struct
import threading
import weakref
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from lazyimg._io.gzip import shared
from lazyimg._io.gzip.check import FINISH_BYTES, decompressed_length
from lazyimg._io.gzip.index import GzipIndex, keep, lookup
from lazyimg._io.gzip.inflate import (
    INPUT_BLOCK,
    _batches,
    _corrupt,
    _count,
    _inflate_lib,
    _inflate_runs,
    _thread_pool,
    _truncated,
    _workers,
)
from lazyimg._io.gzip.stream import (
    SPACING,
    _DecodeError,
    _export,
    _fill_from,
    _merge,
    _open_builder,
)
from lazyimg._io.identity import FileId
from lazyimg._io.source import LocalFile, open_source
from lazyimg.errors import CorruptImageError

__all__ = ["GzipReader"]

#: A cold read starting further than this past the decoded prefix of the stream first
#: decodes the whole stream into an index (dask runs the chunks of a pass in any
#: order; a gap decoded once would be decoded again for the chunk that wants it).
AHEAD_BYTES = 16 * 2**20


# --------------------------------------------------------------------------- the reader


class GzipReader:
    """Random access to one gzip file, shared by every thread of a process.

    Parameters
    ----------
    fid : FileId
        The file and the identity it must keep.
    data_end : int, optional
        Where the image data ends (uncompressed). A cold read reaching it
        decodes the rest of the stream and keeps (and saves) the index.
    """

    def __init__(self, fid: FileId, data_end: int | None = None) -> None:
        self.fid, self.path, self.data_end = fid, fid.path, data_end
        self._src = open_source(fid)  # a local file or a remote object (lazyimg._io.source)
        self._lock = threading.Lock()
        self._stream: Any = None
        self._fallback = False  # rapidgzip failed once: decode with indexed_gzip
        self._save_to: str | None = None  # where a built index goes (None: the policy)
        self._crc = self._checked = 0  # CRC-32 of the uncompressed bytes [0, checked)
        self.build: shared.Build | None = None  # the pass decoding the whole stream, if any
        self.build_lock = threading.Lock()
        self.index = lookup(fid)
        # a recent pass's spill file may serve reads (shared.spilled): look once at least
        self.spill_check = self.index is not None and shared.sharing(self)

    @property
    def read_overhead(self) -> int:
        """What one more separate read costs beyond its bytes (for the unproxy rule)."""
        request = 0 if isinstance(self._src, LocalFile) else self._src.read_overhead
        return request + (self.index.read_overhead if self.index is not None else SPACING)

    def read_into(self, buf: memoryview, offset: int) -> None:
        """Fill `buf` with uncompressed bytes from `offset` on."""
        self.read_runs(buf, [(offset, 0, len(buf))])

    def read_runs(self, buf: memoryview, runs: Iterable[tuple[int, int, int]]) -> None:
        """Fill ``buf[at:at + n]`` from uncompressed ``start`` for every ``(start, at, n)``."""
        todo = _merge(runs)
        if not todo:
            return
        last = todo[-1][0] + todo[-1][2]
        index = self.index
        if index is None and (todo[0][0] > self._checked + AHEAD_BYTES or shared.joins(self)):
            # far ahead, or a pass is under way: one pass decodes (and indexes) the whole
            # stream for every thread and process, picking this read up on the way
            todo = shared.read_cold(self, buf, todo)
            if not todo:
                return
            index = self.index
        if index is None:
            with self._lock:
                index = self.index
                if index is None:
                    for start, at, n in todo:
                        self._stream_read(buf[at : at + n], start)
                    return
        self._check_size(index, last)
        if self.spill_check:  # what a first pass just decoded, rather than inflate it again
            todo = shared.spilled(self, buf, todo)
            if not todo:
                return
        batches = _batches(index, todo, _workers())
        if len(batches) == 1:
            _inflate_runs(self._src, self.path, index, buf, batches[0])
            return
        pool = _thread_pool()
        futures = [pool.submit(_inflate_runs, self._src, self.path, index, buf, b) for b in batches]
        for f in futures:  # let every task end before raising: none writes after we return
            f.exception()
        for f in futures:
            f.result()

    def complete(self) -> GzipIndex:
        """The index, decoding the whole stream first (checked against its trailer) if cold."""
        build = self.build
        if self.index is None and build is not None and not build.done:
            build.finish()
        if self.index is None:
            with self._lock:
                if self.index is None:
                    self._finish(limit=False)
        if self.index is None:  # pragma: no cover - a library exported no index
            raise CorruptImageError(f"{self.path}: the gzip stream could not be indexed.")
        return self.index

    def _check_size(self, index: GzipIndex, end: int) -> None:
        if end > index.uncompressed_size:
            _truncated(self.path, index.compressed_size, index.uncompressed_size, 0, end)

    def _stream_read(self, out: memoryview, offset: int) -> None:
        """Read through the sequential decoder (the caller holds the lock).

        The bytes ``[0, checked)`` have gone through the CRC-32 in order. A read
        beyond that point first decodes the gap through the check (the decoder
        would decode it to seek anyway); a read before it seeks back.
        """
        self._retrying(lambda: self._stream_read_once(out, offset))
        if self.data_end is not None and offset + len(out) >= self.data_end:
            self._finish()

    def _retrying(self, step: Callable[[], Any]) -> Any:
        """Run `step`; if rapidgzip fails, once more with indexed_gzip, then give up.

        rapidgzip rejects a few streams other readers accept (zero padding after
        the last member); a damaged stream fails with both.
        """
        try:
            return step()
        except _DecodeError as err:
            self._drop_stream()
            if self._fallback:
                raise _corrupt(self.path, -1, err.upos, err.cause) from None
            self._fallback = True
        try:
            return step()
        except _DecodeError as err:
            self._drop_stream()
            raise _corrupt(self.path, -1, err.upos, err.cause) from None

    def _open_stream(self) -> Any:
        if self._stream is None:
            local = isinstance(self._src, LocalFile)
            self._stream = _open_builder(self.path if local else self._src.stream(), self._fallback)
            self._crc, self._checked = 0, 0
            _streaming.add(self)
        return self._stream

    def _stream_read_once(self, out: memoryview, offset: int) -> None:
        stream = self._open_stream()
        if offset > self._checked:
            self._check_through(offset)
        try:
            if stream.tell() != offset:
                stream.seek(offset)
            done = _fill_from(stream, out)
        except Exception as err:
            raise _DecodeError(offset, err) from None
        if done < len(out):
            self._drop_stream()
            _truncated(self.path, self.fid.size, offset + done, offset, len(out))
        if offset <= self._checked < offset + len(out):
            self._crc = _crc32(out[self._checked - offset :], self._crc)
            _count(decoded=offset + len(out) - self._checked)
            self._checked = offset + len(out)

    def _check_through(
        self, end: int | None, beyond: int | None = None, tap: shared.Tap | None = None
    ) -> bool:
        """Decode from ``checked`` to `end` (None: the stream's end) through the CRC-32.

        Every decoded block goes to ``tap(uncompressed offset, data)`` on the way.
        Returns False, stopping early, if more than `beyond` bytes follow the image data.
        """
        stream, block = self._open_stream(), np.empty(INPUT_BLOCK * 4, np.uint8)
        scratch = block.data
        try:
            if stream.tell() != self._checked:
                stream.seek(self._checked)
            while end is None or self._checked < end:
                want = len(scratch) if end is None else min(len(scratch), end - self._checked)
                n = stream.readinto(scratch[:want])
                if not n:
                    break
                self._crc = _crc32(scratch[:n], self._crc)
                if tap is not None:
                    tap(self._checked, block[:n])
                self._checked += n
                _count(decoded=n)
                if beyond is not None and self._checked - (self.data_end or 0) > beyond:
                    return False
        except Exception as err:
            raise _DecodeError(self._checked, err) from None
        if end is not None and self._checked < end:
            self._drop_stream()
            _truncated(self.path, self.fid.size, self._checked, self._checked, end - self._checked)
        return True

    def _finish(self, limit: bool = True, tap: shared.Tap | None = None) -> None:
        """Decode to the end of the stream, check it against its trailer, keep the index.

        Gives up (leaving the reader cold) if far more than the image data
        follows, unless `limit` is False. `tap` as for :meth:`_check_through`.
        """
        beyond = FINISH_BYTES if limit else None
        if not self._retrying(lambda: self._check_through(None, beyond, tap)):
            self.data_end = None  # the stream goes on far past the image: stay cold
            return
        crc, isize = struct.unpack("<II", self._src.pread(8, self.fid.size - 8).rjust(8, b"\0"))
        if (crc, isize) != (self._crc, self._checked % 2**32):
            # several gzip members (the trailer covers the last one), padding, or damage

            local = isinstance(self._src, LocalFile)
            got, why = decompressed_length(
                self.path if local else self._src.stream(), self._checked + 1
            )
            if why is not None or got != self._checked:
                self._drop_stream()
                raise CorruptImageError(
                    f"{self.path}: the gzip stream does not match its CRC-32/size trailer "
                    f"({why or f'{got} bytes, decoder gave {self._checked}'}). The file is "
                    "corrupt; copy or export it again."
                )
        try:
            index = GzipIndex.parse(_export(self._stream), self.fid.size)
        except Exception:  # pragma: no cover - a library exported something unexpected
            return
        self._drop_stream()
        self.index = index
        keep(self.fid, index, self._save_to)

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        _streaming.discard(self)
        if stream is not None:
            stream.close()

    def close(self) -> None:
        """Close the file and the sequential decoder, if any."""
        if self.build is not None:
            self.build.end()
        with self._lock:
            self._drop_stream()
        self._src.close()


#: Readers whose sequential decoder is open. rapidgzip's decoder threads must be
#: stopped before the interpreter exits (it aborts otherwise) and before a fork
#: (a child would inherit a decoder without its threads); reopening is cheap.
_streaming: weakref.WeakSet[GzipReader] = weakref.WeakSet()


def _close_streams(wait: bool = True) -> None:
    for reader in list(_streaming):
        if wait and reader.build is not None:
            reader.build.end()  # a pass nobody waits for ends at its next block
        if reader._lock.acquire(blocking=wait):
            try:
                reader._drop_stream()
            finally:
                reader._lock.release()


atexit.register(_close_streams)
os.register_at_fork(before=lambda: _close_streams(wait=False))


_crc32 = getattr(_inflate_lib, "crc32", zlib.crc32)
