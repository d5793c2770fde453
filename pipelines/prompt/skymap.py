"""A one-tract sky map covering the simulated field, registered as Butler ``skymap``/``tract``/``patch``.

Templates are stored per patch (``template_coadd``: skymap, tract, patch, band), as on Rubin, not per
detector: the telescope dithers, so a detector sees a different piece of sky each visit and a
per-detector template would miss the dithered edges. One tangent-plane tract is enough for the fields
the simulator makes (≤ 1°); patches tile it without overlap, so a detector's template is cut from the
union of the patches it touches.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d

from pachon.core.repo import DataRepository

__all__ = ["Patch", "SkyMap", "design_skymap"]


@dataclass(frozen=True)
class Patch:
    """One patch: its id, pixel box in the tract (x0, y0, nx, ny) and its WCS."""

    id: int
    x0: int
    y0: int
    nx: int
    ny: int
    wcs: WCS

    def corners(self) -> tuple[np.ndarray, np.ndarray]:
        x = np.array([0, self.nx - 1, self.nx - 1, 0], dtype=float)
        y = np.array([0, 0, self.ny - 1, self.ny - 1], dtype=float)
        return self.wcs.all_pix2world(x, y, 0)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class SkyMap:
    """A TAN tract split into patches."""

    name: str
    ra: float
    dec: float
    pixel_scale: float
    nx: int
    ny: int
    patch_size: int
    tract: int = 0

    def tract_wcs(self) -> WCS:
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [self.ra, self.dec]
        w.wcs.crpix = [self.nx / 2 + 0.5, self.ny / 2 + 0.5]
        s = self.pixel_scale / 3600
        w.wcs.cd = np.array([[-s, 0.0], [0.0, s]])
        w.wcs.set()
        return w

    @property
    def patch_nx(self) -> int:
        return int(np.ceil(self.nx / self.patch_size))

    @property
    def patch_ny(self) -> int:
        return int(np.ceil(self.ny / self.patch_size))

    def patches(self) -> list[Patch]:
        out = []
        base = self.tract_wcs()
        for j in range(self.patch_ny):
            for i in range(self.patch_nx):
                x0, y0 = i * self.patch_size, j * self.patch_size
                nx = min(self.patch_size, self.nx - x0)
                ny = min(self.patch_size, self.ny - y0)
                w = base.deepcopy()
                w.wcs.crpix = base.wcs.crpix - np.array([x0, y0])
                w.wcs.set()
                out.append(Patch(id=j * self.patch_nx + i, x0=x0, y0=y0, nx=nx, ny=ny, wcs=w))
        return out

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    def register(self, repo: DataRepository) -> None:
        """Insert the skymap, tract and patch dimension records (idempotent)."""
        registry = repo.butler.registry
        digest = hashlib.sha1(self.to_json().encode()).digest()
        registry.syncDimensionData(
            "skymap",
            {
                "name": self.name,
                "hash": digest,
                "tract_max": 1,
                "patch_nx_max": self.patch_nx,
                "patch_ny_max": self.patch_ny,
            },
        )
        registry.syncDimensionData(
            "tract",
            {"skymap": self.name, "id": self.tract, "region": _polygon(self.tract_wcs(), self.nx, self.ny)},
        )
        for p in self.patches():
            registry.syncDimensionData(
                "patch",
                {
                    "skymap": self.name,
                    "tract": self.tract,
                    "id": p.id,
                    "cell_x": p.id % self.patch_nx,
                    "cell_y": p.id // self.patch_nx,
                    "region": _polygon(p.wcs, p.nx, p.ny),
                },
            )


def _polygon(wcs: WCS, nx: int, ny: int) -> ConvexPolygon:
    x = np.array([0, nx - 1, nx - 1, 0], dtype=float) - 0.5
    y = np.array([0, 0, ny - 1, ny - 1], dtype=float) - 0.5
    ra, dec = wcs.all_pix2world(x, y, 0)
    return ConvexPolygon(
        [UnitVector3d(LonLat.fromDegrees(float(a), float(d))) for a, d in zip(ra, dec, strict=True)]
    )


def design_skymap(
    footprints: list[tuple[WCS, tuple[int, int]]],
    *,
    name: str,
    pixel_scale: float,
    patch_size: int,
    margin: int = 200,
) -> SkyMap:
    """The smallest tract (TAN, north up) that contains every detector footprint plus ``margin`` pixels."""
    ras, decs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for wcs, (ny, nx) in footprints:
            x = np.array([0, nx - 1, nx - 1, 0], dtype=float)
            y = np.array([0, 0, ny - 1, ny - 1], dtype=float)
            ra, dec = wcs.all_pix2world(x, y, 0)
            ras.append(ra)
            decs.append(dec)
    ra = np.concatenate(ras)
    dec = np.concatenate(decs)
    ra0 = float(np.degrees(np.angle(np.mean(np.exp(1j * np.radians(ra))))) % 360)
    dec0 = float(0.5 * (dec.min() + dec.max()))
    probe = SkyMap(name=name, ra=ra0, dec=dec0, pixel_scale=pixel_scale, nx=2, ny=2, patch_size=patch_size)
    px, py = probe.tract_wcs().all_world2pix(ra, dec, 0)
    half_x = float(np.max(np.abs(px - 0.5))) + margin
    half_y = float(np.max(np.abs(py - 0.5))) + margin
    return SkyMap(
        name=name,
        ra=ra0,
        dec=dec0,
        pixel_scale=pixel_scale,
        nx=int(np.ceil(2 * half_x)),
        ny=int(np.ceil(2 * half_y)),
        patch_size=patch_size,
    )
