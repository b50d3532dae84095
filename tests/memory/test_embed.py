"""Embedders: the real local model, a real OpenAI-compatible HTTP server, the cache on real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import anyio
import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from memory import embed, keys
from memory.embed import (
    DisabledEmbedder,
    Embedder,
    HttpEmbedder,
    LocalEmbedder,
    make_embedder,
)
from memory.embed_cache import CachedEmbedder
from memory.errors import ConfigError, StoreUnavailable
from memory.runtime import Runtime
from tests.helpers import free_port


@pytest.fixture(scope="session")
def local() -> LocalEmbedder:
    """One model for the session, in small batches so that a few texts span several of them."""
    return LocalEmbedder(batch_size=4)


def _cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))  # the vectors are unit length


# -- the local model -------------------------------------------------------------------------------


async def test_vectors_have_384_unit_dimensions(local: LocalEmbedder) -> None:
    vectors = await local.embed(["PR merged into main", ""])
    assert local.dim == 384
    assert [len(v) for v in vectors] == [384, 384]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_related_sentences_are_closer_than_unrelated(local: LocalEmbedder) -> None:
    merged, pull_request, invoice = await local.embed(
        ["PR merged into main", "pull request was merged", "invoice payment failed"]
    )
    related, unrelated = _cosine(merged, pull_request), _cosine(merged, invoice)
    assert related == pytest.approx(0.46, abs=0.05)
    assert unrelated == pytest.approx(0.04, abs=0.05)
    assert related - unrelated > 0.3


async def test_batches_give_the_vectors_of_one_text_at_a_time(local: LocalEmbedder) -> None:
    texts = [
        "CI failed on main",
        "alice opened pull request #42: Fix the flaky retry test in the ingest worker",
        "ok",
        "Release v1.4.0 published with notes: bump dependencies, fix a memory leak in the consumer",
        "issue closed",
        "bob pushed 3 commits to feature/streams",
        "Deployment to production succeeded",
        "PR merged into main",
        "PR merged into main",  # a duplicate lands in the same batch as itself
        "a much longer comment: I can reproduce this on Python 3.11 when Redis restarts without "
        "persistence and the consumer group vanishes, after which the worker loops on NOGROUP",
    ]
    batched = await local.embed(texts)
    one_by_one = [(await local.embed([text]))[0] for text in texts]
    assert np.allclose(batched, one_by_one, atol=1e-5)


async def test_concurrent_callers_get_their_own_vectors(local: LocalEmbedder) -> None:
    texts = [["first text"], ["second text", "third"], ["fourth one here"]]
    expected = [await local.embed(batch) for batch in texts]
    results: dict[int, list[list[float]]] = {}

    async def run(i: int) -> None:
        results[i] = await local.embed(texts[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(texts)):
            tg.start_soon(run, i)
    for i, vectors in enumerate(expected):
        assert np.allclose(results[i], vectors, atol=1e-5)


async def test_background_batches_give_the_same_vectors_on_a_thread_that_gives_way(
    local: LocalEmbedder,
) -> None:
    texts = ["deploy to production failed", "invoice paid", "PR merged into main"]
    background = await local.embed(texts, background=True)
    assert np.allclose(background, await local.embed(texts), atol=1e-5)

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(local._background, niceness) == embed.BACKGROUND_NICE
    assert (
        await anyio.to_thread.run_sync(niceness) < embed.BACKGROUND_NICE
    )  # foreground threads: as they were


async def test_empty_input_gives_no_vectors(local: LocalEmbedder) -> None:
    assert await local.embed([]) == []


async def test_long_text_is_cut_at_256_tokens(local: LocalEmbedder) -> None:
    long = " ".join(f"word{i % 50}" for i in range(3000))
    truncated, longer = await local.embed([long, long + " and a tail that the model never sees"])
    assert np.linalg.norm(truncated) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(truncated, longer, atol=1e-6)


# -- the cache on real Redis -----------------------------------------------------------------------


CTX_A, CTX_B, CTX_C = (f"ctx_{n:020x}" for n in (0xA, 0xB, 0xC))


class Counting:
    """Delegates to a real embedder and records what reached it."""

    def __init__(self, inner: Embedder) -> None:
        self.dim = inner.dim
        self.name = inner.name
        self.inner = inner
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str], *, background: bool = False) -> list[list[float]]:
        self.calls.append(list(texts))
        return await self.inner.embed(texts, background=background)

    async def aclose(self) -> None:
        self.calls.append(["<closed>"])


async def test_the_cache_answers_the_second_call(rt: Runtime, local: LocalEmbedder) -> None:
    counting = Counting(local)
    cached = CachedEmbedder(counting, rt.redis, ttl_s=3600)
    items = [("acme", CTX_A, "PR merged into main"), ("acme", CTX_B, "invoice payment failed")]
    texts = [text for _, _, text in items]

    first = await cached.embed_contexts(items)
    second = await cached.embed_contexts(items)

    assert counting.calls == [texts]
    assert second == first
    assert np.allclose(first, await local.embed(texts), atol=1e-6)
    key = keys.embedding_context("acme", CTX_A)
    raw = await rt.redis.get(key)
    digest = hashlib.sha256(f"{local.name}\x00{texts[0]}".encode()).digest()
    assert isinstance(raw, bytes) and raw[:32] == digest and len(raw) == 32 + 4 * 384
    assert 0 < await rt.redis.ttl(key) <= 3600


async def test_only_uncached_texts_reach_the_inner_embedder(rt: Runtime, local: LocalEmbedder) -> None:
    counting = Counting(local)
    cached = CachedEmbedder(counting, rt.redis, ttl_s=60)
    await cached.embed_contexts([("acme", CTX_A, "alpha"), ("acme", CTX_B, "beta")])

    vectors = await cached.embed_contexts(
        [("acme", CTX_B, "beta"), ("acme", CTX_C, "gamma"), ("acme", CTX_A, "alpha")]
    )

    assert counting.calls == [["alpha", "beta"], ["gamma"]]
    assert np.allclose(vectors, await local.embed(["beta", "gamma", "alpha"]), atol=1e-6)
    await cached.aclose()
    assert counting.calls[-1] == ["<closed>"]


async def test_a_context_whose_text_changed_is_embedded_again(rt: Runtime, local: LocalEmbedder) -> None:
    counting = Counting(local)
    cached = CachedEmbedder(counting, rt.redis, ttl_s=60)
    await cached.embed_contexts([("acme", CTX_A, "opened")])

    (vector,) = await cached.embed_contexts([("acme", CTX_A, "opened, then merged")])

    assert counting.calls == [["opened"], ["opened, then merged"]]
    assert np.allclose(vector, (await local.embed(["opened, then merged"]))[0], atol=1e-6)


async def test_tenants_never_share_a_cached_vector(rt: Runtime, local: LocalEmbedder) -> None:
    counting = Counting(local)
    cached = CachedEmbedder(counting, rt.redis, ttl_s=60)
    await cached.embed_contexts([("acme", CTX_A, "the same text")])
    await cached.embed_query("acme", "the same query")

    await cached.embed_contexts([("globex", CTX_A, "the same text")])
    await cached.embed_query("globex", "the same query")
    await cached.embed_query("acme", "the same query")  # acme's own: a hit

    assert counting.calls == [["the same text"], ["the same query"], ["the same text"], ["the same query"]]
    names = sorted([name.decode() async for name in rt.redis.scan_iter(match="hl:*emb*")])
    query_digest = hashlib.sha256(f"{local.name}\x00the same query".encode()).hexdigest()
    assert names == sorted(
        [
            keys.embedding_context("acme", CTX_A),
            keys.embedding_context("globex", CTX_A),
            keys.embedding_query("acme", query_digest),
            keys.embedding_query("globex", query_digest),
        ]
    )


async def test_a_forgotten_context_is_not_cached(rt: Runtime, local: LocalEmbedder) -> None:
    """An embedding that was being made while ``forget`` ran must not outlive it in the cache."""
    cached = CachedEmbedder(Counting(local), rt.redis, ttl_s=60)
    await rt.redis.set(keys.context_forgotten("acme", CTX_A), 1)

    (vector,) = await cached.embed_contexts([("acme", CTX_A, "erased a moment ago")])

    assert len(vector) == 384
    assert await rt.redis.exists(keys.embedding_context("acme", CTX_A)) == 0


async def test_a_cached_vector_of_the_wrong_size_is_a_miss(rt: Runtime, local: LocalEmbedder) -> None:
    counting = Counting(local)
    cached = CachedEmbedder(counting, rt.redis, ttl_s=60)
    await rt.redis.set(keys.embedding_context("acme", CTX_A), cached.digest("stale") + b"\x00" * 16)

    (vector,) = await cached.embed_contexts([("acme", CTX_A, "stale")])

    assert counting.calls == [["stale"]]
    assert len(vector) == 384


async def test_without_a_tenant_nothing_is_cached(rt: Runtime, local: LocalEmbedder) -> None:
    cached = CachedEmbedder(Counting(local), rt.redis, ttl_s=60)

    await cached.embed(["no tenant, no cache"])

    assert [name async for name in rt.redis.scan_iter(match="hl:*emb*")] == []


# -- an OpenAI-compatible server -------------------------------------------------------------------

DIM = 8


def _fake_vector(text: str) -> list[float]:
    """Deterministic and deliberately not unit length: the embedder must normalise."""
    digest = hashlib.sha256(text.encode()).digest()
    return [float(b) + 1.0 for b in digest[:DIM]]


class FakeServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []

    async def embeddings(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append({**body, "authorization": request.headers.get("authorization")})
        data = [
            {"object": "embedding", "index": i, "embedding": _fake_vector(t)}
            for i, t in enumerate(body["input"])
        ]
        data.reverse()  # servers may answer out of order; "index" says where each belongs
        return JSONResponse({"object": "list", "data": data, "model": body["model"]})

    async def broken(self, request: Request) -> JSONResponse:
        return JSONResponse({"error": {"message": "model is loading"}}, status_code=500)

    async def wrong_size(self, request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse(
            {"data": [{"index": i, "embedding": [1.0, 0.0]} for i in range(len(body["input"]))]}
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/broken/v1/embeddings", self.broken, methods=["POST"]),
                Route("/small/v1/embeddings", self.wrong_size, methods=["POST"]),
            ]
        )


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread (with its own event loop) on a free loopback port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name=f"embeddings-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the embeddings test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeServer, str]]:
    fake = FakeServer()
    with serve(fake.app()) as url:
        yield fake, url


async def test_http_embedder_batches_orders_and_normalises(fake: tuple[FakeServer, str]) -> None:
    server, url = fake
    server.requests.clear()
    embedder = make_embedder(f"{url}/v1?model=mini&dim={DIM}&batch=2", api_key="sk-test")
    assert isinstance(embedder, HttpEmbedder)
    texts = ["one", "two", "three", "four", "five"]
    try:
        vectors = await embedder.embed(texts)
        assert await embedder.embed([]) == []
    finally:
        await embedder.aclose()

    expected = [np.array(_fake_vector(t)) / np.linalg.norm(_fake_vector(t)) for t in texts]
    assert np.allclose(vectors, expected, atol=1e-6)
    assert [r["input"] for r in server.requests] == [["one", "two"], ["three", "four"], ["five"]]
    assert {r["model"] for r in server.requests} == {"mini"}
    assert {r["authorization"] for r in server.requests} == {"Bearer sk-test"}
    assert (embedder.dim, embedder.name) == (DIM, "http:mini")


async def test_a_server_error_is_store_unavailable(fake: tuple[FakeServer, str]) -> None:
    _, url = fake
    embedder = HttpEmbedder(f"{url}/broken/v1", model="mini", dim=DIM)
    try:
        with pytest.raises(StoreUnavailable, match=r"answered 500: .*model is loading"):
            await embedder.embed(["hello"])
    finally:
        await embedder.aclose()


async def test_vectors_of_the_wrong_size_are_store_unavailable(fake: tuple[FakeServer, str]) -> None:
    _, url = fake
    embedder = HttpEmbedder(f"{url}/small/v1", model="mini", dim=DIM)
    try:
        with pytest.raises(StoreUnavailable, match="expected dim=8"):
            await embedder.embed(["hello"])
    finally:
        await embedder.aclose()


async def test_an_unreachable_server_is_store_unavailable() -> None:
    embedder = HttpEmbedder(f"http://127.0.0.1:{free_port()}/v1", model="mini", dim=DIM)
    try:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await embedder.embed(["hello"])
    finally:
        await embedder.aclose()


# -- the spec --------------------------------------------------------------------------------------


async def test_spec_local_and_none() -> None:
    assert isinstance(make_embedder("local"), LocalEmbedder)
    disabled = make_embedder("none")
    assert isinstance(disabled, DisabledEmbedder)
    with pytest.raises(ConfigError, match="turned off"):
        await disabled.embed(["anything"])


async def test_spec_model_and_dim_may_come_from_arguments() -> None:
    embedder = make_embedder("https://api.example.test/v1", model="text-embedding-3-small", dim=1536)
    try:
        assert (embedder.name, embedder.dim) == ("http:text-embedding-3-small", 1536)
    finally:
        await embedder.aclose()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("onnx", "must be 'local', 'none' or an http"),
        ("http://127.0.0.1:11434/v1?dim=384", "names no model"),
        ("http://127.0.0.1:11434/v1?model=all-minilm", "needs a positive dim"),
        ("http://127.0.0.1:11434/v1?model=all-minilm&dim=big", "must be integers"),
        ("http://127.0.0.1:11434/v1?modle=all-minilm&dim=384", "unknown parameter"),
    ],
)
def test_bad_specs_are_config_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_embedder(spec)
