"""Rich display and plots."""

from __future__ import annotations

import os
import warnings

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

import lazyimg
from lazyimg._io import files as _files

FILES = [
    "anatomical.nii",
    "example4d.nii.gz",
    "example_nifti2.nii.gz",
    "test.mgz",
    "minc1_4d.mnc",
    "minc2-4d-d.mnc",
    "phantom_varscale.PAR",
    "scaled+tlrc.HEAD",
]


@pytest.mark.parametrize("name", FILES)
def test_html_repr_renders_for_every_format(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = lazyimg.load(os.path.join(data_path, name))
    html = img._repr_html_()
    assert "LazyImage" in html and name in html
    assert str(img.shape) in html
    assert ("last axis slowest" in html) == (img.disk_order == "F")
    assert "affine" in html and "on disk" in html
    assert html.count("<table") >= 2


def test_html_repr_in_memory() -> None:
    img = lazyimg.load(nib.Nifti1Image(np.zeros((3, 4, 5), "f4"), np.eye(4)))
    assert "in memory" in img._repr_html_()
    assert "in memory" in repr(img)


def test_plain_repr_names_the_essentials() -> None:
    img = lazyimg.load(os.path.join(data_path, "example4d.nii.gz"))
    text = repr(img)
    for part in ("example4d.nii.gz", "Nifti1Image", "(128, 96, 24, 2)", "int16", "disk_order=F"):
        assert part in text


def test_plot_slices_reads_only_three_slices(tmp_path: os.PathLike[str]) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    arr = np.arange(20 * 22 * 24 * 6, dtype="int16").reshape((20, 22, 24, 6), order="F")
    path = os.path.join(tmp_path, "img.nii")
    nib.save(nib.Nifti1Image(arr, np.eye(4)), path)
    img = lazyimg.load(path)
    before = _files.bytes_read
    fig = img.plot_slices((5, 6, 7), volume=2)
    read = _files.bytes_read - before
    one_volume = 20 * 22 * 24 * 2
    # an i-slice of an F-ordered volume touches every page of that volume, so lazyimg reads
    # it in one pass; the j- and k-slices stay within the same volume. Nothing else is read.
    assert read <= 3 * one_volume
    assert read < arr.nbytes / 2
    assert len(fig.axes) == 3
    image = fig.axes[2].images[0].get_array()
    assert np.array_equal(np.asarray(image).T, arr[:, :, 7, 2])
