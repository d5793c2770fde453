"""Pachón's network services, each a JupyterHub service under ``/services/<name>/``.

Services never import ``pachon.pipelines``; they meet the pipelines only through the
Butler repository, the catalog and APDB databases and the alert topics.
"""
