"""A generated 4D MINC2 file (time stored first, its own TR, a flipped x axis) seen alike everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import lazyimg
from lazyimg._io.axes import array_axes, time_step
from lazyimg.cli import main

h5py = pytest.importorskip("h5py")

SHAPE = (6, 5, 7, 8)  # time, zspace, yspace, xspace
TR = 2.5
STEPS = {"zspace": 3.0, "yspace": 2.0, "xspace": -1.5}  # x runs right to left


def write_minc2(path: Path, data: np.ndarray) -> Path:
    """A MINC2 (HDF5) file laid out as minctools writes them: dimensions, image, image-min/max."""
    with h5py.File(path, "w") as f:
        root = f.create_group("minc-2.0")
        dims = root.create_group("dimensions")
        names = ("time", "zspace", "yspace", "xspace")
        t = dims.create_dataset("time", data=np.arange(SHAPE[0]) * TR)
        t.attrs.update(
            {"start": 0.0, "step": TR, "units": np.bytes_(b"s"), "spacing": np.bytes_(b"regular__")}
        )
        t.attrs["length"] = np.uint32(SHAPE[0])
        for n, name in enumerate(names[1:], start=1):
            d = dims.create_dataset(name, data=np.int32(0))
            cosines = np.zeros(3)
            cosines["xyz".index(name[0])] = 1.0
            d.attrs.update({"start": -10.0 * n, "step": STEPS[name], "units": np.bytes_(b"mm")})
            d.attrs.update({"direction_cosines": cosines, "spacing": np.bytes_(b"regular__")})
            d.attrs["length"] = np.uint32(SHAPE[n])
        image = root.create_group("image").create_group("0")
        ds = image.create_dataset("image", data=data)
        ds.attrs["dimorder"] = np.bytes_(b"time,zspace,yspace,xspace")
        ds.attrs["valid_range"] = np.array([data.min(), data.max()], dtype=np.float64)
        for which, fn in (("image-min", np.min), ("image-max", np.max)):
            v = image.create_dataset(which, data=fn(data, axis=(2, 3)).astype(np.float64))
            v.attrs["dimorder"] = np.bytes_(b"time,zspace")
    return path


@pytest.fixture(scope="module")
def minc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    path = write_minc2(tmp_path_factory.mktemp("minc") / "bold.mnc", data)
    return path, np.asarray(nib.load(path).dataobj)


def test_nibabel_reads_it_and_lazyimg_agrees(minc) -> None:
    path, values = minc
    nib_img = nib.load(path)
    assert isinstance(nib_img, nib.Minc2Image) and nib_img.shape == SHAPE
    kinds = array_axes(nib_img, 4)
    assert (kinds.spatial, kinds.time) == ((1, 2, 3), 0)
    assert time_step(nib_img, SHAPE) == (TR, "sec")
    np.testing.assert_array_equal(np.asarray(lazyimg.load(path)), values)


def test_info_xarray_and_repr_say_the_same_tr(minc, capsys) -> None:
    path, _ = minc
    assert main(["info", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)[0]
    assert info["tr_seconds"] == TR and info["axes"] == ["time", "i", "j", "k"]
    assert info["voxel_sizes"] == [3.0, 2.0, 1.5]
    img = lazyimg.load(path)
    np.testing.assert_allclose(img.to_xarray().time.values, np.arange(SHAPE[0]) * TR)
    assert ">2.5 s<" in img._repr_html_()


def test_reduce_over_time_and_over_space(minc, tmp_path: Path) -> None:
    path, values = minc
    out = tmp_path / "mean.nii"
    assert main(["reduce", str(path), "--op", "mean", "-o", str(out), "--quiet"]) == 0
    got = nib.load(out)
    np.testing.assert_allclose(np.asarray(got.dataobj), values.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(got.affine, nib.load(path).affine)
    out = tmp_path / "zmax.nii"
    assert main(["reduce", str(path), "--op", "max", "--axis", "1", "-o", str(out), "--quiet"]) == 0
    got = nib.load(out)  # NIfTI order (space, time), the reduced z one voxel thick
    expected = np.moveaxis(values.max(axis=1, keepdims=True), 0, -1)
    np.testing.assert_allclose(np.asarray(got.dataobj), expected)
    np.testing.assert_allclose(got.affine, nib.load(path).affine)


def test_pictures_and_series(minc) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nibabel.orientations import apply_orientation, io_orientation

    path, values = minc
    img = lazyimg.load(path)
    fig = img.plot_slices((1, 2, 3), volume=4)
    canon = apply_orientation(values[4], io_orientation(nib.load(path).affine))
    # x is flipped on disk: voxel index 3 of 8 is canonical index 4
    x, y, z = 7 - 3, 2, 1
    want = [canon[x], canon[:, y], canon[:, :, z]]
    for ax, plane in zip(fig.axes, want, strict=False):
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()).T, plane)
    fig = img.plot_timeseries((1, 2, 3))
    t, v = fig.axes[0].lines[0].get_data()
    np.testing.assert_allclose(v, values[:, 1, 2, 3])
    np.testing.assert_allclose(t, np.arange(SHAPE[0]) * TR)
    plt.close("all")
