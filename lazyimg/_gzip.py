"""Random access and parallel decompression for gzip-compressed images.

Every gzip file lazyimg reads goes through one :class:`GzipReader` per process
(held by :mod:`lazyimg._files`, keyed by path and identity) and shared by all
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
    points as a :class:`~lazyimg._gzindex.GzipIndex`, so an index always
    comes from an intact stream. (rapidgzip's own CRC check is skipped after
    some seek patterns.)
*warm* (index complete)
    A read starts at the last seek point before it: compressed bytes come from
    ``os.pread`` and are inflated with the 32 KiB window stored with the point
    (isal if installed, else zlib; both release the GIL). A point inside a byte
    is reached by prefixing empty deflate blocks of the right bit length
    (:func:`_primer`), since zlib's ``inflatePrime`` is not exposed to Python.
    No lock is taken: dask's threads inflate their chunks at the same time, and
    a long read is cut at seek points over a small thread pool. Runs sorted by
    offset share one pass unless a seek point lies between them, so a read
    deep in a file inflates at most one gap between points before its first
    byte, and no byte is inflated twice (``inflated_bytes`` counts them).

What an index holds, where it is saved and when a saved one is trusted:
:mod:`lazyimg._gzindex`.

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
import io
import itertools
import os
import struct
import threading
import weakref
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np

from ._formats import FileId
from ._gzindex import GzipIndex, keep, lookup, save
from .errors import CorruptImageError

_inflate_lib: ModuleType
try:  # same interface as zlib, ~2.5x faster
    from isal import isal_zlib as _inflate_lib
except ImportError:  # pragma: no cover - isal is optional
    _inflate_lib = zlib

_INFLATE_ERRORS: tuple[type[Exception], ...] = (
    zlib.error,
    getattr(_inflate_lib, "error", zlib.error),
)

__all__ = ["GzipReader", "build_index", "check_isize", "diagnose"]

#: Compressed bytes between the seek points an index build records (about).
SPACING = 4 * 2**20
#: Fewest cores on which an index build decodes with several threads.
BUILD_PARALLEL_FROM = 4
#: Smallest share of a warm read handed to one thread of the pool.
PIECE_BYTES = 8 * 2**20
#: Compressed bytes fetched per ``pread`` while inflating.
INPUT_BLOCK = 2**20
#: Most bytes one inflate call returns.
OUTPUT_BLOCK = 4 * 2**20
#: A cold read starting further than this past the decoded prefix of the stream first
#: decodes the whole stream into an index (dask runs the chunks of a pass in any
#: order; a gap decoded once would be decoded again for the chunk that wants it).
AHEAD_BYTES = 16 * 2**20
#: A cold read ending at the image data finishes the stream if at most this much follows.
FINISH_BYTES = 64 * 2**20

#: Bytes inflated by warm reads in this process, lead-in from seek points included.
inflated_bytes = 0

_counter_lock = threading.Lock()


def _count(inflated: int) -> None:
    global inflated_bytes
    with _counter_lock:
        inflated_bytes += inflated


# --------------------------------------------------------------------------- warm reads


class _Bits:
    """Compressed bytes from a seek point on, ready for a raw inflater.

    A seek point may lie inside a byte (its block starts at bit ``8 - bits`` of
    the byte before ``cpos``). zlib's ``inflatePrime`` is not reachable from
    Python, so the bits before it are replaced with empty deflate blocks of
    exactly that length (:func:`_primer`): the inflater reads them, emits
    nothing, keeps its window, and meets the real block on the file's own byte
    grid (stored blocks are aligned to it).
    """

    def __init__(self, fd: int, size: int, cpos: int, bits: int) -> None:
        self.fd, self.size, self.pos = fd, size, cpos  # next byte to fetch
        self.head = _primer(8 - bits, os.pread(fd, 1, cpos - 1)[0]) if bits else b""

    def next(self) -> bytes:
        """The next block of compressed bytes; b"" at the end of the file."""
        n = min(INPUT_BLOCK, self.size - self.pos)
        data = os.pread(self.fd, n, self.pos) if n > 0 else b""
        self.pos += len(data)
        if self.head:
            data, self.head = self.head + data, b""
        return data


def _empty_blocks(start: int) -> list[int]:
    """Bits of non-final deflate blocks that emit nothing and end at bit `start` (mod 8)."""

    def put(out: list[int], value: int, n: int) -> None:
        out.extend((value >> i) & 1 for i in range(n))

    fixed: list[int] = []  # fixed-Huffman block holding only end-of-block: 10 bits
    put(fixed, 0b010, 3)
    put(fixed, 0, 7)
    for nclen in (0, 18, 19):
        dynamic: list[int] = []
        if nclen:  # literals 0 and 256 and distance 0, 1-bit codes: 91 or 94 bits
            put(dynamic, 0b100, 3)
            put(dynamic, 0, 10)  # 257 literal/length codes, 1 distance code
            put(dynamic, nclen - 4, 4)
            for sym in (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15)[:nclen]:
                put(dynamic, 1 if sym in (1, 18) else 0, 3)  # code-length code: 1 -> 0, 18 -> 1
            for value, n in ((0, 1), (1, 1), (127, 7), (1, 1), (106, 7), (0, 1), (0, 1), (1, 1)):
                put(dynamic, value, n)  # lengths 1, 0 x 255, 1 | 1, then end-of-block
        for count in range(4):
            bits = dynamic + fixed * count
            if len(bits) % 8 == start:
                return bits
    raise AssertionError(start)  # pragma: no cover - every residue is covered above


_EMPTY = {r: _empty_blocks(r) for r in range(1, 8)}


def _primer(start: int, byte: int) -> bytes:
    """Empty blocks ending at bit `start`, then the rest of `byte` (the file's own bits)."""
    bits = _EMPTY[start]
    whole = len(bits) // 8
    packed = np.packbits(np.array(bits[: 8 * whole], np.uint8), bitorder="little").tobytes()
    last = sum(b << i for i, b in enumerate(bits[8 * whole :]))
    return packed + bytes([last | (byte & (0xFF << start) & 0xFF)])


def _member_start(fd: int, at: int) -> int | None:
    """Where the deflate data of a gzip member whose header is at `at` begins; None if none."""
    head = os.pread(fd, 10, at)
    if len(head) < 10 or head[:3] != b"\x1f\x8b\x08":
        return None
    flags, pos = head[3], at + 10
    if flags & 4:  # FEXTRA
        pos += 2 + struct.unpack("<H", os.pread(fd, 2, pos).ljust(2, b"\0"))[0]
    for flag in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        while flags & flag:
            block = os.pread(fd, 4096, pos)
            if not block:
                return None
            zero = block.find(b"\x00")
            pos += len(block) if zero < 0 else zero + 1
            if zero >= 0:
                break
    return pos + 2 if flags & 2 else pos  # FHCRC


class _Pass:
    """One inflate pass from a seek point, moving forward through the uncompressed data."""

    def __init__(self, fd: int, path: str, index: GzipIndex, point: int) -> None:
        self.fd, self.path, self.size = fd, path, index.compressed_size
        self.src = _Bits(fd, self.size, int(index.cpos[point]), int(index.bits[point]))
        self.inflater = _inflate_lib.decompressobj(-15, zdict=index.window(point))
        self.pos = int(index.upos[point])  # uncompressed offset of the next byte
        self.data = b""
        self.fed = self.src.pos  # compressed offset just past what the inflater got
        self.inflated = 0

    def advance_into(self, out: memoryview, offset: int) -> None:
        """Inflate up to ``offset + len(out)``, copying from `offset` on into `out`."""
        end = offset + len(out)
        dest = np.frombuffer(out, np.uint8)  # numpy copies without the GIL (page faults too)
        while self.pos < end:
            if not self.data:
                self.data, self.fed = self.src.next(), self.src.pos
                if not self.data:
                    _truncated(self.path, self.fed, self.pos, offset, len(out))
            try:
                chunk = self.inflater.decompress(self.data, min(OUTPUT_BLOCK, end - self.pos))
            except _INFLATE_ERRORS as err:
                raise _corrupt(self.path, self.fed, self.pos, err) from None
            self.data = self.inflater.unconsumed_tail
            lo, hi = max(offset, self.pos), self.pos + len(chunk)
            if hi > lo:
                dest[lo - offset : hi - offset] = np.frombuffer(chunk, np.uint8)[lo - self.pos :]
            self.pos = hi
            self.inflated += len(chunk)
            if self.inflater.eof and self.pos < end:
                self._next_member()

    def _next_member(self) -> None:
        """A gzip member ended: go on with the next one (after its 8-byte trailer)."""
        trailer = self.fed - len(self.inflater.unused_data)
        start = _member_start(self.fd, trailer + 8)
        self.src = _Bits(self.fd, self.size, self.size if start is None else start, 0)
        self.inflater = _inflate_lib.decompressobj(-15)
        self.data, self.fed = b"", self.src.pos


def _inflate_runs(
    fd: int, path: str, index: GzipIndex, buf: memoryview, runs: list[tuple[int, int, int]]
) -> None:
    """Fill ``buf[at:at + n]`` from uncompressed ``start`` for runs sorted by ``start``.

    A run continues the current pass unless a seek point lies between the two,
    in which case it restarts there: no byte is inflated twice, and none that
    a later seek point lets us skip.
    """
    done = 0
    p: _Pass | None = None
    try:
        for start, at, n in runs:
            point = index.point_before(start)
            if p is None or int(index.upos[point]) > p.pos:
                done += p.inflated if p is not None else 0
                p = _Pass(fd, path, index, point)
            p.advance_into(buf[at : at + n], start)
    finally:
        _count(inflated=done + (p.inflated if p is not None else 0))


def _batches(
    index: GzipIndex, runs: list[tuple[int, int, int]], workers: int
) -> list[list[tuple[int, int, int]]]:
    """Cut sorted runs into batches for the pool: long runs at seek points, then by work."""
    cut: list[tuple[int, int, int]] = []
    for start, at, n in runs:
        if n < 2 * PIECE_BYTES:
            cut.append((start, at, n))
            continue
        inside = index.upos[(index.upos > start) & (index.upos < start + n)].tolist()
        edges = [start]
        for u in inside:
            if u - edges[-1] >= PIECE_BYTES and start + n - u >= PIECE_BYTES:
                edges.append(u)
        edges.append(start + n)
        cut.extend((a, at + a - start, b - a) for a, b in itertools.pairwise(edges))
    work = [
        n + min(index.max_gap, start - int(index.upos[index.point_before(start)]))
        for start, _, n in cut
    ]
    target = max(PIECE_BYTES, sum(work) // (2 * workers))
    out: list[list[tuple[int, int, int]]] = [[]]
    load = 0
    for run, w in zip(cut, work, strict=True):
        if load >= target:
            out.append([])
            load = 0
        out[-1].append(run)
        load += w
    return out


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_workers(), thread_name_prefix="lazyimg-gzip")
        return _pool


def _after_fork() -> None:
    global _pool, _pool_lock, _counter_lock
    _pool, _pool_lock, _counter_lock = None, threading.Lock(), threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


def _truncated(path: str, cpos: int, upos: int, offset: int, n: int) -> None:
    raise CorruptImageError(
        f"{path}: the gzip stream ends at compressed byte {cpos} (uncompressed byte {upos}), "
        f"before the {n} bytes needed from uncompressed offset {offset}. The file is "
        "truncated; copy or export it again."
    )


def _corrupt(path: str, cpos: int, upos: int, err: BaseException) -> CorruptImageError:
    where = f"compressed byte {cpos}, " if cpos >= 0 else ""
    return CorruptImageError(
        f"{path}: the gzip stream is corrupt or truncated at or after {where}uncompressed "
        f"byte {upos} ({type(err).__name__}: {err}). Copy or export the file again."
    )


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
        self._fd = os.open(fid.path, os.O_RDONLY)
        self._lock = threading.Lock()
        self._stream: Any = None
        self._fallback = False  # rapidgzip failed once: decode with indexed_gzip
        self._save_to: str | None = None  # where a built index goes (None: the policy)
        self._crc = self._checked = 0  # CRC-32 of the uncompressed bytes [0, checked)
        self.index = lookup(fid)

    @property
    def read_overhead(self) -> int:
        """What one more separate read costs beyond its bytes (for the unproxy rule)."""
        return self.index.read_overhead if self.index is not None else SPACING

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
        if index is None:
            with self._lock:
                if self.index is None and todo[0][0] > self._checked + AHEAD_BYTES:
                    # far ahead: index the whole stream, picking this read up on the way
                    self._finish(taps=[(start, buf[at : at + n]) for start, at, n in todo])
                    if self.index is not None:
                        self._check_size(self.index, last)
                        return
                index = self.index
                if index is None:
                    for start, at, n in todo:
                        self._stream_read(buf[at : at + n], start)
                    return
        self._check_size(index, last)
        batches = _batches(index, todo, _workers())
        if len(batches) == 1:
            _inflate_runs(self._fd, self.path, index, buf, batches[0])
            return
        pool = _thread_pool()
        futures = [pool.submit(_inflate_runs, self._fd, self.path, index, buf, b) for b in batches]
        for f in futures:  # let every task end before raising: none writes after we return
            f.exception()
        for f in futures:
            f.result()

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
            self._stream = _open_builder(self.path, self._fallback)
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
            self._checked = offset + len(out)

    def _check_through(self, end: int | None, beyond: int | None = None, taps: _Runs = ()) -> bool:
        """Decode from ``checked`` to `end` (None: the stream's end) through the CRC-32.

        Bytes that fall in one of the `taps` (uncompressed start, destination)
        are copied there on the way. Returns False, stopping early, if more than
        `beyond` bytes follow the image data.
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
                for start, dest in taps:
                    lo, hi = max(start, self._checked), min(start + len(dest), self._checked + n)
                    if hi > lo:
                        out = np.frombuffer(dest, np.uint8)
                        out[lo - start : hi - start] = block[
                            lo - self._checked : hi - self._checked
                        ]
                self._checked += n
                if beyond is not None and self._checked - (self.data_end or 0) > beyond:
                    return False
        except Exception as err:
            raise _DecodeError(self._checked, err) from None
        if end is not None and self._checked < end:
            self._drop_stream()
            _truncated(self.path, self.fid.size, self._checked, self._checked, end - self._checked)
        return True

    def _finish(self, limit: bool = True, taps: _Runs = ()) -> None:
        """Decode to the end of the stream, check it against its trailer, keep the index.

        Gives up (leaving the reader cold) if far more than the image data
        follows, unless `limit` is False. `taps` as for :meth:`_check_through`.
        """
        beyond = FINISH_BYTES if limit else None
        if not self._retrying(lambda: self._check_through(None, beyond, taps)):
            self.data_end = None  # the stream goes on far past the image: stay cold
            return
        with open(self.path, "rb") as f:
            f.seek(self.fid.size - 8)
            crc, isize = struct.unpack("<II", f.read(8))
        if (crc, isize) != (self._crc, self._checked % 2**32):
            # several gzip members (the trailer covers the last one), padding, or damage
            got, why = _decompressed_length(self.path, self._checked + 1)
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
        with self._lock:
            self._drop_stream()
        os.close(self._fd)


#: Readers whose sequential decoder is open. rapidgzip's decoder threads must be
#: stopped before the interpreter exits (it aborts otherwise) and before a fork
#: (a child would inherit a decoder without its threads); reopening is cheap.
_streaming: weakref.WeakSet[GzipReader] = weakref.WeakSet()


def _close_streams(wait: bool = True) -> None:
    for reader in list(_streaming):
        if reader._lock.acquire(blocking=wait):
            try:
                reader._drop_stream()
            finally:
                reader._lock.release()


atexit.register(_close_streams)
os.register_at_fork(before=lambda: _close_streams(wait=False))


def _merge(runs: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Runs in file order, those adjoining both in the file and in the buffer joined."""
    out: list[tuple[int, int, int]] = []
    for start, at, n in sorted(runs):
        if out and sum(out[-1][::2]) == start and out[-1][1] + out[-1][2] == at:
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + n)
        elif n:
            out.append((start, at, n))
    return out


_crc32 = getattr(_inflate_lib, "crc32", zlib.crc32)


def _fill_from(stream: Any, out: memoryview) -> int:
    """``readinto`` until `out` is full or the stream ends; bytes read."""
    done = 0
    while done < len(out):
        n = stream.readinto(out[done:])
        if not n:
            break
        done += n
    return done


_Runs = Sequence[tuple[int, memoryview]]


class _DecodeError(Exception):
    """The sequential decoder failed at or after uncompressed byte `upos`."""

    def __init__(self, upos: int, cause: BaseException) -> None:
        super().__init__(upos, cause)
        self.upos, self.cause = upos, cause


def _open_builder(path: str, fallback: bool = False) -> Any:
    """A sequential decoder that records seek points: rapidgzip, else indexed_gzip."""
    try:
        if fallback:
            raise ImportError
        import rapidgzip
    except ImportError:
        from indexed_gzip import IndexedGzipFile

        return IndexedGzipFile(path, spacing=2 * SPACING, readbuf_size=SPACING)
    return rapidgzip.RapidgzipFile(path, parallelization=_build_threads(), chunk_size=SPACING)


def _build_threads() -> int:
    """rapidgzip's threads: its parallel decoder pays off from 4 cores on.

    On 2 cores it decoded a level-6 fMRI file at ~260 MB/s with 2 threads and
    ~480 MB/s with 1, which also leaves the second core to the tasks that
    consume the data.
    """
    cores = _workers()
    return cores if cores >= BUILD_PARALLEL_FROM else 1


def _export(stream: Any) -> bytes:
    out = io.BytesIO()
    if hasattr(stream, "block_offsets"):  # rapidgzip
        stream.export_index(out)
    else:  # indexed_gzip: complete the index (reads may have skipped building it)
        stream.build_full_index()
        stream.export_index(fileobj=out)
    return out.getvalue()


def build_index(path: str | os.PathLike[str], *, where: str | None = None) -> GzipIndex:
    """Build (or load) the seek-point index of a gzip file, and save it.

    Useful before a cluster job: with ``where="beside"`` every worker that
    sees the data also sees its index, and none decompresses the file to find
    its way.

    Parameters
    ----------
    path : str or PathLike
        A gzip-compressed file.
    where : {"cache", "beside", "off"}, optional
        Where to save the index (default: ``$LAZYIMG_GZIP_INDEX``, else
        ``"cache"``). ``"beside"`` writes ``<path>.gzidx`` next to the data.
        Files under 1 MiB, and indexes without a seek point past the start,
        are not saved.

    Returns
    -------
    GzipIndex

    Raises
    ------
    CorruptImageError
        The stream is truncated, damaged, or does not match its trailer.

    Examples
    --------
    >>> import os, tempfile, numpy as np, nibabel as nib
    >>> path = os.path.join(tempfile.mkdtemp(), "img.nii.gz")
    >>> nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), "int16"), np.eye(4)), path)
    >>> index = build_index(path, where="off")
    >>> index.uncompressed_size, int(index.upos[0])
    (736, 0)
    """
    fid = FileId.of(path)
    reader = GzipReader(fid, data_end=0)
    reader._save_to = where
    try:
        if reader.index is None:
            with reader._lock:
                reader._finish(limit=False)
        elif where is not None:
            save(fid, reader.index, where)
        if reader.index is None:  # pragma: no cover - a library exported no index
            raise CorruptImageError(f"{fid.path}: the gzip stream could not be indexed.")
        return reader.index
    finally:
        reader.close()


# --------------------------------------------------------------------------- load-time check


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
    got, why = _decompressed_length(path, needed + FINISH_BYTES)
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


def _decompressed_length(path: str, limit: int) -> tuple[int, str | None]:
    """Uncompressed bytes readable from `path` (up to `limit`), and the error that stopped it."""
    import gzip

    got = 0
    try:
        with gzip.open(path, "rb") as f:
            while got < limit and (block := f.read(min(2**20, limit - got))):
                got += len(block)
    except (OSError, EOFError, zlib.error) as err:
        return got, f"{type(err).__name__}: {err}"
    return got, None


def diagnose(path: str | os.PathLike[str], limit: int = FINISH_BYTES) -> str | None:
    """What is wrong with a gzip stream that a reader gave up on, or None if nothing is.

    Decompresses at most `limit` bytes (nibabel reads a few MB of a
    ``.nii.gz`` to find its header, so a stream it cannot read usually fails
    early).
    """
    got, why = _decompressed_length(os.fspath(path), limit)
    if why is None:
        return None
    return (
        f"{os.fspath(path)}: the gzip stream is truncated or corrupt: decompressing it failed "
        f"at uncompressed byte {got} ({why}). Copy or export the file again."
    )
