"""Warm reads of gzip files: inflating from the seek points of a complete index.

A read starts at the last seek point before it: compressed bytes come from
the file's byte source (``pread`` of a local file, range requests of a remote
object; :mod:`lazyimg._io.source`) and are inflated with the 32 KiB window stored with the point
(isal if installed, else zlib; both release the GIL). A point inside a byte
is reached by prefixing empty deflate blocks of the right bit length
(:func:`_primer`), since zlib's ``inflatePrime`` is not exposed to Python.
No lock is taken: dask's threads inflate their chunks at the same time, and
a long read is cut at seek points over a small thread pool. Runs sorted by
offset share one pass unless a seek point lies between them, so a read
deep in a file inflates at most one gap between points before its first
byte, and no byte is inflated twice (``inflated_bytes`` counts them).

:class:`~lazyimg._io.gzip.reader.GzipReader` decides when a read is warm and hands its
runs here (:func:`_batches`, :func:`_inflate_runs`, :func:`_thread_pool`).
"""

from __future__ import annotations

import itertools
import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np

from lazyimg._io.gzip.index import GzipIndex
from lazyimg._io.gzip.spans import Prefetched, passes, segments, span
from lazyimg.errors import CorruptImageError

_inflate_lib: ModuleType
try:  # same interface as zlib, ~2.5x faster
    from isal import isal_zlib as _inflate_lib
except ImportError:  # pragma: no cover - isal is optional
    _inflate_lib = zlib

_INFLATE_ERRORS: tuple[type[Exception], ...] = (
    zlib.error,
    getattr(_inflate_lib, "error", zlib.error),
)

#: Smallest share of a warm read handed to one thread of the pool.
PIECE_BYTES = 8 * 2**20
#: Compressed bytes fetched per ``pread`` while inflating.
INPUT_BLOCK = 2**20
#: Most bytes one inflate call returns.
OUTPUT_BLOCK = 4 * 2**20

#: Bytes inflated by warm reads in this process, lead-in from seek points included.
inflated_bytes = 0
#: Bytes the sequential decoder of cold reads decoded in this process (each pass's bytes once).
decoded_bytes = 0

_counter_lock = threading.Lock()


def _count(inflated: int = 0, decoded: int = 0) -> None:
    global inflated_bytes, decoded_bytes
    with _counter_lock:
        inflated_bytes += inflated
        decoded_bytes += decoded


def decompressed_bytes() -> int:
    """Bytes this process has decompressed from gzip streams, cold and warm reads alike."""
    return inflated_bytes + decoded_bytes


class _Bits:
    """Compressed bytes from a seek point on, ready for a raw inflater.

    A seek point may lie inside a byte (its block starts at bit ``8 - bits`` of
    the byte before ``cpos``). zlib's ``inflatePrime`` is not reachable from
    Python, so the bits before it are replaced with empty deflate blocks of
    exactly that length (:func:`_primer`): the inflater reads them, emits
    nothing, keeps its window, and meets the real block on the file's own byte
    grid (stored blocks are aligned to it).
    """

    def __init__(self, src: Any, size: int, cpos: int, bits: int, first: int = 0) -> None:
        self.src, self.size, self.pos = src, size, cpos  # next byte to fetch
        self.block = int(getattr(src, "input_block", INPUT_BLOCK))
        self.first = first or self.block  # the first fetch (a remote read: about its span)
        self.head = b""
        if bits:  # the byte before the point comes with the first block: one request
            data = src.pread(1 + min(self.first, size - cpos), cpos - 1)
            self.head = _primer(8 - bits, data[0])
            self.pending, self.pos = data[1:], cpos + len(data) - 1
        else:
            self.pending = b""

    def next(self) -> bytes:
        """The next block of compressed bytes; b"" at the end of the file."""
        if self.pending:
            data, self.pending = self.pending, b""
        else:
            n = min(self.first, self.size - self.pos)
            self.first = self.block
            data = self.src.pread(n, self.pos) if n > 0 else b""
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


def _member_start(src: Any, at: int) -> int | None:
    """Where the deflate data of a gzip member whose header is at `at` begins; None if none."""
    head = src.pread(10, at)
    if len(head) < 10 or head[:3] != b"\x1f\x8b\x08":
        return None
    flags, pos = head[3], at + 10
    if flags & 4:  # FEXTRA
        pos += 2 + struct.unpack("<H", src.pread(2, pos).ljust(2, b"\0"))[0]
    for flag in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        while flags & flag:
            block = src.pread(4096, pos)
            if not block:
                return None
            zero = block.find(b"\x00")
            pos += len(block) if zero < 0 else zero + 1
            if zero >= 0:
                break
    return pos + 2 if flags & 2 else pos  # FHCRC


class _Pass:
    """One inflate pass from a seek point, moving forward through the uncompressed data."""

    def __init__(
        self, fd: Any, path: str, index: GzipIndex, point: int, end: int | None = None
    ) -> None:
        self.fd, self.path, self.size = fd, path, index.compressed_size
        cpos, bits = int(index.cpos[point]), int(index.bits[point])
        first = 0
        if end is not None and hasattr(fd, "input_block"):  # remote: exactly the span
            first = span(index, point, end)[1] - cpos
        self.src = _Bits(fd, self.size, cpos, bits, first)
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
    fd: Any, path: str, index: GzipIndex, buf: memoryview, runs: list[tuple[int, int, int]]
) -> None:
    """Fill ``buf[at:at + n]`` from uncompressed ``start`` for runs sorted by ``start``.

    A run continues the current pass unless a seek point lies between the two,
    in which case it restarts there: no byte is inflated twice, and none that
    a later seek point lets us skip.
    """
    done = 0
    p: _Pass | None = None
    plan = passes(index, runs)
    if hasattr(fd, "fetch"):  # a remote object: the passes' exact spans, fetched together
        pieces = [seg for pt, g in plan for seg in segments(index, pt, g[-1][0] + g[-1][2])]
        fd = Prefetched(fd, sorted(set(pieces)))
    try:
        for point, group in plan:
            done += p.inflated if p is not None else 0
            p = _Pass(fd, path, index, point, end=group[-1][0] + group[-1][2])
            for start, at, n in group:
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
    load, last_point = 0, -1
    for run, w in zip(cut, work, strict=True):
        point = index.point_before(run[0])
        if load >= target and point != last_point:  # never two batches in one gap: no byte
            out.append([])  # is inflated (or fetched) twice
            load = 0
        last_point = point
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
    if cpos < 0:  # a sequential decoder that does not say where: decode once more to find out
        from lazyimg._io.gzip.check import decompressed_length

        got, why = decompressed_length(path, 2**62)
        if why is not None:
            return CorruptImageError(
                f"{path}: the gzip stream is corrupt at uncompressed byte {got}: {why}. "
                "Copy or export the file again."
            )
    where = f"compressed byte {cpos}, " if cpos >= 0 else ""
    return CorruptImageError(
        f"{path}: the gzip stream is corrupt or truncated at or after {where}uncompressed "
        f"byte {upos} ({type(err).__name__}: {err}). Copy or export the file again."
    )
