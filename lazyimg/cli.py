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
    a time, with float64 running sums) and the small result is written through
    a temporary file and a rename: no dask graph, so neither ``dask.array`` nor
    its thread pool is started, and memory stays near one slab plus the result.
    """
    import lazyimg
    from lazyimg._io.axes import array_axes

    img = lazyimg.load(path, dtype="float32" if op in ("mean", "std", "tsnr") else None)
    kinds = array_axes(img.nibabel_image, img.ndim, path)
    ax = _parse_axis(axis, img, kinds.time, path)
    # NIfTI order (space, time, rest), so a 4D MINC (time first) is written right; a reduced
    # spatial axis is kept with length 1, so the affine still places every remaining voxel
    result = _stream_reduce(img, op, ax, progress).transpose(kinds.perm)
    if ax not in kinds.spatial:
        result = result.squeeze(axis=kinds.perm.index(ax))
    _write_small(result, img, output)


#: Bytes of input read per step of ``reduce``.
_SLAB_BYTES = 8 << 20


def _stream_reduce(img: Any, op: str, ax: int, progress: bool) -> Any:
    """`op` of `img` over axis `ax` (kept with length 1), reading one slab at a time."""
    import numpy as np

    slow = img.ndim - 1 if img.disk_order == "F" else 0
    n = img.shape[slow]
    per = max(1, _SLAB_BYTES // max(1, img.nbytes // max(n, 1)))
    acc: Any = None
    parts = []
    for start in range(0, n, per):
        index = [slice(None)] * img.ndim
        index[slow] = slice(start, min(n, start + per))
        x = img.slicecopy[tuple(index)]
        if ax == slow:
            acc = _accumulate(op, x, ax, acc)
        else:  # each slab reduces by itself; the results line up along the slow axis
            parts.append(_finish(op, _accumulate(op, x, ax, None)))
        if progress and n > per:
            print(f"\rreduce: {min(n, start + per)}/{n}", end="", file=sys.stderr)
    if progress and n > per:
        print(file=sys.stderr)
    return _finish(op, acc) if ax == slow else np.concatenate(parts, axis=slow)


def _accumulate(op: str, x: Any, ax: int, acc: Any) -> Any:
    """Running state of `op` over axis `ax`: extremes, or (count, shift, sum, sum of squares)."""
    import numpy as np

    if op in ("min", "max"):
        part = getattr(x, op)(axis=ax, keepdims=True)
        return part if acc is None else getattr(np, op + "imum")(acc, part)
    if acc is None:  # sums of x - shift: no cancellation when the mean is far from zero
        shift = np.take(x, [0], axis=ax)
        zeros = np.zeros(shift.shape, np.float64)
        acc = [0, shift, zeros, zeros.copy()]
    d = np.subtract(x, acc[1], out=x)  # in the input's dtype; summed in float64
    acc[0] += x.shape[ax]
    acc[2] += d.sum(axis=ax, keepdims=True, dtype=np.float64)
    acc[3] += np.square(d, out=d).sum(axis=ax, keepdims=True, dtype=np.float64)
    return acc


def _finish(op: str, acc: Any) -> Any:
    import numpy as np

    if op in ("min", "max"):
        return acc
    count, shift, s1, s2 = acc
    mean = s1 / count
    std = np.sqrt(np.maximum(s2 / count - mean * mean, 0))
    if op == "mean":
        return (mean + shift).astype(np.float32)
    if op == "std":
        return std.astype(np.float32)
    tsnr = np.divide(mean + shift, std, out=np.zeros_like(std), where=std > 0)
    return tsnr.astype(np.float32)


def _write_small(result: Any, img: Any, output: str) -> None:
    """Write an in-memory result as NIfTI-1 through a temporary file and a rename."""
    import nibabel as nib

    header = img.header if isinstance(img.header, nib.Nifti1Header) else None
    out = nib.Nifti1Image(result, img.affine, header.copy() if header is not None else None)
    out.header.set_data_dtype(result.dtype)
    out.header.set_slope_inter(1.0, 0.0)
    if header is not None:
        out.header.set_xyzt_units(*header.get_xyzt_units())
    suffix = next((x for x in (".nii.gz", ".nii") if output.lower().endswith(x)), None)
    if suffix is None:
        raise ValueError(f"-o {output}: reduce writes NIfTI; name the output .nii or .nii.gz")
    folder, base = os.path.split(os.path.abspath(output))
    tmp = os.path.join(folder, f".{base}.{os.getpid()}.tmp{suffix}")
    try:
        nib.save(out, tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
