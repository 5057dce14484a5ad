"""Remote .nii.gz (seek index built on one streamed pass, then span reads), MGH/MGZ, Analyze pairs."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same, nib_array
from remote_servers import http  # noqa: F401 - fixture

import lazyimg
from lazyimg._io import cache as _cache
from lazyimg._io import remote as _remote
from lazyimg._io.gzip import index as _gzindex
from lazyimg._rangeserver import RangeServer
from lazyimg.testing import fmri_like

SHAPE = (64, 64, 32, 60)  # ~16 MB uncompressed, a few seek points apart


def _forget_indexes() -> None:
    """As a fresh process: no open readers, no indexes in memory (saved ones stay)."""
    _gzindex._indexes.clear()
    _cache.close_all()


def test_nii_gz_one_streamed_pass_then_span_reads(http: RangeServer) -> None:
    path = http.root / "bold.nii.gz"
    nib.save(nib.Nifti1Image(fmri_like(SHAPE), np.eye(4)), path)
    size = path.stat().st_size
    want = nib_array(path)
    _forget_indexes()
    http.reset()
    img = lazyimg.load(http.url("bold.nii.gz"))
    assert http.requests == 2 and http.bytes_sent <= 64 * 2**10  # header inflated from 1 range
    http.reset()
    assert_same(img.slicecopy[..., 2], want[..., 2])  # cold: streams from the start
    assert_same(img.slicecopy[..., -1], want[..., -1])  # the end: the rest, once, then indexed
    assert http.bytes_sent <= size + 64  # the object (and its trailer) at most once
    builds = _gzindex.index_builds
    assert builds >= 1
    _forget_indexes()  # a new process finds the index saved under (URL, ETag, size)
    img = lazyimg.load(http.url("bold.nii.gz"))
    http.reset()
    loads = _gzindex.index_loads
    assert_same(img.slicecopy[..., 40], want[..., 40])
    assert _gzindex.index_loads == loads + 1 and _gzindex.index_builds == builds
    assert http.bytes_sent < 0.5 * size  # the span from the nearest seek point only
    http.reset()
    got = img.data.mean(axis=-1).compute()
    assert np.allclose(got, want.mean(-1))
    assert http.bytes_sent <= 1.1 * size


@pytest.mark.parametrize("order", ["dask", "backwards"])
def test_nii_gz_first_pass_downloads_the_object_once(http: RangeServer, order: str) -> None:
    """Chunks in any order: those behind the stream read the bytes it kept, not the server."""
    path = http.root / "bold.nii.gz"
    nib.save(nib.Nifti1Image(fmri_like(SHAPE), np.eye(4)), path)
    size = path.stat().st_size
    want = nib_array(path)
    _forget_indexes()
    img = lazyimg.load(http.url("bold.nii.gz"), chunks={3: 10})
    http.reset()
    if order == "dask":
        got = img.data.mean(axis=-1).compute()
        assert np.allclose(got, want.mean(-1))
    else:  # the deepest chunk first: the whole stream is decoded, then the rest is behind it
        for k in range(50, -1, -10):
            assert_same(img.slicecopy[..., k : k + 10], want[..., k : k + 10])
    assert _gzindex.index_builds >= 1
    assert http.bytes_sent <= 1.05 * size, (http.bytes_sent, size)
    http.reset()  # a second pass in this process: no new download of what was kept
    assert_same(img.slicecopy[..., 25:35], want[..., 25:35])
    assert http.bytes_sent == 0


def test_nii_gz_saved_index_voxel_series_moves_at_most_the_object(http: RangeServer) -> None:
    """Each pass fetches exactly the gaps between seek points it inflates, merged, never twice."""
    path = http.root / "bold.nii.gz"
    nib.save(nib.Nifti1Image(fmri_like((64, 64, 32, 120)), np.eye(4)), path)
    size = path.stat().st_size
    want = nib_array(path)
    _forget_indexes()
    lazyimg.load(http.url("bold.nii.gz")).slicecopy[..., -1]  # builds and saves the index
    _forget_indexes()
    img = lazyimg.load(http.url("bold.nii.gz"))
    http.reset()
    assert_same(img.slicecopy[30, 20, 10, :], want[30, 20, 10, :])
    assert http.bytes_sent <= size + _remote.REQUEST_OVERHEAD_BYTES, (http.bytes_sent, size)
    http.reset()  # a few volumes: only the gaps between their seek points
    assert_same(img.slicecopy[30, 20, 10, 50:54], want[30, 20, 10, 50:54])
    assert http.bytes_sent < 0.5 * size


def test_nii_gz_changed_object_does_not_reuse_index(http: RangeServer, tmp_path: Path) -> None:
    path = http.root / "bold.nii.gz"
    nib.save(nib.Nifti1Image(fmri_like((32, 32, 16, 20)), np.eye(4)), path)
    img = lazyimg.load(http.url("bold.nii.gz"))
    img.slicecopy[..., 3]
    nib.save(nib.Nifti1Image(fmri_like((32, 32, 16, 20), seed=3), np.eye(4)), path)
    with pytest.raises(lazyimg.errors.FileChangedError):
        img.slicecopy[..., 15]
    again = lazyimg.load(http.url("bold.nii.gz"))
    assert_same(again.slicecopy[..., 15], nib_array(path)[..., 15])


@pytest.mark.parametrize("suffix", [".mgh", ".mgz"])
def test_mgh(http: RangeServer, suffix: str) -> None:
    arr = fmri_like((20, 18, 10, 6)).astype(np.float32)
    img = nib.MGHImage(arr, np.diag([1.5, 1.5, 2.0, 1.0]))
    img.header["tr"] = 2000.0
    path = http.root / f"run{suffix}"
    nib.save(img, path)
    http.reset()
    got = lazyimg.load(http.url(path.name))
    assert http.bytes_sent < path.stat().st_size or suffix == ".mgz"
    assert_same(got.slicecopy[..., 4], nib_array(path)[..., 4])
    assert np.allclose(got.affine, nib.load(path).affine)
    if suffix == ".mgh":  # the footer behind the data is fetched too
        assert float(got.header["tr"]) == 2000.0


@pytest.mark.parametrize("klass", [nib.AnalyzeImage, nib.Nifti1Pair], ids=["analyze", "nifti-pair"])
@pytest.mark.parametrize("name", ["pair.img", "pair.hdr"])
def test_pairs(http: RangeServer, klass: type, name: str) -> None:
    arr = fmri_like((16, 12, 8, 5))
    nib.save(klass(arr, np.diag([2.0, 2.0, 2.0, 1.0])), http.root / "pair.img")
    got = lazyimg.load(http.url(name))
    assert type(got.nibabel_image) is klass
    want = nib_array(http.root / "pair.img")
    assert_same(got.slicecopy[...], want)
    assert_same(np.asarray(got.data[2:9, :, 3].compute()), want[2:9, :, 3])
