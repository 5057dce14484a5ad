"""The file cache gives handles back: when no image refers to a file, and on lazyimg.close_files()."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same, sample

import lazyimg
from lazyimg.testing import make_image


def _open_to(path: Path) -> list[str]:
    """This process's descriptors that point at `path` (deleted or not)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.removesuffix(" (deleted)") == str(path):
            out.append(link)
    return out


pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


@pytest.mark.parametrize("name", ["img.nii", "img.nii.gz", "img.nii.bz2"])
def test_deleted_image_file_is_released(tmp_path: Path, name: str) -> None:
    data = sample((8, 7, 6, 5), "int16")
    path = tmp_path / name
    if name.endswith(".bz2"):
        import bz2

        raw = make_image(tmp_path / "raw.nii", data)
        path.write_bytes(bz2.compress(raw.read_bytes()))
    else:
        make_image(path, data)
    img = lazyimg.load(path, chunks={3: 1})
    assert_same(img.data.compute(), data)
    assert _open_to(path), "the cache should hold the file while the image lives"
    del img
    gc.collect()
    path.unlink()
    assert _open_to(path) == [], "a deleted file is still held open"


def test_close_files_releases_and_images_reopen(tmp_path: Path) -> None:
    data = sample((6, 5, 4, 3), "float32")
    paths = [make_image(tmp_path / f"{i}.nii.gz", data + i) for i in range(3)]
    imgs = [lazyimg.load(p) for p in paths]
    for img in imgs:
        img.data.sum().compute()
    assert all(_open_to(p) for p in paths)
    assert lazyimg.close_files() >= 3
    assert not any(_open_to(p) for p in paths)
    for i, img in enumerate(imgs):
        assert_same(img.data.compute(), (data + i).astype(np.float32))


def test_an_image_still_in_use_keeps_its_file(tmp_path: Path) -> None:
    data = sample((6, 5, 4, 3), "int16")
    path = make_image(tmp_path / "a.nii", data)
    a, b = lazyimg.load(path), lazyimg.load(path)
    a.data.sum().compute()
    b.data.sum().compute()
    del a
    gc.collect()
    assert _open_to(path)  # b still refers to it
    assert_same(b.data.compute(), data)
    del b
    gc.collect()
    assert _open_to(path) == []
