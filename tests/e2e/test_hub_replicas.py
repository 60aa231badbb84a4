"""Two clusternet-hub replicas behind one aggregator (issue 11, docs/hub.md "Several replicas").

A private environment's hub is replaced by two hub processes with peering on, behind a TCP
round-robin relay the APIServices point at.  Each replica holds one agent's tunnel; proxy
requests for every cluster work on both replicas (the other one forwards), through the
parent many times, and again after one replica is killed and its agent reconnects.
"""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from clusternet.apis import known
from clusternet.local import components
from clusternet.local.environment import PARENT, Options, free_port
from clusternet.local.pki import PKI
from clusternet.local.testing import Clusters, Relay, start_environment, wait_until

LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{known.SYSTEM_NAMESPACE}/leases"


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
        # verified for the name the replicas share, as the hub chart sets it up
        f"--peer-tls-server-name={components.HUB_SERVICE}.{known.SYSTEM_NAMESPACE}.svc",
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

            # One replica is killed (-9): its agent reconnects to the other, and proxying and
            # the shadow API work again.
            hubs[1].kill()
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
            template = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "after-kill", "namespace": "default"},
                "data": {"k": "v"},
            }
            shadow = "/apis/shadow/v1alpha1/namespaces/default/configmaps"
            kubectl = env.kubectl("parent")
            wait_until(
                lambda: (
                    kubectl(
                        "create",
                        "--raw",
                        shadow,
                        "-f",
                        "-",
                        input=json.dumps(template),
                        check=False,
                    ).returncode
                    == 0
                ),
                "a shadow template written after a replica died",
                timeout=60,
            )
            stored = json.loads(kubectl("get", "--raw", f"{shadow}/after-kill").stdout)
            assert stored["data"] == {"k": "v"}
            kubectl("delete", "--raw", f"{shadow}/after-kill")
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
