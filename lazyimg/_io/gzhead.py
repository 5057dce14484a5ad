"""Open a ``.nii.gz`` by its first compressed bytes: nibabel's header, no gzip index.

``nib.load`` of a ``.nii.gz`` opens the whole stream through its gzip opener
(``indexed_gzip`` when installed: ~20 ms per file, most of a small file's
load). The header and its extensions sit in the first few hundred
decompressed bytes, so :func:`open_nii_gz` inflates only those with ``zlib``,
lets nibabel parse them (``header_class.from_fileobj``), and builds the image
exactly as nibabel's ``from_file_map`` does, with a proxy over the path. Any
file this fast path is unsure of (not NIfTI-1/2, odd offsets, a damaged
stream) returns None, and the caller falls back to ``nib.load``.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import Any

import nibabel as nib
from nibabel.fileholders import copy_file_map

#: Read the compressed file in pieces of this size until the header is inflated.
_PIECE = 16 * 1024
#: Headers plus extensions longer than this go through nibabel's own opener.
_MAX_HEAD = 1 << 20


def _inflate_prefix(need: int, state: list[Any]) -> bytes:
    """At least `need` decompressed bytes of `path` (fewer at the end of the stream)."""
    f, inflater, out = state
    while len(out) < need and not inflater.eof:
        raw = inflater.unconsumed_tail or f.read(_PIECE)
        if not raw:
            break
        out += inflater.decompress(raw, need - len(out))
    state[2] = out
    return bytes(out)


def _layout(head: bytes) -> tuple[Any, int] | None:
    """(image class, bytes of header plus extensions) from the first 544 bytes, or None."""
    for endian in "<>":
        size = struct.unpack(endian + "i", head[:4])[0]
        if size == 348 and head[344:348] == b"n+1\x00":
            offset = struct.unpack(endian + "f", head[108:112])[0]
            return nib.Nifti1Image, max(352, int(offset))
        if size == 540 and head[4:8] == b"n+2\x00":
            offset = struct.unpack(endian + "q", head[168:176])[0]
            return nib.Nifti2Image, max(544, int(offset))
    return None


def open_nii_gz(path: str | os.PathLike[str]) -> Any | None:
    """The nibabel image of a ``.nii.gz`` file from its first bytes, or None to fall back."""
    name = os.fspath(path)
    if not name.lower().endswith(".nii.gz"):
        return None
    try:
        with open(name, "rb") as f:
            state: list[Any] = [f, zlib.decompressobj(wbits=31), bytearray()]
            head = _inflate_prefix(544, state)
            found = _layout(head) if len(head) >= 352 else None
            if found is None or not 0 < found[1] <= _MAX_HEAD:
                return None
            klass, need = found
            head = _inflate_prefix(need, state)
        header = klass.header_class.from_fileobj(io.BytesIO(head))
    except (OSError, zlib.error, ValueError, struct.error, nib.spatialimages.HeaderDataError):
        return None  # nib.load says what is wrong, with the caller's messages
    # what nibabel's from_file_map does, with the header parsed from memory
    file_map = klass.filespec_to_file_map(name)
    hdr_copy = header.copy()
    proxy = klass.ImageArrayProxy(name, hdr_copy, mmap=True, keep_file_open=None)
    img = klass(proxy, None, header, file_map=file_map)
    img._affine = header.get_best_affine()
    img._load_cache = {
        "header": hdr_copy,
        "affine": img._affine.copy(),
        "file_map": copy_file_map(file_map),
    }
    return img
