"""SQL functions the translated SQL calls on PostgreSQL (pgsphere 1.2, q3c 2.0).

The catalog layer runs :func:`install_sql` once when it creates a PostgreSQL catalog (the
extensions ``pg_sphere`` and ``q3c`` must exist). Geometry columns are stored as DALI
``double precision[]`` arrays in degrees on both back ends; these helpers turn them into
pgsphere values and back, and provide the UDFs without a pgsphere equivalent.
Everything is ``CREATE OR REPLACE`` so running it again is harmless.
"""

from __future__ import annotations

__all__ = ["install_sql"]

_SQL = r"""
CREATE OR REPLACE FUNCTION pachon_spoint(a double precision[]) RETURNS spoint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT spoint(radians(a[1]), radians(a[2])) $$;

CREATE OR REPLACE FUNCTION pachon_scircle(a double precision[]) RETURNS scircle
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT scircle(spoint(radians(a[1]), radians(a[2])), radians(a[3])) $$;

CREATE OR REPLACE FUNCTION pachon_spoly(a double precision[]) RETURNS spoly
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN a IS NULL THEN NULL ELSE spoly(
        '{' || (SELECT string_agg('(' || a[i] || 'd,' || a[i + 1] || 'd)', ',' ORDER BY i)
                FROM generate_series(1, array_length(a, 1) - 1, 2) AS i) || '}') END
    $$;

CREATE OR REPLACE FUNCTION pachon_spoint_array(p spoint) RETURNS double precision[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY[degrees(long(p)), degrees(lat(p))] $$;

CREATE OR REPLACE FUNCTION pachon_geom_centroid(a double precision[]) RETURNS double precision[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    WITH v AS (
        SELECT sum(cos(radians(a[i + 1])) * cos(radians(a[i]))) AS x,
               sum(cos(radians(a[i + 1])) * sin(radians(a[i]))) AS y,
               sum(sin(radians(a[i + 1]))) AS z
        FROM generate_series(1, array_length(a, 1) - 1, 2) AS i)
    SELECT CASE
        WHEN array_length(a, 1) IN (2, 3) THEN ARRAY[a[1], a[2]]
        ELSE (SELECT ARRAY[
                 CASE WHEN degrees(atan2(y, x)) < 0 THEN degrees(atan2(y, x)) + 360
                      ELSE degrees(atan2(y, x)) END,
                 degrees(asin(z / sqrt(x * x + y * y + z * z)))] FROM v)
    END
    $$;

CREATE OR REPLACE FUNCTION pachon_hasword(haystack text, needle text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE
        WHEN haystack IS NULL OR needle IS NULL THEN NULL
        WHEN array_length(regexp_split_to_array(trim(both ' ' from
                 regexp_replace(lower(needle), '[^0-9a-z]+', ' ', 'g')), ' '), 1) IS NULL THEN 0
        WHEN position(' ' || trim(both ' ' from regexp_replace(lower(needle), '[^0-9a-z]+', ' ', 'g')) || ' '
                      IN ' ' || regexp_replace(lower(haystack), '[^0-9a-z]+', ' ', 'g') || ' ') > 0 THEN 1
        ELSE 0 END
    $$;

CREATE OR REPLACE FUNCTION scisql_nanojanskyToAbMag(flux double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN flux > 0 THEN -2.5 * log10(flux / 3631e9) END $$;

CREATE OR REPLACE FUNCTION scisql_nanojanskyToAbMagSigma(flux double precision, fluxSigma double precision)
    RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN flux > 0 THEN 1.0857362047581294 * fluxSigma / flux END $$;

CREATE OR REPLACE FUNCTION scisql_abMagToNanojansky(mag double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 3631e9 * power(10.0::double precision, -0.4 * mag) $$;

CREATE OR REPLACE FUNCTION scisql_abMagToNanojanskySigma(mag double precision, magSigma double precision)
    RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 0.9210340371976183 * magSigma * 3631e9 * power(10.0::double precision, -0.4 * mag) $$;
"""


def install_sql() -> str:
    """SQL (``CREATE OR REPLACE FUNCTION …``) defining the helpers; run it once per catalog."""
    return _SQL
