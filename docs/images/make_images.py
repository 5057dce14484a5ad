"""Render the pictures under docs/images/ from nibabel's bundled test files.

Run ``python docs/images/make_images.py``; the test suite renders the same
pictures into a temporary folder (tests/cli/test_pictures.py).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nibabel as nib
import numpy as np
from nibabel.testing import data_path

import lazyimg
from lazyimg.testing import write_fmri


def oblique_copy(folder: Path) -> Path:
    """anatomical.nii with its affine turned 20 degrees about x (pitch) and 10 about z."""
    src = nib.load(os.path.join(data_path, "anatomical.nii"))
    a, b = np.radians(20), np.radians(10)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    affine = src.affine.copy()
    affine[:3, :3] = rz @ rx @ affine[:3, :3]
    path = folder / "anatomical_oblique.nii"
    nib.save(nib.Nifti1Image(np.asarray(src.dataobj), affine), path)
    return path


def render(out: Path) -> list[Path]:
    """Write the PNGs into `out`; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jobs = [
            ("slices_nifti.png", os.path.join(data_path, "anatomical.nii"), {}),
            ("slices_minc_4d.png", os.path.join(data_path, "minc2_4d.mnc"), {"volume": 1}),
            ("slices_oblique.png", oblique_copy(Path(tmp)), {}),
        ]
        for name, path, kwargs in jobs:
            fig = lazyimg.load(path).plot_slices(**kwargs)
            fig.savefig(out / name, dpi=60, facecolor=fig.get_facecolor())
            written.append(out / name)
        bold = write_fmri(Path(tmp) / "bold.nii.gz", (16, 16, 8, 120), tr=2.0)
        fig = lazyimg.load(bold).plot_timeseries((8, 8, 4))
        fig.savefig(out / "timeseries.png", dpi=60)
        written.append(out / "timeseries.png")
    import matplotlib.pyplot as plt

    plt.close("all")
    return written


if __name__ == "__main__":
    for p in render(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent):
        print(p, p.stat().st_size)
