"""A small HTTP file server that honours ``Range``, for tests and benchmarks on loopback.

Python's ``http.server`` ignores ``Range``; this one answers ``206`` with
``Content-Range``, sends an ``ETag`` (from size and mtime) and honours
``If-Match`` (``412`` when the file changed), and counts what it did so tests
can assert on requests and bytes sent. It sends bodies with ``sendfile`` (so that on loopback the
server costs little CPU next to its client). It can add a per-request latency (like
a distant object store), ignore ranges, refuse access to some names, or fail
the next few requests with ``503`` (to exercise retries). It binds 127.0.0.1
only and stops when its ``with`` block ends.

>>> import tempfile, pathlib, urllib.request
>>> root = pathlib.Path(tempfile.mkdtemp()); _ = (root / "a.bin").write_bytes(b"0123456789")
>>> with RangeServer(root) as server:
...     req = urllib.request.Request(server.url("a.bin"), headers={"Range": "bytes=2-4"})
...     urllib.request.urlopen(req).read(), server.requests, server.bytes_sent
(b'234', 1, 3)
"""

from __future__ import annotations

import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["RangeServer"]


class RangeServer:
    """Serve the files under `root` on ``http://127.0.0.1:<port>/``.

    Attributes
    ----------
    requests, bytes_sent : int
        Requests answered (HEAD included) and body bytes sent since the last :meth:`reset`.
    latency : float
        Seconds each request waits before it is answered.
    ranges : bool
        False: ignore ``Range`` (send the whole file), like a plain static server.
    denied : set of str
        Names answered with ``403``.
    fail_next : int
        This many next requests are answered with ``503``.
    if_match : bool
        False: ignore ``If-Match`` (answer as if it matched), like some static servers.
    moved : dict of str to str
        Names answered with ``302`` and a ``Location`` of the name they map to.
    """

    def __init__(self, root: str | os.PathLike[str], latency: float = 0.0) -> None:
        self.root = Path(root)
        self.latency = latency
        self.ranges = True
        self.denied: set[str] = set()
        self.fail_next = 0
        self.if_match = True
        self.moved: dict[str, str] = {}
        self.requests = self.bytes_sent = 0
        self.log: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, name: str = "") -> str:
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{name}"

    def reset(self) -> None:
        with self._lock:
            self.requests = self.bytes_sent = 0
            self.log.clear()

    def start(self) -> RangeServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> RangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _count(self, method: str, name: str, rng: str | None, nbytes: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes_sent += nbytes
            self.log.append((method, name, rng))


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # a client opens many connections at once (concurrent ranges)


def etag_of(path: Path) -> str:
    st = path.stat()
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'


class _Handler(BaseHTTPRequestHandler):
    owner: RangeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        owner = self.owner
        name = self.path.split("?", 1)[0].lstrip("/")
        rng = self.headers.get("Range")
        owner._count(self.command, name, rng, 0)
        if owner.latency:
            time.sleep(owner.latency)
        with owner._lock:
            fail = owner.fail_next > 0
            owner.fail_next -= int(fail)
        path = (owner.root / name).resolve()
        if fail:
            return self._status(503, name, rng)
        if name in owner.moved:
            self.send_response(302)
            self.send_header("Location", "/" + owner.moved[name])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if name in owner.denied:
            return self._status(403, name, rng)
        if owner.root.resolve() not in path.parents or not path.is_file():
            return self._status(404, name, rng)
        etag = etag_of(path)
        wanted = self.headers.get("If-Match")
        if wanted and wanted not in ("*", etag) and owner.if_match:
            return self._status(412, name, rng)
        size = path.stat().st_size
        start, end, code = 0, size, 200
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng or "") if owner.ranges else None
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            else:
                start = max(0, size - int(m.group(2)))
            if start >= size or end <= start:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            code = 206
        self.send_response(code)
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes" if owner.ranges else "none")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if body:
            self._send_body(path, start, end - start)

    def _send_body(self, path: Path, start: int, n: int) -> None:
        """Send `n` bytes of `path` from `start` with ``sendfile`` (no copy through Python)."""
        owner = self.owner
        with open(path, "rb") as f:
            sent = 0
            while sent < n:
                block = min(8 * 2**20, n - sent)
                with owner._lock:  # counted before it leaves, so a client never sees more
                    owner.bytes_sent += block
                try:
                    done = self.connection.sendfile(f, start + sent, block)
                except (BrokenPipeError, ConnectionResetError):
                    break
                if not done:
                    break
                sent += done

    def _status(self, code: int, name: str, rng: str | None) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
