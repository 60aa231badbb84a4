"""Hub and agent sessions over a real aiohttp websocket on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from clusternet.runtime._backoff import Backoff
from clusternet.tunnel import (
    ClusterNotConnected,
    FlowControl,
    Session,
    TunnelClient,
    TunnelServer,
    TunnelStream,
)
from clusternet.tunnel._session import MAX_FRAME_PAYLOAD
from clusternet.tunnel._wire import Frame, MessageType, encode_varint

CLUSTER = "c-1"
SAFETY_NET = 30  # seconds; only keeps a broken build from hanging the suite
# Small kernel buffers keep the bytes in flight between the sessions (which flow control
# cannot stop) far below what the flow-control assertions allow.
SOCKET_BUFFER = 64 * 1024


def only_loopback_ip(proto: str, address: str) -> bool:
    return proto == "tcp" and address.startswith("127.0.0.1:")


def small_buffer_socket(addr_info: Any) -> socket.socket:
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    return sock


def hub_app(server: TunnelServer) -> web.Application:
    async def sockets(request: web.Request) -> web.WebSocketResponse:
        return await server.handle(request, request.match_info["cluster"])

    async def close_tunnels(_: web.Application) -> None:
        await server.close()

    app = web.Application()
    app.router.add_get("/sockets/{cluster}", sockets)
    app.on_shutdown.append(close_tunnels)
    return app


async def start_hub(server: TunnelServer, port: int = 0) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(hub_app(server))
    await runner.setup()
    sock = small_buffer_socket((socket.AF_INET, socket.SOCK_STREAM, 0, "", None))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock).start()
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}/sockets/{CLUSTER}"


async def serve_tcp(handler: Any) -> AsyncIterator[tuple[str, int]]:
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[:2]
    server.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


@pytest.fixture
async def echo_address() -> AsyncIterator[tuple[str, int]]:
    async for address in serve_tcp(echo):
        yield address


@dataclass
class Tunnel:
    server: TunnelServer
    agent: Session
    agent_ws: aiohttp.ClientWebSocketResponse
    url: str

    @property
    def hub(self) -> Session:
        return self.server.session(CLUSTER)


HUB_FLOW = FlowControl(high_water=256 * 1024, low_water=32 * 1024, write_limit=64 * 1024)


@pytest.fixture
async def tunnel() -> AsyncIterator[Tunnel]:
    server = TunnelServer(registry=None, flow=HUB_FLOW)
    runner, url = await start_hub(server)
    connector = aiohttp.TCPConnector(socket_factory=small_buffer_socket)
    async with aiohttp.ClientSession(connector=connector) as http:
        ws = await http.ws_connect(url)
        agent = Session(ws, name="agent", allow=only_loopback_ip)
        agent_task = asyncio.create_task(agent.run())
        await server.wait_connected(CLUSTER)
        yield Tunnel(server, agent, ws, url)
        await ws.close()
        await agent_task
    await runner.cleanup()


async def read_exactly(stream: TunnelStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.read(size - len(data))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


async def test_echo_through_the_tunnel(tunnel: Tunnel, echo_address: tuple[str, int]) -> None:
    stream = await tunnel.server.dial(CLUSTER, *echo_address)
    stream.write(b"hello through the tunnel")
    await stream.drain()
    async with asyncio.timeout(SAFETY_NET):
        assert await read_exactly(stream, 24) == b"hello through the tunnel"
        stream.close()
        await stream.wait_closed()
    assert stream.connection_id not in {s.connection_id for s in tunnel.hub.streams}


async def test_hundred_concurrent_streams(tunnel: Tunnel, echo_address: tuple[str, int]) -> None:
    async def round_trip(index: int) -> bytes:
        payload = f"stream {index:03} ".encode() * (100 + index * 37)
        stream = await tunnel.server.dial(CLUSTER, *echo_address)
        stream.write(payload)
        await stream.drain()
        echoed = await read_exactly(stream, len(payload))
        stream.close()
        assert echoed == payload
        return echoed

    async with asyncio.timeout(SAFETY_NET):
        results = await asyncio.gather(*(round_trip(i) for i in range(100)))
    assert len(set(results)) == 100


async def test_pause_and_resume_bound_a_slow_readers_buffer(tunnel: Tunnel) -> None:
    total = 20 * 1024 * 1024
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
    expected = hashlib.sha256(block * (total // len(block))).hexdigest()

    async def firehose(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(total // len(block)):
            writer.write(block)
            await writer.drain()

    async for address in serve_tcp(firehose):
        stream = await tunnel.server.dial(CLUSTER, *address)
        digest, received = hashlib.sha256(), 0
        async with asyncio.timeout(SAFETY_NET):
            while chunk := await stream.read(16 * 1024):
                digest.update(chunk)
                received += len(chunk)
                for _ in range(8):  # a reader slower than the tunnel: let the sender run ahead
                    await asyncio.sleep(0)

    assert (received, digest.hexdigest()) == (total, expected)
    hub, agent = tunnel.hub.stats, tunnel.agent.stats
    assert hub.pauses_sent >= 1
    assert hub.resumes_sent >= 1
    assert agent.pauses_received == hub.pauses_sent
    # The last Resume may reach the agent after it has closed the stream (and is dropped).
    assert agent.resumes_received >= hub.resumes_sent - 1
    # Without Pause the sender would have filled the reader's buffer with most of the 20 MiB.
    assert hub.peak_buffered <= HUB_FLOW.high_water + 1024 * 1024
    # The agent stops reading its TCP source while paused instead of queueing it.
    assert agent.peak_pending <= agent_write_bound(tunnel.agent)


def agent_write_bound(session: Session) -> int:
    """drain() lets a writer run one frame past the limit before it blocks."""
    return session.flow.write_limit + MAX_FRAME_PAYLOAD


async def test_dial_failure_carries_the_reason(tunnel: Tunnel) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stream = await tunnel.server.dial(CLUSTER, "127.0.0.1", port)
    async with asyncio.timeout(SAFETY_NET):
        with pytest.raises(ConnectionError, match=f"Connect call failed.*{port}"):
            await stream.read()
        await stream.wait_closed()
    with pytest.raises(ConnectionError, match="Connect call failed"):
        await stream.drain()


async def test_allow_list_denial(tunnel: Tunnel, echo_address: tuple[str, int]) -> None:
    stream = await tunnel.server.dial(CLUSTER, "localhost", echo_address[1])
    async with asyncio.timeout(SAFETY_NET):
        with pytest.raises(ConnectionError, match="connect not allowed"):
            await stream.read()
    assert tunnel.agent.streams == []


async def test_hub_refuses_connect_from_the_agent(tunnel: Tunnel) -> None:
    stream = tunnel.agent.open_stream("tcp", "127.0.0.1:1")
    async with asyncio.timeout(SAFETY_NET):
        with pytest.raises(ConnectionError, match="connect not allowed"):
            await stream.read()


async def test_closing_the_websocket_fails_every_stream(
    tunnel: Tunnel, echo_address: tuple[str, int]
) -> None:
    streams = [await tunnel.server.dial(CLUSTER, *echo_address) for _ in range(5)]
    async with asyncio.timeout(SAFETY_NET):
        for stream in streams:  # every stream is established on the agent side
            stream.write(b"ping")
            await stream.drain()
            assert await read_exactly(stream, 4) == b"ping"
        readers = [asyncio.create_task(stream.read()) for stream in streams]
        await tunnel.agent_ws.close()
        results = await asyncio.gather(*readers, return_exceptions=True)
        await tunnel.server.wait_disconnected(CLUSTER)
    assert all(isinstance(r, ConnectionError) for r in results), results
    assert all("tunnel session closed" in str(r) for r in results)
    with pytest.raises(ConnectionError, match="tunnel session closed"):
        streams[0].write(b"more")
    assert tunnel.agent.streams == []


async def test_dial_without_a_session_fails_at_once() -> None:
    server = TunnelServer(registry=None)
    with pytest.raises(ClusterNotConnected, match="c-2 is not connected"):
        await server.dial("c-2", "127.0.0.1", 443)


async def test_a_new_connection_replaces_the_old_one(tunnel: Tunnel) -> None:
    old = tunnel.hub
    async with aiohttp.ClientSession() as http, http.ws_connect(tunnel.url) as ws:
        newer = Session(ws, allow=only_loopback_ip)
        task = asyncio.create_task(newer.run())
        async with asyncio.timeout(SAFETY_NET):
            await old.wait_closed()
            await tunnel.agent.wait_closed()  # the hub closed the old websocket
        assert tunnel.hub is not old
        assert "replaced" in old.close_reason
        assert tunnel.server.connected_ids() == [CLUSTER]
        await ws.close()
        await task


def sample(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name)


async def test_client_reconnects_after_the_hub_restarts(echo_address: tuple[str, int]) -> None:
    registry = CollectorRegistry()
    server = TunnelServer(registry=registry)
    runner, url = await start_hub(server)
    port = int(url.split(":")[2].split("/")[0])
    client = TunnelClient(url, allow=only_loopback_ip, backoff=Backoff(initial=0.01, cap=0.05))
    client_task = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(SAFETY_NET):
            await server.wait_connected(CLUSTER)
            assert sample(registry, "clusternet_socket_connections_count") == 1
            await runner.cleanup()  # its shutdown hook closes the tunnel
            assert not server.is_connected(CLUSTER)
            assert sample(registry, "clusternet_socket_connections_count") == 0
            assert sample(registry, "clusternet_socket_connections_duration_seconds_count") == 1

            restarted = TunnelServer(registry=None)
            runner, _ = await start_hub(restarted, port)
            await restarted.wait_connected(CLUSTER)
            stream = await restarted.dial(CLUSTER, *echo_address)
            stream.write(b"again")
            assert await read_exactly(stream, 5) == b"again"
    finally:
        await client.stop()
        await client_task
        await runner.cleanup()


async def test_hub_sees_the_agent_leave() -> None:
    server = TunnelServer(registry=None)
    runner, url = await start_hub(server)
    client = TunnelClient(url, allow=only_loopback_ip)
    client_task = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(SAFETY_NET):
            await server.wait_connected(CLUSTER)
            await client.wait_connected()
            assert server.connected_ids() == [CLUSTER]
            await client.stop()
            await server.wait_disconnected(CLUSTER)
        assert not server.is_connected(CLUSTER)
        assert server.connected_ids() == []
    finally:
        await client.stop()
        await client_task
        await runner.cleanup()


class RetryLog(logging.Handler):
    """Collects the client's warnings; set once it has retried."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.retried = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if len(self.messages) >= 2:
            self.retried.set()


async def test_client_reports_a_refused_upgrade_and_retries() -> None:
    async def forbidden(_: web.Request) -> web.Response:
        raise web.HTTPForbidden()

    app = web.Application()
    app.router.add_get("/sockets/{cluster}", forbidden)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/sockets/{CLUSTER}"
    client = TunnelClient(url, allow=only_loopback_ip, backoff=Backoff(initial=0.01, cap=0.02))
    retry_log = RetryLog()
    logger = logging.getLogger("clusternet.tunnel.client")
    logger.addHandler(retry_log)
    task = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(SAFETY_NET):
            await retry_log.retried.wait()
    finally:
        logger.removeHandler(retry_log)
        await client.stop()
        await task
        await runner.cleanup()
    assert "HTTP 403" in retry_log.messages[0]
    assert "may not open this cluster's socket" in retry_log.messages[0]
    assert not client.is_connected()


async def test_frames_we_do_not_act_on_are_skipped_and_garbage_ends_the_session(
    tunnel: Tunnel, echo_address: tuple[str, int]
) -> None:
    hub = tunnel.hub
    skipped = [
        Frame(1, 0, MessageType.SYNC_CONNECTIONS, struct.pack("<2Q", 1, 2)).encode(),
        Frame(2, 0, MessageType.SYNC_CONNECTIONS, b"\x01\x02\x03").encode(),  # malformed
        Frame(3, 0, MessageType.ADD_CLIENT, b"peer-hub").encode(),
        encode_varint(4) + encode_varint(0) + encode_varint(42) + b"from the future",
    ]
    for data in skipped:
        await tunnel.agent_ws.send_bytes(data)
    stream = await tunnel.server.dial(CLUSTER, *echo_address)
    stream.write(b"still alive")
    async with asyncio.timeout(SAFETY_NET):
        assert await read_exactly(stream, 11) == b"still alive"
        await tunnel.agent_ws.send_bytes(b"\xff" * 11)
        await hub.wait_closed()
    assert hub.close_reason == "protocol error: varint overflows a 64-bit integer"
