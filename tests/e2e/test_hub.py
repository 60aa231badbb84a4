"""clusternet-hub behind the parent's aggregator: tunnels, the socket proxy, RBAC, failures.

Every request here goes kubectl (or an HTTP client) → parent kube-apiserver → aggregator →
clusternet-hub → websocket tunnel → clusternet-agent → child kube-apiserver.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
import yaml

from clusternet.kube import KubeClient, load_kubeconfig
from clusternet.local import components
from clusternet.local._rest import APIError, RestClient
from clusternet.local.environment import Options
from clusternet.local.pki import PKI
from clusternet.local.testing import (
    Clusters,
    Kubectl,
    kubectl_binary,
    start_environment,
    wait_until,
)

SOCKETS = "/apis/proxies.clusternet.io/v1alpha1/sockets"


def via_hub(clusters: Clusters, child: str, tmp_path: Path) -> Kubectl:
    """kubectl with the kubeconfig `clusternet local kubeconfig --via-hub` writes."""
    path = tmp_path / f"{child}-via-hub.kubeconfig"
    result = subprocess.run(
        [sys.executable, "-m", "clusternet.cli.main", "local", "kubeconfig", "--via-hub",
         child, "--run-dir", str(clusters.env.run_dir), "--output", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return Kubectl(path, f"{child}-via-hub", kubectl_binary())


def cluster_id(clusters: Clusters, child: str) -> str:
    return components.cluster_ids(clusters.env.client("parent"))[child]


def test_kubectl_through_the_hub_sees_only_that_child(clusters: Clusters, tmp_path: Path) -> None:
    marker = f"only-in-child1-{uuid.uuid4().hex[:6]}"
    clusters.kubectl("child1")("create", "namespace", marker)
    try:
        names = via_hub(clusters, "child1", tmp_path)("get", "ns", "-o", "name").stdout.split()
        assert f"namespace/{marker}" in names
        names = via_hub(clusters, "child2", tmp_path)("get", "ns", "-o", "name").stdout.split()
        assert f"namespace/{marker}" not in names
        assert "namespace/clusternet-system" in names
    finally:
        clusters.kubectl("child1")("delete", "namespace", marker, "--wait=false")


def test_the_hub_is_an_available_aggregated_api(clusters: Clusters) -> None:
    parent = clusters.kubectl("parent")
    apiservice = parent.json("get", "apiservice", "v1alpha1.proxies.clusternet.io")
    available = [c for c in apiservice["status"]["conditions"] if c["type"] == "Available"]
    assert available[0]["status"] == "True"
    resources = json.loads(parent("get", "--raw", "/apis/proxies.clusternet.io/v1alpha1").stdout)
    assert [r["name"] for r in resources["resources"]] == ["sockets", "sockets/proxy"]
    assert parent("get", "--raw", "/openapi/v3").returncode == 0


def test_watch_streams_events_as_they_happen(
    clusters: Clusters, namespace: str, tmp_path: Path
) -> None:
    kubectl = via_hub(clusters, "child1", tmp_path)
    child = clusters.kubectl("child1")
    watch = subprocess.Popen(
        [kubectl.binary, f"--kubeconfig={kubectl.kubeconfig}", "-n", namespace,
         "get", "configmaps", "-w", "-o", "name"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        lines = _lines(watch)
        child("-n", namespace, "create", "configmap", "first")
        assert _next_matching(lines, "configmap/first")
        # The watch is established now: this one can only arrive as a streamed event.
        child("-n", namespace, "create", "configmap", "second")
        assert _next_matching(lines, "configmap/second")
        assert watch.poll() is None
    finally:
        watch.kill()
        watch.wait()


def _lines(process: subprocess.Popen[bytes]) -> Iterator[str]:
    """The process's output lines as they come (unbuffered: a select on a buffered text
    stream could miss lines already read into its buffer)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    pending = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while selector.select(timeout=60):
            data = os.read(fd, 65536)
            if not data:
                return
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode().strip()
    raise AssertionError("no output from the watch within 60s")


def _next_matching(lines: Iterator[str], wanted: str) -> bool:
    return any(line == wanted for line in lines)


def _admin_tls(clusters: Clusters) -> ssl.SSLContext:
    pki = PKI(clusters.env.run_dir / "pki")
    context = ssl.create_default_context(cafile=pki.ca_cert)
    context.load_cert_chain(pki.admin_cert, pki.admin_key)
    return context


def _impersonation(clusters: Clusters, child: str) -> dict[str, str]:
    token = components.child_deployer_token(clusters.env.client(child))
    return {"Impersonate-User": "clusternet", "Impersonate-Extra-Clusternet-Token": token}


def test_websocket_upgrades_pass_through(clusters: Clusters, namespace: str) -> None:
    """A websocket watch (kube-apiserver serves watches over websockets too): the 101 and
    the frames after it travel through the aggregator, the hub and the tunnel."""
    url = (
        f"{clusters.state.cluster('parent').server}{SOCKETS}/{cluster_id(clusters, 'child1')}"
        f"/proxy/direct/api/v1/namespaces?watch=true&fieldSelector=metadata.name%3D{namespace}"
    )

    async def first_event() -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                url,
                ssl=_admin_tls(clusters),
                headers=_impersonation(clusters, "child1"),
                protocols=["binary.k8s.io"],
                origin="https://localhost",  # kube-apiserver's websocket handshake wants one
            ) as ws,
        ):
            message = await ws.receive(timeout=30)
            assert message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), message
            event: dict[str, Any] = json.loads(message.data)
            return event

    event = asyncio.run(first_event())
    assert event["type"] == "ADDED"
    assert event["object"]["metadata"]["name"] == namespace


def _user_kubeconfig(
    clusters: Clusters, tmp_path: Path, user: str, server: str, **identity: Any
) -> Kubectl:
    pki = PKI(clusters.env.run_dir / "pki")
    cert, key = pki.ca().issue_to_files(tmp_path, user, common_name=user, client=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(cert), "client-key": str(key), **identity},
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": "c", "user": user}}],
        "current-context": user,
    }  # fmt: skip
    path = tmp_path / f"{user}-{uuid.uuid4().hex[:6]}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return Kubectl(path, user, kubectl_binary())


def test_rbac_on_sockets_decides_who_reaches_which_child(
    clusters: Clusters, tmp_path: Path
) -> None:
    parent_server = clusters.state.cluster("parent").server
    ids = {child: cluster_id(clusters, child) for child in ("child1", "child2")}
    proxy = {child: f"{parent_server}{SOCKETS}/{ids[child]}/proxy/direct" for child in ids}
    token = {child: components.child_deployer_token(clusters.env.client(child)) for child in ids}

    # Without any RBAC: neither impersonating `clusternet` nor calling as oneself works.
    for identity in (
        {"as": "clusternet", "as-user-extra": {"clusternet-token": [token["child1"]]}},
        {},
    ):
        denied = _user_kubeconfig(clusters, tmp_path, "mallory", proxy["child1"], **identity)
        result = denied("get", "ns", check=False)
        assert result.returncode != 0
        assert "forbidden" in result.stderr.lower(), result.stderr  # fmt: skip

    # bob may use the socket of child1 only, carrying child credentials as his own extras.
    name = f"socket-user-{uuid.uuid4().hex[:6]}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [
            {"apiGroups": ["proxies.clusternet.io"], "resources": ["sockets/proxy"],
             "resourceNames": [ids["child1"]], "verbs": ["*"]},
            {"apiGroups": [""], "resources": ["users"], "resourceNames": ["bob"],
             "verbs": ["impersonate"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["userextras/clusternet-token"],
             "verbs": ["impersonate"]},
        ],
    }  # fmt: skip
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}],
    }
    parent = clusters.kubectl("parent")
    parent.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]}))
    try:
        for child, allowed in (("child1", True), ("child2", False)):
            bob = _user_kubeconfig(
                clusters, tmp_path, "bob", proxy[child],
                **{"as": "bob", "as-user-extra": {"clusternet-token": [token[child]]}},
            )  # fmt: skip
            # RBAC changes reach the authorizer's cache within moments: wait, don't sleep.
            result = wait_until(
                lambda bob=bob, allowed=allowed: (
                    r if ((r := bob("get", "ns", "-o", "name", check=False)).returncode == 0)
                    == allowed else None
                ),
                f"bob's access to {child}",
                timeout=30,
            )  # fmt: skip
            if allowed:
                assert "namespace/kube-system" in result.stdout.split()
            else:
                assert 'cannot get resource "sockets/proxy"' in result.stderr, result.stderr
    finally:
        parent("delete", "clusterrolebinding,clusterrole", name, check=False)


def test_errors_are_kubernetes_statuses(clusters: Clusters) -> None:
    client = clusters.env.client("parent")
    real = cluster_id(clusters, "child1")
    cases = [
        (f"{SOCKETS}/{uuid.uuid4()}/proxy/direct/version", 404, "is not found"),
        (f"{SOCKETS}/{real}/proxy/gopher/host/x", 400, "unknown proxy target 'gopher'"),
        (f"{SOCKETS}/{real}", 400, "only accepts the websocket upgrade"),
    ]
    for path, code, message in cases:
        with pytest.raises(APIError) as caught:
            client.get(path)
        assert caught.value.status == code, caught.value
        assert message in str(caught.value)
        assert caught.value.body["kind"] == "Status"


def test_many_concurrent_lists_and_watches_share_one_tunnel(
    clusters: Clusters, namespace: str, tmp_path: Path
) -> None:
    kubectl = via_hub(clusters, "child1", tmp_path)
    config = load_kubeconfig(kubectl.kubeconfig)

    async def run() -> tuple[list[int], list[str]]:
        async with KubeClient(config, timeout=60) as client:
            # Discovery once, so that the burst below is only proxied lists.
            await client.list("v1", "ConfigMap", namespace=namespace)
            lists = await asyncio.gather(*(client.list("v1", "Namespace") for _ in range(100)))
            started = asyncio.Event()
            ready = 0

            async def watch_one() -> str:
                nonlocal ready
                async with client.watch(
                    "v1",
                    "ConfigMap",
                    namespace=namespace,
                    label_selector="test=hub-watch",
                    timeout_seconds=120,
                ) as events:
                    ready += 1  # the child has answered: the watch is established
                    if ready == 20:
                        started.set()
                    async for event in events:
                        if event.type == "ADDED":
                            return str(event.object["metadata"]["name"])
                raise AssertionError("watch ended without an event")

            watches = [asyncio.create_task(watch_one()) for _ in range(20)]
            await started.wait()
            await client.create(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "ping", "labels": {"test": "hub-watch"}},
                },
                namespace=namespace,
            )
            names = await asyncio.wait_for(asyncio.gather(*watches), 60)
            return [len(listed["items"]) for listed in lists], names

    counts, names = asyncio.run(run())
    assert len(counts) == 100
    assert all(count > 0 for count in counts)
    assert names == ["ping"] * 20


def test_restarting_the_hub_and_killing_an_agent(tmp_path: Path) -> None:
    with start_environment(tmp_path, Options(children=1)) as clusters:
        env = clusters.env
        parent = env.client("parent")
        child_id = cluster_id(clusters, "child1")
        agent = env._live_state_process("child1/clusternet-agent")

        env.restart_process("parent/clusternet-hub")
        wait_until(lambda: components.tunnel_works(parent, child_id), "the agent to reconnect")
        assert agent.alive(), "the agent was not restarted: it reconnected by itself"
        via = via_hub(clusters, "child1", tmp_path)
        assert "namespace/kube-system" in via("get", "ns", "-o", "name").stdout.split()

        env.kill_process("child1/clusternet-agent")  # SIGKILL, supervisor included
        killed = time.monotonic()
        message = wait_until(
            lambda: _disconnected_message(parent, child_id), "the disconnected error", timeout=30
        )
        print(f"disconnected error {time.monotonic() - killed:.2f}s after the agent was killed")
        assert message == (f"cannot proxy through cluster {child_id}, whose agent is disconnected")


def _disconnected_message(client: RestClient, child_id: str) -> str | None:
    try:
        client.get(f"{SOCKETS}/{child_id}/proxy/direct/readyz", timeout=5)
    except APIError as err:
        if err.status == 400:
            return str(err.body["message"])
    return None


def test_unauthenticated_callers_of_the_hub_get_401(clusters: Clusters) -> None:
    """Straight to the hub's port with no client certificate: no identity, no service."""
    hub = clusters.env._live_state_process("parent/clusternet-hub")
    port = next(a.split("=")[1] for a in hub.argv if a.startswith("--secure-port="))
    pki = PKI(clusters.env.run_dir / "pki")
    response = httpx2.get(
        f"https://localhost:{port}/apis/proxies.clusternet.io/v1alpha1",
        verify=ssl.create_default_context(cafile=pki.ca_cert),
        headers={"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"},
    )
    assert response.status_code == 401
    assert response.json()["reason"] == "Unauthorized"
    healthz = httpx2.get(
        f"https://localhost:{port}/readyz", verify=ssl.create_default_context(cafile=pki.ca_cert)
    )
    assert healthz.text == "ok"
