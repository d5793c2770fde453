"""The ADQL language features this translator implements, in TAPRegExt terms.

The TAP service writes these into ``/capabilities`` (``<languageFeatures type=…>`` with one
``<feature><form>…</form><description>…</description></feature>`` each), so what clients
are told and what the translator accepts come from one place.
"""

from __future__ import annotations

from .udfs import UDFS

__all__ = ["LANGUAGE_FEATURES", "language_features"]

_TAPREGEXT = "ivo://ivoa.net/std/TAPRegExt#"

LANGUAGE_FEATURES: dict[str, tuple[str, ...]] = {
    _TAPREGEXT + "features-adql-geo": (
        "POINT",
        "CIRCLE",
        "BOX",
        "POLYGON",
        "REGION",
        "CENTROID",
        "CONTAINS",
        "INTERSECTS",
        "AREA",
        "DISTANCE",
        "COORD1",
        "COORD2",
        "COORDSYS",
    ),
    "ivo://ivoa.net/std/TAPRegExt#features-adql-string": ("LOWER", "UPPER", "ILIKE"),
    "ivo://ivoa.net/std/TAPRegExt#features-adql-sets": ("UNION", "EXCEPT", "INTERSECT"),
    "ivo://ivoa.net/std/TAPRegExt#features-adql-common-table": ("WITH",),
    "ivo://ivoa.net/std/TAPRegExt#features-adql-type": ("CAST",),
    "ivo://ivoa.net/std/TAPRegExt#features-adql-unit": ("IN_UNIT",),
    "ivo://ivoa.net/std/TAPRegExt#features-adql-offset": ("OFFSET",),
    "ivo://ivoa.net/std/TAPRegExt#features-adql-conditional": ("COALESCE", "NULLIF", "CASE"),
}


def language_features() -> dict[str, list[tuple[str, str | None]]]:
    """Feature type → list of (form, description), including the user-defined functions.

    >>> "ivo://ivoa.net/std/TAPRegExt#features-udf" in language_features()
    True
    """
    result: dict[str, list[tuple[str, str | None]]] = {
        kind: [(form, None) for form in forms] for kind, forms in LANGUAGE_FEATURES.items()
    }
    result[_TAPREGEXT + "features-udf"] = [(u.form, u.description) for u in UDFS.values()]
    return result
