"""Images as labelled, lazy ``xarray.DataArray`` objects.

:func:`to_xarray` (also ``LazyImage.to_xarray()``) and :func:`open_dataarray`
wrap the same lazy dask array :func:`lazyimg.load` builds: opening reads the
header only. The xarray engine ``"lazyimg"`` (``xr.open_dataarray(path,
engine="lazyimg")``, see :mod:`lazyimg.xarray.backend`) follows the same rules, and
:func:`lazyimg.write.save` reads them back when it writes a NIfTI file.

The labelling contract
----------------------
Dimensions
    The spatial voxel axes are ``"i"``, ``"j"``, ``"k"``, in nibabel's array
    order. The fourth axis is ``"time"`` (NIfTI's dim[4]; also for AFNI
    sub-bricks and PAR/REC volumes). Further axes are ``"u"``, ``"v"``, ``"w"``
    (NIfTI's dims 5 to 7, as in ``nifti1.h``) and then ``"axis7"``,
    ``"axis8"``, ... Images with no voxel-to-world mapping (CIFTI-2) get
    ``"dim_0"``, ``"dim_1"``, ... The axes are always in the order
    ``i, j, k, time, u, v, w``: MINC files, which store time first, are
    transposed (lazily) so that the same image gives the same dims, in the same
    order, in every format.
Coordinates
    ``i``, ``j``, ``k`` (and ``u``, ``v``, ``w``) carry voxel indices
    ``0, 1, ...``; after ``isel`` they keep the indices of the original grid,
    which is how ``da.lazyimg.affine`` stays right for any slice. ``time``
    carries seconds (float, attrs ``{"units": "s"}``) when the header gives the
    repetition time: NIfTI ``pixdim[4]`` in ``xyzt_units`` sec/msec/usec plus
    ``toffset``; MGH ``tr`` (milliseconds); MINC's time dimension (start, step);
    PAR/REC dynamic scan begin times; AFNI ``TAXIS_FLOATS``. Otherwise it
    carries positions ``0, 1, ...``. World (scanner) coordinates are not
    materialised: ``da.lazyimg.world_coords()`` computes them lazily.
Attributes
    Only what netCDF and Zarr can store (strings, numbers, flat lists):

    ``affine``
        The 4x4 voxel-to-world affine of the index grid, as 16 floats row by
        row (netCDF attributes are one-dimensional); ``da.lazyimg.affine``
        gives it back as a matrix, adjusted for the current ``i, j, k``.
    ``zooms``
        Voxel sizes from the header, one per axis in the order above (time in
        ``time_units``).
    ``spatial_units``, ``time_units``
        NIfTI unit names (``"mm"``, ``"sec"``, ``"msec"``, ``"unknown"``, ...).
    ``sform_code``, ``qform_code``, ``description``, ``intent``, ``intent_params``, ``intent_name``
        NIfTI only, where present.
    ``source``, ``format``
        The file opened and nibabel's image class (e.g. ``"Nifti1Image"``).
    ``nifti_header``
        NIfTI only: the whole header as a JSON string, every field by name and
        the extensions in base64 (see :mod:`lazyimg._write.fields`). It rides
        through ``to_zarr`` and ``to_netcdf`` unchanged, and
        :func:`lazyimg.save` takes the fields the labels above do not give from
        it (slice timing, ``cal_min``/``cal_max``, ``dim_info``, extensions,
        and the stored type and scaling for ``dtype="stored"``).
    ``scl_slope``, ``scl_inter``
        Only with ``dtype="raw"``: the values are stored ones, and real values
        are ``value * scl_slope + scl_inter``. :func:`lazyimg.save` writes them
        back with these scale factors.

The DataArray is named ``"image"``, in every format, so many files combine into
one variable (``xr.open_mfdataset``).

Modules
-------
``convert``
    :func:`to_xarray` and :func:`image_layout` (the labels layer: stands on
    the graphs and the header, below :mod:`lazyimg.image`).
``accessor``
    ``da.lazyimg``, registered when this package is imported.
``open``
    :func:`open_dataarray` (stands on :func:`lazyimg.load`).
``backend``
    The ``engine="lazyimg"`` entry point (stands on :func:`lazyimg.load`).
``stack``
    :func:`open_mfdataset`: many files along a labelled dimension (BIDS
    subjects or file names) with a ``source`` coordinate of every path.
"""

from __future__ import annotations

from typing import Any

from lazyimg.xarray.convert import VARIABLE_NAME, image_layout, to_xarray

__all__ = ["VARIABLE_NAME", "image_layout", "open_dataarray", "open_mfdataset", "to_xarray"]


def __getattr__(name: str) -> Any:
    # open_dataarray and open_mfdataset stand on lazyimg.image, which stands on this package's
    # convert module: imported on first use so that the layers stay acyclic
    if name == "open_dataarray":
        from lazyimg.xarray.open import open_dataarray

        return open_dataarray
    if name == "open_mfdataset":
        from lazyimg.xarray.stack import open_mfdataset

        return open_mfdataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
