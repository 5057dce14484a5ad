"""Open a gzip-compressed MGH image (``.mgz``) without decompressing it for its footer.

An MGH header keeps TR, flip angle, TE, TI and FoV in a footer stored *after*
the voxel data, so ``nib.load`` of a ``.mgz`` decompresses the whole stream
through Python's gzip module just to parse the header, and lazyimg's first
read then decompresses it again to find its way. :func:`header_of` lets
nibabel's own ``MGHHeader.from_fileobj`` parse the header through an
:class:`~lazyimg._io.gzip.fileobj.IndexedFile`:

* with a saved seek index that matches the file (identity, fingerprint and
  payload digest are checked before the index is used), the header and the
  footer are inflated from the nearest seek points: a few hundred KiB
  instead of the stream;
* without one, the stream is decoded once (rapidgzip, faster than Python's
  gzip), checked against its CRC-32 and length trailer, and its index kept
  and saved, so the image's reads and every later ``load`` start from seek
  points.

:func:`open_mgz` builds the image from that header exactly as nibabel's
``MGHImage.from_file_map`` does, with a proxy over the path. Local files and
remote objects (:class:`~lazyimg._io.remote.RemoteId`) go the same way.
"""

from __future__ import annotations

import io
import os
from typing import Any

import nibabel as nib
from nibabel.fileholders import FileHolder

from lazyimg._io.identity import FileId
from lazyimg.errors import LazyImgError

__all__ = ["header_of", "image_of", "open_mgz"]

_SUFFIXES = (".mgz", ".mgh.gz")


def header_of(fid: Any) -> Any:
    """nibabel's ``MGHHeader`` (footer included) of the gzip stream `fid` names."""
    from lazyimg._io.gzip.fileobj import IndexedFile  # the gzip machinery, on first use
    from lazyimg._io.gzip.reader import GzipReader

    reader = GzipReader(fid)
    try:
        return nib.MGHImage.header_class.from_fileobj(IndexedFile(reader))
    finally:
        reader.close()


def open_mgz(path: str | os.PathLike[str]) -> Any | None:
    """The nibabel image of a local ``.mgz``, or None to let ``nib.load`` open it.

    Damaged streams raise :class:`~lazyimg.errors.CorruptImageError`; any other
    trouble (a header nibabel rejects) returns None so that ``nib.load`` says
    what is wrong in its own words.
    """
    name = os.fspath(path)
    if not name.lower().endswith(_SUFFIXES):
        return None
    try:
        with open(name, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                return None
        header = header_of(FileId.of(name))
    except LazyImgError:
        raise
    except Exception:
        return None
    return image_of(header, name)


def image_of(header: Any, name: str | None = None) -> Any:
    """The ``MGHImage`` nibabel's ``from_file_map`` makes of `header`, its proxy over `name`.

    Without `name` (a remote object) the proxy holds an empty in-memory file:
    lazyimg reads the voxels itself and never through it.
    """
    klass = nib.MGHImage
    file_like: Any = name
    if name is None:
        file_like = io.BytesIO()
        file_map = {"image": FileHolder(fileobj=file_like)}
    else:
        file_map = klass.filespec_to_file_map(name)
    proxy = klass.ImageArrayProxy(file_like, header.copy(), mmap=True, keep_file_open=None)
    return klass(proxy, header.get_affine(), header, file_map=file_map)
