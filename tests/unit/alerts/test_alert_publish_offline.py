"""Without a broker, publishing archives the alerts and says how to send them later."""

from __future__ import annotations

from pathlib import Path

from pachon.core.alerts import AlertArchive, publish_alerts
from pachon.core.alerts.samples import sample_visit


def test_publish_without_broker_archives_and_reports(isolated_settings: Path) -> None:
    repo = isolated_settings / "repo"
    repo.mkdir()
    alerts = sample_visit(4, history=1, cutouts=False).alerts()
    report = publish_alerts(repo, alerts)
    assert not report.ok and report.delivered == 0 and report.archived == 4
    assert len(report.failed) == 4
    assert "pachon alerts broker --repo" in report.failed[0][1]
    archive = AlertArchive.for_repo(repo)
    night = archive.nights()[0]
    assert archive.archived_ids(night) == {a["diaSourceId"] for a in alerts}
    assert archive.published_ids(night) == set()
    # Publishing the same visit again does not archive twice.
    assert publish_alerts(repo, alerts).archived == 0
