"""The user's ``dtype`` argument, validated at the boundary: None, ``"raw"`` or a numeric dtype."""

from __future__ import annotations

from typing import Any

import numpy as np


def parse_dtype(dtype: Any, name: str) -> tuple[np.dtype[Any] | None, bool]:
    """``(cast dtype or None, raw?)`` from the user's `dtype` argument."""
    if dtype is None:
        return None, False
    if isinstance(dtype, str) and dtype == "raw":
        return None, True
    try:
        parsed = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"dtype for {name}: {dtype!r} is not a numpy dtype. Use None (nibabel's scaled "
            "values), 'raw' (stored values, no scaling) or a numeric dtype such as 'float32'."
        ) from None
    if parsed.kind not in "biufc":
        raise TypeError(
            f"dtype for {name}: {parsed} is not numeric; use e.g. 'float32' or 'int16'."
        )
    return parsed, False
