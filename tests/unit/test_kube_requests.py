"""What the client sends for each operation (the e2e tests prove the server agrees)."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from clusternet.kube import (
    ClusterConfig,
    KubeClient,
    PatchType,
    Preconditions,
    PropagationPolicy,
)

RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "configmaps", "namespaced": True, "kind": "ConfigMap", "verbs": ["get"]},
        {"name": "namespaces", "namespaced": False, "kind": "Namespace", "verbs": ["get"]},
    ],
}


class Server:
    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.answer = answer or {"kind": "ConfigMap"}
        self.seen: list[tuple[str, str, dict[str, str], str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path in ("/api", "/apis"):
            return httpx2.Response(200, json={"versions": ["v1"], "groups": []})
        if request.url.path == "/api/v1":
            return httpx2.Response(200, json=RESOURCES)
        body = json.loads(request.content) if request.content else None
        self.seen.append(
            (
                request.method,
                request.url.path,
                dict(request.url.params),
                request.headers.get("Content-Type", ""),
                body,
            )
        )
        return httpx2.Response(200, json=self.answer)


@pytest.fixture
async def server_and_client() -> Any:
    server = Server()
    client = KubeClient(
        ClusterConfig(server="https://c.test"),
        transport_factory=lambda _tls: httpx2.MockTransport(server),
    )
    async with client:
        yield server, client


CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"}}
CM_PATH = "/api/v1/namespaces/ns/configmaps/cm"


@pytest.mark.parametrize(
    ("patch_type", "kwargs", "params"),
    [
        (PatchType.JSON, {}, {}),
        (PatchType.MERGE, {"dry_run": True}, {"dryRun": "All"}),
        (PatchType.STRATEGIC, {"field_manager": "m"}, {"fieldManager": "m"}),
        (PatchType.APPLY, {"field_manager": "m"}, {"fieldManager": "m", "force": "false"}),
        (
            PatchType.APPLY,
            {"field_manager": "m", "force": True},
            {"fieldManager": "m", "force": "true"},
        ),
    ],
)
async def test_patch_content_types_and_parameters(
    server_and_client: Any, patch_type: PatchType, kwargs: dict[str, Any], params: dict[str, str]
) -> None:
    server, client = server_and_client
    await client.patch(
        "v1", "ConfigMap", "cm", {"data": {}}, patch_type=patch_type, namespace="ns", **kwargs
    )
    assert server.seen == [("PATCH", CM_PATH, params, str(patch_type), {"data": {}})]


async def test_apply_sends_the_object_as_an_apply_patch(server_and_client: Any) -> None:
    server, client = server_and_client
    await client.apply(CM, field_manager="clusternet", force=True)
    assert server.seen == [
        (
            "PATCH",
            CM_PATH,
            {"fieldManager": "clusternet", "force": "true"},
            "application/apply-patch+yaml",
            CM,
        )
    ]
    with pytest.raises(ValueError, match="field_manager"):
        await client.patch("v1", "ConfigMap", "cm", CM, patch_type=PatchType.APPLY, namespace="ns")
    with pytest.raises(ValueError, match="force"):
        await client.patch("v1", "ConfigMap", "cm", {}, namespace="ns", force=True)


async def test_delete_sends_delete_options(server_and_client: Any) -> None:
    server, client = server_and_client
    await client.delete(
        "v1",
        "ConfigMap",
        "cm",
        namespace="ns",
        propagation_policy=PropagationPolicy.FOREGROUND,
        grace_period_seconds=0,
        preconditions=Preconditions(resource_version="42"),
        dry_run=True,
    )
    await client.delete_collection("v1", "ConfigMap", namespace="ns", label_selector="a=b")
    assert server.seen == [
        (
            "DELETE",
            CM_PATH,
            {},
            "application/json",
            {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "propagationPolicy": "Foreground",
                "gracePeriodSeconds": 0,
                "preconditions": {"resourceVersion": "42"},
                "dryRun": ["All"],
            },
        ),
        (
            "DELETE",
            "/api/v1/namespaces/ns/configmaps",
            {"labelSelector": "a=b"},
            "application/json",
            {"apiVersion": "v1", "kind": "DeleteOptions"},
        ),
    ]


async def test_writes_target_the_object_and_its_subresource(server_and_client: Any) -> None:
    server, client = server_and_client
    await client.create(CM, field_manager="m")
    await client.update(CM)
    await client.update_status(CM)
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    assert [(method, path, params) for method, path, params, _, _ in server.seen] == [
        ("POST", "/api/v1/namespaces/ns/configmaps", {"fieldManager": "m"}),
        ("PUT", CM_PATH, {}),
        ("PUT", f"{CM_PATH}/status", {}),
        ("POST", "/api/v1/namespaces", {}),
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.get("v1", "ConfigMap", "cm"), "namespaced: a namespace is required"),
        (lambda c: c.get("v1", "Namespace", "x", namespace="ns"), "cluster-scoped"),
        (lambda c: c.create(CM, namespace="other"), "differs from the object's 'ns'"),
        (lambda c: c.update({**CM, "metadata": {"namespace": "ns"}}), "has no metadata.name"),
        (lambda c: c.create({"kind": "ConfigMap"}), "has no apiVersion"),
    ],
)
async def test_misaddressed_requests_fail_before_sending(
    server_and_client: Any, call: Any, message: str
) -> None:
    server, client = server_and_client
    with pytest.raises(ValueError, match=message):
        await call(client)
    assert server.seen == []


async def test_list_items_get_their_kind() -> None:
    server = Server(
        {
            "kind": "ConfigMapList",
            "apiVersion": "v1",
            "metadata": {},
            "items": [{"metadata": {"name": "a"}}],
        }
    )
    async with KubeClient(
        ClusterConfig(server="https://c.test"),
        transport_factory=lambda _tls: httpx2.MockTransport(server),
    ) as client:
        listed = await client.list("v1", "ConfigMap", label_selector="x", limit=10)
    assert listed["items"] == [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}]
    assert server.seen[0][:3] == (
        "GET",
        "/api/v1/configmaps",
        {"labelSelector": "x", "limit": "10"},
    )
