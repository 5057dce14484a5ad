"""One notion of time: 4D MINC (time stored first) is labelled alike by the CLI, repr, plots and xarray."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

import lazyimg
from lazyimg._io.axes import array_axes, time_step

MINC_4D = ["minc1_4d.mnc", "minc2_4d.mnc", "minc2-4d-d.mnc"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lazyimg", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def quiet_load(path: str | Path) -> lazyimg.LazyImage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lazyimg.load(path)


@pytest.mark.parametrize("name", MINC_4D)
def test_minc_time_axis_is_the_first(name: str) -> None:
    nib_img = nib.load(os.path.join(data_path, name))
    kinds = array_axes(nib_img, 4)
    assert (kinds.spatial, kinds.time, kinds.dims) == ((1, 2, 3), 0, ("i", "j", "k", "time"))
    assert time_step(nib_img, nib_img.shape) == (1.0, "sec")


@pytest.mark.parametrize("name", MINC_4D)
def test_info_repr_and_xarray_agree_on_time(name: str) -> None:
    path = os.path.join(data_path, name)
    proc = run("info", "--json", path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)[0]
    img = quiet_load(path)
    step = float(np.diff(img.to_xarray().time.values)[0])
    assert info["tr_seconds"] == step == 1.0
    assert info["time_axis"] == 0 and info["spatial_axes"] == [1, 2, 3]
    assert info["axes"] == ["time", "i", "j", "k"]
    minc_zooms = nib.load(path).dataobj.minc_file.get_zooms()
    assert info["voxel_sizes"] == [float(z) for z in minc_zooms[1:]]
    html = img._repr_html_()
    assert "TR</th>" in html and ">1 s<" in html
    text = run("info", path).stdout
    assert "TR           1 s" in text and "time, i, j, k" in text


@pytest.mark.parametrize("name", MINC_4D)
def test_reduce_time_of_minc_averages_time(name: str, tmp_path: Path) -> None:
    out = tmp_path / "mean.nii"
    proc = run("reduce", os.path.join(data_path, name), "--op", "mean", "-o", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    nib_img = nib.load(os.path.join(data_path, name))
    expected = np.asarray(nib_img.dataobj, dtype=np.float64).mean(axis=0)
    got = nib.load(out)
    assert got.shape == nib_img.shape[1:]
    np.testing.assert_allclose(np.asarray(got.dataobj), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.affine, nib_img.affine)


def test_nifti_time_step_in_every_place(tmp_path: Path) -> None:
    from lazyimg.testing import write_fmri

    path = write_fmri(tmp_path / "bold.nii", (6, 5, 4, 7), tr=0.8)
    info = json.loads(run("info", "--json", str(path)).stdout)[0]
    img = lazyimg.load(path)
    assert info["tr_seconds"] == pytest.approx(0.8)
    assert float(np.diff(img.to_xarray().time.values)[0]) == pytest.approx(0.8)
    assert "800 ms" in img._repr_html_()
    assert info["voxel_sizes"] == [2.0, 2.0, 2.0]  # TR apart from the voxel sizes


@pytest.mark.parametrize("name", MINC_4D)
def test_plot_slices_of_minc_shows_space_only(name: str, tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    path = tmp_path / name
    shutil.copy(os.path.join(data_path, name), path)
    img = quiet_load(path)
    fig = img.plot_slices(volume=1)
    data = np.asarray(nib.load(path).dataobj)[1]  # volume 1: (z, y, x) in this file
    shown = sorted(float(np.asarray(ax.images[0].get_array()).sum()) for ax in fig.axes[:3])
    c = [n // 2 for n in data.shape]
    planes = [data[c[0]], data[:, c[1]], data[:, :, c[2]]]
    assert shown == pytest.approx(sorted(float(p.sum()) for p in planes))
    import matplotlib.pyplot as plt

    plt.close(fig)
