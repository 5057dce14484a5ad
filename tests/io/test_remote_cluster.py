"""A process LocalCluster reading an image straight from the S3 endpoint.

The graph carries the URL, the object's identity and the storage options, never
a connection: each worker process opens its own filesystem. The graph's size
depends on the number of chunks, not of voxels.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import nib_array
from remote_servers import SECRET, s3, s3_endpoint  # noqa: F401 - fixtures

import lazyimg
from lazyimg.testing import write_fmri

distributed = pytest.importorskip("distributed")


def _filesystems_opened() -> int:
    from lazyimg._io import remote_fs

    return len(remote_fs._filesystems)


def test_local_cluster_reads_from_s3(s3: dict, tmp_path: Path) -> None:
    small = write_fmri(tmp_path / "small.nii.gz", (8, 8, 4, 12), tr=2.0)
    big = write_fmri(tmp_path / "big.nii", (40, 40, 20, 12), tr=2.0)
    urls = {p: s3["put"](p) for p in (small, big)}
    opts = s3["options"]
    sizes = []
    for path in (small, big):
        img = lazyimg.load(urls[path], storage_options=opts, chunks={3: 3})
        graph = dict(img.data.__dask_graph__())
        blob = pickle.dumps(graph)
        assert b"S3FileSystem" not in blob and b"ClientSession" not in blob  # no connection
        assert not [k for k in graph if SECRET in str(k)]
        sizes.append(len(blob))
    assert abs(sizes[0] - sizes[1]) < 2000  # independent of the voxel count (50x here)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=120)
        for path in (small, big):
            img = lazyimg.load(urls[path], storage_options=opts, chunks={3: 3})
            got = client.compute(img.data.mean(axis=-1)).result(timeout=300)
            assert np.allclose(got, nib_array(path).mean(-1))
        opened = client.run(_filesystems_opened)
        assert sum(opened.values()) >= 2  # the workers opened their own filesystems
