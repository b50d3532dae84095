"""Live updates of ``hookline://context/{id}``: a subscription hub fed by Redis pub/sub.

After each hot-tier apply the pipeline PUBLISHes the changed context's id on its tenant's channel
(``keys.context_updates``), from whichever process applied it. Each server process runs one
``UpdateHub`` reader (pattern-subscribed to every tenant's channel) and fans the ids out to the
subscribers connected to that process, so a change applied by a worker anywhere reaches them:

- **modern clients** (``subscriptions/listen``, 2026-07-28): the SDK's ``ListenHandler`` over a
  ``TenantBus``, a ``SubscriptionBus`` whose listeners hear only their own tenant's contexts;
- **legacy clients** (``resources/subscribe``, up to 2025-11-25): each connection's session is sent
  ``notifications/resources/updated`` for every URI it subscribed to.

Like the SDK's listen handler, subscribing accepts any URI; only context URIs ever fire.

A subscriber's tenant is its connection's (the credential's), so it only ever hears its own
tenant's contexts, whatever URI it asks for. Delivery is best effort, as pub/sub is: a message
published while the reader is reconnecting is lost, and clients refetch on the next one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import mcp_types as types
import redis.asyncio as aioredis
import structlog
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated, ServerEvent

from memory import keys
from memory.errors import InvalidArgument
from memory.failures import unit_failed
from memory.ids import is_context_id

log = structlog.get_logger(__name__)

CONTEXT_URI = "hookline://context/{id}"
_URI_PREFIX = CONTEXT_URI.removesuffix("{id}")
_PATTERN = keys.UPDATES_PATTERN
MAX_BACKOFF_S = 30.0

Listener = Callable[[ServerEvent], None]


def context_uri(context_id: str) -> str:
    return _URI_PREFIX + context_id


MAX_URI_CHARS = 512


def check_uri(uri: str) -> str:
    """A URI one may subscribe to: bounded, and a context URI must name a well-formed context id."""
    if len(uri) > MAX_URI_CHARS:
        raise InvalidArgument(f"a resource URI is at most {MAX_URI_CHARS} characters")
    if uri.startswith(_URI_PREFIX) and not is_context_id(uri.removeprefix(_URI_PREFIX)):
        raise InvalidArgument("hookline://context/{id} takes a context id: ctx_ followed by 20 hex digits")
    return uri


def context_id_of(uri: str) -> str | None:
    """The context id a ``hookline://context/{id}`` URI names, else None."""
    if not uri.startswith(_URI_PREFIX):
        return None
    ctx_id = uri.removeprefix(_URI_PREFIX)
    return ctx_id if ctx_id and "/" not in ctx_id else None


class TenantBus:
    """The hub as one tenant's ``SubscriptionBus`` (see ``mcp.server.subscriptions``).

    ``publish`` of a context update goes through Redis, so every process's subscribers of that
    tenant hear it; other events (list changes) reach this process's listeners only.
    """

    def __init__(self, hub: UpdateHub, tenant: str) -> None:
        self.hub = hub
        self.tenant = tenant

    async def publish(self, event: ServerEvent) -> None:
        ctx_id = context_id_of(event.uri) if isinstance(event, ResourceUpdated) else None
        if ctx_id is not None:
            await self.hub.announce(self.tenant, ctx_id)
        else:
            self.hub.deliver(self.tenant, event)
        await anyio.lowlevel.checkpoint()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self.hub.add_listener(self.tenant, listener)


class UpdateHub:
    def __init__(
        self, redis: aioredis.Redis, *, max_subscriptions: int = 1024, max_buffered_events: int = 1024
    ) -> None:
        """Limits are per tenant and process: open listen streams, and events buffered per stream."""
        self._redis = redis
        self._max_subscriptions = max_subscriptions
        self._max_buffered = max_buffered_events
        self._listeners: dict[str, dict[object, Listener]] = {}
        self._handlers: dict[str, ListenHandler] = {}
        # (tenant, uri) → connection → the session that subscribed on it (legacy clients)
        self._legacy: dict[tuple[str, str], dict[object, ServerSession]] = {}
        self._per_connection: dict[object, int] = {}  # legacy subscriptions each connection holds
        self._in_flight: set[tuple[object, str]] = set()  # legacy notifications being sent
        self._again: set[tuple[object, str]] = set()  # ... and changed again meanwhile
        self._reader: anyio.Lock | None = None  # made on first use: it belongs to the running loop
        self._live: anyio.Event | None = None  # set while the reader's subscription stands
        self._tasks: anyio.abc.TaskGroup | None = None

    # -- the reader ------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Read the update channels until cancelled (a named task of whoever owns the hub).

        Reports started once the pattern subscription is confirmed, so nothing published after
        that is missed. Several runs may overlap (a lifespan per connection): one reads, the others
        report started once its subscription stands, and wait to take over.
        """
        if self._reader is None:
            self._reader = anyio.Lock()
            self._live = anyio.Event()
        try:
            self._reader.acquire_nowait()
        except anyio.WouldBlock:
            await self._subscribed()
            task_status.started()
            task_status = anyio.TASK_STATUS_IGNORED
            await self._reader.acquire()
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                try:
                    await self._read(task_status)
                finally:
                    self._tasks = None
                    self._lost()
                    tasks.cancel_scope.cancel()
        finally:
            self._reader.release()

    async def _subscribed(self) -> None:
        """Until the reader's subscription stands (it may be replaced meanwhile: wait on the newest)."""
        while self._live is not None and not self._live.is_set():
            await self._live.wait()

    def _lost(self) -> None:
        """The subscription is gone: later waiters wait for the next one (waiters of one that never
        stood keep waiting on it, and it is the one that gets set)."""
        if self._live is None or self._live.is_set():
            self._live = anyio.Event()

    async def _read(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        failures = 0
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(_PATTERN)
                while (await pubsub.get_message(timeout=None) or {}).get("type") != "psubscribe":
                    pass  # nothing else can come before the confirmation
                task_status.started()
                task_status = anyio.TASK_STATUS_IGNORED
                if self._live is not None:
                    self._live.set()
                failures = 0
                log.debug("updates.subscribed", pattern=_PATTERN)
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        self._on_message(message["channel"], message["data"])
                self._lost()  # not subscribed any more (it does not happen, but if it did: again)
            except (aioredis.RedisError, OSError) as exc:
                self._lost()
                failures += 1
                log.warning("updates.reader_failed", error=str(exc), failures=failures)
            except Exception as exc:  # the reader's boundary: subscribe again rather than end the server
                self._lost()
                failures += 1
                unit_failed("update-hub", exc)
            finally:
                with anyio.CancelScope(shield=True):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await anyio.sleep(random.uniform(0, min(MAX_BACKOFF_S, 0.1 * 2**failures)))

    def _on_message(self, channel: Any, data: Any) -> None:
        tenant = keys.tenant_of_updates(_text(channel))
        ctx_id = _text(data)
        if tenant is not None and is_context_id(ctx_id):
            self.deliver(tenant, ResourceUpdated(context_uri(ctx_id)))

    async def announce(self, tenant: str, context_id: str) -> None:
        """Publish a context's change the way the pipeline does (every process hears it)."""
        await self._redis.publish(keys.context_updates(tenant), context_id)

    # -- fan-out ---------------------------------------------------------------------------

    def deliver(self, tenant: str, event: ServerEvent) -> None:
        """Hand ``event`` to this process's subscribers of ``tenant`` (synchronous, never raises)."""
        for listener in list(self._listeners.get(tenant, {}).values()):
            try:
                listener(event)
            except Exception:  # fan-out boundary: one bad listener must not starve the others
                log.exception("updates.listener_failed")
        if isinstance(event, ResourceUpdated):
            for connection, session in list(self._legacy.get((tenant, event.uri), {}).items()):
                self._notify_legacy(connection, session, event.uri)

    def add_listener(self, tenant: str, listener: Listener) -> Callable[[], None]:
        token = object()
        self._listeners.setdefault(tenant, {})[token] = listener

        def remove() -> None:
            listeners = self._listeners.get(tenant, {})
            listeners.pop(token, None)
            if not listeners:
                self._listeners.pop(tenant, None)

        return remove

    def bus(self, tenant: str) -> TenantBus:
        return TenantBus(self, tenant)

    def listen_handler(self, tenant: str) -> ListenHandler:
        """The ``subscriptions/listen`` handler of one tenant (its streams hear only that tenant)."""
        handler = self._handlers.get(tenant)
        if handler is None:
            handler = self._handlers[tenant] = ListenHandler(
                self.bus(tenant),
                max_subscriptions=self._max_subscriptions,
                max_buffered_events=self._max_buffered,
            )
        return handler

    # -- legacy resources/subscribe ----------------------------------------------------------

    def subscribe_legacy(self, tenant: str, uri: str, session: ServerSession) -> None:
        """Raises InvalidArgument for a context URI whose id is malformed, or past the per-connection
        cap (``max_subscriptions``): what a connection may hold here stays bounded."""
        check_uri(uri)
        connection = _connection_of(session)
        held = self._per_connection.get(connection, 0)
        if (tenant, uri) not in self._legacy or connection not in self._legacy[(tenant, uri)]:
            if held >= self._max_subscriptions:
                raise InvalidArgument(f"this connection already holds {held} subscriptions (the limit)")
            self._per_connection[connection] = held + 1
        subscribers = self._legacy.setdefault((tenant, uri), {})
        if connection not in subscribers and not self._subscribed_anywhere(connection):
            exit_stack = getattr(connection, "exit_stack", None)
            if exit_stack is not None:  # drop every subscription of the connection when it closes
                exit_stack.callback(self._drop_connection, connection)
        subscribers[connection] = session

    def unsubscribe_legacy(self, tenant: str, uri: str, session: ServerSession) -> None:
        connection = _connection_of(session)
        subscribers = self._legacy.get((tenant, uri), {})
        if subscribers.pop(connection, None) is not None:
            self._release(connection)
        if not subscribers:
            self._legacy.pop((tenant, uri), None)

    def _release(self, connection: object) -> None:
        held = self._per_connection.get(connection, 0) - 1
        if held > 0:
            self._per_connection[connection] = held
        else:
            self._per_connection.pop(connection, None)

    def legacy_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._legacy.values())

    def _subscribed_anywhere(self, connection: object) -> bool:
        return any(connection in subscribers for subscribers in self._legacy.values())

    def _drop_connection(self, connection: object) -> None:
        for key in list(self._legacy):
            self._legacy[key].pop(connection, None)
            if not self._legacy[key]:
                del self._legacy[key]
        self._per_connection.pop(connection, None)

    def _notify_legacy(self, connection: object, session: ServerSession, uri: str) -> None:
        key = (connection, uri)
        if key in self._in_flight:  # one is on its way: send one more after it, not one per change
            self._again.add(key)
            return
        if self._tasks is None:
            return  # the reader is stopping
        self._in_flight.add(key)
        self._tasks.start_soon(self._send_legacy, key, session, uri, name=f"resource-updated:{uri}")

    async def _send_legacy(self, key: tuple[object, str], session: ServerSession, uri: str) -> None:
        try:
            while True:
                await session.send_resource_updated(uri)  # best effort: never raises
                if key not in self._again:
                    return
                self._again.discard(key)
        finally:
            self._in_flight.discard(key)

    # -- wiring ----------------------------------------------------------------------------

    def install(self, server: Server[Any], tenant: Callable[[], str]) -> None:
        """Serve ``subscriptions/listen``, ``resources/subscribe`` and ``resources/unsubscribe`` on
        ``server`` (the low-level server: MCPServer answers "Method not found" to the legacy pair).
        ``tenant()`` is the tenant of the request being handled."""

        async def listen(
            ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
        ) -> types.SubscriptionsListenResult:
            who = tenant()
            uris = params.notifications.resource_subscriptions or []
            _checked(lambda: [check_uri(uri) for uri in uris])
            return await self.listen_handler(who)(ctx, params)

        async def subscribe(
            ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
        ) -> types.EmptyResult:
            who = tenant()
            _checked(lambda: self.subscribe_legacy(who, str(params.uri), ctx.session))
            return types.EmptyResult()

        async def unsubscribe(
            ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
        ) -> types.EmptyResult:
            self.unsubscribe_legacy(tenant(), str(params.uri), ctx.session)
            return types.EmptyResult()

        server.add_request_handler("subscriptions/listen", types.SubscriptionsListenRequestParams, listen)
        server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
        server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)


def _checked(check: Callable[[], object]) -> None:
    """Run ``check``; an InvalidArgument becomes the JSON-RPC invalid-params error the client reads."""
    try:
        check()
    except InvalidArgument as exc:
        raise MCPError(types.INVALID_PARAMS, f"{type(exc).__name__}: {exc}") from exc


def _connection_of(session: ServerSession) -> object:
    """The connection a per-request session belongs to (SDK 2.3 keeps it private); the session
    itself when it cannot be told, which only costs unsubscribing by identity."""
    return getattr(session, "_connection", None) or session


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
