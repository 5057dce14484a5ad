"""Pure index arithmetic: numpy basic indices, selections, and the byte runs they need.

Nothing here touches a file. The vocabulary:

*selection*
    A tuple with one *item* per axis of a (possibly sliced) view of an image.
    An ``int`` picks one position of a source axis and drops the axis; a
    ``range`` keeps a source axis (any step, negative too); a :class:`NewAxis`
    is an axis of length 0 or 1 that ``None`` inserted and no source axis backs.
    Ranges compose exactly (``range(...)[a:b:c]`` is again a range), which is
    why views of views never lose precision.

*read plan*
    How to get a selection of one on-disk array off the file: a *box* (a
    hyper-rectangle, in disk order, fastest axis first) stored on disk as a
    sequence of equally long byte *runs*, and the slices that cut the selection
    out of the box. The rules, in the spirit of BIAP2 and nibabel's
    ``fileslice``:

    1. Walk the axes from the fastest-changing on disk. While every faster axis
       is read whole, a slower axis can be read as one contiguous run; steps
       whose gaps are under ``skip`` bytes (256, as nibabel) are read through.
    2. The first axis that cannot be merged, and all slower ones, are *split*:
       one run per selected position combination.
    3. **The unproxy rule.** When the runs would cost, counting each one as at
       least a page (4 KiB) plus a per-read overhead (4 KiB uncompressed; the
       distance between seek points for compressed files), as much as reading
       the whole span from the first to the last byte they touch, the span is
       read in one sequential pass instead. ``img.slicecopy[5]`` on a
       Fortran-ordered 4D file is such a case; a voxel's time series is not.
    4. The box is read in groups of its slowest axis of at most ``block`` bytes,
       so a sequential pass never holds more than one group beyond the result.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from dataclasses import dataclass
from types import EllipsisType

import numpy as np

#: Gaps smaller than this many bytes are read through rather than skipped.
SKIP_BYTES = 256
#: Smallest unit the operating system reads.
PAGE_BYTES = 4096
#: What one separate read costs beyond its bytes, for uncompressed files.
READ_OVERHEAD_BYTES = 4096
#: Largest buffer one group of a plan may use.
BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class NewAxis:
    """An axis inserted by ``None`` (length 1, or 0 after an empty slice)."""

    length: int = 1


Item = int | range | NewAxis
Selection = tuple[Item, ...]


# --------------------------------------------------------------------------- indices


def _as_int(obj: object) -> int | None:
    if isinstance(obj, (bool, np.bool_)):
        return None
    try:
        return operator.index(obj)  # type: ignore[arg-type]
    except TypeError:
        return None


def is_basic_index(index: object) -> bool:
    """Return True if `index` holds only ints, slices, Ellipsis and None."""
    items = index if isinstance(index, tuple) else (index,)
    for item in items:
        if item is None or item is Ellipsis or isinstance(item, slice):
            continue
        if _as_int(item) is None:
            return False
    return True


def normalize_index(index: object, shape: tuple[int, ...]) -> tuple[int | range | None, ...]:
    """Turn a numpy basic index into one item per output axis, numpy's way.

    Returns ints (normalised, in range), ranges (one per kept axis) and
    ``None`` for new axes, covering every axis of `shape` in order.

    Raises
    ------
    IndexError
        Too many indices, an integer out of bounds, or more than one Ellipsis.
    TypeError
        An index that is not basic (arrays, lists, booleans, floats).
    ValueError
        A slice step of zero.
    """
    items = index if isinstance(index, tuple) else (index,)
    n_ellipsis = sum(1 for it in items if it is Ellipsis)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_axes = sum(1 for it in items if it is not None and it is not Ellipsis)
    if n_axes > len(shape):
        raise IndexError(
            f"too many indices for array: array is {len(shape)}-dimensional, "
            f"but {n_axes} were indexed"
        )
    out: list[int | range | None] = []
    axis = 0
    for item in items:
        if item is None:
            out.append(None)
        elif isinstance(item, EllipsisType):
            for _ in range(len(shape) - n_axes):
                out.append(range(shape[axis]))
                axis += 1
        elif isinstance(item, slice):
            if item.step is not None and _as_int(item.step) == 0:
                raise ValueError("slice step cannot be zero")
            out.append(range(*item.indices(shape[axis])))
            axis += 1
        else:
            value = _as_int(item)
            if value is None:
                raise TypeError(
                    f"only basic indices (integers, slices, '...', None) are supported here, "
                    f"got {type(item).__name__}; index the dask array `.data` for fancy indexing"
                )
            size = shape[axis]
            if not -size <= value < size:
                raise IndexError(f"index {value} is out of bounds for axis {axis} with size {size}")
            out.append(value % size)
            axis += 1
    while axis < len(shape):
        out.append(range(shape[axis]))
        axis += 1
    return tuple(out)


def tight_index(index: object, shape: tuple[int, ...]) -> tuple[int | slice | None, ...]:
    """An equivalent basic index with no Ellipsis and every slice bound inside the axis.

    For indexers (such as dask's) that mis-read slices numpy accepts: dask takes a
    negative-step slice starting before the array for a full reversal (dask#10555,
    ``x[-3::-1]`` of a length-2 axis gives two items, numpy none).
    """
    return tuple(
        _tight_slice(it) if isinstance(it, range) else it for it in normalize_index(index, shape)
    )


def _tight_slice(r: range) -> slice:
    if len(r) == 0:
        return slice(0, 0, 1)
    stop = r[-1] + (1 if r.step > 0 else -1)
    return slice(r[0], stop if stop >= 0 else None, r.step)


def full_selection(shape: tuple[int, ...]) -> Selection:
    """The selection of a whole array."""
    return tuple(range(n) for n in shape)


def selection_shape(sel: Selection) -> tuple[int, ...]:
    """Shape of the array a selection gives."""
    return tuple(
        len(it) if isinstance(it, range) else it.length for it in sel if not isinstance(it, int)
    )


def compose(sel: Selection, index: object) -> Selection:
    """Apply a numpy basic `index` to the view `sel`; return the new selection."""
    key = iter(normalize_index(index, selection_shape(sel)))
    out: list[Item] = []
    for item in sel:
        if isinstance(item, int):
            out.append(item)
            continue
        k = next(key)
        while k is None:
            out.append(NewAxis(1))
            k = next(key)
        if isinstance(item, range):
            out.append(_compose_range(item, k))
        elif isinstance(k, range):
            out.append(NewAxis(len(k)))
        # an int on a new axis removes it
    out.extend(NewAxis(1) for _ in key)  # trailing new axes
    return tuple(out)


def _compose_range(outer: range, inner: int | range) -> int | range:
    if isinstance(inner, int):
        return outer[inner]
    start = outer.start + inner.start * outer.step
    stop = outer.start + inner.stop * outer.step
    return range(start, stop, inner.step * outer.step)


def source_items(sel: Selection) -> tuple[int | range, ...]:
    """The items that address source axes (new axes removed)."""
    return tuple(it for it in sel if not isinstance(it, NewAxis))


def selection_slices(items: tuple[int | range, ...]) -> tuple[int | slice, ...]:
    """Express source items as a numpy index (ascending steps only) plus flips.

    Returns an index with every range turned ascending; the caller reverses
    the axes listed by :func:`descending_axes` afterwards.
    """
    return tuple(it if isinstance(it, int) else _ascending_slice(it) for it in items)


def _ascending_slice(r: range) -> slice:
    if len(r) == 0:
        return slice(0, 0, 1)
    lo = min(r[0], r[-1])
    step = abs(r.step)
    return slice(lo, lo + (len(r) - 1) * step + 1, step)


def descending_axes(sel: Selection) -> tuple[int, ...]:
    """Output axes whose range runs backwards."""
    kept = [it for it in sel if not isinstance(it, int)]
    return tuple(
        i for i, it in enumerate(kept) if isinstance(it, range) and it.step < 0 and len(it) > 1
    )


# --------------------------------------------------------------------------- chunks of views


def view_chunks(
    sel: Selection, source_chunks: tuple[tuple[int, ...], ...]
) -> tuple[tuple[int, ...], ...]:
    """Chunks of a view: each kept source axis splits where its source chunks do."""
    out: list[tuple[int, ...]] = []
    axis = 0
    for item in sel:
        if isinstance(item, NewAxis):
            out.append((item.length,))
            continue
        if isinstance(item, range):
            out.append(_range_chunks(item, source_chunks[axis]))
        axis += 1
    return tuple(out)


def _range_chunks(r: range, chunks: tuple[int, ...]) -> tuple[int, ...]:
    if len(r) == 0:
        return (0,)
    bounds = np.cumsum(chunks)
    ids = np.searchsorted(bounds, np.arange(r.start, r.stop, r.step), side="right")
    change = np.flatnonzero(np.diff(ids)) + 1
    edges = np.concatenate(([0], change, [len(ids)]))
    return tuple(int(n) for n in np.diff(edges))


def block_selections(sel: Selection, chunks: tuple[tuple[int, ...], ...]) -> list[list[Item]]:
    """For each output axis, the item of every chunk along it."""
    per_axis: list[list[Item]] = []
    axis = 0
    for item in sel:
        if isinstance(item, int):
            continue
        edges = np.concatenate(([0], np.cumsum(chunks[axis]))).tolist()
        if isinstance(item, NewAxis):
            per_axis.append([NewAxis(b - a) for a, b in itertools.pairwise(edges)])
        else:
            per_axis.append([item[a:b] for a, b in itertools.pairwise(edges)])
        axis += 1
    return per_axis


def merge_block(sel: Selection, block_items: tuple[Item, ...]) -> Selection:
    """Put one block's per-output-axis items back among `sel`'s integer items."""
    it = iter(block_items)
    return tuple(item if isinstance(item, int) else next(it) for item in sel)


# --------------------------------------------------------------------------- read plans


@dataclass(frozen=True)
class ReadPlan:
    """How to read one selection of one on-disk array (all axes in disk order)."""

    box_shape: tuple[int, ...]
    """Shape of what is read, fastest axis first."""
    run_starts: np.ndarray
    """File offset of every run, in the order the box stores them."""
    run_bytes: int
    """Length of each run."""
    through: bool
    """True when the slowest box axis is read through (one run; groups are byte ranges)."""
    post: tuple[slice, ...]
    """Ascending slices that cut the selection out of the box."""
    sel_shape: tuple[int, ...]
    """Shape of the selection in disk order, integer axes kept with length 1."""
    group: int
    """How many positions of the slowest box axis one group holds."""

    @property
    def direct(self) -> bool:
        """True when the box is exactly the selection (no bytes to cut away)."""
        return self.box_shape == self.sel_shape

    @property
    def nbytes(self) -> int:
        return int(len(self.run_starts) * self.run_bytes)


def _ascending(item: int | range) -> tuple[int, int, int]:
    """(first, step, count) of an item, ascending."""
    if isinstance(item, int):
        return item, 1, 1
    if len(item) == 0:
        return 0, 1, 0
    first = min(item[0], item[-1])
    return first, abs(item.step) if len(item) > 1 else 1, len(item)


def contiguous_run(
    shape: tuple[int, ...], items: tuple[int | range, ...]
) -> tuple[int, int] | None:
    """``(first element, count)`` if `items` (disk order, fastest first) are one contiguous run.

    True when every axis faster than some axis is whole, that axis is a step-1
    range (or one position), and every slower axis is a single position: the
    shape of a volume, a slab of volumes, or a row.
    """
    start, stride, count, k, n = 0, 1, 1, 0, len(shape)
    while k < n and isinstance(items[k], range) and items[k] == range(shape[k]):
        count *= shape[k]
        stride *= shape[k]
        k += 1
    if k < n:
        item = items[k]
        if isinstance(item, int):
            first, length = item, 1
        elif item.step == 1 or len(item) == 1:
            first, length = item[0], len(item)
        else:
            return None
        start += first * stride
        count *= length
        stride *= shape[k]
        k += 1
    for j in range(k, n):
        item = items[j]
        if isinstance(item, range):
            if len(item) != 1:
                return None
            item = item[0]
        start += item * stride
        stride *= shape[j]
    return start, count


@functools.lru_cache(maxsize=512)
def plan_read(
    shape: tuple[int, ...],
    itemsize: int,
    offset: int,
    items: tuple[int | range, ...],
    *,
    read_overhead: int = READ_OVERHEAD_BYTES,
    skip: int = SKIP_BYTES,
    block: int = BLOCK_BYTES,
) -> ReadPlan:
    """Plan the reads of `items` (one per axis, disk order, fastest first).

    `shape` is the on-disk shape in the same order. The selection must not be
    empty (the caller returns an empty array without reading).
    """
    ndim = len(shape)
    firsts, steps, counts = (
        zip(*(_ascending(it) for it in items), strict=True) if ndim else ((), (), ())
    )
    strides = [itemsize]
    for n in shape[:-1]:
        strides.append(strides[-1] * n)
    spans = [(c - 1) * s + 1 for c, s in zip(counts, steps, strict=True)]

    def runs_beyond(k: int) -> int:
        return math.prod(counts[k + 1 :])

    box_lo = list(firsts)
    box_n = list(spans)
    u = 0  # axes < u are read through; axes >= u are split
    for k in range(ndim):
        if counts[k] > 1 and (steps[k] - 1) * strides[k] >= skip:
            break
        u = k + 1
        if k == ndim - 1 or runs_beyond(k) == 1:
            break
        if (shape[k] - spans[k]) * strides[k] >= skip:
            break
        box_lo[k], box_n[k] = 0, shape[k]
    # Reading an axis whole only pays when a slower axis joins the run with more than one
    # position; otherwise (a voxel's time series) read just the span of the run's axes.
    for k in range(u - 1, -1, -1):
        box_lo[k], box_n[k] = firsts[k], spans[k]
        if spans[k] > 1:
            break

    split_counts = counts[u:]
    n_runs = math.prod(split_counts)
    run_bytes = math.prod(box_n[:u]) * itemsize
    base = offset + sum(box_lo[k] * strides[k] for k in range(u))
    first_byte = base + sum(firsts[k] * strides[k] for k in range(u, ndim))
    last_byte = (
        base + sum((firsts[k] + spans[k] - 1) * strides[k] for k in range(u, ndim)) + run_bytes
    )
    span = last_byte - first_byte
    cost = n_runs * (-(-run_bytes // PAGE_BYTES) * PAGE_BYTES + read_overhead)
    if n_runs > 1 and cost >= span:
        # the unproxy rule: one sequential pass over the span
        for k in range(ndim - 1):
            box_lo[k], box_n[k] = 0, shape[k]
        box_lo[-1], box_n[-1] = firsts[-1], spans[-1]
        u = ndim
        n_runs = 1
        run_bytes = strides[-1] * spans[-1]
        base = offset + firsts[-1] * strides[-1]

    if u < ndim:
        grids = [np.asarray([base], dtype=np.int64)]
        for k in range(u, ndim):
            pos = firsts[k] + steps[k] * np.arange(counts[k], dtype=np.int64)
            grids.append(pos * strides[k])
        starts = grids[0]
        for g in grids[1:]:
            starts = np.add.outer(g, starts).ravel()  # faster axes vary fastest
        run_starts = starts
    else:
        run_starts = np.asarray([base], dtype=np.int64)

    box_shape = tuple(box_n[:u]) + tuple(counts[u:])
    post = tuple(
        slice(firsts[k] - box_lo[k], firsts[k] - box_lo[k] + spans[k], steps[k])
        if k < u
        else slice(0, counts[k], 1)
        for k in range(ndim)
    )
    pos_bytes = itemsize * math.prod(box_shape[:-1]) if ndim else itemsize
    group = max(1, block // max(pos_bytes, 1))
    return ReadPlan(
        box_shape=box_shape,
        run_starts=run_starts,
        run_bytes=int(run_bytes),
        through=u == ndim,
        post=post,
        sel_shape=tuple(counts),
        group=int(group),
    )


def group_positions(post_last: slice, p0: int, p1: int) -> tuple[int, int, slice]:
    """Which selected positions fall in box positions ``[p0, p1)`` of the slowest axis.

    Returns ``(i0, i1, local)``: selected positions ``i0:i1`` and the slice that
    picks them out of the group.
    """
    a, step = post_last.start, post_last.step
    n = len(range(post_last.start, post_last.stop, step))
    i0 = min(n, max(0, -(-(p0 - a) // step)))
    i1 = min(n, max(0, -(-(p1 - a) // step)))
    start = a + i0 * step - p0
    return i0, i1, slice(start, start + (i1 - i0 - 1) * step + 1 if i1 > i0 else start, step)
