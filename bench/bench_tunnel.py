"""Throughput and latency of the tunnel on loopback (a benchmark, not a test).

    python bench/bench_tunnel.py [--megabytes 200] [--requests 2000]

Rows: MB/s through one stream and through 10 concurrent streams (hub reads what a TCP
source on the agent side sends), and p50/p99 latency of small HTTPS GETs on a kept-alive
connection, direct and through the tunnel.  Hub, agent and targets share one event loop
and one core, so the numbers compare configurations rather than predict a deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx2
from aiohttp import web

from clusternet.local.pki import PKI
from clusternet.tunnel import TunnelClient, TunnelServer, allow_all, transport_factory

CLUSTER = "bench"
BLOCK = b"\x5a" * (64 * 1024)


async def start(
    app: web.Application, tls: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    return runner, runner.addresses[0][1]


async def source(megabytes: int) -> tuple[asyncio.Server, int]:
    """A TCP server that sends ``megabytes`` MiB to whoever connects."""

    async def send(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(megabytes * 16):
            writer.write(BLOCK)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(send, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def throughput(hub: TunnelServer, port: int, megabytes: int, streams: int) -> float:
    async def drain_one() -> int:
        stream = await hub.dial(CLUSTER, "127.0.0.1", port)
        received = 0
        while chunk := await stream.read(256 * 1024):
            received += len(chunk)
        return received

    started = time.perf_counter()
    total = sum(await asyncio.gather(*(drain_one() for _ in range(streams))))
    elapsed = time.perf_counter() - started
    assert total == streams * megabytes * 1024 * 1024, total
    return total / elapsed / 1e6


async def latencies(get: Callable[[], Awaitable[httpx2.Response]], requests: int) -> list[float]:
    await get()  # open and keep the connection
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        (await get()).raise_for_status()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1]


async def main(megabytes: int, requests: int) -> None:
    hub = TunnelServer(registry=None)

    async def sockets(request: web.Request) -> web.WebSocketResponse:
        return await hub.handle(request, request.match_info["id"])

    hub_app = web.Application()
    hub_app.router.add_get("/sockets/{id}", sockets)
    hub_runner, hub_port = await start(hub_app)
    agent = TunnelClient(f"http://127.0.0.1:{hub_port}/sockets/{CLUSTER}", allow=allow_all)
    agent_task = asyncio.create_task(agent.run())
    await hub.wait_connected(CLUSTER)

    with tempfile.TemporaryDirectory() as tmp:
        pki = PKI.generate(Path(tmp) / "pki")
        cert, key = pki.serving_cert_for_service(Path(tmp), "target", "default", "default")
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        client_tls = ssl.create_default_context(cafile=pki.ca_cert)

    async def pong(_: web.Request) -> web.Response:
        return web.Response(text="pong")

    target_app = web.Application()
    target_app.router.add_get("/ping", pong)
    target_runner, target_port = await start(target_app, server_tls)
    url = f"https://127.0.0.1:{target_port}/ping"
    bulk, bulk_port = await source(megabytes)
    small, small_port = await source(max(1, megabytes // 10))

    rows: list[tuple[str, str]] = []
    try:
        one = await throughput(hub, bulk_port, megabytes, 1)
        rows.append((f"1 stream, {megabytes} MiB", f"{one:8.1f} MB/s"))
        ten = await throughput(hub, small_port, max(1, megabytes // 10), 10)
        rows.append((f"10 streams, {max(1, megabytes // 10)} MiB each", f"{ten:8.1f} MB/s"))

        async with httpx2.AsyncClient(verify=client_tls) as direct_client:
            direct = await latencies(lambda: direct_client.get(url), requests)
        transport = transport_factory(hub, CLUSTER)(client_tls)
        async with httpx2.AsyncClient(transport=transport) as tunnel_client:
            tunneled = await latencies(lambda: tunnel_client.get(url), requests)
        for q in (50, 99):
            d, t = percentile(direct, q), percentile(tunneled, q)
            rows.append((f"GET p{q} direct / tunnel", f"{d:.3f} / {t:.3f} ms (x{t / d:.2f})"))
    finally:
        bulk.close()
        small.close()
        await agent.stop()
        await agent_task
        await hub.close()
        await target_runner.cleanup()
        await hub_runner.cleanup()

    width = max(len(name) for name, _ in rows)
    print(f"{'measurement':<{width}}  result")
    print("-" * (width + 32))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.megabytes, args.requests))
