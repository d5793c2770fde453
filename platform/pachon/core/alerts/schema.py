"""The LSST alert schema as shipped by ``lsst-alert-packet``, with Rubin's deterministic IDs.

Why not our own schema: brokers (Fink, ALeRCE, Lasair, …) and ``confluent-kafka``'s Avro
deserializer decode Rubin alerts unchanged only if we use exactly Rubin's Avro schema and
its registry IDs. Rubin's Schema Registry assigns ``id = major * 100 + minor`` (11.1 → 1101;
DMTN-210), so the ID is a property of the version, not of a registry's insertion order, and
a packet framed here decodes against Rubin's own registry too.

The package ships every historical version (3.0 … 11.1); producers use the newest
(``latest.txt``), the schema registry serves them all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import fastavro

__all__ = [
    "AlertSchema",
    "all_schemas",
    "latest_schema",
    "load_schema",
    "schema_id_for",
    "topic_name",
]


def schema_id_for(major: int, minor: int) -> int:
    """Rubin's registry ID of schema version ``major.minor`` (``major * 100 + minor``)."""
    return major * 100 + minor


def _strip_parser_keys(node: Any) -> Any:
    """Drop the ``__fastavro_parsed``-style bookkeeping keys fastavro adds to loaded schemas.

    The registry must serve the schema exactly as an Avro JSON document; those keys are not
    Avro and would break other Avro implementations (Java, avro-python).
    """
    if isinstance(node, dict):
        return {k: _strip_parser_keys(v) for k, v in node.items() if not k.startswith("__fastavro")}
    if isinstance(node, list):
        return [_strip_parser_keys(v) for v in node]
    return node


@dataclass(frozen=True)
class AlertSchema:
    """One version of the alert schema.

    Attributes
    ----------
    major, minor
        The schema version (``11``, ``1``).
    definition
        The Avro schema as a JSON-compatible dict (named types defined inline where first used).
    """

    major: int
    minor: int
    definition: dict[str, Any]
    parsed: Any = field(repr=False, compare=False)

    @property
    def version(self) -> str:
        """``"11.1"``."""
        return f"{self.major}.{self.minor}"

    @property
    def schema_id(self) -> int:
        """Registry ID, ``major * 100 + minor``."""
        return schema_id_for(self.major, self.minor)

    @property
    def json(self) -> str:
        """The schema as the JSON string a Confluent registry returns in ``"schema"``."""
        return _schema_json(self.major, self.minor)

    def record(self, name: str) -> dict[str, Any]:
        """The record definition of a top-level alert field (``diaSource``, ``diaObject``, …)."""
        for fld in self.definition["fields"]:
            if fld["name"] != name:
                continue
            return _record_of(fld["type"], self._named_records)
        raise KeyError(f"the alert schema {self.version} has no field {name!r}")

    @cached_property
    def _named_records(self) -> dict[str, dict[str, Any]]:
        """Record definitions by full name (fields may refer to a record defined earlier by name)."""
        found: dict[str, dict[str, Any]] = {}

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if node.get("type") == "record" and "name" in node:
                    found.setdefault(node["name"], node)
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(self.definition)
        return found


def _record_of(avro_type: Any, named: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The record inside a (possibly nullable, possibly array, possibly named) field type."""
    if isinstance(avro_type, str) and avro_type in named:
        return named[avro_type]
    if isinstance(avro_type, list):
        for member in avro_type:
            if member != "null":
                return _record_of(member, named)
    if isinstance(avro_type, dict):
        if avro_type.get("type") == "array":
            return _record_of(avro_type["items"], named)
        if avro_type.get("type") == "record":
            return avro_type
    raise KeyError(f"not a record type: {str(avro_type)[:80]}")


def _schema_root() -> Path:
    from lsst.alert.packet import get_schema_root

    return Path(get_schema_root())


@cache
def _shipped_versions() -> tuple[tuple[int, int], ...]:
    """Every ``(major, minor)`` for which the package ships an alert schema, oldest first."""
    root = _schema_root()
    found = []
    for major_dir in root.iterdir():
        if not major_dir.is_dir() or not major_dir.name.isdigit():
            continue
        for minor_dir in major_dir.iterdir():
            name = f"lsst.v{major_dir.name}_{minor_dir.name}.alert.avsc"
            if minor_dir.is_dir() and (minor_dir / name).is_file():
                found.append((int(major_dir.name), int(minor_dir.name)))
    return tuple(sorted(found))


@cache
def load_schema(major: int, minor: int) -> AlertSchema:
    """Load schema ``major.minor`` from ``lsst-alert-packet`` (cached; the files never change)."""
    from lsst.alert.packet import Schema

    if (major, minor) not in _shipped_versions():
        known = ", ".join(f"{a}.{b}" for a, b in _shipped_versions())
        raise KeyError(f"lsst-alert-packet ships no alert schema {major}.{minor}; known versions: {known}")
    path = _schema_root() / str(major) / str(minor) / f"lsst.v{major}_{minor}.alert.avsc"
    definition = _strip_parser_keys(Schema.from_file(str(path)).definition)
    return AlertSchema(major, minor, definition, fastavro.parse_schema(definition))


@cache
def _schema_json(major: int, minor: int) -> str:
    return json.dumps(load_schema(major, minor).definition, separators=(",", ":"))


def latest_schema() -> AlertSchema:
    """The newest schema the package ships (its ``latest.txt``), the one producers use."""
    from lsst.alert.packet import get_latest_schema_version

    major, minor = get_latest_schema_version()
    return load_schema(int(major), int(minor))


def all_schemas() -> list[AlertSchema]:
    """Every shipped schema version, oldest first (what the registry serves)."""
    return [load_schema(major, minor) for major, minor in _shipped_versions()]


def topic_name(prefix: str | None = None, major: int | None = None) -> str:
    """The alert topic ``<prefix>-v<major>`` (settings ``alerts.topic_prefix``, latest major).

    Examples
    --------
    >>> topic_name("lsst-alerts", 11)
    'lsst-alerts-v11'
    """
    if prefix is None:
        from pachon.core.settings import get_settings

        prefix = get_settings().alerts.topic_prefix
    if major is None:
        major = latest_schema().major
    return f"{prefix}-v{major}"
