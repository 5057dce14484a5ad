"""MGH/MGZ output: the header before the data, the scan parameters after it.

An MGH file is a 284-byte big-endian header, the voxels in Fortran order
(big-endian ``uint8``, ``int16``, ``uint16``, ``int32`` or ``float32``), then a
footer with TR (ms), flip angle (radians), TE and TI (ms) and the field of
view. :func:`mgh_layout` works out all three parts from a
:class:`~lazyimg._write.labels.Labelled` array: geometry and TR go through
:func:`lazyimg._write.header.build_header` (so the rules for attrs,
coordinates and ``affine=`` are the NIfTI ones), and nibabel's own
:class:`~nibabel.freesurfer.mghformat.MGHImage` turns the affine into MGH's
direction cosines and centre. The scan parameters come from the source's MGH
header (a LazyImage of an ``.mgh``/``.mgz``) or from ``attrs["mgh_scan"]``
(what :func:`lazyimg.xarray.to_xarray` gives an MGH image), TR from the time
coordinate when there is one. ``.mgz`` is the same bytes gzipped, which
:mod:`lazyimg._write.atomic` does after the regions are written.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.freesurfer.mghformat import MGHHeader

from lazyimg._io.axes import TIME_FACTORS
from lazyimg._write.header import build_header
from lazyimg._write.labels import Labelled
from lazyimg.errors import DimensionError

__all__ = ["SCAN_ATTR", "SCAN_FIELDS", "MGHLayout", "mgh_layout", "scan_params"]

#: The footer's scan parameters, in MGH's units, as ``attrs["mgh_scan"]`` lists them.
SCAN_FIELDS = ("tr", "flip_angle", "te", "ti", "fov")
SCAN_ATTR = "mgh_scan"

_DTYPES = ("uint8", "int16", "uint16", "int32", "float32")


@dataclass(frozen=True)
class MGHLayout:
    """The bytes before and after the data, where the data starts, and its dtype on disk."""

    header: bytes
    offset: int
    footer: bytes
    dtype: np.dtype[Any]


def scan_params(header: Any) -> list[float] | None:
    """TR, flip angle, TE, TI and FoV of an MGH header (None for other headers)."""
    if not isinstance(header, MGHHeader):
        return None
    return [float(header[k]) for k in SCAN_FIELDS]


def mgh_layout(
    lab: Labelled,
    dtype: np.dtype[Any],
    scaling: tuple[float, float] | None,
    affine: np.ndarray | None,
    template: Any,
    name: str,
) -> MGHLayout:
    """Header, data offset, footer and disk dtype of `lab` written as MGH.

    Raises
    ------
    DimensionError
        More than four axes (MGH holds i, j, k and frames).
    TypeError
        A dtype MGH cannot store, or stored values with scale factors.
    """
    shape = tuple(int(n) for n in lab.data.shape)
    if len(shape) > 4:
        raise DimensionError(
            f"lazyimg.save of {name}: MGH holds at most 4 axes (i, j, k, time), the array has "
            f"dims {lab.dims}. Save as NIfTI (.nii.gz) or reduce the extra axes first."
        )
    if scaling is not None and scaling != (1.0, 0.0):
        raise TypeError(
            f"lazyimg.save of {name}: MGH has no scale factors, so stored values with slope "
            f"{scaling[0]:g} and intercept {scaling[1]:g} cannot be written exactly; load "
            "without dtype='raw' and save with dtype='float32', or save as NIfTI."
        )
    if np.dtype(dtype).name not in _DTYPES:
        raise TypeError(
            f"lazyimg.save of {name}: MGH cannot store {np.dtype(dtype)}; pass dtype= one of "
            f"{', '.join(_DTYPES)} (e.g. dtype='float32')."
        )
    nifti = build_header(lab, np.dtype(dtype), affine, template, name)
    final = nifti.get_best_affine()
    tr = None
    if len(shape) == 4:
        zooms = nifti.get_zooms()
        unit = nifti.get_xyzt_units()[1]
        if unit in TIME_FACTORS and zooms[3] > 0:
            tr = float(zooms[3]) * TIME_FACTORS[unit] * 1e3  # MGH keeps TR in ms
    dims3 = shape + (1,) * (3 - len(shape)) if len(shape) < 3 else shape
    img = nib.MGHImage(np.broadcast_to(np.zeros((), dtype), dims3), final)
    hdr = img.header
    source = lab.source_header
    if (
        isinstance(source, MGHHeader)
        and tuple(int(n) for n in source["dims"][:3]) == tuple(dims3[:3])
        and np.allclose(source.get_affine(), final, atol=1e-6)
    ):
        # the same grid: keep the source's own fields (nibabel's derivation from the
        # affine normalises the direction cosines, which some files do not)
        for key in ("delta", "Mdc", "Pxyz_c"):
            hdr[key] = source[key]
    scan = scan_params(source) or list(np.ravel(lab.attrs.get(SCAN_ATTR, [])))
    for key, value in zip(SCAN_FIELDS, scan, strict=False):
        hdr[key] = float(value)
    if tr is not None:
        hdr["tr"] = tr
    head, foot = io.BytesIO(), io.BytesIO()
    hdr.writehdr_to(head)
    hdr.writeftr_to(foot)
    footer = foot.getvalue()[int(hdr.get_footer_offset()) :]
    offset = int(hdr.get_data_offset())
    raw = head.getvalue()
    return MGHLayout(raw + b"\x00" * (offset - len(raw)), offset, footer, hdr.get_data_dtype())
