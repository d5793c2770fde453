"""Real TAP clients against a live ``pachon serve tap``: pyvo, astroquery TapPlus, STILTS."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

pytestmark = pytest.mark.slow


def test_pyvo_sync_async_maxrec_tables(tap_server, tap_catalog) -> None:  # type: ignore[no-untyped-def]
    import pyvo

    service = pyvo.dal.TAPService(tap_server.url)
    result = service.search("SELECT TOP 10 objectid, ra, dec FROM bench.object ORDER BY objectid")
    assert len(result) == 10 and list(result.fieldnames) == ["objectid", "ra", "dec"]
    count = service.search("SELECT COUNT(*) AS n FROM bench.object").to_table()
    assert int(count["n"][0]) == tap_catalog.n_obj
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        limited = service.search("SELECT objectid FROM bench.object", maxrec=25)
    assert len(limited) == 25
    job_result = service.run_async("SELECT TOP 7 objectid FROM bench.object ORDER BY objectid")
    assert len(job_result) == 7
    job = service.submit_job("SELECT TOP 3 ra FROM bench.object")
    job.run()
    job.wait(phases=["COMPLETED", "ERROR"], timeout=30)
    assert job.phase == "COMPLETED" and len(job.fetch_result()) == 3
    job.delete()
    tables = service.tables
    assert "bench.object" in list(tables.keys())
    columns = {c.name for c in tables["bench.object"].columns}
    assert {"objectid", "ra", "dec", "r_mag"} <= columns
    assert service.hardlimit == 5_000_000 and service.maxrec == 100_000
    service.describe()
    bad = service.submit_job("SELECT FROM WHERE")
    bad.run()
    bad.wait(phases=["COMPLETED", "ERROR"], timeout=30)
    assert bad.phase == "ERROR"
    with pytest.raises(pyvo.dal.DALQueryError):
        bad.raise_if_error()
    with pytest.raises(pyvo.dal.DALQueryError, match="line 1"):
        service.search("SELECT FROM WHERE")


def test_pyvo_upload_join(tap_server) -> None:  # type: ignore[no-untyped-def]
    import pyvo

    service = pyvo.dal.TAPService(tap_server.url)
    first = service.search("SELECT TOP 5 objectid, ra, dec FROM bench.object ORDER BY objectid").to_table()
    mine = Table({"pos_id": np.arange(5), "ra": first["ra"], "dec": first["dec"]})
    result = service.search(
        "SELECT u.pos_id, o.objectid FROM TAP_UPLOAD.mine AS u JOIN bench.object AS o "
        "ON DISTANCE(POINT('ICRS', o.ra, o.dec), POINT('ICRS', u.ra, u.dec)) < 1.0/3600 ORDER BY u.pos_id",
        uploads={"mine": mine},
    ).to_table()
    assert list(result["objectid"]) == list(first["objectid"])


def test_astroquery_tapplus(tap_server) -> None:  # type: ignore[no-untyped-def]
    from astroquery.utils.tap.core import TapPlus

    tap = TapPlus(url=tap_server.url, verbose=False)
    job = tap.launch_job("SELECT objectid, ra FROM bench.object ORDER BY objectid")  # TOP 2000 injected
    table = job.get_results()
    assert len(table) == 2000
    plain = tap.launch_job(
        "SELECT TOP 3 objectid FROM bench.object ORDER BY objectid", output_format="votable_plain"
    ).get_results()
    assert len(plain) == 3
    async_job = tap.launch_job_async("SELECT TOP 4 objectid FROM bench.object ORDER BY objectid")
    assert len(async_job.get_results()) == 4
    tables = tap.load_tables(only_names=True)
    assert any(t.get_qualified_name().endswith("bench.object") for t in tables)


def test_stilts_tapquery_upload_and_tpipe(tap_server, require, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stilts = require.binary("stilts", "apt-get install stilts")
    positions = tmp_path / "pos.csv"
    positions.write_text("pid,ra,dec\n1,150.0,2.0\n2,151.0,3.0\n")
    out = tmp_path / "out.csv"
    subprocess.run(
        [
            stilts,
            "tapquery",
            f"tapurl={tap_server.url}",
            "nupload=1",
            f"upload1={positions}",
            "ufmt1=csv",
            "upname1=pos",
            "adql=SELECT u.pid, COUNT(*) AS n FROM TAP_UPLOAD.pos AS u JOIN bench.object AS o "
            "ON DISTANCE(POINT('ICRS', o.ra, o.dec), POINT('ICRS', u.ra, u.dec)) < 1 GROUP BY u.pid ORDER BY u.pid",
            f"out={out}",
            "ofmt=csv",
            "sync=true",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    lines = out.read_text().splitlines()
    assert lines[0] == "pid,n" and len(lines) == 3
    piped = subprocess.run(
        [
            stilts,
            "tpipe",
            f"in={tap_server.url}/sync?LANG=ADQL&QUERY=SELECT+TOP+6+objectid+FROM+bench.object",
            "ifmt=votable",
            "omode=count",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "rows: 6" in piped.stdout
