"""Chunks by dimension name, and preferred chunks that accept any split of the slowest axis."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr

import lazyimg
from lazyimg.errors import DimensionError, LazyImgError
from tests.conftest import nibabel_file


def test_load_chunks_by_name(fmri_path: Path):
    img = lazyimg.load(fmri_path, chunks={"time": 6})
    assert img.chunks == ((32,), (32,), (8,), (6, 6, 6, 2))
    mixed = lazyimg.load(fmri_path, chunks={"time": 5, 2: 4})
    assert mixed.chunks == ((32,), (32,), (4, 4), (5, 5, 5, 5))


def test_open_dataarray_chunks_by_name(fmri_path: Path):
    da = lazyimg.open_dataarray(fmri_path, chunks={"time": 7, "k": 4})
    assert dict(zip(da.dims, da.chunks, strict=True)) == {
        "i": (32,),
        "j": (32,),
        "k": (4, 4),
        "time": (7, 7, 6),
    }
    np.testing.assert_array_equal(da.values, np.asarray(nib.load(fmri_path).dataobj))


def test_minc_time_name_maps_to_first_axis():
    path = nibabel_file("minc2_4d.mnc")
    img = lazyimg.load(path, chunks={"time": 1})
    assert img.chunks[0] == (1,) * img.shape[0]  # MINC stores time first
    da = lazyimg.open_dataarray(path, chunks={"time": 1})
    assert da.dims[-1] == "time" and da.chunks[-1] == (1,) * img.shape[0]
    np.testing.assert_array_equal(np.moveaxis(da.values, -1, 0), np.asarray(nib.load(path).dataobj))


@pytest.mark.parametrize(
    ("chunks", "bad"), [({"x": 3}, "'x'"), ({"time": 3, 3: 4}, "axis 3")], ids=["unknown", "twice"]
)
def test_bad_names_are_refused(fmri_path: Path, chunks, bad):
    with pytest.raises(DimensionError, match=bad) as err:
        lazyimg.load(fmri_path, chunks=chunks)
    assert isinstance(err.value, (LazyImgError, ValueError))
    assert str(fmri_path) in str(err.value)


def test_names_for_in_memory_image():
    nii = nib.Nifti1Image(np.zeros((4, 5, 6), "f4"), np.eye(4))
    assert lazyimg.load(nii, chunks={"k": 2}).chunks == ((4,), (5,), (2, 2, 2))
    with pytest.raises(DimensionError, match="'time'"):
        lazyimg.load(nii, chunks={"time": 2})


# --------------------------------------------------------------------------- preferred chunks


@pytest.mark.parametrize("time", [1, 3, 7, 10, (5, 2, 13)], ids=str)
def test_any_split_of_time_gives_no_warning(fmri_path: Path, small_chunks, time):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        da = xr.open_dataarray(fmri_path, engine="lazyimg", chunks={"time": time})
    want = time if isinstance(time, tuple) else None
    if want is not None:
        assert da.chunks[-1] == want
    else:
        assert set(da.chunks[-1][:-1]) == {time}
    assert da.chunks[:3] == ((32,), (32,), (8,))
    np.testing.assert_array_equal(da.values, np.asarray(nib.load(fmri_path).dataobj))


@pytest.mark.parametrize("chunks", [{}, "auto"], ids=["empty-dict", "auto"])
def test_default_chunks_stay_disk_aligned(fmri_path: Path, small_chunks, chunks):
    want = lazyimg.load(fmri_path).chunks
    assert len(want[-1]) > 1  # the plan does split time here
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        da = xr.open_dataarray(fmri_path, engine="lazyimg", chunks=chunks)
    assert da.chunks == want


def test_splitting_a_fast_axis_still_warns(fmri_path: Path, small_chunks):
    with pytest.warns(UserWarning, match="separate the stored chunks"):
        xr.open_dataarray(fmri_path, engine="lazyimg", chunks={"i": 8})


def test_open_mfdataset_default_chunks_are_slabs(tmp_path: Path, small_chunks):
    from lazyimg.testing import write_fmri

    paths = [write_fmri(tmp_path / f"sub-0{n}_bold.nii", (32, 32, 8, 20), seed=n) for n in (1, 2)]
    want = lazyimg.load(paths[0]).chunks
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_mfdataset(paths, engine="lazyimg", combine="nested", concat_dim="subject")
    assert ds["image"].chunks[1:] == want


def test_preferred_chunks_pickle_and_survive_zarr(fmri_path: Path, tmp_path: Path, small_chunks):
    pytest.importorskip("zarr")
    ds = xr.open_dataset(fmri_path, engine="lazyimg")
    pc = ds["image"].encoding["preferred_chunks"]
    again = pickle.loads(pickle.dumps(pc))
    assert again == pc and again.get("time") == 1 and again.get("i") == pc["i"]
    ds.chunk({"time": 5}).to_zarr(tmp_path / "x.zarr", consolidated=False)
    back = xr.open_zarr(tmp_path / "x.zarr", consolidated=False)
    np.testing.assert_array_equal(back["image"].values, np.asarray(nib.load(fmri_path).dataobj))


def test_minc_time_first_splits_without_warning():
    path = nibabel_file("minc2_4d.mnc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        da = xr.open_dataarray(path, engine="lazyimg", chunks={"time": 1})
    assert da.dims[-1] == "time" and da.chunks[-1] == (1,) * da.sizes["time"]
    np.testing.assert_array_equal(np.moveaxis(da.values, -1, 0), np.asarray(nib.load(path).dataobj))
