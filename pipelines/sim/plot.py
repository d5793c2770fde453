"""Look at a simulated visit with its truth on top (for notebooks and ``pachon simulate --plot``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pachon.core.repo import DataRepository

__all__ = ["plot_visit"]

_STYLE: dict[str, dict[str, Any]] = {
    "star": {"marker": "o", "facecolors": "none", "edgecolors": "#00e5ff", "s": 60, "label": "star"},
    "galaxy": {"marker": "s", "facecolors": "none", "edgecolors": "#ffb000", "s": 70, "label": "galaxy"},
    "transient": {
        "marker": "*",
        "facecolors": "none",
        "edgecolors": "#ff2d95",
        "s": 260,
        "label": "transient",
    },
    "asteroid": {"marker": "^", "facecolors": "none", "edgecolors": "#7CFC00", "s": 180, "label": "asteroid"},
}


def plot_visit(
    repo: DataRepository | str | Path,
    exposure: int,
    detector: int,
    out_png: str | Path | None = None,
    *,
    mag_limit: float = 24.5,
) -> Any:
    """Show one raw detector image (overscan-subtracted, zscale + asinh) with the truth overlaid.

    Stars are cyan circles, galaxies amber squares, transients pink stars and asteroids green
    triangles; only truth sources brighter than ``mag_limit`` are marked. Returns the
    matplotlib Figure; with ``out_png`` it is also saved there.

    Examples
    --------
    >>> plot_visit("demo/repo", 20270306001, 0, "visit.png")      # doctest: +SKIP
    """
    import matplotlib

    if out_png is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval

    if not isinstance(repo, DataRepository):
        repo = DataRepository.open(repo)
    raw = repo.get("raw", exposure=exposure, detector=detector)
    truth = repo.get("truth_visit_sources", exposure=exposure, detector=detector)
    hdr = raw.meta
    data = np.asarray(raw.data, dtype=np.float64)
    nx = int(str(hdr["DATASEC"]).strip("[]").split(",")[0].split(":")[1])
    overscan = np.median(data[:, nx:], axis=1)
    image = data[:, :nx] - overscan[:, None]
    norm = ImageNormalize(image, interval=ZScaleInterval(), stretch=AsinhStretch(0.1))
    fig, ax = plt.subplots(figsize=(9, 9))
    ax.imshow(image, origin="lower", cmap="gray", norm=norm, interpolation="nearest")
    kinds = np.asarray(truth["type"]).astype(str)
    mags = np.asarray(truth["mag"])
    for kind, style in _STYLE.items():
        sel = (kinds == kind) & ((mags < mag_limit) | (kind in ("transient", "asteroid")))
        if sel.any():
            ax.scatter(np.asarray(truth["x"])[sel], np.asarray(truth["y"])[sel], linewidths=0.9, **style)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(-0.5, image.shape[0] - 0.5)
    ax.set_title(
        f"exposure {exposure} detector {detector} ({hdr.get('DETNAME', '')})  band {hdr.get('BAND')}  "
        f"seeing {hdr.get('SEEING')}″  airmass {hdr.get('AIRMASS')}",
        fontsize=10,
    )
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.6)
    fig.tight_layout()
    if out_png is not None:
        fig.savefig(out_png, dpi=110)
        plt.close(fig)
    return fig
