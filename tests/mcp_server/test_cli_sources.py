"""`hookline source add|list` and `hookline tier rewrap` as an operator runs them (subprocesses):
secrets from a file or stdin and never from argv, options refused with the reason, moves between
tenants only with --force, secrets sealed with HOOKLINE_ENCRYPTION_KEYS and resealed by rewrap."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from memory.crypto import SEALED_TEXT, generate_key, text_sealed_with

HOOKLINE = str(Path(sys.executable).with_name("hookline"))
KEY_1 = generate_key("k1")
KEY_2 = generate_key("k2")


@dataclass
class Cli:
    env: dict[str, str]
    database_url: str
    tmp: Path

    def run(self, *args: str, code: int = 0, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [HOOKLINE, *args], env=self.env | env, input=stdin, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == code, (done.stdout, done.stderr)
        return done

    def secret_file(self, *lines: str) -> str:
        path = self.tmp / f"secrets-{len(list(self.tmp.iterdir()))}"
        path.write_text("".join(line + "\n" for line in lines))
        return str(path)

    def row(self, name: str) -> tuple[str, list[str], dict[str, Any]] | None:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT tenant, secrets, config FROM sources WHERE name = %s", (name,)
            ).fetchone()
        return None if row is None else (row[0], list(row[1]), dict(row[2]))


@pytest.fixture
def cli(machine_redis_url: str, machine_database_url: str, tmp_path: Path) -> Iterator[Cli]:
    with psycopg.connect(machine_database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM sources")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")},
        "HOOKLINE_REDIS_URL": machine_redis_url,
        "HOOKLINE_DATABASE_URL": machine_database_url,
        "HOOKLINE_DATA_DIR": str(tmp_path / "data"),
        "HOOKLINE_LOG_LEVEL": "warning",
        "COLUMNS": "250",  # rich's tables, unclipped
    }
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    yield Cli(env, machine_database_url, secrets)


def test_secrets_come_from_a_file_or_stdin_and_list_never_shows_them(cli: Cli) -> None:
    path = cli.secret_file("file-secret-1", "", "  file-secret-2  ")
    out = cli.run("source", "add", "gh", "--provider", "github", "--secret-file", path).stdout
    assert "POST /hooks/gh" in out and "2 secret(s)" in out
    assert cli.row("gh") == ("default", ["file-secret-1", "file-secret-2"], {})

    cli.run("source", "add", "st", "--provider", "stripe", "--secret", "-", stdin="whsec_from_stdin\n")
    assert cli.row("st") == ("default", ["whsec_from_stdin"], {})
    both = cli.secret_file("rotated-new")
    cli.run(
        "source", "add", "st", "--provider", "stripe", "--secret-file", both, "--secret", "-", stdin="old\n"
    )
    assert cli.row("st") == ("default", ["rotated-new", "old"], {})

    listed = orjson.loads(cli.run("source", "list", "--json").stdout)
    assert [(s["name"], s["secrets"], s["sealed"], s["problem"]) for s in listed] == [
        ("gh", 2, 0, None),
        ("st", 2, 0, None),
    ]
    table = cli.run("source", "list").stdout
    for shown in (orjson.dumps(listed).decode(), table):
        assert "secret-1" not in shown and "rotated-new" not in shown and "whsec_" not in shown
    assert "gh" in table and "stripe" in table


def test_a_secret_on_the_command_line_is_refused_and_nothing_is_stored(cli: Cli) -> None:
    refused = cli.run("source", "add", "gh", "--provider", "github", "--secret", "hunter2", code=1)
    assert "--secret-file PATH" in refused.stderr and "--secret -" in refused.stderr
    assert "hunter2" not in refused.stderr + refused.stdout
    assert cli.row("gh") is None
    none_given = cli.run("source", "add", "gh", "--provider", "github", code=1)
    assert "--secret-file PATH" in none_given.stderr
    empty = cli.run("source", "add", "gh", "--provider", "github", "--secret", "-", stdin="\n\n", code=1)
    assert "no secret" in empty.stderr
    missing = cli.run("source", "add", "gh", "--provider", "github", "--secret-file", "/nonexistent", code=1)
    assert "cannot read secrets" in missing.stderr
    assert cli.row("gh") is None


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ("dedup_window=soon", "dedup_window='soon': expected seconds or a duration"),
        ("dedup_window=0", "between 1 s"),
        ("nope=1", "unknown option 'nope'"),
        ("header=X-Sig", "only to the generic provider"),
        ("priority=2", "from 0 to 1"),
        ("pii_mask=passwords", "unknown PII kinds"),
        ("rate_limit", "KEY=VALUE"),
    ],
)
def test_a_bad_option_exits_non_zero_with_the_reason(cli: Cli, option: str, reason: str) -> None:
    path = cli.secret_file("s3cret")
    done = cli.run(
        "source", "add", "gh", "--provider", "github", "--secret-file", path, "--option", option, code=1
    )
    assert reason in done.stderr
    assert cli.row("gh") is None


def test_options_in_human_form_are_stored_in_seconds(cli: Cli) -> None:
    path = cli.secret_file("s3cret")
    cli.run(
        "source", "add", "gen", "--provider", "generic", "--secret-file", path,
        "--option", "dedup_window=24h", "--option", "retry_cap_s=15m", "--option", "header=X-Sig",
    )  # fmt: skip
    assert cli.row("gen") == (
        "default",
        ["s3cret"],
        {"dedup_window": 86400, "retry_cap_s": 900.0, "header": "x-sig"},
    )
    listed = orjson.loads(cli.run("source", "list", "--json").stdout)
    assert listed[0]["options"] == {"dedup_window": 86400, "retry_cap_s": 900.0, "header": "x-sig"}


def test_moving_a_source_to_another_tenant_needs_force(cli: Cli) -> None:
    path = cli.secret_file("s3cret")
    add = ("source", "add", "gh", "--provider", "github", "--secret-file", path)
    cli.run(*add, "--tenant", "acme")
    cli.run(*add, "--tenant", "acme", "--option", "priority=0.9")  # the same tenant: an update
    assert cli.row("gh") == ("acme", ["s3cret"], {"priority": 0.9})
    refused = cli.run(*add, "--tenant", "intruder", code=1)
    assert "belongs to tenant 'acme'" in refused.stderr and "--force" in refused.stderr
    assert cli.row("gh") == ("acme", ["s3cret"], {"priority": 0.9})
    cli.run(*add, "--tenant", "intruder", "--force")
    assert cli.row("gh") == ("intruder", ["s3cret"], {})


def test_secrets_are_sealed_with_the_keys_and_rewrap_reseals_them(cli: Cli) -> None:
    cli.run("source", "add", "plain", "--provider", "github", "--secret", "-", stdin="plain-secret\n")
    cli.run(
        "source", "add", "sealed", "--provider", "github", "--secret", "-", stdin="sealed-secret\n",
        HOOKLINE_ENCRYPTION_KEYS=KEY_1,
    )  # fmt: skip
    row = cli.row("sealed")
    assert row is not None and row[1][0].startswith(SEALED_TEXT) and "sealed-secret" not in row[1][0]
    listed = orjson.loads(cli.run("source", "list", "--json").stdout)  # no keys here: sealed is a problem
    assert [(s["name"], s["sealed"], bool(s["problem"])) for s in listed] == [
        ("plain", 0, False),
        ("sealed", 1, True),
    ]

    done = cli.run("tier", "rewrap", HOOKLINE_ENCRYPTION_KEYS=f"{KEY_2},{KEY_1}")
    report = orjson.loads(done.stdout)
    assert (report["sources"], report["sources_resealed"], report["key"]) == (2, 2, "k2")
    for name in ("plain", "sealed"):
        row = cli.row(name)
        assert row is not None and [text_sealed_with(s) for s in row[1]] == ["k2"]
    listed = orjson.loads(cli.run("source", "list", "--json", HOOKLINE_ENCRYPTION_KEYS=KEY_2).stdout)
    assert [s["problem"] for s in listed] == [None, None]

    failed = cli.run("tier", "rewrap", code=1, HOOKLINE_ENCRYPTION_KEYS=KEY_1)  # k2 is unknown here
    assert "secrets not resealed: plain" in failed.stderr and "secrets not resealed: sealed" in failed.stderr
    assert "not set" in cli.run("tier", "rewrap", code=2).stderr
