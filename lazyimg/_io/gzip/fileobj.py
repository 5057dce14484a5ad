"""A seekable binary file over the uncompressed bytes of a gzip stream, through its index.

Header parsers that seek (nibabel's MGH header reads a footer stored after the
data) would decompress a plain gzip file object from its start up to every
seek target. :class:`IndexedFile` reads through a
:class:`~lazyimg._io.gzip.reader.GzipReader` instead: with a complete index
(held in this process, or a saved one that matched the file's identity,
fingerprint and payload digest) a read inflates from the nearest seek point;
without one, the first read decodes the stream once, checks it against its
CRC-32 and length trailer and keeps (and saves) the index, so the reads after
it, and the image's data reads, start from seek points too.
"""

from __future__ import annotations

import io
import os

from lazyimg._io.gzip.reader import GzipReader

__all__ = ["IndexedFile"]


class IndexedFile(io.RawIOBase):
    """Read-only, seekable view of the uncompressed stream a `reader` decodes."""

    def __init__(self, reader: GzipReader) -> None:
        super().__init__()
        self.reader, self.pos = reader, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos}.get(whence)
        if base is None:  # from the end: the size is known once the stream is indexed
            base = self.reader.complete().uncompressed_size
        if base + offset < 0:
            raise ValueError(f"{self.reader.path}: negative seek position {base + offset}")
        self.pos = base + offset
        return self.pos

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(b).cast("B")
        size = self.reader.complete().uncompressed_size
        n = max(0, min(len(out), size - self.pos))
        if n:
            self.reader.read_into(out[:n], self.pos)
        self.pos += n
        return n
