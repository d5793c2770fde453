"""Many clients at once: sync queries, same-named uploads and async jobs in parallel give each
client its own right answer (uploads are per request, not shared by name), within bounds."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from astropy.io.votable import parse_single_table

pytestmark = pytest.mark.slow

VOTABLE = (
    '<?xml version="1.0"?><VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
    '<RESOURCE><TABLE><FIELD name="oid" datatype="long"/><DATA><TABLEDATA>{rows}</TABLEDATA></DATA>'
    "</TABLE></RESOURCE></VOTABLE>"
)


def _upload_count(url: str, k: int) -> int:
    rows = "".join(f"<TR><TD>{1_000_000_000_000 + i}</TD></TR>" for i in range(k))
    with httpx.Client(timeout=60) as client:
        answer = client.post(
            url + "/sync",
            data={
                "LANG": "ADQL",
                "RESPONSEFORMAT": "csv",
                "UPLOAD": "ids,param:ids",
                "QUERY": "SELECT COUNT(*) AS n FROM TAP_UPLOAD.ids AS u JOIN bench.object AS o "
                "ON o.objectid = u.oid",
            },
            files={"ids": ("ids.xml", VOTABLE.format(rows=rows).encode(), "application/x-votable+xml")},
        )
    answer.raise_for_status()
    return int(answer.text.splitlines()[1])


def _cone(url: str, i: int) -> int:
    with httpx.Client(timeout=60) as client:
        answer = client.get(
            url + "/sync",
            params={
                "LANG": "ADQL",
                "RESPONSEFORMAT": "csv",
                "QUERY": "SELECT COUNT(*) AS n FROM bench.object WHERE "
                f"CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {145 + i % 10}, 2, 2)) = 1",
            },
        )
    answer.raise_for_status()
    return int(answer.text.splitlines()[1])


def _async(url: str, k: int) -> int:
    with httpx.Client(timeout=60, follow_redirects=False) as client:
        job = client.post(
            url + "/async",
            data={"LANG": "ADQL", "PHASE": "RUN", "QUERY": f"SELECT TOP {k} objectid FROM bench.object"},
        ).headers["location"]
        deadline = time.monotonic() + 30
        while client.get(job + "/phase").text in ("QUEUED", "EXECUTING") and time.monotonic() < deadline:
            client.get(job, params={"WAIT": 5})
        result = client.get(job + "/results/result")
        client.delete(job)
    return len(parse_single_table(io.BytesIO(result.content)).to_table())


def test_parallel_clients(tap_server) -> None:  # type: ignore[no-untyped-def]
    expected_cones = [_cone(tap_server.url, i) for i in range(10)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        uploads = [pool.submit(_upload_count, tap_server.url, k) for k in range(1, 25)]
        cones = [pool.submit(_cone, tap_server.url, i) for i in range(40)]
        jobs = [pool.submit(_async, tap_server.url, k) for k in (3, 5, 7, 9)]
        assert [f.result() for f in uploads] == list(range(1, 25))
        assert [f.result() for f in cones] == [expected_cones[i % 10] for i in range(40)]
        assert [f.result() for f in jobs] == [3, 5, 7, 9]
    assert time.monotonic() - t0 < 60
