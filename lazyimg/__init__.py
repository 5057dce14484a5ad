"""lazyimg: neuroimaging images as lazy, disk-aligned dask arrays.

Open any image nibabel reads with :func:`load`; the result's ``.data`` is a
dask array chunked along the slowest axis on disk, ``.slicecopy[...]`` reads
exactly the bytes an index needs, and in-memory images are wrapped as views.

Importing the package is cheap: the public names below are resolved on first
use (a module ``__getattr__``), so ``import lazyimg`` and ``lazyimg --help``
pull in neither nibabel nor dask, and ``lazyimg.load`` of a path builds its
dask graph only when ``.data`` is first used. xarray (and the ``da.lazyimg``
accessor) comes in with :func:`open_dataarray`, ``LazyImage.to_xarray`` or
the ``engine="lazyimg"`` backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lazyimg.errors import (
    CorruptImageError,
    DimensionError,
    FileChangedError,
    ImageNotFoundError,
    ImagePermissionError,
    LazyImgError,
    MissingDependencyError,
    NotAnImageError,
    OutOfRangeError,
    SaveError,
)

if TYPE_CHECKING:
    from lazyimg._io.cache import close_all as close_files
    from lazyimg._io.files import count_bytes
    from lazyimg._io.files import total_bytes_read as bytes_read
    from lazyimg.image import LazyImage, load
    from lazyimg.write import save
    from lazyimg.xarray import open_dataarray

#: public name -> (module, name there), imported on first use
_LAZY = {
    "LazyImage": ("lazyimg.image", "LazyImage"),
    "load": ("lazyimg.image", "load"),
    "save": ("lazyimg.write", "save"),
    "open_dataarray": ("lazyimg.xarray", "open_dataarray"),
    "bytes_read": ("lazyimg._io.files", "total_bytes_read"),
    "count_bytes": ("lazyimg._io.files", "count_bytes"),
    "close_files": ("lazyimg._io.cache", "close_all"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lazyimg")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":  # importlib.metadata alone costs ~60 ms
        value: Any = _version()
        globals()[name] = value
        return value
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'lazyimg' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(where[0]), where[1])
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CorruptImageError",
    "DimensionError",
    "FileChangedError",
    "ImageNotFoundError",
    "ImagePermissionError",
    "LazyImage",
    "LazyImgError",
    "MissingDependencyError",
    "NotAnImageError",
    "OutOfRangeError",
    "SaveError",
    "__version__",
    "bytes_read",
    "close_files",
    "count_bytes",
    "load",
    "open_dataarray",
    "save",
]
