"""A small deterministic sample catalog for the translator's tests, benchmarks and examples.

It follows the spatial-index contract of :mod:`pachon.core.catalog.model` by itself (with
plain SQL, not through the catalog layer, so the translator can be tested alone):

* DuckDB: ``pachon_hpx`` (nested HEALPix at ``HPX_DEPTH``, computed with cdshealpix) and the
  unit vector ``pachon_x/y/z``; rows stored sorted by ``pachon_hpx``.
* PostgreSQL: a q3c index on ``q3c_ang2ipix(ra, dec)``.

Tables (schema ``cat`` by default): ``object`` (positions, magnitudes, fluxes, names),
``source`` (a light curve per object, no position) and ``field`` (polygon footprints and
a point column, DALI arrays in degrees).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from pachon.core.catalog.model import HPX_DEPTH, ColumnInfo, PositionInfo, TableInfo

__all__ = ["SampleCatalog", "make_sample"]

_TYPES = np.array(["star", "galaxy", "qso", "Star"])
_WORDS = np.array(["bright", "faint", "red", "blue", "variable", "Nebula", "cluster", "o'brien"])


@dataclass
class SampleCatalog:
    """Column arrays of the three sample tables and their TAP descriptions."""

    schema: str
    object: dict[str, np.ndarray]
    source: dict[str, np.ndarray]
    field: dict[str, Any]
    db_schema: str | None = None
    """Schema in the database when it differs from the ADQL schema (e.g. a test's own)."""

    def tables(self) -> list[TableInfo]:
        """TableInfo objects as the catalog layer would publish them (hidden columns included)."""
        s = self.schema
        db = self.db_schema
        obj_cols = (
            ColumnInfo("objectid", "long", ucd="meta.id;meta.main", principal=True, indexed=True),
            ColumnInfo("ra", "double", unit="deg", ucd="pos.eq.ra;meta.main", description="Right ascension"),
            ColumnInfo("dec", "double", unit="deg", ucd="pos.eq.dec;meta.main", description="Declination"),
            ColumnInfo("g_mag", "double", unit="mag", ucd="phot.mag;em.opt.B"),
            ColumnInfo("r_mag", "double", unit="mag", ucd="phot.mag;em.opt.R"),
            ColumnInfo("flux", "double", unit="nJy", ucd="phot.flux.density"),
            ColumnInfo("flux_err", "double", unit="nJy", ucd="stat.error;phot.flux.density"),
            ColumnInfo("flags", "int"),
            ColumnInfo("name", "char", arraysize="*"),
            ColumnInfo("type", "char", arraysize="*"),
            ColumnInfo("size", "double", unit="arcsec", delimited=True),
            ColumnInfo("pachon_hpx", "long"),
            ColumnInfo("pachon_x", "double"),
            ColumnInfo("pachon_y", "double"),
            ColumnInfo("pachon_z", "double"),
        )
        src_cols = (
            ColumnInfo("sourceid", "long", ucd="meta.id"),
            ColumnInfo("objectid", "long", ucd="meta.id"),
            ColumnInfo("band", "char", arraysize="1"),
            ColumnInfo("mjd", "double", unit="d", ucd="time.epoch"),
            ColumnInfo("flux", "double", unit="nJy"),
            ColumnInfo("flux_err", "double", unit="nJy"),
        )
        field_cols = (
            ColumnInfo("fieldid", "int"),
            ColumnInfo("label", "char", arraysize="*"),
            ColumnInfo("s_region", "double", arraysize="*", xtype="polygon", unit="deg"),
            ColumnInfo("centre", "double", arraysize="2", xtype="point", unit="deg"),
            ColumnInfo("radius", "double", unit="deg"),
        )
        return [
            TableInfo(
                s,
                "object",
                obj_cols,
                position=PositionInfo("ra", "dec"),
                row_count=len(self.object["ra"]),
                db_schema=db,
            ),
            TableInfo(s, "source", src_cols, row_count=len(self.source["sourceid"]), db_schema=db),
            TableInfo(s, "field", field_cols, row_count=len(self.field["fieldid"]), db_schema=db),
        ]

    # ------------------------------------------------------------------ DuckDB
    def load_duckdb(self, con: Any) -> None:
        """Create the tables in a DuckDB connection, sorted by ``pachon_hpx``."""
        import pyarrow as pa

        s = f'"{self.db_schema or self.schema}"'
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        obj = dict(self.object)
        obj.update(_hidden(obj["ra"], obj["dec"]))
        order = np.argsort(obj["pachon_hpx"], kind="stable")
        obj_t = pa.table({k: pa.array(v[order], from_pandas=True) for k, v in obj.items()})  # noqa: F841 - used by DuckDB's replacement scan
        con.execute(
            f'CREATE TABLE {s}."object" AS SELECT objectid, ra, dec, g_mag, r_mag, flux, flux_err, '
            'CAST(flags AS INTEGER) AS flags, name, type, "size", pachon_hpx, pachon_x, pachon_y, pachon_z '
            "FROM obj_t"
        )
        src_t = pa.table(self.source)  # noqa: F841
        con.execute(f'CREATE TABLE {s}."source" AS SELECT * FROM src_t')
        field_t = pa.table(  # noqa: F841
            {
                "fieldid": pa.array(self.field["fieldid"], pa.int32()),
                "label": pa.array(self.field["label"]),
                "s_region": pa.array(self.field["s_region"], pa.list_(pa.float64())),
                "centre": pa.array(self.field["centre"], pa.list_(pa.float64())),
                "radius": pa.array(self.field["radius"], pa.float64()),
            }
        )
        con.execute(f'CREATE TABLE {s}."field" AS SELECT * FROM field_t')

    # ------------------------------------------------------------------ PostgreSQL
    def load_postgres(self, conn: Any) -> None:
        """Create the tables with a psycopg2 connection (autocommit), with the q3c index."""
        s = f'"{self.db_schema or self.schema}"'
        cur = conn.cursor()
        cur.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s}")
        cur.execute(
            f'CREATE TABLE {s}."object" (objectid bigint, ra double precision, dec double precision, '
            "g_mag double precision, r_mag double precision, flux double precision, flux_err double precision, "
            'flags integer, name text, type text, "size" double precision)'
        )
        _copy(cur, f'{s}."object"', self.object, list(self.object))
        cur.execute(f'CREATE INDEX "object_q3c_idx" ON {s}."object" (q3c_ang2ipix(ra, dec))')
        cur.execute(f'CLUSTER {s}."object" USING "object_q3c_idx"')
        cur.execute(
            f'CREATE TABLE {s}."source" (sourceid bigint, objectid bigint, band varchar(1), '
            "mjd double precision, flux double precision, flux_err double precision)"
        )
        _copy(cur, f'{s}."source"', self.source, list(self.source))
        cur.execute(
            f'CREATE TABLE {s}."field" (fieldid integer, label text, s_region double precision[], '
            "centre double precision[], radius double precision)"
        )
        _copy(cur, f'{s}."field"', self.field, list(self.field))
        cur.execute(f'ANALYZE {s}."object"; ANALYZE {s}."source"; ANALYZE {s}."field"')


def _hidden(ra: np.ndarray, dec: np.ndarray) -> dict[str, np.ndarray]:
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix import nested

    hpx = nested.lonlat_to_healpix(Longitude(ra * u.deg), Latitude(dec * u.deg), HPX_DEPTH).astype(np.int64)
    a, d = np.radians(ra), np.radians(dec)
    return {
        "pachon_hpx": hpx,
        "pachon_x": np.cos(d) * np.cos(a),
        "pachon_y": np.cos(d) * np.sin(a),
        "pachon_z": np.sin(d),
    }


def _pg_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "{" + ",".join(repr(float(x)) for x in value) + "}"
    if isinstance(value, (float, np.floating)):
        return "\\N" if np.isnan(value) else repr(float(value))
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _copy(cur: Any, table: str, data: dict[str, Any], columns: list[str]) -> None:
    buf = io.StringIO()
    rows = len(next(iter(data.values())))
    for i in range(rows):
        buf.write("\t".join(_pg_text(data[c][i]) for c in columns) + "\n")
    buf.seek(0)
    cols = ", ".join(f'"{c}"' for c in columns)
    cur.copy_expert(f"COPY {table} ({cols}) FROM STDIN", buf)


def make_sample(n_objects: int = 2000, seed: int = 7, schema: str = "cat") -> SampleCatalog:
    """Objects uniform on the sphere in a 20°×20° patch around (150, 2), with light curves."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(140.0, 160.0, n_objects)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-8.0)), np.sin(np.radians(12.0)), n_objects)))
    r_mag = np.round(rng.uniform(14.0, 25.0, n_objects), 6)
    g_mag = np.round(r_mag + rng.normal(0.5, 0.3, n_objects), 6)
    flux = 10 ** (-0.4 * (r_mag - 31.4))
    flux_err = flux * rng.uniform(0.01, 0.1, n_objects)
    flags = rng.integers(0, 16, n_objects)
    names = np.array(
        [f"obj {i:05d} {_WORDS[i % len(_WORDS)]} {_WORDS[(i * 7) % len(_WORDS)]}" for i in range(n_objects)]
    )
    types = _TYPES[rng.integers(0, len(_TYPES), n_objects)]
    size = np.where(rng.uniform(size=n_objects) < 0.1, np.nan, np.round(rng.uniform(0.1, 5.0, n_objects), 4))
    objectid = np.arange(n_objects, dtype=np.int64) + 1_000_000
    obj = {
        "objectid": objectid,
        "ra": ra,
        "dec": dec,
        "g_mag": g_mag,
        "r_mag": r_mag,
        "flux": flux,
        "flux_err": flux_err,
        "flags": flags.astype(np.int32),
        "name": names,
        "type": types,
        "size": size,
    }
    per = 3
    src_obj = np.repeat(objectid[: n_objects // 2], per)
    n_src = len(src_obj)
    source = {
        "sourceid": np.arange(n_src, dtype=np.int64) + 5_000_000,
        "objectid": src_obj,
        "band": np.array(list("ugrizy"))[np.arange(n_src) % 6],
        "mjd": np.round(60000 + rng.uniform(0, 365, n_src), 5),
        "flux": np.round(rng.uniform(100, 10000, n_src), 3),
        "flux_err": np.round(rng.uniform(1, 50, n_src), 3),
    }
    n_fields = 40
    centres = [(142.0 + 4.0 * (i % 5) + 0.3, -6.0 + 2.5 * (i // 5) + 0.2) for i in range(n_fields)]
    regions = []
    for i, (cra, cdec) in enumerate(centres):
        half = 0.6 + 0.1 * (i % 4)
        regions.append(
            [
                cra - half,
                cdec - half,
                cra - half,
                cdec + half,
                cra + half,
                cdec + half + 0.1,
                cra + half,
                cdec - half,
            ]
        )
    field = {
        "fieldid": np.arange(n_fields, dtype=np.int32),
        "label": np.array([f"F{i:02d}" for i in range(n_fields)]),
        "s_region": regions,
        "centre": [[c[0], c[1]] for c in centres],
        "radius": np.array([0.5 + 0.05 * (i % 7) for i in range(n_fields)]),
    }
    return SampleCatalog(schema, obj, source, field)
