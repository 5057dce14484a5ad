"""How a LazyImage shows itself: an HTML summary for notebooks and orthogonal-slice plots."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np
from dask.utils import format_bytes

from lazyimg._io.formats import stored_dtype

if TYPE_CHECKING:
    from lazyimg.image import LazyImage


def _zooms(img: LazyImage) -> tuple[float, ...]:
    hdr = img.header
    try:
        return tuple(float(z) for z in hdr.get_zooms())
    except Exception:
        return tuple(float(v) for v in np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0)))


def html_repr(img: LazyImage) -> str:
    """An HTML table: what the image is, where it lives, and how it is chunked."""
    nib_img = img.nibabel_image
    src = img.source
    name = html.escape(str(img.path) if img.path else "in-memory image")
    stored = stored_dtype(nib_img) or img.dtype
    where = (
        f"{format_bytes(sum(f.size for f in src.files))} on disk"
        + (f" ({src.compression})" if src and src.compression else "")
        if src
        else "in memory (views of the array)"
    )
    order = "last axis slowest (F)" if img.disk_order == "F" else "first axis slowest (C)"
    grid = " &times; ".join(str(len(c)) for c in img.chunks)
    largest = tuple(max(c) if c else 0 for c in img.chunks)
    rows = [
        ("format", html.escape(type(nib_img).__name__)),
        ("shape", str(img.shape)),
        ("dtype", f"{img.dtype} (stored {stored})"),
        ("on-disk order", order),
        ("chunks", f"{grid} blocks, largest {largest}"),
        ("size", f"{format_bytes(img.nbytes)} in memory, {where}"),
        ("voxel sizes", ", ".join(f"{z:g}" for z in _zooms(img))),
    ]
    body = "".join(
        f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
        for k, v in rows
    )
    affine = "".join(
        "<tr>" + "".join(f"<td style='text-align:right'>{v:.4g}</td>" for v in row) + "</tr>"
        for row in img.affine
    )
    try:
        chunk_svg = img.data.to_svg(size=120)
    except Exception:  # dask draws at most a few dimensions nicely; the table suffices
        chunk_svg = ""
    return (
        "<div class='lazyimg-repr'>"
        f"<strong>LazyImage</strong> <code>{name}</code>"
        "<table style='display:inline-table;vertical-align:top;margin-right:1em'>"
        f"{body}</table>"
        "<table style='display:inline-table;vertical-align:top'>"
        f"<caption>affine</caption>{affine}</table>"
        f"<div style='display:inline-block;vertical-align:top'>{chunk_svg}</div>"
        "</div>"
    )


def plot_slices(
    img: LazyImage,
    point: tuple[int, int, int] | None = None,
    *,
    volume: int = 0,
    cmap: str = "gray",
    axes: Any = None,
) -> Any:
    """Draw three orthogonal slices through voxel `point`, reading only those slices.

    Parameters
    ----------
    img : LazyImage
        A 3D or higher image; further axes are fixed at index `volume`.
    point : tuple of 3 ints, optional
        Voxel (i, j, k) the slices pass through; default: the centre.
    volume : int
        Index on every axis after the third.
    cmap : str
        Matplotlib colour map.
    axes : sequence of 3 matplotlib Axes, optional
        Where to draw; a new figure is made otherwise.

    Returns
    -------
    matplotlib.figure.Figure
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plot_slices needs matplotlib: pip install matplotlib (or lazyimg[plot])"
        ) from None
    if img.ndim < 3:
        raise ValueError(f"plot_slices needs a 3D or 4D image, got shape {img.shape}")
    i, j, k = point if point is not None else tuple(n // 2 for n in img.shape[:3])
    rest = (volume,) * (img.ndim - 3)
    slices = [
        (img.slicecopy[(i, slice(None), slice(None), *rest)], f"i = {i}"),
        (img.slicecopy[(slice(None), j, slice(None), *rest)], f"j = {j}"),
        (img.slicecopy[(slice(None), slice(None), k, *rest)], f"k = {k}"),
    ]
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    else:
        fig = axes[0].figure
    zooms = (*_zooms(img)[:3], 1.0, 1.0, 1.0)
    aspects = [zooms[2] / zooms[1], zooms[2] / zooms[0], zooms[1] / zooms[0]]
    for ax, (data, title), aspect in zip(axes, slices, aspects, strict=True):
        ax.imshow(np.asarray(data, dtype=float).T, origin="lower", cmap=cmap, aspect=aspect)
        ax.set_title(title)
        ax.set_axis_off()
    name = img.path.name if img.path else "in-memory image"
    fig.suptitle(f"{name} {img.shape}" + (f", volume {volume}" if rest else ""))
    return fig
