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
    ],
)
def test_malformed_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(env)


def test_auth_off_is_refused_off_loopback() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        load_settings({"HOOKLINE_AUTH": "none", "HOOKLINE_HOST": "0.0.0.0"})
    assert not load_settings({"HOOKLINE_AUTH": "none", "HOOKLINE_HOST": "::1"}).auth_enabled
