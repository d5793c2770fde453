"""User-defined functions this service offers, in TAPRegExt's ``form`` notation.

The TAP service declares them in ``/capabilities``; the parser accepts them in strict mode;
the translator knows how to write each one for DuckDB and PostgreSQL. Names are matched
case-insensitively (``scisql_nanojanskyToAbMag`` as Rubin users write it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UDFS", "UdfInfo", "lookup_udf"]


@dataclass(frozen=True)
class UdfInfo:
    """One offered function: ``form`` is TAPRegExt's signature, ``aggregate`` for e.g. string_agg."""

    name: str
    form: str
    description: str
    min_args: int
    max_args: int
    returns: str
    aggregate: bool = False


UDFS: dict[str, UdfInfo] = {
    u.name.lower(): u
    for u in (
        UdfInfo(
            "ivo_healpix_index",
            "ivo_healpix_index(hpxOrder INTEGER, ra DOUBLE, dec DOUBLE) -> BIGINT",
            "Index (nested scheme) of the HEALPix cell of order hpxOrder containing the point (ra, dec).",
            3,
            3,
            "long",
        ),
        UdfInfo(
            "ivo_healpix_center",
            "ivo_healpix_center(hpxOrder INTEGER, hpxIndex BIGINT) -> POINT",
            "Centre of the nested HEALPix cell hpxIndex of order hpxOrder.",
            2,
            2,
            "point",
        ),
        UdfInfo(
            "ivo_hasword",
            "ivo_hasword(haystack TEXT, needle TEXT) -> INTEGER",
            "1 if needle occurs as a whole word in haystack, case-insensitively, else 0.",
            2,
            2,
            "int",
        ),
        UdfInfo(
            "ivo_nocasematch",
            "ivo_nocasematch(value TEXT, pattern TEXT) -> INTEGER",
            "1 if value matches the LIKE pattern ignoring case, else 0.",
            2,
            2,
            "int",
        ),
        UdfInfo(
            "ivo_string_agg",
            "ivo_string_agg(expr TEXT, delimiter TEXT) -> TEXT",
            "Aggregate: the values of expr in the group joined with delimiter.",
            2,
            2,
            "string",
            aggregate=True,
        ),
        UdfInfo(
            "ivo_interval_overlaps",
            "ivo_interval_overlaps(l1 NUMERIC, h1 NUMERIC, l2 NUMERIC, h2 NUMERIC) -> INTEGER",
            "1 if the closed intervals [l1, h1] and [l2, h2] overlap, else 0.",
            4,
            4,
            "int",
        ),
        UdfInfo(
            "ivo_epoch_prop_pos",
            "ivo_epoch_prop_pos(ra DOUBLE, dec DOUBLE, parallax DOUBLE, pmra DOUBLE, pmdec DOUBLE, "
            "radial_velocity DOUBLE, ref_epoch DOUBLE, out_epoch DOUBLE) -> POINT",
            "Position propagated linearly by proper motion (mas/yr, pmra including cos(dec)) from "
            "ref_epoch to out_epoch (Julian years); parallax and radial velocity are ignored.",
            8,
            8,
            "point",
        ),
        UdfInfo(
            "scisql_nanojanskyToAbMag",
            "scisql_nanojanskyToAbMag(flux DOUBLE) -> DOUBLE",
            "AB magnitude of a flux in nJy (NULL for flux <= 0), as in Qserv's scisql.",
            1,
            1,
            "double",
        ),
        UdfInfo(
            "scisql_nanojanskyToAbMagSigma",
            "scisql_nanojanskyToAbMagSigma(flux DOUBLE, fluxSigma DOUBLE) -> DOUBLE",
            "Error of the AB magnitude of a flux in nJy with error fluxSigma, as in Qserv's scisql.",
            2,
            2,
            "double",
        ),
        UdfInfo(
            "scisql_abMagToNanojansky",
            "scisql_abMagToNanojansky(mag DOUBLE) -> DOUBLE",
            "Flux in nJy of an AB magnitude, as in Qserv's scisql.",
            1,
            1,
            "double",
        ),
        UdfInfo(
            "scisql_abMagToNanojanskySigma",
            "scisql_abMagToNanojanskySigma(mag DOUBLE, magSigma DOUBLE) -> DOUBLE",
            "Error in nJy of the flux of an AB magnitude mag with error magSigma, as in Qserv's scisql.",
            2,
            2,
            "double",
        ),
    )
}


def lookup_udf(name: str) -> UdfInfo | None:
    """The offered UDF called ``name`` (any case), or None."""
    return UDFS.get(name.lower())
