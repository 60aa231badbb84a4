"""Which resources shadow/v1alpha1 mirrors, its discovery document, and path parsing."""

from __future__ import annotations

from typing import Any

import pytest

from clusternet.hub.shadow_resources import (
    BadPath,
    ResourceTable,
    ShadowPath,
    api_resource_list,
    builtin_resources,
    crd_resource,
    parse_path,
)
from clusternet.kube import APIResource

VERBS = frozenset({"create", "get", "list"})


def res(group: str, version: str, kind: str, plural: str, **kw: Any) -> APIResource:
    return APIResource(group, version, kind, plural, kw.pop("namespaced", True), VERBS, **kw)


def crd(group: str, plural: str, kind: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind, "shortNames": ["wd"]},
            "versions": versions,
        },
    }


def test_builtin_resources_skip_clusternet_shadow_metrics_crds_and_apiservices() -> None:
    discovered = [
        res("apps", "v1", "Deployment", "deployments", subresources={"scale": VERBS}),
        res("apps.clusternet.io", "v1alpha1", "Manifest", "manifests"),
        res("shadow", "v1alpha1", "Deployment", "shadowdeployments"),
        res("metrics.k8s.io", "v1beta1", "PodMetrics", "pods-metrics"),
        res("apiregistration.k8s.io", "v1", "APIService", "apiservices", namespaced=False),
        res("example.com", "v1", "Widget", "widgets"),
        APIResource("", "v1", "Binding", "bindings-nothing", True, frozenset()),
    ]
    mirrored = builtin_resources(discovered, crd_groups={"example.com"})
    assert set(mirrored) == {"deployments"}
    assert mirrored["deployments"].has_scale
    assert not mirrored["deployments"].has_status


def test_first_listed_version_and_group_win() -> None:
    discovered = [
        res("", "v1", "Event", "events"),
        res("events.k8s.io", "v1", "Event", "events"),
        res("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        res("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    ]
    mirrored = builtin_resources(discovered, crd_groups=())
    assert mirrored["events"].api_version == "v1"
    assert mirrored["horizontalpodautoscalers"].api_version == "autoscaling/v2"


def test_crd_resource_uses_the_served_storage_version() -> None:
    widget = crd(
        "example.com",
        "widgets",
        "Widget",
        [
            {"name": "v1", "served": True, "storage": False},
            {"name": "v2", "served": True, "storage": True, "subresources": {"status": {}}},
        ],
    )
    resource = crd_resource(widget)
    assert resource is not None
    assert (resource.api_version, resource.kind, resource.namespaced) == (
        "example.com/v2",
        "Widget",
        True,
    )
    assert resource.has_status
    assert not resource.has_scale
    assert resource.custom
    not_served = crd("example.com", "gadgets", "Gadget", [{"name": "v1", "storage": True}])
    assert crd_resource(not_served) is None
    own = crd("apps.clusternet.io", "manifests", "Manifest", [
        {"name": "v1alpha1", "served": True, "storage": True}
    ])  # fmt: skip
    assert crd_resource(own) is None


def test_table_follows_crds_as_they_come_and_go() -> None:
    crds: list[dict[str, Any]] = []
    table = ResourceTable(builtin_resources([res("", "v1", "Pod", "pods")], ()), lambda: crds)
    assert table.get("widgets") is None
    crds.append(
        crd("example.com", "widgets", "Widget", [{"name": "v1", "served": True, "storage": True}])
    )
    widgets = table.get("widgets")
    assert widgets is not None
    assert widgets.kind == "Widget"
    crds.clear()
    assert table.get("widgets") is None
    assert table.get("pods") is not None


def test_a_crd_never_replaces_a_builtin_plural() -> None:
    crds = [
        crd("example.com", "pods", "FakePod", [{"name": "v1", "served": True, "storage": True}])
    ]
    table = ResourceTable(builtin_resources([res("", "v1", "Pod", "pods")], ()), lambda: crds)
    pods = table.get("pods")
    assert pods is not None
    assert pods.kind == "Pod"


def test_api_resource_list() -> None:
    mirrored = builtin_resources(
        [
            res("apps", "v1", "Deployment", "deployments", short_names=("deploy",),
                subresources={"scale": VERBS, "status": VERBS}),
            res("", "v1", "Namespace", "namespaces", namespaced=False),
        ],
        (),
    )  # fmt: skip
    document = api_resource_list(mirrored.values())
    assert document["groupVersion"] == "shadow/v1alpha1"
    entries = {e["name"]: e for e in document["resources"]}
    assert set(entries) == {"deployments", "deployments/scale", "deployments/status", "namespaces"}
    # Short names would make kubectl warn on every `get deploy` against the parent.
    assert "shortNames" not in entries["deployments"]
    assert entries["deployments"]["categories"] == ["clusternet.shadow"]
    assert "watch" in entries["deployments"]["verbs"]
    assert entries["deployments/status"]["verbs"] == ["get"]
    assert "categories" not in entries["deployments/status"]
    assert entries["deployments/scale"]["kind"] == "Scale"
    assert entries["namespaces"]["namespaced"] is False


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("deployments", ShadowPath("deployments")),
        ("deployments/", ShadowPath("deployments")),
        ("namespaces", ShadowPath("namespaces")),
        ("namespaces/shop", ShadowPath("namespaces", name="shop")),
        ("namespaces/shop/status", ShadowPath("namespaces", name="shop", subresource="status")),
        ("namespaces/shop/deployments", ShadowPath("deployments", namespace="shop")),
        (
            "namespaces/shop/deployments/web/scale",
            ShadowPath("deployments", namespace="shop", name="web", subresource="scale"),
        ),
        ("clusterroles/admin", ShadowPath("clusterroles", name="admin")),
    ],
)
def test_parse_path(path: str, expected: ShadowPath) -> None:
    assert parse_path(path.split("/")) == expected


@pytest.mark.parametrize("path", ["", "namespaces/shop/deployments/web/scale/extra", "a//b"])
def test_parse_path_rejects(path: str) -> None:
    with pytest.raises(BadPath):
        parse_path(path.split("/"))
