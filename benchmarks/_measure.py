"""Measuring helpers shared by lazyimg's benchmark scripts.

Every measurement runs in a child Python process started for it, so imports,
caches and allocator state of one candidate never leak into another. A job is
three snippets of Python source:

``setup``
    Run once, not timed (imports, ``lazyimg.load``, opening files).
``code``
    The measured part, run ``repeat`` times. Each repeat gets a fresh copy of
    the namespace ``setup`` left, which is dropped before the next repeat, so
    a repeat never holds the previous one's result. The garbage collector runs
    once after ``setup``, not between repeats: collecting hands freed memory
    back to the system, and the next repeat would pay page faults that no warm
    loop pays.
    Assign a number (or an array) to ``result`` to have a checksum reported:
    it lets a benchmark check that candidates agree.
``prepare`` (optional)
    Run before every repeat, not timed.

With ``warmup=n`` the child first runs ``code`` n times unmeasured (warm and
repeated measurements: lazy imports, first-call caches and allocator growth
are then paid before timing starts).

:func:`run` returns one :class:`Sample` per repeat with, for the measured part
only:

* ``seconds``: wall time (``time.perf_counter``).
* ``rchar`` / ``read_bytes`` from ``/proc/self/io``: bytes the process got from
  ``read``-like system calls (page cache included) and bytes the kernel fetched
  from the block device for it (0 when the file is in page cache). Pages
  touched through ``mmap`` (``np.memmap``, nibabel's default for uncompressed
  files) are *not* counted by either; see ``mapped`` below. What reading
  ``/proc/self/io`` itself adds is subtracted; modules imported lazily inside
  the measured part (their ``.pyc`` files) are counted.
* ``peak_rss``: exact peak resident memory above the level before the measured
  part (the kernel's high-water mark ``VmHWM``, reset through
  ``/proc/self/clear_refs``). It includes file pages mapped in.
* ``peak_anon``: peak *anonymous* memory (``RssAnon``: heap, numpy buffers)
  above the level before the measured part. The kernel keeps no high-water
  mark for it, so the parent process samples ``/proc/<pid>/status`` every
  ``interval`` seconds while the measured part runs (sampling from outside
  costs the child nothing); the child's own reading at the end is included.
  Spikes shorter than ``interval`` can be missed; ``peak_rss`` cannot.
* ``mapped``: peak increase of ``RssFile`` (file pages mapped into the
  process), i.e. roughly the bytes read through ``mmap``.

Page cache: the kernel's cache can only be dropped as root with a writable
``/proc/sys/vm/drop_caches`` (:func:`drop_caches` tries). :func:`evict` asks the
kernel to forget one file's clean pages (``posix_fadvise(DONTNEED)``; works
unprivileged, but not for pages some process still maps); :func:`warm` reads a
file once so that later measurements run from page cache.

:func:`table` prints aligned columns; :func:`fmt_time`, :func:`fmt_bytes` and
:func:`fmt_ratio` format cells.
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "Measurement",
    "Sample",
    "drop_caches",
    "evict",
    "fmt_bytes",
    "fmt_ratio",
    "fmt_time",
    "run",
    "table",
    "warm",
]

# The program the child runs. It gets the job (JSON) as argv[2] and talks to the
# parent through the file descriptor in argv[1]: "B\n" when a measured part
# begins, "E\n" when it ends, and finally one JSON line with its own readings.
_CHILD = r"""
import gc, json, os, sys, time

def _status():
    out = {}
    with open("/proc/self/status", "rb") as f:
        for line in f.read().decode().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024
    return out

def _io():
    with open("/proc/self/io", "rb") as f:
        pairs = (line.split(b":") for line in f.read().splitlines())
        return {k.decode(): int(v) for k, v in pairs}

def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

def _checksum(value):
    if value is None:
        return None
    try:
        import numpy as np
        arr = np.asarray(value)
        return float(arr.sum(dtype=np.float64)) if arr.size else 0.0
    except Exception:
        return repr(value)

_pipe = os.fdopen(int(sys.argv[1]), "w", buffering=1)
_job = json.loads(sys.argv[2])
_ns = {"__name__": "__bench__"}
exec(compile(_job["setup"], "<setup>", "exec"), _ns)
_code = compile(_job["code"], "<measured>", "exec")
_prepare = compile(_job["prepare"], "<prepare>", "exec") if _job["prepare"] else None
# gc.collect() only here: collecting between repeats hands freed memory back to
# the system, and the next repeat would pay page faults no warm loop pays
gc.collect()
_io_cost = -(_io()["rchar"] - _io()["rchar"])  # what reading /proc/self/io itself adds
for _ in range(_job["warmup"]):
    ns = dict(_ns)
    if _prepare is not None:
        exec(_prepare, ns)
    exec(_code, ns)
    del ns
_samples = []
for _ in range(_job["repeat"]):
    ns = dict(_ns)
    if _prepare is not None:
        exec(_prepare, ns)
    before = _status()
    hwm_ok = _reset_hwm()
    io0 = _io()
    _pipe.write("B\n")
    t0 = time.perf_counter()
    exec(_code, ns)
    t1 = time.perf_counter()
    io1 = _io()
    _pipe.write("E\n")
    after = _status()
    _samples.append({
        "seconds": t1 - t0,
        "rchar": io1["rchar"] - io0["rchar"] - _io_cost,
        "read_bytes": io1["read_bytes"] - io0["read_bytes"],
        "base_anon": before["RssAnon"],
        "base_file": before["RssFile"],
        "end_anon": after["RssAnon"],
        "end_file": after["RssFile"],
        "peak_rss": after["VmHWM"] - before["VmRSS"] if hwm_ok else None,
        "checksum": _checksum(ns.get("result")),
    })
    ns.clear()
    del ns
_pipe.write(json.dumps(_samples) + "\n")
_pipe.close()
"""


@dataclass
class Sample:
    """Readings of one repeat of a measured part (see the module docstring)."""

    seconds: float
    rchar: int
    read_bytes: int
    peak_anon: int
    peak_rss: int | None
    mapped: int
    checksum: float | str | None


@dataclass
class Measurement:
    """All repeats of one job, plus the summaries a table shows."""

    samples: list[Sample] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Median wall time of the measured part."""
        return statistics.median(s.seconds for s in self.samples)

    @property
    def best(self) -> float:
        """Fastest repeat."""
        return min(s.seconds for s in self.samples)

    @property
    def rchar(self) -> int:
        """Median bytes read through system calls per repeat."""
        return int(statistics.median(s.rchar for s in self.samples))

    @property
    def read_bytes(self) -> int:
        """Median bytes fetched from the device per repeat."""
        return int(statistics.median(s.read_bytes for s in self.samples))

    @property
    def mapped(self) -> int:
        """Median increase of mapped file pages per repeat."""
        return int(statistics.median(s.mapped for s in self.samples))

    @property
    def bytes_in(self) -> int:
        """Bytes read by system calls plus bytes mapped in (median of repeats)."""
        return int(statistics.median(s.rchar + s.mapped for s in self.samples))

    @property
    def peak_anon(self) -> int:
        """Largest anonymous-memory increase over the repeats."""
        return max(s.peak_anon for s in self.samples)

    @property
    def peak_rss(self) -> int | None:
        """Largest resident-memory increase over the repeats (None if unknown)."""
        vals = [s.peak_rss for s in self.samples if s.peak_rss is not None]
        return max(vals) if vals else None

    @property
    def checksum(self) -> float | str | None:
        """The checksum of ``result`` in the last repeat."""
        return self.samples[-1].checksum if self.samples else None

    def __add__(self, other: Measurement) -> Measurement:
        return Measurement(self.samples + other.samples)


def _sample_status(pid: int) -> tuple[int, int] | None:
    """(RssAnon, RssFile) of process `pid`, in bytes, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read()
    except OSError:
        return None
    anon = file = 0
    for line in text.splitlines():
        if line.startswith(b"RssAnon:"):
            anon = int(line.split()[1]) * 1024
        elif line.startswith(b"RssFile:"):
            file = int(line.split()[1]) * 1024
    return anon, file


def run(
    code: str,
    setup: str = "",
    *,
    repeat: int = 1,
    fresh: bool = False,
    warmup: int = 0,
    prepare: str = "",
    interval: float = 0.0005,
    env: dict[str, str] | None = None,
    timeout: float = 300.0,
) -> Measurement:
    """Run `code` in a child process (after `setup`) and measure it.

    Parameters
    ----------
    code : str
        The measured snippet (Python source).
    setup : str
        Untimed source run first, once per child (imports, loading).
    repeat : int
        How many times to measure `code`.
    fresh : bool
        False: one child runs all repeats (the warm, repeated case). True: one
        new child per repeat, so each measurement is the first call in its
        process (after `setup`).
    warmup : int
        Unmeasured runs of `code` in each child before the measured ones.
    prepare : str
        Untimed source run before every repeat.
    interval : float
        Seconds between samples of the child's anonymous memory.
    env : dict, optional
        Extra environment variables for the child (e.g. thread limits).
    timeout : float
        Seconds before the child is killed and an error raised.

    Returns
    -------
    Measurement
        One Sample per repeat.

    Examples
    --------
    >>> m = run("x = bytearray(50_000_000); result = len(x)", repeat=2)
    >>> len(m.samples), m.checksum, m.peak_anon >= 45_000_000
    (2, 50000000.0, True)
    """
    if fresh and repeat > 1:
        out = Measurement()
        for _ in range(repeat):
            out = out + run(
                code,
                setup,
                warmup=warmup,
                prepare=prepare,
                interval=interval,
                env=env,
                timeout=timeout,
            )
        return out
    job = {"setup": setup, "code": code, "prepare": prepare, "repeat": repeat, "warmup": warmup}
    return _run_child(job, interval, env, timeout)


def _watch(
    proc: subprocess.Popen[bytes], read_fd: int, interval: float, deadline: float
) -> tuple[bytes | None, list[tuple[int, int]]]:
    """Follow the child's markers, sampling its memory while a measured part runs.

    Returns the child's final JSON line (None if it died first) and, per
    measured part, the largest (RssAnon, RssFile) seen.
    """
    buffered = b""
    measuring = False
    peaks: list[tuple[int, int]] = []
    peak_anon = peak_file = 0
    while True:
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("benchmark child exceeded its time limit")
        ready, _, _ = select.select([read_fd], [], [], interval if measuring else 0.05)
        if measuring:
            got = _sample_status(proc.pid)
            if got is not None:
                peak_anon = max(peak_anon, got[0])
                peak_file = max(peak_file, got[1])
        if not ready:
            continue
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            return None, peaks
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            if line == b"B":
                measuring, peak_anon, peak_file = True, 0, 0
            elif line == b"E":
                measuring = False
                peaks.append((peak_anon, peak_file))
            else:
                return line, peaks


def _run_child(
    job: dict[str, object], interval: float, env: dict[str, str] | None, timeout: float
) -> Measurement:
    read_fd, write_fd = os.pipe()
    child_env = dict(os.environ)
    child_env.update(env or {})
    with tempfile.TemporaryFile() as log:  # the child's output, shown if it fails
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(write_fd), json.dumps(job)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            env=child_env,
        )
        os.close(write_fd)
        try:
            final, peaks = _watch(proc, read_fd, interval, time.monotonic() + timeout)
        finally:
            os.close(read_fd)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.seek(0)
        output = log.read().decode(errors="replace")
    if final is None or proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed (exit {proc.returncode}):\n{output}")
    samples = []
    for raw, (anon, file) in zip(json.loads(final), peaks, strict=True):
        samples.append(
            Sample(
                seconds=raw["seconds"],
                rchar=raw["rchar"],
                read_bytes=raw["read_bytes"],
                peak_anon=max(0, max(anon, raw["end_anon"]) - raw["base_anon"]),
                peak_rss=raw["peak_rss"],
                mapped=max(0, max(file, raw["end_file"]) - raw["base_file"]),
                checksum=raw["checksum"],
            )
        )
    return Measurement(samples)


# --------------------------------------------------------------------------- page cache


def warm(path: str | os.PathLike[str], block: int = 64 * 2**20) -> int:
    """Read `path` once so that it sits in page cache; return its size."""
    total = 0
    buf = bytearray(block)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total


def evict(path: str | os.PathLike[str]) -> None:
    """Ask the kernel to drop `path`'s clean, unmapped pages from page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def drop_caches() -> bool:
    """Drop the whole page cache (root with a writable /proc/sys only); True on success."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- formatting


def fmt_time(seconds: float | None) -> str:
    """Seconds as µs, ms or s with three significant digits."""
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_bytes(n: float | None) -> str:
    """Bytes in binary units (B, KiB, MiB, GiB)."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def fmt_ratio(value: float | None, reference: float | None) -> str:
    """``value / reference`` as e.g. ``1.23x`` ("-" when either is missing)."""
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """Aligned plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    out = [title] if title else []
    out.append(line(cells[0]))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells[1:])
    return "\n".join(out)
