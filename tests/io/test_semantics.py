"""Contract edges of issue 11: file lists, ECAT, wrapped proxies, scalars, raw values, pickling.

Each test is the regression test of one item; the oracle is nibabel
(``np.asarray(img.dataobj)``) on files nibabel ships or on files made in
``tmp_path``.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same, copy_nibabel_file, counted, nibabel_file

import lazyimg
from lazyimg._display import html_repr
from lazyimg._display.text import human_bytes
from lazyimg.cli import describe_file
from lazyimg.testing import write_scaled


def test_relative_path_lists_each_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 17: a relative path gave ``Source.files`` the image twice, doubling sizes."""
    shutil.copy(nibabel_file("anatomical.nii"), tmp_path / "anat.nii")
    copy_nibabel_file("phantom_varscale.PAR", tmp_path)
    monkeypatch.chdir(tmp_path)
    size = os.path.getsize("anat.nii")
    for name in ("anat.nii", "./anat.nii", str(tmp_path / "anat.nii")):
        img = lazyimg.load(name)
        assert img.source is not None
        assert [f.path for f in img.source.files] == [str(tmp_path / "anat.nii")]
        assert describe_file(Path(name))["size_on_disk"] == size
    img = lazyimg.load("anat.nii")
    assert f"{human_bytes(size)} on disk" in repr(img)
    assert f"{human_bytes(size)} on disk" in html_repr(img)
    par = lazyimg.load("phantom_varscale.PAR")
    assert par.source is not None
    assert sorted(Path(f.path).name for f in par.source.files) == [
        "phantom_varscale.PAR",
        "phantom_varscale.REC",
    ]


def test_ecat_reads_like_nibabel() -> None:
    """Item 10: ECAT's per-frame ``get_data_dtype(frame)`` made load fail."""
    ecat = nib.ecat.load(nibabel_file("tinypet.v"))
    want = np.asarray(ecat.dataobj)
    img = lazyimg.load(ecat)
    assert img.is_proxy
    assert_same(img.slicecopy[...], want)
    assert_same(img.data.compute(), want)
    assert_same(img.slicecopy[2:7, ::-2, 1], want[2:7, ::-2, 1])
    assert_same(img.to_xarray().values, want)
    assert "stored int16" in repr(img)
    assert "int16" in html_repr(img)


@pytest.mark.parametrize("name", ["anatomical.nii", "example4d.nii.gz", "minc2_1_scale.mnc"])
def test_all_integer_index_gives_a_numpy_scalar(name: str, tmp_path: Path) -> None:
    """Item 12: an all-integer index gave a 0-d array in the file's byte order."""
    nib_img = nib.load(nibabel_file(name))
    index = (1,) * len(nib_img.shape)
    want = np.asarray(nib_img.dataobj)[index]
    assert isinstance(want, np.generic) and want.dtype.isnative
    in_memory = nib.Nifti1Image(np.asarray(nib_img.dataobj), np.eye(4))
    for img in (lazyimg.load(nibabel_file(name)), lazyimg.load(in_memory)):
        for got in (
            img.slicecopy[index],
            img.data[index].compute(),
            img.slicer[1:3, 1:3, 1:3].dataobj[(0,) * len(nib_img.shape)],
        ):
            assert type(got) is type(want) and got.dtype.isnative, repr(got)
            assert got == want
        # numpy keeps a 0-d array when the index has an Ellipsis
        kept = img.slicecopy[(*index, Ellipsis)]
        assert isinstance(kept, np.ndarray) and kept.shape == ()
        assert kept == want


@pytest.mark.parametrize(
    "name", ["example4d.nii.gz", "anatomical.nii", "test.mgz", "scaled+tlrc.HEAD"]
)
def test_image_around_another_images_proxy_stays_lazy(name: str) -> None:
    """Item 11: ``nib.Nifti1Image(src.dataobj, ...)`` was read whole at load."""
    src = nib.load(nibabel_file(name))
    wrapped = nib.Nifti1Image(src.dataobj, src.affine, None)
    with counted() as box:
        img = lazyimg.load(wrapped)
    assert box["n"] == 0 and img.is_proxy
    assert img.path is not None and img.path.name == Path(src.dataobj.file_like).name
    want = np.asarray(wrapped.dataobj)
    assert_same(img.slicecopy[...], want)
    assert_same(img.data[..., -1].compute(), want[..., -1])


def test_wrapped_proxy_keeps_its_own_scaling(tmp_path: Path) -> None:
    """Item 11: values come from the proxy (its slope, dtype, offset), whatever the new header says."""
    stored = np.arange(2 * 3 * 4 * 5, dtype="int16").reshape(2, 3, 4, 5)
    path = write_scaled(tmp_path / "s.nii.gz", stored, 0.5, -3.0)
    src = nib.load(path)
    header = src.header.copy()
    header.set_slope_inter(7.0, 100.0)
    header.set_data_dtype("float32")
    for wrapped in (
        nib.Nifti1Image(src.dataobj, src.affine, header),
        nib.Nifti2Image(src.dataobj, np.diag([2.0, 2.0, 2.0, 1.0]), None),
    ):
        want = np.asarray(wrapped.dataobj)
        for dtype in (None, "float32"):
            img = lazyimg.load(wrapped, dtype=dtype)
            assert img.is_proxy
            assert_same(img.slicecopy[...], want if dtype is None else want.astype(dtype))
        raw = lazyimg.load(wrapped, dtype="raw")
        assert_same(raw.data.compute(), src.dataobj.get_unscaled())
        np.testing.assert_array_equal(lazyimg.load(wrapped).affine, wrapped.affine)


def test_raw_of_a_bytes_proxy_says_what_to_do() -> None:
    """Item 13: dtype='raw' of a from_bytes image gave a wrong message."""
    made = nib.Nifti1Image(np.arange(24, dtype="int16").reshape(2, 3, 4), np.eye(4))
    made.header.set_slope_inter(2.0, 1.0)
    from_bytes = nib.Nifti1Image.from_bytes(made.to_bytes())
    assert hasattr(from_bytes.dataobj, "get_unscaled")
    with pytest.raises(ValueError, match="get_unscaled"):  # a bad argument, as for files
        lazyimg.load(from_bytes, dtype="raw")
    # the way the message gives works
    stored = nib.Nifti1Image(from_bytes.dataobj.get_unscaled(), np.eye(4))
    assert_same(lazyimg.load(stored).slicecopy[...], np.arange(24, dtype="int16").reshape(2, 3, 4))
    assert_same(lazyimg.load(from_bytes).slicecopy[...], np.asarray(from_bytes.dataobj))


PICKLED = ["minc1_4d.mnc", "minc2_4d.mnc", "phantom_varscale.PAR", "minc1_1_scale.mnc"]


def test_minc_and_parrec_images_pickle_to_a_fresh_process(tmp_path: Path) -> None:
    """Item 14: a LazyImage of MINC1, MINC2 or PAR/REC did not pickle (its graph did)."""
    images, wants = [], []
    for name in PICKLED:
        img = lazyimg.load(nibabel_file(name))
        want = np.asarray(nib.load(nibabel_file(name)).dataobj)
        images.append(img)
        wants.append(want)
        if name == "minc1_1_scale.mnc":  # a slicer view (3D MINC has spatial axes first)
            images.append(img.slicer[1:4, ::-2, 3:])
            wants.append(want[1:4, ::-2, 3:])
    for img, want in zip(images, wants, strict=True):
        back = pickle.loads(pickle.dumps(img))
        assert_same(back.slicecopy[...], want)
        np.testing.assert_array_equal(back.affine, img.affine)
    blob = tmp_path / "images.pkl"
    blob.write_bytes(pickle.dumps((images, wants)))
    script = (
        "import pickle, sys, numpy as np\n"
        "images, wants = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "for img, want in zip(images, wants):\n"
        "    for got in (img.slicecopy[...], img.data.compute(), np.asarray(img.dataobj)):\n"
        "        assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)\n"
        "    assert img.is_proxy and repr(img) and img.to_xarray().shape\n"
        "    assert np.array_equal(img.slicecopy[..., 1:2], want[..., 1:2])\n"
        "print('ok', len(images))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(blob)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ok {len(images)}"


def test_ecat_says_why_it_does_not_pickle() -> None:
    """ECAT images need frame subheaders nibabel keeps with an open file: a clear error."""
    img = lazyimg.load(nib.ecat.load(nibabel_file("tinypet.v")))
    with pytest.raises(TypeError, match=r"tinypet\.v.*img\.slicecopy"):
        pickle.dumps(img)
    back = pickle.loads(pickle.dumps(img.data))  # the graph itself pickles
    assert_same(back.compute(), np.asarray(img.dataobj))


def test_loading_a_lazyimg_view_stays_lazy() -> None:
    """A slicer view, or an unpickled MINC image, given back to load is not read whole."""
    path = nibabel_file("example4d.nii.gz")
    sub = lazyimg.load(path).slicer[1:5, ::-1, 2:]
    want = np.asarray(nib.load(path).dataobj)[1:5, ::-1, 2:]
    with counted() as box:
        again = lazyimg.load(sub)
        also = lazyimg.load(sub.nibabel_image)
    assert box["n"] == 0 and again.is_proxy and also.is_proxy
    assert again.path == sub.path
    for img in (again, also):
        assert_same(img.slicecopy[...], want)
        assert_same(img.data[..., 1].compute(), want[..., 1])
    assert_same(lazyimg.load(sub, dtype="float32").slicecopy[...], want.astype("float32"))
    minc = pickle.loads(pickle.dumps(lazyimg.load(nibabel_file("minc2_4d.mnc"))))
    with counted() as box:
        back = lazyimg.load(minc)
    assert box["n"] == 0 and back.is_proxy
    assert_same(back.slicecopy[...], np.asarray(nib.load(nibabel_file("minc2_4d.mnc")).dataobj))
