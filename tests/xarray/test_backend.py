"""The xarray engine "lazyimg": open_dataset/open_dataarray/open_mfdataset, lazy indexing, chunks."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import dask
import dask.array
import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from conftest import assert_same, counted, nib_array, nibabel_file

import lazyimg
from lazyimg.testing import make_image, write_fmri, write_scaled
from lazyimg.xarray.backend import LazyImgBackendArray, LazyImgBackendEntrypoint


def test_engine_is_registered():
    assert "lazyimg" in xr.backends.list_engines()
    assert isinstance(xr.backends.list_engines()["lazyimg"], LazyImgBackendEntrypoint)


@pytest.mark.parametrize(
    "name",
    [
        "a.nii",
        "a.nii.gz",
        "a.img",
        "a.hdr",
        "a.mgh",
        "a.mgz",
        "a.mnc",
        "scan.PAR",
        "scan.REC",
        "x+orig.HEAD",
        "x+orig.BRIK",
        "x+orig.BRIK.gz",
        "UPPER.NII.GZ",
    ],
)
def test_guess_can_open(name: str):
    engine = LazyImgBackendEntrypoint()
    assert engine.guess_can_open(name)
    assert engine.guess_can_open(Path("/data") / name)


@pytest.mark.parametrize("obj", ["a.nc", "a.zarr", "a.tif", "nii", b"a.nii", 3, None])
def test_guess_cannot_open(obj: object):
    assert not LazyImgBackendEntrypoint().guess_can_open(obj)


def test_engine_is_guessed_from_the_suffix(fmri_path: Path):
    assert xr.open_dataarray(fmri_path).dims == ("i", "j", "k", "time")


def test_open_dataset_has_one_variable(fmri_path: Path):
    ds = xr.open_dataset(fmri_path, engine="lazyimg")
    assert list(ds.data_vars) == ["image"]
    assert ds.image.dims == ("i", "j", "k", "time")
    assert ds.image.attrs["format"] == "Nifti1Image"
    np.testing.assert_allclose(ds.time.values, np.arange(20) * 2.0)
    assert (
        list(xr.open_dataset(fmri_path, engine="lazyimg", drop_variables="image").data_vars) == []
    )


def test_engine_matches_open_dataarray(tmp_path: Path):
    path = write_fmri(tmp_path / "b.nii.gz", (6, 5, 4, 7), tr=0.8)
    via_engine = xr.open_dataarray(path, engine="lazyimg")
    direct = lazyimg.xarray.open_dataarray(path)
    xr.testing.assert_identical(via_engine.load(), direct.load())


# --------------------------------------------------------------------------- chunks=None


def test_no_chunks_is_lazy_and_reads_only_needed_bytes(fmri_path: Path):
    with counted() as n:
        da = xr.open_dataarray(fmri_path, engine="lazyimg")
        sub = da.isel(time=slice(2, 5)).isel(k=1)
    assert n["n"] == 0
    assert not isinstance(sub.variable._data, dask.array.Array)
    assert da.chunks is None
    with counted() as n:
        got = sub.values
    assert n["n"] == 32 * 32 * 2 * 3  # three 2 KiB slices
    assert_same(got, nib_array(fmri_path)[:, :, 1, 2:5])
    with counted() as n:
        one = da.isel(i=3, j=4, k=5, time=6).values
    assert n["n"] == 2
    assert_same(one, nib_array(fmri_path)[3, 4, 5, 6])


@pytest.mark.parametrize(
    "index",
    [
        {"time": -1},
        {"i": slice(None, None, -3), "time": slice(1, 9, 4)},
        {"j": [1, 5, 2], "time": [0, 19]},
        {"k": slice(6, 1, -2)},
        {"i": 0, "j": slice(3, 4)},
    ],
    ids=["neg-int", "steps", "lists", "neg-step", "int-and-slice"],
)
def test_no_chunks_indexing_matches_nibabel(fmri_path: Path, index: dict):
    da = xr.open_dataarray(fmri_path, engine="lazyimg")
    want = xr.DataArray(nib_array(fmri_path), dims=da.dims).isel(index).values
    assert_same(da.isel(index).values, want)


def test_minc_through_engine(tmp_path: Path):
    path = nibabel_file("minc2_4d.mnc")
    da = xr.open_dataarray(path, engine="lazyimg")
    want = np.moveaxis(nib_array(path), 0, -1)
    assert da.dims == ("i", "j", "k", "time")
    assert_same(da.values, want)
    assert_same(da.isel(time=1, i=slice(2, 7, 2)).values, want[2:7:2, ..., 1])
    assert_same(da.isel(k=3).values, want[:, :, 3])


def test_backend_array_pickles_without_handles(fmri_path: Path):
    da = xr.open_dataarray(fmri_path, engine="lazyimg")
    _ = da.isel(time=0).values  # the file is now open in this process's cache
    blob = pickle.dumps(da)
    assert len(blob) < 100_000
    back = pickle.loads(blob)
    assert_same(back.isel(time=4).values, nib_array(fmri_path)[..., 4])
    array = LazyImgBackendArray(lazyimg.load(fmri_path).source, (0, 1, 2, 3), None, False)
    again = pickle.loads(pickle.dumps(array))
    assert again.shape == (32, 32, 8, 20) and again.dtype == np.int16


def test_dtype_option(tmp_path: Path):
    stored = np.arange(24, dtype="int16").reshape(2, 3, 4)
    path = write_scaled(tmp_path / "s.nii", stored, 2.0, 1.0)
    scaled = xr.open_dataarray(path, engine="lazyimg")
    assert_same(scaled.values, nib_array(path))
    raw = xr.open_dataarray(path, engine="lazyimg", dtype="raw")
    assert_same(raw.values, stored)
    f32 = xr.open_dataarray(path, engine="lazyimg", dtype="float32", chunks={})
    assert f32.dtype == np.float32
    assert_same(f32.values, nib_array(path).astype("float32"))


def test_engine_refuses_objects():
    with pytest.raises(TypeError, match="by path"):
        LazyImgBackendEntrypoint().open_dataset(nib.Nifti1Image(np.zeros((2, 2, 2)), np.eye(4)))


# --------------------------------------------------------------------------- chunks={} / "auto"


@pytest.mark.parametrize("chunks", [{}, "auto"], ids=["empty-dict", "auto"])
def test_preferred_chunks_are_disk_aligned(fmri_path: Path, small_chunks, chunks):
    want = lazyimg.load(fmri_path).chunks
    assert len(want[-1]) > 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "chunks separate the stored chunks" warning
        da = xr.open_dataarray(fmri_path, engine="lazyimg", chunks=chunks)
    assert da.chunks == want
    assert da.encoding["preferred_chunks"] == dict(zip(da.dims, want, strict=True))
    assert_same(da.isel(time=slice(3, 12)).values, nib_array(fmri_path)[..., 3:12])


def test_chunked_graph_reads_only_its_chunks(fmri_path: Path, small_chunks):
    da = xr.open_dataarray(fmri_path, engine="lazyimg", chunks={})
    with counted() as n:
        first = da.data.blocks[..., 0].compute()
    assert n["n"] == first.nbytes


# --------------------------------------------------------------------------- open_mfdataset


def test_open_mfdataset_stacks_subjects(tmp_path: Path):
    paths = [
        write_fmri(tmp_path / f"sub-{n}.nii.gz", (8, 7, 5, 6), seed=n, tr=2.0) for n in range(3)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        ds = xr.open_mfdataset(paths, engine="lazyimg", combine="nested", concat_dim="subject")
    da = ds.image
    assert da.dims == ("subject", "i", "j", "k", "time")
    assert isinstance(da.data, dask.array.Array)
    assert_same(da.values, np.stack([nib_array(p) for p in paths]))
    mean = da.mean("subject").compute()
    np.testing.assert_allclose(mean.values, np.mean([nib_array(p) for p in paths], axis=0))
    ds.close()


def test_open_mfdataset_with_dask_graph_pickles(tmp_path: Path):
    paths = [make_image(tmp_path / f"s{n}.nii", np.full((3, 4, 5), n, "uint8")) for n in range(2)]
    ds = xr.open_mfdataset(paths, engine="lazyimg", combine="nested", concat_dim="subject")
    back = pickle.loads(pickle.dumps(ds))
    with dask.config.set(scheduler="sync"):
        assert int(back.image.sum()) == 3 * 4 * 5
