"""What a file is: format, on-disk order, byte layout and scaling, from nibabel's headers.

:func:`open_nibabel` turns a path into a nibabel image with lazyimg's errors;
:func:`describe` turns a proxied nibabel image into a :class:`Source`, the
small picklable recipe every read task carries. A Source holds paths and
file identities (size, mtime, inode, ctime), never an open handle or a nibabel object:
MINC and PAR/REC proxies do not pickle, and a ``.nii.gz`` proxy drags its
whole gzip index along.

Two kinds of Source:

``"raw"``
    The image is one array of fixed-size items at an offset in one file
    (NIfTI-1/2, Analyze/SPM, MGH/MGZ, AFNI, CIFTI): lazyimg reads the bytes
    itself and applies nibabel's scaling rules, bit for bit.
``"nibabel"``
    Anything else (MINC1/2, PAR/REC, other spatial images): each task reopens
    the image with nibabel and slices its proxy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.tripwire import TripWireError

from lazyimg._io.gzhead import open_nii_gz
from lazyimg._io.identity import FileId, check_readable, files_of, unreadable
from lazyimg._io.mghead import open_mgz
from lazyimg._io.scaling import Scaling, raw_scaling
from lazyimg.errors import (
    CorruptImageError,
    ImageNotFoundError,
    ImagePermissionError,
    MissingDependencyError,
    NotAnImageError,
)

_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bz2",
}


@dataclass(frozen=True, eq=False)
class Source:
    """Everything a worker needs to read an image by itself."""

    kind: str
    files: tuple[Any, ...]
    """FileId per local file, or :class:`~lazyimg._io.remote.RemoteId` per remote object."""
    shape: tuple[int, ...]
    order: str
    stored: np.dtype[Any]
    scaled: np.dtype[Any]
    offset: int = 0
    compression: str | None = None
    scaling: Scaling = field(default_factory=Scaling)
    image_class: str = ""
    origin_pid: int = field(default_factory=os.getpid, compare=False, repr=False)
    """The process that made this Source (see :mod:`lazyimg._io.cache`)."""

    @property
    def path(self) -> str:
        return self.files[0].path

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        scaling = tuple(
            None if a is None else (a.dtype.str, a.tobytes())
            for a in (self.scaling.slope, self.scaling.inter, self.scaling.per_last)
        )
        return (
            "lazyimg.Source",
            self.kind,
            self.files,
            self.shape,
            self.order,
            self.stored.str,
            self.scaled.str,
            self.offset,
            self.compression,
            scaling,
        )


def compression_of(path: str | os.PathLike[str]) -> str | None:
    """Compression of a file from its magic bytes (not its suffix)."""
    with open(path, "rb", buffering=0) as f:  # 4 bytes, not a whole buffer of voxels
        head = f.read(4)
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def open_nibabel(path: str | os.PathLike[str]) -> Any:
    """``nib.load`` with errors that name the file and say what to do."""
    p = Path(path)
    if not p.exists():
        raise ImageNotFoundError(
            f"{p}: no such file. Check the path (it is resolved against {Path.cwd()})."
        )
    if p.is_dir():
        raise NotAnImageError(f"{p}: is a directory, not an image file.")
    for name in files_of(p):  # before nibabel: indexed_gzip crashes on an unreadable file
        check_readable(name)
    try:
        img = open_nii_gz(p) or open_mgz(p) or nib.load(p)
    except nib.filebasedimages.ImageFileError as err:
        _raise_if_damaged_stream(p)
        tried = ", ".join(sorted({c.__name__ for c in nib.imageclasses.all_image_classes}))
        raise NotAnImageError(
            f"{p}: not an image nibabel can read (tried {tried}; nibabel said: {err}). "
            "Check that the file is a neuroimaging image and that its name has the right suffix."
        ) from None
    except PermissionError as err:
        raise ImagePermissionError(unreadable(err.filename or p)) from None
    except FileNotFoundError as err:
        raise ImageNotFoundError(
            f"{p}: a file this image needs is missing ({err.filename or err}). "
            "Keep header and data files (.hdr/.img, .HEAD/.BRIK, .PAR/.REC) together."
        ) from None
    except (ImportError, TripWireError) as err:
        raise MissingDependencyError(_missing_package(p, err)) from None
    except MemoryError:
        raise CorruptImageError(
            f"{p}: the header asks for an impossible amount of memory. The header is "
            "damaged; copy or export the file again."
        ) from None
    except Exception as err:
        raise CorruptImageError(
            f"{p}: nibabel could not read the header ({type(err).__name__}: {err}). "
            "The file is damaged or not what its suffix says."
        ) from None

    if not hasattr(img, "dataobj"):  # GIFTI surfaces, CIFTI-less metadata files, ...
        kind = "a GIFTI surface" if type(img).__name__ == "GiftiImage" else type(img).__name__
        raise NotAnImageError(
            f"{p}: this is {kind}, not an array image: it has no voxel array for lazyimg to "
            "read. Read it with nibabel (nibabel.load(path).darrays for GIFTI)."
        )
    return img


#: The lazyimg extra that installs a package nibabel may need to read a file.
_EXTRAS = {"h5py": "minc", "zstd": "zstd", "backports.zstd": "zstd", "matplotlib": "plot"}


def _missing_package(path: Path, err: Exception) -> str:
    """Say which package reading `path` needs and which lazyimg extra installs it."""
    name = err.name if isinstance(err, ImportError) else None
    name = name or next((n for n in _EXTRAS if f"package {n} " in str(err)), "")
    extra = _EXTRAS.get(name, "all")
    return (
        f"{path}: reading this file needs {name or 'a package'}, which is not installed "
        f'({type(err).__name__}: {err}). Install it with: pip install "lazyimg[{extra}]"'
    )


def _raise_if_damaged_stream(path: Path) -> None:
    """nibabel cannot tell a damaged gzip stream from an unknown format: say which it is."""
    if path.is_file() and compression_of(path) == "gzip":
        from lazyimg._io.gzip.check import diagnose

        problem = diagnose(path)
        if problem is not None:
            raise CorruptImageError(problem) from None


def image_files(img: Any) -> tuple[FileId, ...]:
    """Identities of every file on disk that makes up `img`, image file first, each once.

    Names are compared as absolute paths: nibabel may keep ``"a.nii"`` for one
    role and the same file under another spelling for another.
    """
    holders = [img.file_map.get(key) for key in ("image", "header")]
    holders += list(img.file_map.values())
    names: list[str] = []
    for holder in holders:
        name = getattr(holder, "filename", None)
        if isinstance(name, (str, os.PathLike)):
            full = os.path.abspath(name)
            if full not in names and os.path.exists(full):
                names.append(full)
    return tuple(FileId.of(n) for n in names)


def proxy_file(proxy: Any) -> str | None:
    """The file an ``ArrayProxy`` reads by name (absolute), or None.

    An image built around another image's proxy (``nib.Nifti1Image(src.dataobj,
    ...)``) has no file of its own, but its proxy still reads `src`'s file.
    """
    name = getattr(proxy, "file_like", None)
    if _is_raw_proxy(proxy) and isinstance(name, (str, os.PathLike)) and os.path.isfile(name):
        return os.path.abspath(name)
    return None


def _is_raw_proxy(proxy: Any) -> bool:
    return type(proxy).__name__ in ("ArrayProxy", "AFNIArrayProxy") and isinstance(
        proxy, ArrayProxy
    )


def disk_order(img: Any) -> str:
    """``"F"`` if the last axis changes slowest on disk, ``"C"`` if the first does."""
    order = getattr(img.dataobj, "order", None) or getattr(img.header, "data_layout", "F")
    return "C" if order == "C" else "F"


def describe(img: Any) -> Source:
    """The Source recipe of a nibabel image whose data lives in files."""
    proxy = img.dataobj
    files = image_files(img)
    name = files[0].path if files else "<image>"
    shape = tuple(int(n) for n in proxy.shape)
    if any(n < 0 for n in shape):
        raise CorruptImageError(
            f"{name}: the header gives negative dimensions {shape}. The header is damaged; "
            "copy or export the file again."
        )
    if not shape:  # e.g. NIfTI dim[0] out of range: nibabel makes a 0-d image of it
        raise CorruptImageError(
            f"{name}: the header gives the image no dimensions (a NIfTI/Analyze dim[0] out of "
            "the range 1-7?). The header is damaged; copy or export the file again."
        )
    if _is_raw_proxy(proxy):
        return _describe_raw(img, proxy, shape)
    return _describe_nibabel(img, proxy, shape, files)


def _describe_raw(img: Any, proxy: ArrayProxy, shape: tuple[int, ...]) -> Source:
    path = os.fspath(proxy.file_like)
    try:
        data_file = FileId.of(path)
    except FileNotFoundError:
        header = image_files(img)
        raise ImageNotFoundError(
            f"{path}: the data file of {header[0].path if header else 'this image'} is missing. "
            "Keep header and data files (.hdr/.img, .HEAD/.BRIK) together."
        ) from None
    others = tuple(f for f in image_files(img) if f.path != data_file.path)
    stored = np.dtype(proxy.dtype)
    if stored.hasobject or stored.itemsize == 0:
        raise CorruptImageError(f"{path}: the header gives an unusable data type {stored}.")
    offset = int(proxy.offset)
    if offset < 0:
        raise CorruptImageError(f"{path}: the header gives a negative data offset ({offset}).")
    compression = compression_of(path)
    needed = offset + int(np.prod(shape, dtype=object)) * stored.itemsize
    if compression is None and data_file.size < needed:
        dims = "x".join(map(str, shape))
        raise CorruptImageError(
            f"{path}: the file has {data_file.size} bytes but its header describes {needed} "
            f"(offset {offset} + {dims} {stored.name}). The file is truncated or the header is "
            "wrong; copy or export it again."
        )
    if compression == "gzip":  # the ISIZE trailer must allow the bytes the header needs
        from lazyimg._io.gzip.check import check_isize

        check_isize(path, data_file.size, needed)
    elif compression in ("bz2", "zstd"):  # no trailer: a bounded decompression probe
        from lazyimg._io.probe import check_stream_length

        check_stream_length(path, compression, needed)
    return raw_source(img, proxy, (data_file, *others), shape, stored, offset, compression)


def raw_source(img: Any, proxy: Any, files: tuple[Any, ...], shape: tuple[int, ...],
               stored: np.dtype[Any], offset: int, compression: str | None) -> Source:  # fmt: skip
    """The Source of an array at `offset` in `files[0]`, scaled as `proxy` scales it."""
    scaling, scaled = raw_scaling(proxy, stored)
    return Source("raw", files, shape, proxy.order, stored, scaled, offset, compression,
                  scaling, type(img).__name__)  # fmt: skip


def _describe_nibabel(
    img: Any, proxy: Any, shape: tuple[int, ...], files: tuple[FileId, ...]
) -> Source:
    stored, scaled = _generic_dtypes(img, proxy, shape)
    if type(proxy).__name__ == "PARRECArrayProxy":
        from lazyimg._io.probe import check_rec_size

        check_rec_size(img, proxy)
    return Source(
        kind="nibabel",
        files=files,
        shape=shape,
        order=disk_order(img),
        stored=stored,
        scaled=scaled,
        image_class=type(img).__name__,
    )


def stored_dtype(img: Any) -> np.dtype[Any] | None:
    """The dtype `img` keeps on disk (ECAT: the common type of its frames), None if unknown."""
    get = getattr(img, "get_data_dtype", None)
    if get is None:
        return None
    if isinstance(img, nib.ecat.EcatImage):  # one stored type per frame
        return np.result_type(*(np.dtype(get(f)) for f in range(max(1, img.shape[-1]))))
    return np.dtype(get())


def reopen(source: Source) -> Any:
    """The nibabel image of a ``"nibabel"`` Source, opened again by its own class."""
    cls = _CLASSES.get(source.image_class)
    return nib.load(source.path) if cls is None else cls.from_filename(source.path)


_CLASSES: dict[str, Any] = {
    c.__name__: c for c in (*nib.imageclasses.all_image_classes, nib.ecat.EcatImage)
}


def _generic_dtypes(
    img: Any, proxy: Any, shape: tuple[int, ...]
) -> tuple[np.dtype[Any], np.dtype[Any]]:
    stored = stored_dtype(img) or np.dtype(proxy.dtype)
    kind = type(proxy).__name__
    if kind == "EcatImageArrayProxy":  # nibabel scales every frame to float64
        return stored, np.dtype(np.float64)
    if kind == "MincImageArrayProxy":
        # nibabel returns floats as stored and maps integers through float64 scaling
        return stored, stored if stored.kind == "f" else np.dtype(np.float64)
    if kind == "PARRECArrayProxy":
        scaling = getattr(proxy, "_slice_scaling", None)
        if scaling is None:
            return stored, stored
        return stored, np.result_type(np.empty(0, stored), *scaling)
    # Unknown proxy: the only honest way to learn its dtype is one voxel.
    if 0 in shape:
        return stored, stored
    return stored, np.asarray(proxy[(0,) * len(shape)]).dtype


def check_raw(source: Source | None, proxy: Any, name: str) -> None:
    """Refuse ``dtype="raw"`` where no stored values can be read (`source` None: in memory)."""
    if source is None:  # an array, or a proxy over bytes (from_bytes) read once, scaled
        raise ValueError(
            f"dtype='raw' for {name}: an image kept in memory has only scaled values; use "
            "dtype=None, or make an image of img.dataobj.get_unscaled() first."
        )
    if not (source.kind == "raw" or hasattr(proxy, "_get_unscaled")):
        raise ValueError(
            f"dtype='raw' for {source.path}: nibabel gives only scaled values for "
            f"{source.image_class}; use dtype=None."
        )
