"""``img.slicer`` keeps every voxel where it was in the world (issue 11, item 6).

The oracle is geometry, not nibabel: for any selection, the sliced image's
affine applied to its voxel indices gives the world positions the original
affine gave to the same voxels. nibabel's ``slice_affine`` takes ``start or 0``
and so misplaces negative starts and steps; lazyimg is right there, and the
slicer and the xarray path give the same affine for the same selection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same, assert_world_positions_kept, slices
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lazyimg

SHAPE = (5, 4, 3, 2)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _affine() -> np.ndarray:
    rot = np.array([[0.0, -1.0, 0.0], [0.8, 0.0, 0.6], [-0.6, 0.0, 0.8]])
    aff = np.eye(4)
    aff[:3, :3] = rot * [2.0, 3.0, 2.5]
    aff[:3, 3] = [-40.0, 17.5, 3.25]
    return aff


def _images(tmp_path: Path) -> dict[str, lazyimg.LazyImage]:
    data = np.arange(np.prod(SHAPE), dtype="int16").reshape(SHAPE)
    nii = nib.Nifti1Image(data, _affine())
    path = tmp_path / "geom.nii"
    nib.save(nii, path)
    return {"file": lazyimg.load(path), "memory": lazyimg.load(nii)}


def _world(affine: np.ndarray, index: np.ndarray) -> np.ndarray:
    """World positions of voxel indices `index` (..., 3)."""
    return index @ affine[:3, :3].T + affine[:3, 3]


def _check_positions(img: lazyimg.LazyImage, spatial: tuple[slice, ...]) -> None:
    if 0 in np.empty(img.shape[:3])[spatial].shape:
        with pytest.raises(IndexError, match="Empty"):
            img.slicer[spatial]
        return
    sub = img.slicer[spatial]
    assert_world_positions_kept(img.affine, sub.affine, img.shape[:3], spatial)
    assert_same(sub.slicecopy[...], np.asarray(img.dataobj)[spatial])


@SETTINGS
@given(data=st.data())
def test_every_voxel_keeps_its_world_position(tmp_path: Path, data: Any) -> None:
    images = _images(tmp_path)
    spatial = tuple(data.draw(slices(n)) for n in SHAPE[:3])
    for img in images.values():
        _check_positions(img, spatial)
        # a slice of a slice, too
        if 0 not in np.empty(SHAPE[:3])[spatial].shape:
            again = tuple(data.draw(slices(n)) for n in img.slicer[spatial].shape[:3])
            _check_positions(img.slicer[spatial], again)


@SETTINGS
@given(data=st.data())
def test_slicer_and_xarray_agree(tmp_path: Path, data: Any) -> None:
    img = _images(tmp_path)["file"]
    spatial = tuple(data.draw(slices(n)) for n in SHAPE[:3])
    if 0 in np.empty(SHAPE[:3])[spatial].shape:
        return
    via_xarray = img.to_xarray().isel(dict(zip(("i", "j", "k"), spatial, strict=True)))
    np.testing.assert_allclose(
        via_xarray.lazyimg.affine, img.slicer[spatial].affine, rtol=0, atol=1e-9
    )


@pytest.mark.parametrize(
    "spatial", [(slice(-3, None),), (slice(None, None, -1),), (slice(None), slice(-2, 0, -1))]
)
def test_nibabel_misplaces_negative_starts_and_steps(
    tmp_path: Path, spatial: tuple[slice, ...]
) -> None:
    """A documented difference: nibabel's slicer moves the first voxel; lazyimg's does not."""
    img = _images(tmp_path)["file"]
    nib_affine = nib.load(img.path).slicer[spatial].affine
    ours = img.slicer[spatial].affine
    assert not np.allclose(nib_affine, ours)
    full = spatial + (slice(None),) * (3 - len(spatial))
    first = tuple(range(n)[s][0] for n, s in zip(SHAPE[:3], full, strict=True))
    np.testing.assert_allclose(ours[:3, 3], _world(img.affine, np.array(first)))
    assert not np.allclose(nib_affine[:3, 3], _world(img.affine, np.array(first)))


def test_positive_slices_match_nibabel(tmp_path: Path) -> None:
    """Where nibabel is right (non-negative starts, positive steps) the affines agree."""
    img = _images(tmp_path)["file"]
    for spatial in [(slice(1, 4, 2), slice(None), slice(2, None)), (slice(None, None, 3),)]:
        want = nib.load(img.path).slicer[spatial].affine
        np.testing.assert_allclose(img.slicer[spatial].affine, want)
