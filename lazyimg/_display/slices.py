"""Orthogonal slices through a point of an image, reading only those three planes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lazyimg._io.axes import array_axes, voxel_sizes

if TYPE_CHECKING:
    from lazyimg.image import LazyImage


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
    kinds = array_axes(img.nibabel_image, img.ndim, img.path)
    if len(kinds.spatial) < 3:
        raise ValueError(f"plot_slices needs a 3D or 4D image, got shape {img.shape}")
    sizes = [img.shape[a] for a in kinds.spatial]
    i, j, k = point if point is not None else tuple(n // 2 for n in sizes)
    rest = img.ndim > 3
    slices = []
    for name, axis, at in zip("ijk", kinds.spatial, (i, j, k), strict=True):
        index: list[Any] = [volume if a == kinds.time else 0 for a in range(img.ndim)]
        for a in kinds.spatial:
            index[a] = at if a == axis else slice(None)
        slices.append((img.slicecopy[tuple(index)], f"{name} = {at}"))
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    else:
        fig = axes[0].figure
    all_zooms = voxel_sizes(img.nibabel_image, img.ndim)
    zooms = [all_zooms[a] for a in kinds.spatial]
    aspects = [zooms[2] / zooms[1], zooms[2] / zooms[0], zooms[1] / zooms[0]]
    for ax, (data, title), aspect in zip(axes, slices, aspects, strict=True):
        ax.imshow(np.asarray(data, dtype=float).T, origin="lower", cmap=cmap, aspect=aspect)
        ax.set_title(title)
        ax.set_axis_off()
    name = img.path.name if img.path else "in-memory image"
    fig.suptitle(f"{name} {img.shape}" + (f", volume {volume}" if rest else ""))
    return fig
