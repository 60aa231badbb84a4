"""The scheduler's Predictor plugin: the hub proxy path, and asking through the hub or directly."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from clusternet.apis.apps.v1alpha1 import FeedInventory, Subscription
from clusternet.kube import ClusterConfig, KubeClient
from clusternet.scheduler.framework import ClusterInfo, Code, CycleState
from clusternet.scheduler.plugins.predictor import NotAProxyTarget, Predictor, hub_proxy_path

SOCKETS = "/apis/proxies.clusternet.io/v1alpha1/sockets"
DEPLOY = "apps/v1/Deployment/shop/web"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("http://127.0.0.1:8080", "/proxy/http/127.0.0.1:8080/replicas/predict"),
        ("http://localhost", "/proxy/http/localhost:80/replicas/predict"),
        ("https://p.example/base/", "/proxy/https/p.example:443/base/replicas/predict"),
        ("http://[::1]:9000", "/proxy/http/[::1]:9000/replicas/predict"),
    ],
)
def test_hub_proxy_path_names_scheme_host_and_port(address: str, expected: str) -> None:
    assert hub_proxy_path("id-1", address) == f"{SOCKETS}/id-1{expected}"


@pytest.mark.parametrize("address", ["127.0.0.1:8080", "ftp://p:21", "http://", "http://p:99999"])
def test_hub_proxy_path_rejects_what_the_proxy_cannot_name(address: str) -> None:
    with pytest.raises(NotAProxyTarget):
        hub_proxy_path("id-1", address)


def cluster(*, direct: bool, address: str = "http://127.0.0.1:8080") -> ClusterInfo:
    return ClusterInfo.from_object(
        {
            "metadata": {"name": "c1", "namespace": "ns-c1", "labels": {}},
            "spec": {"clusterId": "id-1"},
            "status": {
                "predictorEnabled": True,
                "predictorAddress": address,
                "predictorDirectAccess": direct,
            },
        }
    )


def inventory() -> FeedInventory:
    return FeedInventory.model_validate(
        {
            "metadata": {"name": "s", "namespace": "team"},
            "spec": {
                "feeds": [
                    {"apiVersion": "v1", "kind": "Namespace", "name": "shop"},
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "namespace": "shop",
                        "name": "web",
                        "desiredReplicas": 6,
                        "replicaRequirements": {"resources": {"requests": {"cpu": "1"}}},
                    },
                ]
            },
        }
    )


SUBSCRIPTION = Subscription.model_validate(
    {
        "metadata": {"name": "s", "namespace": "team"},
        "spec": {
            "subscribers": [{"clusterAffinity": {}}],
            "feeds": [{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop",
                       "name": "web"}],
        },
    }
)  # fmt: skip


def parent_answering(status: int, answer: dict[str, Any], seen: list[httpx2.Request]) -> KubeClient:
    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(status, json=answer)

    return KubeClient(
        ClusterConfig(server="https://parent.test"),
        transport_factory=lambda _tls: httpx2.MockTransport(handle),
    )


async def test_a_cluster_without_direct_access_is_asked_through_the_hub() -> None:
    seen: list[httpx2.Request] = []
    async with parent_answering(200, {"replicas": {"default": 4}}, seen) as parent:
        plugin = Predictor(parent=parent)
        replicas, status = await plugin.predict(
            CycleState(), SUBSCRIPTION, inventory(), cluster(direct=False)
        )
    assert (replicas, status.code) == ({DEPLOY: 4}, Code.SUCCESS)
    [request] = seen
    assert request.method == "POST"
    assert request.url.path == f"{SOCKETS}/id-1/proxy/http/127.0.0.1:8080/replicas/predict"
    assert json.loads(request.content) == {"resources": {"requests": {"cpu": "1"}}}
    assert request.headers["Cluster-ID"] == "id-1"  # as upstream's scheduler sends it


async def test_a_failed_answer_through_the_hub_is_a_scheduling_error() -> None:
    seen: list[httpx2.Request] = []
    async with parent_answering(500, {"error": "no feasible nodes found"}, seen) as parent:
        replicas, status = await Predictor(parent=parent).predict(
            CycleState(), SUBSCRIPTION, inventory(), cluster(direct=False)
        )
    assert (replicas, status.code) == ({}, Code.ERROR)
    assert "ns-c1/c1" in status.reasons[0]
    assert "no feasible nodes found" in status.reasons[0]


async def test_without_a_parent_client_the_hub_path_is_an_error() -> None:
    replicas, status = await Predictor().predict(
        CycleState(), SUBSCRIPTION, inventory(), cluster(direct=False)
    )
    assert (replicas, status.code) == ({}, Code.ERROR)
    assert "no client of the parent" in status.reasons[0]


async def test_direct_access_posts_to_the_predictor_with_the_cluster_id() -> None:
    cluster_ids: list[str | None] = []

    async def predict(request: web.Request) -> web.Response:
        cluster_ids.append(request.headers.get("Cluster-ID"))
        return web.json_response({"replicas": {"default": 5}})

    app = web.Application()
    app.router.add_post("/replicas/predict", predict)
    async with TestServer(app) as server:
        plugin = Predictor()
        try:
            address = str(server.make_url("/"))
            replicas, status = await plugin.predict(
                CycleState(), SUBSCRIPTION, inventory(), cluster(direct=True, address=address)
            )
        finally:
            await plugin.aclose()
    assert (replicas, status.code) == ({DEPLOY: 5}, Code.SUCCESS)
    assert cluster_ids == ["id-1"]
