"""``.mgz`` headers (whose footer sits after the data) read through the gzip seek index.

nibabel's MGH header keeps TR, flip angle, TE, TI and FoV behind the voxel data, so a
plain gzip file object decompresses the whole stream to parse it. With a saved index
(checked before it is trusted) a new ``load`` plus one deep volume inflates about one
gap between seek points; without one, the first ``load`` decodes the stream once and
saves the index. The same holds for remote objects; a remote ``.mgh`` fetches its
footer with one extra range request.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same, nib_array
from remote_servers import http  # noqa: F401 - fixture

import lazyimg
from lazyimg._io import cache as _cache
from lazyimg._io.gzip import index as _gzindex
from lazyimg._io.gzip import inflate as _inflate
from lazyimg._rangeserver import RangeServer
from lazyimg.testing import fmri_like

SHAPE = (64, 64, 32, 40)  # 21 MB of float32, several seek points apart
FOOTER = {"tr": 1500.0, "flip_angle": 0.5, "te": 30.0, "ti": 900.0, "fov": 192.0}


def _write(path: Path) -> Path:
    img = nib.MGHImage(fmri_like(SHAPE).astype(np.float32), np.diag([3.0, 3.0, 4.0, 1.0]))
    for key, value in FOOTER.items():
        img.header[key] = value
    nib.save(img, path)
    return path


def _forget_indexes() -> None:
    """As a fresh process: no open readers, no indexes in memory (saved ones stay)."""
    _gzindex._indexes.clear()
    _cache.close_all()


def _assert_header_as_nibabel(got: lazyimg.LazyImage, path: Path) -> None:
    ref = nib.load(path).header
    for key, value in FOOTER.items():
        assert float(got.header[key]) == float(ref[key]) == pytest.approx(value), key
    assert got.header.binaryblock == ref.binaryblock
    np.testing.assert_array_equal(got.affine, nib.load(path).affine)


def _index_file(path: Path) -> Path:
    return _gzindex._cache_path(_gzindex.FileId.of(path))


def test_saved_index_reads_footer_and_deep_volume_from_seek_points(tmp_path: Path) -> None:
    path = _write(tmp_path / "run.mgz")
    want = nib_array(path)
    _forget_indexes()
    builds = _gzindex.index_builds
    img = lazyimg.load(path)  # cold: one decoding pass, which saves the index
    _assert_header_as_nibabel(img, path)
    assert _gzindex.index_builds == builds + 1 and _index_file(path).exists()
    before = _inflate.inflated_bytes
    assert_same(img.slicecopy[..., 1], want[..., 1])
    assert _inflate.inflated_bytes - before < 2 * 2**20  # the first load's index serves reads

    _forget_indexes()  # a new process: the saved index is found, checked and used
    loads, before = _gzindex.index_loads, _inflate.inflated_bytes
    img = lazyimg.load(path)
    _assert_header_as_nibabel(img, path)
    assert_same(img.slicecopy[..., -2], want[..., -2])
    inflated = _inflate.inflated_bytes - before
    index = _gzindex.lookup(_gzindex.FileId.of(path))
    assert index is not None and len(index.upos) >= 3
    assert _gzindex.index_loads == loads + 1 and _gzindex.index_builds == builds + 1
    # header, footer and the volume each from their nearest seek point: about one chunk
    assert inflated <= 2 * index.max_gap + want[..., 0].nbytes, inflated
    assert inflated < 0.6 * want.nbytes, inflated


def test_damaged_saved_index_is_not_trusted(tmp_path: Path) -> None:
    path = _write(tmp_path / "run.mgz")
    lazyimg.load(path)
    saved = _index_file(path)
    blob = bytearray(saved.read_bytes())
    blob[-100] ^= 0xFF  # a window byte: a wrong footer or voxels if it were used
    saved.write_bytes(bytes(blob))
    _forget_indexes()
    builds = _gzindex.index_builds
    img = lazyimg.load(path)
    assert _gzindex.index_builds == builds + 1  # rebuilt from the stream, not trusted
    _assert_header_as_nibabel(img, path)
    assert_same(img.slicecopy[..., -1], nib_array(path)[..., -1])


def test_truncated_mgz_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "run.mgz")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(lazyimg.errors.CorruptImageError, match=r"run\.mgz"):
        lazyimg.load(path)


def test_remote_mgz_footer_read_then_saved_index_used(http: RangeServer) -> None:  # noqa: F811
    path = _write(http.root / "run.mgz")
    size = path.stat().st_size
    want = nib_array(path)
    _forget_indexes()
    http.reset()
    img = lazyimg.load(http.url("run.mgz"))  # no index yet: the object is streamed once
    _assert_header_as_nibabel(img, path)
    assert http.bytes_sent <= 1.1 * size  # once, plus the header and footer spans
    http.reset()
    assert_same(img.slicecopy[..., 3], want[..., 3])
    assert http.bytes_sent < 0.5 * size  # the pass at load left an index behind

    _forget_indexes()  # a new process: the index saved under (URL, ETag, size)
    http.reset()
    img = lazyimg.load(http.url("run.mgz"))
    _assert_header_as_nibabel(img, path)
    assert_same(img.slicecopy[..., -2], want[..., -2])
    assert http.bytes_sent < 0.6 * size, (http.bytes_sent, size)


def test_remote_mgh_footer_is_one_range(http: RangeServer) -> None:  # noqa: F811
    path = http.root / "run.mgh"
    img = nib.MGHImage(fmri_like((40, 40, 20, 12)).astype(np.float32), np.eye(4))
    for key, value in FOOTER.items():
        img.header[key] = value
    nib.save(img, path)
    http.reset()
    got = lazyimg.load(http.url("run.mgh"))
    _assert_header_as_nibabel(got, path)
    assert http.bytes_sent < 2**17  # the header range and the 20-byte footer, not the data
