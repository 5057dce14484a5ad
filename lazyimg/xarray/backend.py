"""The xarray engine ``"lazyimg"``: ``xr.open_dataset(path, engine="lazyimg")``.

Registered by the ``xarray.backends`` entry point in ``pyproject.toml``. The
dataset has one variable, ``"image"``, labelled as :mod:`lazyimg.xarray` says.

* ``chunks=None`` (xarray's default): the variable wraps a
  :class:`LazyImgBackendArray`; xarray composes indexers lazily and each
  access reads only the bytes it needs through :func:`lazyimg._io.read.read`.
* ``chunks={}`` or ``"auto"``: xarray builds dask arrays from the same
  BackendArray, following ``encoding["preferred_chunks"]``, lazyimg's
  disk-aligned plan (split along the slowest axis on disk).
* ``chunks={"time": 10}``: any split of the slowest axis on disk is a clean
  cut through the file, so it is accepted without xarray's "separate the
  stored chunks" warning (see :class:`PreferredChunks`); splitting a faster
  axis (``{"i": 10}``) still warns, since each chunk then needs many reads.

Files on one grid (same coordinate values and attrs) share their
coordinates' pandas indexes (:func:`shared_coords`): ``xr.open_mfdataset``
over 1,000 of them then builds no index per file and aligns them by identity.

The array holds a :class:`~lazyimg._io.formats.Source` -- paths and file
identities, never an open handle -- so datasets pickle and travel to dask
workers; the per-process cache in :mod:`lazyimg._io.files` reopens files there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from lazyimg._io.formats import Source
from lazyimg._io.read import read
from lazyimg._plan.chunks import parse_chunks, split_free_axes
from lazyimg._plan.dtypes import parse_dtype
from lazyimg._plan.index import compose, full_selection
from lazyimg.image import load
from lazyimg.xarray.convert import VARIABLE_NAME, image_layout

__all__ = ["SUFFIXES", "LazyImgBackendArray", "LazyImgBackendEntrypoint", "PreferredChunks"]

#: File name endings the engine claims (compared case-insensitively).
SUFFIXES = (
    ".nii",
    ".nii.gz",
    ".nii.bz2",
    ".nii.zst",
    ".img",
    ".img.gz",
    ".hdr",
    ".hdr.gz",
    ".mgh",
    ".mgz",
    ".mgh.gz",
    ".mnc",
    ".par",
    ".rec",
    ".head",
    ".brik",
    ".brik.gz",
)


class LazyImgBackendArray(BackendArray):
    """A lazily indexed image file: a Source recipe plus how to cast and order axes.

    ``perm[n]`` is the file array's axis behind axis ``n`` of this array (not
    the identity only for MINC files that store time first).
    """

    __slots__ = ("cast", "dtype", "perm", "raw", "shape", "source")

    def __init__(
        self, source: Source, perm: tuple[int, ...], cast: np.dtype[Any] | None, raw: bool
    ) -> None:
        self.source = source
        self.perm = perm
        self.cast = cast
        self.raw = raw
        self.shape = tuple(source.shape[a] for a in perm)
        self.dtype = cast if cast is not None else source.stored if raw else source.scaled

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._getitem
        )

    def _getitem(self, key: tuple[Any, ...]) -> np.ndarray:
        ndim = len(self.perm)
        src_key: list[Any] = [slice(None)] * ndim
        for axis, item in zip(self.perm, key, strict=True):
            src_key[axis] = item
        sel = compose(full_selection(self.source.shape), tuple(src_key))
        out = read(self.source, sel, self.cast, self.raw)
        kept = [a for a in range(ndim) if isinstance(src_key[a], slice)]
        order = [
            kept.index(a) for a, item in zip(self.perm, key, strict=True) if isinstance(item, slice)
        ]
        return out if order == sorted(order) else out.transpose(order)

    def __reduce__(self) -> Any:
        return (type(self), (self.source, self.perm, self.cast, self.raw))


class PreferredChunks(dict[str, Any]):
    """``encoding["preferred_chunks"]``: the disk plan, plus the axes any split suits.

    xarray asks this mapping two questions with one method. With a default,
    ``get(dim, size)`` asks which chunks ``chunks={}`` (and, as dask's
    ``previous_chunks``, ``"auto"``) should give: the disk-aligned plan.
    Without one, ``get(dim)`` asks for the stored grid that requested chunks
    should not cut through; along the axes in `free` (the slowest on disk,
    see :func:`lazyimg._plan.chunks.split_free_axes`) every position is its
    own contiguous run of bytes, so the grid is one position and any split is
    accepted. Stored values (``dict(self)``, what is pickled and printed) are
    the plan.

    Examples
    --------
    >>> pc = PreferredChunks({"i": (4,), "time": (5, 5)}, free=("time",))
    >>> pc.get("time", 10), pc.get("time"), pc.get("i")
    ((5, 5), 1, (4,))
    """

    def __init__(self, plan: dict[str, Any], free: Iterable[str] = ()) -> None:
        super().__init__(plan)
        self.free = frozenset(free)

    def get(self, key: Any, *default: Any) -> Any:
        if not default and key in self.free:
            return 1
        return super().get(key, *default)

    def __reduce__(self) -> Any:
        return (type(self), (dict(self), tuple(self.free)))


#: Coordinates already built, by their dims, values and attrs (see :func:`shared_coords`).
_COORDS: dict[tuple[Any, ...], xr.Coordinates] = {}
#: Distinct coordinate sets kept; a study has a handful of grids (anatomical, bold, ...).
_COORDS_KEPT = 64


def shared_coords(coords: dict[str, tuple[np.ndarray, dict[str, Any]]]) -> xr.Coordinates:
    """Coordinates with these values and attrs, their indexes shared with earlier files on the same grid.

    Each call gives its own coordinate variables (attrs and encoding are
    copies, so changing one dataset's changes no other), but files on the
    same grid share the immutable pandas indexes and the read-only arrays
    behind them. xarray then sees at once that 1,000 such files agree: its
    alignment and ``open_mfdataset``'s comparison of coordinates test identity
    before values, and no pandas index is built per file.
    """
    key = tuple(
        (dim, values.dtype.str, values.shape, values.tobytes(), repr(sorted(attrs.items())))
        for dim, (values, attrs) in coords.items()
    )
    made = _COORDS.get(key)
    if made is None:
        if len(_COORDS) >= _COORDS_KEPT:
            _COORDS.clear()
        made = xr.Coordinates({d: xr.Variable(d, v, a) for d, (v, a) in coords.items()})
        _COORDS[key] = made
    return made.copy()


def _nothing_to_close() -> None:
    return None


class LazyImgBackendEntrypoint(BackendEntrypoint):
    """Open NIfTI, Analyze, MGH/MGZ, MINC, PAR/REC and AFNI images lazily with lazyimg.

    Examples
    --------
    >>> import tempfile, pathlib, xarray as xr
    >>> from lazyimg.testing import write_fmri
    >>> path = write_fmri(pathlib.Path(tempfile.mkdtemp()) / "bold.nii.gz", (8, 8, 4, 5))
    >>> xr.open_dataarray(path, engine="lazyimg").dims
    ('i', 'j', 'k', 'time')
    """

    description = "Neuroimaging images nibabel reads, lazily and disk-aligned (lazyimg)"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "dtype",
        "mask_and_scale",
        "decode_times",
        "decode_timedelta",
        "use_cftime",
        "decode_coords",
        "concat_characters",
        "storage_options",
    )

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        dtype: Any = None,
        mask_and_scale: bool | None = None,
        decode_times: Any = None,
        decode_timedelta: Any = None,
        use_cftime: bool | None = None,
        decode_coords: Any = None,
        concat_characters: bool | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> xr.Dataset:
        """The image as a one-variable Dataset; xarray's decoder keywords as CF readers take them.

        ``mask_and_scale=False`` (also ``decode_cf=False``) gives the stored
        values, as ``dtype="raw"`` does, with the header's scaling in attrs;
        nothing else in an image file is CF-encoded (time is seconds from the
        header, coordinates are voxel indices, there are no character arrays),
        so ``decode_times``, ``decode_timedelta``, ``use_cftime``,
        ``decode_coords`` and ``concat_characters`` are accepted and change nothing.
        """
        if not isinstance(filename_or_obj, (str, os.PathLike)):
            raise TypeError(
                f"engine='lazyimg' opens image files by path, got {type(filename_or_obj).__name__}. "
                "For a nibabel image in memory use lazyimg.load(img).to_xarray()."
            )
        if mask_and_scale is False:
            if dtype is not None and not (isinstance(dtype, str) and dtype == "raw"):
                raise ValueError(
                    f"{os.fspath(filename_or_obj)}: mask_and_scale=False asks for stored values "
                    f"but dtype={dtype!r} for scaled ones; give one of them."
                )
            dtype = "raw"
        # header only; validates the file (or object: a URL with its storage options)
        img = load(filename_or_obj, dtype=dtype, storage_options=storage_options)
        source = img.source
        if source is None:  # pragma: no cover - a path always gives a file-backed image
            raise ValueError(f"{filename_or_obj}: the image has no data in a file.")
        cast, raw = parse_dtype(dtype, os.fspath(filename_or_obj))
        lay = image_layout(img)
        array = LazyImgBackendArray(source, lay.perm, cast, raw)
        plan = parse_chunks("auto", source.shape, array.dtype, source.order, source.path)
        free = split_free_axes(plan, source.order)
        preferred = PreferredChunks(
            {dim: plan[axis] for dim, axis in zip(lay.dims, lay.perm, strict=True)},
            free=[dim for dim, axis in zip(lay.dims, lay.perm, strict=True) if axis in free],
        )
        variable = xr.Variable(
            lay.dims,
            indexing.LazilyIndexedArray(array),
            attrs=lay.attrs,
            encoding={"preferred_chunks": preferred, "dtype": array.dtype},
        )
        ds = xr.Dataset({VARIABLE_NAME: variable}, coords=shared_coords(lay.coords))
        if drop_variables is not None:
            ds = ds.drop_vars(drop_variables, errors="ignore")
        # nothing to close: the dataset holds no handle, and the per-process file
        # cache (lazyimg._io.files) closes what it opened; xarray still wants a closer
        ds.set_close(_nothing_to_close)
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        if not isinstance(filename_or_obj, (str, os.PathLike)):
            return False
        name = os.fspath(filename_or_obj)
        return isinstance(name, str) and name.lower().endswith(SUFFIXES)
