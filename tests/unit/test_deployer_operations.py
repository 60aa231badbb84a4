"""apply / prune / offload against an in-memory API server: order, per-object errors, prune
only of what the Description still owns (the e2e tests prove a real server agrees)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from clusternet.apis import known
from clusternet.deployer import apply_description, offload
from clusternet.kube import ClusterConfig, KubeClient

RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "configmaps", "namespaced": True, "kind": "ConfigMap", "verbs": ["get"]},
        {"name": "namespaces", "namespaced": False, "kind": "Namespace", "verbs": ["get"]},
    ],
}
OWNER = "clusternet-abcde.app-generic"


class FakeServer:
    """Namespaces and ConfigMaps; a ConfigMap named ``Bad`` is refused with a 422."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if path in ("/api", "/apis"):
            return httpx2.Response(200, json={"versions": ["v1"], "groups": []})
        if path == "/api/v1":
            return httpx2.Response(200, json=RESOURCES)
        self.requests.append((request.method, path))
        if request.method == "PATCH":
            body = json.loads(request.content)
            if body["metadata"]["name"] == "Bad":
                return status(422, "Invalid", 'ConfigMap "Bad" is invalid: metadata.name: bad')
            body["status"] = {"observed": True}
            self.objects[path] = body
            return httpx2.Response(200, json=body)
        if path not in self.objects:
            return status(404, "NotFound", f"{path} not found")
        if request.method == "DELETE":
            del self.objects[path]
            return httpx2.Response(200, json={"kind": "Status", "status": "Success"})
        return httpx2.Response(200, json=self.objects[path])


def status(code: int, reason: str, message: str) -> httpx2.Response:
    return httpx2.Response(
        code, json={"kind": "Status", "code": code, "reason": reason, "message": message}
    )


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[FakeServer, KubeClient]]:
    server = FakeServer()
    client = KubeClient(
        ClusterConfig(server="https://child.test"),
        transport_factory=lambda _tls: httpx2.MockTransport(server),
    )
    async with client:
        yield server, client


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "a"}}


def description(*objects: dict[str, Any], deployed: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    raw = [base64.b64encode(json.dumps(o).encode()).decode() for o in objects]
    return {
        "metadata": {"namespace": "clusternet-abcde", "name": "app-generic"},
        "spec": {"deployer": "Generic", "raw": raw},
        "status": {
            "manifestStatuses": [
                {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "a", "name": n}
                for n in deployed
            ]
        },
    }


def stored(server: FakeServer, name: str, owner: str = OWNER) -> None:
    server.objects[f"/api/v1/namespaces/a/configmaps/{name}"] = {
        **cm(name),
        "metadata": {
            "name": name,
            "namespace": "a",
            "uid": f"uid-{name}",
            "annotations": {known.OWNED_BY_DESCRIPTION_ANNOTATION: owner},
        },
    }


async def test_namespace_first_errors_per_object_and_prune(
    cluster: tuple[FakeServer, KubeClient],
) -> None:
    server, client = cluster
    stored(server, "old")
    stored(server, "taken", owner="clusternet-abcde.other-generic")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
    outcome = await apply_description(
        client, description(cm("x"), cm("Bad"), ns, deployed=["x", "old", "taken", "gone"])
    )
    patches = [path for method, path in server.requests if method == "PATCH"]
    assert patches[0] == "/api/v1/namespaces/a"  # before the objects in it
    assert sorted(patches[1:]) == [
        "/api/v1/namespaces/a/configmaps/Bad",
        "/api/v1/namespaces/a/configmaps/x",
    ]
    # pruned: "old" (still ours); kept: "taken" (another Description owns it now)
    assert "/api/v1/namespaces/a/configmaps/old" not in server.objects
    assert "/api/v1/namespaces/a/configmaps/taken" in server.objects
    assert ("DELETE", "/api/v1/namespaces/a/configmaps/taken") not in server.requests
    applied = server.objects["/api/v1/namespaces/a/configmaps/x"]
    assert applied["metadata"]["annotations"][known.OWNED_BY_DESCRIPTION_ANNOTATION] == OWNER
    assert outcome.failed
    assert outcome.status["phase"] == "Failure"
    assert outcome.status["reason"] == (
        'ConfigMap a/Bad: ConfigMap "Bad" is invalid: metadata.name: bad'
    )
    assert [(s["kind"], s["name"], s.get("observedStatus")) for s in
            outcome.status["manifestStatuses"]] == [
        ("ConfigMap", "x", {"observed": True}), ("Namespace", "a", {"observed": True}),  # raw order
    ]  # fmt: skip


async def test_success(cluster: tuple[FakeServer, KubeClient]) -> None:
    _, client = cluster
    outcome = await apply_description(client, description(cm("x")))
    assert not outcome.failed
    assert outcome.status["phase"] == "Success"
    assert outcome.status["reason"] is None


async def test_offload_deletes_only_what_it_owns(cluster: tuple[FakeServer, KubeClient]) -> None:
    server, client = cluster
    stored(server, "x")
    stored(server, "earlier")
    stored(server, "taken", owner="clusternet-abcde.other-generic")
    errors = await offload(
        client, description(cm("x"), cm("taken"), cm("never-made"), deployed=["earlier"])
    )
    assert errors == []
    assert set(server.objects) == {"/api/v1/namespaces/a/configmaps/taken"}
