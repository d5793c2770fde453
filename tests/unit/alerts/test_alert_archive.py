"""The archive: nights, durability by atomic files, and what was published."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pachon.core.alerts.archive import AlertArchive, ArchivedAlert, Delivery, night_of


def _alert(ident: int, mjd: float = 61367.2, visit: int = 7, detector: int = 3) -> ArchivedAlert:
    return ArchivedAlert(
        ident, ident + 1000, visit, detector, mjd, 1101, b"\x00\x00\x00\x04\x4d" + bytes([ident % 256])
    )


def test_night_is_the_date_of_tai_minus_12h() -> None:
    assert night_of(61367.0) == "2026-11-22"  # MJD 61367.0 = 2026-11-23T00:00, still the night of the 22nd
    assert night_of(61367.49) == "2026-11-22"
    assert night_of(61367.51) == "2026-11-23"  # after noon: the next night


def test_write_read_and_deduplicate(tmp_path: Path) -> None:
    archive = AlertArchive(tmp_path)
    assert archive.write([_alert(1), _alert(2), _alert(3, mjd=61368.2)]) == [
        _alert(1),
        _alert(2),
        _alert(3, mjd=61368.2),
    ]
    assert archive.nights() == ["2026-11-22", "2026-11-23"]
    # A re-run visit writes nothing new.
    assert archive.write([_alert(1), _alert(2)]) == []
    # Another process (a fresh object) sees what was written and dedupes too.
    other = AlertArchive(tmp_path)
    assert other.archived_ids("2026-11-22") == {1, 2}
    assert other.write([_alert(2), _alert(4)]) == [_alert(4)]
    assert sorted(a.diaSourceId for a in archive.read("2026-11-22")) == [1, 2, 4]
    files = list(tmp_path.rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")], "temporary files left behind"
    assert all(f.suffix == ".parquet" for f in files if f.is_file())


def test_published_ledger(tmp_path: Path) -> None:
    archive = AlertArchive(tmp_path)
    archive.write([_alert(1), _alert(2), _alert(3)])
    archive.mark_published(
        [Delivery(1, "2026-11-22", "alerts-v11", 0, 0), Delivery(3, "2026-11-22", "alerts-v11", 1, 0)]
    )
    assert AlertArchive(tmp_path).published_ids("2026-11-22") == {1, 3}
    assert [a.diaSourceId for a in archive.read("2026-11-22", unpublished_only=True)] == [2]


def test_read_since_selects_by_archive_time(tmp_path: Path) -> None:
    archive = AlertArchive(tmp_path)
    archive.write([_alert(1)])
    assert [a.diaSourceId for a in archive.read_since(datetime.now(UTC) - timedelta(minutes=1))] == [1]
    assert list(archive.read_since(datetime.now(UTC) + timedelta(minutes=1))) == []
