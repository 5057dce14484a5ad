"""Build a gzip file's seek-point index ahead of time, and save it.

One sequential pass through the stream (see :mod:`lazyimg._io.gzip.reader`);
the index is saved where :mod:`lazyimg._io.gzip.index` looks for it.
"""

from __future__ import annotations

import os

from lazyimg._io.gzip.index import GzipIndex, save
from lazyimg._io.gzip.reader import GzipReader
from lazyimg._io.identity import FileId

__all__ = ["build_index"]


def build_index(path: str | os.PathLike[str], *, where: str | None = None) -> GzipIndex:
    """Build (or load) the seek-point index of a gzip file, and save it.

    Useful before a cluster job: with ``where="beside"`` every worker that
    sees the data also sees its index, and none decompresses the file to find
    its way.

    Parameters
    ----------
    path : str or PathLike
        A gzip-compressed file.
    where : {"cache", "beside", "off"}, optional
        Where to save the index (default: ``$LAZYIMG_GZIP_INDEX``, else
        ``"cache"``). ``"beside"`` writes ``<path>.gzidx`` next to the data.
        Files under 1 MiB, and indexes without a seek point past the start,
        are not saved.

    Returns
    -------
    GzipIndex

    Raises
    ------
    CorruptImageError
        The stream is truncated, damaged, or does not match its trailer.

    Examples
    --------
    >>> import os, tempfile, numpy as np, nibabel as nib
    >>> path = os.path.join(tempfile.mkdtemp(), "img.nii.gz")
    >>> nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), "int16"), np.eye(4)), path)
    >>> index = build_index(path, where="off")
    >>> index.uncompressed_size, int(index.upos[0])
    (736, 0)
    """
    fid = FileId.of(path)
    reader = GzipReader(fid, data_end=0)
    reader._save_to = where
    try:
        if reader.index is not None and where is not None:
            save(fid, reader.index, where)
        return reader.complete()
    finally:
        reader.close()
