"""HTTP clients riding the tunnel to an HTTPS server on the agent's side."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from aiohttp import web

from clusternet.kube import ClusterConfig, KubeClient
from clusternet.local.pki import PKI, CertificateAuthority, cert_pem
from clusternet.tunnel import TunnelClient, TunnelServer, transport_factory

CLUSTER = "c-1"
SAFETY_NET = 30  # seconds; only keeps a broken build from hanging the suite


@dataclass
class Target:
    """An HTTPS server reachable only through the tunnel (as far as the client knows)."""

    url: str
    ca_file: Path
    watch_may_continue: asyncio.Event

    def client_tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Target]:
    pki = PKI.generate(tmp_path / "pki")
    cert, key = pki.serving_cert_for_service(tmp_path, "target", "default", "default")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    watch_may_continue = asyncio.Event()

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"name": request.match_info["name"]})

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"type":"ADDED"}\n')
        await watch_may_continue.wait()  # the client must see the first event before this
        await response.write(b'{"type":"DELETED"}\n')
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/echo/{name}", echo)
    app.router.add_get("/watch", watch)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    yield Target(f"https://127.0.0.1:{runner.addresses[0][1]}", pki.ca_cert, watch_may_continue)
    watch_may_continue.set()
    await runner.cleanup()


@pytest.fixture
async def hub() -> AsyncIterator[TunnelServer]:
    """A hub with one agent connected, which may dial loopback addresses only."""
    server = TunnelServer(registry=None)

    async def sockets(request: web.Request) -> web.WebSocketResponse:
        return await server.handle(request, request.match_info["cluster"])

    async def close_tunnels(_: web.Application) -> None:
        await server.close()

    app = web.Application()
    app.router.add_get("/sockets/{cluster}", sockets)
    app.on_shutdown.append(close_tunnels)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    agent = TunnelClient(
        f"http://127.0.0.1:{runner.addresses[0][1]}/sockets/{CLUSTER}",
        allow=lambda proto, address: address.startswith("127.0.0.1:"),
    )
    agent_task = asyncio.create_task(agent.run())
    async with asyncio.timeout(SAFETY_NET):
        await server.wait_connected(CLUSTER)
    yield server
    await agent.stop()
    await agent_task
    await runner.cleanup()


def tunnel_client(hub: TunnelServer, target: Target) -> httpx2.AsyncClient:
    transport = transport_factory(hub, CLUSTER)(target.client_tls())
    return httpx2.AsyncClient(base_url=target.url, transport=transport, timeout=SAFETY_NET)


async def test_get_through_the_tunnel(hub: TunnelServer, target: Target) -> None:
    async with tunnel_client(hub, target) as client:
        response = await client.get("/echo/first")
        assert response.status_code == 200
        assert response.json() == {"name": "first"}
        assert response.extensions["network_stream"].get_extra_info("ssl_object") is not None
        # A second request reuses the pooled TLS connection: one stream in the hub.
        assert (await client.get("/echo/second")).json() == {"name": "second"}
        assert len(hub.session(CLUSTER).streams) == 1


async def test_streamed_response_arrives_event_by_event(hub: TunnelServer, target: Target) -> None:
    async with (
        tunnel_client(hub, target) as client,
        asyncio.timeout(SAFETY_NET),
        client.stream("GET", "/watch") as response,
    ):
        lines = response.aiter_lines()
        assert await anext(lines) == '{"type":"ADDED"}'
        target.watch_may_continue.set()
        assert [line async for line in lines] == ['{"type":"DELETED"}']


async def test_fifty_concurrent_requests(hub: TunnelServer, target: Target) -> None:
    async with tunnel_client(hub, target) as client, asyncio.timeout(SAFETY_NET):
        responses = await asyncio.gather(*(client.get(f"/echo/r{i}") for i in range(50)))
    assert [r.json()["name"] for r in responses] == [f"r{i}" for i in range(50)]


async def test_kube_client_through_the_tunnel(hub: TunnelServer, target: Target) -> None:
    config = ClusterConfig(server=target.url, ca_data=target.ca_file.read_bytes())
    async with KubeClient(config, transport_factory=transport_factory(hub, CLUSTER)) as kube:
        assert await kube.request("GET", "/echo/kube") == {"name": "kube"}


async def test_tls_is_verified_at_the_target(hub: TunnelServer, target: Target) -> None:
    stranger = CertificateAuthority.create("another-ca")
    tls = ssl.create_default_context(cadata=cert_pem(stranger.cert).decode())
    transport = transport_factory(hub, CLUSTER)(tls)
    async with httpx2.AsyncClient(base_url=target.url, transport=transport) as client:
        with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get("/echo/x")


async def test_disconnected_cluster_is_a_connect_error(target: Target) -> None:
    transport = transport_factory(TunnelServer(registry=None), "gone")(target.client_tls())
    async with httpx2.AsyncClient(base_url=target.url, transport=transport) as client:
        with pytest.raises(httpx2.ConnectError, match="cluster gone is not connected"):
            await client.get("/echo/x")
