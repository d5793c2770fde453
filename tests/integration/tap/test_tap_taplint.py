"""STILTS taplint (offline, via ../shared/bench/run_taplint.sh) against a live server holding
DP1 and ObsCore (empty, from Felis) plus one ingested catalog: no errors, no failures
(the LOC stage may fail until ``ivoa.obsplan`` exists)."""

from __future__ import annotations

import re
import subprocess

import pytest

pytestmark = pytest.mark.slow


def test_taplint_clean(tap_server, shared_dir, require, tmp_path) -> None:  # type: ignore[no-untyped-def]
    require.binary("stilts", "apt-get install stilts")
    report = tmp_path / "taplint.txt"
    result = subprocess.run(
        ["bash", str(shared_dir / "bench" / "run_taplint.sh"), tap_server.url, str(report)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = result.stdout
    print(summary)
    stages: dict[str, tuple[int, int, int]] = {}
    for line in summary.splitlines():
        match = re.match(r"^([A-Z]{3})\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+\d+$", line)
        if match:
            stages[match.group(1)] = (int(match.group(2)), int(match.group(3)), int(match.group(4)))
    assert stages, f"no taplint summary:\n{summary}\n{result.stderr}"
    problems = {
        stage: counts
        for stage, counts in stages.items()
        if counts[0] > 0 or (counts[2] > 0 and stage != "LOC")
    }
    text = report.read_text()
    errors = [line for line in text.splitlines() if re.match(r"^[EF]-", line)]
    assert not problems, "taplint errors/failures:\n" + "\n".join(errors[:50])
