"""Many images as one Dataset: a labelled stacking dimension and every source path.

``xr.open_mfdataset(paths, engine="lazyimg", ...)`` alone gives the stacked
dimension no coordinate and keeps the attrs of the first file only, so
``attrs["source"]`` names one file of many. :func:`open_mfdataset` stacks along
a dimension whose coordinate names each file -- the BIDS subject when every
file name has a distinct ``sub-<label>`` entity (dimension ``"subject"``),
else the file names without their image suffix (dimension ``"file"``) -- and
a ``source`` coordinate along it keeps every path. Attrs that differ between
the files (``source``, a header field) are dropped rather than taken from the
first file. :func:`stack_labels` works the labels out (pure), and
:func:`label_file` is the ``preprocess`` step for anyone calling
``xr.open_mfdataset`` directly.
"""

from __future__ import annotations

import functools
import glob
import os
import re
from collections.abc import Sequence
from typing import Any

import xarray as xr

from lazyimg.errors import ImageNotFoundError
from lazyimg.xarray.backend import SUFFIXES

__all__ = ["SOURCE", "label_file", "open_mfdataset", "stack_labels"]

#: Name of the coordinate that keeps each file's path.
SOURCE = "source"

_SUBJECT = re.compile(r"(?:^|_)sub-([A-Za-z0-9]+)(?:_|\.|$)")


def _stem(path: str) -> str:
    name = os.path.basename(path)
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def stack_labels(paths: Sequence[str | os.PathLike[str]]) -> tuple[str, list[str]]:
    """The stacking dimension's name and one label per file.

    Examples
    --------
    >>> stack_labels(["sub-01_task-rest_bold.nii.gz", "ds/sub-02_task-rest_bold.nii.gz"])
    ('subject', ['01', '02'])
    >>> stack_labels(["a/run1.nii", "a/run2.nii"])
    ('file', ['run1', 'run2'])
    """
    names = [os.path.basename(os.fspath(p)) for p in paths]
    subjects = [m.group(1) if (m := _SUBJECT.search(n)) else None for n in names]
    if all(subjects) and len(set(subjects)) == len(subjects):
        return "subject", [str(s) for s in subjects]
    stems = [_stem(os.fspath(p)) for p in paths]
    if len(set(stems)) == len(stems):
        return "file", stems
    return "file", [os.path.abspath(os.fspath(p)) for p in paths]


def label_file(ds: xr.Dataset, *, dim: str, labels: dict[str, str]) -> xr.Dataset:
    """``preprocess`` for ``xr.open_mfdataset``: a length-1 `dim` labelled with the file's label.

    `labels` maps each absolute path to its label (from :func:`stack_labels`);
    the file's path is the ``source`` coordinate along `dim`. Use with
    ``functools.partial(label_file, dim=..., labels=...)``.
    """
    path = os.path.abspath(ds.encoding["source"])  # xarray records the file it opened
    out = ds.expand_dims({dim: [labels.get(path, _stem(path))]})
    return out.assign_coords({SOURCE: (dim, [path])})


def open_mfdataset(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    dim: str | None = None,
    chunks: Any = None,
    **kwargs: Any,
) -> xr.Dataset:
    """Open many images as one Dataset stacked along a labelled dimension.

    Parameters
    ----------
    paths : str, os.PathLike or sequence of them
        Image files, or a glob pattern (sorted).
    dim : str, optional
        Name of the stacking dimension; default ``"subject"`` for BIDS names
        with distinct ``sub-`` entities, else ``"file"``.
    chunks : optional
        As for ``xr.open_mfdataset``; default ``{}``: the disk-aligned chunks
        of each file (``{"time": 10}`` splits time without a warning).
    **kwargs
        Passed to ``xr.open_mfdataset`` (e.g. ``parallel=True``, ``dtype=``).

    Returns
    -------
    xarray.Dataset
        Variable ``"image"`` with the stacking dimension first, a coordinate
        of labels along it and ``source``, the absolute path of each file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from lazyimg.testing import write_fmri
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> paths = [write_fmri(tmp / f"sub-0{n}_bold.nii", (4, 4, 3, 2)) for n in (1, 2)]
    >>> ds = open_mfdataset(paths)
    >>> ds.image.dims, ds.subject.values.tolist()
    (('subject', 'i', 'j', 'k', 'time'), ['01', '02'])
    >>> [pathlib.Path(p).name for p in ds.source.values]
    ['sub-01_bold.nii', 'sub-02_bold.nii']
    """
    if isinstance(paths, (str, os.PathLike)):
        pattern = os.fspath(paths)
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    else:
        found = [os.fspath(p) for p in paths]
    if not found:
        raise ImageNotFoundError(f"{paths}: no files match; check the pattern or the folder.")
    found = [os.path.abspath(p) for p in found]
    auto_dim, labels = stack_labels(found)
    dim = dim or auto_dim
    kwargs.setdefault("combine_attrs", "drop_conflicts")
    return xr.open_mfdataset(
        found,
        engine="lazyimg",
        combine="nested",
        concat_dim=dim,
        chunks={} if chunks is None else chunks,
        preprocess=functools.partial(
            label_file, dim=dim, labels=dict(zip(found, labels, strict=True))
        ),
        **kwargs,
    )
