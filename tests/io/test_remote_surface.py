"""URLs wherever lazyimg takes a path: xarray (open_dataarray, the engine, open_mfdataset), the CLI, plots."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from conftest import nib_array
from remote_servers import SECRET, http, s3, s3_endpoint  # noqa: F401 - fixtures

import lazyimg
from lazyimg._rangeserver import RangeServer
from lazyimg.cli import main
from lazyimg.testing import write_fmri


def test_open_dataarray_and_engine_over_s3(s3: dict, tmp_path: Path) -> None:
    path = write_fmri(tmp_path / "bold.nii.gz", (12, 10, 6, 8), tr=2.0)
    url = s3["put"](path, "sub-01/bold.nii.gz")
    da = lazyimg.open_dataarray(url, storage_options=s3["options"])
    assert da.sizes["time"] == 8 and float(da.time[1]) == 2.0
    assert da.attrs["source"] == url
    want = nib_array(path)
    assert np.array_equal(da.isel(time=3).values, want[..., 3])
    ds = xr.open_dataset(url, engine="lazyimg", storage_options=s3["options"], chunks={})
    var = next(iter(ds.data_vars.values()))
    assert np.allclose(var.mean("time").values, want.mean(-1))


def test_open_mfdataset_over_urls(http: RangeServer) -> None:
    paths = [write_fmri(http.root / f"run-{i}.nii", (8, 8, 4, 5), tr=2.0, seed=i) for i in (1, 2)]
    ds = xr.open_mfdataset(
        [http.url(p.name) for p in paths], engine="lazyimg", combine="nested", concat_dim="run"
    )
    var = next(iter(ds.data_vars.values()))
    assert var.sizes["run"] == 2
    assert np.array_equal(var.isel(run=1).values, nib_array(paths[1]))


def test_cli_info_url(s3: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_fmri(tmp_path / "bold.nii", (8, 8, 4, 5), tr=2.0)
    url = s3["put"](path)
    opts = s3["options"]
    args = ["info", url, "--json", "--storage-option", f"key={opts['key']}"]
    args += ["--storage-option", f"secret={opts['secret']}"]
    args += ["--storage-option", "client_kwargs=" + json.dumps(opts["client_kwargs"])]
    assert main(args) == 0
    out = capsys.readouterr().out
    info = json.loads(out)[0]
    assert info["path"] == url and info["shape"] == [8, 8, 4, 5]
    assert SECRET not in out


def test_plot_slices_of_a_remote_image(http: RangeServer) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    path = write_fmri(http.root / "bold.nii", (40, 40, 20, 30), tr=2.0)
    img = lazyimg.load(http.url("bold.nii"))
    http.reset()
    fig = img.plot_slices()
    assert fig is not None
    assert http.bytes_sent < path.stat().st_size / 4  # three slices, not the image


def test_nibabel_header_is_exact(http: RangeServer) -> None:
    path = write_fmri(http.root / "bold.nii.gz", (8, 8, 4, 5), tr=2.5)
    img = lazyimg.load(http.url("bold.nii.gz"))
    assert img.header.binaryblock == nib.load(path).header.binaryblock


def test_save_back_to_s3(s3: dict, tmp_path: Path) -> None:
    path = write_fmri(tmp_path / "bold.nii", (12, 10, 6, 8), tr=2.0)
    url = s3["put"](path)
    img = lazyimg.load(url, storage_options=s3["options"])
    out = f"s3://{s3['bucket']}/derivatives/mean.nii.gz"
    assert lazyimg.save(img.data.mean(axis=-1), out, storage_options=s3["options"]) == out
    back = lazyimg.load(out, storage_options=s3["options"])
    assert np.allclose(back.slicecopy[...], nib_array(path).mean(-1))

    def boom(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("a chunk failed")

    failing = img.data.map_blocks(boom, dtype=img.dtype)
    bad = f"s3://{s3['bucket']}/derivatives/broken.nii"
    with pytest.raises(RuntimeError, match="a chunk failed"):
        lazyimg.save(failing, bad, storage_options=s3["options"])
    listed = s3["client"].list_objects_v2(Bucket=s3["bucket"], Prefix="derivatives/")
    assert [o["Key"] for o in listed.get("Contents", [])] == ["derivatives/mean.nii.gz"]
