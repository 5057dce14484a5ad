"""Saving to a URL: write the image locally (streamed, atomic), then upload it in parts.

``lazyimg.save(x, "s3://bucket/out.nii.gz", storage_options=...)`` writes the
file chunk by chunk into a private temporary folder with the same writer as a
local save, then hands it to the filesystem's ``put_file``, which uploads large
files as a multipart upload (s3fs, gcsfs). An object store makes the object
visible only when the upload completes, and a failed multipart upload is
aborted, so nothing appears at the target unless the whole image was written;
the temporary file is removed either way. The storage options are used here
only, never shown.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from lazyimg._io.remote import Options, redact
from lazyimg._io.remote_fs import filesystem, retrying

__all__ = ["save_to_url"]


def save_to_url(
    save: Callable[..., Any],
    obj: Any,
    url: str,
    storage_options: dict[str, Any] | None,
    compute: bool,
    **kwargs: Any,
) -> Any:
    """Save `obj` to `url` through a local temporary file; returns `url` (or a Delayed)."""
    options = Options(storage_options)
    fs, path = filesystem(url, options)  # fails early, naming the extra, if none is installed
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    folder = tempfile.mkdtemp(prefix="lazyimg-upload-")
    local = os.path.join(folder, name)

    def upload(_: Any = None) -> str:
        try:
            retrying(lambda: fs.put_file(local, path), url, options, what="upload the image")
            return redact(url)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    try:
        written = save(obj, local, compute=compute, **kwargs)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if compute:
        return upload()
    import dask

    return dask.delayed(upload, pure=False)(written)
