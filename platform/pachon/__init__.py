"""Pachón: a Jupyter-centric science platform for a large optical sky survey.

The import package gathers the design card's folders (see ARCHITECTURE.md):
``pachon.core`` (settings, the Butler data repository, the catalog layer, the
platform state database), ``pachon.cli`` (the ``pachon`` command),
``pachon.services.*`` (TAP, images, alerts, portal, files),
``pachon.pipelines.*`` (simulator, prompt processing, moving objects, data
release, metrics) and ``pachon.extensions`` (notebook-side widgets).
"""

from pachon._version import __version__

__all__ = ["__version__"]
