"""A NIfTI header as one JSON string, so every field and extension survives netCDF and Zarr.

netCDF and Zarr attributes hold strings, numbers and flat lists, so a header
travels through them as ``attrs["nifti_header"]``: a JSON object with the
header's class and byte order, every field by name (strings decoded as
latin-1, non-finite floats as ``"nan"``/``"inf"``/``"-inf"`` since JSON has no
such numbers) and the extensions, their contents in base64. :func:`header_json`
writes it (:mod:`lazyimg.xarray.convert` puts it in the attrs) and
:func:`header_from_json` reads it back (:func:`lazyimg.write.save` uses it as
the template for the fields the labels do not give: slice timing,
``cal_min``/``cal_max``, ``dim_info``, the scaling ``dtype="stored"`` needs,
extensions, ...).
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import nibabel as nib
import numpy as np

from lazyimg.errors import CorruptImageError

__all__ = ["ATTR", "header_from_json", "header_json"]

#: Name of the attribute that carries the header.
ATTR = "nifti_header"

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    return value


def header_json(hdr: nib.Nifti1Header) -> str:
    """Every field and extension of `hdr` as a JSON string.

    Examples
    --------
    >>> import nibabel as nib
    >>> hdr = nib.Nifti1Header()
    >>> hdr["slice_duration"] = 0.05
    >>> hdr.extensions.append(nib.nifti1.Nifti1Extension(6, b"note"))
    >>> back = header_from_json(header_json(hdr))
    >>> float(back["slice_duration"]), back.extensions[0].get_content()
    (0.05000000074505806, b'note')
    """
    fields = {key: _plain(hdr[key].tolist()) for key in hdr}
    extensions = [
        {"code": int(ext.get_code()), "content": base64.b64encode(ext.content).decode("ascii")}
        for ext in hdr.extensions
    ]
    doc = {
        "class": type(hdr).__name__,
        "endianness": hdr.endianness,
        "fields": fields,
        "extensions": extensions,
    }
    return json.dumps(doc, separators=(",", ":"))


def header_from_json(text: Any, name: str = "the DataArray") -> nib.Nifti1Header:
    """The header :func:`header_json` wrote.

    Raises
    ------
    CorruptImageError
        `text` is not such a JSON string.
    """
    try:
        doc = json.loads(text)
        klass = nib.Nifti2Header if doc["class"] == "Nifti2Header" else nib.Nifti1Header
        hdr = klass(endianness=doc["endianness"])
        for key, value in doc["fields"].items():
            if key in ("sizeof_hdr", "magic"):
                continue  # the class's own
            hdr[key] = np.asarray(_unplain(value), dtype=hdr[key].dtype)
        for ext in doc["extensions"]:
            content = base64.b64decode(ext["content"], validate=True)
            hdr.extensions.append(nib.nifti1.Nifti1Extension(int(ext["code"]), content))
    except Exception as err:
        raise CorruptImageError(
            f"{name}: attrs[{ATTR!r}] is not a NIfTI header written by lazyimg ({err}). "
            f"Drop the attribute (del da.attrs[{ATTR!r}]) or pass header=... to save."
        ) from None
    return hdr
