"""What an image is, in plain JSON-able values: the facts ``lazyimg info`` and the HTML repr show."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lazyimg._display.text import human_bytes
from lazyimg._io.axes import array_axes, time_step, voxel_sizes
from lazyimg._io.formats import stored_dtype

if TYPE_CHECKING:
    from lazyimg.image import LazyImage


def summarize(img: LazyImage) -> dict[str, Any]:
    """Format, shape, axes, dtypes, layout, sizes, geometry and TR of `img`; reads no voxel."""
    nib_img = img.nibabel_image
    kinds = array_axes(nib_img, img.ndim, img.path)
    zooms = voxel_sizes(nib_img, img.ndim)
    src = img.source
    tr, _ = time_step(nib_img, img.shape)
    stored = stored_dtype(nib_img) or img.dtype
    return {
        "path": str(img.path) if img.path else None,
        "format": type(nib_img).__name__,
        "shape": list(img.shape),
        "axes": [kinds.name_of(a) for a in range(img.ndim)],
        "dtype": str(img.dtype),
        "stored_dtype": str(np.dtype(stored)),
        "disk_order": img.disk_order,
        "compression": src.compression if src else None,
        "chunks": [list(c) for c in img.chunks],
        "size_on_disk": sum(f.size for f in src.files) if src else 0,
        "nbytes": img.nbytes,
        "affine": np.asarray(img.affine).tolist() if img.affine is not None else None,
        "spatial_axes": list(kinds.spatial),
        "time_axis": kinds.time,
        "voxel_sizes": [zooms[a] for a in kinds.spatial],
        "tr_seconds": tr,
    }


def plain_repr(img: LazyImage) -> str:
    """One line: name, format, shape, dtypes, disk order, chunks, sizes."""
    name = img.path.name if img.path else "<in memory>"
    nib_img = img.nibabel_image
    stored = stored_dtype(nib_img) or img.dtype
    nchunks = int(np.prod([len(c) for c in img.chunks]))
    chunk = "x".join(str(max(c) if c else 0) for c in img.chunks)
    src = img.source
    where = f"{human_bytes(sum(f.size for f in src.files))} on disk" if src else "in memory"
    return (
        f"<LazyImage {name!r} {type(nib_img).__name__} shape={img.shape} dtype={img.dtype} "
        f"(stored {stored}) disk_order={img.disk_order} chunks={nchunks} x {chunk} "
        f"nbytes={human_bytes(img.nbytes)} {where}>"
    )
