"""Reading a remote object by byte range: the remote :class:`~lazyimg._io.source.ByteSource`.

One :class:`RemoteFile` per object and process (cached by :mod:`lazyimg._io.files`),
holding a filesystem opened from the object's storage options in this process,
so nothing that crosses to a dask worker holds a connection. Requests are
planned by :func:`~lazyimg._io.remote.plan_requests` and fetched together with
``fs.cat_ranges``; every answer is checked for length (a server that ignores
``Range`` sends the whole object, which is refused rather than used).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any, BinaryIO

import numpy as np

from lazyimg._io import remote as _remote
from lazyimg._io import remote_fs as _fs
from lazyimg._io.remote import RemoteId, plan_requests
from lazyimg._io.remote_fs import conditional, confirmed, transient, translate
from lazyimg._io.remote_http import direct_reader
from lazyimg._io.remote_stream import STREAM_BLOCK, RemoteStream, Spill
from lazyimg.errors import CorruptImageError, LazyImgError

__all__ = ["RemoteFile"]


class RangeNotSupportedError(LazyImgError, OSError):
    """The server answered a range request with the whole object."""


class RemoteFile:
    """A remote object read by concurrent range requests (see the module docstring)."""

    read_overhead = _remote.REQUEST_OVERHEAD_BYTES
    #: Compressed bytes one request fetches while inflating from a seek point.
    input_block = 4 * 2**20
    #: Longest request when adjacent spans are fetched together.
    part_bytes = _remote.PART_BYTES

    def __init__(self, rid: RemoteId) -> None:
        self.rid, self.name, self.size = rid, rid.name, rid.size
        self.fs, self.fspath = _fs._fs_of(rid)
        self._kwargs = conditional(rid)
        self._direct = direct_reader(self.fs, rid.url)
        self._spill: Spill | None = None
        self._spill_lock = threading.Lock()

    def fetch(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The bytes of each ``(start, end)``, fetched concurrently, retried if transient."""
        self._bounds(ranges)
        out: list[bytes] = [b""] * len(ranges)
        spill = self._spill

        def put(i: int, value: Any) -> None:
            out[i] = self._checked(value, *ranges[i])

        todo = []
        for i, (s, e) in enumerate(ranges):
            if spill is not None and e > s and spill.holds(s, e):
                out[i] = spill.pread(s, e)  # streamed earlier in this process
            elif e > s:
                todo.append(i)
        if self._direct is None:
            self._attempts(todo, self._cat, ranges, put)
            return out
        targets = [memoryview(bytearray(e - s)) for s, e in ranges]
        self._attempts(
            todo, self._sender(targets), ranges, lambda i, n: self._check_length(n, *ranges[i])
        )
        for i in todo:
            out[i] = bytes(targets[i])
        return out

    def _bounds(self, ranges: list[tuple[int, int]]) -> None:
        for _s, e in ranges:
            if e > self.size:
                raise CorruptImageError(
                    f"{self.name}: the object has {self.size} bytes but bytes up to {e} are "
                    "needed. It is truncated or the header is wrong."
                )

    def _attempts(
        self, todo: list[int], send: Any, ranges: list[tuple[int, int]], put: Any
    ) -> None:
        """``send(todo, ranges)`` until every answer is good (``put``), retrying transients."""
        pause = _remote.BACKOFF_S
        for attempt in range(_remote.RETRIES + 1):
            got = send(todo, ranges) if todo else []
            failed: list[int] = []
            for i, value in zip(todo, got, strict=True):
                if isinstance(value, BaseException):
                    if attempt < _remote.RETRIES and transient(value):
                        failed.append(i)
                        continue
                    raise translate(value, self.rid.url, self.rid.options, "read it") from None
                put(i, value)
            if not failed:
                if self._kwargs and got:  # a conditional request answered: still the same object
                    confirmed(self.rid)
                return
            todo = failed
            time.sleep(pause)
            pause *= 2

    def _cat(self, todo: list[int], ranges: list[tuple[int, int]]) -> list[Any]:
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
        self._check_length(len(data), start, end)
        return data

    def _check_length(self, n: int, start: int, end: int) -> None:
        if n == end - start:
            return
        if n == self.size and (start, end) != (0, self.size):
            raise RangeNotSupportedError(
                f"{self.name}: the server ignored a range request and sent the whole object "
                f"({self.size} bytes). lazyimg reads remote images by range; serve the file "
                "from a server that supports HTTP Range requests, or download it and open the "
                "local file."
            )
        raise CorruptImageError(
            f"{self.name}: asked for bytes {start}-{end - 1} and got {n} bytes. The "
            "object is shorter than its header says, or it changed; load it again."
        )

    def read_runs(self, buf: memoryview, runs: Iterable[tuple[int, int, int]]) -> None:
        """Fill ``buf[at:at + n]`` from ``start`` for every ``(start, at, n)``."""
        plan = plan_requests(runs)
        if not plan:
            return
        ranges = [(lo, hi) for lo, hi, _ in plan]
        dest = np.frombuffer(buf, np.uint8)
        blobs: list[Any]
        if self._direct is None:
            blobs = self.fetch(ranges)
        else:  # a request for one run lands in place; others in a scratch buffer
            self._bounds(ranges)
            flat = dest.data
            blobs = [
                flat[m[0][1] : m[0][1] + m[0][2]] if len(m) == 1 else memoryview(bytearray(hi - lo))
                for lo, hi, m in plan
            ]
            self._attempts(
                list(range(len(plan))),
                self._sender(blobs),
                ranges,
                lambda i, n: self._check_length(n, *ranges[i]),
            )
        for (lo, _hi, members), blob in zip(plan, blobs, strict=True):
            if len(members) == 1 and self._direct is not None:
                continue
            src = np.frombuffer(blob, np.uint8)
            for start, at, n in members:
                dest[at : at + n] = src[start - lo : start - lo + n]

    def _sender(self, targets: list[memoryview]) -> Any:
        """What :meth:`_attempts` calls to send requests whose bodies land in `targets`."""

        def send(todo: list[int], ranges: list[tuple[int, int]]) -> list[Any]:
            wanted = [ranges[i] for i in todo]
            got = self._direct(self.fspath, self._kwargs, wanted, [targets[i] for i in todo])
            landed = [
                min(g, hi - lo)
                for g, (lo, hi) in zip(got, wanted, strict=True)
                if isinstance(g, int)
            ]
            _remote._count(len(todo), sum(landed))
            return got

        return send

    def read_into(self, buf: memoryview, offset: int) -> None:
        self.read_runs(buf, [(offset, 0, len(buf))])

    def pread(self, n: int, offset: int) -> bytes:
        end = min(self.size, offset + n)
        return self.fetch([(offset, end)])[0] if end > offset else b""

    def block(self, k: int) -> bytes:
        """Block `k` of :data:`~lazyimg._io.remote_stream.STREAM_BLOCK` bytes (kept if spilling)."""
        spill = self._spill
        lo = k * STREAM_BLOCK
        hi = min(self.size, lo + STREAM_BLOCK)
        if spill is not None and spill.holds(lo, hi):
            return spill.pread(lo, hi)
        data = self.fetch([(lo, hi)])[0] if hi > lo else b""
        if spill is not None:
            spill.put(k, lo, data)
        return data

    def stream(self) -> BinaryIO:
        """The object as a sequential file (large blocks, read ahead); the caller closes it.

        The first stream starts keeping what it fetches in a :class:`Spill`, so
        later reads of those bytes in this process (a decoder seeking back, reads
        from the seek index that pass built) never fetch them again.
        """
        with self._spill_lock:
            if self._spill is None:
                self._spill = Spill.make(self.size)
        return RemoteStream(self)  # type: ignore[return-value]

    def close(self) -> None:
        spill, self._spill = self._spill, None
        if spill is not None:
            spill.close()
