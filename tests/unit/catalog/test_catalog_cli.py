"""`pachon catalog create|ingest|list` end to end through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pachon.cli.main import main


def test_create_ingest_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"duckdb:///{tmp_path}/catalog/"
    assert main(["catalog", "create", "--schema", "obscore", "--catalog", url]) == 0
    assert "created schema ivoa (obscore): 2 tables" in capsys.readouterr().out
    path = tmp_path / "stars.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "ra": [1.0, 2.0, 3.0], "dec": [0.0, 1.0, 2.0]}), path)
    assert (
        main(
            [
                "catalog",
                "ingest",
                str(path),
                "--table",
                "mine.stars",
                "--ra",
                "ra",
                "--dec",
                "dec",
                "--catalog",
                url,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("mine.stars: 3 rows in ") and "rows/s" in out
    assert main(["catalog", "list", "--catalog", url]) == 0
    listing = capsys.readouterr().out
    assert "mine.stars" in listing and "3 rows" in listing and "position (ra, dec)" in listing
    assert "ivoa.ObsCore" in listing and "tap_schema.columns" in listing


def test_errors_are_one_line_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"duckdb:///{tmp_path}/catalog/"
    path = tmp_path / "short.csv"
    path.write_text("a,b\n1,2\n3\n")
    assert main(["catalog", "ingest", str(path), "--table", "mine.t", "--catalog", url]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "short.csv" in err and "row 2" in err
    assert main(["catalog", "create", "--schema", "nonsense", "--catalog", url]) == 2
    assert "choose one of dp1, obscore, ppdb" in capsys.readouterr().err


def test_default_catalog_is_the_repo_folder(
    isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["catalog", "create", "--schema", "obscore"]) == 0
    assert (isolated_settings / "repo" / "catalog" / "ivoa.duckdb").exists()
