"""Recycled memory for large reads: a chunk's array without fresh pages for every chunk.

An array larger than 32 MiB gets memory of its own from the C library (a new
anonymous map, unmapped again when the array dies), and the kernel zeroes each
page of it when it is first touched. A pass over a file bigger than memory
allocates one such array per chunk; on the project machine zeroing them cost
more CPU than copying the data in from page cache, and during the temporal
mean of a 26 GiB image it was the largest single item of the profile (22% of
all samples, ahead of the copy at 13%). Smaller arrays are served from heap
memory the C library already holds, which needs no zeroing.

:func:`empty` hands out large arrays backed by anonymous maps that go back to
a small free list once nothing can reach them any more, so the next chunk's
read reuses pages already touched. The list holds at most 512 MiB, and a map
idle for a second is unmapped (by a timer thread), so a process keeps no
memory once its pass is over. Safety rests on numpy's rule for the base
of a view: a view's base chain stops at the first array of another type. Each
allocation gets a fresh :class:`_Owner` (a private ndarray subclass) over the
map; the array handed out, and every view or buffer taken from it, keeps that
owner alive, and only when the owner is collected does its map return to the
free list. (``MADV_FREE`` on idle maps does not help here: during a pass over
a file bigger than memory the kernel reclaims such pages at once.)
"""

from __future__ import annotations

import collections
import contextlib
import math
import mmap
import threading
import time
import weakref
from typing import Any

import numpy as np

#: Arrays at least this large come from recycled maps (the C library's largest
#: threshold for serving an allocation from its heap instead of a map of its own).
RECYCLE_MIN = 32 * 2**20
#: Most bytes kept idle in the free list.
IDLE_BYTES = 512 * 2**20
#: Idle maps are unmapped after this many seconds (a pass reuses them within milliseconds).
IDLE_SECONDS = 1.0

_lock = threading.Lock()  # guards _idle; finalizers only append to _returned
_idle: list[tuple[mmap.mmap, float]] = []  # (map, when it became idle)
_returned: collections.deque[tuple[mmap.mmap, float]] = collections.deque()
_timer_on = False


class _Owner(np.ndarray):
    """The one array that owns a recycled map; nothing outside this module sees one."""


def empty(shape: tuple[int, ...], dtype: np.dtype[Any], order: str = "C") -> np.ndarray:
    """An uninitialised array like ``np.empty``; large ones reuse memory of earlier arrays.

    The result is an ordinary, writeable ``np.ndarray`` that no other array
    shares; its memory goes back to the free list only when it and every view
    of it are gone.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < RECYCLE_MIN:
        return np.empty(shape, dtype, order="F" if order == "F" else "C")
    mm = _take(nbytes)
    owner = np.ndarray.__new__(_Owner, (nbytes,), np.uint8, buffer=mm)  # base: the map
    weakref.finalize(owner, _give_back, mm)
    flat = owner.view(np.ndarray)  # its base chain ends at `owner`, not at the map
    return flat.view(dtype).reshape(shape, order="F" if order == "F" else "C")


def _take(nbytes: int) -> mmap.mmap:
    """An idle map of at least `nbytes` (the smallest that fits), or a new one."""
    with _lock:
        _collect()
        fits = [i for i, (m, _) in enumerate(_idle) if nbytes <= len(m) <= 2 * nbytes]
        if fits:
            return _idle.pop(min(fits, key=lambda i: len(_idle[i][0])))[0]
    return _new_map(nbytes)


def _new_map(nbytes: int) -> mmap.mmap:
    """A private anonymous map that the kernel may back with huge pages.

    ``mmap.mmap(-1, n)`` alone is a *shared* anonymous map (shared memory
    pages, never huge): first touches of 354 MB took 0.53 s on the project
    machine, against 0.07 s for a private map advised ``MADV_HUGEPAGE`` (what
    numpy asks for its own large arrays).
    """
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    mm = mmap.mmap(-1, nbytes, flags=flags) if flags else mmap.mmap(-1, nbytes)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        with contextlib.suppress(OSError):  # no transparent huge pages: small ones then
            mm.madvise(advice)
    return mm


def _give_back(mm: mmap.mmap) -> None:
    """A map no array uses any more (a finalizer: it may run in any thread, so no lock)."""
    global _timer_on
    _returned.append((mm, time.monotonic()))
    if not _timer_on:
        _timer_on = True
        _start_timer()


def _start_timer() -> None:
    timer = threading.Timer(IDLE_SECONDS, _trim)
    timer.daemon = True
    timer.start()


def _collect() -> None:
    """Move returned maps into the free list, dropping the oldest beyond IDLE_BYTES (locked)."""
    while _returned:
        _idle.append(_returned.popleft())
    while sum(len(m) for m, _ in _idle) > IDLE_BYTES:
        _idle.pop(0)  # unmapped when collected


def _trim() -> None:
    """Unmap the maps idle for IDLE_SECONDS or more; look again later while any remain."""
    global _timer_on
    with _lock:
        _collect()
        cut = time.monotonic() - IDLE_SECONDS
        _idle[:] = [(m, t) for m, t in _idle if t > cut]
        _timer_on = bool(_idle)
    if _timer_on:
        _start_timer()
