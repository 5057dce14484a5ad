"""Values and dtypes equal nibabel's, bit for bit, for every format lazyimg reads.

The oracle is ``np.asarray(nib.load(f).dataobj)``: scaled values, in nibabel's
dtype (byte order included). Every path out of a LazyImage is checked against
it: ``np.asarray(img)``, ``img.data.compute()``, ``img.slicecopy[...]`` and a
few slices of each.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import dask
import nibabel as nib
import numpy as np
import pytest
from conftest import (
    NIBABEL_FILES,
    assert_same,
    c_ordered_source,
    nib_array,
    nibabel_file,
    nifti_with_order,
    sample,
    write_pair_scaled,
)

import lazyimg
from lazyimg._graph import full_disk_array
from lazyimg._io.read import read
from lazyimg._plan.index import compose, full_selection
from lazyimg.testing import make_image, write_scaled

SLICES = [
    (Ellipsis, 0),
    (slice(1, None), slice(None, None, -2)),
    (-1,),
    (slice(None), 1, slice(None, None, 3)),
    (None, Ellipsis, slice(1, 2)),
    (slice(-2, None, -1), Ellipsis, slice(None, None, -1)),
]


def check_all_paths(img: lazyimg.LazyImage, want: np.ndarray) -> None:
    """Every way out of `img` gives `want` (and its slices) exactly."""
    assert img.shape == want.shape
    assert img.dtype == want.dtype
    assert_same(np.asarray(img), want, "np.asarray(img)")
    assert_same(img.data.compute(), want, "img.data.compute()")
    assert_same(img.slicecopy[...], want, "img.slicecopy[...]")
    for index in SLICES:
        try:
            expected = want[index]
        except IndexError:
            continue  # too many indices for a low-dimensional image
        assert_same(img.data[index].compute(), expected, f"img.data[{index}]")
        assert_same(img.slicecopy[index], expected, f"img.slicecopy[{index}]")


# --------------------------------------------------------------------------- nibabel's own files


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:nibabel.*")
@pytest.mark.parametrize("name", NIBABEL_FILES)
def test_nibabel_test_files(name: str) -> None:
    path = nibabel_file(name)
    nib_img = nib.load(path)
    want = np.asarray(nib_img.dataobj)
    img = lazyimg.load(path)
    check_all_paths(img, want)
    assert img.ndim == want.ndim
    assert isinstance(img.affine, np.ndarray) and img.affine.shape == (4, 4)
    expected = getattr(nib_img, "affine", None)  # CIFTI-2 has none: the identity then
    np.testing.assert_array_equal(img.affine, np.eye(4) if expected is None else expected)
    assert type(img.header) is type(nib_img.header)
    assert img.path == Path(path)
    assert name in repr(img)


def test_nibabel_files_found() -> None:
    # the suite above must really cover the formats of the contract
    suffixes = {Path(n).suffix.lower() for n in NIBABEL_FILES}
    assert {".nii", ".gz", ".mnc", ".par", ".rec", ".head", ".brik", ".mgz"} <= suffixes


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", NIBABEL_FILES)
def test_nibabel_test_files_are_lazy(name: str) -> None:
    """Opening a file reads the header only: every file-backed image stays a proxy."""
    img = lazyimg.load(nibabel_file(name))
    assert img.is_proxy
    assert img.path is not None
    assert img.source is not None


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", NIBABEL_FILES)
def test_nibabel_test_files_raw_and_cast(name: str) -> None:
    path = nibabel_file(name)
    proxy = nib.load(path).dataobj
    want = np.asarray(proxy)
    assert_same(lazyimg.load(path, dtype="float32").data.compute(), want.astype("float32"))
    if not hasattr(proxy, "get_unscaled"):
        with pytest.raises(ValueError, match="raw"):
            lazyimg.load(path, dtype="raw")
        return
    raw = lazyimg.load(path, dtype="raw")
    assert_same(raw.data.compute(), proxy.get_unscaled(), "dtype='raw'")
    assert_same(raw.slicecopy[..., -1], proxy.get_unscaled()[..., -1], "raw slicecopy")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_threaded_parrec() -> None:
    path = nibabel_file("phantom_varscale.PAR")
    want = nib_array(path)
    img = lazyimg.load(path, chunks=(16, 16, 3, 1))
    for _ in range(10):
        assert_same(img.data.compute(scheduler="threads", num_workers=4), want)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", ["minc1_4d.mnc", "minc2_4d.mnc", "example4d+orig.HEAD"])
def test_threaded_reads_of_many_chunks(name: str) -> None:
    path = nibabel_file(name)
    want = nib_array(path)
    img = lazyimg.load(path, chunks=tuple(-(-n // 3) for n in want.shape))
    for _ in range(5):
        assert_same(img.data.compute(scheduler="threads", num_workers=4), want)


def test_disk_order_of_minc_is_c() -> None:
    img = lazyimg.load(nibabel_file("minc2_4d.mnc"))
    assert img.disk_order == "C"
    assert lazyimg.load(nibabel_file("example4d.nii.gz")).disk_order == "F"


# --------------------------------------------------------------------------- generated files

NIFTI_DTYPES = [
    "uint8",
    "int8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "complex64",
    "complex128",
]
ANALYZE_DTYPES = ["uint8", "int16", "int32", "float32", "float64", "complex64"]
MGH_DTYPES = ["uint8", "int16", "int32", "float32"]

FORMATS: list[tuple[str, Any, str, list[str]]] = [
    ("nifti1", nib.Nifti1Image, ".nii", NIFTI_DTYPES),
    ("nifti2", nib.Nifti2Image, ".nii", NIFTI_DTYPES),
    ("nifti1-gz", nib.Nifti1Image, ".nii.gz", ["int16", "float64"]),
    ("nifti1-pair", nib.Nifti1Pair, ".img", ["uint8", "float32"]),
    ("nifti2-pair", nib.Nifti2Pair, ".hdr", ["int32"]),
    ("analyze", nib.AnalyzeImage, ".img", ANALYZE_DTYPES),
    ("spm2", nib.Spm2AnalyzeImage, ".img", ["int16", "float32"]),
]
GENERATED = [
    pytest.param(klass, suffix, dtype, order, id=f"{name}-{dtype}-{'be' if order == '>' else 'le'}")
    for name, klass, suffix, dtypes in FORMATS
    for dtype in dtypes
    for order in ("<", ">")
    if not (suffix == ".nii.gz" and order == ">")
]


@pytest.mark.parametrize(("klass", "suffix", "dtype", "byteorder"), GENERATED)
def test_generated(tmp_path: Path, klass: Any, suffix: str, dtype: str, byteorder: str) -> None:
    data = sample((5, 4, 3, 2), dtype)
    path = nifti_with_order(tmp_path / f"img{suffix}", data, klass, byteorder)
    want = nib_array(path)
    if np.dtype(dtype).itemsize > 1:  # the file really is in the byte order asked for
        assert want.dtype.str[0] == byteorder
    check_all_paths(lazyimg.load(path), want)


@pytest.mark.parametrize("dtype", MGH_DTYPES)
@pytest.mark.parametrize("suffix", [".mgh", ".mgz"])
def test_generated_mgh(tmp_path: Path, suffix: str, dtype: str) -> None:
    path = make_image(tmp_path / f"img{suffix}", sample((4, 5, 3, 2), dtype), klass=nib.MGHImage)
    want = nib_array(path)
    assert want.dtype.byteorder in ("|", ">")  # MGH is big-endian on disk
    check_all_paths(lazyimg.load(path), want)


@pytest.mark.parametrize(
    "shape", [(5,), (4, 3), (5, 4, 3), (5, 4, 3, 2), (3, 4, 2, 3, 2), (2, 2, 2, 2, 2, 2, 2)]
)
def test_generated_dimensions(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = make_image(tmp_path / "img.nii", sample(shape, "float32"))
    check_all_paths(lazyimg.load(path, chunks=2), nib_array(path))


def test_zero_length_axis(tmp_path: Path) -> None:
    path = make_image(tmp_path / "empty.nii", np.zeros((3, 0, 2), "int16"))
    img = lazyimg.load(path)
    want = nib_array(path)
    assert img.shape == (3, 0, 2)
    assert_same(img.data.compute(), want)
    assert_same(img.slicecopy[1:], want[1:])


SCALINGS = [
    pytest.param(nib.Nifti1Image, "int16", 2.5, -3.0, "<", id="nifti1-int16-slope-inter"),
    pytest.param(nib.Nifti1Image, "int16", 0.5, 0.0, ">", id="nifti1-int16-slope-be"),
    pytest.param(nib.Nifti1Image, "uint8", 1.0, 10.0, "<", id="nifti1-uint8-inter"),
    pytest.param(nib.Nifti1Image, "int32", 1e-3, 7.0, ">", id="nifti1-int32-small-slope-be"),
    pytest.param(nib.Nifti1Image, "float32", 2.0, 1.0, "<", id="nifti1-float32-slope-inter"),
    pytest.param(nib.Nifti1Image, "float64", -1.5, 0.25, ">", id="nifti1-float64-slope-be"),
    pytest.param(nib.Nifti1Image, "int8", 3.0, -1.0, "<", id="nifti1-int8-slope-inter"),
    pytest.param(nib.Nifti1Image, "uint64", 2.0, 0.0, "<", id="nifti1-uint64-slope"),
    pytest.param(nib.Nifti2Image, "int16", 0.1, 100.0, "<", id="nifti2-int16-slope-inter"),
    pytest.param(nib.Nifti2Image, "uint16", 4.0, -2.0, ">", id="nifti2-uint16-slope-be"),
    pytest.param(nib.Spm2AnalyzeImage, "int16", 0.25, 0.0, "<", id="spm2-int16-slope"),
    pytest.param(nib.Spm2AnalyzeImage, "uint8", 3.0, 0.0, ">", id="spm2-uint8-slope-be"),
]


@pytest.mark.parametrize(("klass", "dtype", "slope", "inter", "byteorder"), SCALINGS)
def test_scaled(
    tmp_path: Path, klass: Any, dtype: str, slope: float, inter: float, byteorder: str
) -> None:
    stored = sample((4, 3, 5, 2), dtype)
    if klass is nib.Spm2AnalyzeImage:  # a pair, and SPM has no intercept
        assert inter == 0
        path = write_pair_scaled(tmp_path / "s.img", stored, slope, klass, byteorder)
    else:
        path = write_scaled(
            tmp_path / "s.nii", stored, slope, inter, klass=klass, byteorder=byteorder
        )
    assert type(nib.load(path)) is klass
    proxy = nib.load(path).dataobj
    want = np.asarray(proxy)
    img = lazyimg.load(path)
    check_all_paths(img, want)
    raw = lazyimg.load(path, dtype="raw")
    assert_same(raw.data.compute(), proxy.get_unscaled(), "dtype='raw'")
    assert_same(raw.slicecopy[1, ::-1], proxy.get_unscaled()[1, ::-1], "raw slice")
    cast = lazyimg.load(path, dtype="float32")
    assert_same(cast.data.compute(), want.astype("float32"), "dtype='float32'")
    assert_same(cast.slicecopy[..., 1], want[..., 1].astype("float32"), "float32 slice")


def test_dtype_is_the_scaled_dtype(tmp_path: Path) -> None:
    """``.dtype`` is what the values come back as, not nibabel's stored ``ArrayProxy.dtype``."""
    path = write_scaled(tmp_path / "s.nii", sample((3, 3, 3), "int16"), 2.0, 1.0)
    img = lazyimg.load(path)
    assert nib.load(path).dataobj.dtype == np.dtype("int16")
    assert img.dtype == np.asarray(nib.load(path).dataobj).dtype != np.dtype("int16")
    assert img.data.dtype == img.data[0].compute().dtype


@pytest.mark.parametrize("chunks", ["auto", 1, (2, 3, 1, 1)])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_chunking_does_not_change_values(tmp_path: Path, suffix: str, chunks: Any) -> None:
    path = write_scaled(tmp_path / "c.nii", sample((5, 6, 3, 4), "int16"), 0.5, 2.0)
    if suffix == ".nii.gz":
        path = make_image(tmp_path / "c.nii.gz", nib_array(path))
    with dask.config.set(scheduler="threads"):
        check_all_paths(lazyimg.load(path, chunks=chunks), nib_array(path))


def test_compression_detected_by_magic_bytes(tmp_path: Path) -> None:
    """A gzip stream behind a plain suffix is still read right (magic bytes, not suffix)."""
    gz = make_image(tmp_path / "img.nii.gz", sample((4, 3, 2), "int16"))
    mgz = make_image(tmp_path / "img.mgz", sample((4, 3, 2), "int16"), klass=nib.MGHImage)
    for path in (gz, mgz):
        img = lazyimg.load(path)
        assert img.source is not None and img.source.compression == "gzip"
        assert_same(img.data.compute(), nib_array(path))


def test_gzip_with_trailing_zero_padding(tmp_path: Path) -> None:
    path = make_image(tmp_path / "pad.nii.gz", sample((4, 5, 6, 3), "int16"))
    with open(path, "ab") as f:
        f.write(b"\x00" * 16)  # as tape tools and some transfer programs pad
    want = nib_array(path)
    assert_same(lazyimg.load(path).data.compute(), want)


def test_gzip_with_several_members(tmp_path: Path) -> None:
    path = make_image(tmp_path / "one.nii.gz", sample((4, 5, 6, 3), "int16"))
    raw = gzip.decompress(path.read_bytes())
    multi = tmp_path / "multi.nii.gz"
    multi.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    assert_same(lazyimg.load(multi).data.compute(), nib_array(multi))


# --------------------------------------------------------------------------- C order


@pytest.mark.parametrize("dtype", [">i2", "<f4", "uint8", "<c8"])
def test_raw_reader_c_order(tmp_path: Path, dtype: str) -> None:
    data = sample((4, 5, 6, 3), dtype)
    source = c_ordered_source(tmp_path / "c.raw", data, offset=96)
    mm = np.memmap(
        tmp_path / "c.raw", dtype=dtype, mode="r", offset=96, shape=data.shape, order="C"
    )
    whole = full_selection(data.shape)
    assert_same(read(source, whole), np.asarray(mm))
    for index in SLICES + [(1, 2, 3), (slice(None, None, 2), 0), (Ellipsis, 2, slice(None))]:
        assert_same(read(source, compose(whole, index)), np.asarray(mm[index]), f"{index}")
    # and as a dask array chunked along the first (slowest) axis
    arr = full_disk_array(source, ((1, 1, 2), (5,), (6,), (3,)), None, False)
    assert_same(arr.compute(), np.asarray(mm))
    assert_same(arr[:, 1:, ::-1].compute(), np.asarray(mm[:, 1:, ::-1]))
    del mm
