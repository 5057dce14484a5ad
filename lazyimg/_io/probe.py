"""Plausibility of data lengths a header cannot vouch for, checked at load with bounded work.

A gzip stream states its length (mod 2**32) in its trailer
(:mod:`lazyimg._io.gzip.check`); bzip2 states none, and zstd only per frame,
when the writer recorded it. A header claiming 32767**4 voxels on a 100-byte
stream would otherwise be believed until a read, after a long wait and a huge
graph. :func:`check_stream_length` decompresses at most :data:`PROBE_BYTES` of
the stream: if it ends before the header's bytes (or before the probe's limit),
the file is refused, naming it. A longer stream passes; a stream that ends
early beyond the probe is still caught by the read that reaches its end.
:func:`check_rec_size` does the same for a PAR/REC pair (nibabel would fail
only at the first read).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lazyimg.errors import CorruptImageError

#: Most uncompressed bytes decompressed at load to check a stream's length.
PROBE_BYTES = 4 * 2**20


def open_stream(path: Any, compression: str) -> Any:
    """A sequential decompressing stream (bzip2 or zstd); gzip goes through ``_gzip``."""
    if compression == "bz2":
        import bz2

        return bz2.open(path, "rb")
    return _zstd_open(path)


def _zstd_open(path: Any) -> Any:
    try:
        from compression import zstd

        return zstd.open(path, "rb")
    except ImportError:
        from backports import zstd as bzstd

        return bzstd.open(path, "rb")


def _frame_content_size(path: str) -> int | None:
    """The content size a single-frame zstd file declares, or None."""
    try:
        from compression import zstd
    except ImportError:  # pragma: no cover - Python < 3.14
        try:
            from backports import zstd
        except ImportError:
            return None
    with open(path, "rb") as f:
        head = f.read(18)  # a frame header is at most 18 bytes
    try:
        size = zstd.get_frame_info(head).decompressed_size
    except Exception:
        return None
    return None if size is None else int(size)


def check_stream_length(path: str, compression: str, needed: int) -> None:
    """Refuse `path` if its stream holds fewer than `needed` uncompressed bytes (bounded)."""
    if compression == "zstd":
        declared = _frame_content_size(path)
        if declared is not None and declared >= needed:
            return  # the first frame alone holds enough
    limit = min(needed, PROBE_BYTES)
    got, why = 0, ""
    buf = bytearray(min(limit, 2**20) or 1)
    try:
        with open_stream(path, compression) as stream:
            while got < limit:
                n = stream.readinto(memoryview(buf)[: min(len(buf), limit - got)])
                if not n:
                    break
                got += n
    except (OSError, EOFError, ValueError) as err:
        why = f" ({type(err).__name__}: {err})"
    if got < limit:
        raise CorruptImageError(
            f"{path}: the header describes {needed} uncompressed bytes, but the {compression} "
            f"stream ends after {got}{why}. The file is truncated, corrupt, or its header is "
            "wrong; copy or export it again."
        )


def check_rec_size(img: Any, proxy: Any) -> None:
    """A ``.REC`` shorter than its ``.PAR`` describes fails at load, not at compute."""
    rec = img.file_map["image"].filename
    rec_shape = getattr(proxy, "_rec_shape", None)
    if not isinstance(rec, (str, os.PathLike)) or rec_shape is None:
        return
    needed = int(np.prod(rec_shape, dtype=object)) * np.dtype(proxy.dtype).itemsize
    size = os.stat(rec).st_size
    if size < needed:
        raise CorruptImageError(
            f"{os.fspath(rec)}: the file has {size} bytes but its .PAR header describes {needed}. "
            "The .REC is truncated; copy or export it again."
        )
