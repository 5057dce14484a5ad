"""The seek-point index of a gzip file: what it is, how it is saved, when it is trusted.

An index (:class:`GzipIndex`) lists seek points through one gzip stream: for
each, its compressed offset (to the bit), its uncompressed offset, and the
32 KiB of uncompressed data before it that deflate may refer back to (its
window; none at the start of a stream). A raw inflater can start afresh at any
point, which is how :mod:`lazyimg._io.gzip.inflate` reads from the middle of a file and
inflates in several threads at once. The points are recorded by the reader's
sequential decoder (rapidgzip or indexed_gzip) on a pass whose CRC-32 and
length matched the gzip trailer, and come in indexed_gzip's ``GZIDX`` v1 layout
(which indexed_gzip and rapidgzip import too); the arrays of a
:class:`GzipIndex` are views of that payload.

An index is built once per file identity (path, size, mtime) and kept in a
per-process registry (:func:`lookup`, :func:`keep`). It is saved in the
``GZIDX`` layout behind a header that records the file's size, mtime and a
digest of its first and last 64 KiB, either beside the data as
``<file>.gzidx`` or in the cache directory (``$LAZYIMG_CACHE_DIR``, else the
user cache directory + ``lazyimg``; it keeps the :data:`MAX_SAVED` most
recently written). Lookups try beside the data, then the cache. A saved index
whose header does not match the file is stale or foreign and is rebuilt, never
trusted; a damaged one likewise. ``$LAZYIMG_GZIP_INDEX`` says where new indexes
go: ``cache`` (default), ``beside`` (falls back to the cache where the data's
folder is read-only) or ``off`` (memory only). Files under
:data:`SAVE_MIN_BYTES`, and indexes without a seek point past the start, stay
in memory: rebuilding them costs as little. Indexes live in processes and
files, never in a dask graph.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lazyimg._io.identity import FileId

__all__ = ["GzipIndex", "cache_dir", "keep", "lookup", "save"]

#: Files smaller than this (compressed), or whose index has no seek point past the
#: start, keep their index in memory only.
SAVE_MIN_BYTES = 2**20
#: Indexes one process keeps; saved ones beyond this many in the cache are pruned.
MAX_INDEXES = 32
MAX_SAVED = 512

_MAGIC = b"LAZYIMG-GZIDX\x00"
_FORMAT = 1
_PRINT_BYTES = 64 * 2**10
_POINT = np.dtype([("c", "<u8"), ("u", "<u8"), ("bits", "u1"), ("data", "u1")])

#: Indexes this process built by decoding a stream to its end.
index_builds = 0
#: Indexes this process loaded from a saved file.
index_loads = 0

_counter_lock = threading.Lock()


def _count(builds: int = 0, loads: int = 0) -> None:
    global index_builds, index_loads
    with _counter_lock:
        index_builds += builds
        index_loads += loads


# --------------------------------------------------------------------------- the index


@dataclass(frozen=True, eq=False)
class GzipIndex:
    """The seek points of one gzip file; the arrays view ``payload`` (``GZIDX`` v1)."""

    payload: bytes
    compressed_size: int
    uncompressed_size: int
    cpos: np.ndarray
    """Compressed offset of each point: the first whole byte after it."""
    upos: np.ndarray
    """Uncompressed offset of each point."""
    bits: np.ndarray
    """Bits of the byte before ``cpos`` that belong to the point (0-7)."""
    window_at: np.ndarray
    """Where each point's window starts in ``payload``; -1 at a stream start."""
    window_size: int

    @classmethod
    def parse(cls, payload: bytes, compressed_size: int) -> GzipIndex:
        """Read a ``GZIDX`` export; ValueError unless it is sound and fits the file size."""
        if payload[:5] != b"GZIDX" or len(payload) < 35 or payload[5] != 1:
            raise ValueError("not a GZIDX version 1 index")
        csize, usize, _, wsize, npoints = struct.unpack_from("<QQIII", payload, 7)
        if csize != compressed_size:
            raise ValueError(f"index is for {csize} compressed bytes, file has {compressed_size}")
        end = 35 + npoints * _POINT.itemsize
        if npoints == 0 or end > len(payload):
            raise ValueError("index has no seek points or is cut short")
        pts = np.frombuffer(payload, _POINT, npoints, 35)
        has = pts["data"].astype(bool)
        window_at = np.full(npoints, -1, np.int64)
        window_at[has] = end + wsize * np.arange(int(has.sum()), dtype=np.int64)
        cpos, upos = pts["c"].astype(np.int64), pts["u"].astype(np.int64)
        if (
            end + int(has.sum()) * wsize != len(payload)
            or upos[0] != 0
            or np.any(np.diff(upos) < 0)
            or np.any(np.diff(cpos) < 0)
            or cpos[-1] > csize
            or upos[-1] > usize
            or np.any(pts["bits"] > 7)
            or (bool(has.any()) and wsize != 32768)
        ):
            raise ValueError("index is inconsistent")
        return cls(
            payload, csize, usize, cpos, upos, pts["bits"].astype(np.int64), window_at, wsize
        )

    @property
    def max_gap(self) -> int:
        """Largest distance between seek points, in uncompressed bytes."""
        return int(np.diff(np.append(self.upos, self.uncompressed_size)).max())

    @property
    def read_overhead(self) -> int:
        """Average lead-in of a read that restarts: half the mean gap between points."""
        return max(1, self.uncompressed_size // (2 * len(self.upos)))

    def point_before(self, offset: int) -> int:
        """The last seek point at or before uncompressed `offset`."""
        return max(0, int(np.searchsorted(self.upos, offset, side="right")) - 1)

    def window(self, i: int) -> bytes:
        at = int(self.window_at[i])
        return b"" if at < 0 else self.payload[at : at + self.window_size]


# --------------------------------------------------------------------------- saved indexes


def cache_dir() -> Path:
    """Where indexes are saved: ``$LAZYIMG_CACHE_DIR``, else the user cache dir + ``lazyimg``."""
    env = os.environ.get("LAZYIMG_CACHE_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32":  # pragma: no cover - platform specific
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "lazyimg" / "Cache"
    if sys.platform == "darwin":  # pragma: no cover - platform specific
        return Path.home() / "Library" / "Caches" / "lazyimg"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lazyimg"


def _policy() -> str:
    return os.environ.get("LAZYIMG_GZIP_INDEX", "cache")


def _beside_path(path: str) -> Path:
    return Path(path + ".gzidx")


def _remote(fid: Any) -> bool:
    return not hasattr(fid, "mtime_ns")  # a RemoteId (URL, size, version tag)


def _stamp(fid: Any) -> Any:
    """What besides size says which version this is: mtime, or a remote version tag."""
    return fid.version if _remote(fid) else fid.mtime_ns


def _where(fid: Any) -> str:
    return fid.path if _remote(fid) else os.path.realpath(fid.path)


def _digest(fid: Any) -> str:
    return f"remote:{fid.version}" if _remote(fid) else _fingerprint(fid.path, fid.size)


def _cache_path(fid: FileId) -> Path:
    key = f"{_where(fid)}\0{fid.size}\0{_stamp(fid)}".encode()
    return cache_dir() / "gzindex" / (hashlib.sha256(key).hexdigest()[:32] + ".gzidx")


def _fingerprint(path: str, size: int) -> str:
    """Digest of the size and the first and last 64 KiB (where the CRC trailer is)."""
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        h.update(f.read(_PRINT_BYTES))
        f.seek(max(0, size - _PRINT_BYTES))
        h.update(f.read(_PRINT_BYTES))
    return h.hexdigest()


def _payload_digest(payload: bytes) -> str:
    """Digest of every seek point and window of a saved index (checked before it is used)."""
    return hashlib.blake2b(payload, digest_size=32).hexdigest()


def saved_places(fid: FileId) -> list[Path]:
    """Where a saved index of `fid` is looked for, in order."""
    return [_cache_path(fid)] if _remote(fid) else [_beside_path(fid.path), _cache_path(fid)]


def _load_saved(fid: FileId) -> GzipIndex | None:
    """The first saved index, beside the data then in the cache, that fits the file."""
    if _policy() == "off":
        return None
    digest = None
    for where in saved_places(fid):
        try:
            with open(where, "rb") as f:
                blob = f.read()
        except OSError:
            continue
        digest = digest or _digest(fid)
        index = _parse_saved(blob, fid, digest)
        if index is not None:
            _count(loads=1)
            return index
    return None


def _parse_saved(blob: bytes, fid: FileId, digest: str) -> GzipIndex | None:
    """The index in a saved file; None if it is for another file, identity or format."""
    start = len(_MAGIC) + 4
    if not blob.startswith(_MAGIC) or len(blob) < start:
        return None
    (hlen,) = struct.unpack_from("<I", blob, len(_MAGIC))
    try:
        head = json.loads(blob[start : start + hlen])
        if not isinstance(head, dict) or (
            head.get("format"),
            head.get("size"),
            head.get("mtime_ns"),
            head.get("fingerprint"),
        ) != (_FORMAT, fid.size, _stamp(fid), digest):
            return None
        payload = blob[start + hlen :]
        if head.get("payload_digest") != _payload_digest(payload):
            return None  # a damaged window or seek point would give wrong values: rebuild
        return GzipIndex.parse(payload, fid.size)
    except ValueError:  # damaged JSON or GZIDX: rebuild
        return None


def save(fid: FileId, index: GzipIndex, where: str | None = None) -> Path | None:
    """Write `index` atomically (beside the data or in the cache); the path, or None."""
    where = where or _policy()
    inner = (index.upos > 0) & (index.upos < index.uncompressed_size)
    if where == "off" or fid.size < SAVE_MIN_BYTES or not inner.any():
        return None  # small, or no seek point past the start: rebuilding costs as little
    head = json.dumps(
        {
            "format": _FORMAT,
            "path": _where(fid),
            "size": fid.size,
            "mtime_ns": _stamp(fid),
            "fingerprint": _digest(fid),
            "uncompressed_size": index.uncompressed_size,
            "payload_digest": _payload_digest(index.payload),
        }
    ).encode()
    targets = [_beside_path(fid.path)] if where == "beside" and not _remote(fid) else []
    for target in [*targets, _cache_path(fid)]:
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(_MAGIC + struct.pack("<I", len(head)) + head + index.payload)
            os.replace(tmp, target)
        except OSError:  # read-only: try the next place, else keep it in memory
            tmp.unlink(missing_ok=True)
            continue
        if target.parent == _cache_path(fid).parent:
            _prune(target.parent)
        return target
    return None


def _prune(folder: Path) -> None:
    """Keep at most MAX_SAVED indexes in the cache, dropping the least recently written."""
    try:
        entries = [e for e in os.scandir(folder) if e.name.endswith(".gzidx")]
        if len(entries) > MAX_SAVED:
            entries.sort(key=lambda e: e.stat().st_mtime_ns)
            for e in entries[: len(entries) - MAX_SAVED]:
                os.unlink(e.path)
    except OSError:  # pragma: no cover - another process pruned first
        pass


_indexes: OrderedDict[FileId, GzipIndex] = OrderedDict()
_indexes_lock = threading.Lock()
_loading_lock = threading.Lock()


def _remember(fid: FileId, index: GzipIndex) -> None:
    with _indexes_lock:
        _indexes[fid] = index
        _indexes.move_to_end(fid)
        while len(_indexes) > MAX_INDEXES:
            _indexes.popitem(last=False)


def _known(fid: FileId) -> GzipIndex | None:
    with _indexes_lock:
        return _indexes.get(fid)


def lookup(fid: FileId) -> GzipIndex | None:
    """The index of `fid` this process holds, else a saved one that fits (then held)."""
    with _loading_lock:  # threads opening the file at once load its index once
        index = _known(fid)
        if index is None:
            index = _load_saved(fid)
            if index is not None:
                _remember(fid, index)
        return index


def keep(fid: FileId, index: GzipIndex, where: str | None = None) -> None:
    """Hold an index just built from an intact stream, count it, and save it."""
    _remember(fid, index)
    _count(builds=1)
    save(fid, index, where)


def _after_fork() -> None:
    global _indexes_lock, _loading_lock, _counter_lock
    _indexes_lock, _loading_lock, _counter_lock = (
        threading.Lock(),
        threading.Lock(),
        threading.Lock(),
    )


os.register_at_fork(after_in_child=_after_fork)
