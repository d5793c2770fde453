"""PostgreSQL crossmatches put the q3c-indexed catalog table last in q3c_join, whatever the ADQL order.

q3c_join(ra1, dec1, ra2, dec2, r) uses the index on (ra2, dec2); an upload (a temporary
table without an index) in that place makes PostgreSQL scan the whole catalog (5.6 s
instead of 60 ms on the 1M-object benchmark table).
"""

from __future__ import annotations

import pytest

from pachon.core.catalog.model import ColumnInfo, PositionInfo, TableInfo
from pachon.services.tap.adql import SimpleResolver, translate

CATALOG = TableInfo(
    schema="bench",
    name="object",
    columns=(ColumnInfo("objectid", "long"), ColumnInfo("ra", "double"), ColumnInfo("dec", "double")),
    position=PositionInfo("ra", "dec"),
)
UPLOAD = TableInfo(
    schema="TAP_UPLOAD",
    name="pos",
    columns=(ColumnInfo("id", "long"), ColumnInfo("ra", "double"), ColumnInfo("dec", "double")),
    position=PositionInfo("ra", "dec"),
    db_schema="tap_upload",
    db_name="pos_1",
)


@pytest.mark.parametrize(
    "condition",
    [
        "DISTANCE(POINT(u.ra, u.dec), POINT(o.ra, o.dec)) < 0.0003",
        "DISTANCE(POINT(o.ra, o.dec), POINT(u.ra, u.dec)) < 0.0003",
        "1 = CONTAINS(POINT(u.ra, u.dec), CIRCLE(o.ra, o.dec, 0.0003))",
        "1 = CONTAINS(POINT(o.ra, o.dec), CIRCLE(u.ra, u.dec, 0.0003))",
    ],
)
def test_catalog_columns_are_last_in_q3c_join(condition: str) -> None:
    adql = f"SELECT u.id, o.objectid FROM TAP_UPLOAD.pos AS u JOIN bench.object AS o ON {condition}"
    sql = translate(adql, dialect="postgresql", resolver=SimpleResolver([CATALOG, UPLOAD])).sql
    call = sql[sql.index("q3c_join(") :]
    args = call[len("q3c_join(") : call.index(")")].split(", ")
    catalog_alias = args[2].split(".")[0]
    upload_alias = args[0].split(".")[0]
    assert catalog_alias != upload_alias
    assert f"{catalog_alias}" in sql[sql.index('"bench"."object"') :][:40], sql
