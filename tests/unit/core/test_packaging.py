"""Packaging: the folder mapping works from a built wheel, and `platform/` never shadows the stdlib."""

from __future__ import annotations

import os
import re
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]


ROOTS = {
    "pachon": "platform/pachon",
    "pachon.services": "services",
    "pachon.pipelines": "pipelines",
    "pachon.extensions": "extensions",
}


def _subpackages() -> list[str]:
    """Every package the source folders define (folders with an __init__.py), by import name."""
    names = []
    for name, folder in ROOTS.items():
        root = REPO_ROOT / folder
        for init in sorted(root.rglob("__init__.py")):
            if "node_modules" in init.parts:
                continue
            rel = init.parent.relative_to(root)
            names.append(".".join([name, *rel.parts]) if rel.parts else name)
    return names


def test_platform_folder_is_not_a_package() -> None:
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()


def test_stdlib_platform_and_uuid_import_from_repo_root() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import uuid, platform; print(platform.system(), platform.__file__)"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    system, path = out.stdout.split()
    assert system == "Linux"
    assert not path.startswith(str(REPO_ROOT)), f"platform resolved inside the repo: {path}"


def test_editable_install_imports_every_area() -> None:
    import importlib

    names = _subpackages()
    for expected in (
        "pachon.core",
        "pachon.cli",
        "pachon.services.tap",
        "pachon.pipelines.sim",
        "pachon.extensions",
    ):
        assert expected in names
    for name in names:
        importlib.import_module(name)


@pytest.mark.slow
def test_wheel_installs_in_fresh_venv_and_imports_everything(tmp_path: Path) -> None:
    """Build the wheel, install it (without deps) in a fresh venv that borrows our dependencies, import all."""
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheels = list(dist.glob("pachon-*.whl"))
    assert len(wheels) == 1
    if (REPO_ROOT / "extensions" / "lab" / "labextension" / "package.json").exists():  # built by `make`
        import zipfile

        names = zipfile.ZipFile(wheels[0]).namelist()
        prebuilt = [n for n in names if "/data/share/jupyter/labextensions/@pachon/lab/" in n]
        assert any(n.endswith("/@pachon/lab/package.json") for n in prebuilt), "prebuilt extension missing"
        assert any("/static/" in n for n in prebuilt)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)  # ensurepip: pip from the interpreter, no download
    fresh_python = env_dir / "bin" / "python"
    fresh_site = Path(
        subprocess.run(
            [str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # A plain `pip install` with the fresh environment's own pip (never ours: pip would treat our editable
    # install as the one to replace), so the wheel's data files land in <venv>/share/jupyter, where
    # JupyterLab looks for prebuilt extensions.
    subprocess.run(
        [str(fresh_python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheels[0])],
        check=True,
        capture_output=True,
    )
    # Dependencies come from the test venv; its editable-install hook (.pth) is not processed this way.
    (fresh_site / "zz_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    names = _subpackages()
    script = (
        "import importlib, pachon, sys\n"
        f"names = {names!r}\n"
        "for n in names: importlib.import_module(n)\n"
        "print(pachon.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [str(fresh_python), "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(fresh_site)), out.stdout
    if (REPO_ROOT / "extensions" / "lab" / "labextension" / "package.json").exists():
        # JupyterLab finds the prebuilt extension from the wheel alone: no `jupyter lab build`.
        listing = subprocess.run(
            [str(fresh_python), "-m", "jupyterlab.labextensions", "list"],  # = `jupyter labextension list`
            cwd=tmp_path, capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        text = re.sub(r"\x1b\[[0-9;]*m", "", listing.stdout + listing.stderr)  # drop colours
        assert listing.returncode == 0, text
        line = next((ln for ln in text.splitlines() if "@pachon/lab" in ln), "")
        assert "enabled" in line and "OK" in line, text
        assert str(env_dir / "share" / "jupyter" / "labextensions") in text, text
