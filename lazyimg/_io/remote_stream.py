"""A remote object as a sequential file, and the local spill that makes its first pass the only download.

:class:`RemoteStream` is what a decoder reads a remote ``.nii.gz`` through on its
first pass (:meth:`~lazyimg._io.remote_file.RemoteFile.stream`): aligned blocks of
:data:`STREAM_BLOCK` bytes, one range request each, the last :data:`STREAM_KEEP`
kept in memory for a decoder that steps back a little. Once it reads on in
order, the next :data:`AHEAD` blocks are fetched while the decoder works, so
the download and the decoding overlap (a single read near the start fetches
no more than its own block).

A :class:`Spill` keeps every block the stream fetched in an anonymous temporary
file (unlinked when made, so it disappears with the process or when the object's
reader is closed). dask runs the chunks of a pass in no fixed order: a chunk
that comes after the stream has passed it, or after the pass finished and built
the seek index, reads its compressed bytes from the spill instead of fetching
them again, so one pass downloads the object once. A spill is made only when
the temporary directory has room for twice the object; otherwise such reads
fetch their bytes again.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

from lazyimg._io.remote import LazyPool

__all__ = ["STREAM_BLOCK", "STREAM_KEEP", "RemoteStream", "Spill"]

#: Block size of the sequential stream (one request per block).
STREAM_BLOCK = 8 * 2**20
#: Blocks a stream keeps in memory (a decoder may step back a little).
STREAM_KEEP = 3
#: Blocks fetched ahead while a stream is read in order (the decoder works meanwhile).
AHEAD = 2


class Spill:
    """Blocks of one object held in an anonymous temporary file (see the module docstring)."""

    def __init__(self, file: Any) -> None:
        self._file = file
        self._fd = file.fileno()
        self._have: set[int] = set()
        self._lock = threading.Lock()

    @classmethod
    def make(cls, size: int) -> Spill | None:
        """A spill for an object of `size` bytes, or None if the disk has too little room."""
        where = tempfile.gettempdir()
        try:
            if shutil.disk_usage(where).free < 2 * size:
                return None
            return cls(tempfile.TemporaryFile(prefix="lazyimg-spill-", dir=where))
        except OSError:
            return None

    def holds(self, lo: int, hi: int) -> bool:
        """Whether every block of bytes ``[lo, hi)`` is here."""
        first, last = lo // STREAM_BLOCK, (hi - 1) // STREAM_BLOCK
        with self._lock:
            return all(k in self._have for k in range(first, last + 1))

    def put(self, k: int, at: int, data: bytes) -> None:
        """Keep block `k` (which starts at byte `at`); a full disk just stops the keeping."""
        try:
            done = 0
            while done < len(data):
                done += os.pwrite(self._fd, memoryview(data)[done:], at + done)
        except OSError:
            return
        with self._lock:
            self._have.add(k)

    def pread(self, lo: int, hi: int) -> bytes:
        out = bytearray(hi - lo)
        view, done = memoryview(out), 0
        while done < len(out):
            n = os.preadv(self._fd, [view[done:]], lo + done)
            if n == 0:  # pragma: no cover - only blocks fully written are marked held
                raise OSError("the spill file is shorter than what it holds")
            done += n
        return bytes(out)

    def close(self) -> None:
        self._file.close()


class RemoteStream(io.RawIOBase):
    """A read-only, seekable file over a :class:`~lazyimg._io.remote_file.RemoteFile`."""

    def __init__(self, src: Any) -> None:
        super().__init__()
        self.src, self.pos, self.last = src, 0, -2
        self.blocks: OrderedDict[int, bytes] = OrderedDict()
        self.ahead: dict[int, Future[bytes]] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.src.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _block(self, k: int) -> bytes:
        hit = self.blocks.get(k)
        if hit is None:
            pending = self.ahead.pop(k, None)
            hit = self.blocks[k] = pending.result() if pending is not None else self.src.block(k)
            while len(self.blocks) > STREAM_KEEP:
                self.blocks.popitem(last=False)
            if k == self.last + 1:  # reading on in order: fetch the next blocks meanwhile
                self._read_ahead(k)
            self.last = k
        self.blocks.move_to_end(k)
        return hit

    def _read_ahead(self, k: int) -> None:
        blocks = -(-self.src.size // STREAM_BLOCK)
        for j in range(k + 1, min(blocks, k + 1 + AHEAD)):
            if j not in self.ahead and j not in self.blocks:
                self.ahead[j] = _pool().submit(self.src.block, j)

    def readinto(self, b: Any) -> int:
        out = memoryview(b).cast("B")
        done = 0
        while done < len(out) and self.pos < self.src.size:
            k, lo = divmod(self.pos, STREAM_BLOCK)
            piece = self._block(k)[lo : lo + len(out) - done]
            if not piece:
                break
            out[done : done + len(piece)] = piece
            self.pos += len(piece)
            done += len(piece)
        return done

    def close(self) -> None:
        for pending in self.ahead.values():  # let fetches under way end (they fill the spill)
            if not pending.cancel():
                pending.exception()
        self.ahead.clear()
        self.blocks.clear()
        super().close()


_pool = LazyPool(AHEAD, "lazyimg-stream").get
