"""From a LazyImage to a labelled DataArray over the same lazy dask array.

The labelling contract is written down in :mod:`lazyimg.xarray`; the labels
themselves come from :mod:`lazyimg._io.axes`. Importing this module registers
the ``da.lazyimg`` accessor.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import nibabel as nib
import xarray as xr

from lazyimg._io.axes import Layout, layout
from lazyimg._write.fields import ATTR, header_json
from lazyimg._write.labels import INTER_ATTR, SLOPE_ATTR, image_scaling
from lazyimg._write.mgh import SCAN_ATTR, scan_params
from lazyimg.xarray.accessor import VARIABLE_NAME  # importing it registers ``da.lazyimg``

if TYPE_CHECKING:  # the image layer stands on this one: no runtime import
    from lazyimg.image import LazyImage

__all__ = ["VARIABLE_NAME", "image_layout", "to_xarray"]


def image_layout(img: LazyImage) -> Layout:
    """The dims, coordinates and attrs :func:`to_xarray` gives `img`.

    Examples
    --------
    >>> import numpy as np, nibabel as nib, lazyimg
    >>> lay = image_layout(lazyimg.load(nib.Nifti1Image(np.zeros((2, 3, 4), "u1"), np.eye(4))))
    >>> lay.dims, lay.attrs["format"]
    (('i', 'j', 'k'), 'Nifti1Image')
    """
    lay = layout(img.nibabel_image, img.shape, img.path)
    attrs = dict(lay.attrs)
    scaling = image_scaling(img.nibabel_image)
    if isinstance(img.header, nib.Nifti1Header):
        header = img.header.copy()
        if scaling is not None and scaling[1:] != (1.0, 0.0):
            # nibabel moves the scale factors from the header into the proxy: put them back
            header.set_slope_inter(*scaling[1:])
        attrs[ATTR] = header_json(header)
    if (scan := scan_params(img.header)) is not None:
        attrs[SCAN_ATTR] = scan
    if img.is_raw and scaling is not None:
        attrs[SLOPE_ATTR], attrs[INTER_ATTR] = scaling[1:]
    return replace(lay, attrs=attrs)


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
