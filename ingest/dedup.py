"""Deduplication: an exact window per source, a long-term Bloom filter, and the ledger as judge.

1. **Window** (exact): ``SET NX EX`` of the event's dedup key for the source's window (24 h default).
   For a source whose signature dates nothing (GitHub, Shopify, Jira, generic without a timestamp
   header), a second key holds the sha256 of the raw body for the same window: a captured body
   replayed under a fresh delivery id is a duplicate too. Both keys are checked, then both set.
2. **Bloom** (long-term): one Redis bitmap per partition and generation; generations rotate every
   ``generation_s`` and the newest ``generations`` are consulted, so memory stays bounded and the
   filter persists with Redis. A Bloom hit only means "maybe seen".
3. **Ledger**: a Bloom hit is confirmed against PostgreSQL's ledger (written by group ``audit``)
   before the event is called a duplicate; if the ledger does not have it, it was a false positive
   and the event is queued after all (``force``).

Window and body checks, Bloom check, Bloom insert, XADD and the accepted counter are one Lua
script over keys that share the partition's hash tag, so no event is ever marked seen without being
queued.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from enum import Enum

import redis.asyncio as aioredis

from ingest.metrics import BLOOM_FILL, BLOOM_FPR
from memory import keys

# KEYS: window, stream, accepted counter, [body], bloom generation keys (newest first)
# ARGV: window ttl, envelope, bloom ttl, mode ("check" | "force"), "1" if KEYS[4] is the body key
#       else "0", bit positions...
# Returns {0} window duplicate, {3} body duplicate (a replay), {1} Bloom says maybe seen (nothing
# written), {2, entry id} queued.
DEDUP_XADD = """
local body = ARGV[5] == '1'
local bloom = body and 5 or 4
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
if body and redis.call('EXISTS', KEYS[4]) == 1 then return {3} end
if ARGV[4] == 'check' then
  for g = bloom, #KEYS do
    local all = true
    for i = 6, #ARGV do
      if redis.call('GETBIT', KEYS[g], ARGV[i]) == 0 then all = false break end
    end
    if all then return {1} end
  end
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
if body then redis.call('SET', KEYS[4], '1', 'EX', ARGV[1]) end
if #KEYS >= bloom then
  for i = 6, #ARGV do redis.call('SETBIT', KEYS[bloom], ARGV[i], 1) end
  if redis.call('TTL', KEYS[bloom]) < 0 then redis.call('EXPIRE', KEYS[bloom], ARGV[3]) end
end
redis.call('INCR', KEYS[3])
return {2, redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])}
"""


class Outcome(Enum):
    QUEUED = "queued"
    DUPLICATE_WINDOW = "window"
    DUPLICATE_BODY = "body"  # a byte-identical body within the window, under another delivery id
    MAYBE_SEEN = "bloom"


@dataclass(frozen=True, slots=True)
class BloomConfig:
    capacity: int = 250_000  # events per partition and generation at the target error rate
    error_rate: float = 0.001
    generation_s: int = 7 * 86400
    generations: int = 4

    @property
    def bits(self) -> int:
        return math.ceil(-self.capacity * math.log(self.error_rate) / math.log(2) ** 2)

    @property
    def hashes(self) -> int:
        return max(1, round(self.bits / self.capacity * math.log(2)))

    def generation(self, now_s: float) -> int:
        return int(now_s // self.generation_s)

    def keys(self, partition: int, now_s: float) -> list[str]:
        """The generations to consult, newest (the one to write) first."""
        newest = self.generation(now_s)
        return [keys.bloom(partition, newest - age) for age in range(self.generations)]

    def positions(self, tenant: str, source: str, dedup_key: str) -> list[int]:
        """k bit positions by double hashing one SHA-256 of the event's identity."""
        digest = hashlib.sha256(f"{tenant}\x00{source}\x00{dedup_key}".encode()).digest()
        h1 = int.from_bytes(digest[:8], "big")
        h2 = int.from_bytes(digest[8:16], "big") | 1
        m = self.bits
        return [(h1 + i * h2) % m for i in range(self.hashes)]

    def estimated_false_positive_rate(self, fill: float) -> float:
        """Probability that k random bits are all set, for a bitmap with this fraction set."""
        return fill**self.hashes


async def refresh_bloom_gauges(redis: aioredis.Redis, bloom: BloomConfig, partitions: int) -> None:
    """Bloom fill and estimated false-positive rate of each partition's newest generation."""
    now = time.time()
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for partition in range(partitions):
                pipe.bitcount(bloom.keys(partition, now)[0])
            counts = await pipe.execute()
    except aioredis.RedisError:
        return  # metrics are best effort; /readyz reports Redis
    for partition, count in enumerate(counts):
        fill = int(count) / bloom.bits
        BLOOM_FILL.labels(partition=str(partition)).set(fill)
        BLOOM_FPR.labels(partition=str(partition)).set(bloom.estimated_false_positive_rate(fill))
