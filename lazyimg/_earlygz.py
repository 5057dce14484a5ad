"""Decompress a small local gzip image in a background thread while ``lazyimg reduce`` starts up.

A fresh ``lazyimg reduce`` of a 34 MB ``.nii.gz`` spends ~0.3 s importing numpy
and nibabel (Python bytecode, holding the GIL) and ~0.25 s decompressing (isal
releases the GIL). Started before those imports, the decompression runs on
another core meanwhile. It is only used when nothing about it is unusual: a
local gzip file whose uncompressed size (its ISIZE trailer) is at most
:data:`MAX_BYTES`, decoded completely by isal (which checks each member's
CRC-32 and length) to exactly that size, whose identity (size, times, inode)
is the one ``lazyimg.load`` saw, before and after decoding, and whose image is
raw voxels with at most one slope and intercept. Otherwise :meth:`EarlyGzip.result`
gives None and ``reduce`` reads through lazyimg's own reader, which says what
is wrong with a damaged file. This module imports neither numpy nor nibabel.
"""

from __future__ import annotations

import os
import stat
import threading
from typing import Any

#: Largest uncompressed size decoded into memory ahead (bigger files are streamed).
MAX_BYTES = 256 << 20


class EarlyGzip:
    """The whole uncompressed stream of `path`, decoded in a daemon thread."""

    def __init__(self, path: str, st: os.stat_result, size: int) -> None:
        self.path, self._stat, self._size = path, st, size
        self._buf: bytearray | None = None
        self._thread = threading.Thread(target=self._decode, name="lazyimg-early-gzip", daemon=True)
        self._thread.start()

    def _decode(self) -> None:
        try:
            from isal import igzip

            buf = bytearray(self._size + 1)  # a spare byte: more data than ISIZE says
            view, done = memoryview(buf), 0
            with igzip.open(self.path, "rb") as f:
                while done < len(buf):
                    n = f.readinto(view[done:])
                    if not n:
                        break
                    done += n
        except Exception:  # damaged, unreadable, isal missing: the reader takes over
            return
        if done == self._size:
            self._buf = buf

    def result(self, source: Any) -> Any:
        """The decoded bytes as a numpy uint8 array if they are `source`'s file, else None."""
        self._thread.join()
        if self._buf is None or source is None:
            return None
        if source.kind != "raw" or source.compression != "gzip" or len(source.files) != 1:
            return None
        if source.scaling.per_last is not None:
            return None
        fid = source.files[0]
        try:
            now = os.stat(self.path)
        except OSError:
            return None
        if os.path.abspath(fid.path) != self.path or fid.changes(self._stat) or fid.changes(now):
            return None
        import numpy as np

        return np.frombuffer(self._buf, np.uint8)


def start(path: str) -> EarlyGzip | None:
    """Begin decoding `path` if it is a small local gzip file (see the module docstring)."""
    try:
        path = os.path.abspath(path)
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size < 18 or st.st_size > MAX_BYTES:
            return None
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                return None
            f.seek(-4, os.SEEK_END)
            size = int.from_bytes(f.read(4), "little")
    except (OSError, ValueError):
        return None
    if size > MAX_BYTES:
        return None
    return EarlyGzip(path, st, size)
