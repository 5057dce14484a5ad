"""lazyimg.xarray and the da.lazyimg accessor: dims, coordinates, attrs, laziness, storage."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import dask
import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from conftest import assert_same, copy_nibabel_file, counted, nib_array, nibabel_file

import lazyimg
from lazyimg.testing import make_image, write_fmri
from lazyimg.xarray import open_dataarray, to_xarray


def _nifti(
    path: Path,
    data: np.ndarray,
    *,
    zooms: tuple[float, ...] | None = None,
    units: tuple[str, str] = ("mm", "sec"),
    toffset: float = 0.0,
    affine: np.ndarray | None = None,
) -> Path:
    img = nib.Nifti1Image(data, np.diag([2.0, 3.0, 4.0, 1.0]) if affine is None else affine)
    img.header.set_xyzt_units(*units)
    if zooms is not None:
        img.header.set_zooms(zooms)
    img.header["toffset"] = toffset
    nib.save(img, path)
    return path


# --------------------------------------------------------------------------- dims and coords


@pytest.mark.parametrize(
    ("shape", "dims"),
    [
        ((4, 5), ("i", "j")),
        ((4, 5, 6), ("i", "j", "k")),
        ((4, 5, 6, 3), ("i", "j", "k", "time")),
        ((2, 3, 2, 2, 3), ("i", "j", "k", "time", "u")),
        ((2, 2, 2, 2, 2, 2, 2), ("i", "j", "k", "time", "u", "v", "w")),
    ],
    ids=lambda v: f"{len(v)}d" if isinstance(v[0], int) else "",
)
def test_dims_follow_nifti_axes(tmp_path: Path, shape: tuple[int, ...], dims: tuple[str, ...]):
    path = make_image(tmp_path / "a.nii", np.zeros(shape, "uint8"))
    da = open_dataarray(path)
    assert da.dims == dims
    assert da.name == "image"
    for d, n in zip(dims, shape, strict=True):
        if d != "time":
            np.testing.assert_array_equal(da[d].values, np.arange(n))


@pytest.mark.parametrize(
    ("units", "zoom", "toffset", "expect"),
    [
        ("sec", 2.5, 0.0, [0.0, 2.5, 5.0]),
        ("msec", 750.0, 0.0, [0.0, 0.75, 1.5]),
        ("usec", 2e6, 0.0, [0.0, 2.0, 4.0]),
        ("sec", 2.0, 10.0, [10.0, 12.0, 14.0]),
    ],
    ids=["sec", "msec", "usec", "toffset"],
)
def test_time_in_seconds(
    tmp_path: Path, units: str, zoom: float, toffset: float, expect: list[float]
):
    path = _nifti(
        tmp_path / "t.nii",
        np.zeros((2, 2, 2, 3), "int16"),
        zooms=(2.0, 3.0, 4.0, zoom),
        units=("mm", units),
        toffset=toffset,
    )
    da = open_dataarray(path)
    np.testing.assert_allclose(da.time.values, expect)
    assert da.time.attrs["units"] == "s"
    assert da.attrs["time_units"] == units


def test_time_without_units_is_positions(tmp_path: Path):
    path = _nifti(
        tmp_path / "t.nii",
        np.zeros((2, 2, 2, 4), "int16"),
        zooms=(2.0, 3.0, 4.0, 2.0),
        units=("mm", "unknown"),
    )
    da = open_dataarray(path)
    np.testing.assert_array_equal(da.time.values, np.arange(4))
    assert "units" not in da.time.attrs
    assert da.attrs["zooms"][3] == 2.0  # still recorded for a round trip


def test_mgh_tr_in_milliseconds(tmp_path: Path):
    img = nib.MGHImage(np.zeros((2, 3, 4, 3), "float32"), np.eye(4))
    img.header["tr"] = 1500.0
    path = tmp_path / "a.mgz"
    nib.save(img, path)
    da = open_dataarray(path)
    np.testing.assert_allclose(da.time.values, [0.0, 1.5, 3.0])
    assert da.attrs["time_units"] == "msec"
    assert da.attrs["format"] == "MGHImage"


@pytest.mark.parametrize(
    ("name", "times"),
    [
        ("phantom_EPI_asc_CLEAR_2_1.PAR", [0.0, 2.0, 4.0]),
        ("example4d+orig.HEAD", [0.0, 3.0, 6.0]),
        ("minc2-4d-d.mnc", [0.0, 1.0, 2.0, 3.0, 4.0]),
    ],
)
def test_time_of_other_formats(tmp_path: Path, name: str, times: list[float]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = copy_nibabel_file(name, tmp_path)
        da = open_dataarray(path)
    assert da.dims == ("i", "j", "k", "time")
    np.testing.assert_allclose(da.time.values, times)
    assert da.time.attrs["units"] == "s"


@pytest.mark.parametrize("name", ["minc1_4d.mnc", "minc2_4d.mnc", "minc2-4d-d.mnc"])
def test_minc_time_first_is_moved_last(name: str):
    da = open_dataarray(nibabel_file(name))
    assert da.dims == ("i", "j", "k", "time")
    want = np.moveaxis(nib_array(nibabel_file(name)), 0, -1)
    assert_same(da.values, want)
    assert_same(da.isel(time=1, j=3).values, want[:, 3, :, 1])


@pytest.mark.parametrize(
    ("suffix", "klass"),
    [
        (".nii", nib.Nifti1Image),
        (".nii.gz", nib.Nifti1Image),
        (".img", nib.Nifti1Pair),
        (".mgz", nib.MGHImage),
        (".hdr", nib.AnalyzeImage),
        ("2.nii", nib.Nifti2Image),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_same_image_same_dims_in_every_format(tmp_path: Path, suffix: str, klass: Any):
    data = np.arange(3 * 4 * 5 * 2, dtype="int16").reshape(3, 4, 5, 2)
    path = make_image(tmp_path / f"a{suffix}", data, klass=klass)
    da = open_dataarray(path)
    assert da.dims == ("i", "j", "k", "time")
    assert da.sizes == {"i": 3, "j": 4, "k": 5, "time": 2}
    assert_same(da.values, nib_array(path))


def test_to_xarray_of_memory_image_and_lazyimage_hook():
    arr = np.arange(24, dtype="float32").reshape(2, 3, 4)
    img = lazyimg.load(nib.Nifti1Image(arr, np.eye(4)))
    da = img.to_xarray()
    assert da.dims == ("i", "j", "k")
    assert "source" not in da.attrs and da.attrs["format"] == "Nifti1Image"
    assert_same(da.values, arr)


# --------------------------------------------------------------------------- attrs


def test_attrs_content(tmp_path: Path):
    img = nib.Nifti1Image(np.zeros((2, 3, 4, 2), "int16"), np.diag([2.0, 3.0, 4.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((2.0, 3.0, 4.0, 1.25))
    img.header["descrip"] = b"a test image"
    img.header.set_intent("t test", (12.0,), name="tmap")
    img.header.set_qform(img.affine, code=1)
    path = tmp_path / "a.nii"
    nib.save(img, path)
    attrs = open_dataarray(path).attrs
    assert np.reshape(attrs["affine"], (4, 4)).tolist() == nib.load(path).affine.tolist()
    assert attrs["zooms"] == [2.0, 3.0, 4.0, 1.25]
    assert (attrs["spatial_units"], attrs["time_units"]) == ("mm", "sec")
    assert (attrs["sform_code"], attrs["qform_code"]) == (2, 1)
    assert attrs["description"] == "a test image"
    assert (attrs["intent"], attrs["intent_params"], attrs["intent_name"]) == (
        "t test",
        [12.0],
        "tmap",
    )
    assert attrs["source"] == str(path) and attrs["format"] == "Nifti1Image"
    for value in attrs.values():  # only what netCDF and Zarr store
        assert isinstance(value, (str, int, float, list))
        if isinstance(value, list):
            assert all(isinstance(v, (int, float)) for v in value)


@pytest.fixture
def bold(tmp_path: Path) -> Path:
    return write_fmri(tmp_path / "bold.nii.gz", (10, 9, 6, 8), tr=1.5)


def test_to_netcdf_and_back(tmp_path: Path, bold: Path):
    da = open_dataarray(bold)
    out = tmp_path / "a.nc"
    da.to_netcdf(out, engine="h5netcdf")
    with xr.open_dataarray(out, engine="h5netcdf") as back:
        assert back.dims == da.dims
        assert_same(back.values, da.values)
        np.testing.assert_array_equal(back.time.values, da.time.values)
        assert back.time.attrs["units"] == "s"
        for key, value in da.attrs.items():
            np.testing.assert_array_equal(back.attrs[key], value)
        np.testing.assert_array_equal(back.lazyimg.affine, nib.load(bold).affine)


def test_to_zarr_and_back(tmp_path: Path, bold: Path):
    da = open_dataarray(bold).isel(i=slice(2, None, 2))
    out = tmp_path / "a.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's notes about consolidated metadata
        da.to_zarr(out, mode="w")
        back = xr.open_dataarray(out, engine="zarr")
    assert_same(back.values, da.values)
    assert back.attrs == da.attrs
    np.testing.assert_array_equal(back.lazyimg.affine, da.lazyimg.affine)
    np.testing.assert_array_equal(back.i.values, [2, 4, 6, 8])


# --------------------------------------------------------------------------- laziness


def test_open_reads_no_voxels_and_slices_read_only_their_bytes(fmri_path: Path, small_chunks):
    with counted() as n:
        da = open_dataarray(fmri_path)
        sub = da.isel(time=3)
    assert n["n"] == 0
    assert isinstance(sub.data, dask.array.Array)
    with counted() as n:
        got = sub.values
    assert n["n"] == 32 * 32 * 8 * 2
    assert_same(got, nib_array(fmri_path)[..., 3])
    with counted() as n:
        series = da.isel(i=4, j=5, k=6).values
    assert n["n"] <= 2 * 4096 * 20  # one small run per volume, at most
    assert_same(series, nib_array(fmri_path)[4, 5, 6])


def test_chunks_follow_disk_plan(fmri_path: Path, small_chunks):
    da = open_dataarray(fmri_path)
    assert da.chunks == lazyimg.load(fmri_path).chunks
    assert len(da.chunks[-1]) > 1 and all(len(c) == 1 for c in da.chunks[:-1])


def test_dataarray_pickles_small(fmri_path: Path):
    da = open_dataarray(fmri_path)
    blob = pickle.dumps(da)
    assert len(blob) < 200_000
    assert_same(pickle.loads(blob).isel(time=2).values, nib_array(fmri_path)[..., 2])


# --------------------------------------------------------------------------- accessor


def test_accessor_affine_follows_slices(bold: Path):
    da = open_dataarray(bold)
    affine = nib.load(bold).affine
    np.testing.assert_array_equal(da.lazyimg.affine, affine)
    sub = da.isel(i=slice(1, None, 3), j=slice(None, None, -1), k=2)
    want = nib.load(bold).slicer[1::3, 8::-1, 2:3].affine  # nibabel needs the explicit start
    np.testing.assert_allclose(sub.lazyimg.affine, want)
    assert sub.lazyimg.zooms == pytest.approx((6.0, 2.0, 2.0))


def test_accessor_rejects_uneven_coords(bold: Path):
    sub = open_dataarray(bold).isel(i=[0, 1, 5])
    with pytest.raises(ValueError, match="not evenly spaced"):
        _ = sub.lazyimg.affine


def test_accessor_without_affine_says_what_to_do():
    with pytest.raises(ValueError, match="affine"):
        _ = xr.DataArray(np.zeros((2, 2, 2)), dims=("i", "j", "k")).lazyimg.affine


def test_world_coords_are_lazy_and_right(bold: Path):
    da = open_dataarray(bold).isel(i=slice(2, 8, 2), k=slice(1, 4))
    world = da.lazyimg.world_coords()
    assert all(isinstance(world[c].data, dask.array.Array) for c in "xyz")
    assert world.x.dims == ("i", "j", "k")
    ijk = np.stack(np.meshgrid(da.i, da.j, da.k, indexing="ij"), axis=-1)
    want = nib.affines.apply_affine(nib.load(bold).affine, ijk)
    np.testing.assert_allclose(np.stack([world[c].values for c in "xyz"], axis=-1), want)
    with_coords = da.lazyimg.assign_world_coords()
    assert isinstance(with_coords.coords["z"].data, dask.array.Array)
    assert float(with_coords.z[0, 0, 0]) == pytest.approx(want[0, 0, 0, 2])


def test_world_coords_of_indexed_away_axis(bold: Path):
    da = open_dataarray(bold).isel(k=3, time=0)
    z = da.lazyimg.world_coords().z
    assert z.dims == ("i", "j")
    assert float(z[0, 0]) == pytest.approx(nib.load(bold).affine[2] @ [0, 0, 3, 1])


def test_accessor_is_stateless(bold: Path):
    da = open_dataarray(bold)
    before = da.lazyimg.affine
    da.attrs["affine"] = (np.eye(4) * 3).ravel().tolist()
    assert not np.array_equal(da.lazyimg.affine, before)


def test_open_dataarray_options(tmp_path: Path):
    path = make_image(tmp_path / "a.nii", np.arange(60, dtype="int16").reshape(3, 4, 5))
    da = open_dataarray(path, chunks={2: 2}, dtype="float32")
    assert da.dtype == np.float32
    assert da.chunks == ((3,), (4,), (2, 2, 1))
    assert_same(to_xarray(lazyimg.load(path, dtype="float32")).values, da.values)
