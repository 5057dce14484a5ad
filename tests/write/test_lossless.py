"""Lossless saving: stored values keep their scaling, dtype="stored", header fields through
zarr and netCDF, and dims NIfTI has no place for."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from conftest import assert_same, nib_array, sample

import lazyimg
from lazyimg.errors import DimensionError, LazyImgError, OutOfRangeError
from lazyimg.testing import write_fmri, write_scaled
from lazyimg.write import save

SLOPE, INTER = 0.5, 10.0


@pytest.fixture
def scaled(tmp_path: Path) -> Path:
    return write_scaled(tmp_path / "scaled.nii", sample((6, 5, 4, 3), "int16"), SLOPE, INTER)


def _stored(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj.get_unscaled())


def _assert_lossless(out: Path, src: Path) -> None:
    """Same stored type, same scale factors, same stored and scaled values as `src`."""
    a, b = nib.load(src), nib.load(out)
    assert b.get_data_dtype() == a.get_data_dtype()
    # nibabel moves the scale factors from the header into the proxy
    assert (b.dataobj.slope, b.dataobj.inter) == (a.dataobj.slope, a.dataobj.inter)
    assert_same(_stored(out), _stored(src))
    assert_same(nib_array(out), nib_array(src))


# --------------------------------------------------------------------------- raw and stored


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_raw_image_keeps_its_scaling(tmp_path: Path, scaled: Path, suffix: str):
    out = save(lazyimg.load(scaled, dtype="raw"), tmp_path / f"out{suffix}")
    _assert_lossless(out, scaled)


def test_raw_dataarray_keeps_its_scaling(tmp_path: Path, scaled: Path):
    da = lazyimg.open_dataarray(scaled, dtype="raw")
    assert (da.attrs["scl_slope"], da.attrs["scl_inter"]) == (SLOPE, INTER)
    _assert_lossless(save(da, tmp_path / "out.nii"), scaled)
    # a slice of it: the same scaled values as nibabel gives for that slice
    part = save(da.isel(time=slice(1, 3)), tmp_path / "part.nii")
    assert_same(nib_array(part), nib_array(scaled)[..., 1:3])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_stored_dtype_writes_the_original_type_and_scaling(
    tmp_path: Path, scaled: Path, suffix: str
):
    img = lazyimg.load(scaled)
    assert img.dtype == np.float64  # scaled values
    _assert_lossless(save(img, tmp_path / f"out{suffix}", dtype="stored"), scaled)


@pytest.mark.parametrize("store", ["zarr", "netcdf"])
def test_stored_dtype_through_a_store(tmp_path: Path, scaled: Path, store: str):
    da = lazyimg.open_dataarray(scaled)
    back = _through(da, tmp_path, store)
    _assert_lossless(save(back, tmp_path / "out.nii.gz", dtype="stored"), scaled)


def test_stored_dtype_refuses_values_it_cannot_hold(tmp_path: Path, scaled: Path):
    da = lazyimg.open_dataarray(scaled)
    with pytest.raises(OutOfRangeError, match="do not fit the stored type int16"):
        save(da * 1000, tmp_path / "big.nii", dtype="stored")
    nan = da.where(da.i != 0)
    with pytest.raises(OutOfRangeError, match="NaN"):
        save(nan, tmp_path / "nan.nii", dtype="stored")
    assert not list(tmp_path.glob("big*")) and not list(tmp_path.glob("nan*"))
    assert not list(tmp_path.glob(".*lazyimg-tmp"))


def test_stored_dtype_needs_a_source(tmp_path: Path):
    with pytest.raises(TypeError, match="dtype='stored'"):
        save(np.zeros((2, 3, 4), "f4"), tmp_path / "x.nii", dtype="stored")


def test_stored_dtype_rounds_processed_values_to_the_stored_steps(tmp_path: Path, scaled: Path):
    img = lazyimg.load(scaled)
    out = save(img.data + 0.2, tmp_path / "shifted.nii", affine=img.affine)  # float64, no scaling
    assert nib.load(out).get_data_dtype() == np.float64
    out = save(lazyimg.open_dataarray(scaled) + 0.2, tmp_path / "s.nii", dtype="stored")
    want = np.rint((nib_array(scaled) + 0.2 - INTER) / SLOPE) * SLOPE + INTER
    assert_same(nib_array(out), want)


# --------------------------------------------------------------------------- header fields


def _rich_nifti(path: Path) -> Path:
    img = nib.Nifti1Image(sample((6, 5, 4, 3), "int16"), np.diag([2.0, 2.0, 3.0, 1.0]))
    hdr = img.header
    hdr.set_xyzt_units("mm", "msec")
    hdr.set_zooms((2.0, 2.0, 3.0, 800.0))
    hdr["toffset"] = 400.0
    hdr.set_dim_info(freq=0, phase=1, slice=2)
    hdr.set_slice_duration(0.05)
    hdr["slice_code"] = 1
    hdr["slice_start"], hdr["slice_end"] = 0, 3
    hdr["cal_min"], hdr["cal_max"] = -100.0, 250.0
    hdr.set_intent("t test", (12.0,), name="tstat")
    hdr["descrip"] = b"a rich header"
    hdr["aux_file"] = b"aux"
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=4)
    hdr.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment extension"))
    hdr.extensions.append(nib.nifti1.Nifti1Extension(40, b'{"x": [1, 2, 3]}'))
    hdr.set_slope_inter(SLOPE, INTER)
    nib.save(img, path)
    return path


_FIELDS = (
    "dim_info",
    "intent_code",
    "intent_p1",
    "intent_name",
    "slice_start",
    "slice_end",
    "slice_code",
    "slice_duration",
    "xyzt_units",
    "cal_min",
    "cal_max",
    "toffset",
    "descrip",
    "aux_file",
    "qform_code",
    "sform_code",
    "pixdim",
    "dim",
)


def _assert_header_kept(out: Path, src: Path) -> None:
    a, b = nib.load(src).header, nib.load(out).header
    for field in _FIELDS:
        np.testing.assert_array_equal(b[field], a[field], err_msg=field)
    np.testing.assert_allclose(b.get_best_affine(), a.get_best_affine())
    assert [(e.get_code(), e.content) for e in b.extensions] == [
        (e.get_code(), e.content) for e in a.extensions
    ]


def _through(da: xr.DataArray, tmp_path: Path, store: str) -> xr.DataArray:
    ds = da.to_dataset()
    if store == "zarr":
        pytest.importorskip("zarr")
        ds.to_zarr(tmp_path / "x.zarr", consolidated=False)
        return xr.open_zarr(tmp_path / "x.zarr", consolidated=False)["image"]
    ds.to_netcdf(tmp_path / "x.nc", engine="h5netcdf")
    return xr.open_dataset(tmp_path / "x.nc", engine="h5netcdf", chunks={})["image"]


@pytest.mark.parametrize("store", ["zarr", "netcdf"])
@pytest.mark.parametrize("opener", ["to_xarray", "engine"])
def test_header_fields_and_extensions_survive_a_store(tmp_path: Path, store: str, opener: str):
    src = _rich_nifti(tmp_path / "rich.nii")
    if opener == "engine":
        da = xr.open_dataarray(src, engine="lazyimg", chunks={})
    else:
        da = lazyimg.load(src).to_xarray()
    back = _through(da, tmp_path, store)
    assert isinstance(back.attrs["nifti_header"], str)
    out = save(back, tmp_path / "out.nii.gz", dtype="stored")
    _assert_header_kept(out, src)
    _assert_lossless(out, src)
    plain = save(back, tmp_path / "plain.nii")  # float64 values, the same header fields
    assert (nib.load(plain).dataobj.slope, nib.load(plain).dataobj.inter) == (1.0, 0.0)
    assert_same(nib_array(plain), nib_array(src))


def test_damaged_header_attr_is_reported(tmp_path: Path):
    da = lazyimg.open_dataarray(write_fmri(tmp_path / "b.nii", (4, 4, 3, 2)))
    da.attrs["nifti_header"] = "{not json"
    with pytest.raises(LazyImgError, match="nifti_header"):
        save(da, tmp_path / "out.nii")


# --------------------------------------------------------------------------- dims


def test_unknown_dim_is_refused_unless_placed(tmp_path: Path):
    one = lazyimg.open_dataarray(write_fmri(tmp_path / "a.nii", (4, 4, 3, 2)))
    stacked = xr.concat([one, one + 1], dim="subject")
    with pytest.raises(DimensionError, match="subject") as err:
        save(stacked, tmp_path / "s.nii")
    assert isinstance(err.value, ValueError) and "dims=" in str(err.value)
    assert not (tmp_path / "s.nii").exists()
    out = save(stacked, tmp_path / "s.nii", dims={"subject": "u"})
    back = nib.load(out)
    assert back.shape == (4, 4, 3, 2, 2)
    assert_same(np.asarray(back.dataobj)[..., 1], np.asarray(stacked.isel(subject=1).values))


def test_bad_dims_mapping(tmp_path: Path):
    da = lazyimg.open_dataarray(write_fmri(tmp_path / "a.nii", (4, 4, 3, 2)))
    with pytest.raises(DimensionError, match="does not have"):
        save(da, tmp_path / "x.nii", dims={"subject": "u"})
    with pytest.raises(DimensionError, match="same name"):
        save(da, tmp_path / "x.nii", dims={"time": "k"})
