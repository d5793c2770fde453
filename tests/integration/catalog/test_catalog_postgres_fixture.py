"""The throwaway PostgreSQL cluster has working pgsphere and q3c (others build on this fixture)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.postgres


def test_postgres_url_has_pgsphere_and_q3c(postgres_url: str) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    assert url.host == "127.0.0.1" and url.database == "pachon"
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT extname FROM pg_extension ORDER BY extname")
            names = {row[0] for row in cur.fetchall()}
            assert {"pg_sphere", "q3c"} <= names
            # q3c: 1 degree apart; pgsphere: the same distance in radians.
            cur.execute("SELECT q3c_dist(10.0, 0.0, 11.0, 0.0), spoint '(10d,0d)' <-> spoint '(11d,0d)'")
            q3c_deg, sphere_rad = cur.fetchone()
            assert q3c_deg == pytest.approx(1.0)
            assert sphere_rad == pytest.approx(0.017453292519943295)
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone()[0] == "127.0.0.1"
    finally:
        conn.close()
