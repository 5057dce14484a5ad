"""nibabel's read scaling of an ``ArrayProxy``, worked out once from its header fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.volumeutils import apply_read_scaling


@dataclass(frozen=True, eq=False)
class Scaling:
    """nibabel's read scaling, prepared once: ``raw * slope + inter`` or per-volume factors.

    The factors are kept in the dtypes nibabel itself would compute in, so the
    in-place arithmetic of the read path gives bit-identical values.
    """

    slope: np.ndarray | None = None
    inter: np.ndarray | None = None
    per_last: np.ndarray | None = None
    """One factor per position of the last axis (AFNI sub-bricks)."""


def raw_scaling(proxy: ArrayProxy, stored: np.dtype[Any]) -> tuple[Scaling, np.dtype[Any]]:
    """nibabel's ``ArrayProxy._get_scaled`` rules, worked out without reading data."""
    per_last = getattr(proxy, "scaling", None)
    if per_last is not None:  # AFNI: one factor per sub-brick
        vec = np.asarray(per_last)
        final = np.result_type(np.empty(0, stored), vec)
        return Scaling(per_last=vec.astype(final)), np.dtype(final)
    slope = np.asanyarray(proxy.slope)
    inter = np.asanyarray(proxy.inter)
    if np.can_cast(inter, slope.dtype):
        inter = inter.astype(slope.dtype)
    probe = np.zeros(1, stored)
    scaled = apply_read_scaling(probe, slope, inter).dtype
    if (slope, inter) == (1, 0):
        return Scaling(), stored
    slope1d, inter1d = np.atleast_1d(slope), np.atleast_1d(inter)
    if stored.kind in "iu":
        from nibabel.volumeutils import int_scinter_ftype

        default = slope1d.dtype.type if slope1d.dtype.kind == "f" else np.float64
        ftype = int_scinter_ftype(stored, slope1d, inter1d, default)
        slope1d, inter1d = slope1d.astype(ftype), inter1d.astype(ftype)
    return (
        Scaling(
            slope=slope1d if slope1d != 1.0 else None,
            inter=inter1d if inter1d != 0.0 else None,
        ),
        np.dtype(scaled),
    )
