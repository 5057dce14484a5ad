"""A .nii.gz header from its first compressed bytes equals nib.load's image, or falls back."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import lazyimg
from lazyimg._io.gzhead import open_nii_gz


def _image(klass: type, endian: str) -> nib.Nifti1Image:
    data = np.arange(5 * 4 * 3 * 6, dtype=endian + "i2").reshape(5, 4, 3, 6)
    img = klass(data, np.diag([2.0, 2.5, 3.0, 1.0]))
    img.header.set_slope_inter(0.5, -3.0)
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"comment " * 50))
    return img


@pytest.mark.parametrize("endian", ["<", ">"], ids=["little", "big"])
@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image], ids=["nifti1", "nifti2"])
def test_same_image_as_nibabel(tmp_path: Path, klass: type, endian: str) -> None:
    path = tmp_path / "f.nii.gz"
    nib.save(_image(klass, endian), path)
    fast, ref = open_nii_gz(path), nib.load(path)
    assert type(fast) is type(ref)
    assert fast.header.binaryblock == ref.header.binaryblock
    assert [e.get_content() for e in fast.header.extensions] == [
        e.get_content() for e in ref.header.extensions
    ]
    np.testing.assert_array_equal(fast.affine, ref.affine)
    assert (fast.dataobj.slope, fast.dataobj.inter, fast.dataobj.offset) == (
        ref.dataobj.slope,
        ref.dataobj.inter,
        ref.dataobj.offset,
    )
    np.testing.assert_array_equal(np.asarray(fast.dataobj), np.asarray(ref.dataobj))
    np.testing.assert_array_equal(lazyimg.load(path).slicecopy[...], np.asarray(ref.dataobj))


def test_falls_back_when_unsure(tmp_path: Path) -> None:
    nib.save(_image(nib.Nifti1Image, "<"), tmp_path / "f.nii")
    raw = (tmp_path / "f.nii").read_bytes()
    (tmp_path / "plain.nii.gz").write_bytes(raw)  # named .gz, not compressed
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(raw[:200]))
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"\x00" * 600))
    for name in ("plain.nii.gz", "short.nii.gz", "junk.nii.gz"):
        assert open_nii_gz(tmp_path / name) is None
    assert open_nii_gz(tmp_path / "f.nii") is None  # only .nii.gz takes this path
    with pytest.raises(lazyimg.LazyImgError, match=r"short\.nii\.gz"):
        lazyimg.load(tmp_path / "short.nii.gz")


def test_load_does_not_open_the_stream_through_nibabel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.nii.gz"
    nib.save(_image(nib.Nifti1Image, "<"), path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("nib.load (and its gzip opener) was used")

    monkeypatch.setattr(nib, "load", refuse)
    img = lazyimg.load(path)
    assert img.shape == (5, 4, 3, 6) and img.dtype == np.float64
