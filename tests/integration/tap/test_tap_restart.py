"""A job running when the service process dies comes back as ERROR after a restart, and
completed results survive it."""

from __future__ import annotations

import time

import httpx
import pytest
from fixtures.tap import start_tap_server

pytestmark = pytest.mark.slow

SLOW = (
    "SELECT COUNT(*) AS n FROM bench.forcedsource AS a, bench.forcedsource AS b, bench.forcedsource AS c "
    "WHERE a.psf_flux + b.psf_flux + c.psf_flux > 0"
)


def test_running_job_becomes_error_after_restart(tap_catalog, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = start_tap_server(tap_catalog.url, tmp_path)
    try:
        with httpx.Client(timeout=30) as client:
            done = client.post(
                server.url + "/async",
                data={"LANG": "ADQL", "QUERY": "SELECT TOP 2 objectid FROM bench.object", "PHASE": "RUN"},
            ).headers["location"]
            deadline = time.monotonic() + 20
            while client.get(done + "/phase").text != "COMPLETED" and time.monotonic() < deadline:
                client.get(done, params={"WAIT": 5})
            assert client.get(done + "/phase").text == "COMPLETED"
            running = client.post(server.url + "/async", data={"LANG": "ADQL", "QUERY": SLOW, "PHASE": "RUN"})
            job = running.headers["location"]
            deadline = time.monotonic() + 10
            while client.get(job + "/phase").text != "EXECUTING" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.get(job + "/phase").text == "EXECUTING"
    finally:
        server.stop(kill=True)
    again = start_tap_server(tap_catalog.url, tmp_path)
    try:
        with httpx.Client(timeout=30) as client:
            job = job.replace(f":{server.port}/", f":{again.port}/")
            done = done.replace(f":{server.port}/", f":{again.port}/")
            assert client.get(job + "/phase").text == "ERROR"
            assert "restarted" in client.get(job).text
            assert client.get(job + "/error").status_code == 200
            result = client.get(done + "/results/result")
            assert result.status_code == 200 and b"<TABLE" in result.content
    finally:
        again.stop()
