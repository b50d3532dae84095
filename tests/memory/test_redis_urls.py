"""HOOKLINE_REDIS_URL's forms, read into connection options; every mistake is a ConfigError at start.
(The real servers behind each form are in tests/e2e/test_redis_tls.py, test_sentinel.py and
test_cluster.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from memory.errors import ConfigError
from memory.redis_urls import parse_redis_url, redact


@pytest.fixture
def pem(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("not parsed here: redis-py loads it when it connects")
    return str(path)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/3", "unix:///run/redis.sock?db=2", "redis://:pw@h:1/0"]
)
def test_plain_urls_go_to_redis_py_as_they_are(url: str) -> None:
    target = parse_redis_url(url)
    assert (target.topology, target.tls, target.url, dict(target.ssl_options)) == ("single", False, url, {})


def test_tls_options_are_checked_typed_and_taken_out_of_the_url(pem: str) -> None:
    url = f"rediss://:pw@h:6380/1?ssl_ca_certs={pem}&ssl_cert_reqs=optional&ssl_check_hostname=false"
    target = parse_redis_url(url)
    assert target.topology == "single" and target.tls and target.url == "rediss://:pw@h:6380/1"
    assert target.ssl_options == {
        "ssl_ca_certs": pem,
        "ssl_cert_reqs": "optional",
        "ssl_check_hostname": False,
    }


def test_a_tls_cluster_with_a_password(pem: str) -> None:
    target = parse_redis_url(f"rediss+cluster://:s3cret@10.0.0.1:7000?ssl_ca_certs={pem}")
    assert (target.topology, target.tls, target.url) == ("cluster", True, "rediss://:s3cret@10.0.0.1:7000")
    assert parse_redis_url("redis+cluster://10.0.0.1:7000").url == "redis://10.0.0.1:7000"


def test_sentinel_passwords_hosts_and_service(pem: str) -> None:
    url = (
        "rediss+sentinel://app:p%40ss%2Fword@s1:26380,s2,[::1]:26381/orders"
        f"?sentinel_password=sp%26w&db=2&ssl_ca_certs={pem}&ssl_cert_reqs=required"
    )
    target = parse_redis_url(url)
    assert target.topology == "sentinel" and target.tls
    assert target.sentinels == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (target.service, target.db, target.username) == ("orders", 2, "app")
    assert (target.password, target.sentinel_password) == ("p@ss/word", "sp&w")
    assert target.ssl_options == {"ssl_ca_certs": pem, "ssl_cert_reqs": "required"}


def test_a_sentinel_url_without_passwords_keeps_its_old_meaning() -> None:
    target = parse_redis_url("redis+sentinel://127.0.0.1:26379,127.0.0.2:26379?service=hookline")
    assert not target.tls and target.service == "hookline"
    assert (target.password, target.sentinel_password, target.username) == (None, None, None)
    assert parse_redis_url("redis+sentinel://h:1").service == "mymaster"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("memcached://h:1", "unsupported Redis URL scheme"),
        ("redis://h:1?ssl_cert_reqs=none", "need a TLS scheme"),
        ("redis+sentinel://h:1/s?ssl_ca_certs={pem}", "need a TLS scheme"),
        ("rediss://h:1?ssl_ca_certs=/nonexistent/ca.pem", "names no readable file"),
        ("rediss://h:1?ssl_cert_reqs=sometimes", "none|optional|required"),
        ("rediss://h:1?ssl_check_hostname=maybe", "true or false"),
        ("rediss://h:1?ssl_keyfile={pem}", "needs ssl_certfile"),
        ("rediss://h:1?ssl_cert_reqs=none&ssl_cert_reqs=required", "twice"),
        ("redis+sentinel://h:port/s", "not a sentinel's host:port"),
        ("redis+sentinel://h:1,/s", "not a sentinel's host:port"),
        ("redis+sentinel://h:1/s?password=x", "not password"),
        ("redis+sentinel://h:1/s?db=two", "db is a number"),
    ],
)
def test_a_url_that_cannot_work_is_a_config_error(url: str, reason: str, pem: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_redis_url(url.format(pem=pem))


def test_redact_masks_every_password_and_keeps_the_rest() -> None:
    url = "rediss+sentinel://app:pw1@s1:1,s2:2/svc?sentinel_password=pw2&ssl_cert_reqs=none"
    shown = redact(url)
    assert "pw1" not in shown and "pw2" not in shown
    assert shown == "rediss+sentinel://app:***@s1:1,s2:2/svc?sentinel_password=***&ssl_cert_reqs=none"
    assert redact("postgresql://u:secret@db:5432/h") == "postgresql://u:***@db:5432/h"
    assert redact("unix:///run/redis.sock?db=2") == "unix:///run/redis.sock?db=2"
