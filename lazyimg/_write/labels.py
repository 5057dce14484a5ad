"""What :func:`lazyimg.write.save` was given, as a labelled array in NIfTI's axis order.

:func:`from_obj` turns a LazyImage, a DataArray or a dask/numpy array into a
:class:`Labelled` array: its data, dim names, 1-D coordinates, attrs, the
header it came from (a template for the fields labels do not give) and, for
stored values (``dtype="raw"``), the scaling that turns them into real ones.
:func:`nifti_order` puts the axes in NIfTI order by name and refuses names it
cannot place, unless the caller says where they go (``dims=``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import dask.array as da
import nibabel as nib
import numpy as np

from lazyimg._graph import memory_array
from lazyimg._io.axes import CANONICAL, SPATIAL, TIME, axis_names, layout
from lazyimg._plan.chunks import chunk_limit, disk_chunks
from lazyimg._write.fields import ATTR, header_from_json
from lazyimg.errors import DimensionError

__all__ = ["ImageLike", "Labelled", "Scaling", "from_obj", "image_scaling", "nifti_order", "rename"]

#: ``(stored dtype, slope, inter)``: how a file turned stored values into real ones.
Scaling = tuple[np.dtype[Any], float, float]

#: attrs of a DataArray holding stored values (``dtype="raw"``): real = stored * slope + inter
SLOPE_ATTR, INTER_ATTR = "scl_slope", "scl_inter"


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
    raw: tuple[float, float] | None = None
    """``(slope, inter)`` when `data` holds stored values that these scale."""
    stored: Scaling | None = None
    """The dtype and scaling of the file the values came from, if known."""
    source_header: Any = None
    """The header of the image the values came from (any format), if any."""


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


def _finite(value: Any, default: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if np.isfinite(out) else default


def image_scaling(nib_img: Any) -> Scaling | None:
    """The stored dtype and scale factors of a nibabel image (None if it has no stored dtype)."""
    try:
        dtype = np.dtype(nib_img.get_data_dtype())
    except Exception:
        return None
    proxy = nib_img.dataobj
    slope = _finite(getattr(proxy, "slope", 1.0), 1.0)
    inter = _finite(getattr(proxy, "inter", 0.0), 0.0)
    return dtype, slope or 1.0, inter


def _header_scaling(hdr: nib.Nifti1Header) -> Scaling:
    slope, inter = hdr.get_slope_inter()
    return np.dtype(hdr.get_data_dtype()), _finite(slope, 1.0) or 1.0, _finite(inter, 0.0)


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
        stored = image_scaling(obj.nibabel_image)
        raw = stored[1:] if stored is not None and getattr(obj, "is_raw", False) else None
        return Labelled(
            data,
            lay.dims,
            dict(lay.coords),
            dict(lay.attrs),
            template,
            raw=raw,
            stored=stored,
            source_header=header,
        )
    if type(obj).__name__ == "DataArray" and hasattr(obj, "variable"):
        return _from_dataarray(obj, name)
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


def _from_dataarray(obj: Any, name: str) -> Labelled:
    if obj.chunks is not None:
        data = obj.data
    elif obj.variable._in_memory:
        data = _wrap(obj.values)
    else:  # lazily indexed (engine="lazyimg", chunks=None): chunk it the way the file is laid out
        preferred = dict(obj.encoding.get("preferred_chunks") or {})
        data = obj.chunk({d: preferred.get(d, "auto") for d in obj.dims}).data
    coords: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    for cname, coord in obj.coords.items():
        if coord.ndim == 0 or (coord.ndim == 1 and coord.dims[0] == cname):
            coords[str(cname)] = (np.asarray(coord.values), dict(coord.attrs))
    attrs = dict(obj.attrs)
    template = header_from_json(attrs[ATTR], name) if ATTR in attrs else None
    stored = _header_scaling(template) if template is not None else None
    raw = None
    if SLOPE_ATTR in attrs or INTER_ATTR in attrs:
        raw = (_finite(attrs.get(SLOPE_ATTR), 1.0) or 1.0, _finite(attrs.get(INTER_ATTR), 0.0))
        stored = (np.dtype(data.dtype), *raw)
    dims = tuple(str(d) for d in obj.dims)
    return Labelled(data, dims, coords, attrs, template, True, raw, stored)


def rename(lab: Labelled, dims: Mapping[str, str] | None, name: str) -> Labelled:
    """`lab` with its dims renamed by `dims` (``{"subject": "u"}``), coordinates too."""
    if not dims:
        return lab
    unknown = [d for d in dims if d not in lab.dims]
    if unknown:
        raise DimensionError(
            f"lazyimg.save of {name}: dims= names {unknown}, which the array does not have "
            f"(its dims are {lab.dims})."
        )
    new = tuple(str(dims.get(d, d)) for d in lab.dims)
    if len(set(new)) != len(new):
        raise DimensionError(
            f"lazyimg.save of {name}: dims={dict(dims)} gives two axes the same name {new}."
        )
    coords = {str(dims.get(k, k)): v for k, v in lab.coords.items()}
    return replace(lab, dims=new, coords=coords)


def nifti_order(lab: Labelled, name: str) -> Labelled:
    """Put the axes in NIfTI order (i, j, k, time, u, v, w).

    Spatial (and time) axes that were indexed away come back with length 1
    when other named axes remain, so the file keeps NIfTI's meaning of each
    axis. A name NIfTI has no place for is refused: rename it first
    (``save(..., dims={"subject": "u"})``).
    """
    dims = list(lab.dims)
    if not any(d in CANONICAL for d in dims):
        return lab
    if len(dims) > 7:
        raise DimensionError(
            f"lazyimg.save of {name}: NIfTI holds at most 7 axes, the array has dims {tuple(dims)}."
        )
    unknown = [d for d in dims if d not in CANONICAL]
    if unknown:
        raise DimensionError(
            f"lazyimg.save of {name}: NIfTI has no place for dims {unknown}; its axes are "
            f"{CANONICAL} (i, j, k space, then time, then u, v, w). Say where each goes, e.g. "
            f"save(..., dims={{{unknown[0]!r}: 'u'}}), or reduce it away (.isel/.mean) first."
        )
    data = lab.data
    need = list(SPATIAL)
    if any(d not in (*SPATIAL, TIME) for d in dims):
        need.append(TIME)
    for d in need:
        if d not in dims:
            data = data[..., None]
            dims.append(d)
    order = [d for d in CANONICAL if d in dims]
    data = data.transpose([dims.index(d) for d in order])
    return replace(lab, data=data, dims=tuple(order))
