"""Pure index arithmetic: numpy basic indices, selections, and the chunks of views.

Nothing here touches a file. The vocabulary:

*selection*
    A tuple with one *item* per axis of a (possibly sliced) view of an image.
    An ``int`` picks one position of a source axis and drops the axis; a
    ``range`` keeps a source axis (any step, negative too); a :class:`NewAxis`
    is an axis of length 0 or 1 that ``None`` inserted and no source axis backs.
    Ranges compose exactly (``range(...)[a:b:c]`` is again a range), which is
    why views of views never lose precision.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from types import EllipsisType

import numpy as np


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
