"""Errors: one hierarchy rooted in built-ins, raised early, naming the file, saying what to do."""

from __future__ import annotations

import os
import shutil
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same, copy_nibabel_file, nib_array, nibabel_file, sample

import lazyimg
from lazyimg.testing import make_image, write_scaled

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def names_file(err: pytest.ExceptionInfo[BaseException], path: Path | str) -> None:
    assert Path(path).name in str(err.value), f"the message does not name {path}: {err.value}"


@pytest.fixture
def nifti(tmp_path: Path) -> Path:
    return make_image(tmp_path / "img.nii", sample((4, 5, 6, 7), "int16"))


def test_hierarchy() -> None:
    assert issubclass(lazyimg.ImageNotFoundError, FileNotFoundError)
    for cls in (lazyimg.NotAnImageError, lazyimg.CorruptImageError):
        assert issubclass(cls, ValueError)
    assert issubclass(lazyimg.FileChangedError, OSError)
    for cls in (
        lazyimg.ImageNotFoundError,
        lazyimg.NotAnImageError,
        lazyimg.CorruptImageError,
        lazyimg.FileChangedError,
    ):
        assert issubclass(cls, lazyimg.LazyImgError)


# --------------------------------------------------------------------------- not found


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.nii"
    with pytest.raises(FileNotFoundError) as err:
        lazyimg.load(path)
    assert isinstance(err.value, lazyimg.ImageNotFoundError)
    names_file(err, path)


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("nifti1.hdr", "nifti1.img"),
        ("analyze.hdr", "analyze.img"),
        ("example4d+orig.HEAD", "example4d+orig.BRIK"),
        ("phantom_varscale.PAR", "phantom_varscale.REC"),
    ],
)
def test_missing_companion_file(tmp_path: Path, name: str, missing: str) -> None:
    """A header whose data file is missing: FileNotFoundError naming the missing file."""
    shutil.copy(nibabel_file(name), tmp_path / name)
    with pytest.raises(lazyimg.ImageNotFoundError) as err:
        lazyimg.load(tmp_path / name)
    names_file(err, missing)


def test_missing_companion_of_generated_pair(tmp_path: Path) -> None:
    path = make_image(tmp_path / "pair.img", sample((3, 4, 5), "float32"), klass=nib.Nifti1Pair)
    path.unlink()
    with pytest.raises(lazyimg.ImageNotFoundError) as err:
        lazyimg.load(tmp_path / "pair.hdr")
    names_file(err, path)


# --------------------------------------------------------------------------- not an image


@pytest.mark.parametrize(
    "content",
    [b"hello world\n" * 50, b"", b"abc", bytes(range(256)) * 4],
    ids=["text", "empty", "three-bytes", "binary-noise"],
)
def test_not_an_image(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.nii"
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        lazyimg.load(path)
    assert isinstance(err.value, lazyimg.LazyImgError)
    names_file(err, path)
    if content.startswith(b"hello") or not content:
        assert isinstance(err.value, lazyimg.NotAnImageError)
        assert "Nifti1Image" in str(err.value) and "MGHImage" in str(err.value)  # what was tried


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    with pytest.raises(lazyimg.NotAnImageError) as err:
        lazyimg.load(path)
    names_file(err, path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(lazyimg.NotAnImageError) as err:
        lazyimg.load(tmp_path)
    names_file(err, tmp_path)


@pytest.mark.parametrize("name", ["tinypet.v", "empty.trk", "phantom_truncated.PAR"])
def test_nibabel_cannot_read_it_either(name: str) -> None:
    with pytest.raises(lazyimg.LazyImgError) as err:
        lazyimg.load(nibabel_file(name))
    assert isinstance(err.value, ValueError)
    names_file(err, name)


# --------------------------------------------------------------------------- corrupt files


def _peak(fn: Any) -> int:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        try:
            fn()
        finally:
            peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("keep", [348, 352, 1000, -1], ids=["header", "header+ext", "part", "-1"])
def test_truncated_nifti(nifti: Path, keep: int) -> None:
    data = nifti.read_bytes()
    nifti.write_bytes(data[:keep])
    with pytest.raises(lazyimg.CorruptImageError) as err:
        lazyimg.load(nifti)
    names_file(err, nifti)
    assert "truncated" in str(err.value)


def test_truncated_huge_header_allocates_nothing(tmp_path: Path) -> None:
    """A header promising 64 GiB in a file of a few hundred bytes: error, no allocation."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((1024, 1024, 1024, 32))
    hdr.set_data_dtype("int16")
    path = tmp_path / "huge.nii"
    with open(path, "wb") as f:
        hdr.write_to(f)
        f.write(b"\x00" * 4)

    def load() -> None:
        with pytest.raises(lazyimg.CorruptImageError) as err:
            lazyimg.load(path)
        names_file(err, path)

    assert _peak(load) < 4 * 2**20


def test_truncated_gzip(tmp_path: Path) -> None:
    path = make_image(tmp_path / "img.nii.gz", sample((8, 8, 6, 5), "float32"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(lazyimg.CorruptImageError) as err:
        lazyimg.load(path)
    names_file(err, path)


# byte offsets of NIfTI-1 header fields
DIM, DATATYPE, VOX_OFFSET, SCL_SLOPE = 40, 70, 108, 112

PATCHES = [
    pytest.param(DIM, "<h", (9,), id="dim0-too-big"),
    pytest.param(DIM, "<h", (-1,), id="dim0-negative"),
    pytest.param(DIM + 2, "<h", (-5,), id="negative-dim"),
    pytest.param(DIM, "<8h", (7,) + (32767,) * 7, id="huge-dims"),
    pytest.param(DATATYPE, "<h", (9999,), id="unknown-datatype"),
    pytest.param(DATATYPE, "<h", (0,), id="datatype-zero"),
    pytest.param(DATATYPE, "<h", (2304,), id="datatype-rgba-too-big"),
    pytest.param(VOX_OFFSET, "<f", (1e12,), id="offset-beyond-file"),
    pytest.param(VOX_OFFSET, "<f", (-400.0,), id="offset-negative"),
    pytest.param(VOX_OFFSET, "<f", (float("nan"),), id="offset-nan"),
    pytest.param(VOX_OFFSET, "<f", (float("inf"),), id="offset-inf"),
]


@pytest.mark.parametrize(("at", "fmt", "values"), PATCHES)
def test_impossible_header(nifti: Path, at: int, fmt: str, values: tuple[Any, ...]) -> None:
    data = bytearray(nifti.read_bytes())
    struct.pack_into(fmt, data, at, *values)
    nifti.write_bytes(bytes(data))

    def load() -> None:
        with pytest.raises(lazyimg.CorruptImageError) as err:
            lazyimg.load(nifti)
        names_file(err, nifti)

    assert _peak(load) < 4 * 2**20


@pytest.mark.parametrize("slope", [0.0, float("nan"), float("inf")])
def test_degenerate_scale_factors_follow_nibabel(tmp_path: Path, slope: float) -> None:
    """nibabel's rules for slope 0, NaN or infinite apply bit for bit (or both refuse)."""
    path = write_scaled(tmp_path / "s.nii", sample((3, 4, 5), "int16"), 1.5, 2.0)
    data = bytearray(path.read_bytes())
    struct.pack_into("<f", data, SCL_SLOPE, slope)  # nibabel refuses to write these
    path.write_bytes(bytes(data))
    try:
        want = nib_array(path)
    except Exception as err:  # nibabel refuses: lazyimg must too, at load or compute
        with pytest.raises(type(err)):
            lazyimg.load(path).data.compute()
        return
    assert_same(lazyimg.load(path).data.compute(), want)


# --------------------------------------------------------------------------- changed files


def _touch_later(path: Path) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("change", ["mtime", "append", "rewrite"])
def test_changed_file(tmp_path: Path, suffix: str, change: str) -> None:
    path = make_image(tmp_path / f"img{suffix}", sample((4, 5, 6, 7), "int16"))
    img = lazyimg.load(path, chunks={3: 2})
    before = img.data[..., :2].compute()  # the file is open and cached now
    view = img.data[..., 1:]
    if change == "mtime":
        _touch_later(path)
    elif change == "append":
        with open(path, "ab") as f:
            f.write(b"\x00" * 16)
    else:  # same size, new contents, a new inode
        new = tmp_path / f"new{suffix}"
        make_image(new, sample((4, 5, 6, 7), "int16", seed=9))
        os.replace(new, path)
        _touch_later(path)
    for compute in (
        img.data.compute,
        view.compute,
        lambda: img.slicecopy[..., 0],
        lambda: np.asarray(img),
    ):
        with pytest.raises(lazyimg.FileChangedError) as err:
            compute()
        names_file(err, path)
        assert "load" in str(err.value)  # says what to do
    if change == "append":
        return  # the file now ends in junk (see test_formats for trailing zeros after gzip)
    fresh = lazyimg.load(path)
    assert_same(fresh.data.compute(), nib_array(path))
    if change == "rewrite":
        assert not np.array_equal(fresh.data[..., :2].compute(), before)


def test_changed_file_read_through_nibabel(tmp_path: Path) -> None:
    path = copy_nibabel_file("minc2_4d.mnc", tmp_path)
    img = lazyimg.load(path)
    img.data[0].compute()
    _touch_later(path)
    with pytest.raises(lazyimg.FileChangedError) as err:
        img.data[1].compute()
    names_file(err, path)


def test_changed_companion_file(tmp_path: Path) -> None:
    path = make_image(tmp_path / "pair.img", sample((3, 4, 5), "int16"), klass=nib.Nifti1Pair)
    img = lazyimg.load(tmp_path / "pair.hdr")
    _touch_later(path)
    with pytest.raises(lazyimg.FileChangedError) as err:
        img.data.compute()
    names_file(err, path)


def test_removed_file(nifti: Path) -> None:
    img = lazyimg.load(nifti)
    nifti.unlink()
    with pytest.raises(FileNotFoundError) as err:
        img.slicecopy[0]
    names_file(err, nifti)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "chunks",
    ["banana", -5, 0, 2.5, (1, 2), {7: 1}, {"x": 1}, {0: 0}, None, [[1, 2]]],
    ids=repr,
)
def test_bad_chunks(nifti: Path, chunks: Any) -> None:
    with pytest.raises(ValueError) as err:
        lazyimg.load(nifti, chunks=chunks)
    names_file(err, nifti)
    assert '"auto"' in str(err.value) or "axis" in str(err.value)  # says what is allowed


def test_bad_chunks_in_memory() -> None:
    with pytest.raises(ValueError, match="auto"):
        lazyimg.load(nib.Nifti1Image(np.zeros((2, 3, 4)), np.eye(4)), chunks="banana")


@pytest.mark.parametrize("dtype", ["banana", object, "U4", 5, "M8[s]", "S3"], ids=repr)
def test_bad_dtype(nifti: Path, dtype: Any) -> None:
    with pytest.raises(TypeError) as err:
        lazyimg.load(nifti, dtype=dtype)
    names_file(err, nifti)
    assert "float32" in str(err.value)  # says what is allowed


def test_raw_needs_stored_values() -> None:
    with pytest.raises(ValueError, match="raw"):
        lazyimg.load(nib.Nifti1Image(np.zeros((2, 3, 4)), np.eye(4)), dtype="raw")


@pytest.mark.parametrize("source", [42, None, np.zeros((2, 2, 2)), b"img.nii"], ids=repr)
def test_bad_source(source: Any) -> None:
    with pytest.raises(TypeError, match="path or a nibabel image"):
        lazyimg.load(source)


def test_options_are_keyword_only(nifti: Path) -> None:
    with pytest.raises(TypeError):
        lazyimg.load(nifti, "auto")  # type: ignore[misc]
