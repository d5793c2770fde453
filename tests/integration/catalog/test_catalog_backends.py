"""The same catalog API on DuckDB (folder and single file) and PostgreSQL + pgsphere + q3c."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pachon.core.catalog import CatalogDatabase, open_catalog
from pachon.core.catalog.model import HPX_DEPTH

BACKENDS = ["duckdb-folder", "duckdb-file", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb-folder":
        return f"duckdb:///{tmp_path}/catalog/"
    if request.param == "duckdb-file":
        return f"duckdb:///{tmp_path}/cat.duckdb"
    cluster = request.getfixturevalue("postgres_cluster")
    return cluster.create_database(f"cat_{uuid.uuid4().hex[:8]}")


def query(cat: CatalogDatabase, sql: str) -> list[tuple[Any, ...]]:
    with cat.connection() as conn:
        if cat.dialect == "postgresql":
            with conn.cursor() as cur:
                cur.execute(sql)
                return [tuple(r) for r in cur.fetchall()]
        return conn.execute(sql).fetchall()


def cone_where(cat: CatalogDatabase, ra: float, dec: float, radius: float) -> str:
    """What the translator emits for CONTAINS(POINT(ra, dec), CIRCLE(...)) = 1 on each back end."""
    if cat.dialect == "postgresql":
        return f"q3c_radial_query(ra, dec, {ra}, {dec}, {radius})"
    import astropy.units as u
    from cdshealpix.nested import cone_search

    ipix, depth, _ = cone_search(ra * u.deg, dec * u.deg, radius * u.deg, 8)
    shift = 2 * (HPX_DEPTH - depth.astype(np.int64))
    ranges = " OR ".join(
        f"(pachon_hpx >= {int(p) << int(s)} AND pachon_hpx < {(int(p) + 1) << int(s)})"
        for p, s in zip(ipix, shift, strict=True)
    )
    r, d = math.radians(ra), math.radians(dec)
    vec = (math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d))
    return (
        f"({ranges}) AND pachon_x * {vec[0]!r} + pachon_y * {vec[1]!r} + pachon_z * {vec[2]!r} "
        f">= {math.cos(math.radians(radius))!r}"
    )


def _stars(path: Path, n: int = 2000, seed: int = 3) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    data = {
        "objectid": np.arange(n, dtype=np.int64),
        "ra": rng.uniform(9, 11, n),
        "dec": rng.uniform(-1, 1, n),
        "r_mag": rng.uniform(15, 24, n).astype(np.float32),
    }
    pq.write_table(pa.table(data), path)
    return path, data


def _angular(ra1: np.ndarray, dec1: np.ndarray, ra2: float, dec2: float) -> np.ndarray:
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    c = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(r1 - r2)
    return np.degrees(np.arccos(np.clip(c, -1, 1)))


def test_create_schemas_and_tap_schema(catalog_url: str) -> None:
    with open_catalog(catalog_url, read_only=False) as cat:
        cat.create_schema("dp1")
        cat.create_schema("dp1", "dp2")
        cat.create_schema("obscore")
        names = {s.name for s in cat.schemas()}
        assert {"tap_schema", "dp1", "dp2", "ivoa"} <= names
        obj = cat.resolve("DP1", "object")
        assert obj is not None and obj.name == "Object" and obj.column("pmRa").unit == "mas/yr"
        assert cat.resolve("TAP_SCHEMA", "Columns") is not None
        assert cat.resolve("ivoa", "obscore").utype == "ivo://ivoa.net/std/ObsCore#core-1.1"
        assert cat.resolve(None, "ObsCore") is not None
        assert cat.resolve(None, "Object") is None  # ambiguous: dp1.Object and dp2.Object
        tables = {r[0] for r in query(cat, "SELECT table_name FROM tap_schema.tables")}
        assert {"dp1.Object", "dp2.Object", "ivoa.ObsCore", "tap_schema.columns"} <= tables
        keys = query(cat, "SELECT key_id, from_table, target_table FROM tap_schema.keys")
        assert ("dp2_fk_CcdVisit_Visit", "dp2.CcdVisit", "dp2.Visit") in keys
        assert len([k for k in keys if k[1].startswith("tap_schema.")]) == 7
        size = query(
            cat,
            'SELECT arraysize, "size", principal, std FROM tap_schema.columns '
            "WHERE table_name = 'ivoa.ObsCore' AND column_name = 'dataproduct_type'",
        )
        assert size == [("128*", 128, 1, 1)]
        assert query(cat, 'SELECT count(*) FROM dp2."Object"')[0][0] == 0
        n_cols = query(cat, "SELECT count(*) FROM tap_schema.columns WHERE table_name = 'dp1.Object'")[0][0]
        assert n_cols == len(obj.columns) == 1308


def test_ingest_cone_and_indexes(catalog_url: str, tmp_path: Path) -> None:
    path, data = _stars(tmp_path / "stars.parquet")
    with open_catalog(catalog_url, read_only=False) as cat:
        report = cat.ingest(path, "mine.stars", ra="ra", dec="dec", description="test stars")
        assert report.rows == len(data["ra"]) and report.table.row_count == report.rows
        table = cat.resolve("mine", "stars")
        assert table.description == "test stars" and table.position is not None
        got = {
            r[0]
            for r in query(cat, f"SELECT objectid FROM mine.stars WHERE {cone_where(cat, 10.0, 0.0, 0.3)}")
        }
        expected = set(np.flatnonzero(_angular(data["ra"], data["dec"], 10.0, 0.0) <= 0.3).tolist())
        assert got == expected and len(got) > 50
        if cat.dialect == "postgresql":
            indexes = [r[0] for r in query(cat, "SELECT indexdef FROM pg_indexes WHERE schemaname = 'mine'")]
            assert any("q3c_ang2ipix" in d for d in indexes)
            assert any("(objectid)" in d for d in indexes)
            clustered = query(
                cat,
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                "WHERE c.relname = 'stars' AND i.indisclustered",
            )
            assert clustered == [(1,)]


def test_pipeline_fills_a_felis_table(catalog_url: str) -> None:
    with open_catalog(catalog_url, read_only=False) as cat:
        cat.create_schema("dp1", "dr1")
        ids = np.arange(1, 101, dtype=np.int64)
        data = pa.table(
            {
                "objectId": ids,
                "coord_ra": np.linspace(10, 11, 100),
                "coord_dec": np.linspace(-1, 1, 100),
                "pmRa": np.full(100, 2.5, dtype=np.float32),
                "parallax": np.full(100, 1.25, dtype=np.float32),
            }
        )
        report = cat.load_table(data, "dr1.Object")
        assert report.rows == 100
        obj = cat.resolve("dr1", "Object")
        assert (
            obj.row_count == 100 and len(obj.columns) == 1308 and obj.column("pmRa").ucd == "pos.pm;pos.eq.ra"
        )
        rows = query(cat, 'SELECT count(*), sum("pmRa"), count("r_psfFlux") FROM dr1."Object"')
        assert rows[0][0] == 100 and rows[0][1] == pytest.approx(250.0) and rows[0][2] == 0
        if cat.dialect == "duckdb":
            hpx = query(cat, 'SELECT count(pachon_hpx) FROM dr1."Object"')
            assert hpx == [(100,)]
        again = cat.load_table(
            data.slice(0, 10).rename_columns(["objectid", "coord_ra", "coord_dec", "pmra", "parallax"]),
            "dr1.Object",
        )
        assert again.rows == 10 and cat.resolve("dr1", "Object").column("pmRa").unit == "mas/yr"
        assert query(cat, 'SELECT count(*) FROM dr1."Object"') == [(10,)]
        with pytest.raises(ValueError, match=r"dr1 already holds data in dr1\.Object; pass replace=True"):
            cat.create_schema("dp1", "dr1")
        with pytest.raises(ValueError, match="has no column.*'bogus'"):
            cat.load_table(pa.table({"objectId": ids, "bogus": ids}), "dr1.Object", replace=False)


def test_uploads_are_queryable_and_dropped(catalog_url: str, tmp_path: Path) -> None:
    path, data = _stars(tmp_path / "stars.parquet")
    with open_catalog(catalog_url, read_only=False) as cat:
        cat.ingest(path, "mine.stars", ra="ra", dec="dec")
        upload = pa.table({"pos_id": [1, 2, 3], "ra": data["ra"][:3], "dec": data["dec"][:3]})
        with cat.uploads({"pos": upload}) as tables:
            info = tables["pos"]
            assert cat.resolve("TAP_UPLOAD", "POS") is info and info.position is not None
            target = f"{info.db_schema}.{info.db_name}"
            rows = query(
                cat,
                f"SELECT u.pos_id, s.objectid FROM {target} AS u JOIN mine.stars AS s "
                "ON abs(u.ra - s.ra) < 1e-9 AND abs(u.dec - s.dec) < 1e-9 ORDER BY u.pos_id",
            )
            assert rows == [(1, 0), (2, 1), (3, 2)]
        assert cat.resolve("TAP_UPLOAD", "pos") is None
        with pytest.raises(Exception):  # noqa: B017 - the table is gone
            query(cat, f"SELECT * FROM {target}")


WRITER = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from pachon.core.catalog import open_catalog
    cat = open_catalog(sys.argv[1], read_only=False)
    n = int(sys.argv[3])
    cat.load_table(pa.table({"objectid": list(range(n)), "x": [1.5] * n}), sys.argv[2])
    cat.close()
    """
)


@pytest.mark.parametrize("form", ["folder", "file"])
def test_reader_picks_up_files_written_by_another_process(tmp_path: Path, form: str) -> None:
    url = f"duckdb:///{tmp_path}/catalog/" if form == "folder" else f"duckdb:///{tmp_path}/cat.duckdb"
    with open_catalog(url, read_only=False) as seed:
        seed.load_table(pa.table({"objectid": [1, 2, 3]}), "alpha.t")
    reader = open_catalog(url, read_only=True)
    try:
        assert query(reader, "SELECT count(*) FROM alpha.t") == [(3,)]

        def write(table: str, n: int) -> None:
            subprocess.run(
                [sys.executable, "-c", WRITER, url, table, str(n)], check=True, capture_output=True
            )

        # While the reader holds the files open, another process adds a table to the same
        # file (copy, write, rename) and a new schema; the reader sees both after refresh().
        write("alpha.more", 7)
        write("beta.t", 11)
        assert reader.resolve("beta", "t") is None
        reader.refresh()
        assert query(reader, "SELECT count(*) FROM alpha.more") == [(7,)]
        assert query(reader, "SELECT count(*) FROM beta.t") == [(11,)]
        assert query(reader, "SELECT count(*) FROM alpha.t") == [(3,)]
        assert reader.resolve("beta", "t").row_count == 11
        tables = {r[0] for r in query(reader, "SELECT table_name FROM TAP_SCHEMA.tables")}
        assert {"alpha.t", "alpha.more", "beta.t"} <= tables
        # Replacing a table is also picked up; queries from worker threads keep working meanwhile.
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for _ in range(50):
                    query(reader, "SELECT count(*) FROM alpha.t")
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=worker)
        thread.start()
        write("beta.t", 5)
        reader.refresh()
        thread.join()
        assert not errors
        assert query(reader, "SELECT count(*) FROM beta.t") == [(5,)]
    finally:
        reader.close()


def test_a_reader_sees_another_writers_tables_after_refresh(catalog_url: str) -> None:
    writer = open_catalog(catalog_url, read_only=False)
    reader = open_catalog(catalog_url, read_only=True)
    try:
        writer.load_table(pa.table({"objectid": [1, 2, 3]}), "mine.t")
        assert reader.resolve("mine", "t") is None
        reader.refresh()
        assert reader.resolve("mine", "t").row_count == 3
        assert query(reader, "SELECT count(*) FROM mine.t") == [(3,)]
        before = reader.schemas()
        reader.refresh()  # nothing changed: the same metadata objects stay
        assert reader.schemas() == before
    finally:
        reader.close()
        writer.close()
