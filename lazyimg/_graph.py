"""dask graphs over a Source (by path) or over an array already in memory (as views).

Each chunk of a file-backed array is one task ``read(source, selection)``. The
array is a :class:`DiskArray`, a ``dask.array.Array`` whose basic indexing
(``x[..., k]``, ``x[:, :, z, :]``, ``x[i, j, k, :]``) composes the index into
the selections of new read tasks instead of stacking ``getitem`` on top of
whole-chunk reads; so a computed slice reads only its bytes, without relying on
dask's optimizer to fuse slices into reads. Anything else (fancy indexing,
arithmetic, reductions) is plain dask.

Graph names are deterministic: the same file (path, size, mtime), selection,
chunks and dtype give the same name; a changed file gives a new one.
"""

from __future__ import annotations

import itertools
import sys
import uuid
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.blockwise import blockwise
from dask.highlevelgraph import HighLevelGraph
from dask.layers import BlockwiseDepDict

from lazyimg._io.formats import Source
from lazyimg._io.read import Block, ReadTask
from lazyimg._plan.chunks import view_read_chunks
from lazyimg._plan.index import (
    Item,
    NewAxis,
    Selection,
    block_selections,
    compose,
    is_basic_index,
    merge_block,
    tight_index,
)
from lazyimg.errors import CorruptImageError


def _sel_token(sel: Selection) -> tuple[Any, ...]:
    return tuple(
        ("r", it.start, it.stop, it.step)
        if isinstance(it, range)
        else ("n", it.length)
        if isinstance(it, NewAxis)
        else ("i", it)
        for it in sel
    )


class DiskArray(da.Array):
    """A dask array read from a file whose basic slices read only what they need."""

    _lazyimg: tuple[ReadTask, Selection, tuple[tuple[int, ...], ...]]

    def __getitem__(self, index: Any) -> Any:
        state = getattr(self, "_lazyimg", None)
        if state is None or not is_basic_index(index):
            return super().__getitem__(index)
        task, sel, source_chunks = state
        return disk_array(task, compose(sel, index), source_chunks)

    def __reduce__(self) -> Any:
        # pickles as a plain dask array: the graph already says everything
        return (da.Array, (self.dask, self.name, self.chunks, self.dtype, self._meta))

    def __dask_postcompute__(self) -> Any:
        return _assemble_fresh, ()

    def compute(self, **kwargs: Any) -> Any:
        """dask's ``compute``, without importing ``distributed`` when no Client can exist.

        See :func:`threaded_default`. One chunk is read in the calling thread (no
        graph optimisation, no pool); more go to dask's thread pool.
        """
        chosen = threaded_default(kwargs)
        if chosen is not kwargs:
            state = getattr(self, "_lazyimg", None)
            if state is not None and self.npartitions == 1 and not kwargs:
                return _assemble_fresh(state[0](Block(state[1])))  # the one read task, inline
        return super().compute(**chosen)


def threaded_default(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` for ``compute`` of an array or Delayed, naming dask's choice when it is certain.

    With no scheduler chosen, dask imports ``distributed`` (~0.3-0.5 s) to look
    for a Client, and finding none uses the collection's default, the threaded
    scheduler for arrays and Delayed. No Client can exist before ``distributed``
    is imported; once it is, ``distributed.get_client()`` is dask's own test. When
    neither finds a Client, the threaded scheduler is named directly (as a
    callable, which dask runs without looking again). Any Client, any
    ``scheduler=`` and any configured scheduler get `kwargs` back unchanged.
    """
    if (
        "scheduler" not in kwargs
        and dask.config.get("scheduler", None) is None
        and dask.config.get("get", None) is None
        and _no_client()
    ):
        from dask.threaded import get

        return {**kwargs, "scheduler": get}
    return kwargs


def _no_client() -> bool:
    """Whether dask, asked now, would find no ``distributed`` Client (as ``get_scheduler`` asks)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:  # not imported (or blocked): no Client can exist
        return True
    try:
        distributed.get_client()
    except ValueError:  # dask's own sign of "no Client": it then uses the collection's default
        return True
    except Exception:  # anything else: leave the choice to dask
        return False
    return False


def _assemble_fresh(results: Any) -> np.ndarray:
    """dask's final step for a DiskArray: no defensive copy, and keep the blocks' layout.

    Every block comes fresh from :func:`~lazyimg._io.read.read` and is referenced
    nowhere else, so one block is returned as it is, and several are placed in
    an array of their own (Fortran) order rather than transposed into C order.
    """
    numblocks: list[int] = []
    first = results
    while isinstance(first, (list, tuple)):
        numblocks.append(len(first))
        first = first[0]
    if all(n == 1 for n in numblocks):
        one = np.asarray(first)
        return one[()] if one.ndim == 0 else one  # a numpy scalar, as dask gives

    def block(idx: tuple[int, ...]) -> np.ndarray:
        x = results
        for i in idx:
            x = x[i]
        return np.asarray(x)

    edges = []
    for axis, n in enumerate(numblocks):
        sizes = [
            block(tuple(i if a == axis else 0 for a in range(len(numblocks)))).shape[axis]
            for i in range(n)
        ]
        edges.append(np.concatenate(([0], np.cumsum(sizes))).tolist())
    order: Literal["F", "C"] = (
        "F" if first.flags.f_contiguous and not first.flags.c_contiguous else "C"
    )
    out = np.empty(tuple(e[-1] for e in edges), first.dtype, order=order)
    for idx in np.ndindex(*numblocks):
        out[tuple(slice(edges[a][i], edges[a][i + 1]) for a, i in enumerate(idx))] = block(idx)
    return out


#: Most chunks one graph may have (~60 µs each to build: ten million take ten minutes).
MAX_BLOCKS = 10_000_000


def _refuse_absurd(path: str, chunks: tuple[tuple[int, ...], ...]) -> None:
    """Refuse, before allocating anything per block, a graph with absurdly many chunks."""
    count = 1
    for c in chunks:
        count *= len(c)
    if count > MAX_BLOCKS:
        shape = tuple(sum(c) for c in chunks)
        raise CorruptImageError(
            f"{path}: an array of shape {shape} in these chunks would need {count} dask chunks "
            f"(at most {MAX_BLOCKS} are built). If the header is right, load with larger "
            "chunks (lazyimg.load(..., chunks=...)); otherwise the header is damaged."
        )


def disk_array(
    task: ReadTask, sel: Selection, source_chunks: tuple[tuple[int, ...], ...]
) -> DiskArray:
    """The dask array of selection `sel` of a file, chunked along `source_chunks`."""
    dtype = task.out_dtype
    chunks = view_read_chunks(sel, source_chunks, dtype.itemsize)
    _refuse_absurd(task.source.path, chunks)
    name = "lazyimg-" + tokenize(
        task.source, task.dtype and task.dtype.str, task.raw, _sel_token(sel), source_chunks
    )
    per_axis: list[list[Item]] = block_selections(sel, chunks)
    blocks = {
        idx: Block(merge_block(sel, tuple(per_axis[a][i] for a, i in enumerate(idx))))
        for idx in itertools.product(*(range(len(items)) for items in per_axis))
    }
    # A Blockwise layer rather than a dict of tasks: dask fuses the reads into
    # whatever elementwise step or reduction follows, as one task per chunk
    # under the follower's name, instead of leaving an alias task per chunk
    # behind. On a cluster those aliases take up worker slots, and the
    # scheduler's queue then hands out reads unevenly.
    axes = tuple(range(len(chunks)))
    layer = blockwise(
        task,
        name,
        axes,
        BlockwiseDepDict(blocks, numblocks=tuple(len(c) for c in chunks)),
        axes,
        numblocks={},
        _data_producer=True,
    )
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    meta = np.empty((0,) * len(chunks), dtype)
    arr = DiskArray(graph, name, chunks, meta=meta)
    arr._lazyimg = (task, sel, source_chunks)
    return arr


def full_disk_array(
    source: Source, chunks: tuple[tuple[int, ...], ...], dtype: np.dtype[Any] | None, raw: bool
) -> DiskArray:
    """The whole image as a DiskArray."""
    sel = tuple(range(n) for n in source.shape)
    return disk_array(ReadTask(source, dtype, raw), sel, chunks)


def _take(arr: np.ndarray, index: tuple[slice, ...], dtype: np.dtype[Any] | None) -> np.ndarray:
    part = arr[index]
    return part if dtype is None or part.dtype == dtype else part.astype(dtype)


class MemoryArray(da.Array):
    """A dask array over an array in memory whose basic indices mean what numpy says.

    Basic indices are rewritten with in-range bounds before dask sees them
    (see :func:`~lazyimg._plan.index.tight_index`); results stay MemoryArrays so
    chained indexing is covered too.
    """

    def __getitem__(self, index: Any) -> Any:
        if not is_basic_index(index):
            return super().__getitem__(index)
        out = super().__getitem__(tight_index(index, self.shape))
        return MemoryArray(out.dask, out.name, out.chunks, meta=out._meta)

    def __reduce__(self) -> Any:
        return (da.Array, (self.dask, self.name, self.chunks, self.dtype, self._meta))


def memory_array(
    arr: np.ndarray, chunks: tuple[tuple[int, ...], ...], dtype: np.dtype[Any] | None
) -> da.Array:
    """A dask array whose tasks slice `arr` itself: nothing is copied to build it.

    ``da.from_array`` would copy a numpy input; here the array is one literal in
    the graph and each chunk is a slice of it. Names are random: an in-memory
    array can change under us, so no content hash could stay valid.
    """
    name = "lazyimg-mem-" + uuid.uuid4().hex
    src = (name + "-source",)
    dsk: dict[Any, Any] = {src: arr}
    edges = [np.concatenate(([0], np.cumsum(c))).tolist() for c in chunks]
    for idx in itertools.product(*(range(len(c)) for c in chunks)):
        index = tuple(slice(edges[a][i], edges[a][i + 1]) for a, i in enumerate(idx))
        dsk[(name, *idx)] = (_take, src, index, dtype)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    meta = np.empty((0,) * arr.ndim, dtype or arr.dtype)
    return MemoryArray(graph, name, chunks, meta=meta)
