"""Package discovery for the folder layout of ARCHITECTURE.md.

pyproject.toml maps the design card's folders into the one import package
``pachon`` (``platform/pachon`` → ``pachon``, ``services`` → ``pachon.services``,
``pipelines`` → ``pachon.pipelines``, ``extensions`` → ``pachon.extensions``).
Setuptools cannot *discover* packages across such a mapping from static
configuration, so this file lists them by walking each source folder; a new
subpackage anywhere is picked up without editing any list.
"""

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


setup(packages=_packages())
