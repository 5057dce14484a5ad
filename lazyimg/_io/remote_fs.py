"""Remote objects: opening their filesystem, asking their identity, and what errors mean.

:func:`filesystem` opens the fsspec filesystem of a URL from its storage options
(a missing package gives an error naming lazyimg's extra); :func:`stat` asks an
object's size and version (one metadata request); :func:`check` compares them
with a :class:`~lazyimg._io.remote.RemoteId`. :func:`translate` turns a failed
request into lazyimg's errors (404 -> ImageNotFoundError, 403 -> access denied
pointing at ``storage_options``, 412 -> FileChangedError), naming the URL
without credentials; :func:`transient` says which failures are retried, with
backoff, by :func:`retrying` and :class:`~lazyimg._io.remote_file.RemoteFile`.
Filesystems are cached per process and forgotten in a forked child.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

from lazyimg._io.remote import (
    BACKOFF_S,
    EXTRAS,
    RETRIES,
    Options,
    RemoteId,
    protocol,
    redact,
    scrub,
)
from lazyimg.errors import (
    FileChangedError,
    ImageNotFoundError,
    LazyImgError,
    MissingDependencyError,
)


def filesystem(url: str, options: Options) -> tuple[Any, str]:
    """``(fs, path)`` for `url`; a missing filesystem package names the extra to install."""
    try:
        import fsspec.core
    except ImportError:  # pragma: no cover - fsspec comes with dask
        raise MissingDependencyError(
            f"{redact(url)}: reading URLs needs fsspec (pip install fsspec)."
        ) from None
    try:
        return fsspec.core.url_to_fs(url, **_tuned(protocol(url), options.as_dict()))
    except ImportError:
        proto = protocol(url)
        extra = EXTRAS.get(proto)
        hint = (
            f'pip install "lazyimg[{extra}]"' if extra else "install the fsspec filesystem for it"
        )
        raise MissingDependencyError(
            f"{redact(url)}: no filesystem for {proto}:// URLs is installed; {hint}."
        ) from None
    except ValueError as err:
        raise LazyImgError(
            f"{redact(url)}: cannot open this URL ({scrub(str(err), options)})."
        ) from None


#: aiohttp's read buffer for HTTP(S): its default (64 KiB) pauses the connection every
#: few hundred KiB, which halved the rate of large range requests on loopback.
HTTP_READ_BUFSIZE = 4 * 2**20


def _tuned(proto: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` with lazyimg's transfer settings added where the user set none."""
    if proto in ("http", "https"):
        client = dict(options.get("client_kwargs") or {})
        client.setdefault("read_bufsize", HTTP_READ_BUFSIZE)
        options = {**options, "client_kwargs": client}
    return options


def _version(info: dict[str, Any]) -> str | None:
    for key in ("ETag", "etag", "VersionId", "version_id", "generation", "md5Hash"):
        if info.get(key):
            return f"{key}={str(info[key]).strip(chr(34))}"
    for key in ("LastModified", "Last-Modified", "last_modified", "mtime", "updated"):
        if info.get(key):
            return f"{key}={info[key]}"
    return None


def stat(url: str, options: Options, fs: Any = None, path: str | None = None) -> RemoteId:
    """The identity of the object at `url` now (one metadata request)."""
    if fs is None or path is None:
        fs, path = filesystem(url, options)
    with contextlib.suppress(Exception):
        fs.invalidate_cache(path)
    info = retrying(lambda: fs.info(path), url, options, what="ask for its size")
    if info.get("type") == "directory":
        raise ImageNotFoundError(f"{redact(url)}: is a directory or prefix, not an object.")
    size = info.get("size")
    if size is None:
        raise LazyImgError(
            f"{redact(url)}: the server did not say how large the object is, so it cannot be "
            "read by range. Download it and open the local file."
        )
    return RemoteId.make(url, int(size), _version(info), options)


def conditional(rid: RemoteId) -> dict[str, Any]:
    """Request options that make an HTTP server refuse (412) another version of the object."""
    if protocol(rid.url) in ("http", "https") and (rid.version or "").startswith("ETag="):
        return {"headers": {"If-Match": f'"{rid.version.partition("=")[2]}"'}}  # type: ignore[union-attr]
    return {}


_confirmed = threading.local()


def confirmed(rid: RemoteId) -> None:
    """Note that a conditional request for `rid` just succeeded in this thread."""
    ids = getattr(_confirmed, "ids", None)
    if ids is None:
        ids = _confirmed.ids = set()
    ids.add(rid)


def _take_confirmed(rid: RemoteId) -> bool:
    ids = getattr(_confirmed, "ids", None)
    if not ids or rid not in ids:
        return False
    ids.discard(rid)
    return True


def check(rid: RemoteId) -> None:
    """Raise if the object is gone or no longer the one seen at load.

    Free when this thread's reads of the object since the last check included
    a conditional request (see :func:`conditional`) to a server that honours
    them (probed once per server and process): the object was then still the
    one seen at load, and every byte read came from that version.
    """
    if _take_confirmed(rid) and _honours_if_match(rid):
        return
    now = stat(rid.url, rid.options, *_fs_of(rid))
    if (now.size, now.version) != (rid.size, rid.version):
        raise FileChangedError(
            f"{rid.name}: the object changed after it was opened with lazyimg.load (size "
            f"{rid.size} -> {now.size} bytes, version {rid.version} -> {now.version}). "
            "Results would mix old and new data; call lazyimg.load again to read the new object."
        )


_filesystems: dict[tuple[str, Options], tuple[Any, str]] = {}
#: Whether a server (scheme, host and port) refuses a request whose If-Match fails.
_if_match: dict[str, bool] = {}


def _honours_if_match(rid: RemoteId) -> bool:
    """Ask the server once for a byte under a tag no object has: 412 means it checks tags."""
    origin = "/".join(rid.url.split("/", 3)[:3])
    known = _if_match.get(origin)
    if known is None:
        fs, path = _fs_of(rid)
        try:
            fs.cat_file(path, start=0, end=1, headers={"If-Match": '"lazyimg-no-such-tag"'})
            known = False
        except Exception as err:
            known = _status(err) == 412
        _if_match[origin] = known
    return known


def _fs_of(rid: RemoteId) -> tuple[Any, str]:
    key = (rid.url, rid.options)
    hit = _filesystems.get(key)
    if hit is None:
        hit = _filesystems[key] = filesystem(rid.url, rid.options)
    return hit


def _reset_after_fork() -> None:
    _filesystems.clear()
    _if_match.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def _status(err: BaseException) -> int | None:
    """The HTTP status behind `err` (fsspec wraps some failures, e.g. a 403 on HEAD)."""
    seen = 0
    while err is not None and seen < 5:
        found = _own_status(err)
        if found is not None:
            return found
        err, seen = err.__cause__ or err.__context__, seen + 1  # type: ignore[assignment]
    return None


def _own_status(err: BaseException) -> int | None:
    for attr in ("status", "code"):
        v = getattr(err, attr, None)
        if isinstance(v, int):
            return v
    resp = getattr(err, "response", None)
    if isinstance(resp, dict):
        v = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(v, int):
            return v
    return None


def translate(err: BaseException, url: str, options: Options, what: str) -> Exception:
    """A lazyimg error for a failed request, naming the URL and never the options."""
    name = redact(url)
    status = _status(err)
    if isinstance(err, (FileChangedError, ImageNotFoundError)) or (
        isinstance(err, LazyImgError) and not isinstance(err, ConnectionError)
    ):
        return err
    if status == 404 or (isinstance(err, FileNotFoundError) and status is None):
        return ImageNotFoundError(
            f"{name}: no such object (404 / NoSuchKey). Check the URL, the bucket and the key."
        )
    if isinstance(err, PermissionError) or status in (401, 403):
        return RemoteAccessError(
            f"{name}: access was denied ({status or 'forbidden'}). Pass credentials or a "
            "profile in storage_options (e.g. storage_options={'profile': ...} for S3, or "
            "{'anon': True} for a public bucket)."
        )
    if status in (409, 412):
        return FileChangedError(
            f"{name}: the object changed after it was opened with lazyimg.load (the server "
            "refused a conditional request). Call lazyimg.load again to read the new object."
        )
    detail = scrub(f"{type(err).__name__}: {err}", options)
    return RemoteReadError(f"{name}: could not {what} ({detail}). Check the URL and network.")


class RemoteAccessError(LazyImgError, PermissionError):
    """The server refused access to an object."""


class RemoteReadError(LazyImgError, ConnectionError):
    """A request failed for good (after retries)."""


def transient(err: BaseException) -> bool:
    """Worth retrying: a server error, a timeout or a dropped connection."""
    status = _status(err)
    if status is not None:
        return status >= 500 or status == 429
    if isinstance(err, (FileNotFoundError, PermissionError, LazyImgError)):
        return False
    return isinstance(err, (TimeoutError, ConnectionError, OSError)) or type(err).__name__ in (
        "ClientConnectionError",
        "ServerDisconnectedError",
        "ClientPayloadError",
        "ClientOSError",
    )


def retrying(step: Any, url: str, options: Options, what: str) -> Any:
    pause = BACKOFF_S
    for attempt in range(RETRIES + 1):
        try:
            return step()
        except Exception as err:
            if attempt < RETRIES and transient(err):
                time.sleep(pause)
                pause *= 2
                continue
            raise translate(err, url, options, what) from None
    raise AssertionError("unreachable")  # pragma: no cover
