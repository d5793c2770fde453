"""Settings: defaults, precedence (arguments > environment > pachon.toml) and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pachon.core.settings import Settings, SettingsError, load_settings


def test_defaults(isolated_settings: Path) -> None:
    settings = load_settings()
    assert settings.repo == Path("repo")
    assert settings.state_url.endswith("repo/state/pachon.sqlite3")
    assert settings.tap.maxrec_default <= settings.tap.maxrec_hard


def test_toml_then_environment_then_arguments(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated_settings / "pachon.toml").write_text('repo = "from_toml"\n[tap]\nmaxrec_default = 10\n')
    assert load_settings().repo == Path("from_toml")
    assert load_settings().tap.maxrec_default == 10
    monkeypatch.setenv("PACHON_REPO", "from_env")
    monkeypatch.setenv("PACHON_TAP__MAXREC_DEFAULT", "20")
    assert load_settings().repo == Path("from_env")
    assert load_settings().tap.maxrec_default == 20
    assert load_settings(repo="from_args").repo == Path("from_args")


def test_invalid_value_names_setting_value_and_rule(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACHON_LOG_LEVEL", "loud")
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert "\n" not in message
    assert "log_level" in message and "LOUD" in message and "'DEBUG'" in message
    assert "PACHON_LOG_LEVEL" in message


def test_invalid_value_in_toml_names_the_file(isolated_settings: Path) -> None:
    (isolated_settings / "pachon.toml").write_text("[tap]\nupload_max_bytes = 0\n")
    with pytest.raises(SettingsError, match=r"tap.upload_max_bytes = 0 \(from pachon.toml\).*greater than 0"):
        load_settings()


def test_unknown_setting_is_refused(isolated_settings: Path) -> None:
    (isolated_settings / "pachon.toml").write_text('colour = "blue"\n')
    with pytest.raises(SettingsError, match="unknown setting colour"):
        load_settings()


def test_bad_database_url(isolated_settings: Path) -> None:
    with pytest.raises(SettingsError, match="state_db_url.*SQLAlchemy URL"):
        load_settings(state_db_url="/just/a/path")


def test_missing_config_file(isolated_settings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHON_CONFIG", str(isolated_settings / "absent.toml"))
    with pytest.raises(SettingsError, match="PACHON_CONFIG.*no such file"):
        load_settings()


def test_settings_model_documents_every_field() -> None:
    for name, field in Settings.model_fields.items():
        if name in ("log_level", "log_format", "tap", "alerts"):
            continue
        assert field.description, f"setting {name} has no description"


def test_hub_section_is_accepted_and_validated_by_the_hub(isolated_settings: Path) -> None:
    from pachon.hub.settings import load_hub_settings

    (isolated_settings / "pachon.toml").write_text('[hub]\nspawner = "simple"\n')
    assert load_settings().hub == {"spawner": "simple"}
    assert load_hub_settings().spawner == "simple"
    (isolated_settings / "pachon.toml").write_text('[hub]\nspawner = "docker"\n')
    load_settings()  # the core passes the section through …
    with pytest.raises(SettingsError, match="hub.spawner"):  # … the hub refuses it, naming it
        load_hub_settings()
