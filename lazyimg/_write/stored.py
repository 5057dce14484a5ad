"""Real values back to a file's stored type: ``save(..., dtype="stored")``.

A scaled image holds ``stored * slope + inter``; writing it back in the
stored type with the same scale factors keeps the file as small as it was and
every value that came from it exact. Values are divided back, rounded to the
nearest step for integer types, and checked per chunk: one that the stored
type cannot hold (out of range, NaN in an integer type) fails the save with an
:class:`~lazyimg.errors.OutOfRangeError` rather than wrapping around.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from lazyimg.errors import OutOfRangeError

__all__ = ["to_stored"]


def _unscale(
    block: np.ndarray, dtype: np.dtype[Any], slope: float, inter: float, name: str
) -> np.ndarray:
    values = np.asarray(block)
    if (slope, inter) != (1.0, 0.0):
        values = (values.astype(np.float64) - inter) / slope
    if dtype.kind in "iu":
        if values.dtype.kind in "fc":
            values = np.rint(values.real)
            bad = ~np.isfinite(values)
            if bad.any():
                raise OutOfRangeError(
                    f"lazyimg.save of {name}: dtype='stored' ({dtype}) cannot hold NaN or "
                    "infinity; fill them (.fillna) or save as a float type (dtype='float32')."
                )
        info = np.iinfo(dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            low = values.min() * slope + inter
            high = values.max() * slope + inter
            raise OutOfRangeError(
                f"lazyimg.save of {name}: values from {low:g} to {high:g} do not fit the stored "
                f"type {dtype} with slope {slope:g} and intercept {inter:g}; save as a float "
                "type (dtype='float32') instead."
            )
    return values.astype(dtype, copy=False)


def to_stored(
    data: da.Array, dtype: np.dtype[Any], slope: float, inter: float, name: str
) -> da.Array:
    """`data` (real values) as values of `dtype` that `slope` and `inter` scale back.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> x = da.from_array(np.array([10.0, 10.5, 42.0]))
    >>> to_stored(x, np.dtype("int16"), 0.5, 10.0, "x").compute().tolist()
    [0, 1, 64]
    """
    return da.map_blocks(_unscale, data, dtype, slope, inter, name, dtype=dtype)
