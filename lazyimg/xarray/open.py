"""``lazyimg.open_dataarray``: a path straight to a lazy, labelled DataArray."""

from __future__ import annotations

import os
from typing import Any

import xarray as xr

from lazyimg._io.remote import is_url
from lazyimg.image import load
from lazyimg.xarray.convert import to_xarray

__all__ = ["open_dataarray"]


def open_dataarray(
    path: str | os.PathLike[str],
    *,
    chunks: Any = "auto",
    dtype: Any = None,
    storage_options: dict[str, Any] | None = None,
) -> xr.DataArray:
    """Open an image file as a lazy, labelled DataArray.

    Parameters
    ----------
    path : str or os.PathLike
        Any file :func:`lazyimg.load` opens.
    chunks : "auto", int, tuple or dict, optional
        As for :func:`lazyimg.load`: ``"auto"`` splits along the slowest axis on
        disk. Dict keys are dimension names (``{"time": 50}``) or axis numbers
        of the file's array (nibabel's order).
    dtype : None, "raw" or numpy dtype, optional
        As for :func:`lazyimg.load`.
    storage_options : dict, optional
        For a URL (``s3://``, ``https://``, ...): its fsspec filesystem's options,
        as for :func:`lazyimg.load`.

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
    >>> open_dataarray(tmp / "bold.nii", chunks={"time": 2}).chunks[-1]
    (2, 2, 1)
    """
    # absolute, so attrs["source"] and the graph stay right after a chdir or on a worker
    where = path if is_url(path) else os.path.abspath(path)
    return to_xarray(load(where, chunks=chunks, dtype=dtype, storage_options=storage_options))
