"""The Felis schemas Pachón serves, loaded from ``lsst-sdm-schemas`` with ``lsst-felis``.

Three kinds of schema can be created in a catalog (``CatalogDatabase.create_schema``):

``dp1``
    Rubin's Data Preview 1 schema (``lsst/sdm/schemas/dp1.yaml``: Object, Source,
    ForcedSource, DiaObject, DiaSource, ForcedSourceOnDiaObject, Visit, CcdVisit, SSObject,
    SSSource, MPCORB, CoaddPatches) merged with our extension ``schemas/dp1_astrometry.yaml``
    (the DPDD proper-motion/parallax columns of Object). Later releases (``dp2``, ``dr1``, …)
    use the same tables under their own schema name, so queries written for DP1 run on them.
``obscore``
    Rubin's ``ivoa_obscore.yaml`` (schema ``ivoa``, table ``ObsCore``, with ObsCore 1.1 utypes
    and UCDs) completed by ``schemas/ivoa_obscore_extension.yaml`` with the mandatory columns
    it lacks and the data-model utype ``ivo://ivoa.net/std/ObsCore#core-1.1``, plus Rubin's
    ``obsloctap.yaml`` table ``ivoa.ObsPlan`` (ObsLocTAP 1.0, the observation plan), the other
    IVOA-standard table of that schema that validators look for.
``ppdb``
    The Prompt Products Database (``ppdb.yaml``, which pulls its columns from ``apdb.yaml``).

Why merge at the YAML level and validate once with Felis: the merged schema is then checked
by Felis' own rules (unique names, datatypes, UCD syntax, units), exactly as Rubin's
``felis validate`` checks theirs, and our extension cannot silently drift from Felis.

The result is a :class:`~pachon.core.catalog.model.SchemaInfo` (the TAP_SCHEMA view): VOTable
datatypes via ``felis.types.FelisType``, arraysize/xtype/unit/UCD/utype/principal/std from
the YAML, ``indexed`` for primary keys and single-column indexes (as ``felis load-tap-schema``
computes it), and foreign keys as TAP_SCHEMA keys with ids made unique per schema.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from felis.datamodel import Column, ForeignKeyConstraint, Schema, Table
from felis.types import FelisType

from pachon.core.catalog.identifiers import is_regular_identifier
from pachon.core.catalog.model import ColumnInfo, ForeignKeyInfo, PositionInfo, SchemaInfo, TableInfo

__all__ = [
    "DP1_EXTENSION",
    "SCHEMA_KINDS",
    "SchemaKind",
    "default_schema_name",
    "felis_schema",
    "schema_info",
    "sdm_schemas_dir",
]

SchemaKind = Literal["dp1", "obscore", "ppdb"]
SCHEMA_KINDS: tuple[SchemaKind, ...] = ("dp1", "obscore", "ppdb")

OBSCORE_UTYPE = "ivo://ivoa.net/std/ObsCore#core-1.1"
OBSLOCTAP_UTYPE = "ivo://ivoa.net/std/obsloctap#table-1.0"
_OUR_SCHEMAS = Path(str(files("pachon.core.catalog") / "schemas"))
DP1_EXTENSION = _OUR_SCHEMAS / "dp1_astrometry.yaml"
OBSCORE_EXTENSION = _OUR_SCHEMAS / "ivoa_obscore_extension.yaml"

_CONTEXT = {"id_generation": True, "dereference_resources": True}

OBSCORE_UTYPES = {
    "dataproduct_type": "obscore:ObsDataset.dataProductType",
    "dataproduct_subtype": "obscore:ObsDataset.dataProductSubtype",
    "calib_level": "obscore:ObsDataset.calibLevel",
    "obs_collection": "obscore:DataID.Collection",
    "obs_id": "obscore:DataID.observationID",
    "obs_title": "obscore:DataID.Title",
    "obs_publisher_did": "obscore:Curation.PublisherDID",
    "access_url": "obscore:Access.Reference",
    "access_format": "obscore:Access.Format",
    "access_estsize": "obscore:Access.Size",
    "target_name": "obscore:Target.Name",
    "s_ra": "obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
    "s_dec": "obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
    "s_fov": "obscore:Char.SpatialAxis.Coverage.Bounds.Extent.diameter",
    "s_region": "obscore:Char.SpatialAxis.Coverage.Support.Area",
    "s_resolution": "obscore:Char.SpatialAxis.Resolution.Refval.value",
    "s_xel1": "obscore:Char.SpatialAxis.numBins1",
    "s_xel2": "obscore:Char.SpatialAxis.numBins2",
    "t_min": "obscore:Char.TimeAxis.Coverage.Bounds.Limits.StartTime",
    "t_max": "obscore:Char.TimeAxis.Coverage.Bounds.Limits.StopTime",
    "t_exptime": "obscore:Char.TimeAxis.Coverage.Support.Extent",
    "t_resolution": "obscore:Char.TimeAxis.Resolution.Refval.value",
    "t_xel": "obscore:Char.TimeAxis.numBins",
    "em_min": "obscore:Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit",
    "em_max": "obscore:Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit",
    "em_res_power": "obscore:Char.SpectralAxis.Resolution.ResolPower.refVal",
    "em_xel": "obscore:Char.SpectralAxis.numBins",
    "o_ucd": "obscore:Char.ObservableAxis.ucd",
    "pol_states": "obscore:Char.PolarizationAxis.stateList",
    "pol_xel": "obscore:Char.PolarizationAxis.numBins",
    "facility_name": "obscore:Provenance.ObsConfig.Facility.name",
    "instrument_name": "obscore:Provenance.ObsConfig.Instrument.name",
}
"""ObsCore 1.1 (REC, table 6) utypes with their ``obscore:`` prefix, as TAP validators (taplint's
OBS stage) require them in TAP_SCHEMA. Rubin's ``ivoa_obscore.yaml`` writes them without the
prefix and in other case, so ours replace them."""


def sdm_schemas_dir() -> Path:
    """The folder of YAML files installed by the ``lsst-sdm-schemas`` distribution."""
    import lsst.sdm.schemas

    return Path(next(iter(lsst.sdm.schemas.__path__)))


def default_schema_name(kind: SchemaKind) -> str:
    """The schema name a kind is served under unless the caller names it."""
    return {"dp1": "dp1", "obscore": "ivoa", "ppdb": "ppdb"}[kind]


def _read_yaml(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a Felis schema (a YAML mapping)")
    return data


def merge_extension(base: dict[str, Any], extension: dict[str, Any], source: str) -> dict[str, Any]:
    """Add an extension's columns (and table attributes) to the base schema's tables.

    A column whose name already exists in the base table is an error (an extension adds,
    never redefines); a table the base lacks is appended whole.
    """
    merged = copy.deepcopy(base)
    tables = {table["name"]: table for table in merged["tables"]}
    for ext_table in extension.get("tables", []):
        target = tables.get(ext_table["name"])
        if target is None:
            merged["tables"].append(copy.deepcopy(ext_table))
            continue
        existing = {column["name"] for column in target.get("columns", [])}
        for column in ext_table.get("columns", []):
            if column["name"] in existing:
                raise ValueError(
                    f"{source}: column {ext_table['name']}.{column['name']} already exists in the base "
                    "schema; an extension may only add columns"
                )
            column = {k: v for k, v in column.items() if k != "@id"}
            target.setdefault("columns", []).append(column)
        for key, value in ext_table.items():
            if key not in ("name", "@id", "columns"):
                target[key] = value
    return merged


def _strip_ids(data: Any) -> Any:
    """Drop ``@id`` keys so Felis regenerates consistent ids for the merged document."""
    if isinstance(data, dict):
        return {k: _strip_ids(v) for k, v in data.items() if k != "@id"}
    if isinstance(data, list):
        return [_strip_ids(v) for v in data]
    return data


@cache
def felis_schema(kind: SchemaKind) -> Schema:
    """The validated Felis schema of ``kind`` (with our extensions merged)."""
    sdm = sdm_schemas_dir()
    if kind == "dp1":
        base = _read_yaml(sdm / "dp1.yaml")
        merged = merge_extension(base, _read_yaml(DP1_EXTENSION), str(DP1_EXTENSION))
    elif kind == "obscore":
        base = _strip_ids(_read_yaml(sdm / "ivoa_obscore.yaml"))
        merged = merge_extension(base, _read_yaml(OBSCORE_EXTENSION), str(OBSCORE_EXTENSION))
        obsplan = _strip_ids(_read_yaml(sdm / "obsloctap.yaml"))
        merged = merge_extension(merged, obsplan, "obsloctap.yaml")
        for table in merged["tables"]:
            if table["name"] == "ObsPlan":
                # ObsLocTAP 1.0 §3: the table declares its model; two text columns carry
                # stray units in Rubin's YAML (facility_name 'd', tracking_type 'm').
                table["votable:utype"] = OBSLOCTAP_UTYPE
                for column in table.get("columns", []):
                    if column["name"] in ("facility_name", "tracking_type"):
                        column["ivoa:unit"] = None
            if table["name"] != "ObsCore":
                continue
            for column in table.get("columns", []):
                if column["name"] in OBSCORE_UTYPES:
                    column["votable:utype"] = OBSCORE_UTYPES[column["name"]]
    elif kind == "ppdb":
        return Schema.from_uri(str(sdm / "ppdb.yaml"), context=_CONTEXT)
    else:
        raise ValueError(f"unknown schema kind {kind!r}; expected one of {', '.join(SCHEMA_KINDS)}")
    merged.pop("@id", None)
    return Schema.model_validate(_strip_ids(merged), context=_CONTEXT)


def _is_indexed(column: Column, table: Table) -> bool:
    """As ``felis load-tap-schema``: the single-column primary key or a single-column index."""
    if isinstance(table.primary_key, str) and table.primary_key == column.id:
        return True
    if isinstance(table.primary_key, list) and table.primary_key[:1] == [column.id]:
        return True
    return any(index.columns and index.columns[0] == column.id for index in table.indexes)


def _position(columns: list[ColumnInfo], table_name: str) -> PositionInfo | None:
    """The table's main ICRS position: UCDs ``pos.eq.ra;meta.main``/``pos.eq.dec;meta.main``,
    else the only ``pos.eq.ra``/``pos.eq.dec`` pair, else columns named ra/dec."""

    def by_ucd(primary: str) -> list[str]:
        return [c.name for c in columns if c.ucd and c.ucd.lower() == primary]

    ra, dec = by_ucd("pos.eq.ra;meta.main"), by_ucd("pos.eq.dec;meta.main")
    if len(ra) == 1 and len(dec) == 1:
        return PositionInfo(ra=ra[0], dec=dec[0])
    ra, dec = by_ucd("pos.eq.ra"), by_ucd("pos.eq.dec")
    if len(ra) == 1 and len(dec) == 1:
        return PositionInfo(ra=ra[0], dec=dec[0])
    names = {c.name.lower(): c.name for c in columns}
    if "ra" in names and "dec" in names:
        return PositionInfo(ra=names["ra"], dec=names["dec"])
    return None


DALI_XTYPES = frozenset(
    {"timestamp", "interval", "point", "circle", "polygon", "shape", "moc", "multipolygon", "multiinterval",
     "uri", "hms", "dms"}
)  # fmt: skip
"""The xtypes DALI 1.1/1.2 define; others from a schema are dropped from the metadata."""


def _column_info(column: Column, table: Table, ordinal: int) -> ColumnInfo:
    felis_type = FelisType.felis_type(column.datatype.value)
    arraysize = str(column.votable_arraysize) if column.votable_arraysize else None
    xtype = column.votable_xtype
    if felis_type.is_timestamp and xtype is None:
        xtype = "timestamp"
    if xtype is not None and xtype not in DALI_XTYPES:
        # e.g. Rubin's ObsCore declares access_url as xtype "clob" (a TAP 1.0 type name, not a
        # DALI xtype); clients and taplint expect only DALI xtypes, and the datatype says it all.
        xtype = None
    return ColumnInfo(
        name=column.name,
        datatype=felis_type.votable_name,
        arraysize=arraysize,
        xtype=xtype,
        unit=column.ivoa_unit or column.fits_tunit or None,
        ucd=column.ivoa_ucd,
        utype=column.votable_utype,
        description=column.description,
        indexed=_is_indexed(column, table),
        principal=bool(column.tap_principal),
        std=bool(column.tap_std),
        nullable=column.nullable,
        column_index=column.tap_column_index if column.tap_column_index is not None else ordinal,
        delimited=not is_regular_identifier(column.name),
    )


def schema_info(kind: SchemaKind, name: str | None = None, schema_index: int | None = None) -> SchemaInfo:
    """The TAP_SCHEMA view of a Felis schema kind, served under ``name`` (default per kind)."""
    schema = felis_schema(kind)
    served = name or default_schema_name(kind)
    tables: list[TableInfo] = []
    for t_index, table in enumerate(schema.tables):
        columns = [_column_info(c, table, i + 1) for i, c in enumerate(table.columns)]
        keys: list[ForeignKeyInfo] = []
        for constraint in table.constraints:
            if not isinstance(constraint, ForeignKeyConstraint):
                continue
            target_col = schema.find_object_by_id(constraint.referenced_columns[0], Column)
            target_table = schema.get_table_by_column(target_col)
            keys.append(
                ForeignKeyInfo(
                    key_id=f"{served}_{constraint.name}",
                    from_table=f"{served}.{table.name}",
                    target_table=f"{served}.{target_table.name}",
                    from_columns=tuple(schema.find_object_by_id(c, Column).name for c in constraint.columns),
                    target_columns=tuple(
                        schema.find_object_by_id(c, Column).name for c in constraint.referenced_columns
                    ),
                    description=constraint.description,
                    utype=constraint.votable_utype,
                )
            )
        position = _position(columns, table.name)
        if position is not None:
            columns = [
                _with(c, indexed=True) if c.name in (position.ra, position.dec) else c for c in columns
            ]
        tables.append(
            TableInfo(
                schema=served,
                name=table.name,
                columns=tuple(columns),
                description=table.description,
                utype=table.votable_utype,
                table_index=table.tap_table_index if table.tap_table_index is not None else t_index + 1,
                position=position,
                foreign_keys=tuple(keys),
                delimited=not is_regular_identifier(table.name),
            )
        )
    return SchemaInfo(
        name=served,
        description=schema.description,
        utype=schema.votable_utype,
        schema_index=schema_index,
        tables=tuple(tables),
    )


def _with(column: ColumnInfo, **changes: Any) -> ColumnInfo:
    from dataclasses import replace

    return replace(column, **changes)
