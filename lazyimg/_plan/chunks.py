"""Pure chunk planning: split an image along its slowest-changing axes on disk.

A chunk is a contiguous slab of the file when it is split only along the
slowest axis (the last for Fortran order, the first for C order). ``"auto"``
makes each chunk as large as dask's ``array.chunk-size`` allows, balanced so
the last chunk is not a sliver; only when a single slab is larger than that
does the next slowest axis get split too, and so on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lazyimg._daskconf import chunk_limit
from lazyimg._plan.index import Selection, view_chunks
from lazyimg.errors import DimensionError

Chunks = tuple[tuple[int, ...], ...]


def _even(n: int, per: int) -> tuple[int, ...]:
    """Split `n` into the fewest pieces of at most `per`: equal ones, the remainder last.

    Equal pieces with a shorter last one is the regular grid Zarr requires; the
    pieces are as small as that many pieces allow, so 600 volumes at up to 113
    per chunk become six chunks of 100, not five of 113 and a sliver of 35.
    """
    if n == 0:
        return (0,)
    pieces = -(-n // max(per, 1))
    size = -(-n // pieces)
    full, rest = divmod(n, size)
    return (size,) * full + ((rest,) if rest else ())


def disk_chunks(shape: tuple[int, ...], itemsize: int, order: str, limit: int) -> Chunks:
    """Chunks along the slowest axes on disk, each at most `limit` bytes where possible.

    Parameters
    ----------
    shape : tuple of int
        Array shape, in array (not disk) order.
    itemsize : int
        Bytes per element in memory.
    order : {"F", "C"}
        Memory layout on disk: "F" means the last axis changes slowest.
    limit : int
        Largest chunk size in bytes.

    Examples
    --------
    >>> disk_chunks((96, 96, 64, 600), 2, "F", 128 * 2**20)
    ((96,), (96,), (64,), (100, 100, 100, 100, 100, 100))
    >>> disk_chunks((2, 10, 20, 20), 8, "C", 32000)
    ((1, 1), (10,), (20,), (20,))
    >>> disk_chunks((2, 10, 20, 20), 8, "C", 1600)
    ((1, 1), (1, 1, 1, 1, 1, 1, 1, 1, 1, 1), (10, 10), (20,))
    """
    slow_first = list(range(len(shape)))
    if order == "F":
        slow_first.reverse()
    chunks: list[tuple[int, ...]] = [(n,) if n else (0,) for n in shape]
    for i, axis in enumerate(slow_first):
        inner = math.prod(shape[a] for a in slow_first[i + 1 :]) * itemsize
        if inner <= limit or i == len(slow_first) - 1:
            per = max(1, limit // max(inner, 1))
            chunks[axis] = _even(shape[axis], per)
            break
        chunks[axis] = (1,) * shape[axis] if shape[axis] else (0,)
    return tuple(chunks)


def coalesce(chunks: Chunks, itemsize: int, limit: int) -> Chunks:
    """Merge neighbouring chunks along each axis while a block stays within `limit` bytes.

    A slice of an image (``[:, :, z, :]``) leaves small pieces of every source
    chunk; merging them back up to the source's block size means fewer tasks
    and fewer, larger reads, without ever making a block bigger than the
    source's largest.

    Examples
    --------
    >>> coalesce(((96,), (96,), (100,) * 6), 2, 96 * 96 * 64 * 100 * 2)
    ((96,), (96,), (600,))
    >>> coalesce(((4,), (1, 1, 1)), 8, 64)
    ((4,), (2, 1))
    """
    out = list(chunks)
    for axis, sizes in enumerate(chunks):
        if len(sizes) <= 1:
            continue
        other = math.prod(max(c) if c else 0 for a, c in enumerate(out) if a != axis) * itemsize
        merged: list[int] = []
        run = 0
        for n in sizes:
            if run and (run + n) * other > limit:
                merged.append(run)
                run = 0
            run += n
        merged.append(run)
        out[axis] = tuple(merged)
    return tuple(out)


def view_read_chunks(sel: Selection, source_chunks: Chunks, itemsize: int) -> Chunks:
    """Chunks of the read tasks of view `sel`: the source's cuts, small pieces merged.

    Pure, so a LazyImage knows its chunks before (and without) building its graph.
    """
    limit = math.prod(max(c) if c else 0 for c in source_chunks) * itemsize
    return coalesce(view_chunks(sel, source_chunks), itemsize, max(limit, itemsize))


def parse_chunks(
    chunks: Any, shape: tuple[int, ...], dtype: np.dtype, order: str, name: str
) -> Chunks:
    """Validate the user's `chunks` and resolve it against the disk layout.

    ``"auto"`` (also inside a dict or tuple) follows :func:`disk_chunks`;
    anything else dask accepts is honoured as given.
    """
    auto = disk_chunks(shape, dtype.itemsize, order, chunk_limit())
    if isinstance(chunks, str) and chunks == "auto":
        return auto
    if isinstance(chunks, Mapping):
        bad = [k for k in chunks if not isinstance(k, int) or not -len(shape) <= k < len(shape)]
        if bad:
            raise ValueError(
                f"chunks for {name}: dict keys must be axis numbers between {-len(shape)} and "
                f"{len(shape) - 1}, got {bad!r}"
            )
        chunks = {k % len(shape): v for k, v in chunks.items()}
        chunks = tuple(
            auto[a] if chunks.get(a, "auto") == "auto" else chunks[a] for a in range(len(shape))
        )
    if isinstance(chunks, tuple):
        chunks = tuple(auto[a] if c == "auto" else c for a, c in enumerate(chunks))
    from dask.array.core import normalize_chunks  # explicit chunks only: ~1-2 s to import

    try:
        return tuple(
            tuple(int(c) for c in axis) for axis in normalize_chunks(chunks, shape, dtype=dtype)
        )
    except (ValueError, TypeError, ZeroDivisionError) as err:  # dask divides by a chunk of 0
        raise ValueError(
            f"chunks for {name}: {chunks!r} does not fit shape {shape} ({err}). "
            'Use "auto" (disk-aligned), an int, a tuple with one entry per axis, '
            "or a dict {axis: size}; -1 means the whole axis."
        ) from None


def named_chunks(chunks: Mapping[Any, Any], axes: Mapping[str, int], name: str) -> dict[int, Any]:
    """`chunks` keyed by dimension name (and/or axis number) as a dict keyed by array axis.

    `axes` maps each dimension name to the array axis it labels (see
    :func:`lazyimg._io.axes.dim_axes`); integer keys pass through unchanged.

    Raises
    ------
    DimensionError
        A name that labels no axis of this image.

    Examples
    --------
    >>> named_chunks({"time": 50, 0: -1}, {"i": 0, "j": 1, "k": 2, "time": 3}, "bold.nii")
    {3: 50, 0: -1}
    """
    out: dict[int, Any] = {}
    for key, value in chunks.items():
        if isinstance(key, str):
            if key not in axes:
                raise DimensionError(
                    f"chunks for {name}: no dimension named {key!r}; this image's dimensions are "
                    f"{tuple(axes)}. Use one of those names or an axis number."
                )
            key = axes[key]
        if key in out:
            raise DimensionError(
                f"chunks for {name}: axis {key} is given twice (by name and by number)."
            )
        out[key] = value
    return out


def split_free_axes(chunks: Chunks, order: str) -> tuple[int, ...]:
    """Axes along which every split is a clean cut through the file.

    Each position along the slowest axis on disk is one contiguous run of
    bytes, so cutting it anywhere never makes two chunks share a read. When the
    plan also splits the next slowest axes (one slab is bigger than a chunk),
    those are cut into single positions already, and are free as well, down to
    the fastest axis the plan splits.

    Examples
    --------
    >>> split_free_axes(((96,), (96,), (64,), (100,) * 6), "F")
    (3,)
    >>> split_free_axes(((1, 1), (1,) * 10, (10, 10), (20,)), "C")
    (0, 1, 2)
    >>> split_free_axes(((4,), (5,)), "C")
    (0,)
    """
    slow_first = list(range(len(chunks)))
    if order == "F":
        slow_first.reverse()
    free = slow_first[:1]
    for axis in slow_first[1:]:
        if len(chunks[axis]) <= 1:
            break
        free.append(axis)
    return tuple(sorted(free))
