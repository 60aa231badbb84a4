"""Two clusternet-hub replicas behind one aggregator (issue 11, docs/hub.md "Several replicas").

A private environment's hub is replaced by two hub processes with peering on, behind a TCP
round-robin relay the APIServices point at.  Each replica holds one agent's tunnel; proxy
requests for every cluster work on both replicas (the other one forwards), through the
parent many times, and again after one replica is killed and its agent reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from clusternet.apis import known
from clusternet.local import components
from clusternet.local.environment import PARENT, Options, free_port
from clusternet.local.pki import PKI
from clusternet.local.testing import Clusters, start_environment, wait_until

LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{known.SYSTEM_NAMESPACE}/leases"


class Relay:
    """A TCP relay on 127.0.0.1 that spreads connections over ``backends`` in turn, skipping
    one that refuses (a stopped replica), like a Service in front of several pods."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = list(backends)
        self.port = free_port()
        self._turn = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Relay:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backends = list(self.backends)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for _ in range(len(backends)):
            port = backends[self._turn % len(backends)]
            self._turn += 1
            with contextlib.suppress(OSError):
                upstream = await asyncio.open_connection("127.0.0.1", port)
                break
        if upstream is None:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pump(reader, upstream[1]), pump(upstream[0], writer))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    with start_environment(tmp_path_factory.mktemp("hub-replicas"), Options(children=2)) as found:
        yield found


def _start_hub(clusters: Clusters, pki: PKI, port: int, log: Path) -> subprocess.Popen[bytes]:
    parent = clusters.state.cluster(PARENT)
    cert, key = pki.serving_cert_for_service(
        pki.root, components.HUB_SERVICE, components.HUB_SERVICE, known.SYSTEM_NAMESPACE
    )
    argv = [
        *components.hub_argv(parent.kubeconfig, port, cert, key),
        "--peer-advertise-address=127.0.0.1",
        f"--peer-client-cert-file={pki.front_proxy_client_cert}",
        f"--peer-client-key-file={pki.front_proxy_client_key}",
        f"--peer-ca-file={pki.ca_cert}",
    ]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def _holders(clusters: Clusters, ids: dict[str, str]) -> dict[str, str]:
    """Cluster name → holderIdentity of its tunnel Lease."""
    listed: dict[str, Any] = clusters.env.client(PARENT).get(LEASES)
    by_name = {item["metadata"]["name"]: item for item in listed.get("items") or []}
    found = {}
    for name, cluster_id in ids.items():
        lease = by_name.get(f"clusternet-hub-tunnel-{cluster_id}")
        if lease and (holder := lease.get("spec", {}).get("holderIdentity")):
            found[name] = holder
    return found


def _direct_readyz(pki: PKI, port: int, cluster_id: str) -> bool:
    """A proxied GET sent straight to one replica as the aggregator would send it."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(pki.front_proxy_client_cert, pki.front_proxy_client_key)
    url = f"https://127.0.0.1:{port}{components.SOCKETS_PATH}/{cluster_id}/proxy/direct/readyz"
    headers = {"X-Remote-User": "test-admin", "X-Remote-Group": "system:masters"}
    try:
        response = httpx2.get(url, headers=headers, verify=context, timeout=10)
    except httpx2.HTTPError:
        return False
    return response.status_code == 200 and response.text == "ok"


def test_two_replicas_serve_every_cluster(env: Clusters, tmp_path: Path) -> None:
    pki = PKI(env.env.run_dir / "pki")
    client = env.env.client(PARENT)
    ids = components.cluster_ids(client)
    assert set(ids) == set(env.children)
    first_child, second_child = env.children
    ports = [free_port(), free_port()]
    identities = [f"127.0.0.1:{port}" for port in ports]
    hubs = [_start_hub(env, pki, port, tmp_path / f"hub-{i}.log") for i, port in enumerate(ports)]
    try:
        with Relay([ports[0]]) as relay:
            wait_until(lambda: all(_direct_readyz_up(p) for p in ports), "both hubs serving")
            components.register_hub(client, relay.port, pki.ca_cert.read_bytes())
            # The environment's own hub goes: the agents reconnect through the relay, which
            # sends both tunnels to the first replica.
            env.env.stop_process(f"{PARENT}/{components.HUB_SERVICE}")
            wait_until(
                lambda: _holders(env, ids) == dict.fromkeys(ids, identities[0]) or None,
                "both tunnels held by the first replica",
                timeout=120,
            )
            # The second agent, restarted, lands on the second replica.
            relay.backends = [ports[1]]
            env.env.stop_process(f"{second_child}/clusternet-agent")
            env.env.start_process(f"{second_child}/clusternet-agent")
            wait_until(
                lambda: (
                    _holders(env, ids) == {first_child: identities[0], second_child: identities[1]}
                    or None
                ),
                "one tunnel on each replica",
                timeout=120,
            )
            relay.backends = list(ports)

            # Every cluster through every replica: one of the two is forwarded each time.
            for port in ports:
                for cluster_id in ids.values():
                    wait_until(
                        lambda p=port, c=cluster_id: _direct_readyz(pki, p, c),  # type: ignore[misc]
                        f"cluster {cluster_id} through the hub on port {port}",
                        timeout=30,
                    )
            # And through the parent's aggregator, many times.
            for _ in range(20):
                for cluster_id in ids.values():
                    assert components.tunnel_works(client, cluster_id)

            # One replica dies: its agent reconnects to the other, and proxying works again.
            hubs[1].terminate()
            hubs[1].wait(30)
            wait_until(
                lambda: _holders(env, ids) == dict.fromkeys(ids, identities[0]) or None,
                "the second agent's tunnel to move to the first replica",
                timeout=120,
            )
            for cluster_id in ids.values():
                wait_until(
                    lambda c=cluster_id: components.tunnel_works(client, c),  # type: ignore[misc]
                    f"cluster {cluster_id} through the parent after a replica died",
                    timeout=60,
                )
                assert _direct_readyz(pki, ports[0], cluster_id)
            # Unregistered before the relay goes, so that the environment stops cleanly.
            components.delete_hub_apiservices(client)
    finally:
        for hub in hubs:
            if hub.poll() is None:
                hub.terminate()
                hub.wait(30)


def _direct_readyz_up(port: int) -> bool:
    """The replica's /readyz answers (it is serving and its informers have synced)."""
    try:
        return httpx2.get(f"https://127.0.0.1:{port}/readyz", verify=False, timeout=5).text == "ok"
    except httpx2.HTTPError:
        return False
