"""Orthogonal views through a point, in world orientation, reading only the three planes.

:func:`plan_views` is pure: from the spatial affine it works out, for the
sagittal, coronal and axial views, which array axis is fixed, which array axes
run left-right and bottom-top on screen, whether they are flipped, and the
extent in millimetres, so the pictures are RAS+ (neurological: the subject's
left on the left) whatever the order of the axes on disk. Oblique affines are
shown in their nearest axis-aligned orientation (nibabel's ``io_orientation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from nibabel.affines import obliquity
from nibabel.orientations import io_orientation

from lazyimg._io.roles import array_axes

if TYPE_CHECKING:
    from lazyimg.image import LazyImage

#: Per world axis (x, y, z): the letters at its low and high ends.
_ENDS = (("L", "R"), ("P", "A"), ("I", "S"))
#: view name, world axis held fixed, world axes across and up the screen.
_VIEWS = (("sagittal", 0, 1, 2), ("coronal", 1, 0, 2), ("axial", 2, 0, 1))


@dataclass(frozen=True)
class View:
    """One panel: the plane through ``point`` that holds world axis ``world`` fixed.

    ``across``/``up`` are the spatial axes (0, 1, 2 of i, j, k) shown left to
    right and bottom to top; ``flip_*`` says whether their index runs against
    the world axis; ``extent`` is (left, right, bottom, top) in mm.
    """

    name: str
    world: int
    fixed: int
    across: int
    up: int
    flip_across: bool
    flip_up: bool
    extent: tuple[float, float, float, float]
    at_mm: tuple[float, float, float]


def plan_views(affine: np.ndarray, shape: tuple[int, ...], point: tuple[int, ...]) -> list[View]:
    """The sagittal, coronal and axial views of a volume of `shape` through voxel `point`.

    Examples
    --------
    >>> views = plan_views(np.diag([-2.0, 2.0, 3.0, 1.0]), (10, 12, 8), (5, 6, 4))
    >>> [(v.name, v.fixed, v.across, v.flip_across) for v in views]
    [('sagittal', 0, 1, False), ('coronal', 1, 0, True), ('axial', 2, 0, True)]
    >>> views[2].extent
    (-19.0, 1.0, -1.0, 23.0)
    """
    affine = np.asarray(affine, dtype=np.float64)
    ornt = io_orientation(affine)
    world_of = {int(ornt[a, 0]): a for a in range(3)}  # world axis -> array axis
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    centre = affine[:3, :3] @ np.asarray(point, dtype=np.float64) + affine[:3, 3]
    views = []
    for name, world, across_w, up_w in _VIEWS:
        spans = []
        for w in (across_w, up_w):
            a = world_of[w]
            sign = float(ornt[a, 1])
            ends = [centre[w] + sign * zooms[a] * (n - point[a]) for n in (0, shape[a] - 1)]
            spans += [float(min(ends) - zooms[a] / 2), float(max(ends) + zooms[a] / 2)]
        views.append(
            View(
                name,
                world,
                world_of[world],
                world_of[across_w],
                world_of[up_w],
                bool(ornt[world_of[across_w], 1] < 0),
                bool(ornt[world_of[up_w], 1] < 0),
                (spans[0], spans[1], spans[2], spans[3]),
                (float(centre[0]), float(centre[1]), float(centre[2])),
            )
        )
    return views


def screen_plane(plane: np.ndarray, view: View) -> np.ndarray:
    """A 2D plane (its two spatial axes in array order) as ``[across, up]``, flipped to world order."""
    out = plane if view.across < view.up else plane.T
    if view.flip_across:
        out = out[::-1, :]
    if view.flip_up:
        out = out[:, ::-1]
    return out


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        from lazyimg.errors import MissingDependencyError

        raise MissingDependencyError(
            'Pictures need matplotlib: pip install "lazyimg[plot]" (or pip install matplotlib).'
        ) from None
    return plt


def volume_index(img: LazyImage, volume: int) -> list[Any]:
    """An index of `img` that picks `volume` on its time axis and 0 on other non-spatial axes."""
    kinds = array_axes(img.nibabel_image, img.ndim, img.path)
    if len(kinds.spatial) < 3:
        raise ValueError(
            f"{img.path or 'image'}: pictures need three spatial axes; shape {img.shape} has "
            f"{len(kinds.spatial)}."
        )
    index: list[Any] = [0] * img.ndim
    if kinds.time is not None:
        n = img.shape[kinds.time]
        if not -n <= volume < n:
            raise IndexError(
                f"volume={volume}: {img.path or 'image'} has {n} volumes (0 to {n - 1})"
            )
        index[kinds.time] = volume
    return index


def plot_slices(
    img: LazyImage,
    point: tuple[int, int, int] | None = None,
    *,
    volume: int = 0,
    cmap: str = "gray",
    axes: Any = None,
) -> Any:
    """Sagittal, coronal and axial views through voxel `point`, reading only those planes.

    The views are in world orientation (RAS+, neurological convention: the
    subject's left on the left, anterior to the right in the sagittal view),
    scaled by the voxel sizes, with L/R, P/A and I/S labels, a crosshair at the
    point and each view's world coordinate in mm. An oblique affine is shown in
    its nearest axis-aligned orientation, and the title says so. Works for any
    axis layout: time is never a panel (4D MINC stores it first).

    Parameters
    ----------
    img : LazyImage
        An image with three spatial axes; other axes are fixed (see `volume`).
    point : tuple of 3 ints, optional
        Voxel (i, j, k) the views pass through; default: the centre.
    volume : int
        Index on the time axis (0 on any further axis).
    cmap : str
        Matplotlib colour map.
    axes : sequence of 3 matplotlib Axes, optional
        Where to draw; a new figure is made otherwise.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    kinds = array_axes(img.nibabel_image, img.ndim, img.path)
    base = volume_index(img, volume)
    shape3 = tuple(img.shape[a] for a in kinds.spatial)
    at = tuple(n // 2 for n in shape3) if point is None else tuple(int(p) for p in point)
    if len(at) != 3 or not all(0 <= p < n for p, n in zip(at, shape3, strict=True)):
        raise IndexError(f"point={point}: expected 3 voxel indices within {shape3}")
    views = plan_views(img.affine, shape3, at)
    planes = []
    for view in views:
        index = list(base)
        for s, a in enumerate(kinds.spatial):
            index[a] = at[s] if s == view.fixed else slice(None)
        plane = np.asarray(img.slicecopy[tuple(index)], dtype=np.float64)
        planes.append(screen_plane(plane, view))
    finite = np.concatenate([p[np.isfinite(p)] for p in planes])
    vmin, vmax = np.percentile(finite, (0.5, 99.5)) if finite.size else (0.0, 1.0)
    if axes is None:
        widths = [(v.extent[1] - v.extent[0]) / (v.extent[3] - v.extent[2]) for v in views]
        fig, axes = plt.subplots(
            1, 3, figsize=(10, 10 / sum(widths) + 0.9), width_ratios=widths,
            layout="constrained", facecolor="black",
        )  # fmt: skip
    else:
        fig = axes[0].figure
    for ax, view, plane in zip(axes, views, planes, strict=True):
        _draw(ax, view, plane, cmap=cmap, vmin=vmin, vmax=vmax)
    name = img.path.name if img.path else "in-memory image"
    title = f"{name} {img.shape}" + (f", volume {volume}" if kinds.time is not None else "")
    angle = float(np.degrees(np.max(obliquity(img.affine))))
    if angle > 0.01:
        title += f"\noblique ({angle:.1f}°): nearest axis-aligned orientation"
    fig.suptitle(title, color="white", fontsize=10)
    return fig


def _draw(ax: Any, view: View, plane: np.ndarray, **style: Any) -> None:
    ax.set_facecolor("black")
    ax.imshow(plane.T, origin="lower", extent=view.extent, interpolation="nearest", **style)
    across_w, up_w = {0: (1, 2), 1: (0, 2), 2: (0, 1)}[view.world]
    ax.axvline(view.at_mm[across_w], color="#3c9", lw=0.7)
    ax.axhline(view.at_mm[up_w], color="#3c9", lw=0.7)
    box = {"facecolor": "black", "edgecolor": "none", "alpha": 0.6, "pad": 1}
    label = {"color": "white", "fontsize": 9, "fontweight": "bold", "bbox": box}
    label["transform"] = ax.transAxes
    low, high = _ENDS[across_w]
    ax.text(0.02, 0.5, low, ha="left", va="center", **label)
    ax.text(0.98, 0.5, high, ha="right", va="center", **label)
    low, high = _ENDS[up_w]
    ax.text(0.5, 0.02, low, ha="center", va="bottom", **label)
    ax.text(0.5, 0.98, high, ha="center", va="top", **label)
    coordinate = "xyz"[view.world]
    ax.set_title(
        f"{view.name} {coordinate} = {view.at_mm[view.world]:.1f} mm", color="white", fontsize=9
    )
    ax.set_axis_off()
