"""The ``lazyimg`` command: ``demo``, ``info`` and ``reduce``.

User mistakes (a missing file, a file that is not an image, a bad option) end
with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from lazyimg.errors import LazyImgError

_OPS = ("mean", "std", "tsnr", "min", "max")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lazyimg")
    except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for (``importlib.metadata`` costs ~20 ms)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"{parser.prog} {_version()}")  # on stdout, as argparse's own action does
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lazyimg",
        description="Open neuroimaging files lazily, in parallel, by their on-disk layout.",
    )
    p.add_argument("--version", action=_VersionAction)
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
    info.add_argument("files", nargs="+", metavar="FILE", help="paths or URLs (s3://, https://)")
    info.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an fsspec storage option for URLs, e.g. anon=true (VALUE is read as JSON if it can be)",
    )
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


def describe_file(path: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``lazyimg info`` reports about one file, as plain JSON-able values.

    nibabel's warnings while reading the header are collected under ``"notes"``.
    """
    import warnings

    import lazyimg
    from lazyimg._display.summary import summarize
    from lazyimg._io.remote import is_url, redact

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = summarize(lazyimg.load(path, storage_options=storage_options))
    info["path"] = redact(path) if is_url(path) else str(path)
    info["notes"] = list(dict.fromkeys(str(w.message).strip() for w in caught))
    return info


def _print_info(info: dict[str, Any]) -> None:
    from lazyimg._display.html import facts_rows

    rows = [(label, text) for label, text in facts_rows(info) if label != "format"]
    fmt = info["format"] + (f" ({info['compression']}-compressed)" if info["compression"] else "")
    lines = [info["path"], f"  {'format':<12} {fmt}"]
    lines += [f"  {label:<12} {text}" for label, text in rows]
    if info["affine"] is not None:
        lines.append(
            f"  {'affine':<12} "
            + "\n               ".join(" ".join(f"{v:9.3f}" for v in row) for row in info["affine"])
        )
    if info["notes"]:
        lines.append(f"  {'note':<12} nibabel said: " + "; ".join(info["notes"]))
    print("\n".join(lines))


def reduce_file(path: str, op: str, axis: str, output: str, progress: bool = True) -> None:
    """Stream reduction `op` of `path` over `axis` into the NIfTI file `output`.

    The input is read slab by slab along its slowest axis on disk (a few MiB at
    a time, the next slab while this one is reduced, with float64 running sums;
    see :mod:`lazyimg._reduce`) and the small result is written through a
    temporary file and a rename: no dask, and memory stays near two slabs plus
    the result.
    """
    from lazyimg import _earlygz

    early = _earlygz.start(path)  # a small .gz decompresses while numpy and nibabel import

    import lazyimg
    from lazyimg._io.axes import array_axes
    from lazyimg._reduce import nifti_suffix, stream_reduce, write_small

    nifti_suffix(output)
    img = lazyimg.load(path, dtype="float32" if op in ("mean", "std", "tsnr") else None)
    kinds = array_axes(img.nibabel_image, img.ndim, path)
    ax = _parse_axis(axis, img, kinds.time, path)
    whole = early.result(img.source) if early is not None else None
    # NIfTI order (space, time, rest), so a 4D MINC (time first) is written right; a reduced
    # spatial axis is kept with length 1, so the affine still places every remaining voxel
    result = stream_reduce(img, op, ax, progress, whole).transpose(kinds.perm)
    if ax not in kinds.spatial:
        result = result.squeeze(axis=kinds.perm.index(ax))
    write_small(result, img, output)


def _parse_axis(axis: str, img: Any, time: int | None, path: str) -> int:
    """The array axis that `axis` ('time' or a number) names in `img`."""
    last = img.ndim - 1
    if axis == "time":
        if time is None:
            raise ValueError(
                f"--axis time: {path} has no time axis (shape {img.shape}); "
                f"pass an axis number from 0 to {last}"
            )
        return time
    try:
        number = int(axis)
    except ValueError:
        raise ValueError(
            f"--axis: expected 'time' or an axis number from 0 to {last}, got {axis!r}"
        ) from None
    if not -img.ndim <= number <= last:
        raise ValueError(
            f"--axis {number}: {path} has {img.ndim} axes (shape {img.shape}); "
            f"pass a number from 0 to {last} (or -{img.ndim} to -1), or 'time'"
        )
    return number % img.ndim


def _storage_options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--storage-option {pair!r}: expected KEY=VALUE, e.g. anon=true")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lazyimg`` console script."""
    args = _parser().parse_args(argv)
    try:
        status = _run(args)
        sys.stdout.flush()  # a closed pipe shows up here, not at exit
        return status
    except BrokenPipeError:
        # the reader went away (``lazyimg info f | head``): nothing left to say to it
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (LazyImgError, FileNotFoundError, ValueError, TypeError, OSError) as err:
        print(f"lazyimg: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lazyimg: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from lazyimg._demo import run_demo

        return run_demo(args.size, args.keep)
    if args.command == "info":
        return _info(args.files, args.json, _storage_options(args.storage_option))
    if args.command == "reduce":
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reduce_file(args.file, args.op, args.axis, args.output, progress=not args.quiet)
        notes = dict.fromkeys(str(w.message).strip() for w in caught)
        if notes:  # nibabel's remarks about the file, once each, as one line
            print(f"lazyimg: note: nibabel said: {'; '.join(notes)}", file=sys.stderr)
        print(f"wrote {args.output}", file=sys.stderr)
        return 0
    return 2  # pragma: no cover - argparse requires a command


def _info(files: Sequence[str], as_json: bool, options: dict[str, Any]) -> int:
    """Describe each file; a bad one is reported and skipped, and the exit status says so."""
    from lazyimg._io.remote import is_url, redact

    status, infos = 0, []
    for path in files:
        try:
            info = describe_file(path, options)
        except (LazyImgError, ValueError, TypeError, OSError) as err:
            if isinstance(err, BrokenPipeError):
                raise
            print(f"lazyimg: error: {err}", file=sys.stderr)
            shown = redact(path) if is_url(path) else path
            status, info = 2, {"path": shown, "error": str(err)}
        if as_json:
            infos.append(info)
        elif "error" not in info:
            _print_info(info)
    if as_json:
        print(json.dumps(infos, indent=2))
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
