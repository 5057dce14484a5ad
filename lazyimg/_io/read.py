"""The read task: a Source and a selection in, a freshly allocated ndarray out.

:func:`read` is what every chunk of a lazyimg dask graph calls, and what
``img.slicecopy`` calls directly. The result always owns its memory: raw
files are read with ``os.pread`` (or a decompressing stream) into a buffer
lazyimg allocated (large ones recycle the memory of earlier chunks, see
:mod:`lazyimg._io.buffers`), and scaling is applied in place with nibabel's dtypes, so
values equal ``np.asarray(nib.load(f).dataobj)[index]`` bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lazyimg._io import buffers
from lazyimg._io import files as _files
from lazyimg._io.formats import Source
from lazyimg._io.source import is_remote
from lazyimg._plan.index import (
    NewAxis,
    Selection,
    compose,
    selection_shape,
    selection_slices,
    source_items,
)
from lazyimg._plan.reads import (
    ReadPlan,
    contiguous_run,
    group_positions,
    plan_read,
)
from lazyimg.errors import CorruptImageError

#: What one separate read of a compressed stream costs beyond its bytes, in bytes to
#: decompress, when the stream cannot say better: a forward seek through a sequential
#: decoder. A gzip file with a seek-point index charges half the mean gap between its
#: points instead (a restart's average lead-in), so a selection whose runs would
#: together decompress about as much as their whole span is read in one pass.
COMPRESSED_READ_OVERHEAD = 4 * 1024 * 1024


@dataclass(frozen=True)
class ReadTask:
    """The picklable callable of one chunk: a Source recipe plus how to cast."""

    source: Source
    dtype: np.dtype[Any] | None
    raw: bool

    @property
    def out_dtype(self) -> np.dtype[Any]:
        """The dtype this task's reads return."""
        return self.dtype or (self.source.stored if self.raw else self.source.scaled)

    def __call__(self, block: Block) -> np.ndarray:
        return read(self.source, block.sel, self.dtype, self.raw)


@dataclass(frozen=True)
class Block:
    """One chunk's selection, wrapped so dask treats it as an opaque argument."""

    sel: Selection


def read(
    source: Source,
    sel: Selection,
    dtype: np.dtype[Any] | None = None,
    raw: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Read selection `sel` of `source` as a new array, or into `out`.

    Parameters
    ----------
    source : Source
        The image recipe.
    sel : Selection
        One item per axis of the wanted view (see :mod:`lazyimg._plan.index`).
    dtype : numpy dtype, optional
        Cast the (scaled) values to this dtype; default: the scaled dtype.
    raw : bool
        Return stored values without scaling.
    out : numpy.ndarray, optional
        Where to put the values instead (a streaming pass reuses its buffers): of
        the selection's shape and the result's dtype, contiguous in the source's
        order on disk.
    """
    out_dtype = np.dtype(dtype) if dtype is not None else (source.stored if raw else source.scaled)
    out_shape = selection_shape(sel)
    order = "C" if source.order == "C" else "F"
    if out is not None and (
        out.shape != out_shape
        or out.dtype != out_dtype
        or not (out.flags.c_contiguous if order == "C" else out.flags.f_contiguous)
        or not out.flags.writeable
    ):
        raise ValueError(
            f"out: {out.shape} {out.dtype} array given, a writeable {order}-contiguous "
            f"{out_shape} {out_dtype} array needed"
        )
    if 0 in out_shape:
        return np.empty(out_shape, out_dtype) if out is None else out
    for fid in source.files:
        if not is_remote(fid):  # a remote object is checked once, after its reads
            _files.check_identity(fid)
    final = buffers.empty(out_shape, out_dtype, order=order) if out is None else out
    # `core` views `final` with one axis per source axis (integer items as length 1)
    core = final[
        tuple(
            None if isinstance(it, int) else 0 if isinstance(it, NewAxis) else slice(None)
            for it in sel
        )
    ]
    items = source_items(sel)
    flips = tuple(
        slice(None, None, -1) if isinstance(it, range) and it.step < 0 else slice(None)
        for it in items
    )
    flipped = any(f.step == -1 for f in flips)
    dest = core[flips] if flipped else core
    if source.kind == "raw":
        _read_raw(source, items, dest, flipped, raw)
    else:
        _read_nibabel(source, items, dest, raw)
    for fid in source.files:
        _files.check_identity(fid)
    return final


# --------------------------------------------------------------------------- raw files


def _read_raw(
    source: Source, items: tuple[int | range, ...], dest: np.ndarray, flipped: bool, raw: bool
) -> None:
    shape = source.shape
    if source.order == "C":  # plan in disk order: fastest axis first
        shape, items, dest = shape[::-1], items[::-1], dest.T
    entry = _files.raw_file(source)
    if (
        source.compression is None
        and not flipped
        and (raw or _no_scaling(source))
        and dest.dtype == source.stored
        and dest.flags.f_contiguous
    ):
        run = contiguous_run(shape, items)
        if run is not None:  # a volume, a slab, a row: one read straight into the result
            out_bytes = dest.reshape(-1, order="F").view(np.uint8)
            offset = source.offset + run[0] * source.stored.itemsize
            entry.handle.read_into(out_bytes.data, offset)
            _files.count_read(len(out_bytes))
            return
    overhead = _read_overhead(source, entry)
    plan = plan_read(shape, source.stored.itemsize, source.offset, items, read_overhead=overhead)
    itemsize = source.stored.itemsize
    pos_bytes = itemsize * int(np.prod(plan.box_shape[:-1], dtype=np.int64))
    last = plan.box_shape[-1]
    runs_per_pos = 1 if plan.through else len(plan.run_starts) // last
    unscaled = raw or _no_scaling(source)
    direct = (
        plan.direct
        and unscaled
        and dest.dtype == source.stored
        and not flipped
        and dest.flags.f_contiguous
    )
    flat = dest.reshape(-1, order="F").view(np.uint8) if direct else None
    buf = np.empty(0 if direct else min(plan.group, last) * pos_bytes, np.uint8)
    last_item = items[-1]
    first_last = last_item if isinstance(last_item, int) else min(last_item[0], last_item[-1])
    step_last = 1 if isinstance(last_item, int) else abs(last_item.step)
    for p0 in range(0, last, plan.group):
        p1 = min(last, p0 + plan.group)
        nbytes = (p1 - p0) * pos_bytes
        target = (flat[p0 * pos_bytes : p1 * pos_bytes] if flat is not None else buf[:nbytes]).data
        _fill(source, entry, plan, target, p0, p1, pos_bytes, runs_per_pos)
        if flat is not None:
            continue
        box = buf[:nbytes].view(source.stored).reshape(plan.box_shape[:-1] + (p1 - p0,), order="F")
        i0, i1, local = group_positions(plan.post[-1], p0, p1)
        if i1 <= i0:
            continue
        block = box[plan.post[:-1] + (local,)]
        positions = first_last + step_last * np.arange(i0, i1)
        _emit(dest[..., i0:i1], block, source, raw, positions)


def _fill(
    source: Source,
    entry: Any,
    plan: ReadPlan,
    target: memoryview,
    p0: int,
    p1: int,
    pos_bytes: int,
    runs_per_pos: int,
) -> None:
    path = source.path
    if plan.through:
        pieces = [(int(plan.run_starts[0]) + p0 * pos_bytes, 0, len(target))]
    else:
        starts = plan.run_starts[p0 * runs_per_pos : p1 * runs_per_pos].tolist()
        n = plan.run_bytes
        pieces = [(s, i * n, n) for i, s in enumerate(starts)]
    if source.compression in (None, "gzip"):
        # a file or object (no lock: pread, range requests), or a gzip reader (locks for
        # itself, and only while cold)
        entry.handle.read_runs(target, pieces)
        _files.count_read(sum(n for _, _, n in pieces))
        return
    with entry.lock:
        for start, at, n in pieces:
            _files.stream_into(entry.handle, target[at : at + n], start, path)


def _read_overhead(source: Source, entry: Any) -> int:
    """The unproxy rule's cost of one more separate read (see :mod:`lazyimg._plan.reads`)."""
    return int(getattr(entry.handle, "read_overhead", COMPRESSED_READ_OVERHEAD))


def _no_scaling(source: Source) -> bool:
    sc = source.scaling
    return sc.slope is None and sc.inter is None and sc.per_last is None


def _emit(
    dest: np.ndarray, block: np.ndarray, source: Source, raw: bool, positions: np.ndarray
) -> None:
    """Write `block` into `dest`, scaled as nibabel scales (in place where the dtypes allow)."""
    if raw or _no_scaling(source):
        np.copyto(dest, block, casting="unsafe")
        return
    sc = source.scaling
    target = dest if dest.dtype == source.scaled else np.empty(block.shape, source.scaled)
    if sc.per_last is not None:
        np.multiply(block, sc.per_last[positions], out=target)
    else:
        if sc.slope is not None:
            np.multiply(block, sc.slope, out=target)
        else:
            np.copyto(target, block, casting="unsafe")
        if sc.inter is not None:
            np.add(target, sc.inter, out=target)
    if target is not dest:
        np.copyto(dest, target, casting="unsafe")


def scale_into(dest: np.ndarray, block: np.ndarray, source: Source, raw: bool = False) -> None:
    """Write stored values `block` into `dest`, scaled as :func:`read` scales them.

    For sources without per-volume scaling (``source.scaling.per_last`` is None).
    """
    _emit(dest, block, source, raw, np.empty(0, np.intp))


# --------------------------------------------------------------------------- other formats


def _read_nibabel(
    source: Source, items: tuple[int | range, ...], dest: np.ndarray, raw: bool
) -> None:
    entry = _files.nibabel_image(source)
    proxy = entry.handle.dataobj
    index = selection_slices(items)
    # One cached image per file and process; its proxy is not safe to share between
    # threads (HDF5/netCDF behind MINC, an open file behind PAR/REC), so reads of one
    # file take turns while different files still read in parallel.
    with entry.lock:
        try:
            data = proxy._get_unscaled(index) if raw else proxy[index]
        except (ValueError, OSError, EOFError, KeyError, IndexError) as err:
            raise CorruptImageError(
                f"{source.path}: nibabel could not read the data ({type(err).__name__}: {err}). "
                "The file is damaged or truncated; copy or export it again."
            ) from None
    np.copyto(dest, np.asarray(data).reshape(dest.shape), casting="unsafe")


def numpy_result(out: np.ndarray, index: Any) -> Any:
    """`out` as numpy indexing returns it: a scalar (native byte order) for an all-integer index.

    A 0-d result of an index with an Ellipsis stays a 0-d array, as in numpy.
    """
    items = index if isinstance(index, tuple) else (index,)
    if out.ndim == 0 and not any(it is Ellipsis for it in items):
        return out[()]
    return out


class ViewProxy:
    """nibabel's array-proxy protocol over a lazyimg selection (used after ``img.slicer``)."""

    def __init__(self, task: ReadTask, sel: Selection) -> None:
        self._task = task
        self._sel = sel

    @property
    def shape(self) -> tuple[int, ...]:
        return selection_shape(self._sel)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._task.out_dtype

    @property
    def is_proxy(self) -> bool:
        return True

    def __getitem__(self, index: Any) -> Any:
        out = read(self._task.source, compose(self._sel, index), self._task.dtype, self._task.raw)
        return numpy_result(out, index)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = np.asarray(self[()])
        return arr if dtype is None else arr.astype(dtype, copy=False)


def portable_image(nib_img: Any, task: ReadTask, sel: Selection, affine: np.ndarray) -> Any:
    """A nibabel image like `nib_img` (class, header) over selection `sel`, with `affine`.

    Its proxy is a :class:`ViewProxy`, which holds a Source recipe rather than an
    open file, so the image pickles also where nibabel's MINC and PAR/REC
    proxies do not.
    """
    try:
        return type(nib_img)(ViewProxy(task, sel), affine, nib_img.header)
    except TypeError as err:  # ECAT images also want their frames' subheaders
        raise TypeError(
            f"{task.source.path}: a {type(nib_img).__name__} image cannot be rebuilt around a "
            f"lazyimg selection ({err}), so it neither pickles nor slices with img.slicer; "
            "use img.data or img.slicecopy, which do."
        ) from None
