"""Names, coordinates and attributes of an image's axes, from its header alone.

The rules are written down in :mod:`lazyimg.xarray`; this module implements
them with numpy only (no xarray, no voxel data), so :mod:`lazyimg.write` can use
them too. :func:`layout` goes from a nibabel image to labels; the helpers at the
bottom go back from labels to the numbers a NIfTI header needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np

from lazyimg._io.roles import CANONICAL as CANONICAL
from lazyimg._io.roles import EXTRA as EXTRA
from lazyimg._io.roles import SPATIAL as SPATIAL
from lazyimg._io.roles import TIME as TIME
from lazyimg._io.roles import ArrayAxes as ArrayAxes
from lazyimg._io.roles import array_axes as array_axes
from lazyimg._io.roles import axis_names as axis_names
from lazyimg._io.roles import minc_roles

#: Seconds per unit, for the time units a header can state.
TIME_FACTORS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}

_AFNI_TIME_UNITS = {77001: "msec", 77002: "sec"}


@dataclass(frozen=True)
class Layout:
    """How an image's axes are labelled.

    ``dims[n]`` names DataArray axis ``n``, which is nibabel's array axis
    ``perm[n]``; ``coords`` holds 1-D coordinates (values, attrs) per dim.
    """

    dims: tuple[str, ...]
    perm: tuple[int, ...]
    coords: dict[str, tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


def layout(nib_img: Any, shape: tuple[int, ...], path: str | os.PathLike[str] | None) -> Layout:
    """Dims, coordinates and attrs of a nibabel image whose array has `shape`."""
    ndim = len(shape)
    attrs: dict[str, Any] = {}
    if not isinstance(nib_img, nib.spatialimages.SpatialImage):
        # no voxel-to-world mapping (e.g. CIFTI-2): positional names only
        dims = tuple(f"dim_{n}" for n in range(ndim))
        plain: dict[str, tuple[np.ndarray, dict[str, Any]]] = {
            d: (np.arange(n), {}) for d, n in zip(dims, shape, strict=True)
        }
        return Layout(dims, tuple(range(ndim)), plain, _provenance(nib_img, path, attrs))
    roles = minc_roles(nib_img, ndim)
    kinds = array_axes(nib_img, ndim, path)
    perm, dims = kinds.perm, kinds.dims
    zooms = _zooms(nib_img, ndim, perm)
    coords: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    for d, axis in zip(dims, perm, strict=True):
        coords[d] = (np.arange(shape[axis]), {})
    affine = nib_img.affine
    attrs["affine"] = [
        float(v) for v in np.asarray(np.eye(4) if affine is None else affine).ravel()
    ]
    attrs["zooms"] = zooms
    attrs["spatial_units"] = _spatial_units(nib_img)
    if TIME in dims:
        time_axis = perm[dims.index(TIME)]
        values, unit = _time(nib_img, shape[time_axis], roles, time_axis)
        attrs["time_units"] = unit
        if values is not None:
            coords[TIME] = (values, {"units": "s", "long_name": "time"})
    attrs.update(_nifti_fields(nib_img.header))
    return Layout(dims, perm, coords, _provenance(nib_img, path, attrs))


def dim_axes(nib_img: Any, ndim: int, path: Any = None) -> dict[str, int]:
    """Which axis of the image's array (nibabel's order) each dimension name labels.

    The names are those :func:`layout` gives; for MINC files, which store time
    first, ``"time"`` names array axis 0.

    Examples
    --------
    >>> import numpy as np, nibabel as nib
    >>> dim_axes(nib.Nifti1Image(np.zeros((2, 3, 4, 5), "u1"), np.eye(4)), 4)
    {'i': 0, 'j': 1, 'k': 2, 'time': 3}
    """
    if not isinstance(nib_img, nib.spatialimages.SpatialImage):
        return {f"dim_{n}": n for n in range(ndim)}
    kinds = array_axes(nib_img, ndim, path)
    return dict(zip(kinds.dims, kinds.perm, strict=True))


def voxel_sizes(nib_img: Any, ndim: int) -> list[float]:
    """Step of every array axis, in array order (MINC's own steps, not nibabel's header's)."""
    return _zooms(nib_img, ndim, tuple(range(ndim)))


def time_step(nib_img: Any, shape: tuple[int, ...]) -> tuple[float | None, str]:
    """``(seconds between volumes or None, the unit the header states)``.

    The same numbers as the ``time`` coordinate of :func:`layout`: one notion
    of time for the xarray labels, the command line, the repr and the plots.
    """
    kinds = array_axes(nib_img, len(shape))
    if kinds.time is None:
        return None, "unknown"
    roles = minc_roles(nib_img, len(shape))
    n = shape[kinds.time]
    try:
        values, unit = _time(nib_img, max(n, 2), roles, kinds.time)
    except Exception:  # PAR/REC times only exist for the real number of volumes
        values, unit = _time(nib_img, n, roles, kinds.time)
    if values is None or len(values) < 2:
        return None, unit
    return float(values[1] - values[0]), unit


def _provenance(nib_img: Any, path: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    if path is not None:
        attrs["source"] = os.fspath(path)
    attrs["format"] = type(nib_img).__name__
    return attrs


def _zooms(nib_img: Any, ndim: int, perm: tuple[int, ...]) -> list[float]:
    minc_file = getattr(nib_img.dataobj, "minc_file", None)
    try:
        # nibabel's MINC header takes its first three zooms from the affine, which is
        # wrong when time is the first axis; the MINC file itself knows each step
        raw = minc_file.get_zooms() if minc_file is not None else nib_img.header.get_zooms()
    except Exception:
        raw = ()
    values = [float(z) for z in np.asarray(raw, dtype=np.float64).ravel()][:ndim]
    values += [1.0] * (ndim - len(values))
    return [values[a] for a in perm]


def _spatial_units(nib_img: Any) -> str:
    header = nib_img.header
    if isinstance(header, nib.Nifti1Header):
        return str(header.get_xyzt_units()[0])
    if isinstance(header, nib.analyze.AnalyzeHeader):
        return "unknown"  # Analyze headers do not say
    return "mm"  # MGH, MINC, PAR/REC and AFNI are in millimetres


def _time(
    nib_img: Any, n: int, roles: list[str] | None, axis: int
) -> tuple[np.ndarray | None, str]:
    """Time coordinates in seconds (None if the header gives no TR) and the header's unit."""
    header = nib_img.header
    positions = np.arange(n, dtype=np.float64)
    if isinstance(header, nib.Nifti1Header):
        unit = str(header.get_xyzt_units()[1])
        tr = float(header["pixdim"][4])
        if unit in TIME_FACTORS and tr > 0:
            factor = TIME_FACTORS[unit]
            return (float(header["toffset"]) + tr * positions) * factor, unit
        return None, unit
    if isinstance(header, nib.freesurfer.mghformat.MGHHeader):
        tr = float(header["tr"])
        return (tr * positions * 1e-3 if tr > 0 else None), "msec"
    if roles is not None:  # MINC: the time dimension's start and step
        dim = nib_img.dataobj.minc_file._dims[axis]
        step = float(getattr(dim, "step", 0.0) or 0.0)
        start = float(getattr(dim, "start", 0.0) or 0.0)
        units = getattr(dim, "units", None) or b"s"  # MINC's default time unit
        units = units.decode() if isinstance(units, bytes) else str(units)
        scale = {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3}.get(units)
        if step == 0 or scale is None:
            return None, "sec"
        return (start + step * positions) * scale, "sec" if scale == 1.0 else "msec"
    if type(header).__name__ == "PARRECHeader":
        return _parrec_times(header, n), "sec"
    if type(header).__name__ == "AFNIHeader":
        nums = header.info.get("TAXIS_NUMS")
        floats = header.info.get("TAXIS_FLOATS")
        code = int(nums[2]) if nums is not None and len(nums) > 2 else 0
        afni_unit = _AFNI_TIME_UNITS.get(code)
        if afni_unit is None or floats is None or float(floats[1]) <= 0:
            return None, "unknown"
        times = float(floats[0]) + float(floats[1]) * positions
        return times * TIME_FACTORS[afni_unit], afni_unit
    return None, "unknown"


def _parrec_times(header: Any, n: int) -> np.ndarray | None:
    """Start time of each volume, if the volumes of a PAR/REC image are its dynamics."""
    labels = header.get_volume_labels()
    if list(labels) != ["dynamic scan number"] or not header.general_info.get("dyn_scan"):
        return None
    order = header.get_sorted_slice_indices()
    begin = np.asarray(header.image_defs["dyn_scan_begin_time"], dtype=np.float64)[order]
    per_volume = begin.reshape(-1, n, order="F")[0]
    if len(per_volume) != n or np.any(np.diff(per_volume) <= 0):
        return None
    return per_volume


def _nifti_fields(header: Any) -> dict[str, Any]:
    if not isinstance(header, nib.Nifti1Header):
        return {}
    out: dict[str, Any] = {
        "sform_code": int(header["sform_code"]),
        "qform_code": int(header["qform_code"]),
    }
    descrip = bytes(header["descrip"]).split(b"\x00", 1)[0].decode("latin-1").strip()
    if descrip:
        out["description"] = descrip
    if int(header["intent_code"]) != 0:
        name, params, intent_name = header.get_intent()
        out["intent"] = str(name)
        out["intent_params"] = [float(p) for p in params]
        if intent_name:
            out["intent_name"] = str(intent_name)
    return out


# --------------------------------------------------------------------------- labels -> header


def affine_of(attrs: Mapping[str, Any], name: str = "the DataArray") -> np.ndarray:
    """The 4x4 affine stored in `attrs` (16 numbers, row by row, or a 4x4 nested list)."""
    if "affine" not in attrs:
        raise ValueError(
            f"{name} has no 'affine' in its attrs, so its voxel-to-world mapping is unknown. "
            "Pass affine=... explicitly, or keep attrs through xarray operations "
            "(xr.set_options(keep_attrs=True))."
        )
    affine = np.asarray(attrs["affine"], dtype=np.float64)
    if affine.size != 16:
        raise ValueError(
            f"{name}: attrs['affine'] must hold 16 numbers (a 4x4 matrix), got shape {affine.shape}."
        )
    return affine.reshape(4, 4)


def index_grid(values: np.ndarray | None, dim: str) -> tuple[float, float]:
    """``(start, step)`` of voxel-index coordinates; positions 0, 1, ... when absent.

    Raises
    ------
    ValueError
        The coordinates are not evenly spaced, so no affine can describe them.
    """
    if values is None:
        return 0.0, 1.0
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return 0.0, 1.0
    if v.size == 1:
        return float(v[0]), 1.0
    steps = np.diff(v)
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9) or steps[0] == 0:
        raise ValueError(
            f"coordinate {dim!r} is not evenly spaced ({v[:4].tolist()}...), so no affine can "
            f"describe the voxels. Select with slices (.isel({dim}=slice(a, b, step))) rather "
            f"than lists, or reset the coordinate with .assign_coords({dim}=range(n))."
        )
    return float(v[0]), float(steps[0])


def grid_affine(affine: np.ndarray, grids: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """The affine of voxels ``start + step * n`` along i, j, k of an image with `affine`."""
    index = np.eye(4)
    for axis, dim in enumerate(SPATIAL):
        start, step = grids.get(dim, (0.0, 1.0))
        index[axis, axis] = step
        index[axis, 3] = start
    return affine @ index


def selection_affine(affine: np.ndarray, sel: Sequence[Any]) -> np.ndarray:
    """The affine of a selection (one ``range`` per spatial axis) of an image with `affine`.

    Every kept voxel stays where it was in the world. nibabel's ``slice_affine``
    takes ``start or 0`` and so misplaces ``[-3:]`` and ``[::-1]``; here the first
    kept index is the start. An axis left with one voxel keeps its voxel size
    (step 1), as :func:`index_grid` says for a length-1 coordinate.
    """
    grids = {
        dim: (float(item[0]), float(item.step if len(item) > 1 else 1))
        for dim, item in zip(SPATIAL, sel, strict=False)
        if isinstance(item, range) and len(item)
    }
    return grid_affine(affine, grids)


def slicer_index(nib_img: Any, index: Any) -> tuple[Any, ...]:
    """nibabel's canonical form of an ``img.slicer`` index, checked as nibabel checks it.

    Raises
    ------
    IndexError
        The image's class does not say which axes are spatial, or the index
        drops or adds a spatial axis.
    """
    try:
        helper = type(nib_img).ImageSlicer(nib_img)
    except (AttributeError, ValueError):
        raise IndexError(
            f"{type(nib_img).__name__} images do not say which axes are spatial, so "
            "img.slicer cannot update their affine; use img.slicecopy[...] or img.data[...]."
        ) from None
    try:
        return tuple(helper.check_slicing(index))
    except ValueError as err:
        raise IndexError(*err.args) from None
