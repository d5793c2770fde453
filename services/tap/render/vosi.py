"""VOSI documents: availability (VOSI 1.1 §3.4) and tables (VOSI 1.1 §3.5, VODataService 1.1).

Tables carry VOTableType datatypes (``char`` + ``arraysize``), not TAPType: pyvo and
taplint read those (pyvo#82). ``detail=min`` lists tables without columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

from pachon.core.catalog.model import HIDDEN_COLUMNS, ColumnInfo, SchemaInfo, TableInfo

from .uws import isoformat

__all__ = ["availability_xml", "table_xml", "tableset_xml"]

_TABLES_NS = (
    'xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
    'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)


def availability_xml(available: bool, up_since: datetime, note: str) -> str:
    """``<vosi:availability>`` with whether the catalog answers and since when the service runs."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
        f"  <vosi:available>{'true' if available else 'false'}</vosi:available>\n"
        f"  <vosi:upSince>{isoformat(up_since)}</vosi:upSince>\n"
        f"  <vosi:note>{escape(note)}</vosi:note>\n"
        "</vosi:availability>\n"
    )


def _text(name: str, value: str | None, indent: str) -> str:
    if value is None or value == "":
        return ""
    return f"{indent}<{name}>{escape(value)}</{name}>\n"


def _column_xml(column: ColumnInfo, indent: str) -> str:
    attrs = ""
    if column.arraysize:
        attrs += f" arraysize={quoteattr(column.arraysize)}"
    if column.xtype:
        attrs += f" extendedType={quoteattr(column.xtype)}"
    parts = [
        f"{indent}<column>\n",
        _text("name", column.name if not column.delimited else f'"{column.name}"', indent + "  "),
        _text("description", column.description, indent + "  "),
        _text("unit", column.unit, indent + "  "),
        _text("ucd", column.ucd, indent + "  "),
        _text("utype", column.utype, indent + "  "),
        f'{indent}  <dataType xsi:type="vs:VOTableType"{attrs}>{escape(column.datatype)}</dataType>\n',
    ]
    if column.indexed:
        parts.append(f"{indent}  <flag>indexed</flag>\n")
    if column.principal:
        parts.append(f"{indent}  <flag>principal</flag>\n")
    if column.std:
        parts.append(f"{indent}  <flag>std</flag>\n")
    if column.nullable:
        parts.append(f"{indent}  <flag>nullable</flag>\n")
    parts.append(f"{indent}</column>\n")
    return "".join(parts)


def _table_body(table: TableInfo, *, detail: str, indent: str) -> str:
    parts = [
        _text("name", table.qualified, indent),
        _text("description", table.description, indent),
        _text("utype", table.utype, indent),
    ]
    if detail != "min":
        for column in table.columns:
            if column.name in HIDDEN_COLUMNS:
                continue
            parts.append(_column_xml(column, indent))
        for key in table.foreign_keys:
            parts.append(f"{indent}<foreignKey>\n")
            parts.append(_text("targetTable", key.target_table, indent + "  "))
            for src, dst in zip(key.from_columns, key.target_columns, strict=False):
                parts.append(
                    f"{indent}  <fkColumn>\n"
                    f"{indent}    <fromColumn>{escape(src)}</fromColumn>\n"
                    f"{indent}    <targetColumn>{escape(dst)}</targetColumn>\n"
                    f"{indent}  </fkColumn>\n"
                )
            parts.append(_text("description", key.description, indent + "  "))
            parts.append(_text("utype", key.utype, indent + "  "))
            parts.append(f"{indent}</foreignKey>\n")
    return "".join(parts)


def _table_type(table: TableInfo) -> str:
    return "view" if table.table_type == "view" else "output"


def tableset_xml(schemas: Iterable[SchemaInfo], *, detail: str = "max") -> str:
    """The whole ``/tables`` document."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n', f"<vosi:tableset {_TABLES_NS}>\n"]
    for schema in schemas:
        parts.append("  <schema>\n")
        parts.append(_text("name", schema.name, "    "))
        parts.append(_text("description", schema.description, "    "))
        parts.append(_text("utype", schema.utype, "    "))
        for table in schema.tables:
            parts.append(f'    <table type="{_table_type(table)}">\n')
            parts.append(_table_body(table, detail=detail, indent="      "))
            parts.append("    </table>\n")
        parts.append("  </schema>\n")
    parts.append("</vosi:tableset>\n")
    return "".join(parts)


def table_xml(table: TableInfo) -> str:
    """``/tables/schema.table``: one ``<vosi:table>`` with all its columns."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<vosi:table {_TABLES_NS} type="{_table_type(table)}">\n'
        + _table_body(table, detail="max", indent="  ")
        + "</vosi:table>\n"
    )
