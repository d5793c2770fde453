"""The system spawner's user environment (pachon.hub.userenv) and how `pachon up` picks the spawner.

Building the environment runs the real interpreter and imports the server as ``nobody``, so that
test needs root; the choice of spawner is checked with the user id and the environment replaced.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pachon.hub.userenv as userenv
from pachon.core.settings import SettingsError
from pachon.hub.settings import HubSettings
from pachon.up.platform import decide_spawner, protect_private_state


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A folder other users can reach (pytest's own tmp folder is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="pachon-userenv-"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_user_environment_runs_the_server_as_an_unprivileged_user(public_tmp: Path, require: Any) -> None:
    if os.geteuid() != 0:
        require.missing("root", "checking the environment as another Unix user needs root")
    built = userenv.ensure_user_python(public_tmp)
    assert built.prefix.parent == public_tmp and built.python.exists()
    marker = json.loads((built.prefix / userenv.MARKER).read_text())
    assert marker["project_prefix"] == os.path.realpath(os.sys.prefix)  # type: ignore[attr-defined]
    pth = next((built.prefix / "lib").glob("python3.*/site-packages/pachon-project.pth")).read_text()
    assert "site.addsitedir(" in pth and "site-packages" in pth
    assert (built.prefix / "share" / "jupyter" / "kernels").is_dir()  # the project's Jupyter data
    overrides = json.loads((built.lab_settings_dir / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    # Reused, not rebuilt, while nothing changed.
    mtime = (built.prefix / userenv.MARKER).stat().st_mtime
    assert userenv.ensure_user_python(public_tmp) == built
    assert (built.prefix / userenv.MARKER).stat().st_mtime == mtime
    # An unprivileged account runs it and sees the project's packages (editable pachon, compiled wheels).
    nobody = pwd.getpwnam("nobody")
    code = "import numpy, astropy.table, lsst.sphgeom, pachon.hub.singleuser, pachon; print(pachon.__file__)"
    result = subprocess.run(
        [str(built.python), "-c", code], capture_output=True, text=True, timeout=120,
        user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[], env={"HOME": "/", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("pachon/__init__.py")


def test_a_base_python_of_another_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "python3.12"
    fake.write_text(
        '#!/bin/sh\necho \'{"version": "3.12", "soabi": "cpython-312-x86_64-linux-gnu", "full": "3.12.1"}\'\n'
    )
    fake.chmod(0o755)
    tmp_path.chmod(0o755)
    monkeypatch.setattr(userenv, "base_python_candidates", lambda explicit="": [fake])
    monkeypatch.setattr(userenv, "reach_problem", lambda target, need=0: None)
    with pytest.raises(userenv.UserPythonError, match=r"3\.12\.1.*need 3\.11"):
        userenv.ensure_user_python(tmp_path / "envs")


def test_reach_problem_names_the_closed_folder(tmp_path: Path) -> None:
    private = tmp_path / "private"
    (private / "bin").mkdir(parents=True)
    program = private / "bin" / "python"
    program.write_text("")
    program.chmod(0o755)
    private.chmod(0o700)
    assert userenv.reach_problem(program) == f"{private} is mode 700, closed to other Unix users"


def test_spawner_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root: single-user mode saying so; root without a usable Python: auto falls back, system refuses."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    kind, python, lab, note = decide_spawner(HubSettings(spawner="auto"), tmp_path)
    assert (kind, python) == ("simple", "") and note and "SINGLE-USER MODE" in note and "run as root" in note
    assert json.loads((Path(lab) / "overrides.json").read_text())
    with pytest.raises(SettingsError, match="needs root"):
        decide_spawner(HubSettings(spawner="system"), tmp_path)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise userenv.UserPythonError("no Python every Unix user can run")

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(userenv, "ensure_user_python", broken)
    kind, _python, _lab, note = decide_spawner(HubSettings(spawner="auto"), tmp_path)
    assert kind == "simple" and note and "running as root, but no Python every Unix user can run" in note
    with pytest.raises(SettingsError, match="hub.spawner = 'system'"):
        decide_spawner(HubSettings(spawner="system"), tmp_path)


def test_private_state_is_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "pachon.sqlite3").write_text("jobs")
    (state / "kafka.json").write_text("{}")
    protect_private_state(tmp_path)
    for name in ("hub", "logs", "tap-results"):
        assert (state / name).stat().st_mode & 0o777 == 0o700
    assert (state / "pachon.sqlite3").stat().st_mode & 0o777 == 0o600
    assert (state / "kafka.json").stat().st_mode & 0o004  # notebooks find the alert broker here
