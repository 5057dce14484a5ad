"""lazyimg: neuroimaging images as lazy, disk-aligned dask arrays.

Open any image nibabel reads with :func:`load`; the result's ``.data`` is a
dask array chunked along the slowest axis on disk, ``.slicecopy[...]`` reads
exactly the bytes an index needs, and in-memory images are wrapped as views.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from lazyimg._io.cache import close_all as close_files
from lazyimg._io.files import count_bytes
from lazyimg._io.files import total_bytes_read as bytes_read
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
from lazyimg.image import LazyImage, load
from lazyimg.write import save

try:  # xarray is an optional extra: the engine, open_dataarray and the da.lazyimg accessor
    from lazyimg.xarray import accessor as _accessor  # noqa: F401  (registers da.lazyimg)
    from lazyimg.xarray import open_dataarray
except ImportError:  # pragma: no cover - exercised only without xarray installed
    pass

try:
    __version__ = version("lazyimg")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

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
