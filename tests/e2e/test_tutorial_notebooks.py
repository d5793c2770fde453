"""The tutorials in notebooks/ run cleanly (pytest --nbval-lax) against a live platform.

The kernel talks to the platform exactly as inside a hub notebook: the same ``PACHON_*`` variables the
hub gives every server, and a user's token. Cells marked ``# NBVAL_CHECK_OUTPUT`` must also print what is
stored in the notebook.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.platform import RunningPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def test_tutorials_pass_nbval(running_platform: RunningPlatform, tmp_path: Path) -> None:
    running_platform.require_tap()
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert len(notebooks) >= 2, "the TAP and Butler tutorials should be in notebooks/"
    for notebook in notebooks:
        shutil.copy(notebook, tmp_path / notebook.name)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts =\n")
    running_platform.add_user("tutor", "tutor-user-pw")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JUPYTERHUB_API_TOKEN", "ACCESS_TOKEN", "PACHON_TAP_URL")
    }
    env.update(
        {
            "PACHON_TOKEN": running_platform.token("tutor"),
            "PACHON_PLATFORM_URL": running_platform.url,
            "PACHON_DISCOVERY_URL": f"{running_platform.url}/services/discovery/",
            "PACHON_REPO": str(running_platform.repo),
            "MPLBACKEND": "Agg",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-q", "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), *sorted(p.name for p in tmp_path.glob("*.ipynb"))],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.splitlines()[-1]
