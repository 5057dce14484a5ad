"""lazyimg's graphs on dask.distributed: the same graphs, on real worker processes.

Two clusters, each with two single-threaded worker processes: a
``LocalCluster(processes=True)`` and a real one started from the command line
(``dask scheduler`` plus two ``dask worker`` processes on 127.0.0.1, each in its
own working directory). Every cluster test runs on both. Workers open files by
path through their own per-process cache (:mod:`lazyimg._io.files`), so these
tests check what a single process cannot: graphs pickle (also for MINC and
PAR/REC, whose nibabel proxies do not), bytes are read once across processes,
a killed worker costs nothing but time, and a file a worker cannot see gives
an error that names the file and the worker instead of a hang.

Everything has a timeout: a broken cluster fails a test, it never hangs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same, nib_array, run_notebook, sparse_nifti

import lazyimg
from lazyimg._io import files as _files
from lazyimg.testing import write_fmri

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")
from distributed import Client, Event, LocalCluster, get_worker  # noqa: E402

#: Seconds any single wait on the cluster may take before the test fails.
TIMEOUT = 60
MINC_PARREC = ["minc1_4d.mnc", "minc2_4d.mnc", "phantom_varscale.PAR"]


# --------------------------------------------------------------------------- clusters


def _local_cluster() -> Iterator[Client]:
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = Client(cluster)
    try:
        client.wait_for_workers(2, timeout=TIMEOUT)
        yield client
    finally:
        client.close()
        cluster.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a process this module started, and the processes it started (its session)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


# Runs `python -m dask ARGS` so that it gets SIGTERM if the test process dies without
# cleaning up (killed by a timeout, say): no scheduler or worker outlives a test run.
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit("the test process is gone")
os.execv(sys.executable, [sys.executable, "-m", "dask", *sys.argv[2:]])
"""


def _cli_cluster(root: Path) -> Iterator[Client]:
    """`dask scheduler` and two `dask worker` processes on loopback, on free ports."""
    scheduler_file = root / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []

    def start(name: str, *args: str) -> None:
        cwd = root / name
        cwd.mkdir()
        log = root / f"{name}.log"
        logs.append(log)
        with open(log, "wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *args],
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # so _stop can end the worker a nanny started
                )
            )

    def failed(what: str) -> RuntimeError:
        tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs)
        return RuntimeError(f"the command-line dask cluster {what}:\n{tails}")

    client = None
    try:
        start(
            "scheduler",
            "scheduler",
            "--host=127.0.0.1",
            "--port=0",  # the OS picks a free port; the scheduler file tells us which
            "--no-dashboard",
            f"--scheduler-file={scheduler_file}",
        )
        deadline = time.monotonic() + TIMEOUT
        while not scheduler_file.exists():
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise failed("scheduler did not start")
            time.sleep(0.1)
        for i in range(2):
            start(
                f"worker{i}",
                "worker",
                f"--scheduler-file={scheduler_file}",
                "--host=127.0.0.1",
                "--nworkers=1",
                "--nthreads=1",
                "--no-dashboard",
                f"--name=cli-{i}",
                f"--local-directory={root / f'worker{i}'}",
                f"--death-timeout={TIMEOUT}",
            )
        client = Client(scheduler_file=str(scheduler_file), timeout=TIMEOUT)
        try:
            client.wait_for_workers(2, timeout=TIMEOUT)
        except TimeoutError:
            raise failed("workers did not connect") from None
        yield client
    finally:
        if client is not None:
            client.close()
        for proc in reversed(procs):  # workers first, then the scheduler
            _stop(proc)


@pytest.fixture(scope="module", params=["local", "cli"])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A distributed client with two single-threaded worker processes."""
    if request.param == "local":
        yield from _local_cluster()
    else:
        yield from _cli_cluster(tmp_path_factory.mktemp("cli-cluster"))


def _compute(client: Client, x: Any) -> Any:
    return client.compute(x).result(timeout=TIMEOUT)


def _bytes_read(client: Client) -> dict[str, int]:
    """lazyimg's voxel-byte counter of every worker process."""
    return client.run(getattr, _files, "bytes_read")


def _read_since(client: Client, before: dict[str, int]) -> dict[str, int]:
    after = _bytes_read(client)
    assert after.keys() == before.keys(), "a worker restarted while bytes were being counted"
    return {w: after[w] - before[w] for w in after}


def _worker_addresses(client: Client) -> set[str]:
    return set(client.scheduler_info()["workers"])


def _module_exists(name: str) -> bool:
    """Whether a lazyimg module another change brings is in this tree yet."""
    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small generated 4D images: 128 KiB volumes, 24 of them (3 MiB), `.nii` and `.nii.gz`."""
    root = tmp_path_factory.mktemp("distributed-images")
    return {
        suffix: write_fmri(root / f"bold{suffix}", (64, 64, 16, 24), seed=3)
        for suffix in (".nii", ".nii.gz")
    }


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_generated_values_equal_nibabel(client: Client, images: dict, suffix: str) -> None:
    path = images[suffix]
    img = lazyimg.load(path, chunks={3: 4})
    want = nib_array(path)
    assert_same(_compute(client, img.data), want, suffix)
    mean = _compute(client, img.data.mean(axis=-1))
    np.testing.assert_allclose(mean, want.mean(axis=-1), rtol=1e-12)


@pytest.mark.parametrize("name", MINC_PARREC)
def test_unpicklable_proxies_work_on_workers(client: Client, name: str, tmp_path: Path) -> None:
    """MINC1 (an open netCDF file), MINC2 (h5py) and PAR/REC proxies do not pickle
    (nibabel 5.4); lazyimg's graphs of them do, and workers reopen the files."""
    from nibabel.testing import data_path

    for other in os.listdir(data_path):  # the .REC goes with the .PAR
        if Path(other).stem == Path(name).stem:
            shutil.copy(os.path.join(data_path, other), tmp_path / other)
    path = tmp_path / name
    img = lazyimg.load(path, chunks={0: 1} if name.endswith(".mnc") else {-1: 1})
    assert img.disk_order == ("C" if name.endswith(".mnc") else "F")
    assert img.data.npartitions > 1
    want = nib_array(path)
    assert_same(_compute(client, img.data), want, name)
    index = (Ellipsis, 0) if want.ndim == 4 else (0,)
    assert_same(_compute(client, img.data[index]), want[index], f"{name}{index}")


def test_slicing_is_pushed_down_on_workers(client: Client, images: dict) -> None:
    """A slice of a file computes as reads of its own bytes, on whichever worker runs it."""
    path = images[".nii"]
    img = lazyimg.load(path, chunks={3: 4})
    want = nib_array(path)
    volume = want[..., 0].nbytes
    cases = {  # index: (payload bytes, most bytes it may read)
        "one volume": ((Ellipsis, 5), volume, volume),
        "z-slice through time": ((slice(None), slice(None), 7, slice(None)), volume * 24 // 16),
        "voxel time series": ((10, 20, 5, slice(None)), 24 * 2, 24 * 4096),
    }
    for what, (index, payload, *most) in cases.items():
        part = img.data[index]
        assert len(part.__dask_graph__()) == part.npartitions, f"{what}: extra tasks in the graph"
        before = _bytes_read(client)
        assert_same(_compute(client, part), want[index], what)
        total = sum(_read_since(client, before).values())
        assert payload <= total <= (most[0] if most else payload), f"{what}: read {total} bytes"


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_temporal_mean_reads_each_slab_once(client: Client, images: dict, suffix: str) -> None:
    """Across all workers, a whole-file reduction reads the data exactly once."""
    path = images[suffix]
    img = lazyimg.load(path, chunks={3: 2})
    before = _bytes_read(client)
    mean = _compute(client, img.data.mean(axis=-1))
    per_worker = _read_since(client, before)
    assert sum(per_worker.values()) == img.nbytes, per_worker
    np.testing.assert_allclose(mean, nib_array(path).mean(axis=-1), rtol=1e-12)


def test_xarray_engine_on_cluster(client: Client, tmp_path: Path) -> None:
    """Several subjects stacked with open_mfdataset compute on the workers."""
    xr = pytest.importorskip("xarray")
    if not _module_exists("lazyimg.xarray.backend"):
        pytest.skip("the xarray engine (lazyimg.xarray.backend) is not in this tree yet")
    paths = [write_fmri(tmp_path / f"sub-{i}.nii.gz", (16, 16, 8, 12), seed=i) for i in range(3)]
    ds = xr.open_mfdataset(
        paths, engine="lazyimg", combine="nested", concat_dim="subject", chunks={}
    )
    var = next(iter(ds.data_vars.values()))
    got = _compute(client, var.mean("time").data)
    want = np.stack([nib_array(p).mean(axis=-1) for p in paths])
    np.testing.assert_allclose(got, want, rtol=1e-12)


# --------------------------------------------------------------------------- graphs


def _graph_bytes(x: Any) -> int:
    return len(cloudpickle.dumps(dict(x.__dask_graph__())))


def test_graph_pickle_size_independent_of_voxel_count(tmp_path: Path) -> None:
    """1000 volumes or 10, the same number of chunks pickles to the same size."""
    big = lazyimg.load(sparse_nifti(tmp_path / "big.nii", (64, 64, 32, 1000)), chunks={3: 100})
    small = lazyimg.load(sparse_nifti(tmp_path / "small.nii", (64, 64, 32, 10)), chunks={3: 1})
    assert big.data.npartitions == small.data.npartitions == 10
    assert big.nbytes == 100 * small.nbytes
    for what, b, s in [
        ("image", big.data, small.data),
        ("temporal mean", big.data.mean(-1), small.data.mean(-1)),
    ]:
        nb, ns = _graph_bytes(b), _graph_bytes(s)
        assert abs(nb - ns) <= 256, f"{what}: {nb} vs {ns} bytes"
        assert nb < 16 * 1024, f"{what}: {nb} bytes for 10 chunks"
    blob = pickle.dumps(dict(big.data.__dask_graph__()))
    assert b"nibabel" not in blob, "a nibabel object travels in the graph"


_FORK_CHECK = """
import multiprocessing, sys
import numpy as np
import lazyimg

path, want = sys.argv[1], int(sys.argv[2])
img = lazyimg.load(path, chunks={3: 3})
# the parent opens the file (and, for gzip, its reader) and keeps it in its cache
assert int(np.asarray(img).astype("int64").sum()) == want

def child_sum(_):
    return int(img.data.astype("int64").sum().compute(scheduler="sync"))

with multiprocessing.get_context("fork").Pool(2) as pool:
    sums = pool.map(child_sum, range(4), chunksize=1)
assert sums == [want] * 4, sums
print("ok")
"""


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_forked_processes_reopen_files(images: dict, suffix: str) -> None:
    """Files a parent process has open (and gzip readers) are not shared with forked children.

    Runs in a fresh interpreter: forking this one, whose distributed clients
    run threads, could deadlock for reasons that have nothing to do with lazyimg.
    """
    path = images[suffix]
    want = int(nib_array(path).astype("int64").sum())
    done = subprocess.run(
        [sys.executable, "-c", _FORK_CHECK, str(path), str(want)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


# --------------------------------------------------------------------------- failures


def _gate(event: str, free: int) -> Any:
    """A block function for the workers: it passes blocks on once the worker running it
    holds `free` results or the test sets `event`.

    Built as a closure so that it pickles by value: `dask worker` processes cannot
    import this test module.
    """

    def gated(block: np.ndarray) -> np.ndarray:
        if len(get_worker().data) >= free and not Event(event).wait(timeout=TIMEOUT):
            raise TimeoutError(f"{event} was never set")
        return block

    return gated


def _keys_held(client: Client) -> dict[str, int]:
    return {w: len(keys) for w, keys in client.has_what().items()}


def test_killed_worker_result_still_exact(client: Client, images: dict, tmp_path: Path) -> None:
    """Kill a worker holding partial results mid-computation: dask recomputes them elsewhere.

    Each worker computes two per-volume sums and then waits, holding them, on
    an event; one worker is killed, the event is set, and the sums it held are
    recomputed on the other worker (or on its restarted replacement).
    """
    path = images[".nii"]
    img = lazyimg.load(path, chunks={3: 1})
    want = nib_array(path).astype("int64").sum(axis=-1)
    name = f"lazyimg-gate-{tmp_path.name}"
    gate = Event(name, client=client)
    x = img.data.map_blocks(_gate(name, free=2), dtype=img.dtype)
    # one final aggregation: the per-volume sums stay on their workers until the end
    total = x.astype("int64").sum(axis=-1, split_every=img.data.npartitions)
    future = client.compute(total)
    try:
        deadline = time.monotonic() + TIMEOUT
        while min(_keys_held(client).values()) < 2:
            assert time.monotonic() < deadline, (
                f"workers never held results: {_keys_held(client)}, {future}"
            )
            if future.status == "error":
                future.result()
            time.sleep(0.05)
        pids = client.run(os.getpid)
        victim = sorted(pids)[0]
        assert not future.done(), "the gated computation finished before the kill"
        os.kill(pids[victim], signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        while victim in _worker_addresses(client):
            assert time.monotonic() < deadline, "the scheduler never noticed the dead worker"
            time.sleep(0.05)
    finally:
        gate.set()
    assert_same(future.result(timeout=TIMEOUT), want, "sum after a worker was killed")
    client.wait_for_workers(2, timeout=TIMEOUT)  # the nanny restarts it for the next tests


@pytest.mark.parametrize("how", ["removed", "renamed", "changed"])
@pytest.mark.parametrize("name", ["bold.nii", "minc2_4d.mnc"])
def test_file_gone_names_path_and_worker(
    client: Client, images: dict, tmp_path: Path, how: str, name: str
) -> None:
    """After the graph is built, a missing or changed file is an error that names both."""
    from nibabel.testing import data_path

    source = images[".nii"] if name == "bold.nii" else Path(data_path, name)
    path = Path(shutil.copy2(source, tmp_path / name))
    img = lazyimg.load(path, chunks={-1: 6} if name.endswith(".nii") else {0: 1})
    _compute(client, img.data.sum())  # the workers now have the file open in their caches
    if how == "removed":
        path.unlink()
    elif how == "renamed":
        path.rename(path.with_name("moved-" + name))
    else:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    error = lazyimg.FileChangedError if how == "changed" else lazyimg.ImageNotFoundError
    with pytest.raises(error) as info:
        _compute(client, img.data.sum())
    message = str(info.value)
    assert str(path) in message
    assert any(f"dask worker {w}" in message for w in _worker_addresses(client)), message
    hint = "cp -p" if how == "changed" else "same path"
    assert hint in message, f"no hint on what to do: {message}"


def test_file_gone_without_a_cluster_names_no_worker(images: dict, tmp_path: Path) -> None:
    path = Path(shutil.copy2(images[".nii"], tmp_path / "gone.nii"))
    img = lazyimg.load(path, chunks={3: 6})
    path.unlink()
    with pytest.raises(lazyimg.ImageNotFoundError, match="removed or moved") as info:
        img.data.sum().compute(scheduler="sync")
    assert str(path) in str(info.value) and "worker" not in str(info.value)


def test_relative_path_reads_on_workers(
    client: Client, images: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path means the client's working directory, also on workers elsewhere."""
    shutil.copy2(images[".nii"], tmp_path / "rel.nii")
    monkeypatch.chdir(tmp_path)
    img = lazyimg.load("rel.nii", chunks={3: 6})
    assert_same(_compute(client, img.data), nib_array(tmp_path / "rel.nii"))


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_save_from_cluster(client: Client, images: dict, tmp_path: Path, suffix: str) -> None:
    """Workers write their own regions of the output; the file appears complete."""
    if not _module_exists("lazyimg.write"):
        pytest.skip("lazyimg.write (lazyimg.save) is not in this tree yet")
    from distributed import get_task_stream

    save = getattr(lazyimg, "save", None) or importlib.import_module("lazyimg.write").save
    img = lazyimg.load(images[".nii"], chunks={3: 4})
    demeaned = (img.data - img.data.mean(-1, keepdims=True)).astype("float32")
    want = demeaned.compute(scheduler="threads")
    target = tmp_path / f"demeaned{suffix}"
    with get_task_stream(client) as stream:
        out = save(demeaned, target, affine=img.affine)
    assert Path(out) == target
    back = nib.load(target)
    assert_same(np.asarray(back.dataobj), want)
    np.testing.assert_array_equal(back.affine, img.affine)
    ran_on = {t["worker"] for t in stream.data}
    assert ran_on and ran_on <= _worker_addresses(client)
    assert [p.name for p in tmp_path.iterdir()] == [target.name], "temporary files left behind"


# --------------------------------------------------------------------------- the notebook


def test_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """notebooks/03_distributed.ipynb runs end to end (its own LocalCluster) on tiny data."""
    nb = run_notebook("03_distributed.ipynb", tmp_path, monkeypatch)
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert "/status" in text, "the dashboard link is not shown"


def _decompressed_and_builds(client: Client) -> dict[str, tuple[int, int]]:
    """Per worker: gzip bytes decompressed (cold and warm reads), indexes built."""
    from lazyimg._io.gzip import index, inflate

    got = [
        client.run(getattr, module, name)
        for module, name in (
            (inflate, "decoded_bytes"),
            (inflate, "inflated_bytes"),
            (index, "index_builds"),
        )
    ]
    return {w: (got[0][w] + got[1][w], got[2][w]) for w in got[0]}


@pytest.mark.parametrize("chunks", [{3: 10}, {3: 3}], ids=["8 chunks", "27 chunks"])
def test_cold_gzip_first_pass_decodes_about_once(
    client: Client, tmp_path: Path, chunks: dict
) -> None:
    """A new .nii.gz: one worker decodes the stream (and indexes it), the other reads what
    it decoded (lazyimg._io.gzip.shared), in whatever order the chunks run."""
    path = write_fmri(tmp_path / "bold.nii.gz", (64, 64, 24, 80), seed=5)
    img = lazyimg.load(path, chunks=chunks)
    before = _decompressed_and_builds(client)
    mean = _compute(client, img.data.mean(axis=-1))
    after = _decompressed_and_builds(client)
    assert after.keys() == before.keys(), "a worker restarted"
    np.testing.assert_allclose(mean, nib_array(path).mean(axis=-1), rtol=1e-12)
    decompressed = sum(after[w][0] - before[w][0] for w in after)
    assert decompressed <= 1.2 * img.nbytes, decompressed / img.nbytes
    assert sum(after[w][1] - before[w][1] for w in after) == 1  # one worker built the index
