"""JupyterHub wiring of the embedded platform: config, accounts, scopes, tokens and service discovery.

Why a package of its own: the hub is the identity provider of every Pachón service
(ARCHITECTURE.md, "Identity and access"), and ``pachon up``, ``pachon user``/``pachon token``
and the generated ``jupyterhub_config.py`` all need the same facts (scopes, roles, where the
hub's state lives, which services exist), so they live here once.
"""
