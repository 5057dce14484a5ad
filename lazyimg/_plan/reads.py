"""Read plans: the byte runs that get a selection of one on-disk array off the file.

Like :mod:`lazyimg._plan.index`, nothing here touches a file: :mod:`lazyimg._io.read` executes
the plans.

A *read plan* is how to get the source items of a selection (see
:mod:`lazyimg._plan.index`) of one on-disk array off the file: a *box* (a
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
import math
from dataclasses import dataclass

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
