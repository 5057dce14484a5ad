"""The ``lazyimg`` command: ``demo``, ``info`` and ``reduce``.

User mistakes (a missing file, a file that is not an image, a bad option) end
with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from lazyimg.errors import LazyImgError

_OPS = ("mean", "std", "tsnr", "min", "max")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lazyimg",
        description="Open neuroimaging files lazily, in parallel, by their on-disk layout.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the end-to-end demo on a generated fMRI-like image")
    demo.add_argument(
        "--size",
        choices=("small", "medium", "large"),
        default="large",
        help="image size (large: ~470 MB, the default)",
    )
    demo.add_argument("--keep", metavar="DIR", help="write files into DIR and keep them")

    info = sub.add_parser("info", help="describe image files without reading their voxels")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument(
        "--json", action="store_true", help="print JSON (a list, one object per file)"
    )

    red = sub.add_parser("reduce", help="stream a reduction over one axis into a new NIfTI file")
    red.add_argument("file", metavar="FILE")
    red.add_argument("--op", choices=_OPS, required=True)
    red.add_argument(
        "--axis", default="time", help="'time' (the 4th axis) or an axis number (default: time)"
    )
    red.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="output file (.nii or .nii.gz)"
    )
    red.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def describe_file(path: str) -> dict[str, Any]:
    """What ``lazyimg info`` reports about one file, as plain JSON-able values."""
    import lazyimg

    img = lazyimg.load(path)
    nib_img = img.nibabel_image
    zooms = (
        [float(z) for z in nib_img.header.get_zooms()]
        if hasattr(nib_img.header, "get_zooms")
        else []
    )
    src = img.source
    tr = _repetition_time(nib_img)
    return {
        "path": str(path),
        "format": type(nib_img).__name__,
        "shape": list(img.shape),
        "dtype": str(img.dtype),
        "stored_dtype": str(np.dtype(nib_img.get_data_dtype())),
        "disk_order": img.disk_order,
        "compression": src.compression if src else None,
        "chunks": [list(c) for c in img.chunks],
        "size_on_disk": sum(f.size for f in src.files) if src else 0,
        "nbytes": img.nbytes,
        "affine": img.affine.tolist(),
        "voxel_sizes": zooms[:3],
        "tr_seconds": tr,
    }


def _repetition_time(nib_img: Any) -> float | None:
    hdr = nib_img.header
    try:
        zooms = hdr.get_zooms()
    except Exception:
        return None
    if len(zooms) < 4 or not zooms[3]:
        return None
    tr = float(zooms[3])
    units = hdr.get_xyzt_units()[1] if hasattr(hdr, "get_xyzt_units") else "sec"
    if type(nib_img).__name__ == "MGHImage":
        units = "msec"
    return tr / 1000.0 if units == "msec" else tr / 1e6 if units == "usec" else tr


def _print_info(info: dict[str, Any]) -> None:
    mb = info["size_on_disk"] / 1e6
    lines = [
        f"{info['path']}",
        f"  format       {info['format']}"
        + (f" ({info['compression']}-compressed)" if info["compression"] else ""),
        f"  shape        {tuple(info['shape'])}",
        f"  dtype        {info['dtype']} (stored {info['stored_dtype']})",
        f"  disk order   {info['disk_order']} "
        + ("(last axis slowest)" if info["disk_order"] == "F" else "(first axis slowest)"),
        f"  chunks       {' x '.join(str(len(c)) for c in info['chunks'])} blocks, "
        f"largest {tuple(max(c) for c in info['chunks'])}",
        f"  size         {mb:.1f} MB on disk, {info['nbytes'] / 1e6:.1f} MB in memory",
        f"  voxel sizes  {tuple(round(z, 4) for z in info['voxel_sizes'])}",
        f"  TR           {info['tr_seconds']} s" if info["tr_seconds"] else "  TR           -",
        "  affine       "
        + "\n               ".join(" ".join(f"{v:9.3f}" for v in row) for row in info["affine"]),
    ]
    print("\n".join(lines))


def reduce_file(path: str, op: str, axis: str, output: str, progress: bool = True) -> None:
    """Stream reduction `op` of `path` over `axis` into the NIfTI file `output`."""
    import contextlib

    import dask.array as da

    import lazyimg

    img = lazyimg.load(path, dtype="float32" if op in ("mean", "std", "tsnr") else None)
    ax = img.ndim - 1 if axis == "time" and img.ndim >= 4 else None
    if ax is None:
        try:
            ax = int(axis) % img.ndim
        except ValueError:
            raise ValueError(f"--axis: expected 'time' or an axis number, got {axis!r}") from None
        if axis == "time":
            raise ValueError(f"{path}: has no time axis (shape {img.shape}); pass --axis N")
    x = img.data
    if op == "tsnr":
        m, s = x.mean(axis=ax), x.std(axis=ax)
        result = da.where(s > 0, m / da.where(s > 0, s, 1), 0).astype("float32")
    else:
        result = getattr(x, op)(axis=ax)
    if progress:
        from dask.diagnostics import ProgressBar

        bar: Any = ProgressBar(minimum=0.5, out=sys.stderr)
    else:
        bar = contextlib.nullcontext()
    with bar:  # streamed: the input is read chunk by chunk, the output written by regions
        lazyimg.save(result, output, affine=img.affine if ax >= 3 else np.eye(4))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lazyimg`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from lazyimg._demo import run_demo

            return run_demo(args.size, args.keep)
        if args.command == "info":
            infos = [describe_file(f) for f in args.files]
            if args.json:
                print(json.dumps(infos, indent=2))
            else:
                for info in infos:
                    _print_info(info)
            return 0
        if args.command == "reduce":
            reduce_file(args.file, args.op, args.axis, args.output, progress=not args.quiet)
            print(f"wrote {args.output}", file=sys.stderr)
            return 0
    except (LazyImgError, FileNotFoundError, ValueError, TypeError, OSError) as err:
        print(f"lazyimg: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lazyimg: interrupted", file=sys.stderr)
        return 130
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
