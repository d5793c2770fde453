"""The hidden spatial-index columns of positioned tables on DuckDB (see ``model`` for the contract).

``pachon_hpx`` is the nested HEALPix cell of (ra, dec) at depth
:data:`~pachon.core.catalog.model.HPX_DEPTH`, computed with ``cdshealpix`` (the CDS Rust
implementation, the same code the translator uses to turn a cone into cell ranges, so both
sides agree bit for bit); ``pachon_x/y/z`` are the ICRS unit vector for the exact
``dot >= cos(radius)`` refine. Rows without a position get NULLs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pachon.core.catalog.model import HPX_COLUMN, HPX_DEPTH, UNIT_VECTOR_COLUMNS

__all__ = ["PositionError", "add_spatial_columns", "check_positions", "healpix_index", "unit_vectors"]


class PositionError(ValueError):
    """A row's ra/dec is outside the valid range; carries the row and column."""

    def __init__(self, row: int, column: str, value: float, expected: str) -> None:
        super().__init__(f"row {row}, column {column!r}: value {value!r} is not {expected}")
        self.row = row
        self.column = column
        self.value = value
        self.expected = expected


def _as_float(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def healpix_index(ra_deg: np.ndarray, dec_deg: np.ndarray, depth: int = HPX_DEPTH) -> np.ndarray:
    """Nested HEALPix index (int64) of positions in degrees; -1 where ra or dec is NaN."""
    import astropy.units as u
    from cdshealpix.nested import lonlat_to_healpix

    out = np.full(ra_deg.shape, -1, dtype=np.int64)
    ok = np.isfinite(ra_deg) & np.isfinite(dec_deg)
    if ok.any():
        lon = np.mod(ra_deg[ok], 360.0) * u.deg
        lat = dec_deg[ok] * u.deg
        out[ok] = lonlat_to_healpix(lon, lat, depth).astype(np.int64)
    return out


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ICRS unit vector components of positions in degrees (NaN where undefined)."""
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)


def check_positions(
    batch: pa.RecordBatch, ra: str, dec: str, first_row: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """ra/dec of a batch as float64 degrees; raise :class:`PositionError` for an impossible value.

    ``first_row`` is the 1-based number of the batch's first row in its file, used in the
    error for a declination outside [-90, 90] or an infinite value. NULL/NaN is allowed
    (the row simply has no position).
    """
    ra_deg = _as_float(batch.column(ra))
    dec_deg = _as_float(batch.column(dec))
    bad_dec = np.flatnonzero(np.isinf(dec_deg) | (np.abs(dec_deg) > 90.0))
    if bad_dec.size:
        i = int(bad_dec[0])
        raise PositionError(
            first_row + i, dec, float(dec_deg[i]), "a declination in degrees within [-90, 90]"
        )
    bad_ra = np.flatnonzero(np.isinf(ra_deg))
    if bad_ra.size:
        i = int(bad_ra[0])
        raise PositionError(first_row + i, ra, float(ra_deg[i]), "a finite right ascension in degrees")
    return ra_deg, dec_deg


def add_spatial_columns(batch: pa.RecordBatch, ra: str, dec: str, first_row: int = 1) -> pa.RecordBatch:
    """Append ``pachon_hpx`` and the unit vector computed from columns ``ra`` and ``dec``.

    Positions are checked first with :func:`check_positions`.
    """
    ra_deg, dec_deg = check_positions(batch, ra, dec, first_row)
    hpx = healpix_index(ra_deg, dec_deg)
    x, y, z = unit_vectors(ra_deg, dec_deg)
    valid = hpx >= 0
    mask = None if valid.all() else ~valid
    arrays = [
        pa.array(hpx, type=pa.int64(), mask=mask),
        pa.array(x, type=pa.float64(), mask=mask),
        pa.array(y, type=pa.float64(), mask=mask),
        pa.array(z, type=pa.float64(), mask=mask),
    ]
    names = [HPX_COLUMN, *UNIT_VECTOR_COLUMNS]
    return pa.RecordBatch.from_arrays(
        [*batch.columns, *arrays],
        schema=batch.schema.append(pa.field(names[0], pa.int64()))
        .append(pa.field(names[1], pa.float64()))
        .append(pa.field(names[2], pa.float64()))
        .append(pa.field(names[3], pa.float64())),
    )
