"""Range requests over HTTP(S) whose bodies land straight in the caller's buffer.

fsspec's ``cat_ranges`` gathers each body into a new ``bytes`` (one copy, and
fresh pages to fault in for every request), which lazyimg then copies into the
chunk's array, all on fsspec's one event-loop thread. Over HTTP lazyimg sends
the range requests itself:

* When the filesystem was given nothing but request headers (no client
  options, no authentication objects, no credentials in the URL), a pool of
  :data:`THREADS` threads, each with its own keep-alive connection per server,
  reads every body with ``readinto`` straight into its destination: the
  socket's bytes are copied once, by the kernel, and receiving runs on every
  core. On loopback this moved a 700 MB object about twice as fast, for less
  CPU per byte, as the event loop did. A redirect, or anything else this
  plain client does not handle, hands the object to the path below for good.
* Otherwise, on fsspec's event loop with its aiohttp session (and so with
  every option the user gave it), each piece of a body is copied into its
  destination as it arrives.

The answer to each request is the number of body bytes the server sent (or
the exception it raised), so the caller checks lengths and retries as for
``cat_ranges``. Other filesystems (S3, GCS) go through ``cat_ranges``.
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from lazyimg._io.remote import LazyPool

__all__ = ["direct_reader"]

#: Threads (and so requests in flight) of the plain client, per process.
THREADS = 64
#: Seconds a plain-client request may stall before it fails (and is retried).
TIMEOUT_S = 60.0


def direct_reader(fs: Any, url: str = "") -> Any:
    """A function ``get(url, kwargs, ranges, targets) -> list[int | exception]``, or None.

    None when `fs` is not fsspec's HTTP filesystem (or lacks what this needs).
    """
    if type(fs).__name__ != "HTTPFileSystem" or not hasattr(fs, "set_session"):
        return None
    slow = _loop_reader(fs)
    if not _plain(fs, url):
        return slow
    return _Plain(fs, slow)


def _plain(fs: Any, url: str) -> bool:
    """Whether the plain client can send what fsspec's session would (see the module)."""
    parts = urlsplit(url)
    client = set(getattr(fs, "client_kwargs", {}) or {}) - {"read_bufsize"}
    request = getattr(fs, "kwargs", {}) or {}
    headers = request.get("headers", {})
    return (
        parts.scheme in ("http", "https")
        and not parts.username
        and not parts.password
        and getattr(fs, "get_client", None) is _default_get_client()
        and not client
        and set(request) <= {"headers"}
        and isinstance(headers, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    )


def _default_get_client() -> Any:
    from fsspec.implementations.http import get_client

    return get_client


class HTTPStatusError(OSError):
    """A plain-client request answered with an error status (``status``)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status


class _Redirected(Exception):
    """The server redirects: the plain client leaves the object to fsspec's session."""


class _Plain:
    """The plain client (see the module docstring); falls back to `slow` after a redirect."""

    def __init__(self, fs: Any, slow: Any) -> None:
        self.headers = dict((getattr(fs, "kwargs", {}) or {}).get("headers", {}))
        self.slow = slow
        self.redirected = False

    def __call__(
        self, url: str, kwargs: dict[str, Any], ranges: list[tuple[int, int]], targets: list[Any]
    ) -> list[Any]:
        if self.redirected:
            return self.slow(url, kwargs, ranges, targets)
        headers = {**self.headers, **kwargs.get("headers", {})}
        pool = _pool()
        futures = [
            pool.submit(_get_into, url, headers, lo, hi, t)
            for (lo, hi), t in zip(ranges, targets, strict=True)
        ]
        out: list[Any] = []
        for f in futures:
            try:
                out.append(f.result())
            except BaseException as err:
                out.append(err)
        if any(isinstance(x, _Redirected) for x in out):
            self.redirected = True
            return self.slow(url, kwargs, ranges, targets)
        return out


def _get_into(url: str, headers: dict[str, str], start: int, end: int, target: Any) -> int:
    """Fetch bytes ``[start, end)`` of `url` into `target`; the body's length."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    wanted = {**headers, "Range": f"bytes={start}-{end - 1}"}
    idle = _idle(parts.scheme, parts.netloc)
    conn = idle.pop() if idle else _connect(parts.scheme, parts.netloc)
    reuse = False
    try:
        try:
            conn.request("GET", path, headers=wanted)
            resp = conn.getresponse()
        except (ConnectionError, http.client.HTTPException):
            conn.close()  # a kept-alive connection the server had closed: once more, afresh
            conn = _connect(parts.scheme, parts.netloc)
            conn.request("GET", path, headers=wanted)
            resp = conn.getresponse()
        if 300 <= resp.status < 400 and resp.status != 304:
            raise _Redirected(resp.status)
        if resp.status >= 400:
            resp.read()
            reuse = not resp.will_close
            raise HTTPStatusError(resp.status, resp.reason)
        length = resp.length
        if length is not None and length > len(target):  # the whole object: range ignored
            return int(length)
        view, done = memoryview(target), 0
        while done < len(view):
            n = resp.readinto(view[done:])
            if not n:
                break
            done += n
        reuse = done == len(view) and not resp.will_close and resp.read(1) == b""
        return done
    finally:
        if reuse:
            _idle(parts.scheme, parts.netloc).append(conn)
        else:
            conn.close()


_local = threading.local()
_pool = LazyPool(THREADS, "lazyimg-http").get


def _idle(scheme: str, netloc: str) -> list[Any]:
    """This thread's idle connections to a server."""
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    return conns.setdefault((scheme, netloc), [])


def _connect(scheme: str, netloc: str) -> Any:
    global _tls
    if scheme == "https":
        if _tls is None:
            _tls = ssl.create_default_context()  # verifies certificates, as aiohttp does
        return http.client.HTTPSConnection(netloc, timeout=TIMEOUT_S, context=_tls)
    return http.client.HTTPConnection(netloc, timeout=TIMEOUT_S)


_tls: ssl.SSLContext | None = None


def _after_fork() -> None:
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_after_fork)


def _loop_reader(fs: Any) -> Any:
    def get(
        url: str, kwargs: dict[str, Any], ranges: list[tuple[int, int]], targets: list[memoryview]
    ) -> list[Any]:
        from fsspec.asyn import sync

        return list(sync(fs.loop, _get_all, fs, url, kwargs, ranges, targets))

    return get


async def _get_all(
    fs: Any,
    url: str,
    kwargs: dict[str, Any],
    ranges: list[tuple[int, int]],
    targets: list[memoryview],
) -> list[Any]:
    session = await fs.set_session()
    kw = {**fs.kwargs, **kwargs}
    headers = {**kw.pop("headers", {})}
    coros = [
        _aget_into(fs, session, url, kw, headers, start, end, target)
        for (start, end), target in zip(ranges, targets, strict=True)
    ]
    import asyncio

    return list(await asyncio.gather(*coros, return_exceptions=True))


async def _aget_into(
    fs: Any,
    session: Any,
    url: str,
    kw: dict[str, Any],
    headers: dict[str, str],
    start: int,
    end: int,
    target: memoryview,
) -> int:
    """Fetch bytes ``[start, end)`` into `target`; the body's length (may exceed `target`)."""
    wanted = {**headers, "Range": f"bytes={start}-{end - 1}"}
    async with session.get(fs.encode_url(url), headers=wanted, **kw) as r:
        fs._raise_not_found_for_status(r, url)
        pos = 0
        async for piece in r.content.iter_any():
            n = len(piece)
            if pos + n > len(target):  # more than asked: the server ignored the range
                length = r.content_length
                return int(length) if length is not None else pos + n
            target[pos : pos + n] = piece
            pos += n
        return pos
