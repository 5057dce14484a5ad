"""The sequential gzip decoder: opening it, filling buffers from it, exporting its seek points.

rapidgzip when installed (parallel from 4 cores on), else indexed_gzip. Both record
seek points as they decode; :mod:`lazyimg._io.gzip.reader` drives one per file.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from lazyimg._io.gzip.inflate import _workers

#: Compressed bytes between the seek points an index build records (about).
SPACING = 4 * 2**20
#: Fewest cores on which an index build decodes with several threads.
BUILD_PARALLEL_FROM = 4


def _merge(runs: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Runs in file order, those adjoining both in the file and in the buffer joined."""
    out: list[tuple[int, int, int]] = []
    for start, at, n in sorted(runs):
        if out and sum(out[-1][::2]) == start and out[-1][1] + out[-1][2] == at:
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + n)
        elif n:
            out.append((start, at, n))
    return out


def _fill_from(stream: Any, out: memoryview) -> int:
    """``readinto`` until `out` is full or the stream ends; bytes read."""
    done = 0
    while done < len(out):
        n = stream.readinto(out[done:])
        if not n:
            break
        done += n
    return done


class _DecodeError(Exception):
    """The sequential decoder failed at or after uncompressed byte `upos`."""

    def __init__(self, upos: int, cause: BaseException) -> None:
        super().__init__(upos, cause)
        self.upos, self.cause = upos, cause


def _open_builder(path: Any, fallback: bool = False) -> Any:
    """A sequential decoder that records seek points: rapidgzip, else indexed_gzip.

    `path` is a local path or a binary file object (a remote object's stream).
    """
    try:
        if fallback:
            raise ImportError
        import rapidgzip
    except ImportError:
        from indexed_gzip import IndexedGzipFile

        if not isinstance(path, str):
            return IndexedGzipFile(fileobj=path, spacing=2 * SPACING, readbuf_size=SPACING)
        return IndexedGzipFile(path, spacing=2 * SPACING, readbuf_size=SPACING)
    return rapidgzip.RapidgzipFile(path, parallelization=_build_threads(), chunk_size=SPACING)


def _build_threads() -> int:
    """rapidgzip's threads: its parallel decoder pays off from 4 cores on.

    On 2 cores it decoded a level-6 fMRI file at ~260 MB/s with 2 threads and
    ~480 MB/s with 1, which also leaves the second core to the tasks that
    consume the data.
    """
    cores = _workers()
    return cores if cores >= BUILD_PARALLEL_FROM else 1


def _export(stream: Any) -> bytes:
    out = io.BytesIO()
    if hasattr(stream, "block_offsets"):  # rapidgzip
        stream.export_index(out)
    else:  # indexed_gzip: complete the index (reads may have skipped building it)
        stream.build_full_index()
        stream.export_index(fileobj=out)
    return out.getvalue()
