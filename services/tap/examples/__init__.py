"""DALI example queries served at ``/examples``.

Each example names the tables it needs; the service lists only those whose tables exist
in the catalog it serves, and a test runs every listed example, so they always work.
Queries are written the way Rubin users write them (DP1 names, ``scisql_*`` photometry).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EXAMPLES", "Example"]


@dataclass(frozen=True)
class Example:
    id: str
    name: str
    description: str
    query: str
    tables: tuple[str, ...]


EXAMPLES: tuple[Example, ...] = (
    Example(
        id="tap-schema-tables",
        name="List the tables",
        description="Every table the service publishes, with its description, from TAP_SCHEMA.",
        query="SELECT schema_name, table_name, description FROM TAP_SCHEMA.tables ORDER BY table_name",
        tables=("TAP_SCHEMA.tables",),
    ),
    Example(
        id="tap-schema-columns",
        name="Columns of a table",
        description="The columns of dp1.Object with their units and UCDs.",
        query="SELECT column_name, datatype, unit, ucd, description FROM TAP_SCHEMA.columns "
        "WHERE table_name = 'dp1.Object' ORDER BY column_index",
        tables=("TAP_SCHEMA.columns",),
    ),
    Example(
        id="dp1-cone",
        name="Cone search on DP1 objects",
        description="Objects within 0.05 degrees of a position, nearest first, with AB magnitudes "
        "computed from the r-band PSF flux.",
        query="SELECT objectId, coord_ra, coord_dec, scisql_nanojanskyToAbMag(r_psfFlux) AS r_mag,\n"
        "       DISTANCE(POINT('ICRS', coord_ra, coord_dec), POINT('ICRS', 53.1, -28.1)) AS dist\n"
        "FROM dp1.Object\n"
        "WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 53.1, -28.1, 0.05)) = 1\n"
        "ORDER BY dist",
        tables=("dp1.Object",),
    ),
    Example(
        id="dp1-count",
        name="Count bright DP1 objects",
        description="How many objects are brighter than r = 22.",
        query="SELECT COUNT(*) AS n FROM dp1.Object WHERE scisql_nanojanskyToAbMag(r_psfFlux) < 22",
        tables=("dp1.Object",),
    ),
    Example(
        id="dp1-light-curve",
        name="Light curve of one object",
        description="Forced photometry of one DP1 object in every visit, with the visit's mid-exposure "
        "time and the AB magnitude, in time order.",
        query="SELECT fs.band, v.expMidptMJD, fs.psfFlux, fs.psfFluxErr,\n"
        "       scisql_nanojanskyToAbMag(fs.psfFlux) AS psfMag,\n"
        "       scisql_nanojanskyToAbMagSigma(fs.psfFlux, fs.psfFluxErr) AS psfMagErr\n"
        "FROM dp1.ForcedSource AS fs\n"
        "JOIN dp1.Visit AS v ON v.visit = fs.visit\n"
        "WHERE fs.objectId = 614435753623041404\n"
        "ORDER BY v.expMidptMJD",
        tables=("dp1.ForcedSource", "dp1.Visit"),
    ),
    Example(
        id="obscore-images",
        name="Images near a position",
        description="ObsCore records of calibrated images whose centre lies within 1 degree of a position.",
        query="SELECT obs_id, dataproduct_type, calib_level, access_url, t_min, t_max\n"
        "FROM ivoa.ObsCore\n"
        "WHERE CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 53.1, -28.1, 1.0)) = 1\n"
        "  AND calib_level >= 2",
        tables=("ivoa.ObsCore",),
    ),
)
