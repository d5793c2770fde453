"""Functions the translated SQL calls on DuckDB, installed on every connection.

DuckDB's spatial extension is not available offline, so sky geometry that the translator
cannot turn into plain SQL (polygon containment, region intersection, areas, HEALPix
cells for crossmatch joins) runs in these Python UDFs. The HEALPix ones are vectorised
over Arrow arrays with cdshealpix, so a crossmatch costs one call per batch, not per row.

Usage (the TAP service does this for each connection it opens)::

    import duckdb
    from pachon.services.tap.adql.duckdb_functions import install
    con = duckdb.connect()
    install(con)
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import numpy as np
import pyarrow as pa

from pachon.core.catalog.model import HPX_DEPTH

from . import geometry

__all__ = ["FUNCTIONS", "install"]

FUNCTIONS = (
    "pachon_geom_contains",
    "pachon_geom_intersects",
    "pachon_geom_area",
    "pachon_geom_centroid",
    "pachon_healpix",
    "pachon_hpx_neighbours",
    "pachon_healpix_center",
    "pachon_hasword",
)


def _depth_array(depth: pa.Array) -> int | None:
    values = depth.to_numpy(zero_copy_only=False)
    if len(values) == 0:
        return None
    first = int(values[0])
    if not np.all(values == first):
        raise ValueError("the HEALPix depth must be the same for all rows")
    if not 0 <= first <= 29:
        raise ValueError(f"HEALPix depth must be between 0 and 29, not {first}")
    return first


def _healpix(ra: pa.Array, dec: pa.Array, depth: pa.Array) -> pa.Array:
    """Nested HEALPix index of (ra, dec) in degrees at ``depth`` (NULL in, NULL out)."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix import nested

    n = len(ra)
    d = _depth_array(depth)
    if d is None:
        return pa.array([], type=pa.int64())
    ras = np.asarray(ra.to_numpy(zero_copy_only=False), dtype=float)
    decs = np.asarray(dec.to_numpy(zero_copy_only=False), dtype=float)
    valid = np.isfinite(ras) & np.isfinite(decs) & (np.abs(decs) <= 90)
    out = np.zeros(n, dtype=np.int64)
    if valid.any():
        out[valid] = nested.lonlat_to_healpix(
            Longitude(ras[valid] % 360.0 * u.deg), Latitude(decs[valid] * u.deg), d
        )
    return pa.array(out, mask=~valid)


def _neighbours(cell: pa.Array, depth: pa.Array) -> pa.Array:
    """The cell itself and its (up to 8) neighbours, as a list per row."""
    from cdshealpix import nested

    d = _depth_array(depth)
    if d is None:
        return pa.array([], type=pa.list_(pa.int64()))
    cells = cell.to_numpy(zero_copy_only=False)
    mask = np.asarray(pa.compute.is_null(cell).to_numpy(zero_copy_only=False), dtype=bool)
    safe = np.where(mask, 0, cells).astype(np.uint64)
    neigh = nested.neighbours(safe, d) if len(safe) else np.zeros((0, 9), dtype=np.int64)
    result: list[list[int] | None] = []
    for row, is_null in zip(neigh, mask, strict=True):
        if is_null:
            result.append(None)
        else:
            result.append(sorted({int(x) for x in row if x >= 0}))
    return pa.array(result, type=pa.list_(pa.int64()))


def _healpix_center(order: pa.Array, index: pa.Array) -> pa.Array:
    import astropy.units as u
    from cdshealpix import nested

    d = _depth_array(order)
    if d is None:
        return pa.array([], type=pa.list_(pa.float64()))
    idx = index.to_numpy(zero_copy_only=False)
    mask = np.asarray(pa.compute.is_null(index).to_numpy(zero_copy_only=False), dtype=bool)
    safe = np.where(mask, 0, idx).astype(np.uint64)
    lon, lat = nested.healpix_to_lonlat(safe, d)
    ras, decs = lon.to_value(u.deg), lat.to_value(u.deg)
    return pa.array(
        [None if m else [float(r), float(dd)] for r, dd, m in zip(ras, decs, mask, strict=True)],
        type=pa.list_(pa.float64()),
    )


_WORD = re.compile(r"[^0-9a-z]+")


def _hasword(haystack: str | None, needle: str | None) -> int | None:
    if haystack is None or needle is None:
        return None
    words = set(_WORD.split(haystack.lower()))
    target = [w for w in _WORD.split(needle.lower()) if w]
    if not target:
        return 0
    if len(target) == 1:
        return int(target[0] in words)
    return int(" ".join(target) in " ".join(w for w in _WORD.split(haystack.lower()) if w))


def _shape(value: Any) -> list[float] | None:
    if value is None:
        return None
    if any(v is None for v in value):
        return None
    return [float(v) for v in value]


def install(connection: Any) -> None:
    """Register the UDFs on a DuckDB connection (idempotent)."""
    import duckdb

    dbl_list = duckdb.list_type(duckdb.sqltype("DOUBLE"))

    def add(name: str, fn: Any, params: list[Any], ret: Any, **kw: Any) -> None:
        with contextlib.suppress(Exception):  # not registered yet
            connection.remove_function(name)
        connection.create_function(name, fn, params, ret, **kw)

    add(
        "pachon_geom_contains",
        lambda outer, inner: geometry.contains(_shape(outer), _shape(inner)),
        [dbl_list, dbl_list],
        "INTEGER",
        null_handling="special",
    )
    add(
        "pachon_geom_intersects",
        lambda a, b: geometry.intersects(_shape(a), _shape(b)),
        [dbl_list, dbl_list],
        "INTEGER",
        null_handling="special",
    )
    add("pachon_geom_area", lambda g: geometry.area(_shape(g)), [dbl_list], "DOUBLE", null_handling="special")
    add(
        "pachon_geom_centroid",
        lambda g: geometry.centroid(_shape(g)),
        [dbl_list],
        dbl_list,
        null_handling="special",
    )
    add(
        "pachon_healpix",
        _healpix,
        ["DOUBLE", "DOUBLE", "INTEGER"],
        "BIGINT",
        type="arrow",
        null_handling="special",
    )
    add(
        "pachon_hpx_neighbours",
        _neighbours,
        ["BIGINT", "INTEGER"],
        duckdb.list_type(duckdb.sqltype("BIGINT")),
        type="arrow",
        null_handling="special",
    )
    add(
        "pachon_healpix_center",
        _healpix_center,
        ["INTEGER", "BIGINT"],
        dbl_list,
        type="arrow",
        null_handling="special",
    )
    add("pachon_hasword", _hasword, ["VARCHAR", "VARCHAR"], "INTEGER", null_handling="special")


assert HPX_DEPTH <= 29
