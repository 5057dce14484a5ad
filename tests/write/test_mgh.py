"""MGH/MGZ as output formats: exact round trips against nibabel, scan parameters kept."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same, copy_nibabel_file, nib_array, sample

import lazyimg
from lazyimg.errors import DimensionError
from lazyimg.testing import write_fmri, write_scaled
from lazyimg.write import save


def _mgh(path: Path, data: np.ndarray, affine: np.ndarray, **scan: float) -> Path:
    img = nib.MGHImage(data, affine)
    for key, value in scan.items():
        img.header[key] = value
    nib.save(img, path)
    return path


def _affine() -> np.ndarray:
    affine = np.array([[-1.0, 0, 0.2, 20], [0, 0, 1.5, -10], [0, -1.2, 0, 30], [0, 0, 0, 1]])
    return affine


def _assert_same_mgh(out: Path, src: Path) -> None:
    a, b = nib.load(src), nib.load(out)
    assert b.get_data_dtype() == a.get_data_dtype()
    assert tuple(b.shape) == tuple(a.shape)
    assert_same(nib_array(out), nib_array(src))
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-5)
    for key in ("tr", "flip_angle", "te", "ti", "fov", "delta", "Mdc", "Pxyz_c"):
        np.testing.assert_allclose(b.header[key], a.header[key], rtol=1e-6, err_msg=key)


@pytest.mark.parametrize("suffix", [".mgh", ".mgz"])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "float32"])
def test_mgh_round_trip_is_exact(tmp_path: Path, suffix: str, dtype: str):
    src = _mgh(
        tmp_path / f"in{suffix}",
        sample((20, 16, 12, 5), dtype),
        _affine(),
        tr=2300.0,
        flip_angle=0.15,
        te=2.9,
        ti=900.0,
        fov=256.0,
    )
    img = lazyimg.load(src, chunks={"time": 2, "k": 5})  # written region by region
    out = save(img, tmp_path / f"out{suffix}")
    _assert_same_mgh(out, src)
    if suffix == ".mgz":
        with gzip.open(out) as f:  # one ordinary gzip stream
            f.read()


@pytest.mark.parametrize("store", ["dataarray", "zarr"])
def test_mgh_through_xarray(tmp_path: Path, store: str):
    src = _mgh(tmp_path / "in.mgz", sample((6, 5, 4, 3), "float32"), _affine(), tr=1500.0, te=30.0)
    da = lazyimg.open_dataarray(src)
    assert da.attrs["mgh_scan"][:3] == [1500.0, 0.0, 30.0]
    if store == "zarr":
        pytest.importorskip("zarr")
        da.to_dataset().to_zarr(tmp_path / "x.zarr", consolidated=False)
        import xarray as xr

        da = xr.open_zarr(tmp_path / "x.zarr", consolidated=False)["image"]
    _assert_same_mgh(save(da, tmp_path / "out.mgz"), src)


def test_nifti_to_mgz_keeps_geometry_and_tr(tmp_path: Path):
    src = write_fmri(tmp_path / "bold.nii.gz", (8, 7, 6, 4), tr=2.5)
    out = save(lazyimg.load(src), tmp_path / "bold.mgz")
    back = nib.load(out)
    assert back.get_data_dtype().name == "int16"  # big-endian on disk, as MGH is
    np.testing.assert_array_equal(np.asarray(back.dataobj), nib_array(src))
    np.testing.assert_allclose(back.affine, nib.load(src).affine, atol=1e-5)
    assert float(back.header["tr"]) == 2500.0


def test_shipped_mgz_round_trip(tmp_path: Path):
    src = copy_nibabel_file("test.mgz", tmp_path)
    _assert_same_mgh(save(lazyimg.load(src), tmp_path / "out.mgz"), src)


def test_mgh_refusals(tmp_path: Path):
    f64 = nib.Nifti1Image(np.zeros((3, 4, 5), "f8"), np.eye(4))
    with pytest.raises(TypeError, match="MGH cannot store float64"):
        save(lazyimg.load(f64), tmp_path / "x.mgz")
    assert not (tmp_path / "x.mgz").exists()
    with pytest.raises(DimensionError, match="at most 4 axes"):
        save(np.zeros((2, 2, 2, 2, 2), "f4"), tmp_path / "x.mgh")
    scaled = write_scaled(tmp_path / "s.nii", sample((3, 4, 5), "int16"), 0.5, 10.0)
    with pytest.raises(TypeError, match="no scale factors"):
        save(lazyimg.load(scaled, dtype="raw"), tmp_path / "x.mgz")


def test_failed_mgz_save_leaves_nothing(tmp_path: Path):
    import dask.array as da

    def boom(block: np.ndarray) -> np.ndarray:
        if block[0, 0, 0, 0] == 2:
            raise RuntimeError("boom")
        return block

    x = da.arange(4, chunks=1, dtype="float32")[None, None, None, :] * da.ones(
        (3, 4, 5, 1), chunks=(3, 4, 5, 1), dtype="float32"
    )
    x = x.map_blocks(boom, dtype="float32")
    (tmp_path / "old.mgz").write_bytes(b"keep me")
    with pytest.raises(RuntimeError, match="boom"):
        save(x, tmp_path / "old.mgz")
    assert (tmp_path / "old.mgz").read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.mgz"]
