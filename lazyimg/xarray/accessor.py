"""The ``da.lazyimg`` and ``ds.lazyimg`` accessors: affine, world coordinates, saving.

``da.lazyimg`` works on a DataArray; ``ds.lazyimg`` on a Dataset does the same
for its image variable (``"image"``, the one the engine and
:func:`lazyimg.xarray.open_mfdataset` give) and lists the files a stacked
Dataset came from. The accessors hold no state: every property is worked out again from the
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
from lazyimg.errors import NotAnImageError

__all__ = ["VARIABLE_NAME", "LazyImgAccessor", "LazyImgDatasetAccessor"]

#: Name of the DataArray (and of the one variable the xarray engine returns).
VARIABLE_NAME = "image"


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
        """Save as NIfTI (or MGH, by the suffix), chunk by chunk; see :func:`lazyimg.save`."""
        from lazyimg.write import save

        return save(self._obj, path, **kwargs)

    save = to_nifti


@xr.register_dataset_accessor("lazyimg")
class LazyImgDatasetAccessor:
    """``ds.lazyimg``: the image variable's geometry and output, and the files behind it.

    Examples
    --------
    >>> import tempfile, pathlib, xarray as xr
    >>> from lazyimg.testing import write_fmri
    >>> path = write_fmri(pathlib.Path(tempfile.mkdtemp()) / "bold.nii", (4, 4, 3, 2))
    >>> ds = xr.open_dataset(path, engine="lazyimg")
    >>> ds.lazyimg.zooms, ds.lazyimg.sources == [str(path)]
    ((2.0, 2.0, 2.0), True)
    """

    def __init__(self, obj: xr.Dataset) -> None:
        self._obj = obj

    @property
    def image(self) -> xr.DataArray:
        """The image variable: ``"image"``, or the only one with an ``affine`` attr."""
        ds = self._obj
        if VARIABLE_NAME in ds.data_vars:
            return ds[VARIABLE_NAME]
        named = [n for n, v in ds.data_vars.items() if "affine" in v.attrs]
        if len(named) == 1:
            return ds[named[0]]
        raise NotAnImageError(
            f"the Dataset has no variable {VARIABLE_NAME!r} and {len(named)} with an 'affine' "
            f"attr ({named}); pick one: ds[name].lazyimg."
        )

    @property
    def affine(self) -> np.ndarray:
        """See :attr:`LazyImgAccessor.affine`."""
        return self.image.lazyimg.affine

    @property
    def zooms(self) -> tuple[float, ...]:
        """See :attr:`LazyImgAccessor.zooms`."""
        return self.image.lazyimg.zooms

    @property
    def sources(self) -> list[str]:
        """The files the image came from: the ``source`` coordinate, else ``attrs["source"]``."""
        ds = self._obj
        if "source" in ds.coords:
            return [str(p) for p in np.ravel(ds.coords["source"].values)]
        source = self.image.attrs.get("source")
        return [] if source is None else [str(source)]

    def world_coords(self) -> xr.Dataset:
        """See :meth:`LazyImgAccessor.world_coords`."""
        return self.image.lazyimg.world_coords()

    def assign_world_coords(self) -> xr.Dataset:
        """This Dataset with lazy ``x``, ``y``, ``z`` world coordinates attached."""
        world = self.world_coords()
        return self._obj.assign_coords({name: world[name].variable for name in world.data_vars})

    def to_nifti(self, path: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Save the image variable; see :func:`lazyimg.save` (``dims=`` places stacked dims)."""
        return self.image.lazyimg.to_nifti(path, **kwargs)

    save = to_nifti
