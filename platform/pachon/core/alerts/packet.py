"""Alert packets: APDB-style rows → a dict in the LSST alert schema → Confluent-framed Avro bytes.

Column mapping
--------------
Our prompt products follow the APDB/PPDB Felis schema (``lsst-sdm-schemas`` ``apdb.yaml``),
whose column names are the alert schema's field names: every ``DiaSource``,
``DiaForcedSource``, ``DiaObject`` and ``SSSource`` field of alert schema 11.1 exists under the
same name in the APDB. So a row (a dict, a pandas ``Series``, an astropy ``Row``…) maps field
by field with no renaming:

* columns the alert schema does not carry are dropped (the APDB has
  ``DiaSource.ssObjectReassocTimeMjdTai`` and ``DiaObject.validityEndMjdTai``);
* missing columns, ``None``, ``NaN``, ``pandas.NA`` and ``NaT`` become Avro ``null`` for
  nullable fields;
* numpy scalars become Python numbers; Avro ``float`` fields are 32-bit, so a consumer reads
  back ``numpy.float32(value)``, not the float64 the pipeline wrote;
* a *required* field that is missing raises :class:`AlertInputError` naming the table, the
  row's ID and the field, except for the bookkeeping fields below, which
  :func:`complete_dia_source` / :func:`complete_dia_object` fill when absent (never overriding
  a given value):

  - ``diaSource.psfNdata``, ``trailNdata``, ``dipoleNdata``: ``0`` (pixels used by a fit: unknown);
  - ``diaSource.bboxSize``: the cutout size in pixels (30 when there are no cutouts);
  - ``timeProcessedMjdTai`` (diaSource, prvDiaSources, prvDiaForcedSources): now, as MJD TAI;
  - ``diaObject.nDiaSources``: 1 + the number of previous DiaSources given;
  - ``diaObject.<band>_psfFluxNdata``: how many of this and the previous DiaSources are in that
    band with a ``psfFlux``;
  - ``diaObject.validityStartMjdTai``: the earliest ``midpointMjdTai`` of those DiaSources.

The wire format is Rubin's (``lsst/ap_association`` ``packageAlerts.py``, DMTN-210): one byte
``0``, the schema ID as a 4-byte **big-endian** signed int, then schemaless Avro.
"""

from __future__ import annotations

import functools
import io
import math
import struct
import time
from collections.abc import Iterable, Mapping
from typing import Any

import fastavro
import fastavro.validation

from pachon.core.alerts.cutouts import Cutouts
from pachon.core.alerts.schema import AlertSchema, load_schema
from pachon.core.alerts.schema import latest_schema as _latest_schema_uncached

__all__ = [
    "BANDS",
    "AlertInputError",
    "build_alert",
    "build_alerts",
    "complete_dia_object",
    "complete_dia_source",
    "decode_alert",
    "deserialize_alert",
    "encode_alert",
    "frame",
    "mjd_tai_now",
    "record_from_row",
    "serialize_alert",
    "unframe",
    "validate_alert",
]

BANDS = ("u", "g", "r", "i", "z", "y")
_HEADER = struct.Struct(">bi")  # as ap_association: signed magic byte, signed big-endian int32
_TAI_MINUS_UTC_S = 37.0  # since 2017-01-01; no leap second has been announced after it.


@functools.cache
def latest_schema() -> AlertSchema:
    """:func:`pachon.core.alerts.schema.latest_schema`, resolved once per process.

    The installed package's ``latest.txt`` cannot change while we run, and reading it through
    ``importlib.resources`` cost 0.3 ms, twice per alert (a fifth of building and encoding one).
    """
    return _latest_schema_uncached()


class AlertInputError(ValueError):
    """A row cannot become an alert; the message names the table, row and field to fix."""

    user_facing = True


def mjd_tai_now() -> float:
    """The current time as MJD TAI (the alert schema's ``*MjdTai`` convention)."""
    return (time.time() + _TAI_MINUS_UTC_S) / 86400.0 + 40587.0


def _row_dict(row: Any) -> dict[str, Any]:
    """A plain dict from a dict, pandas Series, astropy Row or namedtuple."""
    if isinstance(row, Mapping):
        return dict(row)
    if hasattr(row, "to_dict"):
        return dict(row.to_dict())
    if hasattr(row, "colnames"):
        return {name: row[name] for name in row.colnames}
    if hasattr(row, "_asdict"):
        return dict(row._asdict())
    raise AlertInputError(f"expected a row as a dict, pandas Series or astropy Row, got {type(row).__name__}")


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if hasattr(value, "dtype") and getattr(value, "shape", None) == ():
        kind = value.dtype.kind
        if kind == "f":
            return bool(math.isnan(float(value)))
        if kind in "mM":  # numpy datetime NaT
            return bool(value != value)
        return False
    try:  # pandas.NA, pandas.NaT
        import pandas as pd

        return value is pd.NA or value is pd.NaT
    except ImportError:  # pragma: no cover
        return False


def _avro_type(field_type: Any) -> tuple[str, bool]:
    """``(primitive, nullable)`` for a field type such as ``["null", "float"]``."""
    if isinstance(field_type, list):
        members = [m for m in field_type if m != "null"]
        inner = members[0] if members else "null"
        return (inner if isinstance(inner, str) else inner.get("type", "record")), "null" in field_type
    if isinstance(field_type, dict):
        return field_type.get("type", "record"), False
    return field_type, False


def _coerce(value: Any, primitive: str, where: str) -> Any:
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if primitive in ("long", "int") and isinstance(value, float) and abs(value) > 2**53:
        raise AlertInputError(
            f"{where} = {value!r} is a float64 too large to hold a 64-bit integer exactly (IDs lose "
            "their last digits); keep ID columns integer, e.g. pandas dtype 'Int64' for nullable ones"
        )
    try:
        if primitive in ("long", "int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError

            number = int(value)
            limit = 2**63 if primitive == "long" else 2**31
            if not -limit <= number < limit:
                raise ValueError
            return number
        if primitive in ("float", "double"):
            return float(value)
        if primitive == "boolean":
            if isinstance(value, str):
                raise ValueError
            return bool(value)
        if primitive == "string":
            return str(value)
        if primitive == "bytes":
            return bytes(value)
    except (TypeError, ValueError, OverflowError):
        raise AlertInputError(
            f"{where} = {value!r} is not a valid Avro {primitive}; give a {primitive} value or null"
        ) from None
    return value


def _row_label(table: str, row: Mapping[str, Any], id_field: str) -> str:
    ident = row.get(id_field)
    return f"{table} row {id_field}={ident}" if ident is not None and not _is_null(ident) else f"{table} row"


_PLANS: dict[int, tuple[Mapping[str, Any], list[tuple[str, str, bool]]]] = {}


def _field_plan(record: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """``(name, primitive, nullable)`` per field of a record, computed once per record definition."""
    cached = _PLANS.get(id(record))
    if cached is not None and cached[0] is record:
        return cached[1]
    plan = [(fld["name"], *_avro_type(fld["type"])) for fld in record["fields"]]
    _PLANS[id(record)] = (record, plan)
    return plan


def record_from_row(
    row: Any, record: Mapping[str, Any], *, table: str, id_field: str, schema_version: str = ""
) -> dict[str, Any]:
    """Map one APDB-style row onto an Avro record definition (see the module docstring).

    Raises
    ------
    AlertInputError
        A required field is missing/null or a value has the wrong type; the message names the
        table, the row's ID and the field.
    """
    data = _row_dict(row)
    label = _row_label(table, data, id_field)
    out: dict[str, Any] = {}
    for name, primitive, nullable in _field_plan(record):
        value = data.get(name)
        if _is_null(value):
            if not nullable:
                raise AlertInputError(
                    f"{label}: required field {name!r} ({primitive}) is missing or null; the LSST alert "
                    f"schema {schema_version} requires it in {table} (APDB column {table}.{name})"
                )
            out[name] = None
            continue
        out[name] = _coerce(value, primitive, f"{label}: field {name!r}")
    return out


def complete_dia_source(
    row: Any, *, bbox_size: int | None = None, processed_mjd_tai: float | None = None
) -> dict[str, Any]:
    """Fill the bookkeeping fields a DiaSource row may lack (see the table in the module docstring).

    Only absent or null values are filled; everything given is kept as is.
    """
    data = _row_dict(row)
    fills: dict[str, Any] = {
        "psfNdata": 0,
        "trailNdata": 0,
        "dipoleNdata": 0,
        "bboxSize": bbox_size if bbox_size is not None else 30,
        "timeProcessedMjdTai": processed_mjd_tai if processed_mjd_tai is not None else mjd_tai_now(),
    }
    for key, value in fills.items():
        if _is_null(data.get(key)):
            data[key] = value
    return data


def complete_dia_object(row: Any, sources: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Fill a DiaObject's counts and validity start from its DiaSources when the row lacks them."""
    data = _row_dict(row)
    sources = list(sources)
    if _is_null(data.get("nDiaSources")):
        data["nDiaSources"] = len(sources)
    for band in BANDS:
        key = f"{band}_psfFluxNdata"
        if _is_null(data.get(key)):
            data[key] = sum(
                1 for src in sources if src.get("band") == band and not _is_null(src.get("psfFlux"))
            )
    if _is_null(data.get("validityStartMjdTai")):
        times = [src["midpointMjdTai"] for src in sources if not _is_null(src.get("midpointMjdTai"))]
        if times:
            data["validityStartMjdTai"] = min(times)
    return data


def build_alert(
    dia_source: Any,
    *,
    prv_sources: Iterable[Any] = (),
    prv_forced: Iterable[Any] = (),
    dia_object: Any | None = None,
    ss_source: Any | None = None,
    cutouts: Cutouts | None = None,
    observation_reason: str | None = None,
    target_name: str | None = None,
    schema: AlertSchema | None = None,
    validate: bool = True,
) -> dict[str, Any]:
    """Build one alert packet (a dict in the LSST alert schema) from APDB-style rows.

    Parameters
    ----------
    dia_source
        The triggering DiaSource row (APDB column names).
    prv_sources, prv_forced
        Previous DiaSources and DiaForcedSources of the same DiaObject (Rubin sends 12 months of
        history). A previous source with the triggering ``diaSourceId`` is dropped.
    dia_object
        The DiaObject row after association, or ``None`` (e.g. a solar-system source).
    ss_source
        The SSSource row when the source is associated with a known solar-system object.
    cutouts
        Difference, science and template stamps as FITS bytes (:mod:`pachon.core.alerts.cutouts`).
    schema
        Schema version to build for; default the newest shipped (11.1).
    validate
        Check the packet with fastavro against the schema (≈0.1 ms; keep on).

    Returns
    -------
    dict
        The packet, ready for :func:`serialize_alert` or :class:`~pachon.core.alerts.producer.AlertProducer`.

    Raises
    ------
    AlertInputError
        A required field is missing, a value has the wrong type, or the rows disagree (e.g. the
        DiaObject's ID is not the DiaSource's ``diaObjectId``).

    Examples
    --------
    >>> alert = build_alert(src_row, prv_sources=history, dia_object=obj_row, cutouts=stamps)
    >>> AlertProducer.for_repo("demo/repo").publish([alert])
    """
    schema = schema or latest_schema()
    version = schema.version
    bbox = cutouts.size if cutouts is not None else None
    source = record_from_row(
        complete_dia_source(dia_source, bbox_size=bbox),
        schema.record("diaSource"),
        table="DiaSource",
        id_field="diaSourceId",
        schema_version=version,
    )
    source_id = source["diaSourceId"]
    prv = [
        record_from_row(
            complete_dia_source(row),
            schema.record("prvDiaSources"),
            table="prvDiaSources",
            id_field="diaSourceId",
            schema_version=version,
        )
        for row in prv_sources
    ]
    prv = [row for row in prv if row["diaSourceId"] != source_id]
    processed = source["timeProcessedMjdTai"]
    forced = [
        record_from_row(
            complete_dia_source(row, processed_mjd_tai=processed),
            schema.record("prvDiaForcedSources"),
            table="prvDiaForcedSources",
            id_field="diaForcedSourceId",
            schema_version=version,
        )
        for row in prv_forced
    ]
    obj = None
    if dia_object is not None:
        obj = record_from_row(
            complete_dia_object(dia_object, [source, *prv]),
            schema.record("diaObject"),
            table="DiaObject",
            id_field="diaObjectId",
            schema_version=version,
        )
        if source["diaObjectId"] is not None and source["diaObjectId"] != obj["diaObjectId"]:
            raise AlertInputError(
                f"DiaSource row diaSourceId={source_id}: diaObjectId={source['diaObjectId']} but the "
                f"DiaObject given has diaObjectId={obj['diaObjectId']}; pass the DiaObject it was "
                "associated with"
            )
    ss = None
    if ss_source is not None:
        ss = record_from_row(
            ss_source,
            schema.record("ssSource"),
            table="SSSource",
            id_field="ssObjectId",
            schema_version=version,
        )
        if ss["diaSourceId"] != source_id:
            raise AlertInputError(
                f"SSSource row ssObjectId={ss['ssObjectId']}: diaSourceId={ss['diaSourceId']} is not the "
                f"alert's DiaSource {source_id}"
            )
    alert: dict[str, Any] = {
        "diaSourceId": source_id,
        "observation_reason": observation_reason,
        "target_name": target_name,
        "diaSource": source,
        "prvDiaSources": prv or None,
        "prvDiaForcedSources": forced or None,
        "diaObject": obj,
        "ssSource": ss,
        "mpc_orbits": None,
        "cutoutDifference": cutouts.difference if cutouts else None,
        "cutoutScience": cutouts.science if cutouts else None,
        "cutoutTemplate": cutouts.template if cutouts else None,
    }
    if validate:
        validate_alert(alert, schema)
    return alert


def build_alerts(
    dia_sources: Any,
    *,
    prv_sources: Any = None,
    prv_forced: Any = None,
    dia_objects: Any = None,
    ss_sources: Any = None,
    cutouts: Mapping[int, Cutouts] | None = None,
    schema: AlertSchema | None = None,
) -> list[dict[str, Any]]:
    """One alert per DiaSource of a detector-visit, from tables as APDB queries return them.

    Parameters
    ----------
    dia_sources
        The visit's new DiaSources (pandas DataFrame or list of dicts, APDB columns).
    prv_sources, prv_forced
        History of the visit's DiaObjects (e.g. ``Apdb.getDiaSources`` /
        ``Apdb.getDiaForcedSources`` results), grouped here by ``diaObjectId``; each alert gets
        its object's history, oldest first.
    dia_objects
        The DiaObjects after association, matched on ``diaObjectId``.
    ss_sources
        SSSource rows, matched on ``diaSourceId``.
    cutouts
        Stamps by ``diaSourceId``.

    Examples
    --------
    >>> alerts = build_alerts(new_sources, prv_sources=apdb.getDiaSources(region, ids, t),
    ...                       prv_forced=apdb.getDiaForcedSources(region, ids, t),
    ...                       dia_objects=objects, cutouts=stamps)
    """

    def rows(table: Any) -> list[dict[str, Any]]:
        if table is None:
            return []
        if hasattr(table, "to_dict") and hasattr(table, "columns"):
            return list(table.to_dict("records"))
        return [_row_dict(row) for row in table]

    def by_key(table: Any, key: str) -> dict[Any, list[dict[str, Any]]]:
        grouped: dict[Any, list[dict[str, Any]]] = {}
        for row in rows(table):
            value = row.get(key)
            if value is not None and not _is_null(value):
                grouped.setdefault(int(value), []).append(row)
        for group in grouped.values():
            group.sort(key=lambda r: r.get("midpointMjdTai") or 0.0)
        return grouped

    history = by_key(prv_sources, "diaObjectId")
    forced = by_key(prv_forced, "diaObjectId")
    objects = {oid: group[-1] for oid, group in by_key(dia_objects, "diaObjectId").items()}
    ss = {sid: group[-1] for sid, group in by_key(ss_sources, "diaSourceId").items()}
    stamps = cutouts or {}
    out = []
    for src in rows(dia_sources):
        oid_raw = src.get("diaObjectId")
        oid = None if oid_raw is None or _is_null(oid_raw) else int(oid_raw)
        sid_raw = src.get("diaSourceId")
        sid = None if sid_raw is None or _is_null(sid_raw) else int(sid_raw)
        out.append(
            build_alert(
                src,
                prv_sources=history.get(oid, []) if oid is not None else [],
                prv_forced=forced.get(oid, []) if oid is not None else [],
                dia_object=objects.get(oid) if oid is not None else None,
                ss_source=ss.get(sid) if sid is not None else None,
                cutouts=stamps.get(sid) if sid is not None else None,
                schema=schema,
            )
        )
    return out


def validate_alert(alert: Mapping[str, Any], schema: AlertSchema | None = None) -> None:
    """Check a packet against the schema; raise :class:`AlertInputError` naming the bad field."""
    schema = schema or latest_schema()
    # The fast check first; only a failing packet pays for fastavro's detailed error messages.
    if fastavro.validation.validate(alert, schema.parsed, raise_errors=False):
        return
    try:
        fastavro.validation.validate(alert, schema.parsed, raise_errors=True)
    except fastavro.validation.ValidationError as exc:
        detail = "; ".join(str(err) for err in exc.errors[:3]) if exc.errors else str(exc)
        raise AlertInputError(
            f"alert diaSourceId={alert.get('diaSourceId')} does not match the LSST alert schema "
            f"{schema.version}: {detail}"
        ) from None


def serialize_alert(alert: Mapping[str, Any], schema: AlertSchema | None = None) -> bytes:
    """Schemaless Avro bytes of a packet (no framing), as ``lsst.alert.packet.Schema.serialize``."""
    schema = schema or latest_schema()
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema.parsed, dict(alert))
    return buffer.getvalue()


def deserialize_alert(payload: bytes, schema: AlertSchema | None = None) -> dict[str, Any]:
    """The packet from schemaless Avro bytes written with ``schema``."""
    schema = schema or latest_schema()
    return fastavro.schemaless_reader(io.BytesIO(payload), schema.parsed, None)  # type: ignore[return-value]


def frame(payload: bytes, schema_id: int) -> bytes:
    """Prefix Avro bytes with the Confluent header: magic ``0`` and the big-endian schema ID."""
    return _HEADER.pack(0, schema_id) + payload


def unframe(message: bytes) -> tuple[int, bytes]:
    """Split a Confluent-framed message into ``(schema_id, avro_payload)``."""
    if len(message) < _HEADER.size or message[0] != 0:
        raise AlertInputError(
            "not a Confluent-framed Avro message: it must start with the magic byte 0 and a 4-byte "
            f"big-endian schema ID (got {message[:5]!r})"
        )
    _, schema_id = _HEADER.unpack_from(message)
    return schema_id, message[_HEADER.size :]


def encode_alert(alert: Mapping[str, Any], schema: AlertSchema | None = None) -> bytes:
    """The Kafka message value of a packet: Confluent framing + schemaless Avro."""
    schema = schema or latest_schema()
    return frame(serialize_alert(alert, schema), schema.schema_id)


def decode_alert(message: bytes) -> dict[str, Any]:
    """Decode a framed message with the shipped schema its ID names (no registry round trip)."""
    schema_id, payload = unframe(message)
    major, minor = divmod(schema_id, 100)
    try:
        schema = load_schema(major, minor)
    except KeyError:
        raise AlertInputError(
            f"message names schema ID {schema_id} (version {major}.{minor}), which lsst-alert-packet does "
            "not ship; upgrade lsst-alert-packet or decode with the schema registry"
        ) from None
    return deserialize_alert(payload, schema)
