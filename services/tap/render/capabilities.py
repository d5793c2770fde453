"""VOSI capabilities with the TAPRegExt description of the service (TAPRegExt 1.0).

One ``ivo://ivoa.net/std/TAP`` capability (interface version 1.1, ``accessURL use="base"``)
followed by the VOSI and DALI-examples capabilities. Limits are always present (pyvo's
``describe()`` and ``hardlimit`` need ``outputLimit``; pyvo#658): rows for output,
bytes for uploads, seconds for retention and execution duration.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

__all__ = ["Feature", "OutputFormat", "ServiceLimits", "capabilities_xml"]

_NS = (
    'xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0" '
    'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
    'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0"'
)


@dataclass(frozen=True)
class Feature:
    """One ADQL language feature: its TAPRegExt feature type URI, form and description."""

    type: str
    form: str
    description: str | None = None


@dataclass(frozen=True)
class OutputFormat:
    """An output format: MIME type, short aliases (RESPONSEFORMAT values) and TAPRegExt ivo-id."""

    mime: str
    aliases: tuple[str, ...] = ()
    ivo_id: str | None = None


@dataclass(frozen=True)
class ServiceLimits:
    """The limits announced in capabilities (and enforced by the service)."""

    retention_default_s: int
    retention_hard_s: int
    execution_default_s: int
    execution_hard_s: int
    output_default_rows: int
    output_hard_rows: int
    upload_hard_bytes: int


def _simple_capability(standard_id: str, url: str) -> str:
    return (
        f"  <capability standardID={quoteattr(standard_id)}>\n"
        '    <interface xsi:type="vs:ParamHTTP">\n'
        f'      <accessURL use="full">{escape(url)}</accessURL>\n'
        "    </interface>\n"
        "  </capability>\n"
    )


def capabilities_xml(
    *,
    base_url: str,
    features: Iterable[Feature],
    output_formats: Sequence[OutputFormat],
    limits: ServiceLimits,
    data_models: Sequence[tuple[str, str]] = (("ObsCore-1.1", "ivo://ivoa.net/std/ObsCore#core-1.1"),),
) -> str:
    """The ``/capabilities`` document for a service at ``base_url``."""
    by_type: dict[str, list[Feature]] = {}
    for feature in features:
        by_type.setdefault(feature.type, []).append(feature)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f"<vosi:capabilities {_NS}>\n",
        '  <capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">\n',
        '    <interface xsi:type="vs:ParamHTTP" role="std" version="1.1">\n',
        f'      <accessURL use="base">{escape(base_url)}</accessURL>\n',
        "    </interface>\n",
    ]
    for name, ivo_id in data_models:
        parts.append(f"    <dataModel ivo-id={quoteattr(ivo_id)}>{escape(name)}</dataModel>\n")
    parts += [
        "    <language>\n",
        "      <name>ADQL</name>\n",
        '      <version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>\n',
        '      <version ivo-id="ivo://ivoa.net/std/ADQL#v2.1">2.1</version>\n',
        "      <description>ADQL 2.1 (2.0 queries are accepted unchanged), translated to the catalog "
        "database's SQL with index-using geometry.</description>\n",
    ]
    for type_uri, group in by_type.items():
        parts.append(f"      <languageFeatures type={quoteattr(type_uri)}>\n")
        for feature in group:
            parts.append("        <feature>\n")
            parts.append(f"          <form>{escape(feature.form)}</form>\n")
            if feature.description:
                parts.append(f"          <description>{escape(feature.description)}</description>\n")
            parts.append("        </feature>\n")
        parts.append("      </languageFeatures>\n")
    parts.append("    </language>\n")
    for fmt in output_formats:
        attr = f" ivo-id={quoteattr(fmt.ivo_id)}" if fmt.ivo_id else ""
        parts.append(f"    <outputFormat{attr}>\n      <mime>{escape(fmt.mime)}</mime>\n")
        for alias in fmt.aliases:
            parts.append(f"      <alias>{escape(alias)}</alias>\n")
        parts.append("    </outputFormat>\n")
    for method in ("inline", "http", "https"):
        parts.append(f'    <uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-{method}"/>\n')
    parts += [
        "    <retentionPeriod>\n",
        f"      <default>{limits.retention_default_s}</default>\n",
        f"      <hard>{limits.retention_hard_s}</hard>\n",
        "    </retentionPeriod>\n",
        "    <executionDuration>\n",
        f"      <default>{limits.execution_default_s}</default>\n",
        f"      <hard>{limits.execution_hard_s}</hard>\n",
        "    </executionDuration>\n",
        "    <outputLimit>\n",
        f'      <default unit="row">{limits.output_default_rows}</default>\n',
        f'      <hard unit="row">{limits.output_hard_rows}</hard>\n',
        "    </outputLimit>\n",
        "    <uploadLimit>\n",
        f'      <default unit="byte">{limits.upload_hard_bytes}</default>\n',
        f'      <hard unit="byte">{limits.upload_hard_bytes}</hard>\n',
        "    </uploadLimit>\n",
        "  </capability>\n",
        _simple_capability("ivo://ivoa.net/std/VOSI#capabilities", base_url + "/capabilities"),
        _simple_capability("ivo://ivoa.net/std/VOSI#availability", base_url + "/availability"),
        _simple_capability("ivo://ivoa.net/std/VOSI#tables-1.1", base_url + "/tables"),
        _simple_capability("ivo://ivoa.net/std/DALI#examples", base_url + "/examples"),
        "</vosi:capabilities>\n",
    ]
    return "".join(parts)
