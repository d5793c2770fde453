"""The Python that notebook servers of per-user Unix accounts run, and the JupyterLab settings they get.

Why this exists: with the system spawner every user's server runs as that user's own Unix
account, so it cannot use an interpreter other users cannot reach. A project installed in a
virtual environment based on a Python under a private home (pyenv in ``/root``, mode 700) is such
a case, although the environment's packages themselves are readable by everyone.

The fix is small and needs no download: a *user environment* made at ``pachon up`` time with
``<base> -m venv --without-pip`` from a world-executable interpreter of the same ``major.minor``
and ABI (``SOABI``; Debian's ``/usr/bin/python3.11`` for a pyenv 3.11), plus one ``.pth`` file
that adds the project environment's ``site-packages`` (``site.addsitedir`` also runs the ``.pth``
files there, so the editable ``pachon`` install works). Compiled wheels only depend on the ABI
tag, which is checked; bytecode caches are shared because CPython keeps one magic number per
minor version. ``share/jupyter`` and ``etc/jupyter`` point to the project environment's, so the
kernel spec, the prebuilt lab extensions and the server extension switches are the same as in
single-user mode.

The environment lives in a root-owned, world-readable folder (default
``/var/lib/pachon/user-python/py311-<digest>``, one per project environment), never inside the
repo's state folder, whose secrets must stay private. It is verified once, by importing the
single-user server, the Pachón lab extension and numpy as the unprivileged ``nobody`` account,
and a marker file records that; later starts reuse it (a changed base or project environment
gives another fingerprint and a fresh build).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LAB_SETTING_OVERRIDES",
    "USER_ENV_ROOT",
    "UserPython",
    "UserPythonError",
    "base_python_candidates",
    "ensure_user_python",
    "reach_problem",
    "write_lab_settings",
]

USER_ENV_ROOT = Path("/var/lib/pachon/user-python")
"""Parent of the user environments (root-owned, mode 755)."""

MARKER = "pachon-user-env.json"
FORMAT = 1
"""Bumped when the layout of a user environment changes, so old ones are rebuilt."""

VERIFY_IMPORTS = (
    "pachon.hub.singleuser, jupyterhub.singleuser, jupyterlab, pachon.extensions.lab, numpy, astropy.table"
)
"""What a user's server needs; imported as ``nobody`` once per environment."""

LAB_SETTING_OVERRIDES: dict[str, dict[str, object]] = {
    # JupyterLab asks every new user whether to fetch news from jupyter.org (a network call we do
    # not want from a platform that may run offline) and checks for new versions: both off.
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    # The jupyterlab-announcements package has the same prompt when installed.
    "jupyterlab-announcements:plugin": {"fetchNews": "false", "checkForUpdates": False},
}
"""Defaults for every user's JupyterLab (``overrides.json``); users may still change them."""


class UserPythonError(RuntimeError):
    """No Python that every Unix user can run could be prepared; the message says why and what to do."""


@dataclass(frozen=True)
class UserPython:
    """A prepared user environment."""

    prefix: Path
    base: Path
    """The interpreter the environment was made from (``/usr/bin/python3.11``)."""

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"

    @property
    def bin_dir(self) -> Path:
        return self.prefix / "bin"

    @property
    def lab_settings_dir(self) -> Path:
        return self.prefix / "lab-settings"


def reach_problem(target: Path, *, need: int = stat.S_IXOTH) -> str | None:
    """Why another Unix user cannot reach ``target`` (None when they can); names only the blocking path.

    Every folder on the way must be searchable by others (``o+x``), and ``target`` itself must
    grant ``need`` to others (``S_IXOTH`` for a program, ``S_IROTH`` for a file to read).
    """
    real = Path(os.path.realpath(target))
    for path in (real, *real.parents):
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            return f"cannot inspect {path} ({exc})"
        wanted = need if path == real else stat.S_IXOTH
        if not mode & wanted:
            return f"{path} is mode {stat.S_IMODE(mode):o}, closed to other Unix users"
    return None


def _site_dirs() -> list[str]:
    """The project environment's ``site-packages`` folders (purelib and platlib, deduplicated)."""
    paths = sysconfig.get_paths()
    found: list[str] = []
    for key in ("purelib", "platlib"):
        path = os.path.realpath(paths[key])
        if path not in found and os.path.isdir(path):
            found.append(path)
    return found


def base_python_candidates(explicit: str = "") -> list[Path]:
    """Interpreters to build from, best first: the configured one, this environment's base, the system's."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = [Path(explicit)] if explicit else []
    base = getattr(sys, "_base_executable", "") or sys.executable
    found.append(Path(base))
    found.extend(Path(folder) / version for folder in ("/usr/bin", "/usr/local/bin"))
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def _describe(python: Path) -> dict[str, str] | None:
    """Version and ABI of an interpreter (None if it does not run)."""
    code = (
        "import json, sys, sysconfig; print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
        "'soabi': sysconfig.get_config_var('SOABI') or '', 'full': sys.version.split()[0]}))"
    )
    try:
        result = subprocess.run(
            [str(python), "-I", "-c", code], capture_output=True, text=True, timeout=30, check=True
        )
        return dict(json.loads(result.stdout))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _choose_base(explicit: str) -> tuple[Path, dict[str, str]]:
    want = {
        "version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "soabi": sysconfig.get_config_var("SOABI") or "",
    }
    tried: list[str] = []
    for candidate in base_python_candidates(explicit):
        if not candidate.exists():
            tried.append(f"{candidate}: missing")
            continue
        problem = reach_problem(candidate)
        if problem:
            tried.append(f"{candidate}: {problem}")
            continue
        info = _describe(candidate)
        if info is None:
            tried.append(f"{candidate}: does not run")
        elif info["version"] != want["version"] or info["soabi"] != want["soabi"]:
            tried.append(f"{candidate}: Python {info['full']} ({info['soabi']}), need {want['version']} "
                         f"({want['soabi']})")  # fmt: skip
        else:
            return candidate, info
    raise UserPythonError(
        "no Python every Unix user can run matches this installation's "
        f"(Python {want['version']}, {want['soabi']}): " + "; ".join(tried)
        + f". Install one (Debian: apt-get install python{want['version']}) or set hub.user_python"
    )  # fmt: skip


def _fingerprint(base: Path, info: dict[str, str], site_dirs: list[str]) -> dict[str, object]:
    return {
        "format": FORMAT,
        "base": str(base),
        "base_version": info["full"],
        "soabi": info["soabi"],
        "project_prefix": os.path.realpath(sys.prefix),
        "site_dirs": site_dirs,
    }


def _verify(python: Path) -> str | None:
    """Import what a server needs as ``nobody`` (an account with no rights); None when it works."""
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return None  # nothing to run as; the first spawn will tell
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8"}
    try:
        result = subprocess.run(
            [str(python), "-c", f"import {VERIFY_IMPORTS}"],
            capture_output=True, text=True, timeout=120, env=env, cwd="/",
            user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[],
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"running {python} as nobody failed ({exc})"
    if result.returncode != 0:
        return f"{python} cannot import the server as an unprivileged user:\n{result.stderr[-2000:]}"
    return None


def _link_jupyter_dirs(prefix: Path) -> None:
    """``share/jupyter`` and ``etc/jupyter`` of the project environment, seen from the user environment."""
    for relative in ("share/jupyter", "etc/jupyter"):
        source = Path(sys.prefix) / relative
        if source.is_dir():
            (prefix / relative).parent.mkdir(parents=True, exist_ok=True)
            (prefix / relative).symlink_to(Path(os.path.realpath(source)), target_is_directory=True)


def write_lab_settings(folder: Path) -> Path:
    """Write the platform's JupyterLab defaults (``overrides.json``) into ``folder``; return the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "overrides.json"
    text = json.dumps(LAB_SETTING_OVERRIDES, indent=2) + "\n"
    if not path.exists() or path.read_text() != text:
        tmp = folder / ".overrides.json.tmp"
        tmp.write_text(text)
        tmp.replace(path)
    return path


def _build(target: Path, base: Path, fingerprint: dict[str, object], site_dirs: list[str]) -> None:
    """Create the environment beside ``target`` and move it into place (atomic for concurrent starts)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        os.chmod(work, 0o755)
        subprocess.run(
            [str(base), "-m", "venv", "--without-pip", "--symlinks", str(work)],
            check=True, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site_packages = work / "lib" / version / "site-packages"
        lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in site_dirs)
        (site_packages / "pachon-project.pth").write_text(lines)
        _link_jupyter_dirs(work)
        write_lab_settings(work / "lab-settings")
        _make_public(work)
        problem = _verify(work / "bin" / "python")
        if problem:
            raise UserPythonError(problem)
        (work / MARKER).write_text(json.dumps(fingerprint, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        try:
            work.rename(target)
        except OSError:
            if _matches(target, fingerprint):  # another `pachon up` built the same environment
                return
            raise
    except subprocess.CalledProcessError as exc:
        raise UserPythonError(f"{base} -m venv failed: {exc.stderr.strip()[-1000:]}") from None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _make_public(folder: Path) -> None:
    """Folders 755 and files 644 whatever the umask: every user's server reads this environment."""
    for path in (folder, *folder.rglob("*")):
        if path.is_symlink():
            continue
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _matches(prefix: Path, fingerprint: dict[str, object]) -> bool:
    try:
        found = json.loads((prefix / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return bool(found == json.loads(json.dumps(fingerprint))) and (prefix / "bin" / "python").exists()


def ensure_user_python(root: Path | None = None, *, explicit_base: str = "") -> UserPython:
    """The user environment for this installation, built (and verified) when missing or stale.

    Raises :class:`UserPythonError` saying why when no interpreter fits or the environment does
    not import as an unprivileged user (e.g. the project's packages are not world-readable).
    """
    root = root or USER_ENV_ROOT
    site_dirs = _site_dirs()
    for path in site_dirs:
        problem = reach_problem(Path(path), need=stat.S_IROTH | stat.S_IXOTH)
        if problem:
            raise UserPythonError(f"the project's packages in {path} are private: {problem}")
    base, info = _choose_base(explicit_base)
    fingerprint = _fingerprint(base, info, site_dirs)
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    prefix = root / f"py{info['version'].replace('.', '')}-{digest}"
    if not _matches(prefix, fingerprint):
        root.mkdir(parents=True, exist_ok=True)
        _build(prefix, base, fingerprint, site_dirs)
    # The folders above must be reachable too (a root with a restrictive umask, or a private root).
    problem = reach_problem(prefix / MARKER, need=stat.S_IROTH)
    if problem:
        raise UserPythonError(f"the user environment {prefix} is not reachable: {problem}")
    write_lab_settings(prefix / "lab-settings")
    return UserPython(prefix=prefix, base=base)
