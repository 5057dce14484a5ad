"""Properties of the pure planning functions: index arithmetic and chunk plans.

Nothing here touches a file: read plans are executed against a bytes buffer,
selections against ``np.arange``.
"""

from __future__ import annotations

import math
from typing import Any

import dask
import numpy as np
import pytest
from conftest import basic_indices
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lazyimg._plan.chunks import _even, chunk_limit, disk_chunks, parse_chunks
from lazyimg._plan.index import (
    NewAxis,
    block_selections,
    compose,
    descending_axes,
    full_selection,
    merge_block,
    normalize_index,
    selection_shape,
    selection_slices,
    source_items,
    tight_index,
    view_chunks,
)
from lazyimg._plan.reads import (
    PAGE_BYTES,
    READ_OVERHEAD_BYTES,
    SKIP_BYTES,
    group_positions,
    plan_read,
)

SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])

shapes = st.lists(st.integers(0, 7), min_size=1, max_size=4).map(tuple)
nonempty_shapes = st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple)


def apply_selection(arr: np.ndarray, sel: tuple[Any, ...]) -> np.ndarray:
    """Reference semantics of a selection, one axis at a time with ``np.take``."""
    out = arr
    axis = 0  # current axis of `out`
    for item in sel:
        if isinstance(item, NewAxis):
            out = np.expand_dims(out, axis)
            if item.length == 0:
                out = np.take(out, [], axis=axis)
            axis += 1
        elif isinstance(item, int):
            out = np.take(out, item, axis=axis)
        else:
            out = np.take(out, list(item), axis=axis)
            axis += 1
    return out


# --------------------------------------------------------------------------- indices


@SETTINGS
@given(data=st.data(), shape=shapes)
def test_normalize_index_is_numpy(data: st.DataObject, shape: tuple[int, ...]) -> None:
    arr = np.arange(math.prod(shape)).reshape(shape)
    index = data.draw(basic_indices(shape))
    items = normalize_index(index, shape)
    assert sum(1 for it in items if it is not None) == len(shape)
    np.testing.assert_array_equal(arr[tight_index(index, shape)], arr[index])
    sel = compose(full_selection(shape), index)
    assert selection_shape(sel) == arr[index].shape
    np.testing.assert_array_equal(apply_selection(arr, sel), arr[index])


@SETTINGS
@given(data=st.data(), shape=shapes)
def test_compose_is_chained_indexing(data: st.DataObject, shape: tuple[int, ...]) -> None:
    arr = np.arange(math.prod(shape)).reshape(shape)
    first = data.draw(basic_indices(shape), label="first")
    second = data.draw(basic_indices(arr[first].shape), label="second")
    third = data.draw(basic_indices(arr[first][second].shape), label="third")
    sel = compose(compose(compose(full_selection(shape), first), second), third)
    expected = arr[first][second][third]
    assert selection_shape(sel) == expected.shape
    np.testing.assert_array_equal(apply_selection(arr, sel), expected)


@SETTINGS
@given(data=st.data(), shape=nonempty_shapes)
def test_selection_slices_and_flips(data: st.DataObject, shape: tuple[int, ...]) -> None:
    """Ascending slices plus the flipped axes give the selection (how the readers use them)."""
    arr = np.arange(math.prod(shape)).reshape(shape)
    sel = compose(full_selection(shape), data.draw(basic_indices(shape, newaxis=False)))
    items = source_items(sel)
    got = arr[selection_slices(items)]
    for axis in descending_axes(sel):
        got = np.flip(got, axis)
    np.testing.assert_array_equal(got, apply_selection(arr, sel))


@pytest.mark.parametrize(
    "index", [(0, 0, 0, 0, 0), (Ellipsis, Ellipsis), 5, -6, (slice(None), 3)], ids=repr
)
def test_normalize_index_errors(index: Any) -> None:
    shape = (5, 3, 2)
    with pytest.raises(IndexError):
        np.empty(shape)[index]
    with pytest.raises(IndexError):
        normalize_index(index, shape)


@pytest.mark.parametrize("index", [[0, 1], np.array([1]), 1.0, True, (slice(None), "a")], ids=repr)
def test_normalize_index_rejects_non_basic(index: Any) -> None:
    with pytest.raises(TypeError, match="basic"):
        normalize_index(index, (5, 3))


def test_zero_step() -> None:
    with pytest.raises(ValueError, match="zero"):
        normalize_index(slice(None, None, 0), (5,))


# --------------------------------------------------------------------------- chunks of views


@SETTINGS
@given(data=st.data(), shape=shapes)
def test_view_chunks_follow_source_chunks(data: st.DataObject, shape: tuple[int, ...]) -> None:
    """Each block of a view lies inside one source chunk, and the blocks tile the view."""
    source_chunks = tuple(
        _fit(tuple(data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))), n)
        for n in shape
    )
    arr = np.arange(math.prod(shape)).reshape(shape)
    sel = compose(full_selection(shape), data.draw(basic_indices(shape)))
    chunks = view_chunks(sel, source_chunks)
    view = apply_selection(arr, sel)
    assert tuple(sum(c) for c in chunks) == view.shape
    per_axis = block_selections(sel, chunks)
    owners = [np.repeat(np.arange(len(c)), c) for c in source_chunks]
    # every block's range on a source axis stays within one source chunk
    src_axes = [i for i, it in enumerate(sel) if not isinstance(it, NewAxis)]
    for out_axis, items in enumerate(per_axis):
        for item in items:
            if isinstance(item, range) and len(item):
                src = src_axes.index(_nth_kept(sel, out_axis))
                assert len(set(owners[src][list(item)])) == 1
    # and putting the blocks back together gives the view
    if 0 not in view.shape:
        pieces = np.empty([len(items) for items in per_axis], dtype=object)
        for idx in np.ndindex(pieces.shape):
            block = tuple(per_axis[a][i] for a, i in enumerate(idx))
            pieces[idx] = apply_selection(arr, merge_block(sel, block))
        np.testing.assert_array_equal(
            np.block(pieces.tolist()) if pieces.ndim else pieces[()], view
        )


def _fit(chunks: tuple[int, ...], n: int) -> tuple[int, ...]:
    """Chunks summing to `n`: repeat the pattern, trim the last one."""
    if n == 0:
        return (0,)
    out: list[int] = []
    while sum(out) < n:
        out.extend(chunks)
    while sum(out) > n:
        extra = sum(out) - n
        if out[-1] > extra:
            out[-1] -= extra
        else:
            out.pop()
    return tuple(out)


def _nth_kept(sel: tuple[Any, ...], out_axis: int) -> int:
    """Position in `sel` of the item behind output axis `out_axis`."""
    kept = [i for i, it in enumerate(sel) if not isinstance(it, int)]
    return kept[out_axis]


# --------------------------------------------------------------------------- read plans


def execute(plan: Any, buf: bytes, itemsize: int, dtype: np.dtype[Any]) -> np.ndarray:
    """Run a read plan against `buf` the way the reader does; return the selection (disk order)."""
    runs = [buf[s : s + plan.run_bytes] for s in plan.run_starts.tolist()]
    for s in plan.run_starts.tolist():
        assert s >= 0 and s + plan.run_bytes <= len(buf), "a run leaves the file"
    box = np.frombuffer(b"".join(runs), dtype).reshape(plan.box_shape, order="F")
    return box[plan.post]


@st.composite
def read_cases(draw: st.DrawFn) -> tuple[tuple[int, ...], int, int, tuple[Any, ...]]:
    shape = draw(st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple))
    itemsize = draw(st.sampled_from([1, 2, 4, 8]))
    offset = draw(st.integers(0, 600))
    index = draw(basic_indices(shape, newaxis=False))
    items = source_items(compose(full_selection(shape), index))
    return shape, itemsize, offset, items


@SETTINGS
@given(case=read_cases(), skip=st.sampled_from([0, 16, SKIP_BYTES]))
def test_plan_read_reads_the_selection(case: Any, skip: int) -> None:
    shape, itemsize, offset, items = case
    counts = [1 if isinstance(it, int) else len(it) for it in items]
    if 0 in counts:
        return  # the reader returns empty selections without a plan
    dtype = np.dtype(f"u{itemsize}")
    arr = np.arange(math.prod(shape), dtype=np.uint64).astype(dtype).reshape(shape, order="F")
    buf = b"\xee" * offset + arr.tobytes(order="F")
    plan = plan_read(shape, itemsize, offset, items, skip=skip)
    got = execute(plan, buf, itemsize, dtype)
    ascending = tuple(
        slice(it, it + 1)
        if isinstance(it, int)
        else slice(min(it[0], it[-1]), max(it[0], it[-1]) + 1, abs(it.step))
        for it in items
    )
    np.testing.assert_array_equal(got, arr[ascending])
    assert got.shape == plan.sel_shape
    payload = math.prod(counts) * itemsize
    assert plan.nbytes >= payload
    if plan.direct:
        assert plan.nbytes == payload


@SETTINGS
@given(case=read_cases())
def test_plan_read_gaps(case: Any) -> None:
    """Within a run, unselected stretches are under the skip threshold, or the plan is one pass.

    One sequential pass (the unproxy rule) is allowed only where separate reads of the
    selected segments, each costing at least a page plus the per-read overhead, would cost
    as much as the pass.
    """
    shape, itemsize, offset, items = case
    counts = [1 if isinstance(it, int) else len(it) for it in items]
    if 0 in counts:
        return
    nbytes = math.prod(shape) * itemsize
    wanted = np.zeros(offset + nbytes, bool)
    positions = np.zeros(shape, bool)
    positions[np.ix_(*[[it] if isinstance(it, int) else list(it) for it in items])] = True
    for pos in np.flatnonzero(positions.ravel(order="F")):
        wanted[offset + pos * itemsize : offset + (pos + 1) * itemsize] = True
    plan = plan_read(shape, itemsize, offset, items)
    largest_gap = 0
    for s in plan.run_starts.tolist():
        largest_gap = max(largest_gap, _longest_false(wanted[s : s + plan.run_bytes]))
    segments = _segments(wanted, SKIP_BYTES)
    if largest_gap >= SKIP_BYTES:
        assert len(plan.run_starts) == 1, "a split plan reads through a large gap"
        assert segments * (PAGE_BYTES + READ_OVERHEAD_BYTES) >= plan.nbytes - _slab(shape, itemsize)
    # never more than the slabs of the slowest axis the selection touches
    last = items[-1]
    lo, hi = (
        (last, last) if isinstance(last, int) else (min(last[0], last[-1]), max(last[0], last[-1]))
    )
    assert plan.nbytes <= (hi - lo + 1) * _slab(shape, itemsize)


def _slab(shape: tuple[int, ...], itemsize: int) -> int:
    return math.prod(shape[:-1]) * itemsize


def _longest_false(mask: np.ndarray) -> int:
    best = run = 0
    for v in mask.tolist():
        run = 0 if v else run + 1
        best = max(best, run)
    return best


def _segments(wanted: np.ndarray, skip: int) -> int:
    """Contiguous selected stretches, merging gaps under `skip`."""
    idx = np.flatnonzero(wanted)
    if len(idx) == 0:
        return 0
    return 1 + int(np.sum(np.diff(idx) - 1 >= skip))


def test_plan_read_examples() -> None:
    shape = (64, 64, 32, 10)  # 256 KiB int16 volumes
    vol = 64 * 64 * 32 * 2
    one_volume = plan_read(shape, 2, 352, (range(64), range(64), range(32), 3))
    assert len(one_volume.run_starts) == 1 and one_volume.nbytes == vol
    assert one_volume.run_starts[0] == 352 + 3 * vol
    z_slice = plan_read(shape, 2, 352, (range(64), range(64), 5, range(10)))
    assert len(z_slice.run_starts) == 10 and z_slice.run_bytes == 64 * 64 * 2
    series = plan_read(shape, 2, 352, (1, 2, 3, range(10)))
    assert len(series.run_starts) == 10 and series.nbytes == 20
    # BIAP2's unproxy case: one x position everywhere touches every page of the file
    x_plane = plan_read(shape, 2, 352, (5, range(64), range(32), range(10)))
    assert x_plane.through and len(x_plane.run_starts) == 1
    assert x_plane.nbytes == 10 * vol
    # a reversed volume range reads the same bytes as the ascending one
    backwards = plan_read(shape, 2, 352, (range(64), range(64), range(32), range(9, -1, -3)))
    forwards = plan_read(shape, 2, 352, (range(64), range(64), range(32), range(0, 10, 3)))
    assert backwards.nbytes == forwards.nbytes == 4 * vol


@SETTINGS
@given(
    a=st.integers(0, 20),
    step=st.integers(1, 5),
    n=st.integers(1, 8),
    group=st.integers(1, 7),
)
def test_group_positions_partition(a: int, step: int, n: int, group: int) -> None:
    post = slice(a, a + (n - 1) * step + 1, step)
    span = a + (n - 1) * step + 1
    seen: list[int] = []
    for p0 in range(0, span, group):
        p1 = min(span, p0 + group)
        i0, i1, local = group_positions(post, p0, p1)
        box_positions = np.arange(p0, p1)
        picked = box_positions[local].tolist() if i1 > i0 else []
        assert picked == [a + i * step for i in range(i0, i1)]
        seen.extend(range(i0, i1))
    assert seen == list(range(n))


# --------------------------------------------------------------------------- chunk plans


@SETTINGS
@given(n=st.integers(0, 10_000), per=st.integers(1, 5_000))
def test_even(n: int, per: int) -> None:
    pieces = _even(n, per)
    assert sum(pieces) == n
    if n:
        assert max(pieces) <= per
        assert len(pieces) == -(-n // per)  # the fewest pieces
        # a regular grid (Zarr's rule): equal pieces, only the last may be shorter
        assert len(set(pieces[:-1])) <= 1 and pieces[-1] <= pieces[0]


@SETTINGS
@given(
    shape=st.lists(st.integers(0, 40), min_size=1, max_size=5).map(tuple),
    itemsize=st.sampled_from([1, 2, 4, 8, 16]),
    limit=st.integers(1, 100_000),
    order=st.sampled_from("FC"),
)
def test_disk_chunks(shape: tuple[int, ...], itemsize: int, limit: int, order: str) -> None:
    chunks = disk_chunks(shape, itemsize, order, limit)
    assert tuple(sum(c) for c in chunks) == shape
    slow_first = list(range(len(shape)))[::-1] if order == "F" else list(range(len(shape)))
    # axes, slowest first: some split into single positions, then one split evenly,
    # then every faster axis whole
    split = [a for a in slow_first if len(chunks[a]) > 1]
    whole_from = max((slow_first.index(a) for a in split), default=-1) + 1
    for a in slow_first[whole_from:]:
        assert len(chunks[a]) == 1
    for a in slow_first[: max(whole_from - 1, 0)]:
        assert set(chunks[a]) <= {1} or shape[a] == 0
    for a in split:
        # a regular grid: equal chunks, only the last may be shorter
        assert len(set(chunks[a][:-1])) <= 1 and chunks[a][-1] <= chunks[a][0]
    biggest = math.prod(max(c) for c in chunks) * itemsize
    if 0 not in shape:
        assert biggest <= max(limit, itemsize)
    if 0 not in shape and math.prod(shape) * itemsize <= limit:
        assert all(len(c) == 1 for c in chunks)
    # as few chunks as the limit allows along the axis that is split evenly
    if split and 0 not in shape:
        axis = slow_first[whole_from - 1]
        inner = math.prod(shape[a] for a in slow_first[whole_from:]) * itemsize
        assert len(chunks[axis]) == -(-shape[axis] // max(1, limit // inner))


@pytest.mark.parametrize(
    ("shape", "order", "limit", "expected"),
    [
        ((96, 96, 64, 600), "F", 128 * 2**20, ((96,), (96,), (64,), (100,) * 6)),
        ((4, 5, 6, 7), "F", 4 * 5 * 6 * 2 * 3, ((4,), (5,), (6,), (3, 3, 1))),
        ((4, 5, 6, 7), "F", 4 * 5 * 2 * 2, ((4,), (5,), (2, 2, 2), (1,) * 7)),
        ((7, 6, 5, 4), "C", 6 * 5 * 4 * 2 * 3, ((3, 3, 1), (6,), (5,), (4,))),
        ((7, 6, 5, 4), "C", 5 * 4 * 2 * 2, ((1,) * 7, (2, 2, 2), (5,), (4,))),
        ((10,), "F", 8, ((4, 4, 2),)),
    ],
)
def test_disk_chunks_examples(
    shape: tuple[int, ...], order: str, limit: int, expected: tuple[tuple[int, ...], ...]
) -> None:
    assert disk_chunks(shape, 2, order, limit) == expected


def test_parse_chunks_follows_dask_config() -> None:
    shape, dtype = (8, 8, 4, 30), np.dtype("int16")
    with dask.config.set({"array.chunk-size": "4KiB"}):
        assert chunk_limit() == 4096
        assert parse_chunks("auto", shape, dtype, "F", "f.nii") == ((8,), (8,), (4,), (8, 8, 8, 6))
    with dask.config.set({"array.chunk-size": "256B"}):  # one volume is 512 B
        auto = parse_chunks("auto", shape, dtype, "F", "f.nii")
        assert auto == ((8,), (8,), (2, 2), (1,) * 30)


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (2, ((2, 2), (2, 1), (2, 2, 1))),
        ((3, -1, 4), ((3, 1), (3,), (4, 1))),
        ({0: 1}, ((1,) * 4, (3,), (5,))),
        ({-1: 2, 0: "auto"}, ((4,), (3,), (2, 2, 1))),
        (("auto", 1, "auto"), ((4,), (1, 1, 1), (5,))),
        (((1, 3), (3,), (2, 3)), ((1, 3), (3,), (2, 3))),
    ],
    ids=repr,
)
def test_parse_chunks_explicit(chunks: Any, expected: Any) -> None:
    assert parse_chunks(chunks, (4, 3, 5), np.dtype("int16"), "F", "f.nii") == expected


@pytest.mark.parametrize(
    "chunks", [{3: 1}, {"x": 1}, "banana", ((1, 2), (3,), (5,)), (1, 2), -5], ids=repr
)
def test_parse_chunks_rejects(chunks: Any) -> None:
    with pytest.raises(ValueError, match=r"f\.nii") as err:
        parse_chunks(chunks, (4, 3, 5), np.dtype("int16"), "F", "f.nii")
    assert "auto" in str(err.value) or "axis" in str(err.value)
