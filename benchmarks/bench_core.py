"""Core benchmark of lazyimg against nibabel, naive dask and raw ``os.pread``.

Builds a 4D int16 NIfTI-1 file (default 96x96x64x600, ~700 MB) and a copy with
``scl_slope``/``scl_inter`` set, keeps both in page cache, and prints from one
run, side by side:

* one volume ``[..., k]``, first as the first read in a fresh process, then
  warm and repeated,
* one slice through all volumes ``[:, :, z, :]`` (warm, repeated),
* one voxel's time series ``[x, y, z, :]`` (warm, repeated),
* the temporal mean ``.mean(-1)`` (threaded scheduler; warm, repeated),
* the graph construction of ``lazyimg.load`` on a sparse ~160 GB header,
* one volume (fresh process) and the mean of the scaled file,

then checks the targets of the core issue (PASS/MISS with the ratio).

Run ``python benchmarks/bench_core.py [--shape 96 96 64 600] [--repeat 5]``;
``--help`` lists the options. See ``benchmarks/README.md`` for the columns.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import dask
import nibabel as nib
import numpy as np

import lazyimg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (
    Measurement,
    fmt_bytes,
    fmt_ratio,
    fmt_time,
    run,
    table,
    warm,
)

SLOPE, INTER = 0.5, 10.0
BIG_SHAPE = (256, 256, 256, 5000)
NAIVE_VOLUMES = 114  # volumes per chunk of the naive dask peer (~128 MiB, dask's default size)

# --------------------------------------------------------------------------- test files


def _header(shape: tuple[int, ...], slope: float | None, inter: float | None) -> nib.Nifti1Header:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.int16)
    hdr.set_zooms((2.0, 2.0, 2.0, 1.0)[: len(shape)])
    hdr.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    hdr.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    hdr.set_slope_inter(slope, inter)
    hdr["vox_offset"] = 352
    return hdr


def _write_header(f: BinaryIO, hdr: nib.Nifti1Header) -> None:
    f.write(hdr.binaryblock)
    f.write(b"\0" * (352 - len(hdr.binaryblock)))  # empty extension flag


def make_files(folder: Path, shape: tuple[int, ...]) -> tuple[Path, Path]:
    """Write the plain and the scaled test file (same voxel bytes); return their paths."""
    plain, scaled = folder / "bold.nii", folder / "bold_scaled.nii"
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    base = ((x * 3 + y * 5 + z * 7) % 2000).astype(np.int16)  # deterministic, no overflow
    with open(plain, "wb") as f:
        _write_header(f, _header(shape, None, None))
        for t in range(shape[3]):
            vol = base * np.int16(t % 13 + 1) + np.int16(t % 97)
            f.write(np.asfortranarray(vol).tobytes(order="F"))
    with open(plain, "rb") as src, open(scaled, "wb") as dst:
        _write_header(dst, _header(shape, SLOPE, INTER))
        dst.flush()  # the copy below writes at the descriptor's offset
        src.seek(352)
        size = os.fstat(src.fileno()).st_size - 352
        done = 0
        while done < size:
            done += os.copy_file_range(src.fileno(), dst.fileno(), size - done)
    return plain, scaled


def make_sparse(folder: Path) -> Path:
    """A NIfTI header of BIG_SHAPE int16 whose data is a hole (no disk space used)."""
    path = folder / "big_sparse.nii"
    with open(path, "wb") as f:
        _write_header(f, _header(BIG_SHAPE, None, None))
        f.truncate(352 + math.prod(BIG_SHAPE) * 2)
    return path


# --------------------------------------------------------------------------- candidates


@dataclass
class Candidate:
    """One way to do an operation: how to set it up and what to time."""

    name: str
    setup: str
    code: str
    kind: str  # "lazyimg", "peer" or "limit"
    repeat: int | None = None  # overrides --repeat (for the very slow get_fdata)


IMPORT_LAZY = "import numpy as np\nimport lazyimg\n"
IMPORT_NIB = "import numpy as np\nimport nibabel as nib\n"
IMPORT_DASK = "import numpy as np\nimport nibabel as nib\nimport dask.array as da\n"
# dask imports much of itself on the first compute (~5 MiB of modules, ~0.25 s); pay that
# on an unrelated array, so a "fresh process" measures the first read, not dask's imports
WARM_DASK = "import dask.array as da\nda.zeros(2, chunks=1).sum().compute()\n"
IMPORT_RAW = "import os\nimport numpy as np\n"
NAIVE = f"da.from_array(nib.load(f).dataobj, chunks=(-1, -1, -1, {NAIVE_VOLUMES}))"


def _pread_runs(offsets: str, run_bytes: int, out_shape: str, scale: bool = False) -> str:
    """Measured source: open, pread every run into a fresh F-ordered array, close."""
    lines = [
        "fd = os.open(f, os.O_RDONLY)",
        f"out = np.empty({out_shape}, np.int16, order='F')",
        "flat = memoryview(out.reshape(-1, order='F').view(np.uint8))",
        f"for i, off in enumerate({offsets}):",
        f"    os.preadv(fd, [flat[i * {run_bytes}:(i + 1) * {run_bytes}]], off)",
        "os.close(fd)",
    ]
    if scale:
        lines += [  # nibabel's scaled dtype here is float64
            "raw = out",
            "out = np.multiply(raw, SLOPE, dtype=np.float64)",
            "np.add(out, INTER, out=out)",
        ]
    return "\n".join(lines) + "\n"


def index_candidates(
    f: Path, sel: str, pread: str, *, fdata: bool = False, touch: str = "out"
) -> list[Candidate]:
    """The candidates of one basic index `sel`; `pread` is the raw limit's measured source."""
    pre = f"f = {str(f)!r}\n"
    lazy = pre + IMPORT_LAZY + "img = lazyimg.load(f)\n"
    nibl = pre + IMPORT_NIB + "img = nib.load(f)\n"
    done = f"result = {touch}\n"
    cands = [
        Candidate("lazyimg slicecopy", lazy, f"out = img.slicecopy{sel}\n{done}", "lazyimg"),
        Candidate(
            "lazyimg data.compute",
            # load defers the graph to the first .data: build it in the setup, as load once did
            WARM_DASK + lazy + "img.data\n",
            f"out = img.data{sel}.compute()\n{done}",
            "lazyimg",
        ),
        Candidate("nib dataobj", nibl, f"out = img.dataobj{sel}\n{done}", "peer"),
    ]
    if fdata:
        cands.append(
            Candidate(
                "nib get_fdata",
                nibl,
                f"out = img.get_fdata(){sel}\n{done}",
                "peer",
                repeat=1,
            )
        )
    cands += [
        Candidate(
            f"naive da.from_array ({NAIVE_VOLUMES}-vol)",
            WARM_DASK + pre + IMPORT_DASK + f"x = {NAIVE}\n",
            f"out = x{sel}.compute()\n{done}",
            "peer",
        ),
        Candidate(
            "raw pread",
            pre + IMPORT_RAW + f"SLOPE, INTER = {SLOPE}, {INTER}\n",
            pread + done,
            "limit",
        ),
    ]
    return cands


def one_volume(f: Path, k: int, shape: tuple[int, ...], scaled: bool, fresh: bool) -> list:
    vol_bytes = math.prod(shape[:3]) * 2
    pread = _pread_runs(f"[352 + {k} * {vol_bytes}]", vol_bytes, str(shape[:3]), scale=scaled)
    return index_candidates(f, f"[..., {k}]", pread, fdata=fresh, touch="out.max()")


def one_slice(f: Path, z: int, shape: tuple[int, ...]) -> list:
    vol_bytes = math.prod(shape[:3]) * 2
    run_bytes = shape[0] * shape[1] * 2
    first = 352 + z * run_bytes
    offsets = f"range({first}, {first + shape[3] * vol_bytes}, {vol_bytes})"
    pread = _pread_runs(offsets, run_bytes, f"({shape[0]}, {shape[1]}, {shape[3]})")
    return index_candidates(f, f"[:, :, {z}, :]", pread)


def one_voxel(f: Path, xyz: tuple[int, int, int], shape: tuple[int, ...]) -> list:
    x, y, z = xyz
    vol_bytes = math.prod(shape[:3]) * 2
    first = 352 + 2 * (x + shape[0] * (y + shape[1] * z))
    offsets = f"range({first}, {first + shape[3] * vol_bytes}, {vol_bytes})"
    pread = _pread_runs(offsets, 2, f"({shape[3]},)")
    return index_candidates(f, f"[{x}, {y}, {z}, :]", pread)


def temporal_mean(f: Path, shape: tuple[int, ...], scaled: bool) -> list:
    pre = f"f = {str(f)!r}\n"
    nbytes = math.prod(shape) * 2
    raw = _pread_runs("[352]", nbytes, str(shape))
    if scaled:  # the mean of the stored values, scaled afterwards: a lower bound
        raw += f"out = out.mean(-1) * {SLOPE} + {INTER}\n"
    else:
        raw += "out = out.mean(-1)\n"
    return [
        Candidate(
            "lazyimg data.mean",
            WARM_DASK + pre + IMPORT_LAZY,
            "out = lazyimg.load(f).data.mean(-1).compute(scheduler='threads')\nresult = out\n",
            "lazyimg",
        ),
        Candidate(
            "nib memmap asarray.mean",
            pre + IMPORT_NIB,
            "out = np.asarray(nib.load(f).dataobj).mean(-1)\nresult = out\n",
            "peer",
        ),
        Candidate(
            "nib get_fdata.mean",
            pre + IMPORT_NIB,
            "out = nib.load(f).get_fdata().mean(-1)\nresult = out\n",
            "peer",
            repeat=2,
        ),
        Candidate(
            f"naive da.from_array ({NAIVE_VOLUMES}-vol)",
            WARM_DASK + pre + IMPORT_DASK,
            f"out = {NAIVE}.mean(-1).compute(scheduler='threads')\nresult = out\n",
            "peer",
        ),
        Candidate(
            "raw pread all + np.mean" + (" (scaled after)" if scaled else ""),
            pre + IMPORT_RAW,
            raw + "result = out\n",
            "limit",
        ),
    ]


# --------------------------------------------------------------------------- running


@dataclass
class Row:
    cand: Candidate
    m: Measurement


def measure(
    cands: list[Candidate],
    repeat: int,
    fresh: bool,
    label: str,
    patch: str = "",
    rounds: int = 1,
) -> list[Row]:
    """Measure every candidate `repeat` times (a candidate's own `repeat` wins).

    Runs are interleaved so that a change in the machine's load hits all
    candidates alike: fresh processes go round by round (repeat 1 of every
    candidate, then repeat 2, ...); warm candidates run in `rounds` processes
    each, every process doing one unmeasured run and then its share of the
    repeats. `patch` is source run in the lazyimg candidates' processes first.
    """
    global current
    current = label
    how = "fresh processes" if fresh else f"warm, in {rounds} process(es) each"
    print(f"  {label}: {len(cands)} candidates x {repeat} ({how})", end="", flush=True)
    t0 = time.perf_counter()
    got = {c.name: Measurement() for c in cands}
    for i in range(repeat if fresh else rounds):
        for c in cands:
            n = c.repeat if c.repeat is not None else repeat
            setup = (patch if c.kind == "lazyimg" else "") + c.setup
            if fresh and i < n:
                got[c.name] = got[c.name] + run(c.code, setup)
            elif not fresh:
                share = n // rounds + (1 if i < n % rounds else 0)
                if share:
                    got[c.name] = got[c.name] + run(c.code, setup, repeat=share, warmup=1)
    print(f" {time.perf_counter() - t0:.0f} s", flush=True)
    return [Row(c, got[c.name]) for c in cands]


def _agree(a: object, b: object) -> bool:
    if not isinstance(a, float) or not isinstance(b, float):
        return a == b
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def show(title: str, rows: list[Row], payload: int) -> str:
    peers = [r.m.seconds for r in rows if r.cand.kind == "peer"]
    best_peer = min(peers) if peers else None
    limit = next((r.m.seconds for r in rows if r.cand.kind == "limit"), None)
    ref = rows[0].m.checksum
    out = []
    for r in rows:
        m = r.m
        out.append(
            [
                r.cand.name,
                fmt_time(m.seconds),
                fmt_ratio(m.seconds, best_peer),
                fmt_ratio(m.seconds, limit),
                fmt_bytes(m.rchar),
                fmt_bytes(m.mapped) if m.mapped else "0",
                fmt_bytes(m.peak_anon),
                fmt_bytes(m.peak_rss),
                "ok" if _agree(m.checksum, ref) else "DIFF",
                len(m.samples),
            ]
        )
    headers = [
        "candidate",
        "time",
        "/best peer",
        "/pread",
        "read()",
        "mmapped",
        "peak anon",
        "peak RSS",
        "same?",
        "n",
    ]
    return table(headers, out, f"\n== {title}  (payload {fmt_bytes(payload)})")


def get(rows: list[Row], name: str) -> Measurement:
    return next(r.m for r in rows if r.cand.name.startswith(name))


class Reports(list[str]):
    """Section tables, printed the moment each is complete (a run stopped later keeps them)."""

    def append(self, text: str) -> None:
        print(text, flush=True)
        super().append(text)


#: The section being measured, named when a run stops early.
current = "writing the test files"


class _Stopped(Exception):
    """A signal (SIGTERM, SIGHUP) asked the run to stop."""

    def __init__(self, signo: int) -> None:
        super().__init__(signal.Signals(signo).name)
        self.signo = signo


def _stop(signo: int, _frame: object) -> None:
    raise _Stopped(signo)


class Targets:
    """PASS/MISS lines: the issue's targets, and extra checks marked as such."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str, bool]] = []

    def check(self, what: str, ok: bool, detail: str, extra: bool = False) -> None:
        self.lines.append(("PASS" if ok else "MISS", what, detail, extra))

    def render(self) -> str:
        rows = [[v, ("(extra) " if x else "") + w, d] for v, w, d, x in self.lines]
        return table(["", "target", "measured"], rows, "\n== Targets (issue #2, Benchmark)")

    def summary(self) -> str:
        def count(extra: bool) -> str:
            mine = [v for v, _, _, x in self.lines if x == extra]
            return f"{mine.count('PASS')} PASS, {mine.count('MISS')} MISS"

        return f"issue targets: {count(False)}; extra checks: {count(True)}"


def volume_targets(
    t: Targets, rows: list[Row], vol_bytes: int, tag: str, extra: bool = False
) -> None:
    sc = get(rows, "lazyimg slicecopy")
    dc = get(rows, "lazyimg data.compute")
    nibm = get(rows, "nib dataobj")
    raw = get(rows, "raw pread")
    best = min(nibm.seconds, raw.seconds)
    t.check(
        f"{tag}one volume slicecopy <= 1.2x min(pread, nib dataobj)",
        sc.seconds <= 1.2 * best,
        f"{fmt_ratio(sc.seconds, best)} ({fmt_time(sc.seconds)} vs {fmt_time(best)})",
        extra,
    )
    t.check(
        f"{tag}one volume bytes read <= volume + 64 KiB",
        sc.rchar + sc.mapped <= vol_bytes + 65536,
        f"{fmt_bytes(sc.rchar + sc.mapped)} (volume {fmt_bytes(vol_bytes)})",
        extra,
    )
    t.check(
        f"{tag}one volume data[..., k].compute() <= slicecopy + 2 ms",
        dc.seconds <= sc.seconds + 0.002,
        f"+{(dc.seconds - sc.seconds) * 1e3:.2f} ms ({fmt_time(dc.seconds)})",
        extra,
    )


def mean_targets(t: Targets, rows: list[Row], tag: str, extra: bool = False) -> None:
    lz = get(rows, "lazyimg data.mean")
    fd = get(rows, "nib get_fdata.mean")
    mm = get(rows, "nib memmap")
    best = min(r.m.seconds for r in rows if r.cand.kind == "peer")
    t.check(
        f"{tag}mean <= 0.8x get_fdata().mean(-1)",
        lz.seconds <= 0.8 * fd.seconds,
        f"{fmt_ratio(lz.seconds, fd.seconds)} ({fmt_time(lz.seconds)} vs {fmt_time(fd.seconds)})",
        extra,
    )
    t.check(
        f"{tag}mean <= 1.2x fastest peer",
        lz.seconds <= 1.2 * best,
        f"{fmt_ratio(lz.seconds, best)} ({fmt_time(lz.seconds)}; memmap mean {fmt_time(mm.seconds)})",
        extra,
    )
    t.check(
        f"{tag}mean peak anon <= 15% of get_fdata's",
        lz.peak_anon <= 0.15 * fd.peak_anon,
        f"{lz.peak_anon / fd.peak_anon:.1%} ({fmt_bytes(lz.peak_anon)} vs {fmt_bytes(fd.peak_anon)})",
        extra,
    )


def graph_section(
    sparse: Path, repeat: int, reports: list[str], targets: Targets, patch: str = ""
) -> None:
    """Time lazyimg.load on a sparse huge file and count what it reads."""
    import lazyimg

    global current
    current = "graph"

    print(
        f"  graph: lazyimg.load(...).data of {BIG_SHAPE} x {repeat} (fresh processes)", flush=True
    )
    # lazyimg's modules are imported lazily: import them in the setup, so the measured part is
    # reading the header and building the graph (load defers the graph to the first .data)
    setup = (
        "import lazyimg\nimport lazyimg._io.files\nimport lazyimg.image\nimport lazyimg._graph\n"
        f"import nibabel as nib\nf = {str(sparse)!r}\n"
    )
    nib_setup = setup
    setup = patch + setup
    # result: bytes lazyimg itself read from voxel data (its own counter)
    code = "img = lazyimg.load(f)\nimg.data\nresult = lazyimg._io.files.bytes_read\n"
    fresh = Measurement()
    nib_load = Measurement()
    for _ in range(repeat):  # interleaved
        fresh = fresh + run(code, setup)
        nib_load = nib_load + run("img = nib.load(f)\n", nib_setup)
    again = run(code, setup + "lazyimg.load(f)\n", repeat=4 * repeat)
    nchunks = lazyimg.load(sparse).data.npartitions
    rows = [
        [
            name,
            fmt_time(x.seconds),
            fmt_time(x.best),
            fmt_bytes(x.rchar),
            fmt_bytes(x.read_bytes),
            fmt_bytes(x.mapped),
            fmt_bytes(x.peak_anon),
            voxels,
        ]
        for name, x, voxels in (
            ("lazyimg.load + .data, fresh process", fresh, f"{fresh.checksum:.0f} B"),
            ("lazyimg.load + .data, again", again, f"{again.checksum:.0f} B"),
            ("nib.load (header only), fresh", nib_load, "-"),
        )
    ]
    headers = ["candidate", "time", "best", "read()", "from disk", "mmapped", "peak anon"]
    title = (
        f"\n== graph construction, sparse {BIG_SHAPE} int16 "
        f"({fmt_bytes(math.prod(BIG_SHAPE) * 2)}), {nchunks} chunks"
    )
    reports.append(table([*headers, "lazyimg voxel bytes"], rows, title))
    targets.check(
        "graph construction < 100 ms (fresh process)",
        fresh.seconds < 0.1,
        f"{fmt_time(fresh.seconds)} (again: {fmt_time(again.seconds)})",
    )
    # nibabel reads the 352-byte header through buffered files (a 4 KiB page each
    # time it opens the file); lazyimg may add its 4 magic bytes, nothing more
    extra = fresh.rchar - nib_load.rchar
    targets.check(
        "graph construction reads no voxel data",
        fresh.checksum == 0 and extra <= 64,  # "mmapped" here is code (lazy imports)
        f"lazyimg's voxel counter {fresh.checksum:.0f} B; read() {fmt_bytes(fresh.rchar)}, "
        f"of which nib.load {fmt_bytes(nib_load.rchar)}, lazyimg {fmt_bytes(extra)}",
    )


SECTIONS = ("volume", "slice", "voxel", "mean", "graph", "scaled")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--shape", type=int, nargs=4, default=[96, 96, 64, 600], metavar="N")
    p.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="fresh processes per candidate (default 5); warm index reads repeat 4x as often "
        "(in 2 processes), the temporal mean at most 4x in 2 processes (get_fdata 2x; the scaled "
        "file's mean 2x in one process)",
    )
    p.add_argument("--dir", help="folder for the test files (default: a new temp dir)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument(
        "--patch",
        metavar="FILE",
        help="Python file run in every lazyimg candidate's process before its setup "
        "(to measure an experimental monkeypatch of lazyimg side by side)",
    )
    args = p.parse_args(argv)
    shape = tuple(args.shape)
    sections = set(args.only or SECTIONS)
    repeat = max(1, args.repeat)
    patch = Path(args.patch).read_text() + "\n" if args.patch else ""
    t0 = time.perf_counter()
    print(
        f"lazyimg {lazyimg.__version__}, nibabel {nib.__version__}, dask {dask.__version__}, "
        f"numpy {np.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}" + (f", patch {args.patch}" if patch else "")
    )
    reports = Reports()
    targets = Targets()
    for signo in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signo, _stop)
    try:
        measure_all(args, shape, sections, repeat, patch, reports, targets)
    except (Exception, KeyboardInterrupt) as err:
        # say where and why, with what was measured so far, instead of ending silently
        if not isinstance(err, (_Stopped, KeyboardInterrupt)):
            traceback.print_exc()
        print(
            f"\nSTOPPED in section '{current}' after {time.perf_counter() - t0:.0f} s: "
            f"{type(err).__name__} {err}; tables above are the sections completed",
            flush=True,
        )
        print(targets.render())
        return (
            128 + err.signo
            if isinstance(err, _Stopped)
            else 130
            if isinstance(err, KeyboardInterrupt)
            else 1
        )
    print(targets.render())
    print(
        f"\n{targets.summary()}; {time.perf_counter() - t0:.0f} s in all; load average now "
        f"{os.getloadavg()[0]:.2f} (times are medians of repeats)"
    )
    return 0


def measure_all(
    args: argparse.Namespace,
    shape: tuple[int, ...],
    sections: set[str],
    repeat: int,
    patch: str,
    reports: Reports,
    targets: Targets,
) -> None:
    """Write the test files, run the chosen sections, remove the files."""
    t0 = time.perf_counter()
    vol_bytes = math.prod(shape[:3]) * 2
    k, z = shape[3] // 2, shape[2] // 2
    xyz = (shape[0] // 3, shape[1] // 2, shape[2] // 2)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="lazyimg-bench-") as tmp:
        folder = Path(tmp)
        print(f"writing {shape} int16 ({fmt_bytes(math.prod(shape) * 2)}) x2 to {folder} ...")
        plain, scaled = make_files(folder, shape)
        sparse = make_sparse(folder)
        for path in (plain, scaled):
            warm(path)
        print(f"  files written and in page cache after {time.perf_counter() - t0:.1f} s")
        if "volume" in sections:
            for fresh in (True, False):
                how = "fresh process each" if fresh else "warm, repeated"
                cands = one_volume(plain, k, shape, False, fresh)
                n = repeat if fresh else 4 * repeat
                rows = measure(cands, n, fresh, "volume", patch, rounds=2)
                reports.append(show(f"one volume [..., {k}], {how}", rows, vol_bytes))
                volume_targets(targets, rows, vol_bytes, "" if fresh else "warm: ")
        if "slice" in sections:
            rows = measure(one_slice(plain, z, shape), 4 * repeat, False, "slice", patch, 2)
            payload = shape[0] * shape[1] * shape[3] * 2
            reports.append(show(f"one slice [:, :, {z}, :], warm, repeated", rows, payload))
            raw = get(rows, "raw pread")
            for name in ("lazyimg slicecopy", "lazyimg data.compute"):
                lz = get(rows, name)
                targets.check(
                    f"slice {name.split()[1]} <= 1.5x raw preads",
                    lz.seconds <= 1.5 * raw.seconds,
                    f"{fmt_ratio(lz.seconds, raw.seconds)} "
                    f"({fmt_time(lz.seconds)} vs {fmt_time(raw.seconds)})",
                    extra="compute" in name,
                )
        if "voxel" in sections:
            rows = measure(one_voxel(plain, xyz, shape), 4 * repeat, False, "voxel", patch, 2)
            payload = shape[3] * 2
            title = f"one voxel's series [{xyz[0]}, {xyz[1]}, {xyz[2]}, :], warm, repeated"
            reports.append(show(title, rows, payload))
            for name in ("lazyimg slicecopy", "lazyimg data.compute"):
                m = get(rows, name)
                got = m.rchar + m.mapped
                targets.check(
                    f"voxel {name.split()[1]} bytes read <= 2x payload",
                    got <= 2 * payload,
                    f"{got / payload:.2f}x ({fmt_bytes(got)} vs {fmt_bytes(payload)})",
                )
        if "mean" in sections:
            cands = temporal_mean(plain, shape, False)
            rows = measure(cands, min(repeat, 4), False, "mean", patch, rounds=2)
            title = "temporal mean .mean(-1), threads, warm, repeated"
            reports.append(show(title, rows, 2 * math.prod(shape)))
            mean_targets(targets, rows, "")
        if "graph" in sections:
            graph_section(sparse, repeat, reports, targets, patch)
        if "scaled" in sections:
            # get_fdata would fault in 5 GB per fresh process; the scaled mean has it
            cands = [c for c in one_volume(scaled, k, shape, True, True) if "fdata" not in c.name]
            rows = measure(cands, repeat, True, "scaled volume", patch)
            title = f"scaled file (scl_slope {SLOPE}, scl_inter {INTER}): one volume [..., {k}], "
            reports.append(show(title + "fresh process each", rows, vol_bytes))
            volume_targets(targets, rows, vol_bytes, "scaled: ", extra=True)
            cands = temporal_mean(scaled, shape, True)
            rows = measure(cands, min(repeat, 2), False, "scaled mean", patch)
            title = "scaled file: temporal mean, threads, warm, repeated"
            reports.append(show(title, rows, 2 * math.prod(shape)))
            mean_targets(targets, rows, "scaled: ", extra=True)


if __name__ == "__main__":
    sys.exit(main())
