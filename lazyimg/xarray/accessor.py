"""The ``da.lazyimg`` accessor: affine, world coordinates and NIfTI output of a DataArray.

The accessor holds no state: every property is worked out again from the
DataArray's coordinates and attrs (see :mod:`lazyimg.xarray` for what they
hold), so it stays right after ``isel``, arithmetic, ``to_zarr`` and back.
Importing this module registers it; :mod:`lazyimg.xarray` and the xarray
engine import it.
"""

from __future__ import annotations

import os
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from lazyimg._io.axes import SPATIAL, affine_of, grid_affine, index_grid

__all__ = ["LazyImgAccessor"]


@xr.register_dataarray_accessor("lazyimg")
class LazyImgAccessor:
    """Voxel-to-world geometry of a DataArray opened with lazyimg.

    Examples
    --------
    >>> import numpy as np, nibabel as nib, lazyimg, lazyimg.xarray
    >>> da = lazyimg.load(nib.Nifti1Image(np.zeros((4, 5, 6), "f4"), np.diag([2.0, 2, 2, 1]))).to_xarray()
    >>> da.isel(i=slice(1, None, 2)).lazyimg.affine[0].tolist()
    [4.0, 0.0, 0.0, 2.0]
    """

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    def _grids(self) -> dict[str, tuple[float, float]]:
        obj = self._obj
        grids = {}
        for dim in SPATIAL:
            values = obj.coords[dim].values if dim in obj.coords else None
            grids[dim] = index_grid(values, dim)
        return grids

    @property
    def affine(self) -> np.ndarray:
        """The 4x4 voxel-to-world affine of this array's own voxels.

        ``attrs["affine"]`` maps the original index grid; the ``i``, ``j``,
        ``k`` coordinates say which of its voxels this array holds (a scalar
        coordinate fixes an axis that was indexed away).
        """
        return grid_affine(affine_of(self._obj.attrs), self._grids())

    @property
    def zooms(self) -> tuple[float, ...]:
        """Voxel sizes along ``i``, ``j``, ``k`` (norms of the affine's columns)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    def world_coords(self) -> xr.Dataset:
        """Scanner coordinates ``x``, ``y``, ``z`` of every voxel, computed lazily.

        Returns
        -------
        xarray.Dataset
            Variables ``x``, ``y``, ``z`` over this array's spatial dims, backed
            by dask (chunked like the data) so nothing is computed until asked.

        Examples
        --------
        >>> import numpy as np, nibabel as nib, lazyimg, lazyimg.xarray
        >>> da = lazyimg.load(nib.Nifti1Image(np.zeros((2, 3, 4), "f4"), np.eye(4))).to_xarray()
        >>> float(da.lazyimg.world_coords().z.sel(i=1, j=2, k=3))
        3.0
        """
        obj = self._obj
        affine = affine_of(obj.attrs)
        spatial = [d for d in SPATIAL if d in obj.dims]
        chunks = dict(zip(obj.dims, obj.chunks, strict=True)) if obj.chunks is not None else {}
        index: list[Any] = []
        for dim in SPATIAL:
            if dim in obj.dims:
                values = obj.coords[dim].values if dim in obj.coords else np.arange(obj.sizes[dim])
                arr = da.from_array(
                    np.asarray(values, dtype=np.float64), chunks=chunks.get(dim, -1)
                )
                index.append(xr.DataArray(arr, dims=dim))
            else:  # indexed away: its scalar coordinate, or 0
                index.append(float(obj.coords[dim]) if dim in obj.coords else 0.0)
        units = {"units": obj.attrs.get("spatial_units", "unknown")}
        out = {}
        for row, name in enumerate(("x", "y", "z")):
            value = affine[row, 3] + sum(affine[row, c] * index[c] for c in range(3))
            if not isinstance(value, xr.DataArray):  # no spatial dims at all
                value = xr.DataArray(value)
            out[name] = value.transpose(*spatial).assign_attrs(units)
        return xr.Dataset(out)

    def assign_world_coords(self) -> xr.DataArray:
        """This array with lazy ``x``, ``y``, ``z`` world coordinates attached."""
        world = self.world_coords()
        return self._obj.assign_coords({name: world[name].variable for name in world.data_vars})

    def to_nifti(self, path: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Save as NIfTI, streaming chunk by chunk; see :func:`lazyimg.write.save`."""
        from lazyimg.write import save

        return save(self._obj, path, **kwargs)
