"""Shared fixtures and helpers: generated images, nibabel's shipped test files, oracles."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import nibabel as nib
import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from nibabel.testing import data_path

import lazyimg
from lazyimg._io import files as _files
from lazyimg.testing import make_image, write_fmri, write_scaled

_CACHE_DIR: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Keep saved gzip indexes of the suite (and its subprocesses) out of the user's cache."""
    global _CACHE_DIR
    if "LAZYIMG_CACHE_DIR" not in os.environ:
        import tempfile

        _CACHE_DIR = tempfile.mkdtemp(prefix="lazyimg-test-cache-")
        os.environ["LAZYIMG_CACHE_DIR"] = _CACHE_DIR


def pytest_unconfigure(config: pytest.Config) -> None:
    if _CACHE_DIR is not None:
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)
        os.environ.pop("LAZYIMG_CACHE_DIR", None)


# Few, small examples by default so the suite stays quick; HYPOTHESIS_PROFILE=thorough digs deeper.
settings.register_profile("lazyimg", max_examples=40, deadline=None)
settings.register_profile("thorough", max_examples=1500, deadline=None)
# CI (CI=true) draws the same examples every run, so a red run is reproducible from its log;
# developers' runs draw new ones each time and are where new cases get found.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
_DEFAULT_PROFILE = "ci" if os.environ.get("CI", "").lower() in ("1", "true") else "lazyimg"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _DEFAULT_PROFILE))

# --------------------------------------------------------------------------- oracles


def assert_same(got: Any, want: Any, what: str = "") -> None:
    """Shape, dtype (byte order included) and every bit equal; NaN-aware message on failure."""
    got, want = np.asarray(got), np.asarray(want)
    where = f" ({what})" if what else ""
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}{where}"
    assert got.dtype == want.dtype and got.dtype.str == want.dtype.str, (
        f"dtype {got.dtype.str} != {want.dtype.str}{where}"
    )
    same_bits = np.array_equal(_bytes_of(got), _bytes_of(want))
    if not same_bits:
        nan_equal = np.array_equal(got, want, equal_nan=got.dtype.kind in "fc")
        raise AssertionError(
            f"values differ{where}: "
            + ("equal as numbers but not bit for bit" if nan_equal else "different numbers")
        )


def _bytes_of(arr: np.ndarray) -> np.ndarray:
    return np.array(arr, order="C", copy=True).reshape(-1).view(np.uint8)


def nib_array(path: str | os.PathLike[str]) -> np.ndarray:
    """The oracle: nibabel's scaled values."""
    return np.asarray(nib.load(path).dataobj)


def bytes_read() -> int:
    """lazyimg's per-process counter of voxel bytes read."""
    return _files.bytes_read


def assert_world_positions_kept(
    before: np.ndarray, after: np.ndarray, shape: tuple[int, ...], spatial: tuple[slice, ...]
) -> None:
    """Every voxel spatial slices `spatial` of `shape` keep is where it was in the world.

    ``after`` applied to the new voxel indices equals ``before`` applied to the
    indices those voxels had: geometry as the oracle, not nibabel's affine.
    """
    k = len(shape)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1)
    old = grid[tuple(spatial)]
    new = np.stack(np.meshgrid(*(np.arange(n) for n in old.shape[:-1]), indexing="ij"), -1)
    np.testing.assert_allclose(
        new @ after[:3, :k].T + after[:3, 3],
        old @ before[:3, :k].T + before[:3, 3],
        rtol=0,
        atol=1e-9,
    )


# --------------------------------------------------------------------------- index strategies


def slices(n: int) -> st.SearchStrategy[slice]:
    """Any slice for an axis of length `n`: bounds well outside it, any non-zero step."""
    bound = st.none() | st.integers(-2 * n - 3, 2 * n + 3)
    step = st.none() | st.integers(-n - 3, n + 3).filter(bool)
    return st.builds(slice, bound, bound, step)


def axis_items(n: int) -> st.SearchStrategy[Any]:
    if n == 0:
        return slices(n)
    return st.integers(-n, n - 1) | slices(n)


@st.composite
def basic_indices(draw: st.DrawFn, shape: tuple[int, ...], newaxis: bool = True) -> Any:
    """A numpy basic index for `shape` (every int in range)."""
    ndim = len(shape)
    k = draw(st.integers(0, ndim))
    if draw(st.booleans()):
        before = draw(st.integers(0, k))
        axes = list(range(before)) + list(range(ndim - (k - before), ndim))
        items: list[Any] = [draw(axis_items(shape[a])) for a in axes]
        items.insert(before, Ellipsis)
    else:
        items = [draw(axis_items(shape[a])) for a in range(k)]
    if newaxis:
        for _ in range(draw(st.integers(0, 2))):
            items.insert(draw(st.integers(0, len(items))), None)
    if len(items) == 1 and draw(st.booleans()):
        return items[0]
    return tuple(items)


# --------------------------------------------------------------------------- nibabel's files


def _nibabel_readable() -> list[str]:
    """Names of the files in ``nibabel.testing.data_path`` that nibabel can load and read."""
    names = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(os.listdir(data_path)):
            path = os.path.join(data_path, name)
            if not os.path.isfile(path):
                continue
            try:
                np.asarray(nib.load(path).dataobj)
            except Exception:
                continue  # nibabel itself cannot: not part of the contract
            names.append(name)
    return names


NIBABEL_FILES = _nibabel_readable()


def nibabel_file(name: str) -> str:
    return os.path.join(data_path, name)


def copy_nibabel_file(name: str, dest: Path) -> Path:
    """Copy a shipped file (with its companions: .REC, .BRIK, ...) into `dest`."""
    stem = name.split("+")[0] if "+" in name else Path(name).stem
    for other in os.listdir(data_path):
        if other == name or (other.startswith(stem) and Path(other).suffix != Path(name).suffix):
            shutil.copy(os.path.join(data_path, other), dest / other)
    return dest / name


# --------------------------------------------------------------------------- generated data


def sample(shape: tuple[int, ...], dtype: Any, seed: int = 0) -> np.ndarray:
    """Values spread over `dtype`'s range, with NaN, infinities and -0.0 for floats."""
    rng = np.random.default_rng(seed)
    wanted = np.dtype(dtype)
    dtype = wanted.newbyteorder("=")
    n = int(np.prod(shape))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        flat = rng.integers(info.min, info.max, size=n, dtype=dtype, endpoint=True)
        flat[: min(n, 2)] = [info.min, info.max][: min(n, 2)]
    else:
        real = np.dtype(dtype.char.lower()) if dtype.kind == "c" else dtype
        flat = (rng.standard_normal(n) * 1e3).astype(real)
        specials = np.array([np.nan, np.inf, -np.inf, -0.0], dtype=real)[: min(n, 4)]
        flat[: len(specials)] = specials
        if dtype.kind == "c":
            flat = flat + 1j * (rng.standard_normal(n) * 1e3).astype(real)
            flat = flat.astype(dtype)
    return flat.astype(wanted).reshape(shape, order="F")


def write_pair_scaled(
    path: Path, stored: np.ndarray, slope: float, klass: Any, byteorder: str = "="
) -> Path:
    """An Analyze-style ``.hdr``/``.img`` pair storing `stored` as is, with a scale factor."""
    hdr = klass.header_class(endianness=byteorder)
    hdr.set_data_shape(stored.shape)
    hdr.set_data_dtype(stored.dtype)
    hdr.set_slope_inter(slope)
    hdr.set_data_offset(0)
    with open(path.with_suffix(".hdr"), "wb") as f:
        hdr.write_to(f)
    img_path = path.with_suffix(".img")
    img_path.write_bytes(np.asarray(stored, hdr.get_data_dtype()).tobytes(order="F"))
    return img_path


def nifti_with_order(
    path: Path, data: np.ndarray, klass: Any = nib.Nifti1Image, byteorder: str = "="
) -> Path:
    """Save `data` as `klass` with the header in `byteorder` (nibabel writes its byte order)."""
    hdr = klass.header_class(endianness=byteorder)
    hdr.set_data_dtype(data.dtype)
    nib.save(klass(data, np.eye(4), hdr), path)
    return path


@dataclass(frozen=True)
class Case:
    """A file on disk, how to load it, and nibabel's view of it."""

    name: str
    path: Path
    chunks: Any = "auto"

    def load(self, **kwargs: Any) -> lazyimg.LazyImage:
        return lazyimg.load(self.path, chunks=kwargs.pop("chunks", self.chunks), **kwargs)

    def oracle(self) -> np.ndarray:
        return nib_array(self.path)


@pytest.fixture(scope="session")
def index_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    """Small images of every kind the indexing properties run over (session scope for hypothesis)."""
    root = tmp_path_factory.mktemp("index-cases")
    stored = sample((6, 5, 4, 3), "int16", seed=1)
    cases = [
        Case(
            "nifti-scaled-4d",
            write_scaled(root / "scaled.nii", stored, 2.5, -3.0),
            chunks={3: 1, 2: 3},
        ),
        Case(
            "nifti-bigendian-3d",
            nifti_with_order(root / "be.nii", sample((7, 3, 5), "float32", 2), byteorder=">"),
            chunks=(3, 2, 2),
        ),
        Case(
            "nifti-gz-5d",
            make_image(root / "five.nii.gz", sample((3, 4, 2, 3, 2), "uint8", 3)),
            chunks={4: 1},
        ),
        Case("minc2-4d", copy_nibabel_file("minc2_4d.mnc", root), chunks={0: 1, 1: 4}),
    ]
    return {c.name: c for c in cases}


@pytest.fixture(scope="session")
def fmri_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uncompressed F-ordered 4D int16 NIfTI: 16 KiB volumes, 20 of them (~320 KiB)."""
    return write_fmri(tmp_path_factory.mktemp("fmri") / "bold.nii", (32, 32, 8, 20))


@pytest.fixture
def small_chunks() -> Iterator[None]:
    """dask's chunk budget shrunk to 64 KiB, so small files have several chunks."""
    with dask.config.set({"array.chunk-size": "64KiB"}):
        yield


@contextmanager
def counted() -> Iterator[dict[str, int]]:
    """Count lazyimg's voxel bytes read inside the block: ``box["n"]`` after it."""
    box = {"n": 0}
    before = bytes_read()
    try:
        yield box
    finally:
        box["n"] = bytes_read() - before


def sparse_nifti(path: Path, shape: tuple[int, ...], dtype: Any = "int16") -> Path:
    """A NIfTI header for `shape` followed by a sparse hole of the right size (no data written)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    offset = 352
    hdr.set_data_offset(offset)
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    with open(path, "wb") as f:
        hdr.write_to(f)
        f.write(b"\x00" * (offset - f.tell()))
        try:
            f.truncate(offset + nbytes)
        except OSError as err:  # pragma: no cover - depends on the file system
            pytest.skip(f"cannot make a sparse file of {nbytes} bytes here: {err}")
    return path


def peak_of(fn: Any) -> tuple[Any, int]:
    """Result of `fn` and the peak of traced (numpy included) allocations during it, in bytes."""
    import tracemalloc

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return out, peak


def c_ordered_source(path: Path, data: np.ndarray, offset: int) -> Any:
    """A raw C-ordered Source over `data` written by numpy after `offset` filler bytes."""
    from lazyimg._io.formats import FileId, Source

    with open(path, "wb") as f:
        f.write(b"\xab" * offset)
        f.write(np.ascontiguousarray(data).tobytes(order="C"))
    return Source(
        kind="raw",
        files=(FileId.of(path),),
        shape=data.shape,
        order="C",
        stored=data.dtype,
        scaled=data.dtype,
        offset=offset,
    )


NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


def run_notebook(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Re-execute a committed notebook on small data, as ``notebooks/_build.py`` runs it.

    Checks what a reader relies on: the committed copy shows its outputs (pictures
    included), the notebook imports no private module, every stream output is short
    (a progress bar is one line, not one per update) and nothing is left in the
    temporary directory. Returns the executed notebook.
    """
    import importlib.util

    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "_build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.get("outputs") for cell in code[:2]), f"commit {name} with its outputs"
    assert not [c.source for c in code if "lazyimg._" in c.source], "private imports"
    draws = any("matplotlib" in c.source or "plot_slices" in c.source for c in code)

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # the kernel's tempfile.mkdtemp goes here
    monkeypatch.setenv("LAZYIMG_SMALL", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    for cell in code:
        cell.outputs = []
    build.execute(nb, timeout=180)

    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    if draws:
        assert any("image/png" in out.get("data", {}) for out in outputs), "no picture shown"
    for out in outputs:
        if out.output_type == "stream":
            assert out.text.count("\n") <= 12 and "\r" not in out.text, out.text[:500]
    assert not list(tmp.iterdir()), f"{name} left {list(tmp.iterdir())} behind"
    return nb
