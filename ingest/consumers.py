"""Stable consumer names: ``<worker id>-<n>``, leased per process through a Redis key.

A process takes the lowest free slot for its group and keeps it alive with a heartbeat. A slot whose
holder died on this host (its pid is gone) is taken over at once, so a restarted worker gets its old
name back and finishes its own pending entries without waiting for XAUTOCLAIM's idle time.
"""

from __future__ import annotations

import os
import socket

import redis.asyncio as aioredis

from memory import keys

SLOT_TTL_S = 30
MAX_SLOTS = 256

# Take a slot over only if it still holds the value we judged dead (two restarts cannot both win).
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


def default_worker_id() -> str:
    return socket.gethostname()


def _holder(value: bytes | str | None) -> tuple[str, int] | None:
    if not value:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    host, _, pid = text.rpartition(":")
    return (host, int(pid)) if pid.isdigit() else None


def _dead_here(holder: tuple[str, int] | None) -> bool:
    """True when the slot's holder was a process on this host that no longer exists."""
    if holder is None or holder[0] != socket.gethostname():
        return False
    try:
        os.kill(holder[1], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def acquire_name(redis: aioredis.Redis, group: str, worker_id: str, taken: set[str]) -> str:
    """Lease the lowest free consumer name of this group (not already used in this process)."""
    me = f"{socket.gethostname()}:{os.getpid()}".encode()
    for n in range(MAX_SLOTS):
        name = f"{worker_id}-{n}"
        if name in taken:
            continue
        slot = keys.consumer_slot(group, name)
        if await redis.set(slot, me, nx=True, ex=SLOT_TTL_S):
            return name
        current = await redis.get(slot)
        takeable = current is not None and (current == me or _dead_here(_holder(current)))
        if takeable and await redis.eval(_TAKE_OVER, 1, slot, current, me, SLOT_TTL_S):  # type: ignore[arg-type]
            return name
    raise RuntimeError(f"no free consumer slot among {MAX_SLOTS} for group {group!r}")


async def renew(redis: aioredis.Redis, group: str, name: str) -> None:
    await redis.set(keys.consumer_slot(group, name), f"{socket.gethostname()}:{os.getpid()}", ex=SLOT_TTL_S)


async def release(redis: aioredis.Redis, group: str, name: str) -> None:
    await redis.delete(keys.consumer_slot(group, name))
