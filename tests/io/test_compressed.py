"""Compressed images: equality with nibabel, seek-point indexes, parallel reads, errors.

The contract (see :mod:`lazyimg._io.gzip.reader`, :mod:`lazyimg._io.gzip.inflate` and
:mod:`lazyimg._io.gzip.index`):
compression is found by magic bytes; every gzip image gets random access
through a seek-point index built once per file identity, shared by the threads
of a process and saved for other processes; a stale or foreign saved index is
rebuilt; one volume deep in a file inflates about one gap between seek points;
corrupt or truncated streams raise :class:`lazyimg.CorruptImageError` naming
the file and the offset.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same, copy_nibabel_file, nib_array

import lazyimg
from lazyimg._io.gzip import build as _gzbuild
from lazyimg._io.gzip import index as _gzindex
from lazyimg._io.gzip import inflate as _inflate
from lazyimg._io.gzip import reader as _gzip
from lazyimg._io.gzip import stream as _gzstream
from lazyimg.testing import write_fmri, write_scaled

GZ_FILES = ["example4d.nii.gz", "example_nifti2.nii.gz", "standard.nii.gz", "test.mgz"]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def fresh_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A private index cache, and no open files or indexes left from other tests."""
    monkeypatch.setenv("LAZYIMG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LAZYIMG_GZIP_INDEX", raising=False)
    monkeypatch.setattr(_gzindex, "index_builds", 0)
    monkeypatch.setattr(_gzindex, "index_loads", 0)
    forget()
    yield
    forget()


def forget() -> None:
    """Drop this process's open files and in-memory indexes (as a new process would start)."""
    lazyimg.close_files()
    with _gzindex._indexes_lock:
        _gzindex._indexes.clear()


def noisy(
    shape: tuple[int, ...], dtype: Any = "int16", seed: int = 0, scale: float = 300
) -> np.ndarray:
    """Values that compress poorly (so small files still span several seek points)."""
    rng = np.random.default_rng(seed)
    vals = rng.standard_normal(int(np.prod(shape))) * scale
    return np.asfortranarray(vals.astype(dtype).reshape(shape, order="F"))


def gzip_file(src: Path, dst: Path, level: int = 6, members: int = 1) -> Path:
    """Compress `src` into `dst`, as one gzip member or several concatenated ones."""
    raw = src.read_bytes()
    cuts = np.linspace(0, len(raw), members + 1).astype(int)
    with open(dst, "wb") as f:
        for a, b in itertools.pairwise(cuts.tolist()):
            f.write(gzip.compress(raw[a:b], level, mtime=0))
    return dst


def save_gz(path: Path, data: np.ndarray, klass: Any = nib.Nifti1Image) -> Path:
    nib.save(klass(data, np.eye(4)), path)
    return path


def check_views(path: Path, chunks: Any = "auto") -> lazyimg.LazyImage:
    """Everything out of a LazyImage equals nibabel, cold (no index) then warm (index)."""
    want = nib_array(path)
    img = lazyimg.load(path, chunks=chunks)
    assert img.source is not None and img.source.compression == "gzip"
    assert_same(img.data.compute(), want, "cold full pass")
    last = (slice(None),) * (want.ndim - 1) + (-1,)
    for index in [
        last,
        (slice(None), slice(None), want.shape[2] // 2),
        (1, 2) + (slice(None),) * (want.ndim - 2),
        (slice(None, None, -2), slice(1, None, 3)),
        (Ellipsis, slice(None, None, -1)),
    ]:
        assert_same(img.slicecopy[index], want[index], f"slicecopy {index}")
        assert_same(img.data[index].compute(), want[index], f"data {index}")
    return img


@pytest.fixture
def bold_gz(tmp_path: Path) -> Path:
    """A 4D int16 .nii.gz of ~2 MB compressed: 40 volumes of 64 KB."""
    return save_gz(tmp_path / "bold.nii.gz", noisy((40, 40, 20, 40)))


def small_spacing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gzip, "SPACING", 64 * 2**10)
    monkeypatch.setattr(_gzstream, "SPACING", 64 * 2**10)


# --------------------------------------------------------------------------- equality


@pytest.mark.parametrize("name", [*GZ_FILES, "example4d+orig.BRIK.gz"])
def test_nibabel_compressed_files(name: str, tmp_path: Path) -> None:
    check_views(copy_nibabel_file(name, tmp_path))


@pytest.mark.parametrize(
    "suffix,klass,dtype",
    [
        (".nii.gz", nib.Nifti1Image, "int16"),
        (".nii.gz", nib.Nifti2Image, "float32"),
        (".mgz", nib.MGHImage, "int16"),
        (".img.gz", nib.Nifti1Pair, "uint8"),
        (".img.gz", nib.AnalyzeImage, "float64"),
    ],
    ids=["nifti1", "nifti2", "mgz", "nifti-pair", "analyze"],
)
def test_generated_files(
    suffix: str, klass: Any, dtype: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_spacing(monkeypatch)
    path = save_gz(tmp_path / f"img{suffix}", noisy((20, 18, 10, 12), dtype), klass)
    with dask.config.set({"array.chunk-size": "128KiB"}):
        check_views(path)


def test_scaled_nifti_gz(tmp_path: Path) -> None:
    path = write_scaled(tmp_path / "scaled.nii.gz", noisy((9, 8, 7, 6)), 0.5, -10.0)
    check_views(path, chunks={3: 2})


@pytest.mark.parametrize("members", [1, 3])
def test_afni_brik_gz_variants(
    members: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nibabel's AFNI file recompressed at another level, and as several gzip members."""
    small_spacing(monkeypatch)
    head = copy_nibabel_file("example4d+orig.BRIK.gz", tmp_path).with_name("example4d+orig.HEAD")
    brik = tmp_path / "example4d+orig.BRIK"
    brik.write_bytes(gzip.decompress(head.with_name("example4d+orig.BRIK.gz").read_bytes()))
    gzip_file(brik, head.with_name("example4d+orig.BRIK.gz"), level=9, members=members)
    brik.unlink()
    check_views(head.with_name("example4d+orig.BRIK.gz"), chunks={3: 1})


@pytest.mark.parametrize("builder", ["rapidgzip", "indexed_gzip"])
def test_concatenated_members_through_index(
    builder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seek points in later members, and reads across member boundaries, through the index."""
    pytest.importorskip(builder)
    small_spacing(monkeypatch)
    if builder == "indexed_gzip":
        from indexed_gzip import IndexedGzipFile

        monkeypatch.setattr(
            _gzip, "_open_builder", lambda p, fallback=False: IndexedGzipFile(p, spacing=64 * 2**10)
        )
    plain = save_gz(tmp_path / "plain.nii", noisy((40, 40, 20, 16)))
    path = gzip_file(plain, tmp_path / "multi.nii.gz", members=4)
    want = nib_array(plain)
    index = _gzbuild.build_index(path)
    assert len(index.upos) > 8
    img = lazyimg.load(path)
    assert_same(img.slicecopy[...], want)
    for k in range(16):
        assert_same(img.slicecopy[..., k], want[..., k], f"volume {k}")


def test_zero_padding_after_the_stream(bold_gz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tape and transfer tools pad with zeros; gzip readers skip them, so do we."""
    small_spacing(monkeypatch)
    with open(bold_gz, "ab") as f:
        f.write(bytes(512))
    img = check_views(bold_gz)
    assert _gzindex.index_builds == 1
    forget()
    assert_same(lazyimg.load(bold_gz).slicecopy[..., 20], nib_array(bold_gz)[..., 20])
    assert _gzindex.index_loads == 1 and img.shape == (40, 40, 20, 40)


def test_zstd_reads_correctly(tmp_path: Path) -> None:
    # nibabel (and lazyimg) use the standard library's zstd, or its backport before 3.14
    if sys.version_info < (3, 14):
        pytest.importorskip("backports.zstd")
    path = save_gz(tmp_path / "img.nii.zst", noisy((8, 7, 6, 5)))
    img = lazyimg.load(path, chunks={3: 2})
    assert img.source is not None and img.source.compression == "zstd"
    want = nib_array(path)
    assert_same(img.data.compute(), want)
    assert_same(img.slicecopy[..., 3], want[..., 3])
    assert_same(img.slicecopy[2, :, ::-1, 1:4], want[2, :, ::-1, 1:4])


# --------------------------------------------------------------------------- random access


def test_deep_volume_inflates_about_one_gap(bold_gz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small_spacing(monkeypatch)
    index = _gzbuild.build_index(bold_gz)
    assert len(index.upos) >= 10
    forget()
    img = lazyimg.load(bold_gz)
    vol = 40 * 40 * 20 * 2
    for k in (39, 25):
        before = _inflate.inflated_bytes
        got = img.slicecopy[..., k]
        inflated = _inflate.inflated_bytes - before
        assert vol <= inflated <= vol + index.max_gap, (k, inflated, index.max_gap)
        assert inflated < index.uncompressed_size / 4
        assert_same(got, nib_array(bold_gz)[..., k])
    assert _gzindex.index_builds == 1  # only build_index built one


@pytest.mark.parametrize("ahead", [64 * 2**10, 2**40], ids=["index-first", "stream"])
def test_cold_reads_in_any_order(
    bold_gz: Path, ahead: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any index: jumps ahead, back and forth, then a full pass in dask's order."""
    monkeypatch.setattr(_gzip, "AHEAD_BYTES", ahead)
    want = nib_array(bold_gz)
    img = lazyimg.load(bold_gz)
    for k in (30, 5, 31, 2):
        assert_same(img.slicecopy[..., k], want[..., k], f"volume {k}")
    if ahead < 2**40:  # the first jump started one pass; reads behind it come from its spill
        assert _gzindex.index_builds <= 1
    with dask.config.set({"array.chunk-size": "256KiB"}, scheduler="threads"):
        chunked = lazyimg.load(bold_gz)
        assert chunked.data.numblocks[-1] > 4
        np.testing.assert_array_equal(chunked.data.mean(-1).compute(), want.mean(-1))
    assert _gzindex.index_builds == 1


def test_slice_across_all_volumes_reads_once(
    bold_gz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A z-slice or a voxel's series needs most of the file: no byte is inflated twice."""
    small_spacing(monkeypatch)
    index = _gzbuild.build_index(bold_gz)
    img = lazyimg.load(bold_gz)
    want = nib_array(bold_gz)
    for sel in [(slice(None), slice(None), 7), (3, 4, 5)]:
        before = _inflate.inflated_bytes
        assert_same(img.slicecopy[sel], want[sel])
        assert _inflate.inflated_bytes - before <= index.uncompressed_size


def test_full_pass_decompresses_in_several_threads(
    bold_gz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_spacing(monkeypatch)
    monkeypatch.setattr(_inflate, "PIECE_BYTES", 128 * 2**10)
    _gzbuild.build_index(bold_gz)
    threads: set[int] = set()
    inflate = _gzip._inflate_runs
    # each batch waits (up to 5 s) for a second one to start, so one fast thread cannot
    # drain the whole queue before the other begins: the test asks whether batches *can*
    # run in parallel, not which thread the pool happened to wake first
    meet = threading.Barrier(2, timeout=5)

    def spy(*args: Any) -> None:
        threads.add(threading.get_ident())
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()
        inflate(*args)

    monkeypatch.setattr(_gzip, "_inflate_runs", spy)
    monkeypatch.setattr(_gzip, "_workers", lambda: 2)  # how many batches
    monkeypatch.setattr(_inflate, "_workers", lambda: 2)  # how many threads in the pool
    img = lazyimg.load(bold_gz)
    with dask.config.set(scheduler="threads"):
        got = img.data.mean(-1).compute()
    np.testing.assert_array_equal(got, nib_array(bold_gz).mean(-1))
    assert len(threads) >= 2


def test_index_built_once_per_process_and_shared(bold_gz: Path) -> None:
    img = lazyimg.load(bold_gz, chunks={3: 5})
    with dask.config.set(scheduler="threads", num_workers=2):
        img.data.sum().compute()
        img.data.max().compute()
    assert _gzindex.index_builds == 1
    assert lazyimg.load(bold_gz).slicecopy[..., 3].shape == (40, 40, 20)
    assert _gzindex.index_builds == 1


def test_index_never_in_graph(bold_gz: Path) -> None:
    img = lazyimg.load(bold_gz)
    img.data.sum().compute()  # builds the index
    assert _gzindex._known(img.source.files[0]) is not None  # type: ignore[union-attr]
    blob = pickle.dumps(img.data[..., 3:9].sum())
    assert len(blob) < 64 * 2**10
    assert b"GZIDX" not in blob


# --------------------------------------------------------------------------- saved indexes

_CHILD = """
import sys, numpy as np, lazyimg
from lazyimg._io.gzip import index as _gzindex
img = lazyimg.load(sys.argv[1])
vol = img.slicecopy[..., -1]
print(_gzindex.index_builds, _gzindex.index_loads, int(vol.astype(np.int64).sum()))
"""


def in_new_process(path: Path) -> tuple[int, int, int]:
    """(indexes built, indexes loaded, checksum of the last volume) in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    ).stdout
    builds, loads, total = (int(x) for x in out.split())
    return builds, loads, total


def test_saved_index_reused_by_another_process(
    bold_gz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_spacing(monkeypatch)
    lazyimg.load(bold_gz).data.sum().compute()
    saved = list((tmp_path / "cache").rglob("*.gzidx"))
    assert len(saved) == 1
    want = int(nib_array(bold_gz)[..., -1].astype(np.int64).sum())
    assert in_new_process(bold_gz) == (0, 1, want)

    # the file changes: the saved index is for another identity and is not used
    os.utime(bold_gz, ns=(os.stat(bold_gz).st_atime_ns, os.stat(bold_gz).st_mtime_ns + 10**9))
    assert in_new_process(bold_gz)[:2] == (1, 0)


def test_rewritten_file_gets_a_new_index(bold_gz: Path) -> None:
    img = lazyimg.load(bold_gz)
    img.data.sum().compute()
    old = _gzindex._known(img.source.files[0])  # type: ignore[union-attr]
    new_data = noisy((40, 40, 20, 40), seed=7)
    save_gz(bold_gz, new_data)
    forget()
    img = lazyimg.load(bold_gz)
    assert_same(img.slicecopy[..., -1], new_data[..., -1])
    assert _gzindex.index_builds == 2
    assert _gzindex._known(img.source.files[0]) is not old  # type: ignore[union-attr]


def test_beside_policy_and_foreign_index(
    bold_gz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_spacing(monkeypatch)
    monkeypatch.setenv("LAZYIMG_GZIP_INDEX", "beside")
    lazyimg.load(bold_gz).data.sum().compute()
    beside = Path(str(bold_gz) + ".gzidx")
    assert beside.exists()
    forget()
    lazyimg.load(bold_gz).slicecopy[..., 0]
    assert (_gzindex.index_builds, _gzindex.index_loads) == (1, 1)

    # another file of the same size, with this file's index copied beside it
    other = save_gz(tmp_path / "other.nii.gz", noisy((40, 40, 20, 40), seed=3))
    shutil.copy(beside, str(other) + ".gzidx")
    forget()
    img = lazyimg.load(other)
    assert_same(img.slicecopy[..., -1], nib_array(other)[..., -1])
    assert (_gzindex.index_builds, _gzindex.index_loads) == (2, 1)


def test_damaged_saved_index_is_rebuilt(
    bold_gz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_spacing(monkeypatch)
    lazyimg.load(bold_gz).data.sum().compute()
    (saved,) = (tmp_path / "cache").rglob("*.gzidx")
    blob = saved.read_bytes()
    for damaged in (blob[: len(blob) // 2], blob.replace(b"GZIDX", b"GZIDY"), b"junk"):
        saved.write_bytes(damaged)
        forget()
        builds = _gzindex.index_builds
        assert_same(lazyimg.load(bold_gz).slicecopy[..., -1], nib_array(bold_gz)[..., -1])
        assert _gzindex.index_builds == builds + 1


def test_index_without_inner_seek_points_is_not_saved(bold_gz: Path, tmp_path: Path) -> None:
    index = _gzbuild.build_index(bold_gz)  # default spacing: one point for a 2 MB file
    assert not ((index.upos > 0) & (index.upos < index.uncompressed_size)).any()
    assert not list(tmp_path.rglob("*.gzidx"))


def test_policy_off_saves_nothing(
    bold_gz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_spacing(monkeypatch)
    monkeypatch.setenv("LAZYIMG_GZIP_INDEX", "off")
    lazyimg.load(bold_gz).data.sum().compute()
    assert not list(tmp_path.rglob("*.gzidx"))


# --------------------------------------------------------------------------- errors


def test_truncated_gz_fails_at_load(bold_gz: Path) -> None:
    blob = bold_gz.read_bytes()
    bold_gz.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(lazyimg.CorruptImageError, match="truncated or corrupt") as err:
        lazyimg.load(bold_gz)
    assert str(bold_gz) in str(err.value)


@pytest.mark.parametrize("shape", [(40, 40, 20, 40), (64, 64, 32, 20)], ids=["small", "large"])
def test_isize_that_cannot_match_fails_at_load(shape: tuple[int, ...], tmp_path: Path) -> None:
    """Small files fail inside nibabel's header read, larger ones at lazyimg's ISIZE check."""
    path = write_fmri(tmp_path / "bold.nii.gz", shape)
    blob = bytearray(path.read_bytes())
    blob[-4:] = (1000).to_bytes(4, "little")  # the header needs megabytes
    path.write_bytes(bytes(blob))
    with pytest.raises(lazyimg.CorruptImageError, match="truncated or corrupt") as err:
        lazyimg.load(path)
    assert str(path) in str(err.value)


def test_concatenated_small_members_pass_the_isize_check(tmp_path: Path) -> None:
    plain = save_gz(tmp_path / "plain.nii", noisy((6, 5, 4, 3)))
    path = gzip_file(plain, tmp_path / "multi.nii.gz", members=3)
    assert_same(lazyimg.load(path).slicecopy[...], nib_array(plain))


@pytest.mark.parametrize("ahead", [64 * 2**10, 2**40], ids=["index-first", "stream"])
def test_intact_stream_shorter_than_the_header(
    ahead: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole gzip of a cut NIfTI: big enough that ISIZE cannot tell, so reads must."""
    monkeypatch.setattr(_gzip, "AHEAD_BYTES", ahead)
    full = save_gz(tmp_path / "full.nii", noisy((64, 64, 32, 24), scale=3000))
    cut = tmp_path / "cut.nii"
    cut.write_bytes(full.read_bytes()[: -2 * 64 * 64 * 32 * 2])  # the last two volumes
    path = gzip_file(cut, tmp_path / "cut.nii.gz")
    assert path.stat().st_size * 1032 > 2**32  # so the ISIZE check cannot rule it out
    img = lazyimg.load(path)
    assert_same(img.slicecopy[..., 21], nib_array(full)[..., 21])
    with pytest.raises(lazyimg.CorruptImageError, match="truncated") as err:
        img.slicecopy[..., 23]
    assert str(path) in str(err.value)


def _truncated_keeping_trailer(path: Path) -> int:
    """Cut the deflate data in half but keep the 8-byte trailer: ISIZE still looks right."""
    blob = path.read_bytes()
    cut = len(blob) // 2
    path.write_bytes(blob[:cut] + blob[-8:])
    return cut


def test_truncated_stream_fails_at_read_naming_file_and_offset(bold_gz: Path) -> None:
    _truncated_keeping_trailer(bold_gz)
    img = lazyimg.load(bold_gz)
    assert_same(img.slicecopy[..., 0], nib_array_head(bold_gz))
    with pytest.raises(lazyimg.CorruptImageError, match=r"uncompressed byte \d+") as err:
        img.slicecopy[..., -1]
    assert str(bold_gz) in str(err.value)
    with pytest.raises(lazyimg.CorruptImageError):
        img.data.mean(-1).compute()


def nib_array_head(path: Path) -> np.ndarray:
    """The first volume, decoded by zlib from the start of the (damaged) stream."""
    proxy = nib.load(path).dataobj
    vol = int(np.prod(proxy.shape[:3])) * proxy.dtype.itemsize
    raw = zlib.decompressobj(31).decompress(path.read_bytes(), proxy.offset + vol)
    return np.frombuffer(raw[proxy.offset :], proxy.dtype).reshape(proxy.shape[:3], order="F")


@pytest.mark.parametrize("where", [0.3, 0.9])
def test_corrupt_stream_fails_naming_file_and_offset(bold_gz: Path, where: float) -> None:
    """Damage nibabel trips over while reading the header, or lazyimg while reading data."""
    blob = bytearray(bold_gz.read_bytes())
    at = int(len(blob) * where)
    blob[at : at + 64] = bytes(64)  # 64 zero bytes in the middle of the deflate data
    bold_gz.write_bytes(bytes(blob))
    with pytest.raises(lazyimg.CorruptImageError, match="corrupt") as err:
        lazyimg.load(bold_gz).data.mean(-1).compute()
    assert str(bold_gz) in str(err.value) and re.search(r"byte \d+", str(err.value))
    assert _gzindex.index_builds == 0  # a damaged stream is never indexed


def test_corrupt_stream_deep_in_a_large_file(tmp_path: Path) -> None:
    """Past what nibabel reads at load: lazyimg's own reads fail, naming file and offset."""
    path = write_fmri(tmp_path / "bold.nii.gz", (64, 64, 32, 20))
    blob = bytearray(path.read_bytes())
    blob[-len(blob) // 5 : -len(blob) // 5 + 64] = bytes(64)
    path.write_bytes(bytes(blob))
    img = lazyimg.load(path)
    try:  # before the damage: right values, or the error if the decoder read ahead
        assert_same(img.slicecopy[..., 0], nib_array_head(path))
    except lazyimg.CorruptImageError as err:
        assert str(path) in str(err)
    for read in (lambda: img.slicecopy[..., -1], lambda: img.data.max().compute()):
        with pytest.raises(lazyimg.CorruptImageError, match=r"corrupt.*byte \d+") as err:
            read()
        assert str(path) in str(err.value)


@pytest.mark.parametrize("lib", ["zlib", "isal"])
def test_primer_starts_inflating_mid_byte(lib: str) -> None:
    """A deflate stream that starts at bit r of a byte inflates once primed (r = 1..7)."""
    inflate = zlib if lib == "zlib" else pytest.importorskip("isal.isal_zlib")
    data = b"".join(b"volume %d of a time series; " % i for i in range(3000))
    for strategy in (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FIXED):  # dynamic and fixed blocks
        comp = zlib.compressobj(6, zlib.DEFLATED, -15, 8, strategy)
        stream = comp.compress(data) + comp.flush()
        bits = np.unpackbits(np.frombuffer(stream, np.uint8), bitorder="little")
        for start in range(1, 8):
            junk = np.ones(start, np.uint8)  # the end of "the block before"
            moved = np.packbits(np.concatenate([junk, bits]), bitorder="little").tobytes()
            primed = _inflate._primer(start, moved[0]) + moved[1:]
            assert inflate.decompressobj(-15).decompress(primed) == data, (strategy, start)


@pytest.mark.parametrize("damage", ["zeroed window", "moved seek point"])
def test_damaged_saved_index_payload_is_rebuilt(
    bold_gz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """A saved index whose payload was damaged is not trusted: a fresh process rebuilds it."""
    small_spacing(monkeypatch)
    lazyimg.load(bold_gz).data.sum().compute()
    (saved,) = list((tmp_path / "cache").rglob("*.gzidx"))
    blob = bytearray(saved.read_bytes())
    (hlen,) = struct.unpack_from("<I", blob, len(_gzindex._MAGIC))
    start = len(_gzindex._MAGIC) + 4 + hlen
    index = _gzindex.GzipIndex.parse(bytes(blob[start:]), bold_gz.stat().st_size)
    with_window = np.flatnonzero(index.window_at >= 0)
    i = int(with_window[len(with_window) // 2])
    if damage == "zeroed window":
        at = start + int(index.window_at[i])
        blob[at : at + index.window_size] = bytes(index.window_size)
    else:
        at = start + 35 + i * _gzindex._POINT.itemsize + _gzindex._POINT.fields["u"][1]
        struct.pack_into("<Q", blob, at, int(index.upos[i]) + 2)
    saved.write_bytes(bytes(blob))
    want = int(nib_array(bold_gz)[..., -1].astype(np.int64).sum())
    assert in_new_process(bold_gz) == (1, 0, want)
