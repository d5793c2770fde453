"""Package discovery for the folder layout of ARCHITECTURE.md.

pyproject.toml maps the design card's folders into the one import package
``pachon`` (``platform/pachon`` → ``pachon``, ``services`` → ``pachon.services``,
``pipelines`` → ``pachon.pipelines``, ``extensions`` → ``pachon.extensions``).
Setuptools cannot *discover* packages across such a mapping from static
configuration, so this file lists them by walking each source folder; a new
subpackage anywhere is picked up without editing any list.
"""

import os

from setuptools import find_packages, setup

ROOTS = {
    "pachon": "platform/pachon",
    "pachon.services": "services",
    "pachon.pipelines": "pipelines",
    "pachon.extensions": "extensions",
}


def _packages() -> list[str]:
    found: list[str] = []
    for name, folder in ROOTS.items():
        found.append(name)
        found.extend(f"{name}.{sub}" for sub in find_packages(folder, exclude=["*.node_modules*"]))
    return found


LABEXTENSION_SRC = "extensions/lab/labextension"
LABEXTENSION_DEST = "share/jupyter/labextensions/@pachon/lab"


def _labextension() -> list[tuple[str, list[str]]]:
    """The prebuilt JupyterLab extension (built by scripts/build-platform-js) as wheel data files,
    so a plain `pip install` enables it with no Node.js and no `jupyter lab build`."""
    files: list[tuple[str, list[str]]] = []
    for folder, _dirs, names in os.walk(LABEXTENSION_SRC):
        if names:
            dest = os.path.normpath(
                os.path.join(LABEXTENSION_DEST, os.path.relpath(folder, LABEXTENSION_SRC))
            )
            files.append((dest, [os.path.join(folder, name) for name in sorted(names)]))
    return files


setup(packages=_packages(), data_files=_labextension())
