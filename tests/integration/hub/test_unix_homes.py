"""The system spawner's account hook: a real Unix user per hub user, with a home others cannot read.

Runs only as root (the hook runs in a root hub); it creates two throwaway accounts and removes them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from pachon.hub.config import ensure_unix_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creating Unix accounts needs root")


def test_accounts_are_created_with_private_homes() -> None:
    alice, bob = f"pa{uuid.uuid4().hex[:8]}", f"pb{uuid.uuid4().hex[:8]}"
    base = Path(
        tempfile.mkdtemp(prefix="pachon-homes-")
    )  # pytest's tmp is root-only; homes must be reachable
    os.chmod(base, 0o755)
    root = base / "homes"
    try:
        for name in (alice, bob):
            assert ensure_unix_user(root, name) == root / name
            assert ensure_unix_user(root, name) == root / name  # idempotent
        entry = pwd.getpwnam(alice)
        home = Path(entry.pw_dir)
        assert home == root / alice
        assert home.stat().st_uid == entry.pw_uid
        assert home.stat().st_mode & 0o777 == 0o700
        secret = home / "notes.txt"
        subprocess.run(["runuser", "-u", alice, "--", "sh", "-c", f"echo private > {secret}"], check=True)
        peek = subprocess.run(
            ["runuser", "-u", bob, "--", "cat", str(secret)], capture_output=True, text=True
        )
        assert peek.returncode != 0 and "Permission denied" in peek.stderr
        listing = subprocess.run(
            ["runuser", "-u", bob, "--", "ls", str(home)], capture_output=True, text=True
        )
        assert listing.returncode != 0
    finally:
        for name in (alice, bob):
            subprocess.run(["userdel", "--remove", name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_system_accounts_are_never_used_for_servers(tmp_path: Path) -> None:
    """A hub user named like a system account (root, daemon, …) must not get a server as that account."""
    for name in ("root", "daemon"):
        with pytest.raises(RuntimeError, match="system account"):
            ensure_unix_user(tmp_path, name)
    assert not (tmp_path / "root").exists()
