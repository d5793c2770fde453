"""Pachón's settings: one validated model read from ``pachon.toml`` and ``PACHON_*`` variables.

Why pydantic-settings: every component (CLI, services, pipelines, hub wiring) reads the
same typed model, so a deployment changes only settings, never code (ARCHITECTURE.md,
"One platform, two scales"). Precedence, highest first: keyword arguments, environment
variables (``PACHON_TAP__MAXREC_HARD=…``; nested sections use ``__``), the TOML file
(``$PACHON_CONFIG`` or ``./pachon.toml``), then the defaults below.

An invalid value raises :class:`SettingsError` whose message is one line naming the
setting, the value and what is allowed, e.g.::

    invalid setting tap.maxrec_default = 'lots' (from PACHON_TAP__MAXREC_DEFAULT): Input should be a valid integer
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "AlertsSettings",
    "Settings",
    "SettingsError",
    "TapSettings",
    "config_file",
    "get_settings",
    "load_settings",
]

ENV_PREFIX = "PACHON_"


class SettingsError(ValueError):
    """A setting has a value that is not allowed; the message is one line for the user."""


class TapSettings(BaseModel):
    """Limits and addresses of the TAP service."""

    public_base_url: str | None = Field(
        default=None,
        description="Public TAP base URL (e.g. https://host/services/tap) used in capabilities and job "
        "URLs; when unset the URL of the incoming request is used.",
    )
    maxrec_default: int = Field(default=100_000, ge=0, description="Rows returned when MAXREC is not given.")
    maxrec_hard: int = Field(default=5_000_000, ge=1, description="Most rows any query may return.")
    sync_timeout_s: float = Field(default=600.0, gt=0, description="Wall-clock limit of a sync query.")
    async_execution_duration_s: int = Field(
        default=3600, gt=0, description="Default EXECUTIONDURATION of an async job."
    )
    async_max_execution_duration_s: int = Field(default=4 * 3600, gt=0, description="Most a job may ask for.")
    destruction_days: float = Field(default=7.0, gt=0, description="Days until a job and its results go.")
    upload_max_bytes: int = Field(default=100_000_000, gt=0, description="Largest accepted upload.")
    upload_max_rows: int = Field(default=1_000_000, gt=0, description="Most rows in one uploaded table.")
    upload_allow_private_hosts: bool = Field(
        default=False,
        description="Allow http(s) uploads from loopback, link-local and private addresses (SSRF guard).",
    )


class AlertsSettings(BaseModel):
    """Where the alert stream lives and how it is named."""

    topic_prefix: str = Field(default="alerts", description="Topic is '<prefix>-v<major>'.")
    partitions: int = Field(default=4, ge=1, description="Partitions of a new alert topic.")
    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, gt=0, description="Topic retention.")


class Settings(BaseSettings):
    """Every setting of a Pachón installation, with its default for the embedded platform."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    repo: Path = Field(default=Path("repo"), description="The data repository (Butler) folder.")
    butler_registry_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of a PostgreSQL Butler registry; default is SQLite inside the repo.",
    )
    state_db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the platform state database (jobs, history, user tables); "
        "default sqlite:///<repo>/state/pachon.sqlite3.",
    )
    catalog_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the catalog database; default duckdb in <repo>/catalog/.",
    )
    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers; default is the repo's embedded broker."
    )
    dask_scheduler: str | None = Field(
        default=None, description="Address of a Dask scheduler; default is a local cluster."
    )
    workers: int = Field(default=0, ge=0, description="Local worker processes; 0 means one per core.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO")
    log_format: Literal["console", "json"] = Field(default="console")
    tap: TapSettings = Field(default_factory=TapSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    hub: dict[str, Any] = Field(
        default_factory=dict,
        description="The [hub] section (authenticator, spawner, OAuth); validated by pachon.hub.settings, "
        "which only `pachon up` loads, so no service ever reads the hub's secrets.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("state_db_url", "catalog_url", "butler_registry_url")
    @classmethod
    def _looks_like_url(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError(
                "expected an SQLAlchemy URL such as sqlite:///path, duckdb:///path or postgresql://…"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # Derived locations -------------------------------------------------------------
    @property
    def state_url(self) -> str:
        """The state database URL, defaulting to SQLite inside the repo."""
        return self.state_db_url or f"sqlite:///{(self.repo / 'state' / 'pachon.sqlite3').resolve()}"

    @property
    def catalog_dir(self) -> Path:
        """Folder of the embedded catalog's DuckDB files (one per release)."""
        return self.repo / "catalog"


def config_file() -> Path | None:
    """The TOML file settings are read from: ``$PACHON_CONFIG``, else ``./pachon.toml`` if present."""
    explicit = os.environ.get("PACHON_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SettingsError(f"invalid setting PACHON_CONFIG = {explicit!r}: no such file")
        return path
    default = Path("pachon.toml")
    return default if default.is_file() else None


def _origin(loc: tuple[Any, ...]) -> str:
    env = ENV_PREFIX + "__".join(str(part).upper() for part in loc)
    if env in os.environ:
        return f"from {env}"
    path = os.environ.get("PACHON_CONFIG") or ("pachon.toml" if Path("pachon.toml").is_file() else None)
    return f"from {path}" if path else "from arguments"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; raise :class:`SettingsError` with one clear line if invalid."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err.get("loc", ()))
        name = ".".join(str(part) for part in loc) or "?"
        value = err.get("input")
        if err.get("type") == "extra_forbidden":
            allowed = ", ".join(sorted(Settings.model_fields))
            raise SettingsError(
                f"unknown setting {name} ({_origin(loc)}); known settings are: {allowed}"
            ) from None
        msg = err.get("msg", "invalid value")
        raise SettingsError(f"invalid setting {name} = {value!r} ({_origin(loc)}): {msg}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (tests call ``get_settings.cache_clear()``)."""
    return load_settings()
