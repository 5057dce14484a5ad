"""Reading a remote object by byte range: the remote :class:`~lazyimg._io.source.ByteSource`.

One :class:`RemoteFile` per object and process (cached by :mod:`lazyimg._io.files`),
holding a filesystem opened from the object's storage options in this process,
so nothing that crosses to a dask worker holds a connection. Requests are
planned by :func:`~lazyimg._io.remote.plan_requests` and fetched together with
``fs.cat_ranges``; every answer is checked for length (a server that ignores
``Range`` sends the whole object, which is refused rather than used).
"""

from __future__ import annotations

import io
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, BinaryIO

import numpy as np

from lazyimg._io import remote as _remote
from lazyimg._io import remote_fs as _fs
from lazyimg._io.remote import RemoteId, plan_requests
from lazyimg._io.remote_fs import transient, translate
from lazyimg.errors import CorruptImageError, LazyImgError

__all__ = ["RemoteFile"]

#: Block size of the sequential stream (one request per block, read ahead).
STREAM_BLOCK = 8 * 2**20
#: Blocks a stream keeps (a decoder may step back a little).
STREAM_KEEP = 3


class RangeNotSupportedError(LazyImgError, OSError):
    """The server answered a range request with the whole object."""


class RemoteFile:
    """A remote object read by concurrent range requests (see the module docstring)."""

    read_overhead = _remote.REQUEST_OVERHEAD_BYTES
    #: Compressed bytes one request fetches while inflating from a seek point.
    input_block = 4 * 2**20

    def __init__(self, rid: RemoteId) -> None:
        self.rid, self.name, self.size = rid, rid.name, rid.size
        self.fs, self.fspath = _fs._fs_of(rid)
        http = _remote.protocol(rid.url) in ("http", "https")
        etag = (rid.version or "").partition("=")[2] if rid.version else ""
        self._kwargs: dict[str, Any] = (
            {"headers": {"If-Match": f'"{etag}"'}}
            if http and rid.version and rid.version.startswith("ETag=")
            else {}
        )

    def fetch(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The bytes of each ``(start, end)``, fetched concurrently, retried if transient."""
        out: list[bytes | None] = [None] * len(ranges)
        todo = [i for i, (s, e) in enumerate(ranges) if e > s]
        for i, (s, e) in enumerate(ranges):
            if e <= s:
                out[i] = b""
            elif e > self.size:
                raise CorruptImageError(
                    f"{self.name}: the object has {self.size} bytes but bytes up to {e} are "
                    "needed. It is truncated or the header is wrong."
                )
        pause = _remote.BACKOFF_S
        for attempt in range(_remote.RETRIES + 1):
            got = self._cat(todo, ranges)
            failed: list[int] = []
            for i, value in zip(todo, got, strict=True):
                if isinstance(value, BaseException):
                    if attempt < _remote.RETRIES and transient(value):
                        failed.append(i)
                        continue
                    raise translate(value, self.rid.url, self.rid.options, "read it") from None
                out[i] = self._checked(value, *ranges[i])
            if not failed:
                break
            todo = failed
            time.sleep(pause)
            pause *= 2
        else:  # pragma: no cover - the loop raises or breaks
            raise AssertionError
        return [b if b is not None else b"" for b in out]

    def _cat(self, todo: list[int], ranges: list[tuple[int, int]]) -> list[Any]:
        if not todo:
            return []
        starts = [ranges[i][0] for i in todo]
        ends = [ranges[i][1] for i in todo]
        try:
            got = self.fs.cat_ranges(
                [self.fspath] * len(todo), starts, ends, on_error="return", **self._kwargs
            )
        except Exception as err:  # the whole batch failed
            got = [err] * len(todo)
        _remote._count(len(todo), sum(len(g) for g in got if isinstance(g, bytes)))
        return list(got)

    def _checked(self, data: bytes, start: int, end: int) -> bytes:
        if len(data) == end - start:
            return data
        if len(data) == self.size and (start, end) != (0, self.size):
            raise RangeNotSupportedError(
                f"{self.name}: the server ignored a range request and sent the whole object "
                f"({self.size} bytes). lazyimg reads remote images by range; serve the file "
                "from a server that supports HTTP Range requests, or download it and open the "
                "local file."
            )
        raise CorruptImageError(
            f"{self.name}: asked for bytes {start}-{end - 1} and got {len(data)} bytes. The "
            "object is shorter than its header says, or it changed; load it again."
        )

    def read_runs(self, buf: memoryview, runs: Iterable[tuple[int, int, int]]) -> None:
        """Fill ``buf[at:at + n]`` from ``start`` for every ``(start, at, n)``."""
        plan = plan_requests(runs)
        if not plan:
            return
        blobs = self.fetch([(lo, hi) for lo, hi, _ in plan])
        dest = np.frombuffer(buf, np.uint8)
        for (lo, _hi, members), blob in zip(plan, blobs, strict=True):
            src = np.frombuffer(blob, np.uint8)
            for start, at, n in members:
                dest[at : at + n] = src[start - lo : start - lo + n]

    def read_into(self, buf: memoryview, offset: int) -> None:
        self.read_runs(buf, [(offset, 0, len(buf))])

    def pread(self, n: int, offset: int) -> bytes:
        end = min(self.size, offset + n)
        return self.fetch([(offset, end)])[0] if end > offset else b""

    def stream(self) -> BinaryIO:
        """The object as a sequential file (large blocks, read ahead); the caller closes it."""
        return _Stream(self)  # type: ignore[return-value]

    def close(self) -> None:
        pass


class _Stream(io.RawIOBase):
    """A read-only, seekable file over a :class:`RemoteFile`.

    It fetches aligned blocks of :data:`STREAM_BLOCK` bytes and keeps the last
    :data:`STREAM_KEEP`: a decoder that steps back a little (rapidgzip does, to
    chunk boundaries) reads them again from memory, so one pass fetches each
    byte of the object once.
    """

    def __init__(self, src: RemoteFile) -> None:
        super().__init__()
        self.src, self.pos = src, 0
        self.blocks: OrderedDict[int, bytes] = OrderedDict()

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
            hit = self.blocks[k] = self.src.pread(STREAM_BLOCK, k * STREAM_BLOCK)
            while len(self.blocks) > STREAM_KEEP:
                self.blocks.popitem(last=False)
        self.blocks.move_to_end(k)
        return hit

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
        self.blocks.clear()
        super().close()
