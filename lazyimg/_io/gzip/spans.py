"""Which compressed bytes a warm read needs, exactly, and fetching them together from a remote object.

A warm read (:func:`~lazyimg._io.gzip.inflate._inflate_runs`) is a series of
*passes*: each starts at a seek point and inflates forward through the runs
it serves; a run starts a new pass when a seek point lies between it and the
previous run (:func:`passes`). A pass that must reach uncompressed offset
``end`` needs the compressed bytes from its point up to the next seek point at
or after ``end`` and no further (:func:`span`): every byte before that point is
decoded from the bits before it.

Locally a pass reads its bytes with ``pread`` as it goes. From a remote
object each read would be a request with a round trip of its own, and a
guessed length fetches too much or too little. :class:`Prefetched` instead
fetches the exact spans of the next passes together, as concurrent range
requests (adjacent spans merged into one), at most :data:`WINDOW_BYTES` at a
time, and serves the passes' reads from them: a voxel's time series through
a whole object moves at most the object (plus a byte per pass), and a few
volumes only the spans between their seek points.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lazyimg._io.gzip.index import GzipIndex

__all__ = ["Prefetched", "passes", "segments", "span"]

#: Most compressed bytes fetched ahead for the passes of one warm read.
WINDOW_BYTES = 64 * 2**20

#: Last spans kept per object, for a read that starts where another ended.
RECENT = 2

_Run = tuple[int, int, int]


def _recent(src: Any) -> list[tuple[int, int, bytes]]:
    """The spans last fetched from `src` (a list kept on it; shared by its threads)."""
    got: list[tuple[int, int, bytes]] | None = getattr(src, "recent_spans", None)
    if got is None:
        got = src.recent_spans = []
    return got


def passes(index: GzipIndex, runs: list[_Run]) -> list[tuple[int, list[_Run]]]:
    """``(seek point, runs)`` of each pass over sorted `runs` (see the module docstring)."""
    out: list[tuple[int, list[_Run]]] = []
    pos = -1
    for run in runs:
        start, _, n = run
        point = index.point_before(start)
        if not out or int(index.upos[point]) > pos:
            out.append((point, []))
        out[-1][1].append(run)
        pos = start + n
    return out


def span(index: GzipIndex, point: int, end: int) -> tuple[int, int]:
    """Compressed ``[lo, hi)`` a pass from `point` needs to inflate up to `end`.

    ``lo`` includes the byte holding the point's leading bits; ``hi`` stops
    just past the first seek point at or after `end` (the file's end if none).
    """
    pieces = segments(index, point, end)
    return pieces[0][0], pieces[-1][1]


def segments(index: GzipIndex, point: int, end: int) -> list[tuple[int, int]]:
    """:func:`span` cut at the seek points inside it: one ``(lo, hi)`` per gap between points."""
    after = max(point + 1, int(np.searchsorted(index.upos, end, side="left")))
    out = []
    for i in range(point, after):
        lo = int(index.cpos[i]) - (1 if int(index.bits[i]) else 0)
        hi = int(index.cpos[i + 1]) + 1 if i + 1 < len(index.cpos) else index.compressed_size
        out.append((lo, max(lo, min(hi, index.compressed_size))))
    return out


class Prefetched:
    """The spans of the coming passes, fetched together; other reads go to the object."""

    def __init__(self, src: Any, spans: list[tuple[int, int]]) -> None:
        self.src, self.size = src, src.size
        self.input_block = getattr(src, "input_block", 2**20)
        self._todo = spans
        self._have: list[tuple[int, int, bytes]] = []

    def pread(self, n: int, offset: int) -> bytes:
        """Bytes from `offset` on: up to `n`, fewer where a fetched span ends."""
        end = min(self.size, offset + n)
        for _ in range(2):
            for lo, hi, data in [*self._have, *_recent(self.src)]:
                if lo <= offset < hi:
                    return data[offset - lo : min(end, hi) - lo]
            if not self._fetch_from(offset):
                break
        return bytes(self.src.pread(n, offset))

    def _fetch_from(self, offset: int) -> bool:
        """Fetch the next window of spans, starting with the one that begins at `offset`."""
        todo = self._todo
        i = next((k for k, (lo, hi) in enumerate(todo) if lo <= offset < hi), None)
        if i is None:
            return False
        part = int(getattr(self.src, "part_bytes", 4 * 2**20))
        window: list[tuple[int, int]] = []
        total = used = 0
        for lo, hi in todo[i:]:
            if window and total + hi - lo > WINDOW_BYTES:
                break
            last = window[-1] if window else None
            if last is not None and lo <= last[1] and max(hi, last[1]) - last[0] <= part:
                window[-1] = (last[0], max(hi, last[1]))  # adjacent spans: one request
            else:
                window.append((lo, hi))
            total += hi - lo
            used += 1
        self._todo = todo[i + used :]
        blobs = self.src.fetch(window)
        self._have = [(lo, hi, blob) for (lo, hi), blob in zip(window, blobs, strict=True)]
        recent = _recent(self.src)
        recent.append(self._have[-1])  # the next read (of the same chunk's next group, say)
        del recent[:-RECENT]  # may start in the gap this one ended in
        return True
