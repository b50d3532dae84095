from __future__ import annotations

from pathlib import Path

import pytest

from memory.errors import ConfigError
from memory.settings import load_settings


def test_defaults_use_embedded_stores_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({"HOOKLINE_DATA_DIR": str(tmp_path)})
    assert settings.redis_url is None and settings.database_url is None
    assert settings.blob_url == (tmp_path / "blobs").resolve().as_uri()
    assert (settings.host, settings.port, settings.auth) == ("127.0.0.1", 8765, "token")


def test_durations_accept_units() -> None:
    settings = load_settings(
        {"HOOKLINE_HOT_TTL": "90m", "HOOKLINE_WARM_TTL": "2d", "HOOKLINE_DEDUP_WINDOW": "45"}
    )
    assert (settings.hot_ttl_s, settings.warm_ttl_s, settings.dedup_window_s) == (5400, 172800, 45)


@pytest.mark.parametrize(
    "env",
    [
        {"HOOKLINE_PORT": "eighty"},
        {"HOOKLINE_PORT": "-1"},
        {"HOOKLINE_HOT_TTL": "soon"},
        {"HOOKLINE_HOT_TTL": "0"},
        {"HOOKLINE_AUTH": "maybe"},
        {"HOOKLINE_BLOB_URL": "ftp://x"},
        {"HOOKLINE_HALF_LIVES": "github:workflow_run"},
        {"HOOKLINE_HALF_LIVES": "github:workflow_run=soon"},
        {"HOOKLINE_HALF_LIVES": "stripe=0"},
        {"HOOKLINE_HALF_LIVES": "stripe=-3"},
        {"HOOKLINE_HALF_LIVES": "stripe=nan"},
        {"HOOKLINE_HALF_LIVES": "=6"},
        {"HOOKLINE_HALF_LIVES": "git hub=6"},
        {"HOOKLINE_HALF_LIVES": "stripe=6,stripe=7"},
    ],
)
def test_malformed_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(env)


def test_auth_off_is_refused_off_loopback() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        load_settings({"HOOKLINE_AUTH": "none", "HOOKLINE_HOST": "0.0.0.0"})
    assert not load_settings({"HOOKLINE_AUTH": "none", "HOOKLINE_HOST": "::1"}).auth_enabled


def test_half_lives_are_provider_and_event_type_pairs_in_hours_or_days() -> None:
    settings = load_settings({"HOOKLINE_HALF_LIVES": " github:workflow_run=6, Stripe=14d,slack=1.5h,"})
    assert settings.half_lives == (("github:workflow_run", 6.0), ("stripe", 336.0), ("slack", 1.5))
    assert load_settings({}).half_lives == ()


def test_a_bad_half_life_names_the_setting_and_the_entry() -> None:
    with pytest.raises(ConfigError, match=r"HOOKLINE_HALF_LIVES.*'stripe'.*'soon'"):
        load_settings({"HOOKLINE_HALF_LIVES": "stripe=soon"})
