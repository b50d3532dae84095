"""`hookline forget --tenant T (--id ID | --subject S)` as the real command (a subprocess), against
the machine's Redis and PostgreSQL that a runtime in the test seeded."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from memory.errors import NotFound
from memory.ids import context_id
from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event

HOOKLINE = str(Path(sys.executable).with_name("hookline"))
SUBJECT = "github:Codertocat/Hello-World#pr/2"  # the subject of the pull_request_opened fixture


async def _hookline(rt: Runtime, *args: str) -> tuple[int, str, str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")},
        "HOOKLINE_REDIS_URL": rt.settings.redis_url or "",
        "HOOKLINE_DATABASE_URL": rt.settings.database_url or "",
        "HOOKLINE_DATA_DIR": str(rt.settings.data_dir),
        "HOOKLINE_PARTITIONS": str(rt.settings.partitions),
        "HOOKLINE_EMBEDDER": "none",
        "HOOKLINE_LOG_LEVEL": "warning",
    }
    with anyio.fail_after(120):
        done = await anyio.run_process([HOOKLINE, *args], env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _pull_request(title: str) -> dict[str, Any]:
    payload = copy.deepcopy(load_fixture("pull_request_opened"))
    payload["pull_request"]["title"] = title
    return payload


async def test_forget_by_subject_then_by_id(machine_rt: Runtime, tenant: str) -> None:
    rt, service, other = machine_rt, MemoryService(machine_rt), f"o{tenant}"
    await service.apply_events(
        [
            make_event(tenant, "pull_request", _pull_request("Mine"), "gh:1"),
            make_event(tenant, "issues", load_fixture("issues_opened"), "gh:2"),
            make_event(other, "pull_request", _pull_request("Theirs"), "gh:1"),
        ]
    )

    code, out, err = await _hookline(rt, "forget", "--tenant", tenant, "--subject", SUBJECT)

    assert code == 0, err
    report = orjson.loads(out)
    assert report["context_id"] == context_id(tenant, SUBJECT) and report["found"] is True
    assert report["deleted"]["events"] == 1 and report["deleted"]["contexts"] == 1
    assert report["deleted"]["redis_keys"] >= 2
    with pytest.raises(NotFound):
        await service.get_context(tenant, context_id(tenant, SUBJECT))
    theirs = await service.get_context(other, context_id(other, SUBJECT))  # same subject, other tenant
    assert theirs.head.title.endswith("Theirs")

    code, out, err = await _hookline(rt, "forget", "--tenant", tenant, "--subject", SUBJECT)
    assert code == 1 and "nothing was deleted" in err and orjson.loads(out)["found"] is False

    issue = (await service.recent_events(tenant, limit=1))[0].context_id
    code, out, err = await _hookline(rt, "forget", "--tenant", tenant, "--id", issue)
    assert code == 0, err
    assert orjson.loads(out)["deleted"]["events"] == 1
    assert await service.recent_events(tenant, limit=5) == []


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--tenant", "acme:prod", "--id", "ctx_00000000000000000000"], "a tenant name is"),
        (["--tenant", "acme", "--id", "prod:ctx_00000000000000000000"], "a context id is"),
        (["--tenant", "acme", "--id", "ctx_" + "0" * 20 + "{x}"], "a context id is"),
        (["--tenant", "acme", "--subject", "x" * 1001], "a subject is"),
        (["--tenant", "acme", "--id", "ctx_00000000000000000000", "--subject", "s"], "not allowed with"),
        (["--tenant", "acme"], "one of the arguments --id --subject is required"),
        (["--id", "ctx_00000000000000000000"], "--tenant"),
    ],
)
async def test_a_bad_identifier_is_a_usage_error_and_writes_nothing(
    machine_rt: Runtime, args: list[str], reason: str
) -> None:
    before = await machine_rt.redis.dbsize()

    code, out, err = await _hookline(machine_rt, "forget", *args)

    assert code == 2 and reason in err and out == ""
    assert await machine_rt.redis.dbsize() == before
