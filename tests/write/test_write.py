"""lazyimg.write.save: exact round trips, streaming, atomic replacement, bounded memory."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from conftest import assert_same, copy_nibabel_file, nib_array, sample
from dask.delayed import Delayed

import lazyimg
from lazyimg._write.atomic import RegionWriter
from lazyimg.testing import write_fmri, write_scaled
from lazyimg.write import save
from lazyimg.xarray import open_dataarray


def _make(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Save `data` as NIfTI with exactly its dtype and byte order."""
    hdr = nib.Nifti1Header(endianness=">" if data.dtype.byteorder == ">" else "<")
    hdr.set_data_dtype(data.dtype)
    nib.save(nib.Nifti1Image(data, affine, hdr), path)
    return path


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if "lazyimg-tmp" in p.name)


def _geometry(path: Path) -> tuple[Any, ...]:
    img = nib.load(path)
    hdr = img.header
    return (
        img.affine.tolist(),
        [float(z) for z in hdr.get_zooms()],
        hdr.get_xyzt_units(),
        float(hdr["toffset"]) if "toffset" in hdr else None,
    )


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "dtype",
    [
        "uint8",
        "int8",
        "int16",
        "uint16",
        "int32",
        "int64",
        "float32",
        "float64",
        "complex64",
        ">f4",
    ],
)
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_lazyimage_round_trip_is_exact(tmp_path: Path, dtype: str, suffix: str, small_chunks):
    data = sample((9, 8, 7, 5), dtype, seed=3)
    src = _make(tmp_path / f"in{suffix}", data, np.diag([1.5, 2.0, 2.5, 1.0]))
    via_image = save(lazyimg.load(src), tmp_path / f"out{suffix}")
    assert via_image == tmp_path / f"out{suffix}"
    twice_reversed = (
        open_dataarray(src).isel(time=slice(None, None, -1)).isel(time=slice(None, None, -1))
    )
    via_xarray = save(twice_reversed.transpose("time", ...), tmp_path / f"xr{suffix}")
    for out in (via_image, via_xarray):
        assert_same(nib_array(out), nib_array(src))
        assert nib.load(out).get_data_dtype().str == nib.load(src).get_data_dtype().str
        assert _geometry(out) == _geometry(src)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "name",
    [
        "minc2_4d.mnc",
        "minc1_1_scale.mnc",
        "phantom_varscale.PAR",
        "example4d+orig.HEAD",
        "scaled+tlrc.HEAD",
        "test.mgz",
        "example4d.nii.gz",
        "standard.nii.gz",
    ],
)
def test_every_format_to_nifti(tmp_path: Path, name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = copy_nibabel_file(name, tmp_path)
        img = lazyimg.load(src)
        da_ = img.to_xarray()
        out = save(img, tmp_path / "out.nii")
    back = nib.load(out)
    assert_same(np.asarray(back.dataobj), da_.values)  # MINC comes back time last
    # NIfTI-1 stores the affine in float32: exact for NIfTI sources, rounded for others
    np.testing.assert_allclose(back.affine, nib.load(src).affine, rtol=1e-6, atol=1e-5)
    assert [float(z) for z in back.header.get_zooms()[:3]] == da_.attrs["zooms"][:3]
    if "time" in da_.dims and da_.time.attrs.get("units") == "s":
        unit = back.header.get_xyzt_units()[1]
        factor = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}[unit]
        tr = float(back.header.get_zooms()[3]) * factor
        np.testing.assert_allclose(
            tr, float(da_.time[1] - da_.time[0]) if da_.time.size > 1 else tr
        )


def test_scaled_input_is_written_as_its_values(tmp_path: Path):
    src = write_scaled(tmp_path / "s.nii", sample((4, 5, 6), "int16"), 0.5, 10.0)
    back = nib.load(save(lazyimg.load(src), tmp_path / "o.nii"))
    assert_same(np.asarray(back.dataobj), nib_array(src))
    assert back.header.get_slope_inter() == (None, None)


def test_header_fields_survive(tmp_path: Path):
    img = nib.Nifti1Image(sample((4, 5, 6, 3), "float32"), np.diag([2.0, 2.0, 3.0, 1.0]))
    img.header.set_xyzt_units("mm", "msec")
    img.header.set_zooms((2.0, 2.0, 3.0, 800.0))
    img.header["toffset"] = 400.0
    img.header["descrip"] = b"statistics"
    img.header.set_intent("z score")
    img.header.set_dim_info(0, 1, 2)
    img.header.set_qform(img.affine, code=1)
    src = tmp_path / "in.nii"
    nib.save(img, src)
    out = save(lazyimg.load(src), tmp_path / "out.nii.gz")
    a, b = nib.load(src).header, nib.load(out).header
    for field in ("descrip", "intent_code", "dim_info", "sform_code", "qform_code", "xyzt_units"):
        assert a[field] == b[field], field
    assert _geometry(out) == _geometry(src)


# --------------------------------------------------------------------------- from xarray


@pytest.fixture
def bold(tmp_path: Path) -> Path:
    return write_fmri(tmp_path / "bold.nii.gz", (12, 10, 8, 16), tr=2.5)


def test_zscore_through_xarray_round_trip(tmp_path: Path, bold: Path, small_chunks):
    da_ = open_dataarray(bold, dtype="float32")
    z = ((da_ - da_.mean("time")) / da_.std("time")).astype("float32")
    out = z.lazyimg.to_nifti(tmp_path / "z.nii.gz")
    back = nib.load(out)
    data = nib.load(bold).get_fdata(dtype=np.float32)
    want = (data - data.mean(-1, keepdims=True)) / data.std(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(back.dataobj), want, rtol=1e-4, atol=1e-4)
    assert back.get_data_dtype() == np.float32
    assert _geometry(out) == _geometry(bold)


def test_slices_keep_geometry(tmp_path: Path, bold: Path):
    da_ = open_dataarray(bold)
    sub = da_.isel(i=slice(1, 11, 3), j=slice(None, None, -1), time=slice(2, None, 2))
    back = nib.load(save(sub, tmp_path / "sub.nii"))
    assert_same(np.asarray(back.dataobj), nib_array(bold)[1:11:3, ::-1, :, 2::2])
    np.testing.assert_allclose(back.affine, sub.lazyimg.affine)
    assert [float(z) for z in back.header.get_zooms()] == [6.0, 2.0, 2.0, 5.0]
    assert float(back.header["toffset"]) == 5.0


def test_reduced_axis_comes_back_with_length_one(tmp_path: Path, bold: Path):
    da_ = open_dataarray(bold).isel(k=3)
    back = nib.load(save(da_, tmp_path / "slice.nii"))
    assert back.shape == (12, 10, 1, 16)
    assert_same(np.asarray(back.dataobj)[:, :, 0], nib_array(bold)[:, :, 3])
    np.testing.assert_allclose(back.affine, nib.load(bold).slicer[:, :, 3:4].affine)


def test_mean_over_time_is_3d(tmp_path: Path, bold: Path):
    mean = open_dataarray(bold).mean("time")
    back = nib.load(save(mean, tmp_path / "mean.nii"))
    assert back.shape == (12, 10, 8)
    np.testing.assert_allclose(np.asarray(back.dataobj), nib_array(bold).mean(-1))
    np.testing.assert_array_equal(back.affine, nib.load(bold).affine)


def test_transposed_dataarray_is_put_back_in_order(tmp_path: Path, bold: Path):
    da_ = open_dataarray(bold).transpose("time", "k", "j", "i")
    back = nib.load(save(da_, tmp_path / "t.nii"))
    assert_same(np.asarray(back.dataobj), nib_array(bold))


@pytest.mark.parametrize("store", ["zarr", "h5netcdf"])
def test_engine_to_store_and_back_to_nifti(tmp_path: Path, bold: Path, store: str):
    lazy = xr.open_dataarray(bold, engine="lazyimg")  # no dask: lazily indexed
    assert_same(nib_array(save(lazy, tmp_path / "a.nii")), nib_array(bold))
    where = tmp_path / ("a.zarr" if store == "zarr" else "a.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's notes about consolidated metadata
        if store == "zarr":
            lazy.to_zarr(where, mode="w")
        else:
            lazy.to_netcdf(where, engine="h5netcdf")
        stored = xr.open_dataarray(where, engine=store, chunks={})
    out = save(stored, tmp_path / "b.nii.gz")
    assert_same(nib_array(out), nib_array(bold))
    assert _geometry(out) == _geometry(bold)
    stored.close()


def test_numpy_and_dask_inputs(tmp_path: Path):
    arr = sample((5, 6, 7), "float64")
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    back = nib.load(save(arr, tmp_path / "n.nii", affine=affine, dtype="float32"))
    assert_same(np.asarray(back.dataobj), arr.astype("float32"))
    np.testing.assert_array_equal(back.affine, affine)
    mask = da.from_array(arr > 0, chunks=(2, 3, 4))
    back = nib.load(save(mask, tmp_path / "m.nii.gz"))
    assert back.get_data_dtype() == np.uint8
    assert_same(np.asarray(back.dataobj), (arr > 0).astype("uint8"))
    np.testing.assert_array_equal(back.affine, np.eye(4))


@pytest.mark.parametrize(
    "chunks",
    [(5, 6, 7, 2), (2, 6, 7, 9), (5, 3, 2, 9), (2, 3, 4, 4), (1, 1, 1, 9)],
    ids=["slabs", "split-i", "split-jk", "split-all", "voxels"],
)
def test_any_chunking_writes_the_right_bytes(tmp_path: Path, chunks: tuple[int, ...]):
    arr = sample((5, 6, 7, 9), "int32")
    x = da.from_array(arr, chunks=chunks)
    assert_same(nib_array(save(x, tmp_path / "c.nii")), arr)


def test_header_template(tmp_path: Path):
    hdr = nib.Nifti1Header()
    hdr["descrip"] = b"from a template"
    hdr.set_xyzt_units("micron", "sec")
    out = save(np.zeros((2, 3, 4), "int16"), tmp_path / "h.nii", header=hdr)
    back = nib.load(out).header
    assert back["descrip"] == b"from a template"
    assert back.get_xyzt_units()[0] == "micron"


# --------------------------------------------------------------------------- streaming mechanics


def test_gzip_output_is_one_valid_stream(tmp_path: Path, bold: Path):
    out = save(lazyimg.load(bold), tmp_path / "o.nii.gz", compresslevel=1)
    raw = gzip.decompress(out.read_bytes())
    header = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(raw))
    assert len(raw) == int(header.get_data_offset()) + np.prod(header.get_data_shape()) * 2
    if shutil.which("gzip"):
        assert subprocess.run(["gzip", "-t", str(out)]).returncode == 0


def test_compute_false_returns_delayed(tmp_path: Path, bold: Path):
    target = tmp_path / "later.nii"
    job = save(lazyimg.load(bold), target, compute=False)
    assert isinstance(job, Delayed)
    assert not target.exists() and _leftovers(tmp_path) == []
    assert Path(job.compute()) == target
    assert_same(nib_array(target), nib_array(bold))
    assert _leftovers(tmp_path) == []


def test_region_writer_is_path_only(tmp_path: Path):
    path = tmp_path / "raw.bin"
    path.write_bytes(b"\0" * (16 + 2 * 3 * 4 * 2))
    writer = RegionWriter(str(path), 16, (2, 3, 4), np.dtype("int16"))
    clone = pickle.loads(pickle.dumps(writer))
    assert clone == writer and len(pickle.dumps(writer)) < 300
    clone[:, 1:3, 2:4] = np.ones((2, 2, 2), "int16")
    got = np.frombuffer(path.read_bytes()[16:], "int16").reshape((2, 3, 4), order="F")
    want = np.zeros((2, 3, 4), "int16")
    want[:, 1:3, 2:4] = 1
    assert_same(got, want)


def _failing(x: da.Array, exc: type[BaseException], at: int) -> da.Array:
    def boom(block: np.ndarray, block_info: Any = None) -> np.ndarray:
        if block_info[0]["chunk-location"][-1] == at:
            raise exc("stop here")
        return block

    return x.map_blocks(boom, dtype=x.dtype)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("compute", [True, False], ids=["compute", "delayed"])
def test_interrupted_save_leaves_nothing(
    tmp_path: Path, exc: type[BaseException], suffix: str, compute: bool
):
    target = tmp_path / f"result{suffix}"
    target.write_bytes(b"precious")
    x = _failing(da.ones((6, 5, 4, 8), chunks=(6, 5, 4, 1)), exc, at=5)
    with pytest.raises(exc, match="stop here"):
        if compute:
            save(x, target)
        else:
            save(x, target, compute=False).compute()
    assert target.read_bytes() == b"precious"
    assert _leftovers(tmp_path) == []


def test_failure_in_the_middle_of_a_new_file(tmp_path: Path):
    x = _failing(da.zeros((4, 4, 4, 6), chunks=(4, 4, 4, 2)), OSError, at=2)
    with pytest.raises(OSError, match="stop here"):
        save(x, tmp_path / "new.nii.gz")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- errors


def test_bad_arguments(tmp_path: Path):
    arr = np.zeros((2, 2, 2), "float32")
    with pytest.raises(ValueError, match=r"\.nii"):
        save(arr, tmp_path / "a.mnc")
    with pytest.raises(ValueError, match="compresslevel"):
        save(arr, tmp_path / "a.nii.gz", compresslevel=12)
    with pytest.raises(TypeError, match="NIfTI cannot store"):
        save(arr, tmp_path / "a.nii", dtype="float16")
    with pytest.raises(ValueError, match="7 axes"):
        save(np.zeros((1,) * 8), tmp_path / "a.nii")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save(arr, tmp_path / "missing" / "a.nii")
    with pytest.raises(TypeError, match="cannot save"):
        save("not an image", tmp_path / "a.nii")
    with pytest.raises(ValueError, match="affine"):
        save(xr.DataArray(arr, dims=("i", "j", "k")), tmp_path / "a.nii")
    assert list(tmp_path.iterdir()) == []


def test_uneven_coordinates_are_refused(tmp_path: Path, bold: Path):
    with pytest.raises(ValueError, match="not evenly spaced"):
        save(open_dataarray(bold).isel(i=[0, 2, 3]), tmp_path / "a.nii")


# --------------------------------------------------------------------------- memory


_MEMORY_SCRIPT = """
import sys, dask, dask.array as da, numpy as np
from lazyimg.write import save

def hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024

dask.config.set({"array.chunk-size": "4MiB", "num_workers": 2})
shape = (64, 64, 32, 256)  # 256 MiB of float64, 64 chunks of 4 MiB
x = %(source)s
x = (x - 1.0) * 2.0  # a computed result, never whole in memory
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = int(open("/proc/self/statm").read().split()[1]) * 4096
save(x, sys.argv[1], compresslevel=1)
print((hwm() - base) / 2**20)
"""


_NOISE = "da.random.default_rng(0).standard_normal(shape, chunks=%s)"


@pytest.mark.parametrize(
    ("suffix", "source"),
    [
        (".nii", _NOISE % "(64, 64, 32, 2)"),
        (".nii", _NOISE % "(4, 16, 32, 256)"),  # chunks across all of time: written in place
        (".nii.gz", "da.ones(shape, chunks=(64, 64, 32, 2)) * da.arange(256.0)"),
    ],
    ids=["slabs", "time-whole", "gzip"],
)
def test_peak_memory_is_bounded(tmp_path: Path, suffix: str, source: str):
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure peak memory")
    out = tmp_path / f"big{suffix}"
    script = textwrap.dedent(_MEMORY_SCRIPT % {"source": source})
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", script, str(out)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    peak_mib = float(done.stdout.strip().splitlines()[-1])
    assert out.exists() and os.path.getsize(out) > 0
    # the result is 256 MiB; a few 4-16 MiB chunks and windows in flight stay far below it
    assert peak_mib < 100, f"peak memory grew by {peak_mib:.0f} MiB while saving 256 MiB"
