"""`hookline token create|list|revoke` as the real command (a subprocess, as in test_cli_ops.py),
on the machine's Redis and PostgreSQL. Each test uses tenants of its own."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

HOOKLINE = str(Path(sys.executable).with_name("hookline"))


@dataclass
class Cli:
    env: dict[str, str]

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([HOOKLINE, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == code, (done.stdout, done.stderr)
        return done

    def create(self, tenant: str, name: str) -> str:
        return self.run("token", "create", "--tenant", tenant, "--name", name).stdout.strip().splitlines()[-1]

    def listing(self, tenant: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = orjson.loads(
            self.run("token", "list", "--tenant", tenant, "--json").stdout
        )
        return rows


@pytest.fixture
def cli(machine_redis_url: str, machine_database_url: str, tmp_path: Path) -> Cli:
    return Cli(
        {
            **{k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")},
            "HOOKLINE_REDIS_URL": machine_redis_url,
            "HOOKLINE_DATABASE_URL": machine_database_url,
            "HOOKLINE_DATA_DIR": str(tmp_path),
            "HOOKLINE_LOG_LEVEL": "warning",
            "COLUMNS": "200",
        }
    )


def _tenant() -> str:
    return "t_" + secrets.token_hex(4)


def test_token_list_shows_ids_and_metadata_but_never_a_token(cli: Cli) -> None:
    tenant, other = _tenant(), _tenant()
    ci, laptop = cli.create(tenant, "ci"), cli.create(tenant, "laptop")
    cli.create(other, "elsewhere")
    rows = cli.listing(tenant)
    assert [(row["tenant"], row["name"]) for row in rows] == [(tenant, "ci"), (tenant, "laptop")]
    for row in rows:
        assert set(row) == {"id", "tenant", "name", "created_at", "last_used_at", "revoked_at"}
        assert row["id"].startswith("tok_") and row["created_at"] and row["revoked_at"] is None
    table = cli.run("token", "list").stdout  # every tenant, as a table
    assert all(row["id"] in table for row in rows) and "elsewhere" in table
    for shown in (orjson.dumps(rows).decode(), table):
        assert ci not in shown and laptop not in shown and ci.removeprefix("hl_")[:12] not in shown


def test_token_revoke_by_id_by_name_and_by_token(cli: Cli) -> None:
    tenant = _tenant()
    first = cli.create(tenant, "ci")
    cli.create(tenant, "ci")
    cli.create(tenant, "laptop")
    laptop_id = next(row["id"] for row in cli.listing(tenant) if row["name"] == "laptop")
    assert cli.run("token", "revoke", "--id", laptop_id).stdout.strip() == f"revoked {laptop_id}"
    cli.run("token", "revoke", "--id", laptop_id, code=1)  # already revoked: nothing matched
    cli.run("token", "revoke", "--id", "tok_0000000000000000", code=1)
    revoked = cli.run("token", "revoke", "--name", "ci", "--tenant", tenant).stdout
    assert revoked.count("revoked tok_") == 2
    cli.run("token", "revoke", "--name", "ci", "--tenant", tenant, code=1)
    assert all(row["revoked_at"] for row in cli.listing(tenant))
    cli.run("token", "revoke", first, code=1)  # revoked already, by its name
    fresh = cli.create(tenant, "fresh")
    cli.run("token", "revoke", fresh)  # `token revoke TOKEN` still works
    cli.run("token", "revoke", fresh, code=1)
    assert all(row["revoked_at"] for row in cli.listing(tenant))


def test_token_revoke_by_name_alone_refuses_a_name_two_tenants_use(cli: Cli) -> None:
    name = "shared-" + secrets.token_hex(3)
    mine, theirs = _tenant(), _tenant()
    cli.create(mine, name)
    cli.create(theirs, name)
    refused = cli.run("token", "revoke", "--name", name, code=1)
    assert "give --tenant" in refused.stderr and mine in refused.stderr and theirs in refused.stderr
    assert not any(row["revoked_at"] for row in cli.listing(mine) + cli.listing(theirs))
    cli.run("token", "revoke", "--name", name, "--tenant", theirs)
    cli.run("token", "revoke", "--name", name)  # now only one tenant has an active token of that name
    assert all(row["revoked_at"] for row in cli.listing(mine))


@pytest.mark.parametrize(
    "args",
    [
        ("token", "revoke"),
        ("token", "revoke", "hl_x", "--id", "tok_0000000000000000"),
        ("token", "revoke", "--id", "tok_0000000000000000", "--tenant", "acme"),
    ],
)
def test_token_revoke_takes_exactly_one_selector(cli: Cli, args: tuple[str, ...]) -> None:
    stderr = cli.run(*args, code=2).stderr
    assert "exactly one of TOKEN, --id or --name" in stderr or "--tenant goes with --name" in stderr


@pytest.mark.parametrize("bad", ["acme:prod", "Acme", "a/b", "-x", "a" * 64])
def test_token_create_refuses_a_bad_tenant_with_the_reason(cli: Cli, bad: str) -> None:
    refused = cli.run("token", "create", f"--tenant={bad}", code=2)
    assert "a tenant name is 1-63 characters" in refused.stderr
    assert refused.stdout == ""
