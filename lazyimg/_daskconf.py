"""dask's ``array.chunk-size`` setting, without importing dask when nothing can override it.

``import dask`` costs ~0.1 s (its configuration, tokenizing, ``sizeof`` and
more), which is most of what ``lazyimg info`` and ``lazyimg reduce`` would
spend on dask: they plan chunks but never build a graph. dask's setting comes
from, in this order: its shipped ``dask.yaml``, YAML/JSON files in its config
folders, ``DASK_*`` environment variables, and ``dask.config.set`` (which
needs dask imported). So while dask is not imported, no ``DASK_*`` variable is
set and none of its config folders exists, the value is the one in the shipped
``dask.yaml``, read here as text. Anything else (or a ``dask.yaml`` laid out
differently than expected) asks dask itself; the answer is the same either way.
"""

from __future__ import annotations

import os
import re
import sys

#: dask's byte units (``dask.utils.byte_sizes``), lower case.
_UNITS = {
    "": 1,
    "b": 1,
    **{p + s: 1000**i for i, p in enumerate("kmgtp", 1) for s in ("", "b")},
    **{p + s: 1024**i for i, p in enumerate("kmgtp", 1) for s in ("i", "ib")},
}
_SIZE = re.compile(r"""\s*["']?\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*["']?\s*(?:#.*)?$""")


def _config_paths() -> list[str]:
    """The folders dask reads YAML configuration from (``dask.config._get_paths``)."""
    import site

    prefixes = getattr(site, "PREFIXES", [])
    return [
        "/etc/dask",
        os.path.join(sys.prefix, "etc", "dask"),
        *(os.path.join(prefix, "etc", "dask") for prefix in prefixes),
        os.path.join(os.path.expanduser("~"), ".config", "dask"),
    ]


def _parse_size(text: str) -> int | None:
    """``"128MiB"`` -> 134217728, as dask's ``parse_bytes`` does; None if not that simple."""
    match = _SIZE.match(text)
    if match is None or match.group(2).lower() not in _UNITS:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def shipped_chunk_size(yaml_text: str) -> int | None:
    """``array: chunk-size:`` of a ``dask.yaml``, read line by line; None if unsure.

    Examples
    --------
    >>> shipped_chunk_size('array:\\n  backend: "numpy"\\n  chunk-size: "128MiB"\\n')
    134217728
    >>> shipped_chunk_size("array:\\n  rechunk:\\n    chunk-size: 1MiB\\n") is None
    True
    """
    block = None  # the indentation of the keys directly under "array:"
    found = None
    for line in yaml_text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            if block is not None and found is not None:
                break
            block = -1 if stripped.split("#")[0].strip() == "array:" else None
            continue
        if block is None:
            continue
        if block == -1:
            block = indent
        if indent == block and stripped.startswith("chunk-size:"):
            if found is not None:
                return None
            found = _parse_size(stripped[len("chunk-size:") :])
            if found is None:
                return None
    return found


def _shipped_default() -> int | None:
    """The value in the installed dask's own ``dask.yaml``, when nothing can override it."""
    if any(name.startswith("DASK_") for name in os.environ):
        return None
    if any(os.path.exists(p) for p in _config_paths()):
        return None
    from importlib.util import find_spec

    spec = find_spec("dask")
    if spec is None or not spec.origin:
        return None
    try:
        with open(os.path.join(os.path.dirname(spec.origin), "dask.yaml")) as f:
            return shipped_chunk_size(f.read())
    except OSError:
        return None


def chunk_limit() -> int:
    """dask's ``array.chunk-size`` setting, in bytes (see the module docstring)."""
    if "dask" not in sys.modules:
        value = _shipped_default()
        if value is not None:
            return value
    import dask
    from dask.utils import parse_bytes

    return int(parse_bytes(dask.config.get("array.chunk-size")))
