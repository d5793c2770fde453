"""Felis schemas: the real lsst-sdm-schemas YAML, our extensions, and their TAP_SCHEMA view."""

from __future__ import annotations

import pytest

from pachon.core.catalog.felis_schemas import felis_schema, merge_extension, schema_info
from pachon.core.catalog.tap_schema import (
    rows_for_schema,
    schemas_from_rows,
    tap_schema_info,
    tap_schema_rows,
)

PM_COLUMNS = {
    "pmRa": ("mas/yr", "pos.pm;pos.eq.ra"),
    "pmDec": ("mas/yr", "pos.pm;pos.eq.dec"),
    "parallax": ("mas", "pos.parallax.trig"),
    "pmRaErr": ("mas/yr", "stat.error;pos.pm;pos.eq.ra"),
    "pmDecErr": ("mas/yr", "stat.error;pos.pm;pos.eq.dec"),
    "parallaxErr": ("mas", "stat.error;pos.parallax.trig"),
    "pmRa_pmDec_Cov": ("mas**2/yr**2", "stat.covariance;pos.pm"),
    "pmRa_parallax_Cov": ("mas**2/yr", "stat.covariance;pos.pm;pos.parallax.trig"),
    "pmDec_parallax_Cov": ("mas**2/yr", "stat.covariance;pos.pm;pos.parallax.trig"),
    "pmParallaxLnL": (None, "stat.likelihood"),
    "pmParallaxChi2": (None, "stat.fit.chi2"),
    "pmParallaxNdata": (None, "stat.fit.dof"),
}


def test_dp1_has_the_rubin_tables_with_units_and_ucds() -> None:
    info = schema_info("dp1")
    names = {t.name for t in info.tables}
    assert {"Object", "Source", "ForcedSource", "Visit", "CcdVisit", "DiaObject", "DiaSource"} <= names
    assert {"ForcedSourceOnDiaObject", "SSObject", "SSSource", "MPCORB", "CoaddPatches"} <= names
    obj = next(t for t in info.tables if t.name == "Object")
    ra = obj.column("coord_ra")
    assert ra is not None and ra.unit == "deg" and ra.ucd == "pos.eq.ra;meta.main" and ra.datatype == "double"
    flux = obj.column("r_psfFlux")
    assert flux is not None and flux.unit == "nJy" and flux.datatype == "float"
    assert obj.column("objectId") is not None and obj.column("objectId").indexed  # primary key
    assert obj.position is not None and (obj.position.ra, obj.position.dec) == ("coord_ra", "coord_dec")
    visit = next(t for t in info.tables if t.name == "Visit")
    assert visit.column("band") is not None and visit.column("band").datatype == "char"


def test_dp1_object_carries_the_dpdd_astrometry_extension() -> None:
    obj = next(t for t in schema_info("dp1").tables if t.name == "Object")
    for name, (unit, ucd) in PM_COLUMNS.items():
        col = obj.column(name)
        assert col is not None, name
        assert col.unit == unit and col.ucd == ucd, name
    assert obj.column("pmParallaxNdata").datatype == "int"
    assert obj.column("pmRa").principal
    # Case-insensitive ADQL lookup finds them too.
    assert obj.column("PMRA") is obj.column("pmRa")


def test_later_release_reuses_dp1_under_its_own_name() -> None:
    dp2 = schema_info("dp1", "dp2")
    assert dp2.name == "dp2"
    assert all(t.schema == "dp2" for t in dp2.tables)
    keys = [k for t in dp2.tables for k in t.foreign_keys]
    assert keys and all(k.key_id.startswith("dp2_") and k.from_table.startswith("dp2.") for k in keys)
    assert len({k.key_id for k in keys}) == len(keys)


def test_obscore_is_complete_obscore_1_1() -> None:
    table, obsplan = schema_info("obscore").tables
    assert (table.schema, table.name) == ("ivoa", "ObsCore")
    assert obsplan.name == "ObsPlan" and obsplan.column("t_planning").unit == "d"
    assert obsplan.utype == "ivo://ivoa.net/std/obsloctap#table-1.0"
    assert obsplan.column("facility_name").unit is None
    assert table.utype == "ivo://ivoa.net/std/ObsCore#core-1.1"
    mandatory = [
        "dataproduct_type",
        "calib_level",
        "obs_collection",
        "obs_id",
        "obs_publisher_did",
        "access_url",
        "access_format",
        "access_estsize",
        "target_name",
        "s_ra",
        "s_dec",
        "s_fov",
        "s_region",
        "s_resolution",
        "s_xel1",
        "s_xel2",
        "t_min",
        "t_max",
        "t_exptime",
        "t_resolution",
        "t_xel",
        "em_min",
        "em_max",
        "em_res_power",
        "em_xel",
        "o_ucd",
        "pol_states",
        "pol_xel",
        "facility_name",
        "instrument_name",
    ]
    for name in mandatory:
        col = table.column(name)
        assert col is not None, name
        assert col.std and col.utype and col.ucd, name
    assert table.column("s_ra").ucd == "pos.eq.ra" and table.column("s_ra").unit == "deg"
    assert table.column("obs_collection").utype == "obscore:DataID.Collection"
    assert all(table.column(n).utype.startswith("obscore:") for n in mandatory)
    assert table.column("access_estsize").unit == "kbyte"
    assert table.column("dataproduct_type").arraysize == "128*"


def test_ppdb_resolves_apdb_columns() -> None:
    info = schema_info("ppdb")
    dia = next(t for t in info.tables if t.name == "DiaObject")
    assert dia.column("diaObjectId") is not None and dia.column("ra").unit == "deg"
    assert {"DiaSource", "DiaForcedSource", "SSObject"} <= {t.name for t in info.tables}


def test_extension_may_not_redefine_a_column() -> None:
    base = {"name": "s", "tables": [{"name": "T", "columns": [{"name": "a", "datatype": "int"}]}]}
    ext = {"name": "s", "tables": [{"name": "T", "columns": [{"name": "a", "datatype": "long"}]}]}
    with pytest.raises(ValueError, match=r"T\.a already exists"):
        merge_extension(base, ext, "ext.yaml")


def test_felis_validates_the_merged_schema() -> None:
    schema = felis_schema("dp1")
    obj = next(t for t in schema.tables if t.name == "Object")
    assert any(c.name == "pmRa" for c in obj.columns)


def test_tap_schema_rows_follow_tap_1_1() -> None:
    rows = rows_for_schema(schema_info("obscore"))
    columns = {r[1]: r for r in rows["columns"]}
    dp_type = columns["dataproduct_type"]
    # table_name, column_name, datatype, arraysize, xtype, size, ..., indexed, principal, std, column_index
    assert (
        dp_type[0] == "ivoa.ObsCore" and dp_type[2] == "char" and dp_type[3] == "128*" and dp_type[5] == 128
    )
    assert (dp_type[10], dp_type[11], dp_type[12]) == (0, 1, 1)
    s_ra = columns["s_ra"]
    assert s_ra[5] is None and s_ra[10] == 1  # scalar: no size; position column is indexed
    assert all(
        isinstance(r[10], int) and isinstance(r[11], int) and isinstance(r[12], int) for r in rows["columns"]
    )
    obscore_row = next(r for r in rows["tables"] if r[1] == "ivoa.ObsCore")
    assert obscore_row[:4] == ("ivoa", "ivoa.ObsCore", "table", "ivo://ivoa.net/std/ObsCore#core-1.1")
    assert {r[1] for r in rows["tables"]} == {"ivoa.ObsCore", "ivoa.ObsPlan"}


def test_dp1_foreign_keys_become_keys_and_key_columns() -> None:
    rows = rows_for_schema(schema_info("dp1"))
    keys = {r[0]: r for r in rows["keys"]}
    fk = keys["dp1_fk_CcdVisit_Visit"]
    assert fk[1:3] == ("dp1.CcdVisit", "dp1.Visit")
    assert ("dp1_fk_CcdVisit_Visit", "visitId", "visit") in rows["key_columns"]


def test_tap_schema_describes_itself_with_its_foreign_keys() -> None:
    own = tap_schema_rows()
    assert {r[1] for r in own["tables"]} == {
        f"tap_schema.{n}" for n in ("schemas", "tables", "columns", "keys", "key_columns")
    }
    assert len(own["keys"]) == 7 and len(own["key_columns"]) == 7
    size = next(r for r in own["columns"] if r[0] == "tap_schema.columns" and r[1] == '"size"')
    assert size[2] == "int"
    info = tap_schema_info()
    columns = next(t for t in info.tables if t.name == "columns")
    assert columns.column("size").delimited and columns.db_schema == "tap_schema"
    indexes = [c.column_index for c in columns.columns]
    assert len(set(indexes)) == len(indexes)


def test_rows_round_trip_to_schema_info() -> None:
    info = schema_info("dp1")
    (back,) = schemas_from_rows(rows_for_schema(info))
    by_index = sorted(info.tables, key=lambda t: (t.table_index, t.name))
    assert back.name == "dp1" and [t.name for t in back.tables] == [t.name for t in by_index]
    obj_in = next(t for t in info.tables if t.name == "Object")
    obj_out = next(t for t in back.tables if t.name == "Object")
    assert [c.name for c in obj_out.columns] == [
        c.name for c in sorted(obj_in.columns, key=lambda c: c.column_index)
    ]
    assert obj_out.column("pmRa") == obj_in.column("pmRa")
    assert {k.key_id for k in next(t for t in back.tables if t.name == "CcdVisit").foreign_keys} == {
        "dp1_fk_CcdVisit_Visit"
    }
