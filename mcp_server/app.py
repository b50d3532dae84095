"""The Starlette app and its one lifespan: the composition root of ``hookline serve``.

Routes: POST /hooks/{source}, /mcp (streamable HTTP MCP), GET /healthz, /readyz, /metrics.
The lifespan opens the runtime, then runs the stream producer and the workers as named tasks in one
TaskGroup; on shutdown the workers finish and acknowledge their batch before connections close.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial

import anyio
import psycopg
import redis.asyncio as aioredis
import structlog
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ingest import consumers, envelope, pii
from ingest.accept import Acceptor, Redactor
from ingest.dedup import refresh_bloom_gauges
from ingest.intake import Intake, error
from ingest.maintenance import run_maintenance, watch_pressure
from ingest.retry import RetryPolicies, RetryPolicy
from ingest.stream import all_streams, producer_for
from ingest.worker import Worker, WorkerConfig, audit_handler, context_handler, index_handler
from mcp_server.auth import Authenticator, BearerAuth, FailureLimit
from mcp_server.hosts import HostGuard, host_policy
from mcp_server.server import build_mcp
from mcp_server.sessions import SessionGate, Sessions, http_session_manager
from mcp_server.subscriptions import UpdateHub
from mcp_server.websocket import McpWebSocket
from memory import keys
from memory.errors import StoreUnavailable
from memory.failures import OUTAGES, unit_failed
from memory.forget import forget
from memory.keys import AUDIT_GROUP, CONTEXT_GROUP, INDEX_GROUP
from memory.ledger import Ledger
from memory.lifecycle import Lifecycle
from memory.reads import ReadLog
from memory.runtime import Runtime, open_runtime
from memory.service import MemoryService
from memory.settings import Settings
from memory.sources import SourceStore
from memory.tokens import TokenStore
from memory.vectors import VectorRefresher

log = structlog.get_logger(__name__)

ROLES = ("api", "intake", "mcp", "worker", "lifecycle")
# ``api`` is both halves: webhook intake (POST /hooks) and serving MCP (/mcp, /ws). Apart, a burst of
# deliveries cannot queue in front of an agent's read, and each half scales and is exposed on its own.
API_PARTS = ("intake", "mcp")


def expand_roles(roles: Sequence[str]) -> set[str]:
    found = set(roles)
    return found - {"api"} | set(API_PARTS) if "api" in found else found


LIFECYCLE_EVERY_S = 60.0
SHUTDOWN_DEADLINE_S = 10.0


@dataclass
class AppState:
    """Filled in by the lifespan; the routes read it."""

    runtime: Runtime | None = None
    intake: Intake | None = None
    mcp_http: ASGIApp | None = None
    mcp_ws: ASGIApp | None = None
    workers: list[Worker] = field(default_factory=list)


class _McpEndpoint:
    """Routes /mcp to the session manager, which exists only once the lifespan has run."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.state.mcp_http is None:
            await JSONResponse({"error": "starting", "detail": "server is starting"}, 503)(
                scope, receive, send
            )
            return
        await self.state.mcp_http(scope, receive, send)


class _HooksEndpoint:
    """The webhook route as a plain ASGI app: the intake's hot path skips Starlette's
    request/response wrapper (it builds its own Request and answers with its own Response)."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        intake = self.state.intake
        if intake is None:
            response: Response = error(503, "starting", "server is starting", {"Retry-After": "1"})
        else:
            response = await intake(Request(scope, receive))
        await response(scope, receive, send)


class _McpWebSocketEndpoint:
    """Routes /ws to the WebSocket transport, which exists only once the lifespan has run."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.state.mcp_ws is None:  # a denial response: the handshake gets HTTP 503
            await JSONResponse({"error": "starting", "detail": "server is starting"}, 503)(
                scope, receive, send
            )
            return
        await self.state.mcp_ws(scope, receive, send)


def create_app(
    settings: Settings,
    roles: Sequence[str] = ROLES,
    workers: int = 1,
    redact: Redactor | None = None,
    groups: Sequence[str] = keys.GROUPS,
) -> Starlette:
    """``redact``: the PII hook every event passes; by default ``HOOKLINE_PII_MASK``'s masker.
    ``groups``: the consumer groups the worker role runs here (all three by default; e.g. ``context``
    in one process and ``index,audit`` in another, so that embedding cannot delay the hot tier)."""
    state = AppState()
    serving = expand_roles(roles)
    redact = redact or pii.redactor_for(settings)  # a bad HOOKLINE_PII_MASK fails here, at start

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(settings) as rt:
            state.runtime = rt
            service = MemoryService(rt)
            if "mcp" in serving:  # reads are answered first; elsewhere a read follows up inline
                service.reads = ReadLog(rt, service.prewarmer)
            producer = producer_for(rt)
            ledger = Ledger(rt.db)
            await ledger.register_schema(envelope.SCHEMA_VERSION, envelope.descriptor())
            acceptor = Acceptor(settings, producer, ledger, redact=redact)
            state.intake = Intake(settings, SourceStore.for_runtime(rt), acceptor)
            updates = UpdateHub(rt.redis)
            mcp = build_mcp(service, settings.tenant, acceptor=acceptor, updates=updates)
            sessions = Sessions(settings.max_sessions_per_tenant)  # /mcp and /ws, per tenant
            session_manager = http_session_manager(mcp, sessions)
            tokens = TokenStore(rt.db) if settings.auth_enabled else None
            auth = Authenticator(tokens, settings.tenant, FailureLimit(settings.auth_failures_per_minute))
            state.mcp_http = BearerAuth(SessionGate(StreamableHTTPASGIApp(session_manager), sessions), auth)
            state.mcp_ws = McpWebSocket(mcp, auth, sessions)
            if "worker" in serving:
                state.workers = await _workers(rt, service, ledger, workers, groups)
            if "worker" in serving and INDEX_GROUP in groups and rt.embedder is not None:
                service.vectors = VectorRefresher(service.refresh_embeddings)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(producer.run, name="stream-producer")
                if "mcp" in serving:  # subscribed before the first session can subscribe
                    await tasks.start(updates.run, name="update-hub")
                if "mcp" in serving and tokens is not None:
                    tasks.start_soon(sessions.watch_revocations, tokens, name="token-revocations")
                    tasks.start_soon(tokens.run_usage_writer, name="token-usage")
                reads = service.reads
                reads_done = anyio.Event()
                if reads is not None:
                    tasks.start_soon(_run_then_set, reads.run, reads_done, name="read-follow-ups")
                else:
                    reads_done.set()
                done = [anyio.Event() for _ in state.workers]
                if "worker" in serving:
                    streams = all_streams(settings.partitions)
                    tasks.start_soon(
                        run_maintenance, rt.redis, streams, settings.stream_retention_s, settings.lag_alert,
                        name="stream-maintenance",
                    )  # fmt: skip
                if "intake" in serving:
                    tasks.start_soon(
                        watch_pressure, rt.redis, all_streams(settings.partitions), settings.lag_alert,
                        state.intake.limiter, name="backlog-pressure",
                    )  # fmt: skip
                if "lifecycle" in serving:
                    lifecycle = Lifecycle(rt, forgetter=partial(forget, rt, decode=envelope.entry_event))
                    tasks.start_soon(_run_lifecycle, lifecycle, service, name="lifecycle")
                if service.vectors is not None:
                    tasks.start_soon(service.vectors.run, name="embeddings")
                for worker, finished in zip(state.workers, done, strict=True):
                    name = f"worker:{worker.config.group}:{worker.name}"
                    tasks.start_soon(_run_then_set, worker.run, finished, name=name)
                try:
                    async with session_manager.run():
                        _settle_heap()
                        log.info("serve.ready", host=settings.host, port=settings.port, roles=sorted(serving))
                        yield
                finally:
                    for worker in state.workers:
                        worker.stop()
                    if reads is not None:
                        reads.close()
                    with anyio.move_on_after(SHUTDOWN_DEADLINE_S):
                        for finished in [*done, reads_done]:
                            await finished.wait()
                    tasks.cancel_scope.cancel()
                    for worker in state.workers:
                        await consumers.release(rt.redis, worker.config.group, worker.name)
            state.runtime = state.intake = state.mcp_http = state.mcp_ws = None

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = await _readiness(state.runtime, state.workers)
        ok = all(value == "ok" for value in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        if state.runtime is not None and state.intake is not None:
            await refresh_bloom_gauges(state.runtime.redis, state.intake.acceptor.bloom, settings.partitions)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    routes.append(Route("/metrics", metrics, methods=["GET"]))
    if "intake" in serving:
        routes.append(Route("/hooks/{source}", _HooksEndpoint(state), methods=["POST"]))
    if "mcp" in serving:
        hosts = host_policy(settings)  # wraps every route a browser could be tricked into (HTML too)
        routes.append(Route("/mcp", HostGuard(_McpEndpoint(state), hosts), methods=["GET", "POST", "DELETE"]))
        routes.append(WebSocketRoute("/ws", HostGuard(_McpWebSocketEndpoint(state), hosts)))
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=ROUTING_ERRORS)


async def _no_route(request: Request, exc: Exception) -> Response:
    return error(404, "not_found", "no route for this path")


async def _wrong_method(request: Request, exc: Exception) -> Response:
    allowed = getattr(exc, "headers", None)  # Starlette's HTTPException carries the Allow header
    return error(405, "method_not_allowed", f"{request.method} is not allowed here", allowed)


# Requests no route takes still get the JSON error body every other refusal has (DESIGN invariant 6).
ROUTING_ERRORS = {404: _no_route, 405: _wrong_method}


def _settle_heap() -> None:
    """Move everything allocated at start-up out of the garbage collector's way.

    The imports (MCP SDK, pydantic, SQLAlchemy for migrations ...) leave ~170K tracked objects that
    every full collection would walk again, stalling the event loop for up to ~200 ms (measured
    with bench/ingest.py). Frozen objects are never collected; they are long-lived anyway.
    """
    gc.collect()
    gc.freeze()


async def _workers(
    rt: Runtime, service: MemoryService, ledger: Ledger, per_group: int, groups: Sequence[str]
) -> list[Worker]:
    """``per_group`` consumers for each of ``groups``, each under a stable, leased consumer name."""
    settings = rt.settings
    handlers = {
        CONTEXT_GROUP: context_handler(service),
        INDEX_GROUP: index_handler(service),
        AUDIT_GROUP: audit_handler(ledger),
    }
    base = WorkerConfig(
        batch_size=settings.batch_size, block_ms=settings.block_ms, retries=await _retry_policies(rt)
    )
    workers: list[Worker] = []
    for group, handler in handlers.items():
        if group not in groups:
            continue
        taken: set[str] = set()
        for _ in range(per_group):
            name = await consumers.acquire_name(rt.redis, group, settings.worker_id, taken)
            taken.add(name)
            workers.append(Worker(rt.redis, handler, settings.partitions, replace(base, group=group), name))
    return workers


async def _retry_policies(rt: Runtime) -> RetryPolicies:
    """Per-source retry policies from the sources' options (``retry_base_s``, ``retry_cap_s``,
    ``retry_max_attempts``); read at start, so a change applies on the next restart."""
    default = RetryPolicy()
    per_source: dict[str, RetryPolicy] = {}
    for source in await SourceStore(rt.db).list():
        options = source.options
        if options is None:  # its deliveries are refused (503) until it is fixed; its events retry as usual
            log.error("retry.bad_options", source=source.name, error=source.problem)
            continue
        base_s, cap_s, attempts = options.retry_base_s, options.retry_cap_s, options.retry_max_attempts
        if base_s is None and cap_s is None and attempts is None:
            continue
        per_source[source.name] = RetryPolicy(
            base_s=default.base_s if base_s is None else base_s,
            cap_s=default.cap_s if cap_s is None else cap_s,
            max_attempts=default.max_attempts if attempts is None else attempts,
        )
    return RetryPolicies(default=default, per_source=per_source)


async def _run_lifecycle(lifecycle: Lifecycle, service: MemoryService) -> None:
    """One pass a minute (tiers, retention, roll-ups, stale embeddings); a failed pass is logged and
    the next one tries again."""
    while True:
        try:
            await lifecycle.run_pass()
            await service.refresh_embeddings()
        except OUTAGES as exc:
            log.error("lifecycle.pass_failed", error=str(exc))
        except Exception as exc:  # the loop's boundary: each context has its own inside the pass
            unit_failed("lifecycle-pass", exc)
        await anyio.sleep(LIFECYCLE_EVERY_S)


async def _run_then_set(run: Callable[[], Awaitable[None]], finished: anyio.Event) -> None:
    try:
        await run()
    finally:
        finished.set()


async def _readiness(rt: Runtime | None, workers: Sequence[Worker] = ()) -> dict[str, str]:
    if rt is None:
        return {"runtime": "starting"}
    checks: dict[str, str] = {}
    try:
        await rt.redis.ping()
        checks["redis"] = "ok"
    except aioredis.RedisError as exc:
        checks["redis"] = f"error: {exc}"
    try:
        async with rt.db.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
        checks["postgres"] = "ok"
    except (psycopg.Error, TimeoutError) as exc:
        checks["postgres"] = f"error: {exc}"
    try:
        await rt.blobs.ping()
        checks["blobstore"] = "ok"
    except (StoreUnavailable, OSError) as exc:
        checks["blobstore"] = f"error: {exc}"
    for worker in workers:  # each consumer of this process writes a heartbeat every turn (TTL 120 s)
        name = f"consumer:{worker.config.group}:{worker.name}"
        try:
            beating = await rt.redis.exists(keys.consumer_heartbeat(worker.config.group, worker.name))
            checks[name] = "ok" if beating else "error: no heartbeat for 120 s"
        except aioredis.RedisError as exc:
            checks[name] = f"error: {exc}"
    return checks
