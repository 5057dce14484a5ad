"""Opening a remote image: its header from the first byte range, a Source for its data.

``load("s3://...")`` asks for the object's identity (one metadata request) and its
first :data:`HEAD_BYTES` (one range request). A ``.nii.gz`` header is inflated
from that range; a second range is fetched only when the header and its
extensions are longer, and an ``.mgh`` footer (TR, flip angle) is fetched from
behind the data. nibabel parses the header bytes (``from_file_map`` over
in-memory file holders), so header, affine and scaling are exactly nibabel's;
lazyimg's :class:`~lazyimg._io.formats.Source` then points at the object by
:class:`~lazyimg._io.remote.RemoteId`. Analyze and NIfTI pairs are two objects,
``.hdr`` and ``.img``. Other formats are not read remotely: the error says so.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.fileholders import FileHolder

from lazyimg._io.formats import Source, raw_source
from lazyimg._io.mghead import header_of, image_of
from lazyimg._io.remote import Options, RemoteId, redact
from lazyimg._io.remote_file import RemoteFile
from lazyimg._io.remote_fs import filesystem, stat
from lazyimg.errors import CorruptImageError, LazyImgError, NotAnImageError

__all__ = ["open_remote"]

#: The first range fetched at load (compressed bytes for gzip).
HEAD_BYTES = 64 * 2**10
_MGH_HEADER = 284
_SUFFIXES = (".nii", ".nii.gz", ".mgh", ".mgz", ".hdr", ".img", ".hdr.gz", ".img.gz")


def open_remote(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, Source]:
    """``(nibabel image, Source)`` of the image at `url`, reading only its header."""
    options = Options(storage_options)
    name = redact(url)
    lower = name.lower()
    suffix = next((s for s in sorted(_SUFFIXES, key=len, reverse=True) if lower.endswith(s)), "")
    if not suffix:
        raise NotAnImageError(
            f"{name}: lazyimg reads NIfTI (.nii, .nii.gz), Analyze/NIfTI pairs (.hdr/.img) "
            "and MGH (.mgh, .mgz) images from URLs. Download other formats and open the file."
        )
    fs, path = filesystem(url, options)
    if suffix.startswith((".hdr", ".img")):
        return _open_pair(url, suffix, options)
    rid = stat(url, options, fs, path)
    src = RemoteFile(rid)
    first = src.pread(HEAD_BYTES, 0)
    gz = first[:2] == b"\x1f\x8b"
    head = _Prefix(src, first, gz)
    if suffix in (".mgh", ".mgz"):
        return _open_mgh(rid, src, head, gz)
    sizeof = head.get(4)
    (n1,) = struct.unpack("<i", sizeof)
    (n2,) = struct.unpack(">i", sizeof)
    if 540 in (n1, n2):
        klass: Any = nib.Nifti2Image
        endian = "<" if n1 == 540 else ">"
        (vox,) = struct.unpack(endian + "q", head.get(176)[168:176])
    elif 348 in (n1, n2):
        klass = nib.Nifti1Image
        endian = "<" if n1 == 348 else ">"
        (vox_f,) = struct.unpack(endian + "f", head.get(112)[108:112])
        vox = int(vox_f)
    else:
        raise NotAnImageError(
            f"{name}: not a NIfTI-1 or NIfTI-2 image (its first bytes give a header size of "
            f"{n1}). Check the URL."
        )
    hdr_len = max(vox, 544 if klass is nib.Nifti2Image else 352)
    data = head.get(hdr_len)
    img = _from_bytes(klass, name, {"image": data})
    return img, _source(img, rid, (), "gzip" if gz else None, name)


def _open_mgh(rid: RemoteId, src: RemoteFile, head: _Prefix, gz: bool) -> tuple[Any, Source]:
    """The footer (TR, flip angle, ...) sits behind the data: one more range for ``.mgh``;
    for ``.mgz`` the saved seek index, else one streamed pass that builds it (mghead)."""
    try:
        if gz:
            hdr = header_of(rid)
        else:
            klass = nib.MGHImage.header_class  # as its from_fileobj: fields, then the footer
            data = head.get(_MGH_HEADER)[: klass._hdrdtype.itemsize]
            footer_at = int(klass(data, check=False).get_footer_offset())
            hdr = klass(data + src.pread(klass._ftrdtype.itemsize, footer_at))
    except LazyImgError:
        raise
    except Exception as err:
        raise CorruptImageError(
            f"{rid.name}: nibabel could not read the header ({type(err).__name__}: {err}). "
            "The object is damaged or not what its suffix says."
        ) from None
    img = image_of(hdr)
    return img, _source(img, rid, (), "gzip" if gz else None, rid.name)


def _open_pair(url: str, suffix: str, options: Options) -> tuple[Any, Source]:
    stem = url[: len(url) - len(suffix)] if not url.endswith("?") else url
    gz = suffix.endswith(".gz")
    hdr_url = stem + (".hdr.gz" if gz else ".hdr")
    img_url = stem + (".img.gz" if gz else ".img")
    hdr_id, img_id = stat(hdr_url, options), stat(img_url, options)
    raw = RemoteFile(hdr_id).pread(hdr_id.size, 0)
    if gz:
        raw = zlib.decompress(raw, 31)
    (n1,) = struct.unpack("<i", raw[:4])
    (n2,) = struct.unpack(">i", raw[:4])
    klass: Any = nib.AnalyzeImage
    magic = raw[344:348]
    if magic in (b"ni1\0", b"n+1\0"):
        klass = nib.Nifti1Pair
    elif 540 in (n1, n2):
        klass = nib.Nifti2Pair
    elif 348 not in (n1, n2):
        raise NotAnImageError(f"{redact(hdr_url)}: not an Analyze or NIfTI header.")
    img = _from_bytes(klass, redact(hdr_url), {"header": raw, "image": b""})
    first = RemoteFile(img_id).pread(2, 0) if gz else b""
    compression = "gzip" if first[:2] == b"\x1f\x8b" else None
    return img, _source(img, img_id, (hdr_id,), compression, redact(img_url))


class _Prefix:
    """The first bytes of an object, uncompressed, fetched further only when asked."""

    def __init__(self, src: RemoteFile, first: bytes, gz: bool) -> None:
        self.src, self.fetched, self.gz = src, len(first), gz
        self.inflater = zlib.decompressobj(31) if gz else None
        self.data = self._inflate(first)

    def _inflate(self, raw: bytes) -> bytes:
        if self.inflater is None:
            return raw
        try:
            return self.inflater.decompress(raw)
        except zlib.error as err:
            raise CorruptImageError(
                f"{self.src.name}: the gzip stream is corrupt at its start ({err}). "
                "Upload the file again."
            ) from None

    def get(self, n: int) -> bytes:
        while len(self.data) < n and self.fetched < self.src.size:
            want = max(HEAD_BYTES, n - len(self.data) if not self.gz else 2 * self.fetched)
            more = self.src.pread(want, self.fetched)
            self.fetched += len(more)
            self.data += self._inflate(more)
        if len(self.data) < n:
            raise CorruptImageError(
                f"{self.src.name}: the object ends after {len(self.data)} (uncompressed) bytes, "
                f"inside its {n}-byte header. It is truncated; upload it again."
            )
        return self.data[:n]


def _from_bytes(klass: Any, name: str, pieces: dict[str, bytes]) -> Any:
    file_map = {key: FileHolder(fileobj=io.BytesIO(raw)) for key, raw in pieces.items()}
    try:
        return klass.from_file_map(file_map)
    except Exception as err:
        raise CorruptImageError(
            f"{name}: nibabel could not read the header ({type(err).__name__}: {err}). "
            "The object is damaged or not what its suffix says."
        ) from None


def _source(
    img: Any, rid: RemoteId, others: tuple[RemoteId, ...], compression: str | None, name: str
) -> Source:
    proxy: ArrayProxy = img.dataobj
    shape = tuple(int(n) for n in proxy.shape)
    stored = np.dtype(proxy.dtype)
    offset = int(proxy.offset)
    if any(n < 0 for n in shape) or offset < 0 or stored.hasobject or stored.itemsize == 0:
        raise CorruptImageError(
            f"{name}: the header gives an impossible layout (shape {shape}, offset {offset}, "
            f"dtype {stored})."
        )
    needed = offset + int(np.prod(shape, dtype=object)) * stored.itemsize
    if compression is None and rid.size < needed:
        raise CorruptImageError(
            f"{name}: the object has {rid.size} bytes but its header describes {needed}. "
            "It is truncated or the header is wrong; upload it again."
        )
    return raw_source(img, proxy, (rid, *others), shape, stored, offset, compression)
