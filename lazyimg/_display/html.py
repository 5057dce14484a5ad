"""The HTML summary a notebook shows for a LazyImage: what it is, where it lives, its chunks."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from lazyimg._display.summary import summarize
from lazyimg._display.text import chunk_summary, describe_dtype, human_bytes, seconds

if TYPE_CHECKING:
    from lazyimg.image import LazyImage

_CELL = "text-align:left;vertical-align:top;padding:1px 6px"


def facts_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, text)`` rows describing an image, from :func:`summarize`; plain text."""
    order = "last axis slowest (F)" if info["disk_order"] == "F" else "first axis slowest (C)"
    stored = describe_dtype(info["stored_dtype"])
    dtype = describe_dtype(info["dtype"])
    size = f"{human_bytes(info['nbytes'])} in memory"
    if info["path"] is None:
        size += " (views of an array, no file)"
    else:
        size += f", {human_bytes(info['size_on_disk'])} on disk"
        if info["compression"]:
            size += f" ({info['compression']})"
    zooms = info["voxel_sizes"]
    rows = [
        ("format", info["format"]),
        ("shape", f"{tuple(info['shape'])}: {', '.join(info['axes'])}"),
        ("dtype", dtype if stored == dtype else f"{dtype} (stored {stored})"),
        ("disk order", order),
        ("chunks", chunk_summary(tuple(tuple(c) for c in info["chunks"]))),
        ("size", size),
        ("voxel size", " x ".join(f"{z:g}" for z in zooms) + " mm" if zooms else "-"),
    ]
    if info["time_axis"] is not None:
        tr = info["tr_seconds"]
        rows.append(("TR", seconds(tr) if tr else "not stated in the header"))
    return rows


def html_repr(img: LazyImage) -> str:
    """An HTML table: what the image is, where it lives, how it is chunked, its affine."""
    info = summarize(img)
    name = html.escape(info["path"] or "in-memory image")
    body = "".join(
        f"<tr><th style='{_CELL}'>{k}</th><td style='{_CELL}'>{html.escape(v)}</td></tr>"
        for k, v in facts_rows(info)
    )
    affine = "".join(
        "<tr>" + "".join(f"<td style='text-align:right'>{v:.4g}</td>" for v in row) + "</tr>"
        for row in info["affine"] or []
    )
    try:
        chunk_svg = img.data.to_svg(size=120)
    except Exception:  # dask draws at most a few dimensions nicely; the table suffices
        chunk_svg = ""
    return (
        "<div class='lazyimg-repr' style='max-width:100%'>"
        "<div style='overflow-wrap:anywhere;word-break:break-all'>"
        f"<strong>LazyImage</strong> <code>{name}</code></div>"
        "<table style='display:inline-table;vertical-align:top;margin-right:1em'>"
        f"{body}</table>"
        "<table style='display:inline-table;vertical-align:top'>"
        f"<caption>affine</caption>{affine}</table>"
        f"<div style='display:inline-block;vertical-align:top'>{chunk_svg}</div>"
        "</div>"
    )
