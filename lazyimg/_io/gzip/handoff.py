"""The cross-process half of a shared gzip pass: a lock per file, and runs handed over in files.

Processes of one machine that share the index cache agree on one leader per
gzip file: whichever takes an exclusive ``flock`` on
``<cache>/gzindex/shared/<key>.lock`` first (the key of the file's saved
index). The kernel releases the lock of a process that dies, so a crashed
leader never blocks the others, and the leader touches the lock file as it
decodes, so a hung one is noticed (:data:`STALL_SECONDS`).

The leader writes every byte its pass decodes into ``<key>.spill``, at its
uncompressed offset (:class:`Spill`). A process that needs bytes while
another leads leaves a marker (``<key>.want-<pid>-<thread>``, so that the
leader does not pause) and reads its runs from the spill file as soon as the
file's size covers them (:func:`wait_elsewhere`), whenever it asks: before the
pass gets there or after it went by. The spill is deleted a minute after the pass
ends; reads after that use the saved index.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.util
import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lazyimg._io.gzip import index as _gzindex

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: every process decodes for itself
    fcntl = None  # type: ignore[assignment]

__all__ = ["Lock", "Spill", "led_elsewhere", "paths", "sharing_possible", "wait_elsewhere"]

#: A leader whose lock file has not been touched for this long is given up on.
STALL_SECONDS = 60.0
#: Seconds a spill file outlives the pass that wrote it.
SPILL_KEEP = 60.0
#: First and longest sleep of a waiting process between looks (it never spins a core).
POLL_FIRST, POLL_MOST = 0.002, 0.02
_TOUCH_EVERY = 0.5

Runs = list[tuple[int, int, int]]


def paths(fid: Any) -> tuple[Path, Path]:
    """The lock file of `fid` and the folder of the hand-over files."""
    base = _gzindex._cache_path(fid)
    folder = base.parent / "shared"
    return folder / (base.stem + ".lock"), folder


def sharing_possible(fid: Any) -> bool:
    """Whether processes can share a pass over `fid` (indexes are saved, flock exists)."""
    return fcntl is not None and _gzindex._policy() != "off" and fid.size >= _gzindex.SAVE_MIN_BYTES


class Lock:
    """The exclusive lock on a file's pass, held by at most one process."""

    def __init__(self, path: Path) -> None:
        self.path, self.fd, self.touched = path, -1, 0.0

    def acquire(self, mode: int | None = None) -> bool:
        """Take the lock without waiting; False if another process holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if mode is None else mode) | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.fd = fd
        _held.add(self)
        return True

    def touch(self) -> None:
        """Show waiting processes that the leader is alive and moving (at most twice a second)."""
        now = time.monotonic()
        if now - self.touched > _TOUCH_EVERY:
            self.touched = now
            with contextlib.suppress(OSError):
                os.utime(self.fd)

    def release(self) -> None:
        fd, self.fd = self.fd, -1
        _held.discard(self)
        if fd >= 0:
            os.close(fd)


#: Locks this process holds. A forked child closes its copies: a flock is shared by every
#: process holding its descriptor, and a child outliving its parent would keep it taken.
_held: weakref.WeakSet[Lock] = weakref.WeakSet()


def _release_in_child() -> None:
    for lock in list(_held):
        lock.release()


os.register_at_fork(after_in_child=_release_in_child)


def led_elsewhere(fid: Any) -> bool:
    """Whether another process holds the lock of this file's pass."""
    probe = Lock(paths(fid)[0])
    if probe.acquire(fcntl.LOCK_SH):
        probe.release()
        return False
    return probe.path.exists()


class Spill:
    """The leader's side: every decoded byte, written at its offset into ``<key>.spill``.

    Readers in any process take runs from it as soon as the file's size covers
    them, whether they asked before the pass got there or after it went by.
    It outlives the pass by :data:`SPILL_KEEP` seconds (the rest of a first
    pass over the image reads it; it was checked with the whole stream against
    the gzip trailer) and is deleted then, when its reader is closed, or at
    exit; reads after that use the saved index. It is made only for a pass from
    the stream's start and where the disk has room for twice the stream.
    """

    def __init__(self, lock: Lock, size: int) -> None:
        self.lock, self.folder = lock, lock.path.parent
        self.path = spill_path(lock.path)
        self.fd = -1
        _remove_stale(self.folder)
        with contextlib.suppress(OSError):
            if shutil.disk_usage(self.folder).free > 2 * size + 2**30:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                _spills.add(self)
        self.to = 0  # bytes [0, to) are in the file

    def write(self, at: int, data: Any) -> None:
        """Keep a decoded block (only while the pass runs on from the stream's start)."""
        if self.fd >= 0 and at != self.to:  # not a pass from the start: no spill
            self._drop()
        if self.fd >= 0:
            try:
                os.pwrite(self.fd, data.data, at)
                self.to = at + len(data)
            except OSError:  # the disk filled up: stop spilling, readers use the index
                self._drop()

    def read(self, buf: memoryview, todo: Runs) -> Runs:
        """Fill the runs the file covers; the others are left (all, once it is gone)."""
        return read_spill(self.path, buf, todo, self.to)

    def _drop(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def stop(self) -> None:
        """No more writes; the file stays for reads until :meth:`close`."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def close(self) -> None:
        self._drop()
        _spills.discard(self)


#: Spill files this process made and has not deleted yet: deleted at exit (a forked child
#: leaves its parent's alone).
_spills: set[Spill] = set()


def _close_spills() -> None:
    for spill in list(_spills):
        spill.close()


atexit.register(_close_spills)
# dask's worker processes end through multiprocessing, which skips atexit but runs these
multiprocessing.util.Finalize(None, _close_spills, exitpriority=0)
os.register_at_fork(after_in_child=_spills.clear)


def _remove_stale(folder: Path) -> None:
    """Delete spill files of leaders that died (their lock is free) over SPILL_KEEP ago."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if not entry.name.endswith(".spill"):
                continue
            if time.time() - entry.stat().st_mtime < SPILL_KEEP:
                continue
            lock = Lock(folder / (entry.name[: -len(".spill")] + ".lock"))
            if lock.acquire():
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                lock.release()


def asked(lock: Lock) -> bool:
    """Whether another process waits for the pass `lock` leads (its want markers)."""
    lock.touch()
    prefix = lock.path.stem + ".want-"
    try:
        return any(e.name.startswith(prefix) for e in os.scandir(lock.path.parent))
    except OSError:
        return False


def spill_path(lock_path: Path) -> Path:
    return lock_path.with_suffix(".spill")


def read_spill(path: Path, buf: memoryview, todo: Runs, size: int | None = None) -> Runs:
    """Fill the runs a spill file covers (its size, or `size` if less); the others are left.

    The file is opened for each look: its leader may delete it at any time.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return todo
    try:
        covered = os.fstat(fd).st_size if size is None else min(size, os.fstat(fd).st_size)
        return _read_covered(fd, covered, buf, todo)
    finally:
        os.close(fd)


def _read_covered(fd: int, size: int, buf: memoryview, todo: Runs) -> Runs:
    left = []
    for start, at, n in todo:
        if start + n > size:
            left.append((start, at, n))
            continue
        done = 0
        while done < n:
            got = os.preadv(fd, [buf[at + done : at + n]], start + done)
            if got == 0:
                raise OSError("the spill file ended early")
            done += got
    return left


def wait_elsewhere(
    fid: Any, buf: memoryview, todo: Runs, saved: Callable[[], bool]
) -> tuple[Runs, bool]:
    """Wait for another process's pass to serve `todo`: (runs left, whether to go alone).

    Runs are left when the leader is gone or done (its index saved: ``saved()``
    loads it; else lead a pass here); a stalled leader means going alone.
    """
    path, folder = paths(fid)
    lock = Lock(path)
    marker = folder / f"{path.stem}.want-{os.getpid()}-{threading.get_ident()}"
    alone, pause = False, POLL_FIRST
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600))
        while todo:
            todo = read_spill(spill_path(path), buf, todo)
            if not todo or saved():
                break
            if lock.acquire():  # the leader is gone, or done: lead, or use its index
                lock.release()
                break
            try:
                idle = time.time() - path.stat().st_mtime
            except OSError:
                idle = 0.0
            if idle > STALL_SECONDS:
                alone = True
                break
            time.sleep(pause)
            pause = min(2 * pause, POLL_MOST)
    except OSError:  # the cache folder is not writable after all
        alone = True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(marker)
    return todo, alone
