"""The aiohttp transport under KubeClient and httpx2, against a real TLS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
from aiohttp import web

from clusternet.kube import ClusterConfig, ClusterUnreachable, KubeClient
from clusternet.kube._aiohttp import AiohttpTransport
from clusternet.local.pki import PKI

SAFETY_NET = 30  # seconds; only keeps a broken build from hanging the suite
SERVICE_NAME = "target.default.svc"


@dataclass
class Server:
    url: str
    ca_file: Path
    may_continue: asyncio.Event
    server_names: list[str | None] = field(default_factory=list)
    peers: list[object] = field(default_factory=list)
    cut: asyncio.Event = field(default_factory=asyncio.Event)

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def client(self, **config: object) -> KubeClient:
        return KubeClient(
            ClusterConfig(server=self.url, ca_data=self.ca_file.read_bytes(), **config),  # type: ignore[arg-type]
            timeout=SAFETY_NET,
        )


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    pki = PKI.generate(tmp_path / "pki")
    cert, key = pki.serving_cert_for_service(tmp_path, "serving", "target", "default")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    state = Server("", pki.ca_cert, asyncio.Event())
    tls.sni_callback = lambda _sock, name, _ctx: state.server_names.append(name)  # type: ignore[func-returns-value]

    async def echo(request: web.Request) -> web.Response:
        state.peers.append(
            request.transport.get_extra_info("peername") if request.transport else None
        )
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.raw_path,
                "headers": {k: v for k, v in request.headers.items() if k.startswith("X-")},
                "contentType": request.headers.get("Content-Type"),
                "body": body.decode(),
            },
            status=int(request.query.get("status", "200")),
        )

    async def gzipped(request: web.Request) -> web.Response:
        assert "gzip" in request.headers.get("Accept-Encoding", "")
        return web.Response(
            body=gzip.compress(json.dumps({"items": ["x"] * 1000}).encode()),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"type":"ADDED"}\n')
        try:
            await state.may_continue.wait()  # the client must see the first event before this
            await response.write(b'{"type":"DELETED"}\n')
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            state.cut.set()  # the client went away mid-stream
            raise
        return response

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(SAFETY_NET)
        return web.Response()

    async def truncated(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"{" * 10)
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/gzipped", gzipped)
    app.router.add_get("/watch", watch)
    app.router.add_get("/slow", slow)
    app.router.add_get("/truncated", truncated)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    state.url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    state.may_continue.set()
    await runner.cleanup()


def test_kube_client_sends_through_aiohttp_unless_http2_or_a_transport_is_given() -> None:
    config = ClusterConfig(server="https://127.0.0.1:1")
    assert isinstance(KubeClient(config)._http._transport, AiohttpTransport)
    assert not isinstance(KubeClient(config, http2=True)._http._transport, AiohttpTransport)


async def test_requests_and_responses_pass_through(server: Server) -> None:
    async with server.client() as client:
        got = await client.request(
            "POST",
            "/echo/api/v1/namespaces/a%2Fb/pods",
            params={"labelSelector": "app=web,tier!=db", "fieldSelector": "x=y z"},
            body={"kind": "Pod"},
            headers={"X-Trace": "abc"},
        )
    assert got == {
        "method": "POST",
        # the query as httpx2 encodes it, not re-encoded by aiohttp
        "path": "/echo/api/v1/namespaces/a%2Fb/pods"
        "?labelSelector=app%3Dweb%2Ctier%21%3Ddb&fieldSelector=x%3Dy+z",
        "headers": {"X-Trace": "abc"},
        "contentType": "application/json",
        "body": '{"kind": "Pod"}',
    }


async def test_gzip_responses_are_decoded(server: Server) -> None:
    async with server.client() as client:
        assert await client.request("GET", "/gzipped") == {"items": ["x"] * 1000}


async def test_connections_are_kept_alive(server: Server) -> None:
    async with server.client() as client:
        for _ in range(20):
            await client.request("GET", "/echo/x")
    assert len(server.peers) == 20
    assert len(set(server.peers)) == 1  # one TLS connection, reused


async def test_tls_server_name_is_sent_as_sni(server: Server) -> None:
    async with server.client(tls_server_name=SERVICE_NAME) as client:
        await client.request("GET", "/echo/x")
    async with server.client() as client:
        await client.request("GET", "/echo/x")
    assert server.server_names == [SERVICE_NAME, None]  # an IP address is never sent as SNI


async def test_a_stream_arrives_line_by_line_and_closing_it_cuts_the_connection(
    server: Server,
) -> None:
    async with httpx2.AsyncClient(
        base_url=server.url, transport=AiohttpTransport(server.tls()), timeout=SAFETY_NET
    ) as client:
        async with client.stream("GET", "/watch") as response:
            lines = response.aiter_lines()
            assert await anext(lines) == '{"type":"ADDED"}'  # before the server goes on
        async with asyncio.timeout(SAFETY_NET):
            await server.cut.wait()  # closed mid-stream: the server's handler sees it
        server.cut.clear()
        server.may_continue.set()
        async with client.stream("GET", "/watch") as response:
            assert [line async for line in response.aiter_lines()] == [
                '{"type":"ADDED"}',
                '{"type":"DELETED"}',
            ]


async def test_errors_are_httpx2_errors(server: Server) -> None:
    transport = AiohttpTransport(server.tls())
    async with httpx2.AsyncClient(base_url=server.url, transport=transport) as client:
        with pytest.raises(httpx2.ReadTimeout):
            await client.get("/slow", timeout=httpx2.Timeout(SAFETY_NET, read=0.2))
        with pytest.raises((httpx2.RemoteProtocolError, httpx2.ReadError)):
            await client.get("/truncated", timeout=SAFETY_NET)
    stranger = ssl.create_default_context()  # the system CAs: the server's CA is not one
    async with httpx2.AsyncClient(
        base_url=server.url, transport=AiohttpTransport(stranger)
    ) as client:
        with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get("/echo/x", timeout=SAFETY_NET)


async def test_an_unreachable_server_is_cluster_unreachable(tmp_path: Path) -> None:
    pki = PKI.generate(tmp_path / "pki")
    with socket_bound() as port:  # bound, never listening: refused
        config = ClusterConfig(server=f"https://127.0.0.1:{port}", ca_data=pki.ca_cert.read_bytes())
        async with KubeClient(config, timeout=SAFETY_NET) as client:
            with pytest.raises(ClusterUnreachable, match="ConnectError"):
                await client.request("GET", "/version")


async def test_closing_the_client_closes_the_session(server: Server) -> None:
    client = server.client()
    await client.request("GET", "/echo/x")
    transport = client._http._transport
    assert isinstance(transport, AiohttpTransport)
    session = transport._session
    assert session is not None
    assert not session.closed
    await client.aclose()
    assert session.closed


class socket_bound:
    """A TCP port on 127.0.0.1 that nothing listens on."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port: int = self._sock.getsockname()[1]
        return port

    def __exit__(self, *_: object) -> None:
        self._sock.close()
