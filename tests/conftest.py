"""Shared pytest wiring for the whole suite.

Tests that need something outside Python (PostgreSQL binaries, stilts, Chromium, the
Kafka broker) ask the ``require`` fixture for it. Outside CI a missing piece skips the
test with a message saying what to install; with ``PACHON_REQUIRE_SERVICES=1`` (set by
``.ci/run``) it fails instead, so CI can never pass by skipping.

Expensive products (a simulated repo, a processed repo, a loaded catalog) are built
once per session by fixtures in ``tests/fixtures/`` and shared.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
REPO_ROOT = TESTS_DIR.parent
SHARED_DIR = Path(os.environ.get("PACHON_SHARED_DIR", REPO_ROOT.parent / "shared"))

if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

# Session fixtures shared across areas live in tests/fixtures/*.py; each area adds its own module.
pytest_plugins = [
    f"fixtures.{path.stem}"
    for path in sorted((TESTS_DIR / "fixtures").glob("*.py"))
    if path.stem != "__init__"
]


def services_required() -> bool:
    """True when a missing external piece must fail a test instead of skipping it."""
    return os.environ.get("PACHON_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


class Requirements:
    """Checks for external pieces; skips (or fails under PACHON_REQUIRE_SERVICES=1) when absent."""

    def missing(self, what: str, hint: str) -> None:
        message = f"{what} is not available here; {hint}"
        if services_required():
            pytest.fail(f"PACHON_REQUIRE_SERVICES=1 but {message}", pytrace=False)
        pytest.skip(message)

    def binary(self, name: str, hint: str | None = None, *, paths: tuple[str, ...] = ()) -> str:
        """Return the path of an executable or skip/fail with what to install."""
        found = shutil.which(name)
        if found is None:
            for candidate in paths:
                if Path(candidate).exists():
                    return candidate
            self.missing(f"the program {name!r}", hint or "run scripts/system-deps as root")
            raise AssertionError("unreachable")
        return found

    def file(self, path: Path, hint: str) -> Path:
        if not path.exists():
            self.missing(str(path), hint)
        return path


@pytest.fixture(scope="session")
def require() -> Requirements:
    return Requirements()


@pytest.fixture(scope="session")
def shared_dir(require: Requirements) -> Path:
    """``../shared`` beside the repo (test data and bench harness that are not ours)."""
    return require.file(SHARED_DIR, "the tests read ../shared/ beside the checkout (PACHON_SHARED_DIR)")


@pytest.fixture
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run a test in an empty folder with no PACHON_* variables and fresh cached settings."""
    from pachon.core.settings import get_settings

    for key in list(os.environ):
        if key.startswith("PACHON_") and key not in ("PACHON_REQUIRE_SERVICES", "PACHON_SHARED_DIR"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()
