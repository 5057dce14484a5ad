"""Remote objects (S3, GCS, HTTP, any fsspec URL): URLs, identities and request plans.

Requests, errors and filesystems: :mod:`lazyimg._io.remote_fs`; reads:
:mod:`lazyimg._io.remote_file`.

A :class:`RemoteId` is what a graph carries for an object: its URL, the size and
version tag (ETag, else version id, else last-modified) seen at
:func:`lazyimg.load`, and the storage options, which are kept out of every repr,
message and token. Each process (a thread pool's or a dask worker's) opens its
own filesystem from those options: :class:`RemoteFile`, the remote
implementation of :class:`~lazyimg._io.source.ByteSource`.

Reads: the byte runs of a chunk are grouped (runs closer than :data:`GAP_BYTES`
become one request, long runs are cut into :data:`PART_BYTES` parts) and fetched
concurrently with ``fs.cat_ranges``. Transient failures (5xx, timeouts, dropped
connections) are retried with backoff. Identity: HTTP requests carry
``If-Match: <ETag>`` so a replaced object answers 412; every object is also
checked (one metadata request) after a task's reads, so an object replaced
during or after :func:`lazyimg.load` gives :class:`~lazyimg.errors.FileChangedError`.

fsspec and its filesystems are imported on first use, never by ``import lazyimg``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: Runs closer than this are fetched as one request (the gap is read through).
GAP_BYTES = 64 * 2**10
#: Longest single request; longer runs are cut into parts fetched concurrently.
PART_BYTES = 4 * 2**20
#: What one more request costs, in bytes, for the unproxy rule: its share of a
#: round trip when requests overlap. With 20 ms per request and up to 64 in flight
#: (lazyimg's HTTP client) that is ~0.3 ms, 64-200 KB at the 200-700 MB/s one
#: process receives on the 2-core loopback benchmark; the low end is taken, so runs
#: far apart stay separate requests (runs closer than GAP_BYTES share one anyway).
REQUEST_OVERHEAD_BYTES = 64 * 2**10
#: Retries of a transient failure, and the first pause (doubled each time).
RETRIES = 4
BACKOFF_S = 0.2

#: Which extra brings which protocol's filesystem.
EXTRAS = {"s3": "s3", "s3a": "s3", "http": "http", "https": "http", "gs": "gcs", "gcs": "gcs"}

#: Range requests made and bytes they returned, in this process (tests assert on them).
requests = 0
bytes_received = 0
_lock = threading.Lock()


def _count(n_requests: int, nbytes: int) -> None:
    global requests, bytes_received
    with _lock:
        requests += n_requests
        bytes_received += nbytes


def is_url(path: Any) -> bool:
    """Whether `path` is a URL of a remote filesystem (``file://`` is local)."""
    return (
        isinstance(path, str)
        and bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path))
        and (not path.lower().startswith("file://"))
    )


def protocol(url: str) -> str:
    return url.split("://", 1)[0].lower()


def redact(url: str) -> str:
    """`url` without credentials (``user:pass@``) or a query string (signed URLs)."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", url)
    return url.split("?", 1)[0]


class RemotePath(str):
    """A URL where lazyimg keeps a path (``img.path``, ``attrs["source"]``), credentials removed."""

    __slots__ = ()

    def __new__(cls, url: str) -> RemotePath:
        return super().__new__(cls, redact(url))

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]


class Options:
    """Storage options kept out of reprs, messages and dask tokens; compared by value."""

    __slots__ = ("_items",)

    def __init__(self, options: dict[str, Any] | None) -> None:
        self._items = dict(options or {})

    def as_dict(self) -> dict[str, Any]:
        return dict(self._items)

    def secrets(self) -> list[str]:
        """Every string in the options (any could be a key or token), longest first."""
        out: list[str] = []

        def walk(v: Any) -> None:
            if isinstance(v, str) and len(v) >= 4:
                out.append(v)
            elif isinstance(v, dict):
                for x in v.values():
                    walk(x)
            elif isinstance(v, (list, tuple)):
                for x in v:
                    walk(x)

        walk(self._items)
        return sorted(set(out), key=len, reverse=True)

    def _key(self) -> str:
        return repr(sorted((k, repr(v)) for k, v in self._items.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"<storage options: {len(self._items)} hidden>"

    def __getstate__(self) -> dict[str, Any]:
        return self._items

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._items = state

    def __dask_tokenize__(self) -> str:
        return "lazyimg.Options"  # the data is named by URL and version, not by credentials


@dataclass(frozen=True)
class RemoteId:
    """A remote object by URL and identity: reads refuse it if size or version changed.

    ``path`` is the URL without credentials (what messages show); ``url`` is the
    URL as given, kept out of reprs.
    """

    path: str
    size: int
    version: str | None
    options: Options = field(default_factory=lambda: Options(None), repr=False)
    url: str = field(default="", repr=False)

    @classmethod
    def make(cls, url: str, size: int, version: str | None, options: Options) -> RemoteId:
        return cls(redact(url), size, version, options, url)

    @property
    def name(self) -> str:
        return self.path

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("lazyimg.RemoteId", self.path, self.size, self.version)


def scrub(text: str, options: Options) -> str:
    """`text` with every storage-option string replaced by ``***``."""
    for secret in options.secrets():
        text = text.replace(secret, "***")
    return text


def plan_requests(
    runs: Iterable[tuple[int, int, int]], gap: int = GAP_BYTES, part: int = PART_BYTES
) -> list[tuple[int, int, list[tuple[int, int, int]]]]:
    """Group ``(start, at, n)`` runs into requests ``(start, end, runs)``.

    Runs in file order whose gap is under `gap` share one request; a request
    longer than `part` is cut (at run boundaries, or inside a long run).
    """
    out: list[tuple[int, int, list[tuple[int, int, int]]]] = []
    for start, at, n in sorted(runs):
        if n <= 0:
            continue
        while n > part:  # a long run: parts of its own
            out.append((start, start + part, [(start, at, part)]))
            start, at, n = start + part, at + part, n - part
        if out and start - out[-1][1] < gap and start + n - out[-1][0] <= part:
            lo, hi, members = out[-1]
            out[-1] = (lo, max(hi, start + n), [*members, (start, at, n)])
        else:
            out.append((start, start + n, [(start, at, n)]))
    return out


class LazyPool:
    """A thread pool made on first use (and afresh in a forked child, which has no threads)."""

    def __init__(self, threads: int, name: str) -> None:
        self.threads, self.name = threads, name
        self._pool: Any = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def get(self) -> Any:
        """The ``concurrent.futures.ThreadPoolExecutor``."""
        with self._lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
            return self._pool

    def _forget(self) -> None:
        self._pool, self._lock = None, threading.Lock()
