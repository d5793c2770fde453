"""``python -m pachon.hub.singleuser``: JupyterHub's single-user server, started with less work.

The hub spawns this instead of ``python -m jupyterhub.singleuser``; it is the same server (same
arguments, same ``main``), with one import refused first: ``rfc3987_syntax``. jsonschema imports
that package, when installed, to offer the ``iri``/``iri-reference`` format checks, and the
package compiles an Earley grammar at import: about 1 CPU second, more than half of the server's
whole import cost (measured with ``-X importtime``: 1.9 s of CPU with it, 0.9 s without). Nothing
in the Jupyter server validates IRIs (jupyter_events' schemas use ``uri``, still checked by
``rfc3986_validator``), so the server loses nothing and every spawn gets faster; on a loaded
machine with several users starting at once the saving multiplies. Kernels are separate
processes and keep the package.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

SKIPPED_IMPORTS = ("rfc3987_syntax",)


def main() -> None:
    for name in SKIPPED_IMPORTS:
        # A None entry makes `import name` raise ImportError, which jsonschema treats as absent.
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    from jupyterhub.singleuser import main as singleuser_main

    singleuser_main()


if __name__ == "__main__":
    main()
