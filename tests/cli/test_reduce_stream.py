"""``lazyimg reduce`` streams slab by slab (no dask) and gives what the dask path and nibabel give."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_minc_generated import SHAPE as MINC_SHAPE
from test_minc_generated import write_minc2

import lazyimg
import lazyimg._reduce as red
from lazyimg.cli import reduce_file
from lazyimg.testing import fmri_like

OPS = ["mean", "std", "tsnr", "min", "max"]


def _expected(data: np.ndarray, op: str, axis: int) -> np.ndarray:
    data = data.astype(np.float64)
    if op != "tsnr":
        return getattr(data, op)(axis=axis)
    mean, std = data.mean(axis), data.std(axis)
    return np.divide(mean, std, out=np.zeros_like(mean), where=std > 0)


def _dask(img: lazyimg.LazyImage, op: str, axis: int) -> np.ndarray:
    x = img.data.astype(np.float64)
    if op != "tsnr":
        return np.asarray(getattr(x, op)(axis=axis).compute())
    mean, std = (v.compute() for v in (x.mean(axis), x.std(axis)))
    return np.divide(mean, std, out=np.zeros_like(mean), where=std > 0)


@pytest.fixture(params=[".nii", ".nii.gz", "scaled.nii.gz", "offset.nii", ".mgz"])
def image(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    kind = request.param
    data = fmri_like((7, 6, 5, 23), "int16", 1)
    if kind == "offset.nii":  # values far from zero with a small spread: no cancellation
        data = (data - data.mean() + 30000).astype(np.int16)
    klass = nib.MGHImage if kind == ".mgz" else nib.Nifti1Image  # big-endian, a footer
    img = klass(data, np.diag([2.0, 3.0, 4.0, 1.0]))
    if kind.startswith("scaled"):
        img.header.set_slope_inter(0.37, -12.5)
    path = tmp_path / ("bold" + kind[kind.index(".") :])
    nib.save(img, path)
    return path


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("axis", ["time", "0", "2"])
def test_several_slabs_match_nibabel_and_dask(
    image: Path, tmp_path: Path, op: str, axis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(red, "SLAB_BYTES", 7 * 6 * 5 * 4 * 3)  # 3 volumes a step: 8 slabs
    out = tmp_path / "out.nii.gz"
    reduce_file(str(image), op, axis, str(out), progress=False)
    ax = 3 if axis == "time" else int(axis)
    values = np.asarray(nib.load(image).dataobj)  # scaled, as get_fdata
    want = _expected(values, op, ax)
    got = np.asarray(nib.load(out).dataobj)
    if ax != 3:  # a reduced spatial axis stays, one voxel thick
        want = np.expand_dims(want, ax)
    assert got.shape == want.shape
    kept = values.dtype.newbyteorder("=")  # min and max keep the values' type, native order
    assert got.dtype.newbyteorder("=") == (kept if op in ("min", "max") else np.float32)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-4)
    via_dask = _dask(lazyimg.load(image), op, ax)
    np.testing.assert_allclose(got, via_dask.reshape(got.shape), rtol=2e-6, atol=1e-4)


def test_minc_time_first_in_several_slabs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = np.random.default_rng(3).random(MINC_SHAPE, dtype=np.float32)
    path = write_minc2(tmp_path / "bold.mnc", data)
    values = np.asarray(nib.load(path).dataobj)  # per-slice scaling applied
    monkeypatch.setattr(red, "SLAB_BYTES", int(np.prod(MINC_SHAPE[1:])) * 4 * 2)
    for op in ("tsnr", "max"):
        out = tmp_path / f"{op}.nii"
        reduce_file(str(path), op, "time", str(out), progress=False)
        want = _expected(values, op, 0)  # space first, as the array stores it
        np.testing.assert_allclose(np.asarray(nib.load(out).dataobj), want, rtol=1e-5)


def test_progress_line_for_several_slabs(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(red, "SLAB_BYTES", 7 * 6 * 5 * 4 * 10)
    reduce_file(str(image), "mean", "time", str(tmp_path / "m.nii"), progress=True)
    err = capsys.readouterr().err
    assert "reduce: 10/23" in err and err.rstrip().endswith("reduce: 23/23")


def test_one_slab_reads_the_image_once(tmp_path: Path) -> None:
    path = tmp_path / "bold.nii"
    nib.save(nib.Nifti1Image(fmri_like((6, 5, 4, 9), "int16", 0), np.eye(4)), path)
    with lazyimg.count_bytes() as counted:
        reduce_file(str(path), "tsnr", "time", str(tmp_path / "t.nii"), progress=False)
    assert counted.bytes == 6 * 5 * 4 * 9 * 2


@pytest.mark.parametrize("early", [True, False], ids=["decoded-ahead", "streamed"])
def test_gzip_decoded_ahead_or_streamed_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, early: bool
) -> None:
    """A small .nii.gz is decompressed while reduce starts up; with it or without, same values."""
    import lazyimg._earlygz as earlygz

    data = fmri_like((7, 6, 5, 23), "int16", 2)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(2.5, 100.0)
    path = tmp_path / "bold.nii.gz"
    nib.save(img, path)
    if not early:
        monkeypatch.setattr(earlygz, "MAX_BYTES", 0)
    monkeypatch.setattr(red, "SLAB_BYTES", 7 * 6 * 5 * 4 * 5)
    with lazyimg.count_bytes() as counted:
        reduce_file(str(path), "tsnr", "time", str(tmp_path / "t.nii"), progress=False)
    assert (counted.bytes == 0) == early  # decoded ahead: lazyimg's reader never ran
    want = _expected(np.asarray(nib.load(path).dataobj), "tsnr", 3)
    np.testing.assert_allclose(nib.load(tmp_path / "t.nii").get_fdata(), want, rtol=2e-6)


def test_damaged_gzip_is_reported_not_decoded_ahead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lazyimg.cli import main

    path = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(fmri_like((7, 6, 5, 9), "int16", 0), np.eye(4)), path)
    raw = bytearray(path.read_bytes())
    raw[-8] ^= 0xFF  # the CRC-32 in the trailer
    path.write_bytes(bytes(raw))
    out = tmp_path / "m.nii"
    assert main(["reduce", str(path), "--op", "mean", "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bold.nii.gz" in err and "Traceback" not in err
    assert not out.exists()


def test_output_that_is_not_nifti_is_refused_before_reading(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lazyimg.cli import main

    with lazyimg.count_bytes() as counted:
        code = main(["reduce", str(image), "--op", "mean", "-o", str(tmp_path / "m.txt")])
    assert code == 2 and counted.bytes == 0
    assert "name the output .nii or .nii.gz" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [image]


@pytest.mark.parametrize("dtype", ["int16", "uint16", "int32", "uint8", "float32", "float64"])
@pytest.mark.parametrize("op", ["mean", "std", "tsnr"])
def test_stored_values_summed_then_scaled_at_full_range(
    tmp_path: Path, dtype: str, op: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sums of stored values (scaled once at the end) neither overflow nor lose the sign of a slope."""
    monkeypatch.setattr(red, "SLAB_BYTES", 4 * 3 * 2 * np.dtype(dtype).itemsize * 3)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(np.float32)
    rng = np.random.default_rng(3)
    data = rng.uniform(-1, 1, (4, 3, 2, 10)) * float(info.max) / 2 + float(info.max) / 2
    data[0, 0, 0] = [info.max, info.min] * 5  # the widest differences from the first value
    data = np.clip(data, info.min, info.max).astype(dtype)
    img = nib.Nifti1Image(data, np.eye(4))
    if np.dtype(dtype).kind in "iu":
        img.header.set_slope_inter(-0.5, 7.0)
    path, out = tmp_path / "x.nii", tmp_path / "out.nii"
    nib.save(img, path)
    reduce_file(str(path), op, "time", str(out), progress=False)
    want = _expected(nib.load(path).get_fdata(), op, 3)
    np.testing.assert_allclose(nib.load(out).get_fdata(), want, rtol=2e-6, atol=1e-6)


def test_read_into_a_buffer_checks_it(tmp_path: Path) -> None:
    from lazyimg._io.read import read
    from lazyimg._plan.index import full_selection

    path = tmp_path / "x.nii"
    nib.save(nib.Nifti1Image(np.arange(24, dtype="int16").reshape(2, 3, 4), np.eye(4)), path)
    source = lazyimg.load(path).source
    buf = np.empty((2, 3, 4), "int16", order="F")
    assert read(source, full_selection((2, 3, 4)), raw=True, out=buf) is buf
    assert buf.tolist() == np.arange(24).reshape(2, 3, 4).tolist()
    for wrong in (np.empty((2, 3, 4), "int16"), np.empty((2, 3, 4), "int32", order="F")):
        with pytest.raises(ValueError, match="out:"):
            read(source, full_selection((2, 3, 4)), raw=True, out=wrong)


@pytest.mark.parametrize("slope", [np.inf, np.nan, 0.0, 1e30, -3.5])
@pytest.mark.parametrize("op", ["mean", "std", "tsnr"])
def test_header_scale_factors_as_nibabel_reads_them(tmp_path: Path, slope: float, op: str) -> None:
    """scl_slope of inf, NaN or 0 means no scaling to nibabel; huge and negative ones scale."""
    data = np.array([1, -2, 3, -4, 30000, -32768], "int16").reshape(1, 2, 1, 3)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header["scl_slope"], img.header["scl_inter"] = slope, 0.5
    path, out = tmp_path / "x.nii", tmp_path / "out.nii"
    nib.save(img, path)
    reduce_file(str(path), op, "time", str(out), progress=False)
    want = _expected(nib.load(path).get_fdata(), op, 3)
    np.testing.assert_allclose(nib.load(out).get_fdata(), want, rtol=2e-6)
