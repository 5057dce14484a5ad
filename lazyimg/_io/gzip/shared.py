"""One decoding pass per gzip file for every thread and process that reads it cold.

Without an index, a gzip stream can only be decoded from its start. When
several dask tasks read chunks of a cold file at once, in one process or in
several worker processes, each would decode from the start up to its chunk.
Instead, cold reads of a file join one *pass* (:class:`Build`): a thread that
decodes the stream in order (:meth:`GzipReader._finish
<lazyimg._io.gzip.reader.GzipReader._finish>`, which checks it against its
trailer and keeps and saves the index at the end) and copies every decoded
block into the buffers of the reads waiting for it.

The pass decodes while anybody waits for it, and pauses when nobody does,
so a read of the next chunk in order finds its bytes still ahead. A read
asked for after the pass went by is served from the pass's spill file (see
below), from the last :data:`LOOKBACK` bytes it keeps where it has none, or
else from the index once the pass ends, which it then goes on to do. An
interpreter exit, or closing the reader, ends a paused pass.

Across the processes of one machine that share the index cache, one process
leads the pass and writes what it decodes into a spill file that the others
read (:mod:`lazyimg._io.gzip.handoff`), whatever order dask runs the chunks
in; a crashed leader is replaced, a stalled one given up on. Sharing needs
saved indexes (not with ``LAZYIMG_GZIP_INDEX=off``, nor for files under 1 MiB).

Which cold reads join: every cold read of a local file that can be shared;
for a remote object (streamed over the network, where decoding on past the
read costs a download), only reads far ahead or while a pass is under way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from lazyimg._io.gzip import handoff
from lazyimg._io.gzip import index as _gzindex
from lazyimg._io.identity import FileId

if TYPE_CHECKING:
    from lazyimg._io.gzip.reader import GzipReader

__all__ = ["Build", "Tap", "joins", "read_cold", "sharing", "spilled"]

#: Whether processes share one pass per file (tests and benchmarks may turn it off).
SHARED = True

#: Decoded bytes a pass keeps behind it, for reads asked for just after it went by.
LOOKBACK = 64 * 2**20

Tap = Callable[[int, np.ndarray], None]
Runs = list[tuple[int, int, int]]


def sharing(reader: GzipReader) -> bool:
    """Whether processes share passes over `reader`'s file."""
    return SHARED and handoff.sharing_possible(reader.fid)


def joins(reader: GzipReader) -> bool:
    """Whether a cold read near the decoded prefix joins a pass rather than decode inline."""
    build = reader.build
    if build is not None and not build.done:
        return True
    if not sharing(reader):
        return False
    return isinstance(reader.fid, FileId) or handoff.led_elsewhere(reader.fid)


class _Stopped(BaseException):
    """Ends a pass (interpreter exit, reader closed); not an error of the stream."""


class _Run:
    """Uncompressed bytes ``[start, stop)`` wanted from the pass, handed to ``put`` in order."""

    __slots__ = ("next", "put", "start", "stop")

    def __init__(self, start: int, stop: int, put: Callable[[int, np.ndarray], None]) -> None:
        self.start, self.stop, self.next, self.put = start, stop, start, put

    @property
    def missing(self) -> bool:
        return self.next < self.stop

    def feed(self, at: int, data: np.ndarray) -> None:
        """Take the part of `data` (uncompressed offset `at`) that continues the run."""
        lo, hi = max(self.next, at), min(self.stop, at + len(data))
        if lo == self.next and hi > lo:  # else nothing here, or the pass went by before
            self.put(lo - self.start, data[lo - at : hi - at])
            self.next = hi


def _into(out: memoryview) -> Callable[[int, np.ndarray], None]:
    dest = np.frombuffer(out, np.uint8)

    def put(off: int, block: np.ndarray) -> None:
        dest[off : off + len(block)] = block

    return put


class Build:
    """A pass decoding `reader`'s whole stream in a thread of its own (see the module)."""

    def __init__(self, reader: GzipReader, lock: handoff.Lock | None) -> None:
        self.reader = reader
        size = reader.data_end or 4 * reader.fid.size
        self.lock, self.asked = lock, False  # asked: another process waits for the pass
        spilled = lock is not None and reader._checked == 0
        self.spill = handoff.Spill(lock, size) if spilled and lock is not None else None
        self.cond = threading.Condition()
        self.taps: list[_Run] = []  # reads of this process waiting for the pass
        self.waiting = 0  # threads of this process waiting (for a run, or for the end)
        self.to_end = False  # someone needs the index: decode to the end without pausing
        self.done = self.stop = False
        self.error: BaseException | None = None
        # the last LOOKBACK bytes decoded, [kept_from, kept_to), for runs asked for just
        # behind the pass (the next piece of a chunk read in pieces, say)
        self.ring = np.empty(LOOKBACK, np.uint8)
        self.kept_from = self.kept_to = 0
        if lock is not None:
            self.asked = handoff.asked(lock)
        threading.Thread(target=self._run, name="lazyimg-gzip-pass", daemon=True).start()

    def _run(self) -> None:
        try:
            with self.reader._lock:
                if self.reader.index is None:
                    self.reader._finish(tap=self._tap)
        except _Stopped:
            pass
        except BaseException as err:
            self.error = err
        finally:
            spill = self.spill
            if spill is not None and (self.error is not None or self.stop):
                spill.close()
            elif spill is not None:  # the rest of a first pass reads it
                spill.stop()
                timer = threading.Timer(handoff.SPILL_KEEP, spill.close)
                timer.daemon = True
                timer.start()
            if self.lock is not None:
                self.lock.release()
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def _tap(self, at: int, data: np.ndarray) -> None:
        spill = self.spill
        if spill is not None:
            spill.write(at, data)
        if self.lock is not None:
            self.asked = handoff.asked(self.lock)
        with self.cond:
            if spill is None or spill.fd < 0:
                self._keep(at, data)
            for run in self.taps:
                run.feed(at, data)
            self.cond.notify_all()
        pause = handoff.POLL_FIRST
        while not self.stop and not self._wanted():
            with self.cond:  # nobody waits: pause, rather than decode past the next read
                self.cond.wait(pause)
            pause = min(2 * pause, handoff.POLL_MOST)
            if self.lock is not None:
                self.asked = handoff.asked(self.lock)
        if self.stop:
            raise _Stopped

    def _keep(self, at: int, data: np.ndarray) -> None:
        """Keep the last :data:`LOOKBACK` decoded bytes (the caller holds the condition)."""
        if at != self.kept_to:  # the decoder started again from the stream's start
            self.kept_from = at
        pos, n = at % LOOKBACK, len(data)
        first = min(n, LOOKBACK - pos)
        self.ring[pos : pos + first] = data[:first]
        self.ring[: n - first] = data[first:]
        self.kept_to = at + n
        self.kept_from = max(self.kept_from, self.kept_to - LOOKBACK)

    def _replayed(self, start: int, stop: int, put: Callable[[int, np.ndarray], None]) -> _Run:
        """A run fed what the pass still keeps of it (runs asked for just behind the pass)."""
        run, at = _Run(start, stop, put), start
        while self.kept_from <= at < self.kept_to and run.missing:
            pos = at % LOOKBACK
            piece = self.ring[pos : pos + min(self.kept_to - at, LOOKBACK - pos)]
            run.feed(at, piece)
            at += len(piece)
        return run

    def _wanted(self) -> bool:
        return bool(self.to_end or self.waiting or self.asked)

    def wait(self, buf: memoryview, todo: Runs) -> Runs:
        """Fill `todo` from the pass; returns the runs it went by before they were asked for."""
        with self.cond:
            self.waiting += 1
            self.cond.notify_all()
        try:
            if self.spill is not None and self.spill.fd >= 0:
                return self._wait_spilled(buf, todo)
            with self.cond:
                mine = [self._replayed(s, s + n, _into(buf[at : at + n])) for s, at, n in todo]
                self.taps.extend(mine)
                try:
                    while not self.done and any(r.missing for r in mine):
                        self.cond.wait(1.0)
                finally:
                    self.taps = [r for r in self.taps if all(r is not m for m in mine)]
        finally:
            with self.cond:
                self.waiting -= 1
        if self.error is not None:
            raise self.error
        return [run for run, r in zip(todo, mine, strict=True) if r.missing]

    def _wait_spilled(self, buf: memoryview, todo: Runs) -> Runs:
        """Take the runs from the spill file as it covers them (wherever the pass is)."""
        assert self.spill is not None
        end = max(s + n for s, _, n in todo)
        while True:
            todo = self.spill.read(buf, todo)
            with self.cond:
                if not todo or self.done or self.spill.fd < 0:
                    todo = self.spill.read(buf, todo) if todo else todo
                    break
                if self.spill.to < end:
                    self.cond.wait(1.0)
        if self.error is not None:
            raise self.error
        return todo

    def finish(self) -> None:
        """Let the pass run to the end of the stream, and wait for it."""
        with self.cond:
            self.to_end = True
            self.cond.notify_all()
            while not self.done:
                self.cond.wait(1.0)

    def end(self) -> None:
        """Stop the pass at its next block (it keeps no index); delete its spill file."""
        with self.cond:
            self.stop = True
            self.cond.notify_all()
            if self.done and self.spill is not None:
                self.spill.close()


def _own_build(reader: GzipReader, alone: bool) -> Build | None:
    """This process's pass over the file, started if need be; None if another process leads."""
    with reader.build_lock:
        build = reader.build
        if build is not None and not build.done:
            return build
        lock = None if alone else handoff.Lock(handoff.paths(reader.fid)[0])
        if lock is not None and not lock.acquire():
            return None
        if lock is not None and _saved(reader):  # a pass elsewhere has just ended
            lock.release()
            return None
        build = reader.build = Build(reader, lock)
        return build


def _saved(reader: GzipReader) -> bool:
    """Whether a saved index of the file appeared (then the reader holds it)."""
    if not any(p.exists() for p in _gzindex.saved_places(reader.fid)):
        return False
    index = _gzindex.lookup(reader.fid)  # checked like any saved index
    if index is None:
        return False
    with reader._lock:
        reader._drop_stream()
        reader.index = index
    return True


def read_cold(reader: GzipReader, buf: memoryview, todo: Runs) -> Runs:
    """Fill `todo` from one pass over the whole stream; returns the runs left for the index.

    Raises what the pass raised (a damaged stream) in every read waiting on it.
    """
    alone = not sharing(reader)
    reader.spill_check = not alone
    end = reader.data_end
    reaches_end = end is not None and max(s + n for s, _, n in todo) >= end
    while todo and reader.index is None:
        build = _own_build(reader, alone)
        if build is None and reader.index is None:
            todo, alone = handoff.wait_elsewhere(reader.fid, buf, todo, lambda: _saved(reader))
            continue
        if build is None:
            break
        todo = build.wait(buf, todo)
        if todo and reader.index is None:
            if build.stop:
                break  # the reader is closing
            build.finish()  # late runs: the pass goes on to the index
            if build.error is not None:
                raise build.error
            if reader.index is None:
                break  # the stream goes on far past the image: the caller reads it inline
    build = reader.build
    if reaches_end and build is not None and not build.done:
        build.finish()  # as an inline read would: the stream checked, the index kept
        if build.error is not None:
            raise build.error
    return todo


def spilled(reader: GzipReader, buf: memoryview, todo: Runs) -> Runs:
    """Fill runs from a recent pass's spill file while it lasts; the others are left."""
    path = handoff.spill_path(handoff.paths(reader.fid)[0])
    left = handoff.read_spill(path, buf, todo)
    if left is todo and not path.exists():
        reader.spill_check = False  # gone: reads use the index from now on
    return left
