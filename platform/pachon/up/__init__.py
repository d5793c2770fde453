"""``pachon up``: start, supervise and stop the embedded platform on one machine.

Components run as child processes (so one crash cannot take the others down) under a
small supervisor that health-checks them, restarts a component that dies (with back-off,
logging why), and stops everything on Ctrl-C, SIGTERM or ``pachon down``. The
supervisor writes ``<repo>/state/up.json`` (its pid, each component's URL and health
endpoint) so ``pachon status`` and ``pachon down`` can find a running platform.
"""
