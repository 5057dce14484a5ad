"""Damaged and unusual files: nibabel's values or a LazyImgError naming the file, fast."""

from __future__ import annotations

import bz2
import gzip
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same, copy_nibabel_file, nib_array, sample

import lazyimg
from lazyimg._graph import MAX_BLOCKS
from lazyimg.testing import make_image

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _absurd_header() -> bytes:
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.uint8)
    hdr.set_data_shape((32767,) * 4)
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\0" * 4 + b"\0" * 50


def _zstd_compress(data: bytes) -> bytes:
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        from backports import zstd
    return bytes(zstd.compress(data))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii.bz2", ".nii.zst"])
def test_absurd_dimensions_in_a_tiny_compressed_file(tmp_path: Path, suffix: str) -> None:
    raw = _absurd_header()
    compress = {".nii.gz": gzip.compress, ".nii.bz2": bz2.compress, ".nii.zst": _zstd_compress}
    path = tmp_path / f"big{suffix}"
    path.write_bytes(compress[suffix](raw))
    with pytest.raises(lazyimg.CorruptImageError) as err:
        lazyimg.load(path)
    assert path.name in str(err.value)


def test_graph_refuses_absurd_chunk_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the limit the graph is refused before anything is allocated per block."""
    from lazyimg import _graph

    assert MAX_BLOCKS >= 10**6
    chunks = ((1,) * 32767,) * 4  # 32767**4 chunks: refused without building one
    with pytest.raises(lazyimg.CorruptImageError) as err:
        _graph._refuse_absurd(str(tmp_path / "a.nii"), chunks)
    assert "a.nii" in str(err.value) and f"{32767**4} dask chunks" in str(err.value)
    monkeypatch.setattr(_graph, "MAX_BLOCKS", 10)
    _graph._refuse_absurd("b.nii", ((1,) * 10,))


def test_zero_dimensional_header(tmp_path: Path) -> None:
    """NIfTI-2 dim[0] out of range makes nibabel read a 0-d image: refused at load."""
    path = make_image(tmp_path / "a.nii", sample((2, 3, 4), "int16"), klass=nib.Nifti2Image)
    blob = bytearray(path.read_bytes())
    struct.pack_into("<q", blob, 16, -1)
    path.write_bytes(bytes(blob))
    try:
        shape = nib.load(path).shape
    except Exception:  # nibabel refuses it: so does lazyimg, with the file's name
        shape = None
    with pytest.raises(lazyimg.LazyImgError) as err:
        lazyimg.load(path).data.compute()
    assert shape in (None, ())
    assert path.name in str(err.value)


def test_negative_dimension(tmp_path: Path) -> None:
    """A negative dim[2] in a NIfTI-1 header: refused at load, naming the file and what to do."""
    path = make_image(tmp_path / "a.nii", sample((4, 5, 6, 7), "int16"))
    blob = bytearray(path.read_bytes())
    struct.pack_into("<h", blob, 42, -5)
    path.write_bytes(bytes(blob))
    with pytest.raises(lazyimg.CorruptImageError) as err:
        lazyimg.load(path)
    assert isinstance(err.value, ValueError)
    message = str(err.value)
    assert path.name in message and "negative" in message and "copy or export" in message


def test_gifti_is_a_surface(tmp_path: Path) -> None:
    path = tmp_path / "surf.gii"
    darray = nib.gifti.GiftiDataArray(np.zeros((10, 3), "float32"))
    nib.save(nib.gifti.GiftiImage(darrays=[darray]), path)
    with pytest.raises(lazyimg.NotAnImageError, match="surface, not an array image") as err:
        lazyimg.load(path)
    assert path.name in str(err.value)


def test_truncated_rec_fails_at_load(tmp_path: Path) -> None:
    par = copy_nibabel_file("phantom_varscale.PAR", tmp_path)
    (rec,) = [p for p in tmp_path.iterdir() if p.suffix.lower() == ".rec"]
    blob = rec.read_bytes()
    rec.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(lazyimg.CorruptImageError) as err:
        lazyimg.load(par)
    assert rec.name in str(err.value)


def test_gzip_crc_error_gives_the_real_offset(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 1000, (40, 40, 20, 30)).astype("int16")
    path = make_image(tmp_path / "c.nii.gz", data)
    blob = bytearray(path.read_bytes())
    blob[-8] ^= 0xFF  # the CRC-32 of the trailer
    path.write_bytes(bytes(blob))
    usize = 352 + data.nbytes
    with pytest.raises(lazyimg.CorruptImageError) as err:
        lazyimg.load(path).data.compute()
    message = str(err.value)
    assert path.name in message
    assert f"byte {usize}" in message or "CRC" in message, message
    assert "uncompressed byte 0 " not in message


def test_trailing_garbage_after_the_gzip_stream(tmp_path: Path) -> None:
    """nibabel reads a .nii.gz followed by junk; so does lazyimg, every read included."""
    data = sample((6, 5, 4, 10), "int16")
    path = make_image(tmp_path / "t.nii.gz", data)
    path.write_bytes(path.read_bytes() + b"garbage!" * 20)
    want = nib_array(path)
    img = lazyimg.load(path, chunks={3: 1})
    assert_same(img.data.compute(), want)
    assert_same(img.slicecopy[..., -1], want[..., -1])
    lazyimg.close_files()
    assert_same(lazyimg.load(path).slicecopy[..., -1], want[..., -1])


def test_decompressed_length_counts_exactly(tmp_path: Path) -> None:
    from lazyimg._io.gzip.check import decompressed_length

    payload = os.urandom(300_000)
    path = tmp_path / "x.gz"
    blob = bytearray(gzip.compress(payload))
    path.write_bytes(bytes(blob))
    assert decompressed_length(str(path), 10**9) == (len(payload), None)
    blob[-8] ^= 1
    path.write_bytes(bytes(blob))
    got, why = decompressed_length(str(path), 10**9)
    assert got <= len(payload) and why is not None and "CRC-32" in why, why
    path.write_bytes(gzip.compress(payload) + gzip.compress(b"abc") + b"\0" * 10)
    assert decompressed_length(str(path), 10**9) == (len(payload) + 3, None)
