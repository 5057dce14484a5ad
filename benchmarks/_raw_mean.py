"""The temporal mean with no dask and no lazyimg: what two cores give at best.

:func:`partial_sum` runs in a process of its own pinned to one core: it reads
whole chunks of volumes of an uncompressed NIfTI with ``os.preadv`` into a
fresh buffer and sums each over time in float64, which is the arithmetic
dask's ``mean`` does per chunk. :func:`temporal_mean` spreads the chunks over
one or two such processes (one single-process pool per core) and adds their
partial sums. The speed-up of two processes over one bounds what any
scheduler can reach for this job on this machine: both cores share the memory
bus and the last-level cache.
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import Executor

import nibabel as nib
import numpy as np


def layout(path: str) -> tuple[int, tuple[int, ...], np.dtype]:
    """Offset of the voxel data, shape and on-disk dtype of an uncompressed NIfTI."""
    header = nib.load(path).header
    return int(header.get_data_offset()), header.get_data_shape(), header.get_data_dtype()


def partial_sum(path: str, core: int, bounds: list[tuple[int, int]]) -> np.ndarray:
    """Sum over the last axis of the volume ranges `bounds`, in a process pinned to `core`."""
    os.sched_setaffinity(0, {core})
    offset, shape, dtype = layout(path)
    volume = math.prod(shape[:-1]) * dtype.itemsize
    total = np.zeros(shape[:-1], np.float64, order="F")
    fd = os.open(path, os.O_RDONLY)
    try:
        for start, stop in bounds:
            buf = np.empty((stop - start) * volume, np.uint8)
            got = os.preadv(fd, [buf], offset + start * volume)
            if got != buf.size:
                raise OSError(f"{path}: short read")
            block = buf.view(dtype).reshape(shape[:-1] + (stop - start,), order="F")
            total += block.sum(axis=-1, dtype=np.float64)
    finally:
        os.close(fd)
    return total


def temporal_mean(
    pools: list[Executor], path: str, chunks: tuple[int, ...], cores: list[int]
) -> np.ndarray:
    """The mean over the last axis, chunk by chunk, on one single-process pool per core.

    Chunk ``i`` goes to pool ``i % len(pools)``, as a balanced scheduler would
    hand them out.
    """
    edges = np.concatenate(([0], np.cumsum(chunks))).tolist()
    bounds = list(itertools.pairwise(edges))
    n = len(pools)
    futures = [
        pool.submit(partial_sum, path, core, bounds[i::n])
        for i, (pool, core) in enumerate(zip(pools, cores, strict=False))
    ]
    return sum(f.result() for f in futures) / edges[-1]
