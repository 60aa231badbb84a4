"""Isolation of the clusters' credentials, proven with real requests to the parent.

Every check uses a real identity of this environment: a child agent's parent credentials
(its ServiceAccount token from the child's ``clusternet-system/parent-cluster`` Secret), the
bootstrap token, or a forged front-proxy header sent straight to the hub.  kubectl runs with
``--kubeconfig=/dev/null`` and only ``--token``: with the admin kubeconfig the client
certificate would authenticate first and prove nothing.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet.apis import known
from clusternet.local.testing import Clusters, Kubectl, kubectl_binary, wait_until

SOCKETS = "/apis/proxies.clusternet.io/v1alpha1/sockets"
CRR = "clusterregistrationrequests.clusters.clusternet.io"
MC = "managedclusters.clusters.clusternet.io"


def b64decode(value: str) -> str:
    return base64.b64decode(value).decode()


class As:
    """kubectl against the parent as the holder of ``token`` and nothing else."""

    def __init__(self, server: str, ca_file: Path, token: str) -> None:
        self.base = [
            kubectl_binary(),
            "--kubeconfig=/dev/null",
            f"--server={server}",
            f"--certificate-authority={ca_file}",
            f"--token={token}",
        ]

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.base, *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=60,
            check=False,
        )

    def can(self, *args: str) -> bool:
        result = self("auth", "can-i", *args)
        assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
        return result.stdout.strip() == "yes"

    def whoami(self) -> subprocess.CompletedProcess[str]:
        return self("auth", "whoami", "-o", "json")


@pytest.fixture(scope="module")
def parent(clusters: Clusters) -> Kubectl:
    return clusters.kubectl("parent")


@pytest.fixture(scope="module")
def server(clusters: Clusters) -> str:
    return clusters.state.cluster("parent").server


@pytest.fixture(scope="module")
def ca_file(clusters: Clusters, tmp_path_factory: pytest.TempPathFactory) -> Path:
    secret = clusters.kubectl(clusters.children[0]).json(
        "get", "secret", "-n", known.SYSTEM_NAMESPACE, known.PARENT_CLUSTER_SECRET_NAME
    )
    path = tmp_path_factory.mktemp("security") / "parent-ca.crt"
    path.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
    return path


def forbidden(result: subprocess.CompletedProcess[str]) -> bool:
    """Refused by the authorizer (kubectl words it "Forbidden" or "is forbidden")."""
    return result.returncode != 0 and "forbidden" in result.stderr.lower()


def agent_token(clusters: Clusters, child: str) -> str:
    secret = clusters.kubectl(child).json(
        "get", "secret", "-n", known.SYSTEM_NAMESPACE, known.PARENT_CLUSTER_SECRET_NAME
    )
    return b64decode(secret["data"]["token"])


@pytest.fixture(scope="module")
def ids(clusters: Clusters) -> dict[str, str]:
    return {n: mc["spec"]["clusterId"] for n, mc in clusters.managed_clusters().items()}


@pytest.fixture(scope="module")
def child1(clusters: Clusters, server: str, ca_file: Path) -> As:
    return As(server, ca_file, agent_token(clusters, clusters.children[0]))


def test_the_agent_token_is_the_clusters_service_account(clusters: Clusters, child1: As) -> None:
    ns1 = clusters.dedicated_namespaces()[clusters.children[0]]
    user = json.loads(child1.whoami().stdout)["status"]["userInfo"]["username"]
    assert user.startswith(f"system:serviceaccount:{ns1}:"), user


def test_a_child_cannot_touch_another_childs_namespace(clusters: Clusters, child1: As) -> None:
    namespaces = clusters.dedicated_namespaces()
    ns1, ns2 = (namespaces[c] for c in clusters.children[:2])
    # Its own namespace: everything (the positive control).
    assert child1.can("get", "secrets", "-n", ns1)
    assert child1.can("create", "descriptions.apps.clusternet.io", "-n", ns1)
    for verb in ("get", "list", "create", "update", "delete", "watch"):
        for resource in (
            "secrets",
            "configmaps",
            "managedclusters.clusters.clusternet.io",
            "descriptions.apps.clusternet.io",
            "bases.apps.clusternet.io",
        ):
            assert not child1.can(verb, resource, "-n", ns2), (verb, resource)
    # Real requests, not only the authorizer's opinion.
    listed = child1("get", "secrets", "-n", ns2)
    assert listed.returncode != 0
    assert forbidden(listed)
    created = child1("create", "configmap", "intruder", "-n", ns2)
    assert forbidden(created)
    updated = child1("label", MC, "--all", "-n", ns2, "pwned=true")
    assert forbidden(updated)


def test_a_child_reads_no_secret_outside_its_namespace(clusters: Clusters, child1: As) -> None:
    # Upstream grants `get` on every Secret (spec §12.10); ours does not.
    assert not child1.can("get", "secrets", "--all-namespaces")
    assert not child1.can("list", "secrets", "--all-namespaces")
    ns2 = clusters.dedicated_namespaces()[clusters.children[1]]
    for namespace in ("kube-system", known.SYSTEM_NAMESPACE, "clusternet-reserved", "default", ns2):
        assert not child1.can("get", "secrets", "-n", namespace), namespace
    deployer = child1("get", "secret", known.CHILD_CLUSTER_SECRET_NAME, "-n", ns2)
    assert forbidden(deployer)
    assert forbidden(child1("get", "secrets", "-A"))
    # Cluster-wide it has its own request and nothing else of interest.
    assert not child1.can("list", CRR)
    assert not child1.can("list", MC, "--all-namespaces")
    assert not child1.can("create", "namespaces")
    assert not child1.can("create", "clusterrolebindings")


def test_a_child_cannot_use_another_childs_socket(
    clusters: Clusters, child1: As, ids: dict[str, str]
) -> None:
    id1, id2 = (ids[c] for c in clusters.children[:2])
    assert child1.can("get", f"sockets.proxies.clusternet.io/{id1}")
    assert not child1.can("get", f"sockets.proxies.clusternet.io/{id2}")
    assert not child1.can("get", f"sockets.proxies.clusternet.io/{id2}", "--subresource=proxy")
    own = child1("get", "--raw", f"{SOCKETS}/{id1}/proxy/direct/readyz")
    assert own.stdout == "ok", own.stderr
    other = child1("get", "--raw", f"{SOCKETS}/{id2}/proxy/direct/readyz")
    assert other.returncode != 0
    assert forbidden(other), other.stderr
    dial = child1("get", "--raw", f"{SOCKETS}/{id2}")
    assert forbidden(dial), dial.stderr


def test_a_bootstrap_token_only_registers(clusters: Clusters, server: str, ca_file: Path) -> None:
    token = clusters.state.bootstrap_token
    assert token
    bootstrap = As(server, ca_file, token)
    assert bootstrap.can("create", CRR)
    assert bootstrap.can("get", f"{CRR}/clusternet-{uuid.uuid4()}")
    denied = [
        ("list", CRR),
        ("update", CRR),
        ("delete", CRR),
        ("get", "secrets", "-A"),
        ("get", "secrets", "-n", "kube-system"),
        ("list", MC, "-A"),
        ("create", "namespaces"),
        ("get", "namespaces"),
        ("create", "serviceaccounts/token", "-n", "default"),
        ("get", "sockets.proxies.clusternet.io"),
        ("create", "subscriptions.apps.clusternet.io"),
        ("get", "manifests.apps.clusternet.io", "-A"),
        ("create", "pods", "-n", "default"),
    ]
    for check in denied:
        assert not bootstrap.can(*check), check
    assert forbidden(bootstrap("get", "secrets", "-n", "kube-system"))
    assert forbidden(bootstrap("get", MC, "-A"))


# -- revocation -------------------------------------------------------------------------------


@pytest.fixture
def registered(parent: Kubectl) -> Iterator[dict[str, Any]]:
    """A cluster registered by hand (no agent): its approved request."""
    cluster_id = str(uuid.uuid4())
    name = f"clusternet-{cluster_id}"
    request = {
        "apiVersion": "clusters.clusternet.io/v1beta1",
        "kind": "ClusterRegistrationRequest",
        "metadata": {"name": name},
        "spec": {
            "clusterId": cluster_id,
            "clusterName": f"sec-{cluster_id[:8]}",
            "clusterType": "EdgeCluster",
            "syncMode": "Pull",
        },
    }
    parent("create", "-f", "-", input=json.dumps(request))

    def approved() -> dict[str, Any] | None:
        got: dict[str, Any] = parent.json("get", CRR, name)
        return got if (got.get("status") or {}).get("token") else None

    try:
        yield wait_until(approved, "the request to be approved with a token", timeout=60)
    finally:
        got = parent("get", CRR, name, "-o", "json", check=False)
        parent("delete", CRR, name, "--wait=false", check=False)
        if got.returncode == 0:
            namespace = (json.loads(got.stdout).get("status") or {}).get("dedicatedNamespace")
            if namespace:
                parent("delete", "namespace", namespace, "--wait=false", check=False)


def token_of(request: dict[str, Any]) -> str:
    return b64decode(request["status"]["token"])


def revoked(identity: As) -> bool:
    result = identity.whoami()
    return result.returncode != 0 and "Unauthorized" in result.stderr


def test_deleting_the_managed_cluster_revokes_its_token(
    parent: Kubectl, registered: dict[str, Any], server: str, ca_file: Path
) -> None:
    identity = As(server, ca_file, token_of(registered))
    assert identity.whoami().returncode == 0
    status = registered["status"]
    parent("delete", MC, status["managedClusterName"], "-n", status["dedicatedNamespace"])
    # kube-apiserver caches an authenticated token for 10 s.
    wait_until(lambda: revoked(identity), "the token to be rejected", timeout=60)
    cluster_id = registered["spec"]["clusterId"]
    gone = parent("get", "clusterrole", f"clusternet-{cluster_id}", check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr
    events = parent.json(
        "get",
        "events",
        "-A",
        "--field-selector",
        f"involvedObject.name={registered['metadata']['name']},reason=CredentialsRevoked",
    )
    assert events["items"], "the revocation is announced on the request"


def test_denying_an_approved_request_revokes_its_token(
    parent: Kubectl, registered: dict[str, Any], server: str, ca_file: Path
) -> None:
    identity = As(server, ca_file, token_of(registered))
    assert identity.whoami().returncode == 0
    name = registered["metadata"]["name"]
    parent(
        "patch",
        CRR,
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"result": "Denied"}}),
    )
    wait_until(lambda: revoked(identity), "the token to be rejected", timeout=60)
    status = wait_until(
        lambda: (s := parent.json("get", CRR, name)["status"]).get("token") is None and s,
        "the credentials to be blanked from the Denied status",
    )
    assert status["result"] == "Denied"
    assert status.get("caCertificate") is None


# -- the hub ------------------------------------------------------------------------------------


def hub_port(clusters: Clusters) -> int:
    for record in clusters.state.processes:
        if record.name.endswith("clusternet-hub"):
            for arg in record.argv:
                if arg.startswith("--secure-port="):
                    return int(arg.split("=", 1)[1])
    raise AssertionError("no clusternet-hub process in this environment")


def status_of(url: str, headers: dict[str, str]) -> int:
    """The status of a GET straight to the hub, over TLS without a client certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the hub's own serving certificate
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_the_hub_rejects_forged_front_proxy_headers(
    clusters: Clusters, ids: dict[str, str]
) -> None:
    cluster_id = ids[clusters.children[0]]
    url = f"https://127.0.0.1:{hub_port(clusters)}{SOCKETS}/{cluster_id}/proxy/direct/readyz"
    forged = {
        "X-Remote-User": "system:admin",
        "X-Remote-Group": "system:masters",
        "X-Remote-Extra-Clusternet-Token": "x",
    }
    # A bearer token, even a valid one, is not how the hub authenticates.
    bearer = {"Authorization": f"Bearer {agent_token(clusters, clusters.children[0])}"}
    assert status_of(url, forged) == 401
    assert status_of(url, {**forged, **bearer}) == 401
    assert status_of(url, {}) == 401


def test_the_agent_only_dials_its_own_api_server(
    clusters: Clusters, parent: Kubectl, ids: dict[str, str], server: str
) -> None:
    cluster_id = ids[clusters.children[0]]
    host = server.removeprefix("https://")  # the parent's API server: not on the allow-list
    result = parent(
        "get", "--raw", f"{SOCKETS}/{cluster_id}/proxy/https/{host}/readyz", check=False
    )
    assert result.returncode != 0
    assert "does not allow connections" in result.stderr, result.stderr
    child = clusters.state.cluster(clusters.children[0]).server.removeprefix("https://")
    allowed = parent("get", "--raw", f"{SOCKETS}/{cluster_id}/proxy/https/{child}/readyz")
    assert allowed.stdout == "ok"


# -- credentials at rest ------------------------------------------------------------------------


def secrets_of_this_environment(clusters: Clusters) -> dict[str, str]:
    """Every credential the environment minted: what must not leak."""
    parent = clusters.kubectl("parent")
    found: dict[str, str] = {}
    token = clusters.state.bootstrap_token or ""
    found["bootstrap token"] = token
    found["bootstrap token secret"] = token.partition(".")[2]
    tokens = parent.json(
        "get",
        "secrets",
        "-A",
        "-l",
        known.CLUSTER_ID_LABEL,
        "--field-selector",
        "type=kubernetes.io/service-account-token",
    )
    for item in tokens["items"]:
        if (item.get("data") or {}).get("token"):
            found[f"SA token {item['metadata']['name']}"] = b64decode(item["data"]["token"])
    for child, namespace in clusters.dedicated_namespaces().items():
        deployer = parent(
            "get",
            "secret",
            known.CHILD_CLUSTER_SECRET_NAME,
            "-n",
            namespace,
            "-o",
            "json",
            check=False,
        )
        if deployer.returncode == 0:
            found[f"deployer token of {child}"] = b64decode(
                json.loads(deployer.stdout)["data"]["token"]
            )
    return {k: v for k, v in found.items() if len(v) >= 6}


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return sorted(name for name, value in secrets.items() if value in text)


def test_credentials_appear_in_no_log_event_argument_or_status(clusters: Clusters) -> None:
    secrets = secrets_of_this_environment(clusters)
    assert any(k.startswith("SA token") for k in secrets)
    assert any(k.startswith("deployer token") for k in secrets)
    problems: list[str] = []
    logs = Path(clusters.state.run_dir) / "logs"
    for log in sorted(logs.glob("*.log")):
        if found := leaks(log.read_text(errors="replace"), secrets):
            problems.append(f"log {log.name}: {found}")
    for record in clusters.state.processes:
        try:
            cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        cmdline = cmdline.replace("\0", " ")
        if found := leaks(cmdline, secrets):
            problems.append(f"arguments of {record.name}: {found}")
        assert not re.search(r"--token=\S|--cluster-reg-token=\S", cmdline), record.name
    for context in clusters.names:
        events = clusters.kubectl(context)("get", "events", "-A", "-o", "json").stdout
        if found := leaks(events, secrets):
            problems.append(f"events of {context}: {found}")
    parent = clusters.kubectl("parent")
    if found := leaks(parent("get", MC, "-A", "-o", "json").stdout, secrets):
        problems.append(f"ManagedClusters: {found}")
    requests = json.loads(parent("get", CRR, "-o", "json").stdout)
    for item in requests["items"]:
        # status.token is where the API hands the agent its credentials (base64, like a
        # Secret): required there, and nowhere else in the object.
        (item.get("status") or {}).pop("token", None)
        if found := leaks(json.dumps(item), secrets):
            problems.append(f"request {item['metadata']['name']}: {found}")
    assert problems == []
