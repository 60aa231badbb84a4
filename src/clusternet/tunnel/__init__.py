"""Reverse tunnels from agents to the hub, speaking rancher/remotedialer's framing.

An agent keeps one websocket to the hub (:class:`TunnelClient`); the hub
(:class:`TunnelServer`) opens byte streams through it to addresses inside the agent's
cluster, and :func:`transport_factory` lets an HTTP client use those streams as its sockets.
See docs/tunnel.md.
"""

from clusternet.tunnel._session import (
    AllowFunc,
    FlowControl,
    Session,
    SessionStats,
    TunnelStream,
    allow_all,
)
from clusternet.tunnel._wire import FrameError
from clusternet.tunnel.client import TunnelClient
from clusternet.tunnel.httpx import TunnelNetworkBackend, TunnelTransport, transport_factory
from clusternet.tunnel.server import ClusterNotConnected, TunnelServer

__all__ = [
    "AllowFunc",
    "ClusterNotConnected",
    "FlowControl",
    "FrameError",
    "Session",
    "SessionStats",
    "TunnelClient",
    "TunnelNetworkBackend",
    "TunnelServer",
    "TunnelStream",
    "TunnelTransport",
    "allow_all",
    "transport_factory",
]
