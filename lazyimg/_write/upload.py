"""Saving to a URL: streamed as a multipart upload, or written locally then uploaded.

To an object store (``s3://``, ``gs://``: :func:`streams`),
``lazyimg.save(x, "s3://bucket/out.nii.gz", storage_options=...)`` streams
(:func:`stream_to_url`): the header, then the data in file order, a window of
slabs along the last axis at a time (computed together by dask, at most
:data:`WINDOW_BYTES`), then any footer, written to the filesystem's file object
in pieces of :data:`PART_BYTES`, which it sends as the parts of a multipart
upload. A ``.nii.gz`` or ``.mgz`` is a series of gzip members -- the header,
then one per slab, compressed in parallel -- which is one valid gzip file
(nibabel, ``gzip -d`` and lazyimg read it). Memory stays at about one window
plus two parts, however large the image. The object appears only when the
upload completes; any failure aborts the multipart upload, so nothing is left
at the target, not even a pending upload.

Other filesystems, and saves returned as a Delayed (``compute=False``, whose
graph should hold the chunks' tasks rather than one task computing them), get
the file written chunk by chunk into a private temporary folder with the same writer as a local save, then handed to the filesystem's
``put_file`` (:func:`save_to_url`); the temporary file is removed either way.
The storage options are used here only, never shown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from lazyimg._io.remote import Options, protocol, redact
from lazyimg._io.remote_fs import filesystem, retrying, translate

__all__ = ["save_to_url", "stream_to_url", "streams"]

#: Object stores whose objects appear only when a (multipart) upload completes.
STREAMED = ("s3", "s3a", "gs", "gcs")
#: Bytes handed to the upload at a time: one part (S3 wants at least 5 MiB).
PART_BYTES = 8 * 2**20
#: Most uncompressed bytes of slabs computed together.
WINDOW_BYTES = 64 * 2**20

#: Most bytes a streamed save of this process held at once (window and upload
#: buffer; for tests).
peak_buffered = 0
_peak_lock = threading.Lock()


def streams(url: str) -> bool:
    """Whether a save to `url` is streamed as a multipart upload."""
    return protocol(url) in STREAMED


def stream_to_url(
    data: Any,
    head: bytes,
    offset: int,
    footer: bytes,
    level: int | None,
    url: str,
    storage_options: dict[str, Any] | None,
) -> str:
    """Stream an image (header, dask `data` in file order, footer) to `url` (see the module).

    `level` is the gzip level, None for an uncompressed file. Returns the URL
    without credentials.
    """
    options = Options(storage_options)
    fs, path = filesystem(url, options)

    def run() -> str:
        f = retrying(lambda: fs.open(path, "wb", block_size=PART_BYTES), url, options, "upload")
        try:
            with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
                _write(f, _gzip(head.ljust(offset, b"\0"), level))
                for window in _windows(data):
                    encoded = list(pool.map(lambda b: _gzip(b, level), window))
                    held = sum(len(b) for b in window) + sum(len(b) for b in encoded)
                    del window
                    for piece in encoded:
                        _write(f, piece, held)
                    del encoded
                if footer:
                    _write(f, _gzip(footer, level))
            f.close()  # completes the multipart upload: the object appears
        except BaseException as err:
            with contextlib.suppress(Exception):
                f.discard()  # aborts the multipart upload
            f.closed = True  # never completed later, e.g. when collected
            if isinstance(err, Exception) and _is_upload_error(err):
                raise translate(err, url, options, "upload the image") from None
            raise
        return redact(url)

    return run()


def _is_upload_error(err: Exception) -> bool:
    """A failure of the store (not of computing the data), to be reported with the URL."""
    return type(err).__module__.split(".")[0] in ("botocore", "aiobotocore", "s3fs", "gcsfs")


def _windows(data: Any) -> Iterator[list[memoryview]]:
    """The bytes of `data` in file (Fortran) order: slabs along the last axis, a window at a time."""
    import dask

    edges = np.cumsum((0, *data.chunks[-1])).tolist()
    per = data.dtype.itemsize * int(np.prod(data.shape[:-1], dtype=np.int64))
    i = 0
    while i < len(edges) - 1:
        j = i + 1
        while j < len(edges) - 1 and (edges[j + 1] - edges[i]) * per <= WINDOW_BYTES:
            j += 1
        bounds = zip(edges[i:j], edges[i + 1 : j + 1], strict=True)
        slabs = dask.compute(*[data[..., a:b] for a, b in bounds])
        yield [np.ravel(s, order="F").view(np.uint8).data for s in slabs]
        del slabs  # before the next window is computed
        i = j


def _gzip(raw: Any, level: int | None) -> Any:
    """`raw` as one gzip member (no name, zero time), or as it is when `level` is None."""
    if level is None:
        return raw
    z = zlib.compressobj(level, zlib.DEFLATED, 31)
    return z.compress(raw) + z.flush()


def _write(f: Any, data: Any, held: int = 0) -> None:
    """Hand `data` to the upload a part at a time, noting the most bytes held."""
    global peak_buffered
    view = memoryview(data).cast("B")
    for at in range(0, len(view), PART_BYTES):
        f.write(view[at : at + PART_BYTES])
        buffer = getattr(f, "buffer", None)
        now = held + (buffer.tell() if buffer is not None else 0)
        with _peak_lock:
            peak_buffered = max(peak_buffered, now)


def save_to_url(
    save: Callable[..., Any],
    obj: Any,
    url: str,
    storage_options: dict[str, Any] | None,
    compute: bool,
    **kwargs: Any,
) -> Any:
    """Save `obj` to `url` through a local temporary file; returns `url` (or a Delayed)."""
    options = Options(storage_options)
    fs, path = filesystem(url, options)  # fails early, naming the extra, if none is installed
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    folder = tempfile.mkdtemp(prefix="lazyimg-upload-")
    local = os.path.join(folder, name)

    def upload(_: Any = None) -> str:
        try:
            retrying(lambda: fs.put_file(local, path), url, options, what="upload the image")
            return redact(url)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    try:
        written = save(obj, local, compute=compute, **kwargs)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if compute:
        return upload()
    import dask

    return dask.delayed(upload, pure=False)(written)
