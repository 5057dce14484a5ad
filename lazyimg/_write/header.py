"""From a labelled array to a NIfTI header: the way back from :func:`lazyimg._io.axes.layout`.

:func:`from_obj` turns whatever :func:`lazyimg.write.save` was given (a
LazyImage, a DataArray, a dask or numpy array) into a :class:`Labelled` array;
:func:`nifti_order` puts its axes in NIfTI order by name; :func:`build_header`
works out the header -- affine from ``attrs["affine"]`` and the ``i, j, k``
coordinates, voxel sizes from ``attrs["zooms"]`` and the coordinate steps, TR
and ``toffset`` from a time coordinate in seconds, units, codes, description
and intent from attrs, anything else from a template header. The rules are
those written down in :mod:`lazyimg.xarray`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import dask.array as da
import nibabel as nib
import numpy as np

from lazyimg._graph import memory_array
from lazyimg._io.axes import (
    CANONICAL,
    SPATIAL,
    TIME,
    TIME_FACTORS,
    affine_of,
    axis_names,
    grid_affine,
    index_grid,
    layout,
)
from lazyimg._plan.chunks import chunk_limit, disk_chunks

__all__ = ["Labelled", "build_header", "from_obj", "header_bytes", "nifti_order", "out_dtype"]

_MAX_NIFTI1_DIM = 32767


@dataclass
class Labelled:
    """An array with names, 1-D (or scalar) coordinates, attrs and a header template."""

    data: da.Array
    dims: tuple[str, ...]
    coords: dict[str, tuple[np.ndarray, dict[str, Any]]]
    attrs: dict[str, Any]
    template: Any = None
    labelled: bool = False
    """True for a DataArray: its geometry must come from its attrs (or arguments)."""


@runtime_checkable
class ImageLike(Protocol):
    """What the writer needs of a :class:`lazyimg.LazyImage` (which stands above this layer)."""

    @property
    def nibabel_image(self) -> Any: ...
    @property
    def data(self) -> da.Array: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def header(self) -> Any: ...
    @property
    def path(self) -> Any: ...


def from_obj(obj: Any, name: str) -> Labelled:
    """Dims, coordinates, attrs and header template of what :func:`lazyimg.write.save` got.

    A LazyImage is labelled as :func:`lazyimg.xarray.to_xarray` would label it;
    a DataArray keeps its own labels; a plain array gets positional NIfTI names.
    """
    if isinstance(obj, ImageLike):
        lay = layout(obj.nibabel_image, obj.shape, obj.path)
        data = obj.data
        if lay.perm != tuple(range(len(lay.perm))):
            data = data.transpose(lay.perm)
        header = obj.header
        template = header if isinstance(header, nib.Nifti1Header) else None
        return Labelled(data, lay.dims, dict(lay.coords), dict(lay.attrs), template)
    if type(obj).__name__ == "DataArray" and hasattr(obj, "variable"):
        return _from_dataarray(obj)
    if isinstance(obj, da.Array):
        return Labelled(obj, axis_names(obj.ndim), {}, {})
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
        arr = np.asarray(obj)
        return Labelled(_wrap(arr), axis_names(arr.ndim), {}, {})
    raise TypeError(
        f"lazyimg.save of {name}: cannot save a {type(obj).__name__}. Pass a LazyImage, an "
        "xarray.DataArray, a dask array or a numpy array."
    )


def _wrap(arr: np.ndarray) -> da.Array:
    """A dask array over `arr` that slices it rather than copying it."""
    chunks = disk_chunks(arr.shape, arr.dtype.itemsize, "F", chunk_limit())
    return memory_array(arr, chunks, None)


def _from_dataarray(obj: Any) -> Labelled:
    if obj.chunks is not None:
        data = obj.data
    elif obj.variable._in_memory:
        data = _wrap(obj.values)
    else:  # lazily indexed (engine="lazyimg", chunks=None): chunk it the way the file is laid out
        preferred = obj.encoding.get("preferred_chunks") or {}
        data = obj.chunk({d: preferred.get(d, "auto") for d in obj.dims}).data
    coords: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    for cname, coord in obj.coords.items():
        if coord.ndim == 0 or (coord.ndim == 1 and coord.dims[0] == cname):
            coords[str(cname)] = (np.asarray(coord.values), dict(coord.attrs))
    return Labelled(data, tuple(str(d) for d in obj.dims), coords, dict(obj.attrs), labelled=True)


def nifti_order(lab: Labelled, name: str) -> Labelled:
    """Put the axes in NIfTI order (i, j, k, time, u, v, w, then others).

    Spatial (and time) axes that were indexed away come back with length 1
    when other named axes remain, so the file keeps NIfTI's meaning of each
    axis.
    """
    dims = list(lab.dims)
    if not any(d in CANONICAL for d in dims):
        return lab
    data = lab.data
    need = list(SPATIAL)
    if any(d not in (*SPATIAL, TIME) for d in dims):
        need.append(TIME)
    for d in need:
        if d not in dims:
            data = data[..., None]
            dims.append(d)
    known = [d for d in CANONICAL if d in dims]
    order = known + [d for d in dims if d not in CANONICAL]
    if len(order) > 7:
        raise ValueError(
            f"lazyimg.save of {name}: NIfTI holds at most 7 axes, the array has dims {tuple(order)}."
        )
    data = data.transpose([dims.index(d) for d in order])
    return Labelled(data, tuple(order), lab.coords, lab.attrs, lab.template, lab.labelled)


# --------------------------------------------------------------------------- header


def out_dtype(dtype: Any, data_dtype: np.dtype[Any], name: str) -> np.dtype[Any]:
    """The dtype to write: `dtype` if given, else the data's (bool as uint8, float16 as float32)."""
    if dtype is None:
        out = np.dtype(data_dtype)
        if out.kind == "b":
            out = np.dtype(np.uint8)  # NIfTI has no boolean type
        elif out.kind == "f" and out.itemsize == 2:
            out = np.dtype(np.float32)  # nor float16
        return out
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"lazyimg.save of {name}: dtype {dtype!r} is not a numpy dtype; use e.g. 'float32'."
        ) from None


def _header_class(template: Any, shape: tuple[int, ...]) -> type[nib.Nifti1Header]:
    if isinstance(template, nib.Nifti2Header) or any(n > _MAX_NIFTI1_DIM for n in shape):
        return nib.Nifti2Header
    return nib.Nifti1Header


def build_header(
    lab: Labelled,
    dtype: np.dtype[Any],
    affine: np.ndarray | None,
    template: Any,
    name: str,
) -> nib.Nifti1Header:
    """The NIfTI header of `lab` written as `dtype` (see the module docstring)."""
    shape = tuple(int(n) for n in lab.data.shape)
    attrs = lab.attrs
    klass = _header_class(template, shape)
    endian = (
        ">"
        if dtype.byteorder == ">" or (dtype.byteorder == "=" and np.little_endian is False)
        else "<"
    )
    if isinstance(template, nib.Nifti1Header) and not (
        isinstance(template, nib.Nifti2Header) and klass is nib.Nifti1Header
    ):
        hdr = klass.from_header(template)
        if hdr.endianness != endian:
            hdr = hdr.as_byteswapped(endian)
    else:
        hdr = klass(endianness=endian)
    hdr.set_data_shape(shape)
    try:
        hdr.set_data_dtype(dtype)
    except nib.spatialimages.HeaderDataError:
        raise TypeError(
            f"lazyimg.save of {name}: NIfTI cannot store {dtype}; pass dtype= one of "
            "uint8, int8, int16, uint16, int32, uint32, int64, uint64, float32, float64, "
            "complex64, complex128."
        ) from None
    hdr.set_slope_inter(None, None)  # values are written as they are
    hdr["vox_offset"] = 0  # recomputed from the extensions when written

    grids = {}
    if affine is None:
        for d in SPATIAL:
            grids[d] = index_grid(lab.coords[d][0] if d in lab.coords else None, d)
        if "affine" in attrs or (lab.labelled and template is None):
            base = affine_of(attrs, name)  # a DataArray without one: say what to do
        elif template is not None:
            base = template.get_best_affine()
        else:
            base = np.eye(4)
        final = grid_affine(base, grids)
    else:
        final = np.asarray(affine, dtype=np.float64)
        if final.shape != (4, 4):
            raise ValueError(f"lazyimg.save of {name}: affine must be 4x4, got {final.shape}.")

    sform, qform = _codes(attrs, template)
    hdr.set_sform(final, code=sform)
    try:
        hdr.set_qform(final, code=qform)
    except Exception:  # a singular or sheared affine has no quaternion form
        hdr.set_qform(None, code=0)

    space_unit, time_unit = _units(lab, attrs, template)
    hdr.set_xyzt_units(space_unit, time_unit)
    zooms, toffset = _zooms(lab, attrs, final, time_unit, affine is not None, template)
    if sform == 0 and qform > 0:
        # the qform's voxel sizes live in pixdim: keep the ones set_qform derived
        zooms[: min(3, len(zooms))] = list(hdr.get_zooms()[:3])
    hdr.set_zooms(zooms)
    if toffset is not None:
        hdr["toffset"] = toffset
    if "description" in attrs:
        hdr["descrip"] = str(attrs["description"]).encode("latin-1", "replace")[:79]
    if "intent" in attrs:
        params = tuple(float(p) for p in attrs.get("intent_params", ()))
        try:
            hdr.set_intent(attrs["intent"], params, name=str(attrs.get("intent_name", "")))
        except Exception as err:
            raise ValueError(
                f"lazyimg.save of {name}: attrs intent {attrs['intent']!r} with parameters "
                f"{params}: {err}"
            ) from None
    return hdr


def _codes(attrs: Mapping[str, Any], template: Any) -> tuple[int, int]:
    if "sform_code" in attrs or "qform_code" in attrs:
        sform, qform = int(attrs.get("sform_code", 0)), int(attrs.get("qform_code", 0))
    elif template is not None:
        sform, qform = int(template["sform_code"]), int(template["qform_code"])
    else:
        sform, qform = 0, 0
    if sform == 0 and qform == 0:
        # the affine must be stored to survive: as an "aligned" sform, as nibabel does
        sform = 2
    return sform, qform


def _units(lab: Labelled, attrs: Mapping[str, Any], template: Any) -> tuple[str, str]:
    space, time = "unknown", "unknown"
    if template is not None:
        space, time = (str(u) for u in template.get_xyzt_units())
    space = str(attrs.get("spatial_units", space))
    time = str(attrs.get("time_units", time))
    if _seconds(lab) is not None and time not in TIME_FACTORS:
        time = "sec"
    return space, time


def _seconds(lab: Labelled) -> np.ndarray | None:
    """The time coordinate, if it holds seconds."""
    if TIME not in lab.coords:
        return None
    values, attrs = lab.coords[TIME]
    return np.asarray(values, dtype=np.float64).ravel() if attrs.get("units") == "s" else None


def _zooms(
    lab: Labelled,
    attrs: Mapping[str, Any],
    affine: np.ndarray,
    time_unit: str,
    explicit_affine: bool,
    template: Any,
) -> tuple[list[float], float | None]:
    """pixdim for every axis, and toffset when the time coordinate gives one."""
    known = list(attrs.get("zooms", ()))
    if not known and template is not None:
        known = [float(z) for z in template.get_zooms()]
    names = axis_names(max(len(known), 7))
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    zooms: list[float] = []
    toffset = None
    for d in lab.dims:
        slot = names.index(d) if d in names else None
        stored = known[slot] if slot is not None and slot < len(known) else None
        values = lab.coords[d][0] if d in lab.coords else None
        step = abs(index_grid(values, d)[1]) if values is not None and np.ndim(values) else 1.0
        if d in SPATIAL:
            i = SPATIAL.index(d)
            zooms.append(float(norms[i]) if explicit_affine or stored is None else stored * step)
        elif d == TIME and (seconds := _seconds(lab)) is not None and seconds.size:
            factor = TIME_FACTORS.get(time_unit, 1.0)
            diffs = np.diff(seconds)
            tr = float(np.median(diffs)) if diffs.size else (stored or 0.0) * factor
            zooms.append(float(np.float32(tr / factor)))
            toffset = float(np.float32(seconds[0] / factor))
        else:
            zooms.append(1.0 if stored is None else stored * step)
    return zooms, toffset


def header_bytes(hdr: nib.Nifti1Header) -> bytes:
    """The header as written, with vox_offset filled in and padding to the data."""
    buf = io.BytesIO()
    hdr.write_to(buf)
    offset = int(hdr.get_data_offset())
    raw = buf.getvalue()
    return raw + b"\x00" * (offset - len(raw))
