"""Ingest of Parquet, FITS, VOTable and CSV into a DuckDB catalog; errors name file, row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pachon.core.catalog import CatalogError, IngestError, open_catalog
from pachon.core.catalog.model import HPX_DEPTH

N = 500


def _data(n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "id": np.arange(n, dtype=np.int64) + 100,
        "ra": rng.uniform(0, 360, n),
        "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
        "mag": rng.uniform(14, 24, n).astype(np.float32),
        "name": np.array([f"star{i}" for i in range(n)]),
    }


@pytest.fixture
def catalog(tmp_path: Path):
    cat = open_catalog(f"duckdb:///{tmp_path}/catalog/", read_only=False)
    yield cat
    cat.close()


def _write_parquet(path: Path) -> Path:
    d = _data()
    fields = [
        pa.field("id", pa.int64()),
        pa.field("ra", pa.float64(), metadata={"unit": "deg", "ucd": "pos.eq.ra;meta.main"}),
        pa.field("dec", pa.float64(), metadata={"unit": "deg", "ucd": "pos.eq.dec;meta.main"}),
        pa.field(
            "mag",
            pa.float32(),
            metadata={"unit": "mag", "ucd": "phot.mag;em.opt.R", "description": "R magnitude"},
        ),
        pa.field("name", pa.string()),
    ]
    pq.write_table(pa.table([pa.array(d[f.name]) for f in fields], schema=pa.schema(fields)), path)
    return path


def _write_fits(path: Path) -> Path:
    from astropy.io import fits

    d = _data()
    cols = [
        fits.Column(name="id", format="K", array=d["id"]),
        fits.Column(name="ra", format="D", unit="deg", array=d["ra"]),
        fits.Column(name="dec", format="D", unit="deg", array=d["dec"]),
        fits.Column(name="mag", format="E", unit="mag", array=d["mag"]),
        fits.Column(name="name", format="10A", array=d["name"]),
        fits.Column(
            name="flag", format="J", null=-1, array=np.where(d["id"] % 10 == 0, -1, 1).astype(np.int32)
        ),
    ]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header["TUCD4"] = "phot.mag;em.opt.R"
    hdu.header["TCOMM4"] = "R magnitude"
    hdu.writeto(path)
    return path


def _write_votable(path: Path) -> Path:
    from astropy.table import Table

    d = _data()
    t = Table(d)
    t["ra"].unit = "deg"
    t["dec"].unit = "deg"
    t["mag"].unit = "mag"
    t["mag"].description = "R magnitude"
    t["mag"] = np.ma.masked_array(t["mag"], mask=d["id"] % 7 == 0)
    t["mag"].unit = "mag"
    t["mag"].description = "R magnitude"
    from astropy.io.votable import from_table

    vot = from_table(t)
    field = vot.get_first_table().get_field_by_id_or_name("mag")
    field.ucd = "phot.mag;em.opt.R"
    vot.to_xml(str(path))
    return path


def _write_csv(path: Path) -> Path:
    d = _data()
    with open(path, "w") as f:
        f.write("id,ra,dec,mag,name\n")
        for i in range(N):
            f.write(
                f"{d['id'][i]},{float(d['ra'][i])!r},{float(d['dec'][i])!r},{float(d['mag'][i])!r},{d['name'][i]}\n"
            )
    return path


WRITERS = {"parquet": _write_parquet, "fits": _write_fits, "votable": _write_votable, "csv": _write_csv}
SUFFIX = {"parquet": ".parquet", "fits": ".fits", "votable": ".vot", "csv": ".csv"}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_ingest_each_format(catalog, tmp_path: Path, fmt: str) -> None:
    path = WRITERS[fmt](tmp_path / f"stars{SUFFIX[fmt]}")
    report = catalog.ingest(path, "mine.stars", ra="ra", dec="dec")
    assert report.rows == N and report.fmt == fmt
    table = catalog.resolve("mine", "stars")
    assert table is not None and table.row_count == N and table.position is not None
    assert table.column("id").datatype == "long"
    assert table.column("ra").datatype == "double" and table.column("ra").unit == "deg"
    assert table.column("name").datatype == "char" and table.column("name").arraysize == "*"
    mag = table.column("mag")
    assert mag.datatype == ("double" if fmt == "csv" else "float")  # CSV has no float32
    if fmt != "csv":
        assert mag.unit == "mag" and mag.ucd == "phot.mag;em.opt.R" and mag.description == "R magnitude"
    with catalog.connection() as cur:
        got = cur.execute("SELECT id, ra, dec, name FROM mine.stars ORDER BY id").fetchall()
        assert [r[0] for r in got] == list(range(100, 100 + N))
        d = _data()
        assert np.allclose([r[1] for r in got], d["ra"]) and [r[3] for r in got] == list(d["name"])
        if fmt == "votable":
            nulls = cur.execute("SELECT count(*) FROM mine.stars WHERE mag IS NULL").fetchone()[0]
            assert nulls == int((d["id"] % 7 == 0).sum())
        if fmt == "fits":
            nulls = cur.execute("SELECT count(*) FROM mine.stars WHERE flag IS NULL").fetchone()[0]
            assert nulls == int((d["id"] % 10 == 0).sum())
        tap = cur.execute(
            "SELECT column_name, datatype, unit, ucd, indexed FROM TAP_SCHEMA.columns "
            "WHERE table_name = 'mine.stars' ORDER BY column_index"
        ).fetchall()
        assert [r[0] for r in tap][:5] == ["id", "ra", "dec", "mag", "name"]
        assert tap[1][1:] == ("double", "deg", "pos.eq.ra;meta.main", 1)


def test_hidden_columns_match_cdshealpix_and_rows_are_sorted(catalog, tmp_path: Path) -> None:
    import astropy.units as u
    from cdshealpix.nested import lonlat_to_healpix

    catalog.ingest(_write_parquet(tmp_path / "s.parquet"), "mine.stars", ra="ra", dec="dec")
    with catalog.connection() as cur:
        rows = cur.execute(
            "SELECT ra, dec, pachon_hpx, pachon_x, pachon_y, pachon_z FROM mine.stars"
        ).fetchall()
    ra, dec, hpx, x, _y, z = (np.array(c) for c in zip(*rows, strict=True))
    expected = lonlat_to_healpix(ra * u.deg, dec * u.deg, HPX_DEPTH).astype(np.int64)
    assert np.array_equal(hpx, expected)
    assert np.all(np.diff(hpx) >= 0), "rows must be stored in pachon_hpx order"
    assert np.allclose(x, np.cos(np.radians(dec)) * np.cos(np.radians(ra)))
    assert np.allclose(z, np.sin(np.radians(dec)))
    table = catalog.resolve("mine", "stars")
    assert all(c.name not in {"pachon_hpx", "pachon_x"} for c in table.columns)


def test_table_without_position_is_sorted_by_object_id(catalog) -> None:
    ids = np.array([5, 3, 9, 1, 3, 5], dtype=np.int64)
    catalog.load_table(pa.table({"objectId": ids, "flux": np.arange(6.0)}), "mine.fs")
    with catalog.connection() as cur:
        got = [r[0] for r in cur.execute("SELECT objectId FROM mine.fs").fetchall()]
    assert got == sorted(ids.tolist())
    assert catalog.resolve("mine", "fs").column("objectid").indexed


def test_csv_bad_value_names_line_row_and_column(
    catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Types are inferred from the first block; a later bad value is located exactly."""
    monkeypatch.setattr("pachon.core.catalog.readers.CSV_BLOCK_BYTES", 1 << 16)
    path = tmp_path / "bad.csv"
    lines = ["id,ra,dec,mag"] + [f"{i},{i * 0.001},1.0,{15 + i * 0.001}" for i in range(20_000)]
    lines[15_001] = "15000,15.0,1.0,abc"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(IngestError) as err:
        catalog.ingest(path, "mine.bad")
    assert err.value.row == 15_001 and err.value.column == "mag"
    assert "line 15002" in str(err.value) and "'abc'" in str(err.value) and "bad.csv" in str(err.value)


def test_csv_wrong_field_count(catalog, tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(IngestError, match=r"row 2.*line 3 has 2 fields, expected 3"):
        catalog.ingest(path, "mine.short")


def test_declination_out_of_range_names_row_and_column(catalog, tmp_path: Path) -> None:
    path = tmp_path / "pos.parquet"
    pq.write_table(pa.table({"ra": [1.0, 2.0, 3.0], "de": [0.0, 95.0, 1.0]}), path)
    with pytest.raises(IngestError) as err:
        catalog.ingest(path, "mine.pos", ra="ra", dec="de")
    assert err.value.row == 2 and err.value.column == "de" and "[-90, 90]" in str(err.value)


def test_missing_position_column_lists_the_columns(catalog, tmp_path: Path) -> None:
    path = _write_parquet(tmp_path / "s.parquet")
    with pytest.raises(IngestError, match="no column 'raj2000'.*id, ra, dec"):
        catalog.ingest(path, "mine.stars", ra="raj2000", dec="dec")


def test_unknown_suffix_asks_for_a_format(catalog, tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"x")
    with pytest.raises(IngestError, match="--format"):
        catalog.ingest(path, "mine.x")


def test_delimited_names_and_replace(catalog, tmp_path: Path) -> None:
    path = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"g-mag": [1.0, 2.0], "select": [1, 2], "ok_name": [3, 4]}), path)
    catalog.ingest(path, "mine.odd")
    table = catalog.resolve("mine", "odd")
    assert table.column("g-mag").delimited and table.column("select").delimited
    assert not table.column("ok_name").delimited
    assert table.column("SELECT") is None  # delimited names match exactly only
    with catalog.connection() as cur:
        names = [
            r[0]
            for r in cur.execute(
                "SELECT column_name FROM TAP_SCHEMA.columns WHERE table_name = 'mine.odd' ORDER BY column_index"
            ).fetchall()
        ]
        assert names == ['"g-mag"', '"select"', "ok_name"]
        assert cur.execute('SELECT sum("g-mag") FROM mine.odd').fetchone()[0] == 3.0
    with pytest.raises(CatalogError, match="already exists.*replace"):
        catalog.ingest(path, "mine.odd")
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)
    assert catalog.ingest(path, "mine.odd", replace=True).rows == 3
    assert [c.name for c in catalog.resolve("mine", "odd").columns] == ["x"]


def test_bad_table_names(catalog, tmp_path: Path) -> None:
    path = _write_parquet(tmp_path / "s.parquet")
    with pytest.raises(CatalogError, match="SCHEMA.TABLE"):
        catalog.ingest(path, "stars")
    with pytest.raises(CatalogError, match="reserved"):
        catalog.ingest(path, "tap_schema.stars")


def test_read_only_catalog_refuses_writes(tmp_path: Path) -> None:
    cat = open_catalog(f"duckdb:///{tmp_path}/empty/", read_only=True)
    try:
        assert [s.name for s in cat.schemas()] == ["tap_schema"]
        with pytest.raises(CatalogError, match="read-only"):
            cat.create_schema("dp1")
        with cat.connection() as cur:
            assert cur.execute("SELECT count(*) FROM TAP_SCHEMA.tables").fetchone()[0] == 5
    finally:
        cat.close()


def test_load_table_accepts_astropy_with_units_and_masks(catalog) -> None:
    from astropy.table import MaskedColumn, Table

    truth = Table()
    truth["id"] = np.array([1, 2, 3], dtype=np.int64)
    truth["ra"] = np.array([10.0, 10.1, 10.2])
    truth["ra"].unit = "deg"
    truth["dec"] = np.array([-1.0, 0.0, 1.0])
    truth["dec"].unit = "deg"
    truth["flux"] = MaskedColumn(
        [1.0, 2.0, 3.0], mask=[False, True, False], unit="nJy", description="true flux"
    )
    truth["flux"].meta["ucd"] = "phot.flux"
    report = catalog.load_table(truth, "sim.truth", ra="ra", dec="dec")
    assert report.rows == 3
    table = catalog.resolve("sim", "truth")
    flux = table.column("flux")
    assert (flux.unit, flux.ucd, flux.description) == ("nJy", "phot.flux", "true flux")
    with catalog.connection() as cur:
        assert cur.execute("SELECT count(flux), count(pachon_hpx) FROM sim.truth").fetchone() == (2, 3)


def test_duckdb_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLAlchemy's rule: three slashes and a relative path, four slashes for an absolute one."""
    cat = open_catalog(f"duckdb:///{tmp_path}/a/")  # tmp_path is absolute: duckdb:////tmp/…
    assert cat.path == tmp_path / "a" and cat.folder_mode
    cat.close()
    monkeypatch.chdir(tmp_path)
    for url in ("duckdb:///rel/cat.duckdb", "duckdb:///./rel/cat.duckdb"):
        cat = open_catalog(url)
        assert cat.path == tmp_path / "rel" / "cat.duckdb" and not cat.folder_mode
        cat.close()
    for bad in ("duckdb://", "duckdb:///", "duckdb:///:memory:", "sqlite:///x.db"):
        with pytest.raises(CatalogError):
            open_catalog(bad)


def test_upload_inside_a_query_and_refresh_from_another_thread(catalog) -> None:
    """The read side is re-entrant: registering an upload while holding a cursor cannot deadlock
    against a refresh waiting in another thread."""
    import threading

    catalog.load_table(pa.table({"objectid": [1, 2]}), "mine.t")
    with open_catalog(catalog.url, read_only=False) as writer:
        writer.load_table(pa.table({"objectid": [3]}), "other.t")  # so refresh has work to do
    done = threading.Event()
    with catalog.connection() as cur:
        refresher = threading.Thread(target=lambda: (catalog.refresh(), done.set()))
        refresher.start()
        while not catalog._lock._waiting_writers and not done.is_set():  # the refresh is now waiting
            threading.Event().wait(0.001)
        info = catalog.register_upload("pos", pa.table({"ra": [1.0], "dec": [2.0]}))
        assert cur.execute(f"SELECT count(*) FROM {info.db_schema}.{info.db_name}").fetchone() == (1,)
        catalog.drop_upload(info)
        assert not done.is_set()  # refresh waits for the running query
    refresher.join(timeout=10)
    assert done.is_set() and catalog.resolve("other", "t") is not None


def test_connection_setup_installs_functions_visible_to_cursors(catalog) -> None:
    def setup(conn) -> None:
        conn.create_function("pachon_twice", lambda x: 2 * x, ["DOUBLE"], "DOUBLE")

    catalog.add_connection_setup(setup)
    catalog.load_table(pa.table({"objectid": [1, 2]}), "mine.t")  # a refresh must keep the function
    with catalog.connection() as cur:
        assert cur.execute("SELECT pachon_twice(sum(objectid)) FROM mine.t").fetchone() == (6.0,)


def test_default_catalog_url_is_the_repo_folder(isolated_settings: Path) -> None:
    from pachon.core.catalog import default_catalog_url

    assert default_catalog_url() == f"duckdb:///{isolated_settings / 'repo' / 'catalog'}/"


def test_delimited_table_name(catalog) -> None:
    catalog.load_table(pa.table({"objectid": [1, 2]}), "mine.select")
    table = catalog.resolve("mine", "select")
    assert table is not None and table.delimited
    assert catalog.resolve("mine", "SELECT") is None
    with catalog.connection() as cur:
        assert cur.execute(
            "SELECT count(*) FROM TAP_SCHEMA.tables WHERE table_name = 'mine.\"select\"'"
        ).fetchone() == (1,)
        assert cur.execute('SELECT count(*) FROM mine."select"').fetchone() == (2,)
