"""One log format for every Pachón process (CLI, services, pipelines).

Standard-library logging, configured once: ``console`` (default) prints
``2026-11-24 05:01:02 INFO pachon.sim: rendered 24 detectors in 12.3 s``; ``json`` prints
one JSON object per line for log collectors. Both come from settings (``log_level``,
``log_format``) or the ``PACHON_LOG_*`` variables. Passwords and tokens never go into
log records: callers log user names and token *ids*, never secrets.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

__all__ = ["configure_logging", "get_logger"]

_configured = False


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def configure_logging(level: str | None = None, fmt: str | None = None, *, force: bool = False) -> None:
    """Install Pachón's handler on the root logger (once; ``force`` re-configures)."""
    global _configured
    if _configured and not force:
        return
    if level is None or fmt is None:
        try:
            from pachon.core.settings import get_settings

            settings = get_settings()
            level = level or settings.log_level
            fmt = fmt or settings.log_format
        except Exception:  # logging must work even when settings are invalid
            level, fmt = level or "INFO", fmt or "console"
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_pachon", False):
            root.removeHandler(existing)
    handler._pachon = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    logging.getLogger("pachon").setLevel(level)
    for noisy in ("lsst", "alembic", "httpx", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    _configured = True


def get_logger(name: str) -> logging.Logger:
    """A logger under the ``pachon`` hierarchy (configured on first use)."""
    configure_logging()
    return logging.getLogger(name if name.startswith("pachon") else f"pachon.{name}")
