"""Numbers and types spelled for people: sizes in binary units, dtypes in words, plurals."""

from __future__ import annotations

from typing import Any

import numpy as np


def human_bytes(n: float) -> str:
    """A size in bytes with binary units (B, KiB, MiB, GiB, TiB), never "0.0".

    Examples
    --------
    >>> human_bytes(0), human_bytes(348), human_bytes(1536), human_bytes(3 * 2**30)
    ('0 B', '348 B', '1.5 KiB', '3 GiB')
    """
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if n < 100 else f"{n:.0f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def describe_dtype(dtype: Any) -> str:
    """A numpy dtype in words: its name, and its byte order when that is not this machine's.

    Examples
    --------
    >>> describe_dtype(">i2"), describe_dtype("uint8"), describe_dtype("<f4")
    ('int16, big-endian', 'uint8', 'float32')
    """
    dt = np.dtype(dtype)
    name = dt.name
    if dt.itemsize > 1 and dt.byteorder in "<>" and not dt.isnative:
        return f"{name}, {'big' if dt.byteorder == '>' else 'little'}-endian"
    return name


def plural(n: int, word: str) -> str:
    """``"1 chunk"``, ``"2 chunks"``.

    Examples
    --------
    >>> plural(1, "chunk"), plural(12, "chunk")
    ('1 chunk', '12 chunks')
    """
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def chunk_summary(chunks: tuple[tuple[int, ...], ...]) -> str:
    """How many chunks, laid out how, and the largest one's shape."""
    counts = [len(c) for c in chunks]
    total = int(np.prod(counts)) if counts else 1
    largest = tuple(max(c) if c else 0 for c in chunks)
    grid = " x ".join(str(c) for c in counts)
    if total == 1:
        return f"1 chunk {largest}"
    return f"{plural(total, 'chunk')} ({grid}), largest {largest}"


def seconds(value: float) -> str:
    """A duration: seconds, or milliseconds below one second.

    Examples
    --------
    >>> seconds(2.0), seconds(0.002), seconds(1.25)
    ('2 s', '2 ms', '1.25 s')
    """
    if 0 < abs(value) < 1:
        return f"{value * 1e3:g} ms"
    return f"{value:g} s"
