"""What importing lazyimg pulls in: start-up stays cheap (fresh processes, no timings).

``import lazyimg`` must not import dask, nibabel, xarray, pandas, scipy or
matplotlib; ``lazyimg.load`` of a path reads the header without building a dask
graph, so ``dask.array`` (which drags xarray, pandas and scipy along) comes in
only when ``.data`` is used; the ``da.lazyimg`` accessor is registered by
anything that imports :mod:`lazyimg.xarray`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lazyimg.testing import write_fmri

HEAVY = ["xarray", "pandas", "scipy.fft", "scipy.sparse", "matplotlib", "dask.array", "distributed"]


def _modules_after(code: str, tmp_path: Path) -> dict[str, bool]:
    script = code + "\nimport json, sys\nprint(json.dumps({m: m in sys.modules for m in WATCH}))"
    watch = [*HEAVY, "dask", "nibabel", "numpy", "scipy", "indexed_gzip"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", f"WATCH = {watch!r}\n{script}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_lazyimg_pulls_nothing_heavy(tmp_path: Path) -> None:
    seen = _modules_after("import lazyimg", tmp_path)
    assert [m for m, on in seen.items() if on] == []


def test_help_imports_no_numpy(tmp_path: Path) -> None:
    seen = _modules_after(
        "import lazyimg.cli as c\ntry:\n c.main(['--help'])\nexcept SystemExit:\n pass", tmp_path
    )
    assert not seen["numpy"] and not seen["nibabel"] and not seen["dask"]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_load_and_read_without_dask_array(tmp_path: Path, suffix: str) -> None:
    path = write_fmri(tmp_path / f"f{suffix}", shape=(6, 5, 4, 8))
    code = (
        "import lazyimg\n"
        f"img = lazyimg.load({str(path)!r})\n"
        "img.shape, img.dtype, img.chunks, img.nbytes, repr(img)\n"
        "img.slicecopy[..., 3]\n"
        "from lazyimg.cli import describe_file\n"
        f"describe_file({str(path)!r})\n"
    )
    seen = _modules_after(code, tmp_path)
    assert [m for m in HEAVY if seen[m]] == []
    assert not seen["dask"]  # dask's chunk size comes from its shipped dask.yaml


def test_dask_settings_still_steer_chunks_without_dask_imported(tmp_path: Path) -> None:
    """A ``DASK_*`` variable (or a config file) sends the look-up to dask itself."""
    path = write_fmri(tmp_path / "f.nii", shape=(6, 5, 4, 8))
    code = f"import lazyimg\nprint(lazyimg.load({str(path)!r}).chunks[3])\n"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env = {k: v for k, v in env.items() if not k.startswith("DASK_")}
    run = lambda extra: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, **extra},
        check=True,
    ).stdout.strip()
    assert run({}) == "(8,)"
    assert run({"DASK_ARRAY__CHUNK_SIZE": "1KiB"}) == "(4, 4)"  # 240 B a volume
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "c.yaml").write_text("array:\n  chunk-size: 512B\n")
    assert run({"DASK_CONFIG": str(conf)}) == "(2, 2, 2, 2)"


def test_data_builds_the_graph_on_first_use(tmp_path: Path) -> None:
    path = write_fmri(tmp_path / "f.nii", shape=(6, 5, 4, 8))
    code = f"import lazyimg\nimg = lazyimg.load({str(path)!r})\nimg.data\n"
    assert _modules_after(code, tmp_path)["dask.array"]


def test_accessor_registered_by_to_xarray(tmp_path: Path) -> None:
    path = write_fmri(tmp_path / "f.nii", shape=(6, 5, 4, 8))
    code = (
        f"import lazyimg\nda = lazyimg.load({str(path)!r}).to_xarray()\n"
        "assert hasattr(da, 'lazyimg')\n"
        "import xarray as xr\nassert 'lazyimg' in dir(xr.DataArray)\n"
    )
    assert _modules_after(code, tmp_path)["xarray"]


def test_lazy_public_names() -> None:
    import lazyimg

    for name in lazyimg.__all__:
        assert getattr(lazyimg, name) is not None
    assert set(lazyimg.__all__) <= set(dir(lazyimg))
    with pytest.raises(AttributeError):
        lazyimg.no_such_name  # noqa: B018


def test_reduce_streams_without_dask_array(tmp_path: Path) -> None:
    path = write_fmri(tmp_path / "f.nii.gz", shape=(6, 5, 4, 9))
    code = (
        "import lazyimg.cli as c\n"
        "import lazyimg._reduce as r; r.SLAB_BYTES = 6 * 5 * 4 * 4 * 2  # two volumes per step: several slabs\n"
        f"c.reduce_file({str(path)!r}, 'tsnr', 'time', {str(tmp_path / 't.nii')!r}, False)\n"
        f"c.reduce_file({str(path)!r}, 'max', '1', {str(tmp_path / 'm.nii.gz')!r}, False)\n"
    )
    seen = _modules_after(code, tmp_path)
    assert not seen["dask"] and not seen["distributed"]
    import nibabel as nib
    import numpy as np

    data = np.asarray(nib.load(path).dataobj).astype(np.float64)
    mean, std = data.mean(-1), data.std(-1)
    want = np.divide(mean, std, out=np.zeros_like(mean), where=std > 0)
    np.testing.assert_allclose(nib.load(tmp_path / "t.nii").get_fdata(), want, rtol=1e-5)
    got = np.asarray(nib.load(tmp_path / "m.nii.gz").dataobj)
    np.testing.assert_array_equal(got, data.max(1, keepdims=True))


def test_compute_without_a_client_does_not_import_distributed(tmp_path: Path) -> None:
    path = write_fmri(tmp_path / "f.nii", shape=(6, 5, 4, 8))
    code = (
        "import numpy as np, lazyimg\n"
        f"img = lazyimg.load({str(path)!r}, chunks={{3: 3}})\n"
        "assert np.array_equal(img.data[..., 2].compute(), img.slicecopy[..., 2])\n"
        "assert np.array_equal(img.data[1:3].compute(), img.slicecopy[1:3])  # several chunks\n"
    )
    seen = _modules_after(code, tmp_path)
    assert seen["dask.array"] and not seen["distributed"]


def test_save_without_a_client_does_not_import_distributed(tmp_path: Path) -> None:
    path = write_fmri(tmp_path / "f.nii", shape=(6, 5, 4, 8))
    code = (
        "import lazyimg\n"
        f"img = lazyimg.load({str(path)!r}, chunks={{3: 3}})\n"
        f"lazyimg.save(img.data.astype('float32'), {str(tmp_path / 'o.nii')!r}, affine=img.affine)\n"
    )
    assert not _modules_after(code, tmp_path)["distributed"]
