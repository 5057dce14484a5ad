"""Images as labelled, lazy ``xarray.DataArray`` objects.

:func:`to_xarray` (also ``LazyImage.to_xarray()``) and :func:`open_dataarray`
wrap the same lazy dask array :func:`lazyimg.load` builds: opening reads the
header only. The xarray engine ``"lazyimg"`` (``xr.open_dataarray(path,
engine="lazyimg")``, see :mod:`lazyimg._backend`) follows the same rules, and
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

The DataArray is named ``"image"``, in every format, so many files combine into
one variable (``xr.open_mfdataset``).
"""

from __future__ import annotations

import os
from typing import Any

import xarray as xr

from . import accessor as _accessor  # noqa: F401  (registers ``da.lazyimg``)
from ._meta import Layout, layout
from .image import LazyImage, load

__all__ = ["VARIABLE_NAME", "image_layout", "open_dataarray", "to_xarray"]

#: Name of the DataArray (and of the one variable the xarray engine returns).
VARIABLE_NAME = "image"


def image_layout(img: LazyImage) -> Layout:
    """The dims, coordinates and attrs :func:`to_xarray` gives `img`.

    Examples
    --------
    >>> import numpy as np, nibabel as nib, lazyimg
    >>> lay = image_layout(lazyimg.load(nib.Nifti1Image(np.zeros((2, 3, 4), "u1"), np.eye(4))))
    >>> lay.dims, lay.attrs["format"]
    (('i', 'j', 'k'), 'Nifti1Image')
    """
    return layout(img.nibabel_image, img.shape, img.path)


def to_xarray(img: LazyImage) -> xr.DataArray:
    """A LazyImage as a labelled DataArray over the same lazy dask array.

    Parameters
    ----------
    img : LazyImage
        An image from :func:`lazyimg.load`.

    Returns
    -------
    xarray.DataArray
        Named ``"image"``, with dims, coordinates and attrs as described in
        :mod:`lazyimg.xarray`. No voxel data is read.

    Examples
    --------
    >>> import numpy as np, nibabel as nib, lazyimg
    >>> nii = nib.Nifti1Image(np.zeros((4, 5, 6, 3), "int16"), np.diag([2.0, 2, 2, 1]))
    >>> nii.header.set_xyzt_units("mm", "sec")
    >>> nii.header.set_zooms((2.0, 2.0, 2.0, 1.5))
    >>> da = to_xarray(lazyimg.load(nii))
    >>> da.dims, da.time.values.tolist()
    (('i', 'j', 'k', 'time'), [0.0, 1.5, 3.0])
    """
    lay = image_layout(img)
    data = img.data
    if lay.perm != tuple(range(len(lay.perm))):
        data = data.transpose(lay.perm)
    coords = {d: xr.Variable(d, values, attrs) for d, (values, attrs) in lay.coords.items()}
    return xr.DataArray(data, dims=lay.dims, coords=coords, attrs=lay.attrs, name=VARIABLE_NAME)


def open_dataarray(
    path: str | os.PathLike[str], *, chunks: Any = "auto", dtype: Any = None
) -> xr.DataArray:
    """Open an image file as a lazy, labelled DataArray.

    Parameters
    ----------
    path : str or os.PathLike
        Any file :func:`lazyimg.load` opens.
    chunks : "auto", int, tuple or dict, optional
        As for :func:`lazyimg.load`: ``"auto"`` splits along the slowest axis on
        disk. Dict keys are axis numbers of the file's array (nibabel's order).
    dtype : None, "raw" or numpy dtype, optional
        As for :func:`lazyimg.load`.

    Returns
    -------
    xarray.DataArray
        See :func:`to_xarray`. Basic indexing of it (``isel`` with ints and
        slices) reads only the bytes it needs.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from lazyimg.testing import write_fmri
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> da = open_dataarray(write_fmri(tmp / "bold.nii", (8, 8, 4, 5), tr=2.0))
    >>> da.sizes["time"], float(da.time[1]), da.attrs["time_units"]
    (5, 2.0, 'sec')
    """
    # absolute, so attrs["source"] and the graph stay right after a chdir or on a worker
    return to_xarray(load(os.path.abspath(path), chunks=chunks, dtype=dtype))
