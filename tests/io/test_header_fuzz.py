"""Property-based header fuzzing: every outcome is nibabel's exact values or a LazyImgError.

Small valid images (NIfTI-1, NIfTI-2, Analyze, MGH) get random header bytes,
random values in the fields that steer reads (dimensions, data type, offset,
scaling) and random truncations. Whatever nibabel makes of the result, lazyimg
must give the same values bit for bit, or refuse with a
:class:`~lazyimg.errors.LazyImgError` that names the file; it must never
return other values, raise another exception, hang or crash. The default
profile runs a few dozen cases per format (well under a minute);
``HYPOTHESIS_PROFILE=thorough`` digs deeper.
"""

from __future__ import annotations

import struct
import tempfile
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lazyimg

pytestmark = pytest.mark.filterwarnings("ignore")

DATA = (np.arange(2 * 3 * 4 * 2, dtype=np.int16).reshape(2, 3, 4, 2) * 37 - 500).astype(np.int16)

# format -> (image class, suffix, header file suffix, header size, dim offset and type)
FORMATS: dict[str, tuple[Any, str, str, int, int, str]] = {
    "nifti1": (nib.Nifti1Image, ".nii", ".nii", 348, 40, "<h"),
    "nifti2": (nib.Nifti2Image, ".nii", ".nii", 540, 16, "<q"),
    "analyze": (nib.AnalyzeImage, ".img", ".hdr", 348, 40, "<h"),
    "mgh": (nib.MGHImage, ".mgh", ".mgh", 284, 4, ">i"),
}

# (offset, struct format) of fields that steer reads, per format
FIELDS = {
    "nifti1": [
        (40, "<h"),
        (42, "<h"),
        (48, "<h"),
        (70, "<h"),
        (72, "<h"),
        (108, "<f"),
        (112, "<f"),
        (116, "<f"),
    ],
    "nifti2": [
        (16, "<q"),
        (24, "<q"),
        (48, "<q"),
        (12, "<h"),
        (14, "<h"),
        (168, "<q"),
        (176, "<d"),
        (184, "<d"),
    ],
    "analyze": [(40, "<h"), (42, "<h"), (48, "<h"), (70, "<h"), (72, "<h"), (108, "<f")],
    "mgh": [(4, ">i"), (8, ">i"), (16, ">i"), (20, ">i"), (24, ">i")],
}

INTS = st.one_of(
    st.integers(-3, 12),
    st.sampled_from([0, 1, 2, 4, 8, 16, 64, 255, 256, 512, 768, 1024, 2**15 - 1, -(2**15)]),
    st.integers(-(2**31), 2**31 - 1),
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, 1.0, -1.0, 2.5, 1e-30, 1e30]),
)


def _encode(fmt: str, value: Any) -> bytes:
    kind = fmt[-1]
    if kind in "fd":
        return struct.pack(fmt, float(value))
    bits = struct.calcsize(fmt) * 8
    return struct.pack(
        fmt, int(value) % 2**bits - (2**bits if int(value) % 2**bits >= 2 ** (bits - 1) else 0)
    )


@st.composite
def mutations(draw: st.DrawFn, fmt: str) -> dict[str, Any]:
    size = FORMATS[fmt][3]
    fields = []
    for offset, code in draw(st.lists(st.sampled_from(FIELDS[fmt]), max_size=3)):
        value = draw(FLOATS if code[-1] in "fd" else INTS)
        fields.append((offset, code, value))
    flips = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 255)), max_size=4))
    cut = draw(st.one_of(st.none(), st.integers(0, 2000)))
    return {"fields": fields, "bytes": flips, "cut": cut}


def _write(fmt: str, where: Path, m: dict[str, Any]) -> tuple[Path, Path]:
    klass, suffix, hsuffix, _, _, _ = FORMATS[fmt]
    data = DATA.astype(np.float32) if fmt == "mgh" else DATA
    path = where / f"img{suffix}"
    nib.save(klass(data, np.eye(4)), path)
    header = path.with_suffix(hsuffix)
    blob = bytearray(header.read_bytes())
    for offset, code, value in m["fields"]:
        struct.pack_into(f"{len(_encode(code, value))}s", blob, offset, _encode(code, value))
    for offset, value in m["bytes"]:
        blob[offset] = value
    if m["cut"] is not None:
        target = path if suffix != hsuffix else header
        if target is header:
            blob = blob[: m["cut"]]
        else:
            target.write_bytes(target.read_bytes()[: m["cut"]])
    header.write_bytes(bytes(blob))
    return header, path


def _nibabel(path: Path) -> np.ndarray | None:
    try:
        img = nib.load(path)
        if int(np.prod(img.shape, dtype=object)) > 10**7:
            return None  # nibabel would allocate it all; lazyimg may refuse or read lazily
        return np.asarray(img.dataobj)
    except Exception:
        return None


def _check(fmt: str, m: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header, path = _write(fmt, Path(tmp), m)
        want = _nibabel(header)
        try:
            img = lazyimg.load(header)
            if int(np.prod(img.shape, dtype=object)) > 10**7:
                assert want is None or want.size > 10**7, f"{fmt} {m}"
                return  # built lazily without reading: nothing to compare in a test
            got = img.data.compute()
            one = img.slicecopy[..., -1:] if img.ndim else None
        except lazyimg.LazyImgError as err:
            names = {header.name, path.name}
            assert any(n in str(err) for n in names), f"no file name in: {err} ({fmt} {m})"
            return
        finally:
            lazyimg.close_files()
        assert want is not None, f"lazyimg read {got.shape} where nibabel fails ({m})"
        assert_same(got, want, f"{fmt} {m}")
        if one is not None:
            assert_same(one, want[..., -1:], f"{fmt} {m} last slab")


FUZZ = settings(
    max_examples=max(60, settings.default.max_examples),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_fuzzed_headers(fmt: str) -> None:
    @FUZZ
    @given(mutations(fmt))
    def run(m: dict[str, Any]) -> None:
        _check(fmt, m)

    run()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_unmodified_files_read_exactly(fmt: str) -> None:
    _check(fmt, {"fields": [], "bytes": [], "cut": None})
