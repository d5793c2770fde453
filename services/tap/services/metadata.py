"""Service metadata: VOSI availability, capabilities and tables, DALI examples, landing page.

Tables come from the catalog layer (the same TAP_SCHEMA rows that queries see, so
``/tables`` and ``TAP_SCHEMA`` never disagree). Language features come from the ADQL
translator's own registry of functions, so capabilities declare exactly what runs.
"""

from __future__ import annotations

from datetime import datetime
from xml.sax.saxutils import escape

from anyio import to_thread

from pachon.core.catalog import CatalogDatabase
from pachon.core.catalog.model import SchemaInfo, TableInfo

from .. import formats
from ..adql.udfs import UDFS
from ..config import TapConfig
from ..examples import EXAMPLES, Example
from ..exceptions import TapError
from ..render.capabilities import Feature, OutputFormat, ServiceLimits, capabilities_xml
from ..render.vosi import availability_xml, table_xml, tableset_xml

__all__ = ["MetadataService"]


class MetadataService:
    """Builds the VOSI and DALI documents of the service."""

    def __init__(self, *, config: TapConfig, catalog: CatalogDatabase, started_at: datetime) -> None:
        self._config = config
        self._catalog = catalog
        self._started_at = started_at
        self._capabilities: dict[str, str] = {}

    # VOSI ---------------------------------------------------------------------------
    async def availability(self) -> str:
        try:
            await to_thread.run_sync(self._catalog.schemas)
            available, note = True, "the TAP service is accepting queries"
        except Exception as exc:  # the catalog does not answer: say so instead of failing
            available, note = False, f"the catalog database does not answer: {exc}"
        return availability_xml(available, self._started_at, note)

    def capabilities(self, base_url: str) -> str:
        cached = self._capabilities.get(base_url)
        if cached is None:
            limits = self._config.limits
            retention = int(limits.destruction_days * 86400)
            cached = capabilities_xml(
                base_url=base_url,
                features=language_features(),
                output_formats=[
                    OutputFormat(mime=f.mime, aliases=tuple(f.aliases), ivo_id=f.ivo_id)
                    for f in formats.capability_formats()
                ],
                limits=ServiceLimits(
                    retention_default_s=retention,
                    retention_hard_s=retention,
                    execution_default_s=limits.async_execution_duration_s,
                    execution_hard_s=limits.async_max_execution_duration_s,
                    output_default_rows=limits.maxrec_default,
                    output_hard_rows=limits.maxrec_hard,
                    upload_hard_bytes=limits.upload_max_bytes,
                ),
            )
            if len(self._capabilities) >= 16:  # base URLs come from request headers: bound the cache
                self._capabilities.pop(next(iter(self._capabilities)))
            self._capabilities[base_url] = cached
        return cached

    async def schemas(self) -> list[SchemaInfo]:
        return list(await to_thread.run_sync(self._catalog.schemas))

    async def tableset(self, detail: str) -> str:
        if detail not in ("min", "max"):
            raise TapError(f"detail={detail!r} is not allowed; use detail=min or detail=max")
        return tableset_xml(await self.schemas(), detail=detail)

    async def table(self, qualified: str) -> str:
        schema, dot, name = qualified.partition(".")
        table: TableInfo | None = None
        if dot:
            table = await to_thread.run_sync(self._catalog.resolve, schema, name)
        if table is None:
            raise TapError(
                f"no table {qualified!r}: name it as schema.table, e.g. /tables/TAP_SCHEMA.tables; "
                "the list is at /tables",
                status_code=404,
            )
        return table_xml(table)

    # DALI examples and landing page -------------------------------------------------------
    async def examples(self) -> list[Example]:
        """The examples whose tables exist in this catalog."""

        def _present() -> list[Example]:
            out = []
            for example in EXAMPLES:
                ok = True
                for qualified in example.tables:
                    schema, _, name = qualified.partition(".")
                    if self._catalog.resolve(schema, name) is None:
                        ok = False
                        break
                if ok:
                    out.append(example)
            return out

        return await to_thread.run_sync(_present)

    async def examples_html(self) -> str:
        return render_examples(await self.examples())

    async def landing_html(self, base_url: str) -> str:
        schemas = await self.schemas()
        rows = "".join(
            f"<li><code>{escape(t.qualified)}</code> — {escape(t.description or '')}</li>"
            for s in schemas
            for t in s.tables
        )
        return LANDING.format(base=escape(base_url), tables=rows)


_TAPREGEXT = "ivo://ivoa.net/std/TAPRegExt#"
_GEOMETRY = (
    ("POINT", "a position on the sky"),
    ("CIRCLE", "a cone: centre and radius in degrees (centre may be a POINT or columns)"),
    ("BOX", "a box: centre, width and height in degrees"),
    ("POLYGON", "a spherical polygon from three or more vertices"),
    ("REGION", "a region from an STC-S string"),
    ("CENTROID", "the centroid of a geometry"),
    ("CONTAINS", "1 if the first geometry lies inside the second; index-using for POINT in CIRCLE"),
    ("INTERSECTS", "1 if two geometries overlap"),
    ("AREA", "area of a geometry in square degrees"),
    ("DISTANCE", "angular distance in degrees between two points (or four numbers)"),
    ("COORD1", "first coordinate (ra) of a POINT"),
    ("COORD2", "second coordinate (dec) of a POINT"),
    ("COORDSYS", "coordinate system of a geometry (always ICRS here)"),
)
# COALESCE (ADQL 2.1 "conditional" functions) is supported too, but its feature key
# (features-adql-conditional) is unknown to taplint 3.4.7, which reports it as an error.
_OPTIONAL = (
    ("features-adql-string", "LOWER", "lower-case a string"),
    ("features-adql-string", "UPPER", "upper-case a string"),
    ("features-adql-string", "ILIKE", "case-insensitive LIKE"),
    ("features-adql-sets", "UNION", "union of two queries"),
    ("features-adql-sets", "EXCEPT", "rows of the first query not in the second"),
    ("features-adql-sets", "INTERSECT", "rows in both queries"),
    ("features-adql-common-table", "WITH", "common table expressions"),
    ("features-adql-type", "CAST", "type conversion"),
    ("features-adql-unit", "IN_UNIT", "convert a value to another unit"),
    ("features-adql-offset", "OFFSET", "skip the first rows of the result"),
)


def language_features() -> list[Feature]:
    """Every ADQL feature the translator implements, in TAPRegExt vocabulary.

    User-defined functions come from the translator's own registry
    (:data:`pachon.services.tap.adql.udfs.UDFS`) so that what is declared is what runs.
    """
    features = [
        Feature(type=_TAPREGEXT + "features-udf", form=udf.form, description=udf.description)
        for udf in UDFS.values()
    ]
    features += [Feature(type=_TAPREGEXT + "features-adqlgeo", form=f, description=d) for f, d in _GEOMETRY]
    features += [Feature(type=_TAPREGEXT + t, form=f, description=d) for t, f, d in _OPTIONAL]
    return features


def render_examples(examples: list[Example]) -> str:
    """DALI examples (XHTML + RDFa, ``vocab="http://www.ivoa.net/rdf/examples#"``)."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        '<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n',
        "<head><title>Pachón TAP examples</title>",
        '<meta http-equiv="Content-Type" content="text/html; charset=utf-8"/></head>\n',
        '<body vocab="http://www.ivoa.net/rdf/examples#">\n<h1>Example queries</h1>\n',
    ]
    for example in examples:
        parts.append(f'<div typeof="example" id="{example.id}" resource="#{example.id}">\n')
        parts.append(f'  <h2 property="name">{escape(example.name)}</h2>\n')
        parts.append(f"  <p>{escape(example.description)}</p>\n")
        parts.append(f'  <pre property="query">{escape(example.query)}</pre>\n')
        for table in example.tables:
            parts.append(f'  <p>Table: <span property="table">{escape(table)}</span></p>\n')
        parts.append("</div>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts)


LANDING = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><title>Pachón TAP service</title></head>
<body>
<h1>Pachón TAP service</h1>
<p>An IVOA <a href="https://www.ivoa.net/documents/TAP/">TAP 1.1</a> service speaking ADQL 2.1.
Point TOPCAT, pyvo (<code>pyvo.dal.TAPService("{base}")</code>) or astroquery at
<code>{base}</code>.</p>
<ul>
<li><a href="{base}/capabilities">capabilities</a> — languages, functions, formats, limits</li>
<li><a href="{base}/tables">tables</a> — every queryable table and column</li>
<li><a href="{base}/examples">examples</a> — queries to start from</li>
<li><a href="{base}/availability">availability</a></li>
<li><a href="{base}/async">async jobs</a> (UWS 1.1) and <code>{base}/sync</code></li>
</ul>
<h2>Tables</h2>
<ul>{tables}</ul>
</body></html>
"""
