"""lazyimg's own computes skip dask's import of ``distributed`` only when no Client can exist.

With no scheduler chosen, dask imports ``distributed`` on the first compute to
look for a Client. ``DiskArray.compute`` and the Delayed of ``lazyimg.save``
name the threaded scheduler (the collections' own default) while
``distributed`` is not imported; a Client, default or made current, still
receives every compute, and nothing global changes (dask.bag keeps processes).
"""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest

import lazyimg
from lazyimg._graph import threaded_default
from lazyimg.testing import write_fmri

distributed = pytest.importorskip("distributed")


def test_nothing_global_changes(tmp_path: Path) -> None:
    """lazyimg's computes leave dask's configuration alone: a bag still computes in processes."""
    import dask.bag as db
    import dask.multiprocessing
    from dask.base import get_scheduler

    img = lazyimg.load(write_fmri(tmp_path / "f.nii", shape=(6, 5, 4, 8)), chunks={3: 3})
    img.data[..., 2].compute()
    lazyimg.save(img.data.astype("float32"), tmp_path / "o.nii", affine=img.affine)
    assert dask.config.get("scheduler", None) is None
    assert get_scheduler(collections=[db.from_sequence([1])]) is dask.multiprocessing.get


def test_no_client_with_distributed_imported_is_still_threads() -> None:
    """distributed imported, no Client: dask would use threads, and so does lazyimg, directly."""
    import dask.threaded

    assert threaded_default({}) == {"scheduler": dask.threaded.get}


def test_a_configured_scheduler_or_argument_wins() -> None:
    assert "scheduler" not in dask.config.config or dask.config.get("scheduler") is None
    assert threaded_default({"scheduler": "sync"}) == {"scheduler": "sync"}
    with dask.config.set(scheduler="sync"):
        assert threaded_default({}) == {}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fmri(tmp_path_factory.mktemp("sched") / "f.nii", shape=(6, 5, 4, 8))


@pytest.mark.parametrize("default", [True, False], ids=["set_as_default", "as_current"])
def test_a_client_still_receives_lazyimg_computes(
    image: Path, tmp_path: Path, default: bool
) -> None:
    from distributed import Client, get_task_stream

    img = lazyimg.load(image, chunks={3: 3})
    want = np.asarray(img)
    with Client(
        processes=False,
        n_workers=1,
        threads_per_worker=1,
        dashboard_address=":0",
        set_as_default=default,
    ) as client:
        with client.as_current(), get_task_stream(client) as stream:
            assert threaded_default({}) == {}
            one = img.data[..., 2].compute()  # one chunk: read inline only without a Client
            several = img.data.compute()
            lazyimg.save(img.data.astype("float32"), tmp_path / "o.nii", affine=img.affine)
        assert len(stream.data) >= 1 + 3 + 3  # the volume, three reads, the save's tasks
    np.testing.assert_array_equal(one, want[..., 2])
    np.testing.assert_array_equal(several, want)
