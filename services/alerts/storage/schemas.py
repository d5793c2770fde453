"""The registry's content: every alert schema ``lsst-alert-packet`` ships, under Rubin's subjects.

Rubin's ``syncAllSchemasToRegistry`` registers every schema under the subject ``alert-packet``
and under the topic's value subject (TopicNameStrategy). We do the same, read-only and
deterministic: IDs are ``major*100+minor``; versions within a subject count from 1 in schema
order. Subjects: ``alert-packet`` (all versions) and ``<topic_prefix>-v<major>-value`` for each
major version (the schemas a topic ``<prefix>-v<major>`` may carry).
"""

from __future__ import annotations

from dataclasses import dataclass

from pachon.core.alerts.schema import AlertSchema, all_schemas

__all__ = ["ALL_SUBJECT", "SchemaStore"]

ALL_SUBJECT = "alert-packet"


@dataclass(frozen=True)
class SchemaStore:
    """Schemas by ID and the ordered schema list of each subject."""

    by_id: dict[int, AlertSchema]
    subjects: dict[str, list[AlertSchema]]

    @classmethod
    def from_package(cls, topic_prefix: str) -> SchemaStore:
        """Load the shipped schemas (≈0.2 s, once per process)."""
        schemas = all_schemas()
        subjects: dict[str, list[AlertSchema]] = {ALL_SUBJECT: list(schemas)}
        for schema in schemas:
            subjects.setdefault(f"{topic_prefix}-v{schema.major}-value", []).append(schema)
        return cls(by_id={s.schema_id: s for s in schemas}, subjects=subjects)
