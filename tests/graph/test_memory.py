"""In-memory images are wrapped as views, never copied; which paths give views, which copies.

* ``img.dataobj[idx]`` and ``img.slicer[idx]`` of an in-memory image: **views** of the array.
* ``img.slicecopy[idx]`` and ``img.data[idx].compute()``: **copies** that own their memory.
* ``lazyimg.load`` and building or slicing ``img.data``: no allocation of the array's size.

Allocations are measured with tracemalloc, which traces numpy's data buffers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from conftest import (
    assert_same,
    assert_world_positions_kept,
    counted,
    nib_array,
    peak_of,
    sample,
)

import lazyimg
from lazyimg.testing import write_scaled

SHAPE = (64, 64, 32, 8)  # 8 MiB of float64


@pytest.fixture
def arr() -> np.ndarray:
    return sample(SHAPE, "float64")


@pytest.fixture
def nib_img(arr: np.ndarray) -> Any:
    return nib.Nifti1Image(arr, np.diag([2.0, 2.0, 2.0, 1.0]))


def test_tracemalloc_sees_numpy(arr: np.ndarray) -> None:
    _, peak = peak_of(arr.copy)
    assert peak >= arr.nbytes


@pytest.mark.parametrize("dtype", [None, "float32"])
def test_load_and_graphs_allocate_nothing(nib_img: Any, arr: np.ndarray, dtype: Any) -> None:
    def build() -> Any:
        img = lazyimg.load(nib_img, dtype=dtype)
        views = [
            img.data,
            img.data[..., 1],
            img.data[::-1, 3:, None, 5],
            img.data[1:][:, 2],
            img.data.mean(axis=-1),
            img.slicer[2:40, ::2].data,
        ]
        return img, [(v.shape, v.chunks, v.name) for v in views], repr(img)

    (img, _, _), peak = peak_of(build)
    assert peak < arr.nbytes / 16, f"{peak} bytes allocated for an {arr.nbytes}-byte image"
    assert not img.is_proxy
    assert img.path is None


def test_slices_compute_without_copying_the_whole(nib_img: Any, arr: np.ndarray) -> None:
    """The graph slices the array itself (``da.from_array`` would copy all of it first)."""
    img = lazyimg.load(nib_img)
    img.data[0, 0, 0, 0].compute()  # warm up: dask imports modules on first compute
    got, peak = peak_of(lambda: img.data[..., 3].compute())
    assert_same(got, arr[..., 3])
    assert peak < 4 * arr[..., 3].nbytes


def test_dataobj_is_a_view(nib_img: Any, arr: np.ndarray) -> None:
    img = lazyimg.load(nib_img)
    assert img.dataobj is arr
    for index in [(Ellipsis, 1), (slice(None, None, -2), 3), (None, 0, Ellipsis)]:
        part = img.dataobj[index]
        assert np.shares_memory(part, arr)
        assert_same(part, arr[index])


def test_computed_and_copied_slices_are_copies(nib_img: Any, arr: np.ndarray) -> None:
    img = lazyimg.load(nib_img)
    for index in [(Ellipsis,), (Ellipsis, 1), (slice(None, None, -2), 3), (0, 0, 0, 0)]:
        computed = img.data[index].compute()
        copied = img.slicecopy[index]
        assert not np.shares_memory(computed, arr)
        assert not np.shares_memory(copied, arr)
        assert isinstance(copied, np.generic) or copied.flags.owndata  # a scalar for ints
        assert_same(computed, np.asarray(arr[index]))
        assert_same(copied, np.asarray(arr[index]))


def test_slicecopy_of_a_file_owns_its_memory(tmp_path: Path) -> None:
    path = write_scaled(tmp_path / "s.nii", sample((6, 5, 4, 3), "int16"), 2.0, 1.0)
    img = lazyimg.load(path)
    for index in [(Ellipsis,), (Ellipsis, 1), (2, slice(None, None, -1)), (1, 2, 3, 0)]:
        out = img.slicecopy[index]
        if isinstance(out, np.generic):  # an all-integer index gives a scalar, as in numpy
            assert out == nib_array(path)[index] and out.dtype.isnative
            continue
        assert out.flags.owndata and out.flags.writeable
        assert_same(out, nib_array(path)[index])


def test_slicer_in_memory_is_a_view(nib_img: Any, arr: np.ndarray) -> None:
    img = lazyimg.load(nib_img)
    sub = img.slicer[4:60:2, ::-1, 3:9]
    expected = nib_img.slicer[4:60:2, ::-1, 3:9]
    assert np.shares_memory(np.asarray(sub.dataobj), arr)
    assert not sub.is_proxy
    # nibabel misplaces [::-1] (start or 0); every voxel must stay where it was
    spatial = (slice(4, 60, 2), slice(None, None, -1), slice(3, 9))
    assert_world_positions_kept(img.affine, sub.affine, img.shape[:3], spatial)
    assert_same(np.asarray(sub.dataobj), np.asarray(expected.dataobj))
    assert_same(sub.data.compute(), np.asarray(expected.dataobj))
    assert not np.shares_memory(sub.slicecopy[...], arr)


def test_views_see_changes_to_the_array(nib_img: Any, arr: np.ndarray) -> None:
    """Wrapping is by reference: writes to the array show through every path afterwards."""
    img = lazyimg.load(nib_img)
    lazy = img.data[1, 2, 3]
    arr[1, 2, 3, :] = 42.0
    assert (lazy.compute() == 42.0).all()
    assert (img.slicecopy[1, 2, 3] == 42.0).all()


def test_cast_in_memory(nib_img: Any, arr: np.ndarray) -> None:
    img = lazyimg.load(nib_img, dtype="float32")
    assert img.dtype == np.float32
    assert_same(img.data[..., 2].compute(), arr[..., 2].astype("float32"))
    assert_same(img.slicecopy[..., 2], arr[..., 2].astype("float32"))


def test_proxy_over_bytes_is_read_once(tmp_path: Path) -> None:
    data = sample((5, 4, 3), "int16")
    raw = nib.Nifti1Image(data, np.eye(4)).to_bytes()
    img = lazyimg.load(nib.Nifti1Image.from_bytes(raw))
    assert not img.is_proxy
    assert_same(img.data.compute(), data)


# --------------------------------------------------------------------------- unproxy


@pytest.mark.parametrize("scaled", [False, True])
def test_unproxy(tmp_path: Path, scaled: bool) -> None:
    stored = sample((6, 5, 4, 3), "int16")
    path = write_scaled(tmp_path / "s.nii", stored, 2.5 if scaled else 1.0, 1.0 if scaled else 0)
    img = lazyimg.load(path, chunks={3: 1})
    assert img.is_proxy
    with counted() as box:
        mem = img.unproxy()
    assert box["n"] == img.nbytes // img.dtype.itemsize * 2  # read once, int16 on disk
    assert not mem.is_proxy
    assert mem.unproxy() is mem
    want = nib_array(path)
    assert mem.dtype == want.dtype
    assert mem.shape == want.shape
    assert mem.chunks == img.chunks
    np.testing.assert_array_equal(mem.affine, img.affine)
    assert_same(np.asarray(mem.dataobj), want)
    assert_same(mem.data.compute(), want)
    assert_same(mem.slicecopy[1:, ::-1], want[1:, ::-1])
    with counted() as box:
        mem.data[..., 1].compute()
        mem.slicecopy[2]
    assert box["n"] == 0  # nothing more from the file


def test_unproxy_of_a_slicer_view(tmp_path: Path) -> None:
    path = write_scaled(tmp_path / "s.nii", sample((6, 5, 4, 3), "int16"), 0.5, 0.0)
    sub = lazyimg.load(path).slicer[1:5, ::-1, :, 2]
    expected = nib.load(path).slicer[1:5, ::-1, :, 2]
    mem = sub.unproxy()
    assert not mem.is_proxy
    np.testing.assert_array_equal(mem.affine, sub.affine)  # nibabel's misplaces [::-1]
    assert_same(mem.data.compute(), np.asarray(expected.dataobj))
