"""Property tests: any numpy basic index gives numpy's answer through every lazyimg path.

For random basic indices (ints, negative too; slices with any step and
out-of-range bounds; Ellipsis; None) ``img.data[idx].compute()``,
``img.slicecopy[idx]`` and ``np.asarray(nib.load(f).dataobj)[idx]`` agree bit
for bit, views of views compose exactly, errors are numpy's, and
``img.slicer`` follows nibabel's ``img.slicer``.
"""

from __future__ import annotations

from typing import Any

import nibabel as nib
import numpy as np
import pytest
from conftest import (
    assert_same,
    assert_world_positions_kept,
    basic_indices,
    c_ordered_source,
    counted,
    sample,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lazyimg
from lazyimg._graph import full_disk_array

# example counts come from the profile loaded in conftest.py (HYPOTHESIS_PROFILE=thorough for more)
SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --------------------------------------------------------------------------- cases


class Loaded(dict):  # type: ignore[type-arg]
    def __repr__(self) -> str:  # keep hypothesis' reports short
        return f"<loaded cases {sorted(self)}>"


@pytest.fixture(scope="session")
def loaded(index_cases: dict[str, Any]) -> Loaded:
    """Each case loaded once: (LazyImage, nibabel's array); plus an in-memory image."""
    out = Loaded((name, (case.load(), case.oracle())) for name, case in index_cases.items())
    arr = sample((5, 4, 3, 2), "float64", seed=7)
    out["in-memory"] = (lazyimg.load(nib.Nifti1Image(arr, np.eye(4)), chunks=(2, 3, 1, 1)), arr)
    return out


CASES = ["nifti-scaled-4d", "nifti-bigendian-3d", "nifti-gz-5d", "minc2-4d", "in-memory"]


def np_index(arr: np.ndarray, index: Any) -> np.ndarray:
    """``arr[index]`` as an array in `arr`'s dtype (numpy scalars are always native-endian)."""
    out = arr[index]
    return out if isinstance(out, np.ndarray) else np.asarray(out, dtype=arr.dtype)


def as_indexed(got: Any, want: np.ndarray) -> Any:
    """A numpy scalar (an all-integer index gives one, native order) as a 0-d array like `want`."""
    if isinstance(got, np.generic):
        assert got.dtype.isnative and want.ndim == 0
        return np.asarray(got, dtype=want.dtype)
    return got


def case_and_index(loaded: dict[str, Any], name: str, data: st.DataObject) -> Any:
    img, want = loaded[name]
    return img, want, data.draw(basic_indices(want.shape), label="index")


@pytest.mark.parametrize("name", CASES)
@SETTINGS
@given(data=st.data())
def test_basic_index(loaded: dict[str, Any], name: str, data: st.DataObject) -> None:
    img, want, index = case_and_index(loaded, name, data)
    expected = np_index(want, index)
    lazy = img.data[index]
    assert lazy.shape == expected.shape
    assert lazy.dtype == expected.dtype
    assert tuple(map(sum, lazy.chunks)) == expected.shape
    assert_same(as_indexed(lazy.compute(), expected), expected, "img.data[idx]")
    assert_same(as_indexed(img.slicecopy[index], expected), expected, "img.slicecopy[idx]")


@pytest.mark.parametrize("name", CASES)
@SETTINGS
@given(data=st.data())
def test_chained_index(loaded: dict[str, Any], name: str, data: st.DataObject) -> None:
    img, want, first = case_and_index(loaded, name, data)
    second = data.draw(basic_indices(np.shape(want[first])), label="second index")
    assert_same(
        as_indexed(img.data[first][second].compute(), np_index(np_index(want, first), second)),
        np_index(np_index(want, first), second),
        "img.data[a][b]",
    )


@pytest.mark.parametrize("name", ["nifti-scaled-4d", "minc2-4d", "in-memory"])
@SETTINGS
@given(data=st.data())
def test_out_of_range_int_raises_like_numpy(
    loaded: dict[str, Any], name: str, data: st.DataObject
) -> None:
    img, want = loaded[name]
    axis = data.draw(st.integers(0, want.ndim - 1), label="axis")
    n = want.shape[axis]
    bad = data.draw(st.integers(n, n + 5) | st.integers(-n - 5, -n - 1), label="int")
    index = (slice(None),) * axis + (bad,)
    with pytest.raises(IndexError):
        want[index]
    with pytest.raises(IndexError):
        img.data[index]
    with pytest.raises(IndexError):
        img.slicecopy[index]


@pytest.mark.parametrize("name", CASES)
def test_index_errors_like_numpy(loaded: dict[str, Any], name: str) -> None:
    img, want = loaded[name]
    too_many = (0,) * (want.ndim + 1)
    for index in [too_many, (Ellipsis, Ellipsis)]:
        with pytest.raises(IndexError):
            want[index]
        with pytest.raises(IndexError):
            img.slicecopy[index]
        with pytest.raises(IndexError):
            img.data[index]
    with pytest.raises(ValueError, match="step"):
        img.slicecopy[::0]


@pytest.mark.parametrize("name", CASES)
def test_numpy_integer_types_are_basic(loaded: dict[str, Any], name: str) -> None:
    img, want = loaded[name]
    index = (np.int64(-1), np.uint8(1))
    expected = np_index(want, index)
    assert_same(as_indexed(img.slicecopy[index], expected), expected)
    assert_same(as_indexed(img.data[index].compute(), expected), expected)


NON_BASIC = [
    pytest.param(lambda shape: [0, shape[0] - 1, 0], id="list"),
    pytest.param(lambda shape: (Ellipsis, np.array([1, 0])), id="array-last-axis"),
    pytest.param(lambda shape: np.arange(shape[0]) % 2 == 0, id="bool-mask-axis0"),
    pytest.param(lambda shape: (slice(None), np.array([-1])), id="negative-array"),
]


@pytest.mark.parametrize("make", NON_BASIC)
@pytest.mark.parametrize("name", CASES)
def test_non_basic_index(loaded: dict[str, Any], name: str, make: Any) -> None:
    img, want = loaded[name]
    index = make(want.shape)
    with pytest.raises((TypeError, IndexError), match=r"basic|fancy|\.data"):
        img.slicecopy[index]
    got = img.data[index].compute()
    expected = want[index]
    assert img.data[index].dtype == expected.dtype
    # dask's fancy indexing with a list or mask computes in native byte order whatever the
    # declared dtype (``da.from_array(np.ones(4, ">f4"))[[0, 1]].compute().dtype`` is "<f4");
    # that is dask's, so values are compared in native order
    native = expected.dtype.newbyteorder("=")
    assert_same(got.astype(native), expected.astype(native), "dask fancy indexing")


# --------------------------------------------------------------------------- C order, raw reader


@pytest.fixture(scope="module")
def c_ordered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, np.ndarray]:
    """A hand-built raw C-ordered Source over numpy-written bytes, and its memmap."""
    path = tmp_path_factory.mktemp("c-order") / "c.raw"
    data = sample((5, 4, 6, 3), ">f8", seed=4)
    source = c_ordered_source(path, data, 40)
    arr = full_disk_array(source, ((2, 2, 1), (4,), (3, 3), (3,)), None, False)
    mm = np.memmap(path, dtype=data.dtype, mode="r", offset=40, shape=data.shape, order="C")
    return arr, np.array(mm)


@SETTINGS
@given(data=st.data())
def test_c_order_raw_reader(c_ordered: tuple[Any, np.ndarray], data: st.DataObject) -> None:
    arr, want = c_ordered
    index = data.draw(basic_indices(want.shape), label="index")
    assert_same(as_indexed(arr[index].compute(), np_index(want, index)), np_index(want, index))


# --------------------------------------------------------------------------- img.slicer


@pytest.fixture(scope="module")
def slicer_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    path = tmp_path_factory.mktemp("slicer") / "img.nii"
    affine = np.array(
        [[2.0, 0.1, 0, -10], [0, 3.0, 0.2, 5], [0.3, 0, 1.5, 7], [0, 0, 0, 1]], dtype=np.float64
    )
    nib.save(nib.Nifti1Image(sample((6, 5, 4, 3), "int16", 5), affine), path)
    on_disk = nib.load(path)
    # nibabel's slicer over an in-memory copy is the oracle: the same affine arithmetic,
    # without nibabel's proxy, which mis-slices out-of-range negative bounds
    # (``dataobj[:, -6:]`` of a length-5 axis gives one row)
    oracle = nib.Nifti1Image(np.asarray(on_disk.dataobj), on_disk.affine, on_disk.header)
    return lazyimg.load(path, chunks={3: 1}), oracle


def check_slicer(lazy_img: lazyimg.LazyImage, nib_img: Any, index: Any) -> tuple[Any, Any]:
    try:
        expected = nib_img.slicer[index]
    except Exception as err:  # IndexError, or e.g. more than 7 axes for NIfTI
        with pytest.raises(type(err)):
            lazy_img.slicer[index]
        return None, None
    got = lazy_img.slicer[index]
    assert isinstance(got, lazyimg.LazyImage)
    assert got.shape == expected.shape
    # geometry is the oracle for the affine (nibabel's misplaces negative starts/steps)
    spatial = nib_img.slicer.check_slicing(index, return_spatial=True)
    assert_world_positions_kept(lazy_img.affine, got.affine, lazy_img.shape[:3], spatial)
    want = np.asarray(expected.dataobj)
    assert_same(got.data.compute(), want, "slicer .data")
    assert_same(np.asarray(got), want, "np.asarray(slicer)")
    assert_same(np.asarray(got.dataobj), want, "slicer .dataobj")
    return got, expected


@SETTINGS
@given(data=st.data())
def test_slicer_matches_nibabel(slicer_pair: tuple[Any, Any], data: st.DataObject) -> None:
    lazy_img, nib_img = slicer_pair
    index = data.draw(basic_indices(nib_img.shape), label="index")
    got, expected = check_slicer(lazy_img, nib_img, index)
    if got is None:
        return
    second = data.draw(basic_indices(expected.shape), label="second index")
    check_slicer(got, expected, second)


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(0, id="scalar-spatial"),
        pytest.param((slice(None), 2), id="scalar-spatial-y"),
        pytest.param(slice(3, 3), id="empty"),
        pytest.param((Ellipsis, slice(5, 1)), id="empty-time"),
        pytest.param(None, id="new-spatial-axis"),
    ],
)
def test_slicer_errors(slicer_pair: tuple[Any, Any], index: Any) -> None:
    lazy_img, nib_img = slicer_pair
    with pytest.raises(IndexError) as nib_err:
        nib_img.slicer[index]
    with pytest.raises(IndexError) as our_err:
        lazy_img.slicer[index]
    assert str(our_err.value) == str(nib_err.value)


def test_slicer_is_lazy(slicer_pair: tuple[Any, Any]) -> None:
    lazy_img, _ = slicer_pair
    with counted() as box:
        sub = lazy_img.slicer[1:5, ::-2, 1:, 2]
        sub.slicer[::2]
    assert box["n"] == 0
    assert sub.is_proxy
