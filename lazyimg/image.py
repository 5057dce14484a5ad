"""LazyImage: any nibabel image as a dask array aligned to its layout on disk.

Views and copies, in one place:

* ``img.dataobj[idx]`` is nibabel's own object. For an in-memory image it is
  the numpy array itself, so basic indices give **views** of it; for a file
  it is nibabel's proxy (or, after ``img.slicer``, a lazyimg proxy), which
  reads a copy.
* ``img.slicecopy[idx]`` always returns a **copy** that owns its memory,
  reading only the bytes the index needs (or, by BIAP2's unproxy rule, one
  sequential pass when that is cheaper; see :mod:`lazyimg._plan.reads`).
* ``img.data`` is a dask array. Computing it gives **copies** (dask copies
  results); building and slicing it reads nothing and copies nothing, also for
  in-memory images.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from lazyimg._io.axes import dim_axes, selection_affine, slicer_index
from lazyimg._io.formats import (
    Source,
    check_raw,
    describe,
    disk_order,
    image_files,
    open_nibabel,
    proxy_file,
)
from lazyimg._io.read import ReadTask, ViewProxy, numpy_result, portable_image, read
from lazyimg._io.remote import RemotePath, is_url
from lazyimg._plan.chunks import Chunks, named_chunks, parse_chunks, view_read_chunks
from lazyimg._plan.dtypes import parse_dtype
from lazyimg._plan.index import Selection, compose, full_selection, normalize_index, selection_shape

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["LazyImage", "load"]


class _SliceCopy:
    def __init__(self, img: LazyImage) -> None:
        self._img = img

    def __getitem__(self, index: Any) -> Any:
        """A copy; an all-integer index gives a numpy scalar (native order), as numpy does."""
        img = self._img
        if img._task is None:  # in memory: copy of the (possibly cast) slice
            normalize_index(index, img.shape)  # numpy's errors, basic indices only
            out = np.array(img.dataobj[index], dtype=img.dtype, copy=True)
        else:
            out = read(img._task.source, compose(img._sel, index), img._task.dtype, img._task.raw)
        return numpy_result(out, index)


class _Slicer:
    def __init__(self, img: LazyImage) -> None:
        self._img = img

    def __getitem__(self, index: Any) -> LazyImage:
        return self._img._sliced(index)


class LazyImage:
    """A neuroimaging image as a lazy dask array, with nibabel's header and affine.

    Create one with :func:`load`. Attributes mirror nibabel's images where the
    names exist there (``shape``, ``affine``, ``header``, ``dataobj``).

    Attributes
    ----------
    data : dask.array.Array
        The voxel values, chunked along the slowest axes on disk.
    dataobj : array-like
        nibabel's proxy, or the in-memory array itself.
    path : Path or None
        The file the image was loaded from.
    is_proxy : bool
        True while the values live in a file.
    disk_order : {"F", "C"}
        "F" if the last axis changes slowest on disk, "C" if the first does.
    """

    def __init__(
        self,
        nib_img: Any,
        data: da.Array | None,
        *,
        task: ReadTask | None = None,
        sel: Selection | None = None,
        order: str = "F",
        path: Path | RemotePath | None = None,
        source_chunks: Chunks | None = None,
    ) -> None:
        self._nib = nib_img
        self._data = data
        self._task = task
        self._sel = sel if sel is not None else full_selection(tuple(map(int, data.shape)))  # type: ignore[union-attr]
        self._source_chunks = source_chunks  # with data=None: task, sel and these build it
        self.disk_order, self.path = order, path
        self.slicecopy, self.slicer = _SliceCopy(self), _Slicer(self)

    @property
    def data(self) -> da.Array:
        """The voxel values as a dask array (built, with ``dask.array``, on first use)."""
        if self._data is None:
            from lazyimg._graph import disk_array

            self._data = disk_array(self._task, self._sel, self._source_chunks)  # type: ignore[arg-type]
        return self._data

    @property
    def shape(self) -> tuple[int, ...]:
        return selection_shape(self._sel)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._task.out_dtype if self._data is None else self._data.dtype  # type: ignore[union-attr]

    @property
    def chunks(self) -> Chunks:
        if self._data is None:
            return view_read_chunks(self._sel, self._source_chunks, self.dtype.itemsize)  # type: ignore[arg-type]
        return self._data.chunks

    @property
    def affine(self) -> np.ndarray:
        affine = getattr(self._nib, "affine", None)  # CIFTI-2 images have none
        return np.eye(4) if affine is None else np.array(affine)

    @property
    def header(self) -> Any:
        return self._nib.header

    @property
    def dataobj(self) -> Any:
        return self._nib.dataobj

    @property
    def is_proxy(self) -> bool:
        return self._task is not None

    @property
    def is_raw(self) -> bool:
        """True for stored values before the header's scaling (``load(..., dtype="raw")``)."""
        return self._task is not None and self._task.raw

    @property
    def source(self) -> Source | None:
        """The picklable recipe the read tasks carry (None in memory)."""
        return None if self._task is None else self._task.source

    @property
    def nibabel_image(self) -> Any:
        """The nibabel image behind this one (header, affine, class)."""
        return self._nib

    @property
    def nbytes(self) -> int:
        """Size of the values in memory."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self._task is None and dtype is None and self.dtype == self.dataobj.dtype and not copy:
            return np.asarray(self.dataobj)
        arr = self.slicecopy[...]
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def _repr_html_(self) -> str:
        from lazyimg._display import html_repr

        return html_repr(self)

    def plot_slices(self, point: tuple[int, int, int] | None = None, **kwargs: Any) -> Any:
        """Sagittal, coronal, axial views through voxel `point` in world orientation, reading only them (see :func:`lazyimg._display.plot_slices`)."""
        from lazyimg._display import plot_slices

        return plot_slices(self, point, **kwargs)

    def plot_timeseries(self, voxel: tuple[Any, Any, Any], **kwargs: Any) -> Any:
        """The time series of voxel (i, j, k) or a box of slices, reading only it (see :func:`lazyimg._display.plot_timeseries`)."""
        from lazyimg._display import plot_timeseries

        return plot_timeseries(self, voxel, **kwargs)

    def to_xarray(self) -> Any:
        """This image as a labelled, lazy ``xarray.DataArray`` (see :mod:`lazyimg.xarray`)."""
        from lazyimg.xarray.convert import to_xarray

        return to_xarray(self)

    def unproxy(self) -> LazyImage:
        """Read the whole image into memory; return it as an in-memory LazyImage."""
        if self._task is None:
            return self
        arr = self.slicecopy[...]
        nib_img = self._nib.__class__(arr, self._nib.affine, self._nib.header)
        return _wrap_memory(nib_img, self.chunks, None, self.disk_order, self.path)

    def _sliced(self, index: Any) -> LazyImage:
        canonical = slicer_index(self._nib, index)
        here = compose(full_selection(self.shape), canonical)
        if 0 in selection_shape(here):
            raise IndexError("Empty slice requested")
        affine = selection_affine(self.affine, here)  # not nibabel's: see its docstring
        data = self.data[canonical]
        if self._task is None:
            view = self.dataobj[canonical]
            nib_img = self._nib.__class__(view, affine, self._nib.header)
            return LazyImage(nib_img, data, order=self.disk_order, path=self.path)
        sel = compose(self._sel, canonical)
        nib_img = portable_image(self._nib, self._task, sel, affine)
        return LazyImage(
            nib_img, data, task=self._task, sel=sel, order=self.disk_order, path=self.path
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)  # recipes, not handles (MINC, PAR/REC hold open files)
        if self._task is not None and self._task.source.kind == "nibabel":
            state["_nib"] = portable_image(self._nib, self._task, self._sel, self.affine)
        return state

    def __repr__(self) -> str:
        from lazyimg._display import plain_repr

        return plain_repr(self)


def _wrap_memory(
    nib_img: Any, chunks: Any, dtype: np.dtype[Any] | None, order: str, path: Any
) -> LazyImage:
    arr = np.asanyarray(nib_img.dataobj)
    out_dtype = dtype or arr.dtype
    resolved = parse_chunks(chunks, arr.shape, out_dtype, order, "in-memory image")
    from lazyimg._graph import memory_array

    return LazyImage(nib_img, memory_array(arr, resolved, dtype), order=order, path=path)


def load(
    source: Any, *, chunks: Any = "auto", dtype: Any = None, storage_options: Any = None
) -> LazyImage:
    """Open an image lazily: read its header, build a dask graph, read no voxels.

    Parameters
    ----------
    source : str, os.PathLike or nibabel image
        A file ``nibabel.load`` opens (NIfTI, Analyze, MGH, MINC, PAR/REC, AFNI,
        ...), a URL of a NIfTI, Analyze or MGH image (``s3://``, ``https://``, any
        fsspec URL), or a nibabel image, proxied or in memory. In-memory images are
        wrapped without copying their array.
    chunks : "auto", int, tuple or dict, optional
        ``"auto"`` (default) splits only along the slowest axis on disk, each
        chunk up to dask's ``array.chunk-size``. Anything dask accepts is
        honoured. Dict keys are axis numbers of nibabel's array or the
        dimension names of :mod:`lazyimg.xarray` (``"i"``, ``"j"``, ``"k"``,
        ``"time"``, ``"u"``, ...; for MINC files, which store time first,
        ``"time"`` is array axis 0); axes left out follow ``"auto"``.
    dtype : None, "raw" or numpy dtype, optional
        None gives exactly ``np.asarray(nib.load(source).dataobj)``'s dtype and
        values (scaling applied); "raw" gives stored values without scaling; a
        numpy dtype casts the scaled values (e.g. float32 to halve memory).
    storage_options : dict, optional
        A URL's fsspec filesystem options (credentials are never shown).

    Returns
    -------
    LazyImage

    Raises
    ------
    FileNotFoundError
        The file (or a companion file) does not exist.
    ValueError
        Not an image, a damaged header, a truncated file, or bad `chunks`.
    TypeError
        A `source` or `dtype` of the wrong kind.

    Examples
    --------
    >>> import numpy as np, nibabel as nib, lazyimg
    >>> img = lazyimg.load(nib.Nifti1Image(np.zeros((4, 5, 6, 7), "int16"), np.eye(4)))
    >>> img.shape, img.disk_order
    ((4, 5, 6, 7), 'F')
    >>> img.slicecopy[..., 2].shape
    (4, 5, 6)
    >>> lazyimg.load(img, chunks={"time": 2}).chunks[3]
    (2, 2, 2, 1)
    """
    hint = source.path if isinstance(source, LazyImage) else None  # where it came from
    if isinstance(source, LazyImage):
        source = source.nibabel_image
    remote = None  # a URL: see lazyimg._io.remote_open
    if is_url(source):
        from lazyimg._io.remote_open import open_remote  # http, TLS and fsspec only for URLs

        (nib_img, remote), source = open_remote(source, storage_options), RemotePath(source)
    elif isinstance(source, (str, os.PathLike)):
        nib_img = open_nibabel(source)
    elif isinstance(source, nib.spatialimages.DataobjImage) or hasattr(source, "dataobj"):
        nib_img = source
    else:
        raise TypeError(
            f"lazyimg.load takes a path or a nibabel image, got {type(source).__name__}."
        )
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "image"
    if isinstance(chunks, Mapping) and any(isinstance(k, str) for k in chunks):
        chunks = named_chunks(chunks, dim_axes(nib_img, len(nib_img.shape), name), name)
    cast, raw = parse_dtype(dtype, name)
    proxy = nib_img.dataobj
    order = disk_order(nib_img)
    # a proxy over files on disk stays lazy (also one built around another image's
    # proxy, which still reads that file); one over bytes in memory is read once
    on_disk = nib.is_proxy(proxy) and (image_files(nib_img) or proxy_file(proxy))
    # lazyimg's own selection (img.slicer, an unpickled MINC or PAR/REC image) stays one
    view = proxy if isinstance(proxy, ViewProxy) and chunks == "auto" else None
    if view is not None and (view._task.raw or view._task.dtype is not None):
        view = None  # a cast or raw selection: read once, as numbers in memory
    if remote is None and not on_disk and view is None:
        if raw:
            check_raw(None, proxy, name)
        if nib.is_proxy(proxy):
            nib_img = nib_img.__class__(np.asarray(proxy), nib_img.affine, nib_img.header)
        return _wrap_memory(nib_img, chunks, cast, order, None)
    src = remote or (view._task.source if view else describe(nib_img))
    if raw:
        check_raw(src, proxy, name)
    task = ReadTask(src, cast, raw)  # the graph comes with .data
    sel = view._sel if view else full_selection(src.shape)
    resolved = parse_chunks(chunks, src.shape, task.out_dtype, src.order, src.path)
    if remote is not None:  # nibabel's proxy would read the header bytes in memory
        nib_img._dataobj = ViewProxy(task, sel)
    if not isinstance(source, (str, os.PathLike)):  # a nibabel image: the file it came from
        source = getattr(nib_img, "get_filename", lambda: None)() or proxy_file(proxy)
        source = source or hint or (view and view._task.source.path)
    path = None if not source else source if remote else Path(source)
    return LazyImage(
        nib_img, None, task=task, sel=sel, source_chunks=resolved, order=src.order, path=path
    )
