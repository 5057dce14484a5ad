"""File identity: size, mtime, inode and ctime; a replaced file is never read as the old one."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same, nib_array, sample

import lazyimg
from lazyimg._io.identity import SINGLE_FILE_SUFFIXES, files_of
from lazyimg.testing import make_image


def _replace_keeping_mtime(path: Path, data: np.ndarray) -> None:
    """Write a same-size file next to `path`, rename it over `path`, restore the mtime."""
    st = os.stat(path)
    new = make_image(path.with_name("new-" + path.name), data)
    os.replace(new, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns
    if path.suffix == ".nii":  # a gzip stream of other data may differ in size by a few bytes
        assert os.stat(path).st_size == st.st_size


@pytest.mark.parametrize("name", ["img.nii", "img.nii.gz"])
def test_replaced_file_with_restored_mtime(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    old_data, new_data = sample((6, 5, 4, 3), "int16"), sample((6, 5, 4, 3), "int16", seed=1)
    make_image(path, old_data)
    old = lazyimg.load(path, chunks={3: 1})
    assert_same(old.data.compute(), old_data)  # the old file is now open in the cache
    _replace_keeping_mtime(path, new_data)
    if name.endswith(".gz"):  # a same-size gzip stream is not guaranteed: compare with nibabel
        new_data = nib_array(path)
    fresh = lazyimg.load(path, chunks={3: 1})
    assert_same(fresh.data.compute(), new_data)
    assert fresh.data.name != old.data.name
    with pytest.raises(lazyimg.FileChangedError) as err:
        old.data.compute()
    assert str(path) in str(err.value)
    assert "inode" in str(err.value)


def test_identity_has_inode_and_ctime(tmp_path: Path) -> None:
    from lazyimg._io.formats import FileId

    path = make_image(tmp_path / "a.nii", sample((2, 3, 4), "int16"))
    fid = FileId.of(path)
    st = os.stat(path)
    assert (fid.inode, fid.ctime_ns) == (st.st_ino, st.st_ctime_ns)
    assert fid.changes(st) == []
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same times, new ctime
    assert FileId.of(path) != fid
    assert any("status-change" in c for c in fid.changes(os.stat(path)))


@pytest.mark.parametrize("suffix", [*SINGLE_FILE_SUFFIXES, ".NII.GZ", ".Mgz"])
def test_single_file_suffixes_have_no_companion_in_any_nibabel_class(tmp_path: Path, suffix: str):
    # files_of skips asking nibabel's classes for these names: every class must agree
    name = str(tmp_path / f"a{suffix}")
    for klass in nib.imageclasses.all_image_classes:
        try:
            file_map = klass.filespec_to_file_map(name)
        except Exception:
            continue
        assert {h.filename for h in file_map.values()} == {name}, klass
    assert files_of(Path(name)) == [name]


def test_files_of_still_finds_companions(tmp_path: Path):
    hdr = tmp_path / "a.hdr"
    nib.save(nib.AnalyzeImage(np.zeros((2, 3, 4), "int16"), np.eye(4)), hdr)
    assert sorted(files_of(hdr)) == sorted([str(hdr), str(tmp_path / "a.img")])
