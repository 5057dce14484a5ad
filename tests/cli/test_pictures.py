"""Pictures as neuroimagers expect them: world orientation for every layout, only the needed bytes read."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation, io_orientation
from nibabel.testing import data_path

import lazyimg
from lazyimg._io import files as _files

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def shown(fig) -> list[np.ndarray]:
    """Each panel's picture as [across, up] (left to right, bottom to top)."""
    return [np.asarray(ax.images[0].get_array()).T for ax in fig.axes[:3]]


def expected_views(data: np.ndarray, affine: np.ndarray, point: tuple[int, int, int]):
    """nibabel's own RAS+ reorientation: the three planes through `point`, as [across, up]."""
    ornt = io_orientation(affine)
    arr = apply_orientation(data, ornt)
    c = [0, 0, 0]
    for a, (axis, flip) in enumerate(ornt):
        c[int(axis)] = point[a] if flip > 0 else data.shape[a] - 1 - point[a]
    return [arr[c[0], :, :], arr[:, c[1], :], arr[:, :, c[2]]]


AFFINES = {
    "ras": np.diag([2.0, 2.0, 3.0, 1.0]),
    "lps": np.diag([-2.0, -2.0, 3.0, 1.0]),
    "las-flipped-z": np.diag([-1.0, 1.0, -2.0, 1.0]),
    "permuted": np.array([[0, 0, -2.0, 10], [2.0, 0, 0, -5], [0, 3.0, 0, 1], [0, 0, 0, 1]]),
    "oblique": np.array([[1.9, 0.3, 0, 0], [-0.3, 1.9, 0.2, 0], [0, -0.2, 2.9, 0], [0, 0, 0, 1.0]]),
}


@pytest.mark.parametrize("layout", list(AFFINES))
def test_views_are_ras_like_nibabels_canonical(layout: str, tmp_path: Path) -> None:
    data = np.arange(7 * 9 * 5, dtype="int16").reshape(7, 9, 5)
    path = tmp_path / "img.nii"
    nib.save(nib.Nifti1Image(data, AFFINES[layout]), path)
    point = (2, 6, 1)
    fig = lazyimg.load(path).plot_slices(point)
    for got, want in zip(shown(fig), expected_views(data, AFFINES[layout], point), strict=True):
        np.testing.assert_array_equal(got, want)
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert [t.split()[0] for t in titles] == ["sagittal", "coronal", "axial"]
    world = AFFINES[layout] @ [*point, 1]
    for t, w in zip(titles, world[:3], strict=True):
        assert t.endswith(f"= {w:.1f} mm")
    assert ("oblique" in fig._suptitle.get_text()) == (layout == "oblique")
    letters = {tx.get_text() for ax in fig.axes[:3] for tx in ax.texts}
    assert letters == set("LRAPSI")


@pytest.mark.parametrize("name", ["minc1_4d.mnc", "minc2_4d.mnc", "minc2-4d-d.mnc"])
def test_4d_minc_views_are_ras_and_never_time(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    shutil.copy(os.path.join(data_path, name), path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = lazyimg.load(path)
        nib_img = nib.load(path)
    volume = np.asarray(nib_img.dataobj)[1]  # time first: (space, space, space)
    point = (3, 4, 5)
    fig = img.plot_slices(point, volume=1)
    for got, want in zip(shown(fig), expected_views(volume, nib_img.affine, point), strict=True):
        np.testing.assert_allclose(got, want)


def test_plot_reads_only_three_planes_of_a_4d_minc(tmp_path: Path) -> None:
    path = tmp_path / "minc.mnc"
    shutil.copy(os.path.join(data_path, "minc2-4d-d.mnc"), path)
    img = lazyimg.load(path)
    before = _files.bytes_read
    img.plot_slices(volume=3)
    read = _files.bytes_read - before
    assert read <= 3 * img.nbytes / img.shape[0]  # at most the volume shown, never all five


def test_small_image_titles_do_not_overlap(tmp_path: Path) -> None:
    path = tmp_path / "tiny.nii"
    nib.save(nib.Nifti1Image(np.ones((3, 4, 2, 2), "f4"), np.diag([3.0, 3, 3, 1])), path)
    fig = lazyimg.load(path).plot_slices()
    fig.canvas.draw()
    boxes = [ax.title.get_window_extent() for ax in fig.axes[:3]]
    boxes.append(fig._suptitle.get_window_extent())
    for n, a in enumerate(boxes):
        for b in boxes[n + 1 :]:
            assert not a.overlaps(b)


def test_bad_point_and_volume_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "img.nii"
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5, 2), "f4"), np.eye(4)), path)
    img = lazyimg.load(path)
    with pytest.raises(IndexError, match="volume=5"):
        img.plot_slices(volume=5)
    with pytest.raises(IndexError, match="within"):
        img.plot_slices((3, 0, 0))
    with pytest.raises(ValueError, match="no time axis"):
        lazyimg.load(nib.Nifti1Image(np.ones((3, 4, 5), "f4"), np.eye(4))).plot_timeseries(
            (0, 0, 0)
        )


def test_timeseries_of_a_voxel_reads_only_that_series(tmp_path: Path) -> None:
    from lazyimg.testing import write_fmri

    path = write_fmri(tmp_path / "bold.nii", (24, 20, 10, 40), tr=1.5)
    arr = np.asarray(nib.load(path).dataobj)
    img = lazyimg.load(path)
    before = _files.bytes_read
    fig = img.plot_timeseries((5, 6, 7))
    read = _files.bytes_read - before
    assert read <= 40 * 4096  # one short run per volume, far from the 3.8 MB file
    x, y = fig.axes[0].lines[0].get_data()
    np.testing.assert_allclose(y, arr[5, 6, 7])
    np.testing.assert_allclose(x, np.arange(40) * 1.5)
    assert fig.axes[0].get_xlabel() == "time (s)"
    fig = img.plot_timeseries((slice(2, 5), slice(3, 6), 7))
    np.testing.assert_allclose(fig.axes[0].lines[0].get_data()[1], arr[2:5, 3:6, 7].mean((0, 1)))


def test_timeseries_of_4d_minc_runs_over_time(tmp_path: Path) -> None:
    path = tmp_path / "minc.mnc"
    shutil.copy(os.path.join(data_path, "minc2-4d-d.mnc"), path)
    img = lazyimg.load(path)
    fig = img.plot_timeseries((1, 2, 3))
    x, y = fig.axes[0].lines[0].get_data()
    np.testing.assert_allclose(y, np.asarray(nib.load(path).dataobj)[:, 1, 2, 3])
    np.testing.assert_allclose(x, np.arange(5.0))


def test_docs_pictures_render(tmp_path: Path) -> None:
    import importlib.util

    script = Path(__file__).parents[2] / "docs" / "images" / "make_images.py"
    spec = importlib.util.spec_from_file_location("make_images", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.render(tmp_path)
    assert [p.name for p in written] == [
        "slices_nifti.png",
        "slices_minc_4d.png",
        "slices_oblique.png",
        "timeseries.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
