"""The per-process cache of open files: opened on first use, closed when nobody needs them.

Read tasks ask :func:`entry` for a file by key (its identity and how it is
read); the first asks opens it, later ones share the handle. An entry leaves
the cache when

- more than :data:`MAX_OPEN` files are open (the least recently used goes);
- every :class:`~lazyimg._io.formats.Source` made in this process that used it
  has been garbage-collected (the images and graphs that could read it are
  gone), so a deleted file's space is given back to the file system;
- :func:`close_all` (public as ``lazyimg.close_files``) is called.

Sources unpickled from another process (on a dask worker) are not tracked:
their copies come and go with every task, and the worker keeps its files open
for the next task until the cache evicts them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

#: How many files one process keeps open.
MAX_OPEN = 64


class Entry:
    """One open file. It is closed when the last reference goes, not when it leaves the
    cache: a thread may still be reading from an entry the cache has just evicted, and
    closing its descriptor then could let a newly opened file take the same number."""

    __slots__ = ("_close", "handle", "lock")

    def __init__(self, handle: Any, close: Callable[[], None]) -> None:
        self.handle = handle
        self._close: Callable[[], None] | None = close
        self.lock = threading.Lock()

    def close(self) -> None:
        """Close the handle (once; later calls do nothing)."""
        close, self._close = self._close, None
        if close is not None:
            close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit, or closed already
            self.close()


_cache: OrderedDict[tuple[Any, ...], Entry] = OrderedDict()
# re-entrant: a Source collected while this thread holds the lock releases its entry here
_cache_lock = threading.RLock()
_users: dict[tuple[Any, ...], set[int]] = {}


_inherited: list[Any] = []


def _clear_after_fork() -> None:
    # A forked child starts with an empty cache. The parent's entries are kept alive, not
    # closed: their handles (decoder threads, locks) belong to the parent's state.
    global _cache, _cache_lock, _users
    _inherited.append(_cache)
    _cache, _users = OrderedDict(), {}
    _cache_lock = threading.RLock()


os.register_at_fork(after_in_child=_clear_after_fork)


def entry(
    key: tuple[Any, ...], opener: Callable[[], tuple[Any, Callable[[], None]]], user: Any = None
) -> Entry:
    """The cached entry for `key`, opening it with `opener` on first use.

    `user` (a Source) keeps the entry in the cache for as long as it lives.
    """
    if user is not None:
        _track(key, user)
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
        new = Entry(handle, close)
        _cache[key] = new
        while len(_cache) > MAX_OPEN:
            _cache.popitem(last=False)  # closed by Entry.__del__ once no task holds it
        return new


def _track(key: tuple[Any, ...], user: Any) -> None:
    if getattr(user, "origin_pid", None) != os.getpid():  # unpickled here: not tracked
        return
    with _cache_lock:
        users = _users.setdefault(key, set())
        if id(user) in users:
            return
        users.add(id(user))
    weakref.finalize(user, _release, key, id(user))


def _release(key: tuple[Any, ...], ident: int) -> None:
    """A Source is gone: drop its files from the cache if no other Source uses them."""
    with _cache_lock:
        users = _users.get(key)
        if users is None:
            return
        users.discard(ident)
        if users:
            return
        del _users[key]
        dropped = _cache.pop(key, None)
    del dropped  # closed here, or by the last task still reading it (Entry.__del__)


def close_all() -> int:
    """Release every file this process holds open for lazy images; return how many.

    Files are also released on their own once no image or graph of this
    process refers to them; call this to give back every handle at once (before
    deleting or unmounting files, or in a long-running server). Images stay
    usable: their next read opens the files again. A file a task is reading
    right now is closed as soon as that read ends, never during it.

    Returns
    -------
    int
        How many cached files were released.

    Examples
    --------
    >>> import tempfile, pathlib, lazyimg
    >>> from lazyimg.testing import write_fmri
    >>> path = write_fmri(pathlib.Path(tempfile.mkdtemp()) / "bold.nii", (4, 4, 3, 5))
    >>> img = lazyimg.load(path)
    >>> float(img.data[..., 0].sum().compute()) == float(img.data[..., 0].compute().sum())
    True
    >>> lazyimg.close_files() >= 1
    True
    >>> img.data.shape
    (4, 4, 3, 5)
    """
    with _cache_lock:
        dropped = list(_cache.values())
        _cache.clear()
        _users.clear()
    n = len(dropped)
    del dropped
    return n
