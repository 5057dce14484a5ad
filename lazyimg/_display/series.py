"""The time series of a voxel or a box of voxels, reading only that series."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lazyimg._display.slices import _pyplot, volume_index
from lazyimg._io.axes import time_step
from lazyimg._io.roles import array_axes

if TYPE_CHECKING:
    from lazyimg.image import LazyImage


def read_timeseries(
    img: LazyImage, voxel: tuple[Any, Any, Any]
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(times, values, x label)`` of voxel (i, j, k); slices in `voxel` average a box.

    Reads only the voxels asked for, over every volume; times are in seconds
    when the header states the TR, volume numbers otherwise.
    """
    kinds = array_axes(img.nibabel_image, img.ndim, img.path)
    index = volume_index(img, 0)
    if kinds.time is None:
        raise ValueError(
            f"{img.path or 'image'}: no time axis (shape {img.shape}), so no time series"
        )
    if len(voxel) != 3:
        raise IndexError(f"voxel={voxel}: expected 3 indices (i, j, k), ints or slices")
    for s, a in enumerate(kinds.spatial):
        index[a] = voxel[s]
    index[kinds.time] = slice(None)
    data = np.asarray(img.slicecopy[tuple(index)], dtype=np.float64)
    kept = [a for a in range(img.ndim) if isinstance(index[a], slice)]
    values = np.moveaxis(data, kept.index(kinds.time), -1).reshape(
        -1, data.shape[kept.index(kinds.time)]
    )
    values = values.mean(axis=0)
    step, _ = time_step(img.nibabel_image, img.shape)
    n = np.arange(values.size, dtype=np.float64)
    if step:
        return n * step, values, "time (s)"
    return n, values, "volume"


def plot_timeseries(
    img: LazyImage, voxel: tuple[Any, Any, Any], *, ax: Any = None, **style: Any
) -> Any:
    """Plot the time series of voxel (i, j, k), or the mean over a box given by slices.

    Parameters
    ----------
    img : LazyImage
        An image with a time axis (any layout: 4D MINC stores it first).
    voxel : tuple of 3 ints or slices
        The voxel, e.g. ``(10, 12, 5)``, or a box, e.g. ``(slice(8, 12), slice(10, 14), 5)``,
        whose voxels are averaged per volume.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is made otherwise.
    **style
        Passed to ``ax.plot``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    times, values, xlabel = read_timeseries(img, voxel)
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 2.6), layout="constrained")
    else:
        fig = ax.figure
    ax.plot(times, values, **({"lw": 1.2} | style))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("value")
    where = ", ".join(_fmt(v) for v in voxel)
    box = any(isinstance(v, slice) for v in voxel)
    name = img.path.name if img.path else "in-memory image"
    ax.set_title(f"{name}: {'mean over voxels' if box else 'voxel'} ({where})", fontsize=10)
    ax.margins(x=0)
    return fig


def _fmt(v: Any) -> str:
    if isinstance(v, slice):
        return f"{'' if v.start is None else v.start}:{'' if v.stop is None else v.stop}"
    return str(int(v))
