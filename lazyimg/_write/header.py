"""From a labelled array to a NIfTI header: the way back from :func:`lazyimg._io.axes.layout`.

:func:`build_header` works out the header of a :class:`~lazyimg._write.labels.Labelled`
array -- affine from ``attrs["affine"]`` and the ``i, j, k`` coordinates, voxel
sizes from ``attrs["zooms"]`` and the coordinate steps, TR and ``toffset`` from
a time coordinate in seconds, units, codes, description and intent from attrs,
scale factors for stored values, anything else (slice timing, ``cal_min``,
``dim_info``, extensions, ...) from a template header: the file's own, or the
one ``attrs["nifti_header"]`` carries (:mod:`lazyimg._write.fields`). The rules
are those written down in :mod:`lazyimg.xarray`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import nibabel as nib
import numpy as np

from lazyimg._io.axes import (
    SPATIAL,
    TIME,
    TIME_FACTORS,
    affine_of,
    axis_names,
    grid_affine,
    index_grid,
)
from lazyimg._write.labels import Labelled

__all__ = ["build_header", "header_bytes", "out_dtype"]

_MAX_NIFTI1_DIM = 32767


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
    scaling: tuple[float, float] | None = None,
) -> nib.Nifti1Header:
    """The NIfTI header of `lab` written as `dtype` (see the module docstring).

    `scaling` is the ``(slope, inter)`` that turns the values written into
    real ones; None writes them as they are.
    """
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
    if scaling is None or scaling == (1.0, 0.0):
        hdr.set_slope_inter(None, None)  # values are written as they are
    else:
        hdr.set_slope_inter(*scaling)
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
        # netCDF gives a one-item list back as a scalar
        params = tuple(float(p) for p in np.ravel(attrs.get("intent_params", ())))
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
    known = [float(z) for z in np.ravel(attrs.get("zooms", ()))]
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
        step = 1.0
        if values is not None and np.ndim(values) and np.asarray(values).dtype.kind in "iuf":
            try:
                step = abs(index_grid(values, d)[1])
            except ValueError:
                if d in SPATIAL:
                    raise
                # labels of a stacked axis (subjects, runs) need not be evenly spaced
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
