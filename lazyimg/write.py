"""Stream lazy images to NIfTI files, chunk by chunk, atomically.

:func:`save` writes a LazyImage, an ``xarray.DataArray`` (geometry from its
attrs and coordinates, see :mod:`lazyimg.xarray`) or a dask/numpy array to
``.nii`` or ``.nii.gz``, in two phases:

1. **Header and allocation.** A task creates a temporary file next to the
   target (``.<name>.<token>.lazyimg-tmp``), writes the NIfTI header and sets
   the file to its final size.
2. **Regions.** ``dask.array.store`` hands every chunk to a
   :class:`RegionWriter`, a picklable object that holds only the path, the data
   offset, shape and dtype; it opens the file, ``pwrite``\\ s its region and
   closes it, so chunks are written in parallel, by threads or by workers, with
   no shared handle. The data is first rechunked to the file's layout (slabs
   along the last axis), so each region is one contiguous write -- unless the
   input's chunks cross the whole last axis, where a rechunk would have to hold
   the whole image; those chunks are written in place as several runs instead.

Then the file is flushed to disk (``fsync``) and renamed over the target: the
target appears only when complete, and an existing file of that name is never
touched before that. Any exception or ``KeyboardInterrupt`` removes the
temporary files. Peak memory is a few chunks, however large the image.

A gzip stream can only be written in order, while dask finishes chunks in any
order and on any worker; so a ``.nii.gz`` is first written uncompressed as
above (in parallel) and then compressed in one sequential pass through
:mod:`gzip` at `compresslevel`, streaming 4 MiB at a time. It needs the
uncompressed size in free disk space for a while. The result is one ordinary
gzip member (``gzip -t`` passes; nibabel reads it).
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import nibabel as nib
import numpy as np
from dask.delayed import Delayed

from ._chunks import chunk_limit, disk_chunks
from ._header import build_header, from_obj, header_bytes, nifti_order, out_dtype

__all__ = ["RegionWriter", "save"]

_COPY_BYTES = 4 * 2**20
#: Regions whose contiguous runs are shorter than this are written through memory maps.
_SHORT_RUN = 64 * 2**10
#: Largest piece of a run copied and written at once.
_PIECE = 8 * 2**20
#: Largest span of the file one memory map covers.
_WINDOW = 16 * 2**20

# temporary files whose save was abandoned in this process: late tasks must not revive them
_aborted: set[str] = set()
_aborted_lock = threading.Lock()


# --------------------------------------------------------------------------- the writer


@dataclass(frozen=True)
class RegionWriter:
    """Writes regions of a Fortran-ordered array into a file: path-only, picklable.

    ``writer[region] = block`` is what ``dask.array.store`` calls; each call
    opens the file, writes with ``os.pwrite`` and closes it again, so writers
    running in different threads or processes never share a handle. The file
    must exist (created with its header by :func:`save`): a region never
    re-creates a file that was removed because the save was abandoned.
    """

    path: str
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    def __setitem__(self, key: tuple[slice, ...], value: Any) -> None:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (len(self.shape) - len(key))
        starts = [k.indices(n)[0] for k, n in zip(key, self.shape, strict=True)]
        block = np.asarray(value, dtype=self.dtype)
        if block.size == 0:
            return
        shape, ndim = self.shape, len(self.shape)
        # axes below `p` are whole, so axes 0..p of the block are one run in the file
        p = 0
        while p < ndim - 1 and block.shape[p] == shape[p]:
            p += 1
        run_bytes = self.dtype.itemsize * math.prod(block.shape[: p + 1])
        if run_bytes < _SHORT_RUN and block.size * self.dtype.itemsize > run_bytes:
            self._write_mapped(starts, block, p)
            return
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for file_offset, piece in self._runs(starts, block, p):
                _pwrite_all(fd, piece, file_offset)
        finally:
            os.close(fd)

    def _strides(self) -> list[int]:
        return [self.dtype.itemsize * math.prod(self.shape[:a]) for a in range(len(self.shape))]

    def _runs(self, starts: list[int], block: np.ndarray, p: int) -> Any:
        """``(file offset, bytes)`` of every contiguous run of `block` at `starts`.

        A run is cut into pieces of at most ``_PIECE`` bytes along axis `p`: a
        block that is not Fortran-contiguous (broadcasting often gives such
        layouts) is then copied a piece at a time, never whole.
        """
        strides = self._strides()
        base = self.offset + sum(s * st for s, st in zip(starts, strides, strict=True))
        per = max(1, _PIECE // strides[p]) if block.shape[p] else 1
        for rest in np.ndindex(*block.shape[p + 1 :]):
            at = base + sum(r * strides[p + 1 + a] for a, r in enumerate(rest))
            for g0 in range(0, block.shape[p], per):
                piece = block[(slice(None),) * p + (slice(g0, g0 + per), *rest)]
                yield at + g0 * strides[p], np.ravel(piece, order="F").view(np.uint8).data

    def _write_mapped(self, starts: list[int], block: np.ndarray, p: int) -> None:
        """Write a region made of many short runs through memory maps of the file.

        One ``pwrite`` per run would cost a system call per few bytes (chunks
        split along the fastest axes); instead windows of at most ``_WINDOW``
        bytes of the file are mapped one at a time, the region's part is copied
        in, and the window is unmapped again, so resident memory stays small.
        Regions of different chunks touch different bytes, so parallel writers
        never overwrite each other's values.
        """
        shape, ndim = self.shape, len(self.shape)
        strides = self._strides()
        q = p + 1  # map axes 0..q-1 whole, a group of positions of axis q at a time
        while q < ndim - 1 and strides[q + 1] <= _WINDOW:
            q += 1
        group = max(1, _WINDOW // strides[q])
        inner = tuple(slice(s, s + n) for s, n in zip(starts[:q], block.shape[:q], strict=True))
        for rest in np.ndindex(*block.shape[q + 1 :]):
            base = self.offset + sum(
                (starts[q + 1 + a] + r) * strides[q + 1 + a] for a, r in enumerate(rest)
            )
            for g0 in range(0, block.shape[q], group):
                g1 = min(block.shape[q], g0 + group)
                window = np.memmap(
                    self.path,
                    dtype=self.dtype,
                    mode="r+",
                    offset=base + (starts[q] + g0) * strides[q],
                    shape=(*shape[:q], g1 - g0),
                    order="F",
                )
                window[(*inner, slice(None))] = block[(slice(None),) * q + (slice(g0, g1), *rest)]
                del window  # unmaps: the pages stay in the page cache, not in this process


def _pwrite_all(fd: int, buf: memoryview, offset: int) -> None:
    done = 0
    while done < len(buf):
        done += os.pwrite(fd, buf[done:], offset + done)


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class _Job:
    """Everything the tasks of one save need: paths, header bytes, layout."""

    target: str
    tmp: str
    header: bytes
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    compresslevel: int | None

    @property
    def tmp_gz(self) -> str:
        return self.tmp + ".gz"

    def begin(self) -> RegionWriter:
        """Create the temporary file with its header, at its final size."""
        _check_live(self.tmp)
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            _pwrite_all(fd, memoryview(self.header), 0)
            os.ftruncate(fd, self.offset + math.prod(self.shape) * self.dtype.itemsize)
        finally:
            os.close(fd)
        return RegionWriter(self.tmp, self.offset, self.shape, self.dtype)

    def finish(self, stored: Any) -> Path:
        """Flush, compress if asked, and rename into place."""
        _check_live(self.tmp)
        if self.compresslevel is None:
            _fsync(self.tmp)
            os.replace(self.tmp, self.target)
        else:
            self._compress()
            os.unlink(self.tmp)
            os.replace(self.tmp_gz, self.target)
        _fsync_dir(os.path.dirname(self.target))
        return Path(self.target)

    def _compress(self) -> None:
        fd = os.open(self.tmp_gz, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, "wb") as raw, open(self.tmp, "rb") as src:
            # no file name and a zero mtime in the gzip header: same data, same bytes
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, compresslevel=self.compresslevel or 6, mtime=0
            ) as gz:
                buf = bytearray(_COPY_BYTES)
                view = memoryview(buf)
                while n := src.readinto(buf):
                    _check_live(self.tmp)
                    gz.write(view[:n])
            raw.flush()
            os.fsync(raw.fileno())

    def abort(self) -> None:
        """Remove the temporary files; late tasks of this save will refuse to run."""
        with _aborted_lock:
            _aborted.add(self.tmp)
        for name in (self.tmp, self.tmp_gz):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


def _check_live(tmp: str) -> None:
    with _aborted_lock:
        if tmp in _aborted:
            raise RuntimeError(f"{tmp}: this save was abandoned; not writing.")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class SaveDelayed(Delayed):
    """The Delayed of ``save(..., compute=False)``: ``.compute()`` cleans up after failures.

    Computed with ``dask.compute(...)`` together with other collections, a failed
    save may leave its hidden ``.lazyimg-tmp`` file behind in the target's
    directory (the target itself is never touched).
    """

    __slots__ = ("_job",)

    def __init__(self, key: Any, dsk: Any, length: Any = None, layer: Any = None) -> None:
        super().__init__(key, dsk, length, layer)
        self._job: _Job | None = None

    def compute(self, **kwargs: Any) -> Any:
        try:
            return super().compute(**kwargs)
        except BaseException:
            if self._job is not None:
                self._job.abort()
            raise


# --------------------------------------------------------------------------- chunks


def _slab_chunks(x: da.Array) -> tuple[tuple[int, ...], ...] | None:
    """Chunks splitting `x` only along its last axis (slabs), or None to keep its own.

    The input's boundaries along the last axis are kept, so no chunk is read
    twice; a rechunk is chosen only when one slab costs no more memory than
    the chunks it is made from, i.e. when the input is not already split along
    the last axis alone and its last-axis chunks are at most a chunk-size thick.
    """
    if x.ndim < 2 or all(len(c) == 1 for c in x.chunks[:-1]):
        return None  # already slabs (or a single axis)
    limit = chunk_limit()
    per_position = math.prod(x.shape[:-1]) * x.dtype.itemsize
    if per_position > limit:
        # one position along the last axis is itself bigger than a chunk: split
        # along the slowest axes as the disk plan does, if the input allows it
        plan = disk_chunks(x.shape, x.dtype.itemsize, "F", limit)
        return plan if max(x.chunks[-1]) == 1 else None
    if max(x.chunks[-1]) * per_position > 4 * limit:
        return None  # each slab would depend on chunks holding most of the image
    return (*((n,) for n in x.shape[:-1]), x.chunks[-1])


# --------------------------------------------------------------------------- save


def _parse_target(path: Any) -> tuple[Path, bool]:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"lazyimg.save: path must be a str or os.PathLike, got {type(path).__name__}."
        )
    target = Path(path).absolute()
    lower = target.name.lower()
    if not (lower.endswith(".nii") or lower.endswith(".nii.gz")):
        raise ValueError(
            f"lazyimg.save: {target.name!r} does not end in .nii or .nii.gz; lazyimg writes "
            "single-file NIfTI. Rename the target (e.g. to '.nii.gz')."
        )
    if target.is_dir():
        raise IsADirectoryError(f"lazyimg.save: {target} is a directory; give a file name.")
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"lazyimg.save: directory {target.parent} does not exist; create it first."
        )
    return target, lower.endswith(".gz")


def _parse_level(level: Any) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= 9:
        raise ValueError(f"lazyimg.save: compresslevel must be an int from 0 to 9, got {level!r}.")
    return int(level)


def save(
    obj: Any,
    path: str | os.PathLike[str],
    *,
    affine: np.ndarray | None = None,
    header: Any = None,
    dtype: Any = None,
    compute: bool = True,
    compresslevel: int = 6,
) -> Any:
    """Write an image to NIfTI, streaming it chunk by chunk; the file appears only when complete.

    Parameters
    ----------
    obj : LazyImage, xarray.DataArray, dask array or numpy array
        What to write. A DataArray's axes are put in NIfTI order by name
        (``i, j, k, time, u, v, w``); its affine comes from ``attrs["affine"]``
        and its ``i, j, k`` coordinates, its TR and units from the ``time``
        coordinate and attrs (see :mod:`lazyimg.xarray`). A plain array is
        written in its own axis order.
    path : str or os.PathLike
        Target ending in ``.nii`` or ``.nii.gz``.
    affine : (4, 4) array, optional
        Voxel-to-world affine of `obj` as written; overrides what `obj` says.
        Default for plain arrays: the identity.
    header : nibabel header, optional
        Template for fields lazyimg does not derive (slice timing, ``cal_min``,
        extensions, ...). A LazyImage of a NIfTI file uses its own header.
    dtype : numpy dtype, optional
        Data type on disk; default the array's (booleans as uint8, float16 as
        float32). Values are cast as numpy's ``astype`` does, and written
        unscaled.
    compute : bool
        False returns a :class:`dask.delayed.Delayed` that does all of it when
        computed (its ``.compute()`` cleans up after a failure, too).
    compresslevel : int
        gzip level (0-9) for ``.nii.gz``.

    Returns
    -------
    pathlib.Path or dask.delayed.Delayed
        The absolute path written, or the Delayed that will write it.

    Raises
    ------
    ValueError
        A suffix other than ``.nii``/``.nii.gz``, more than 7 axes, no affine
        known for a DataArray, coordinates an affine cannot describe.
    TypeError
        An object or a dtype NIfTI cannot hold.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, nibabel as nib, lazyimg
    >>> from lazyimg.write import save
    >>> from lazyimg.testing import write_fmri
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> img = lazyimg.load(write_fmri(tmp / "bold.nii.gz", (8, 8, 4, 6), tr=2.0))
    >>> z = (img.data - img.data.mean(-1, keepdims=True)).astype("float32")
    >>> out = save(z, tmp / "demeaned.nii", affine=img.affine)
    >>> back = nib.load(out)
    >>> back.shape, back.get_data_dtype().name
    ((8, 8, 4, 6), 'float32')
    """
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
    target, compressed = _parse_target(path)
    level = _parse_level(compresslevel)
    lab = nifti_order(from_obj(obj, name), name)
    if lab.data.ndim == 0:
        raise ValueError(f"lazyimg.save of {name}: a scalar is not an image; give an array.")
    template = header if header is not None else lab.template
    if template is not None and not isinstance(template, nib.Nifti1Header):
        try:
            template = nib.Nifti1Header.from_header(template)
        except Exception:
            raise TypeError(
                f"lazyimg.save of {name}: header must be a nibabel header, got "
                f"{type(template).__name__}."
            ) from None
    hdr = build_header(lab, out_dtype(dtype, lab.data.dtype, name), affine, template, name)
    disk_dtype = hdr.get_data_dtype()  # with the header's byte order

    data = lab.data if lab.data.dtype == disk_dtype else lab.data.astype(disk_dtype)
    slabs = _slab_chunks(data)
    if slabs is not None and slabs != data.chunks:
        data = data.rechunk(slabs)

    head = header_bytes(hdr)
    tmp = str(target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.lazyimg-tmp")
    job = _Job(
        target=str(target),
        tmp=tmp,
        header=head,
        offset=int(hdr.get_data_offset()),
        shape=tuple(int(n) for n in data.shape),
        dtype=disk_dtype,
        compresslevel=level if compressed else None,
    )
    begin = dask.delayed(job.begin, pure=False)(dask_key_name=f"lazyimg-save-begin-{tmp[-25:]}")
    stored = da.store(data, begin, lock=False, compute=False)
    parts = stored.to_delayed().ravel().tolist()
    done = dask.delayed(job.finish, pure=False)(
        parts, dask_key_name=f"lazyimg-save-finish-{tmp[-25:]}"
    )
    result = SaveDelayed(done.key, done.dask, layer=done.__dask_layers__()[0])
    result._job = job
    if not compute:
        return result
    result.compute()
    return target
