"""REST mapper against recorded discovery documents (trimmed from a v1.36 kube-apiserver)."""

from __future__ import annotations

import asyncio
import json

import httpx2
import pytest

from clusternet.kube import (
    APIResource,
    ClusterConfig,
    GroupVersionResource,
    KubeClient,
    RESTMapper,
    UnknownKind,
)

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def kind(k: str, group: str = "", version: str = "") -> dict[str, str]:
    return {"group": group, "version": version, "kind": k}


AGGREGATED_CORE = {
    "kind": "APIGroupDiscoveryList",
    "apiVersion": "apidiscovery.k8s.io/v2",
    "metadata": {},
    "items": [
        {
            "metadata": {},
            "versions": [
                {
                    "version": "v1",
                    "resources": [
                        {
                            "resource": "configmaps",
                            "responseKind": kind("ConfigMap"),
                            "scope": "Namespaced",
                            "singularResource": "configmap",
                            "verbs": VERBS,
                            "shortNames": ["cm"],
                        },
                        {
                            "resource": "pods",
                            "responseKind": kind("Pod"),
                            "scope": "Namespaced",
                            "singularResource": "pod",
                            "verbs": VERBS,
                            "shortNames": ["po"],
                            "subresources": [
                                {
                                    "subresource": "eviction",
                                    "responseKind": kind("Eviction", "policy", "v1"),
                                    "verbs": ["create"],
                                },
                                {
                                    "subresource": "status",
                                    "responseKind": kind("Pod"),
                                    "verbs": ["get", "patch", "update"],
                                },
                            ],
                        },
                        {
                            "resource": "namespaces",
                            "responseKind": kind("Namespace"),
                            "scope": "Cluster",
                            "singularResource": "namespace",
                            "verbs": [
                                "create",
                                "delete",
                                "get",
                                "list",
                                "patch",
                                "update",
                                "watch",
                            ],
                        },
                    ],
                    "freshness": "Current",
                }
            ],
        }
    ],
}

AGGREGATED_GROUPS = {
    "kind": "APIGroupDiscoveryList",
    "apiVersion": "apidiscovery.k8s.io/v2",
    "metadata": {},
    "items": [
        {
            "metadata": {"name": "apps"},
            "versions": [
                {
                    "version": "v1",
                    "resources": [
                        {
                            "resource": "deployments",
                            "responseKind": kind("Deployment"),
                            "scope": "Namespaced",
                            "singularResource": "deployment",
                            "verbs": VERBS,
                            "shortNames": ["deploy"],
                            "subresources": [
                                {
                                    "subresource": "scale",
                                    "responseKind": kind("Scale", "autoscaling", "v1"),
                                    "verbs": ["get", "patch", "update"],
                                },
                                {
                                    "subresource": "status",
                                    "responseKind": kind("Deployment"),
                                    "verbs": ["get", "patch", "update"],
                                },
                            ],
                        }
                    ],
                }
            ],
        },
        # Two served versions, the preferred first.
        {
            "metadata": {"name": "autoscaling"},
            "versions": [
                {
                    "version": "v2",
                    "resources": [
                        {
                            "resource": "horizontalpodautoscalers",
                            "responseKind": kind("HorizontalPodAutoscaler"),
                            "scope": "Namespaced",
                            "singularResource": "horizontalpodautoscaler",
                            "verbs": VERBS,
                        }
                    ],
                },
                {
                    "version": "v1",
                    "resources": [
                        {
                            "resource": "horizontalpodautoscalers",
                            "responseKind": kind("HorizontalPodAutoscaler"),
                            "scope": "Namespaced",
                            "singularResource": "horizontalpodautoscaler",
                            "verbs": VERBS,
                        }
                    ],
                },
            ],
        },
        # An aggregated API server that is down: still listed, marked Stale.
        {
            "metadata": {"name": "metrics.k8s.io"},
            "versions": [
                {
                    "version": "v1beta1",
                    "freshness": "Stale",
                    "resources": [
                        {
                            "resource": "nodes",
                            "responseKind": kind("NodeMetrics"),
                            "scope": "Cluster",
                            "singularResource": "",
                            "verbs": ["get", "list"],
                        }
                    ],
                }
            ],
        },
    ],
}

LEGACY = {
    "/api": {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "x"}],
    },
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
            },
            {
                "name": "metrics.k8s.io",
                "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}],
                "preferredVersion": {
                    "groupVersion": "metrics.k8s.io/v1beta1",
                    "version": "v1beta1",
                },
            },
        ],
    },
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "configmaps",
                "singularName": "configmap",
                "namespaced": True,
                "kind": "ConfigMap",
                "verbs": VERBS,
                "shortNames": ["cm"],
            },
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": VERBS,
                "shortNames": ["po"],
            },
            {
                "name": "pods/eviction",
                "singularName": "",
                "namespaced": True,
                "kind": "Eviction",
                "group": "policy",
                "version": "v1",
                "verbs": ["create"],
            },
            {
                "name": "pods/status",
                "singularName": "",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get", "patch", "update"],
            },
            {
                "name": "namespaces",
                "singularName": "namespace",
                "namespaced": False,
                "kind": "Namespace",
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            },
        ],
    },
    "/apis/apps/v1": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "apps/v1",
        "resources": [
            {
                "name": "deployments",
                "singularName": "deployment",
                "namespaced": True,
                "kind": "Deployment",
                "verbs": VERBS,
                "shortNames": ["deploy"],
            },
            {
                "name": "deployments/scale",
                "singularName": "",
                "namespaced": True,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            },
            {
                "name": "deployments/status",
                "singularName": "",
                "namespaced": True,
                "kind": "Deployment",
                "verbs": ["get", "patch", "update"],
            },
        ],
    },
}


class FakeDiscovery:
    """Serves discovery documents, aggregated or legacy, and counts what was asked."""

    def __init__(self, aggregated: bool = True, broken: frozenset[str] = frozenset()) -> None:
        self.aggregated = aggregated
        self.broken = broken
        self.core, self.groups = AGGREGATED_CORE, AGGREGATED_GROUPS
        self.requests: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.requests.append(path)
        if path in self.broken:
            return httpx2.Response(
                503, json={"kind": "Status", "code": 503, "reason": "ServiceUnavailable"}
            )
        wants_aggregated = "apidiscovery.k8s.io" in request.headers["Accept"]
        if self.aggregated and wants_aggregated and path in ("/api", "/apis"):
            doc = self.core if path == "/api" else self.groups
            return httpx2.Response(
                200, content=json.dumps(doc).encode(), headers={"Content-Type": AGGREGATED}
            )
        if path in LEGACY:
            return httpx2.Response(200, json=LEGACY[path])
        return httpx2.Response(404, json={"kind": "Status", "code": 404, "reason": "NotFound"})


def client_for(server: FakeDiscovery) -> KubeClient:
    return KubeClient(
        ClusterConfig(server="https://cluster.test"),
        transport_factory=lambda _tls: httpx2.MockTransport(server),
    )


# (apiVersion, kind) -> (plural, namespaced, subresources), in both discovery forms.
EXPECTED = [
    ("v1", "ConfigMap", "configmaps", True, set()),
    ("v1", "Pod", "pods", True, {"eviction", "status"}),
    ("v1", "Namespace", "namespaces", False, set()),
    ("apps/v1", "Deployment", "deployments", True, {"scale", "status"}),
]


@pytest.mark.parametrize("aggregated", [True, False], ids=["aggregated", "legacy"])
@pytest.mark.parametrize(("api_version", "kind_", "plural", "namespaced", "subresources"), EXPECTED)
async def test_maps_kinds_to_resources(
    aggregated: bool,
    api_version: str,
    kind_: str,
    plural: str,
    namespaced: bool,
    subresources: set[str],
) -> None:
    async with client_for(FakeDiscovery(aggregated)) as client:
        resource = await client.mapper.resource_for(api_version, kind_)
    assert (resource.plural, resource.namespaced) == (plural, namespaced)
    assert set(resource.subresources) == subresources
    assert "watch" in resource.verbs
    assert resource.api_version == api_version


async def test_aggregated_discovery_takes_two_requests() -> None:
    server = FakeDiscovery()
    async with client_for(server) as client:
        await client.mapper.resource_for("v1", "ConfigMap")
    assert sorted(server.requests) == ["/api", "/apis"]


async def test_every_served_version_is_mapped_and_stale_groups_are_kept() -> None:
    async with client_for(FakeDiscovery()) as client:
        v1 = await client.mapper.resource_for("autoscaling/v1", "HorizontalPodAutoscaler")
        v2 = await client.mapper.resource_for("autoscaling/v2", "HorizontalPodAutoscaler")
        metrics = await client.mapper.kind_for(
            GroupVersionResource("metrics.k8s.io", "v1beta1", "nodes")
        )
    assert (v1.version, v2.version) == ("v1", "v2")
    assert (metrics.kind, metrics.namespaced) == ("NodeMetrics", False)


async def test_legacy_subresources_do_not_shadow_their_parent_kind() -> None:
    # pods/status has kind Pod and deployments/scale has kind Scale: neither is a resource.
    async with client_for(FakeDiscovery(aggregated=False)) as client:
        pod = await client.mapper.resource_for("v1", "Pod")
        assert pod.subresources["status"] == {"get", "patch", "update"}
        with pytest.raises(UnknownKind):
            await client.mapper.resource_for("apps/v1", "Scale")


async def test_one_failing_group_version_leaves_the_others_mappable() -> None:
    server = FakeDiscovery(aggregated=False, broken=frozenset({"/apis/metrics.k8s.io/v1beta1"}))
    async with client_for(server) as client:
        deployment = await client.mapper.resource_for("apps/v1", "Deployment")
    assert deployment.plural == "deployments"


async def test_a_new_kind_is_found_by_rediscovery_on_a_miss() -> None:
    server = FakeDiscovery()
    widgets = {
        "metadata": {"name": "example.com"},
        "versions": [
            {
                "version": "v1",
                "resources": [
                    {
                        "resource": "widgets",
                        "responseKind": kind("Widget"),
                        "scope": "Namespaced",
                        "verbs": VERBS,
                    }
                ],
            }
        ],
    }
    async with client_for(server) as client:
        client.mapper._min_refresh_interval = 0  # this test is not about the rate limit
        await client.mapper.resource_for("v1", "ConfigMap")
        with pytest.raises(UnknownKind, match="Widget"):
            await client.mapper.resource_for("example.com/v1", "Widget")
        server.groups = {**AGGREGATED_GROUPS, "items": [*AGGREGATED_GROUPS["items"], widgets]}
        widget = await client.mapper.resource_for("example.com/v1", "Widget")
    assert widget.path("ns", "w") == "/apis/example.com/v1/namespaces/ns/widgets/w"
    assert server.requests.count("/apis") == 3


async def test_misses_are_rate_limited_and_share_one_discovery() -> None:
    loads = 0

    async def load() -> list[APIResource]:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return []

    mapper = RESTMapper(load, min_refresh_interval=60)
    results = await asyncio.gather(
        *(mapper.resource_for("example.com/v1", "Widget") for _ in range(10)),
        return_exceptions=True,
    )
    assert all(isinstance(r, UnknownKind) for r in results)
    assert loads == 1
    mapper.invalidate()
    with pytest.raises(UnknownKind):
        await mapper.resource_for("example.com/v1", "Widget")
    assert loads == 2


@pytest.mark.parametrize(
    ("namespace", "name", "subresource", "path"),
    [
        (None, None, None, "/apis/apps/v1/deployments"),
        ("prod", None, None, "/apis/apps/v1/namespaces/prod/deployments"),
        ("prod", "web", "scale", "/apis/apps/v1/namespaces/prod/deployments/web/scale"),
        ("prod", "a/b", None, "/apis/apps/v1/namespaces/prod/deployments/a%2Fb"),
    ],
)
def test_paths(namespace: str | None, name: str | None, subresource: str | None, path: str) -> None:
    deployments = APIResource("apps", "v1", "Deployment", "deployments", True, frozenset())
    assert deployments.path(namespace, name, subresource) == path


def test_cluster_scoped_paths_reject_a_namespace() -> None:
    namespaces = APIResource("", "v1", "Namespace", "namespaces", False, frozenset())
    assert namespaces.path(None, "kube-system") == "/api/v1/namespaces/kube-system"
    with pytest.raises(ValueError, match="cluster-scoped"):
        namespaces.path("default", "x")
