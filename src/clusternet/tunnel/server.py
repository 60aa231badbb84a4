"""The hub's end of the tunnels: one session per connected cluster, and dialling through it."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, Gauge, Histogram

from clusternet.runtime.metrics import PerRegistry
from clusternet.tunnel._session import (
    DEFAULT_FLOW,
    FlowControl,
    Session,
    TunnelStream,
    join_host_port,
)

__all__ = ["ClusterNotConnected", "TunnelServer"]

log = logging.getLogger(__name__)


class ClusterNotConnected(ConnectionError):
    def __init__(self, cluster_id: str) -> None:
        super().__init__(f"the agent of cluster {cluster_id} is not connected")
        self.cluster_id = cluster_id


@dataclass(frozen=True)
class _Metrics:
    connections: Gauge
    duration: Histogram


def _build_metrics(registry: CollectorRegistry) -> _Metrics:
    return _Metrics(
        Gauge(
            "clusternet_socket_connections_count",
            "Number of agents connected through websocket tunnels.",
            registry=registry,
        ),
        Histogram(
            "clusternet_socket_connections_duration_seconds",
            "How long agent tunnel connections lasted.",
            buckets=[60.0 * 4**n for n in range(8)],
            registry=registry,
        ),
    )


_metrics = PerRegistry(_build_metrics)


class TunnelServer:
    """Tunnel sessions keyed by cluster id; a newer connection replaces an older one.

    The caller authenticates and authorizes the websocket upgrade (the cluster id comes from
    the URL the parent authorized) and then hands the websocket to :meth:`accept`, or lets
    :meth:`handle` prepare it.  Agents ping (remotedialer every 5 s); ``heartbeat`` makes
    the hub ping too and drop an agent that stops answering.
    """

    def __init__(
        self,
        *,
        heartbeat: float = 30.0,
        flow: FlowControl = DEFAULT_FLOW,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.heartbeat = heartbeat
        self._flow = flow
        self._metrics = _metrics(registry) if registry is not None else None
        self._sessions: dict[str, Session] = {}
        self._changed = asyncio.Condition()
        self._closing: set[asyncio.Task[None]] = set()

    def is_connected(self, cluster_id: str) -> bool:
        return cluster_id in self._sessions

    def connected_ids(self) -> list[str]:
        return sorted(self._sessions)

    def session(self, cluster_id: str) -> Session:
        try:
            return self._sessions[cluster_id]
        except KeyError:
            raise ClusterNotConnected(cluster_id) from None

    async def wait_connected(self, cluster_id: str) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: cluster_id in self._sessions)

    async def wait_disconnected(self, cluster_id: str) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: cluster_id not in self._sessions)

    async def handle(self, request: web.Request, cluster_id: str) -> web.WebSocketResponse:
        """Upgrade ``request`` and serve the tunnel until it closes (an aiohttp handler)."""
        ws = web.WebSocketResponse(heartbeat=self.heartbeat)
        await ws.prepare(request)
        await self.accept(ws, cluster_id)
        return ws

    async def accept(self, ws: web.WebSocketResponse, cluster_id: str) -> None:
        """Serve a prepared websocket as ``cluster_id``'s tunnel until it closes."""
        session = Session(ws, name=cluster_id, flow=self._flow)
        previous = self._sessions.get(cluster_id)
        await self._set(cluster_id, session)
        if previous is not None:
            log.info("tunnel of cluster %s replaced by a new connection", cluster_id)
            # In the background: a dead peer may hold the close handshake for seconds.
            closing = asyncio.create_task(previous.close("replaced by a newer connection"))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        log.info("cluster %s connected its tunnel", cluster_id)
        started = time.monotonic()
        if self._metrics:
            self._metrics.connections.inc()
        try:
            await session.run()
        finally:
            if self._metrics:
                self._metrics.connections.dec()
                self._metrics.duration.observe(time.monotonic() - started)
            if self._sessions.get(cluster_id) is session:
                await self._set(cluster_id, None)
            log.info("tunnel of cluster %s ended: %s", cluster_id, session.close_reason)

    async def dial(self, cluster_id: str, host: str, port: int) -> TunnelStream:
        """A stream to ``host:port`` as seen from inside the cluster.

        Raises :class:`ClusterNotConnected` at once when its agent has no tunnel; a failed
        dial inside the cluster shows up on the stream's first read or drain.
        """
        return self.session(cluster_id).open_stream("tcp", join_host_port(host, port))

    async def close(self) -> None:
        """End every session (their :meth:`accept` calls then return)."""
        sessions = list(self._sessions.values())
        await asyncio.gather(*(s.close("hub shutting down") for s in sessions))

    async def _set(self, cluster_id: str, session: Session | None) -> None:
        async with self._changed:
            if session is None:
                del self._sessions[cluster_id]
            else:
                self._sessions[cluster_id] = session
            self._changed.notify_all()
