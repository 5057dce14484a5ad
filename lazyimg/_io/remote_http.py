"""Range requests over HTTP(S) whose bodies land straight in the caller's buffer.

fsspec's ``cat_ranges`` gathers each body into a new ``bytes`` (one copy, and
fresh pages to fault in for every request), which lazyimg then copies into the
chunk's array. Over HTTP, where fsspec hands out its aiohttp session, lazyimg
instead sends the requests itself on fsspec's event loop and copies each piece
of a body into its destination as it arrives: one copy from the socket into
the array, no intermediate object. The answer to each request is the number
of body bytes the server sent (or the exception it raised), so the caller
checks lengths and retries as for ``cat_ranges``. Other filesystems (S3, GCS)
go through ``cat_ranges``.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["direct_reader"]


def direct_reader(fs: Any) -> Any:
    """A function ``get(url, kwargs, ranges, targets) -> list[int | exception]``, or None.

    None when `fs` is not fsspec's HTTP filesystem (or lacks what this needs).
    """
    if type(fs).__name__ != "HTTPFileSystem" or not hasattr(fs, "set_session"):
        return None

    def get(
        url: str, kwargs: dict[str, Any], ranges: list[tuple[int, int]], targets: list[memoryview]
    ) -> list[Any]:
        from fsspec.asyn import sync

        return list(sync(fs.loop, _get_all, fs, url, kwargs, ranges, targets))

    return get


async def _get_all(
    fs: Any,
    url: str,
    kwargs: dict[str, Any],
    ranges: list[tuple[int, int]],
    targets: list[memoryview],
) -> list[Any]:
    session = await fs.set_session()
    kw = {**fs.kwargs, **kwargs}
    headers = {**kw.pop("headers", {})}
    coros = [
        _get_into(fs, session, url, kw, headers, start, end, target)
        for (start, end), target in zip(ranges, targets, strict=True)
    ]
    return list(await asyncio.gather(*coros, return_exceptions=True))


async def _get_into(
    fs: Any,
    session: Any,
    url: str,
    kw: dict[str, Any],
    headers: dict[str, str],
    start: int,
    end: int,
    target: memoryview,
) -> int:
    """Fetch bytes ``[start, end)`` into `target`; the body's length (may exceed `target`)."""
    wanted = {**headers, "Range": f"bytes={start}-{end - 1}"}
    async with session.get(fs.encode_url(url), headers=wanted, **kw) as r:
        fs._raise_not_found_for_status(r, url)
        pos = 0
        async for piece in r.content.iter_any():
            n = len(piece)
            if pos + n > len(target):  # more than asked: the server ignored the range
                length = r.content_length
                return int(length) if length is not None else pos + n
            target[pos : pos + n] = piece
            pos += n
        return pos
