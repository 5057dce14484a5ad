"""Which array axes of an image are space (i, j, k), which is time, which are other.

One notion for the whole package: the xarray labels (:func:`lazyimg._io.axes.layout`),
``lazyimg info`` and ``reduce``, the HTML repr and the plots all ask :func:`array_axes`.
NIfTI, Analyze, MGH, PAR/REC and AFNI hold space first, then time; MINC names each
dimension, and 4D MINC files usually hold time first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nibabel as nib

SPATIAL = ("i", "j", "k")
TIME = "time"
EXTRA = ("u", "v", "w")
#: Every named axis, in the order a DataArray (and a NIfTI file) holds them.
CANONICAL = (*SPATIAL, TIME, *EXTRA)


def axis_names(ndim: int) -> tuple[str, ...]:
    """Names of the axes of an image with `ndim` axes, in NIfTI order.

    Examples
    --------
    >>> axis_names(4)
    ('i', 'j', 'k', 'time')
    >>> axis_names(9)
    ('i', 'j', 'k', 'time', 'u', 'v', 'w', 'axis7', 'axis8')
    """
    return tuple(CANONICAL[n] if n < len(CANONICAL) else f"axis{n}" for n in range(ndim))


@dataclass(frozen=True)
class ArrayAxes:
    """Which of nibabel's array axes are space (i, j, k in order), time, and other."""

    spatial: tuple[int, ...]
    time: int | None
    other: tuple[int, ...]

    @property
    def perm(self) -> tuple[int, ...]:
        """Array axes in NIfTI order: space, then time, then the rest."""
        return (*self.spatial, *(() if self.time is None else (self.time,)), *self.other)

    @property
    def dims(self) -> tuple[str, ...]:
        """Names of the axes in :attr:`perm` order: i, j, k, time, u, v, w, axis7, ..."""
        names = SPATIAL[: len(self.spatial)] + (TIME,) * (self.time is not None)
        return names + axis_names(4 + len(self.other))[4:]

    def name_of(self, axis: int) -> str:
        """The name of array axis `axis`."""
        return self.dims[self.perm.index(axis)]


def array_axes(nib_img: Any, ndim: int, path: Any = None) -> ArrayAxes:
    """The roles of the array axes of `nib_img` (an image with `ndim` axes).

    NIfTI, Analyze, MGH, PAR/REC and AFNI hold space first, then time; MINC
    names each dimension, and 4D MINC files usually hold time first. The
    columns of ``nib_img.affine`` map the spatial axes in the order given here.

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> array_axes(nib.Nifti1Image(np.zeros((2, 3, 4, 5), "u1"), np.eye(4)), 4)
    ArrayAxes(spatial=(0, 1, 2), time=3, other=())
    """
    if not isinstance(nib_img, nib.spatialimages.SpatialImage):
        return ArrayAxes((), None, tuple(range(ndim)))
    roles = minc_roles(nib_img, ndim)
    if roles is None:
        return ArrayAxes(tuple(range(min(ndim, 3))), 3 if ndim > 3 else None, tuple(range(4, ndim)))
    spatial = [a for a, r in enumerate(roles) if r == "space"]
    time = [a for a, r in enumerate(roles) if r == "time"]
    other = [a for a, r in enumerate(roles) if r == "other"]
    if len(spatial) > 3 or len(time) > 1:
        raise ValueError(f"{path}: MINC dimensions {roles} cannot be labelled i, j, k, time.")
    return ArrayAxes(tuple(spatial), time[0] if time else None, tuple(other))


def minc_roles(nib_img: Any, ndim: int) -> list[str] | None:
    """``"space"``, ``"time"`` or ``"other"`` per axis of a MINC image; None otherwise."""
    minc_file = getattr(nib_img.dataobj, "minc_file", None)
    names = getattr(minc_file, "_dim_names", None)
    if names is None or len(names) != ndim:
        return None
    roles = []
    for name in names:
        text = name.decode() if isinstance(name, bytes) else str(name)
        roles.append("space" if text.endswith("space") else "time" if text == "time" else "other")
    return roles
