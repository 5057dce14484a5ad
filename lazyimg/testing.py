"""Image factories for tests, notebooks, benchmarks and the demo.

Everything here writes deterministic data into a directory the caller owns;
nothing is downloaded and nothing large is committed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

__all__ = ["fmri_like", "make_image", "write_fmri", "write_scaled"]


def fmri_like(shape: tuple[int, ...], dtype: Any = "int16", seed: int = 0) -> np.ndarray:
    """A 4D array that looks like BOLD data: a smooth brain, a slow drift, noise.

    Cheap to generate (no per-volume Python loop beyond broadcasting) and
    deterministic for a given `seed`.
    """
    rng = np.random.default_rng(seed)
    x, y, z = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape[:3])
    r2 = x[:, None, None] ** 2 + y[None, :, None] ** 2 + z[None, None, :] ** 2
    brain = np.where(r2 < 0.8, 1000.0 - 300.0 * r2, 20.0).astype(np.float32)
    nt = shape[3] if len(shape) > 3 else 1
    drift = (1 + 0.02 * np.sin(np.linspace(0, 6 * np.pi, nt, dtype=np.float32))).astype(np.float32)
    out = np.empty(shape[:3] + (nt,), dtype=dtype, order="F")
    noise = rng.standard_normal(shape[:3], dtype=np.float32) * 15
    for t in range(nt):
        vol = brain * drift[t] + np.roll(noise, t * 7)
        out[..., t] = (
            vol.astype(dtype) if np.dtype(dtype).kind == "f" else np.rint(vol).astype(dtype)
        )
    return out.reshape(shape, order="F")


def write_fmri(
    path: str | os.PathLike[str],
    shape: tuple[int, ...] = (64, 64, 32, 100),
    *,
    dtype: Any = "int16",
    tr: float = 2.0,
    seed: int = 0,
) -> Path:
    """Write an fMRI-like NIfTI-1 file (``.nii`` or ``.nii.gz``) with a 2 mm grid and a TR."""
    data = fmri_like(shape, dtype, seed)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-shape[0], -shape[1], -shape[2]]
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    zooms = (2.0, 2.0, 2.0) + ((tr,) if len(shape) > 3 else ())
    img.header.set_zooms(zooms + (1.0,) * (len(shape) - len(zooms)))
    path = Path(path)
    nib.save(img, path)
    return path


def make_image(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    klass: Any = nib.Nifti1Image,
    affine: np.ndarray | None = None,
) -> Path:
    """Save `data` with nibabel's image class `klass` (format follows `path`'s suffix)."""
    path = Path(path)
    nib.save(klass(data, np.eye(4) if affine is None else affine), path)
    return path


def write_scaled(
    path: str | os.PathLike[str],
    stored: np.ndarray,
    slope: float,
    inter: float,
    *,
    klass: Any = nib.Nifti1Image,
    byteorder: str = "=",
) -> Path:
    """Write `stored` values as they are, with the header's scale factors set.

    Readers must return ``stored * slope + inter``; nibabel's own save would
    re-derive the factors, so header and bytes are written here directly.
    """
    path = Path(path)
    hdr = klass.header_class(endianness=byteorder)
    hdr.set_data_shape(stored.shape)
    hdr.set_data_dtype(stored.dtype)
    hdr.set_slope_inter(slope, inter)
    if hasattr(hdr, "set_sform"):
        hdr.set_sform(np.eye(4), code=1)
    dtype = hdr.get_data_dtype()
    with nib.openers.ImageOpener(str(path), "wb") as f:
        hdr.write_to(f)
        offset = int(hdr.get_data_offset())
        f.write(b"\x00" * (offset - f.tell()))
        f.write(np.asarray(stored, dtype=dtype).tobytes(order="F"))
    return path
