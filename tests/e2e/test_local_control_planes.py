"""`clusternet local up` gives real, working clusters (issue: local control planes)."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from clusternet.local._rest import APIError, RestClient
from clusternet.local.pki import PKI
from clusternet.local.testing import Clusters, Kubectl, wait_until


def test_deployment_becomes_ready_on_kwok_nodes(clusters: Clusters, namespace: str) -> None:
    kubectl = clusters.kubectl("child1")
    kubectl("-n", namespace, "create", "deployment", "web", "--image=nginx", "--replicas=3")
    kubectl("-n", namespace, "expose", "deployment", "web", "--port=80")
    kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=90s")
    deployment = kubectl.json("-n", namespace, "get", "deployment", "web")
    assert deployment["status"]["readyReplicas"] == 3
    pods = kubectl.json("-n", namespace, "get", "pods", "-l", "app=web")["items"]
    assert {p["spec"]["nodeName"].startswith("child1-node-") for p in pods} == {True}

    kubectl(
        "-n",
        namespace,
        "wait",
        "endpointslice",
        "-l",
        "kubernetes.io/service-name=web",
        "--for=jsonpath={.endpoints[2].conditions.ready}=true",
        "--timeout=60s",
    )
    slices = kubectl.json(
        "-n", namespace, "get", "endpointslices", "-l", "kubernetes.io/service-name=web"
    )["items"]
    assert sum(len(s.get("endpoints") or []) for s in slices) == 3


def test_nodes_have_the_capacity_asked_for(clusters: Clusters) -> None:
    for child in clusters.children:
        nodes = clusters.kubectl(child).json("get", "nodes")["items"]
        assert len(nodes) == clusters.state.options["nodes_per_child"]
        for node in nodes:
            assert node["status"]["capacity"] == {"cpu": "8", "memory": "32Gi", "pods": "110"}
            assert node["status"]["allocatable"] == node["status"]["capacity"]
            # Nothing may dial a node: its address is loopback.
            assert {
                a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"
            } == {"127.0.0.1"}


def test_parent_is_ready_and_serves_the_stamped_version(clusters: Clusters) -> None:
    kubectl = clusters.kubectl("parent")
    assert kubectl("get", "--raw", "/readyz").stdout == "ok"
    version = json.loads(kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == "v1.36.3"
    assert (version["major"], version["minor"]) == ("1", "36")


def test_bootstrap_tokens_authenticate_in_the_parent(clusters: Clusters) -> None:
    token_id, secret = uuid.uuid4().hex[:6], uuid.uuid4().hex[:16]
    clusters.kubectl("parent").apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
                "type": "bootstrap.kubernetes.io/token",
                "stringData": {
                    "token-id": token_id,
                    "token-secret": secret,
                    "usage-bootstrap-authentication": "true",
                },
            }
        )
    )
    parent = clusters.state.cluster("parent")
    pki = PKI(Path(clusters.state.run_dir) / "pki")
    client = RestClient(parent.server, pki.ca_cert, token=f"{token_id}.{secret}")
    review = client.post(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    user = review["status"]["userInfo"]
    assert user["username"] == f"system:bootstrap:{token_id}"
    assert "system:bootstrappers" in user["groups"]

    wrong = RestClient(parent.server, pki.ca_cert, token=f"{token_id}.{'0' * 16}")
    with pytest.raises(APIError) as caught:
        wrong.get("/api/v1/namespaces")
    assert caught.value.status == 401


class _DiscoveryHandler(BaseHTTPRequestHandler):
    group = ""

    def do_GET(self) -> None:
        if self.path.split("?")[0] == f"/apis/{self.group}/v1alpha1":
            body = json.dumps(
                {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": f"{self.group}/v1alpha1",
                    "resources": [
                        {
                            "name": "widgets",
                            "singularName": "widget",
                            "namespaced": True,
                            "kind": "Widget",
                            "verbs": ["get", "list"],
                        }
                    ],
                }
            ).encode()
            self.send_response(200)
        else:
            body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":404}'
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def aggregated_server(clusters: Clusters, tmp_path: Path) -> Iterator[tuple[int, str, PKI]]:
    """A tiny HTTPS server that only trusts the parent's front-proxy client certificate."""
    pki = PKI(Path(clusters.state.run_dir) / "pki")
    cert, key = pki.serving_cert_for_service(tmp_path, "svc", "test-aggregated", "default")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki.front_proxy_ca_cert)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    handler = type("Handler", (_DiscoveryHandler,), {"group": group})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], group, pki
    server.shutdown()


def test_apiservice_behind_externalname_localhost_becomes_available(
    clusters: Clusters, aggregated_server: tuple[int, str, PKI]
) -> None:
    port, group, pki = aggregated_server
    kubectl = clusters.kubectl("parent")
    kubectl.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "test-aggregated", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "localhost"},
            }
        )
    )
    apiservice = f"v1alpha1.{group}"
    kubectl.apply(
        json.dumps(
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": apiservice},
                "spec": {
                    "group": group,
                    "version": "v1alpha1",
                    "groupPriorityMinimum": 1000,
                    "versionPriority": 100,
                    "caBundle": base64.b64encode(pki.ca_cert.read_bytes()).decode(),
                    "service": {"namespace": "default", "name": "test-aggregated", "port": port},
                },
            }
        )
    )
    try:
        kubectl("wait", "--for=condition=Available", f"apiservice/{apiservice}", "--timeout=90s")
        served = json.loads(kubectl("get", "--raw", f"/apis/{group}/v1alpha1").stdout)
        assert served["resources"][0]["kind"] == "Widget"
        # The hub's shadow API mirrors an aggregated API registered after it started ...
        wait_until(lambda: "widgets" in shadow_resources(kubectl), "shadow mirrors widgets")
    finally:
        # An unavailable aggregated API blocks namespace deletion: remove it first.
        kubectl("delete", "apiservice", apiservice, "--ignore-not-found")
        kubectl("delete", "service", "-n", "default", "test-aggregated", "--ignore-not-found")
    # ... and forgets it when it goes, even while the parent's discovery still lists it
    # (a stale "widgets" once took the plural from a CRD created later).
    wait_until(lambda: "widgets" not in shadow_resources(kubectl), "shadow forgets widgets")


def shadow_resources(parent: Kubectl) -> set[str]:
    listed = json.loads(parent("get", "--raw", "/apis/shadow/v1alpha1").stdout)
    return {r["name"] for r in listed["resources"]}
