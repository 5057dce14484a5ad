"""Stream lazy images to NIfTI and MGH files, chunk by chunk, atomically.

:func:`save` writes a LazyImage, an ``xarray.DataArray`` (geometry from its
attrs and coordinates, see :mod:`lazyimg.xarray`) or a dask/numpy array to
``.nii``, ``.nii.gz``, ``.mgh`` or ``.mgz`` (:mod:`lazyimg._write.mgh`). It checks its arguments, builds the header and wires
the dask graph: one task creates the temporary file, ``dask.array.store``
hands every chunk to a :class:`~lazyimg._write.atomic.RegionWriter`, and a last task
renames the complete file over the target. How the file is written, flushed,
compressed and renamed: :mod:`lazyimg._write.atomic`.

The data is first rechunked to the file's layout (slabs along the last axis),
so each region is one contiguous write -- unless the input's chunks cross the
whole last axis, where a rechunk would have to hold the whole image; those
chunks are written in place as several runs instead. Any exception or
``KeyboardInterrupt`` removes the temporary files. Peak memory is a few
chunks, however large the image.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import nibabel as nib
import numpy as np
from dask.delayed import Delayed

from lazyimg._graph import threaded_default
from lazyimg._io.remote import is_url, redact
from lazyimg._plan.chunks import chunk_limit, disk_chunks
from lazyimg._write.atomic import RegionWriter, SaveJob
from lazyimg._write.header import build_header, header_bytes, out_dtype
from lazyimg._write.labels import Labelled, from_obj, nifti_order, rename
from lazyimg._write.mgh import mgh_layout
from lazyimg._write.stored import to_stored
from lazyimg._write.tmpfiles import sweep, temporary_name
from lazyimg._write.upload import save_to_url, stream_to_url, streams
from lazyimg.errors import ImageNotFoundError, SaveError

__all__ = ["RegionWriter", "save"]


class SaveDelayed(Delayed):
    """The Delayed of ``save(..., compute=False)``: ``.compute()`` cleans up after failures.

    Computed with ``dask.compute(...)`` together with other collections, a failed
    save may leave its hidden ``.lazyimg-tmp`` file behind in the target's
    directory (the target itself is never touched).
    """

    __slots__ = ("_job",)

    def __init__(self, key: Any, dsk: Any, length: Any = None, layer: Any = None) -> None:
        super().__init__(key, dsk, length, layer)
        self._job: SaveJob | None = None

    def compute(self, **kwargs: Any) -> Any:
        try:  # no import of ``distributed`` when no Client can exist
            return super().compute(**threaded_default(kwargs))
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


#: Suffixes save writes: ``(suffix, format, gzipped)``, longest first.
_TARGETS = (
    (".nii.gz", "nifti", True),
    (".nii", "nifti", False),
    (".mgz", "mgh", True),
    (".mgh", "mgh", False),
)


def _parse_target(path: Any) -> tuple[Path, str, bool]:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"lazyimg.save: path must be a str or os.PathLike, got {type(path).__name__}."
        )
    target = Path(path).absolute()
    kind = _parse_kind(target.name)
    if target.is_dir():
        err = SaveError(f"{target}: could not save: it is a directory; give a file name.")
        err.errno = errno.EISDIR
        raise err
    if not target.parent.is_dir():
        what = "is not a directory" if target.parent.exists() else "does not exist"
        raise ImageNotFoundError(
            f"{target}: could not save: the folder {target.parent} {what}; create it first."
        )
    return target, *kind


def _parse_kind(name: str) -> tuple[str, bool]:
    """``(format, gzipped)`` of a target's name, from its suffix."""
    lower = name.lower()
    kind = next((t for t in _TARGETS if lower.endswith(t[0])), None)
    if kind is None:
        raise ValueError(
            f"lazyimg.save: {name.rsplit('/', 1)[-1]!r} does not end in .nii, .nii.gz, .mgh or "
            ".mgz; lazyimg writes single-file NIfTI and MGH. Rename the target (e.g. to '.nii.gz')."
        )
    return kind[1], kind[2]


def _parse_level(level: Any) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= 9:
        raise ValueError(f"lazyimg.save: compresslevel must be an int from 0 to 9, got {level!r}.")
    return int(level)


def _values(
    lab: Labelled, dtype: Any, name: str
) -> tuple[da.Array, np.dtype[Any], tuple[float, float] | None]:
    """The values to write, their dtype on disk and the scale factors to record."""
    if isinstance(dtype, str) and dtype == "stored":
        if lab.stored is None:
            raise TypeError(
                f"lazyimg.save of {name}: dtype='stored' needs the file the values came from, "
                "and this array has none (no LazyImage, no attrs['nifti_header']); pass a "
                "numpy dtype such as 'int16'."
            )
        disk, slope, inter = lab.stored
        data = lab.data if lab.raw is not None else to_stored(lab.data, disk, slope, inter, name)
        return data, disk, (slope, inter)
    return lab.data, out_dtype(dtype, lab.data.dtype, name), lab.raw


def _body(
    obj: Any, name: str, kind: str, affine: Any, header: Any, dtype: Any, dims: Any
) -> tuple[da.Array, bytes, int, bytes]:
    """``(data in its disk dtype and file-order chunks, header, data offset, footer)``."""
    lab = nifti_order(rename(from_obj(obj, name), dims, name), name)
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
    data, want, scaling = _values(lab, dtype, name)
    if kind == "mgh":
        mgh = mgh_layout(lab, want, scaling, affine, template, name)
        head, offset, footer, disk_dtype = mgh.header, mgh.offset, mgh.footer, mgh.dtype
    else:
        hdr = build_header(lab, want, affine, template, name, scaling)
        disk_dtype = hdr.get_data_dtype()  # with the header's byte order
        head, offset, footer = header_bytes(hdr), int(hdr.get_data_offset()), b""

    data = data if data.dtype == disk_dtype else data.astype(disk_dtype)
    slabs = _slab_chunks(data)
    if slabs is not None and slabs != data.chunks:
        data = data.rechunk(slabs)
    return data, head, offset, footer


def save(
    obj: Any,
    path: str | os.PathLike[str],
    *,
    affine: np.ndarray | None = None,
    header: Any = None,
    dtype: Any = None,
    dims: Mapping[str, str] | None = None,
    compute: bool = True,
    compresslevel: int = 6,
    storage_options: dict[str, Any] | None = None,
) -> Any:
    """Write an image to NIfTI or MGH, streaming it chunk by chunk; the file appears only when complete.

    Parameters
    ----------
    obj : LazyImage, xarray.DataArray, dask array or numpy array
        What to write. A DataArray's axes are put in NIfTI order by name
        (``i, j, k, time, u, v, w``); its affine comes from ``attrs["affine"]``
        and its ``i, j, k`` coordinates, its TR and units from the ``time``
        coordinate and attrs (see :mod:`lazyimg.xarray`). A plain array is
        written in its own axis order.
    path : str or os.PathLike
        Target ending in ``.nii``, ``.nii.gz`` (NIfTI-1, or NIfTI-2 when an
        axis is longer than 32767), ``.mgh`` or ``.mgz`` (MGH: at most 4
        axes; uint8, int16, uint16, int32 or float32; no scale factors; TR
        from the time coordinate, flip angle, TE, TI and FoV from the source
        MGH header or ``attrs["mgh_scan"]``).
    affine : (4, 4) array, optional
        Voxel-to-world affine of `obj` as written; overrides what `obj` says.
        Default for plain arrays: the identity.
    header : nibabel header, optional
        Template for fields lazyimg does not derive (slice timing, ``cal_min``,
        extensions, ...). A LazyImage of a NIfTI file uses its own header.
    dtype : numpy dtype or "stored", optional
        Data type on disk; default the array's (booleans as uint8, float16 as
        float32). Values are cast as numpy's ``astype`` does, and written
        unscaled. ``"stored"`` writes the type and scale factors
        (``scl_slope``, ``scl_inter``) of the file the values came from -- a
        LazyImage's own file, or the header in a DataArray's
        ``attrs["nifti_header"]`` -- so a scaled int16 image stays int16 with
        its scaling; values are rounded to the stored steps, and ones the
        stored type cannot hold fail the save (:class:`~lazyimg.errors.OutOfRangeError`).
        Stored values (``load(..., dtype="raw")``, or a DataArray with
        ``scl_slope``/``scl_inter`` attrs) are always written with their
        scale factors, so the file's values stay the original file's.
    dims : dict, optional
        New names for a DataArray's dims NIfTI has no place for, e.g.
        ``{"subject": "u"}``; without it such dims are refused
        (:class:`~lazyimg.errors.DimensionError`).
    compute : bool
        False returns a :class:`dask.delayed.Delayed` that does all of it when
        computed (its ``.compute()`` cleans up after a failure, too).
    compresslevel : int
        gzip level (0-9) for ``.nii.gz`` and ``.mgz``.
    storage_options : dict, optional
        When `path` is a URL (``s3://...``): its fsspec filesystem's options. To
        ``s3://`` and ``gs://`` the image is streamed from its chunks as a
        multipart upload (memory: a few chunks and two parts); elsewhere, or
        with ``compute=False``, it is written to a temporary local file, then
        uploaded. The object appears
        only once the upload completed; a failure aborts it.

    Returns
    -------
    pathlib.Path or dask.delayed.Delayed
        The absolute path written, or the Delayed that will write it.

    Raises
    ------
    ValueError
        A suffix other than ``.nii``/``.nii.gz``/``.mgh``/``.mgz``, more axes
        than the format holds or dims it has no place for
        (:class:`~lazyimg.errors.DimensionError`), no affine known for a
        DataArray, coordinates an affine cannot describe, values
        ``dtype="stored"`` cannot hold (:class:`~lazyimg.errors.OutOfRangeError`).
    TypeError
        An object or a dtype the format cannot hold.
    ImageNotFoundError
        The target's folder does not exist.
    SaveError
        The file system refused: no space left (checked when the file's space
        is reserved, before any data is written), a read-only file system, the
        target is a directory. Also an ``OSError`` with its ``errno``. The
        message names the target; the temporary file is removed and an
        existing target is left as it was.
    ImagePermissionError
        No permission to write in the target's folder.

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

    Keep a scaled int16 file's type and scale factors, or write FreeSurfer's MGZ:

    >>> from lazyimg.testing import write_scaled
    >>> stored = np.arange(24, dtype="int16").reshape(2, 3, 4)
    >>> src = write_scaled(tmp / "scaled.nii", stored, 0.5, 10.0)
    >>> kept = nib.load(save(lazyimg.load(src), tmp / "kept.nii", dtype="stored"))
    >>> kept.get_data_dtype().name, float(kept.dataobj.slope), float(kept.dataobj.inter)
    ('int16', 0.5, 10.0)
    >>> mgz = nib.load(save(img, tmp / "bold.mgz"))
    >>> [int(n) for n in mgz.shape], float(mgz.header["tr"])
    ([8, 8, 4, 6], 2000.0)
    """
    if is_url(path):  # streamed as a multipart upload, or written locally then uploaded
        url, level = str(path), _parse_level(compresslevel)
        if streams(url) and compute:  # a Delayed keeps the local file: its graph has real tasks
            kind, compressed = _parse_kind(url)
            body = _body(obj, redact(url), kind, affine, header, dtype, dims)
            return stream_to_url(*body, level if compressed else None, url, storage_options)
        kw = dict(affine=affine, header=header, dtype=dtype, dims=dims, compresslevel=compresslevel)
        return save_to_url(save, obj, url, storage_options, compute, **kw)
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
    target, kind, compressed = _parse_target(path)
    level = _parse_level(compresslevel)
    data, head, offset, footer = _body(obj, name, kind, affine, header, dtype, dims)
    disk_dtype = data.dtype

    sweep(str(target.parent))  # temporary files of earlier saves that were killed
    tmp = temporary_name(str(target))
    job = SaveJob(
        target=str(target),
        tmp=tmp,
        header=head,
        offset=offset,
        shape=tuple(int(n) for n in data.shape),
        dtype=disk_dtype,
        compresslevel=level if compressed else None,
        footer=footer,
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
