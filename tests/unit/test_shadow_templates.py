"""Template ↔ Manifest transformations, trimming, selectors and patches of the shadow API."""

from __future__ import annotations

from typing import Any

import pytest

from clusternet.hub.shadow_resources import ShadowResource
from clusternet.hub.shadow_templates import (
    UnsupportedSelector,
    manifest_selector,
    new_manifest,
    replace_template,
    scale_of,
    template_of,
    trim,
    with_replicas,
)
from clusternet.kube import merge_patch

DEPLOYMENTS = ShadowResource("deployments", "apps", "v1", "Deployment", namespaced=True)
NAMESPACES = ShadowResource("namespaces", "", "v1", "Namespace", namespaced=False)


def deployment(labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": labels or {}},
        "spec": {"replicas": 2},
    }


def test_trim_drops_what_the_parent_decides() -> None:
    obj = deployment()
    obj["metadata"] |= {
        "uid": "u",
        "resourceVersion": "1",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{}],
        "generation": 1,
        "selfLink": "/x",
    }
    obj["status"] = {"replicas": 2}
    trimmed = trim(obj)
    assert trimmed["metadata"] == {"name": "web", "namespace": "shop", "labels": {}}
    assert "status" not in trimmed
    assert "uid" in obj["metadata"], "the input is left alone"


def test_trim_service_allocations() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.0.0.1",
            "clusterIPs": ["10.0.0.1"],
            "healthCheckNodePort": 30001,
            "ports": [{"port": 80, "nodePort": 30000}],
        },
    }
    spec = trim(service)["spec"]
    assert spec == {"type": "LoadBalancer", "ports": [{"port": 80}]}
    headless = {**service, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}
    assert trim(headless)["spec"]["clusterIP"] == "None"


def test_trim_job_controller_selector_and_labels() -> None:
    labels = {"batch.kubernetes.io/controller-uid": "u", "job-name": "pi", "app": "pi"}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi", "labels": dict(labels)},
        "spec": {
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
            "template": {"metadata": {"labels": dict(labels)}},
        },
    }
    trimmed = trim(job)
    assert "selector" not in trimmed["spec"]
    assert trimmed["spec"]["template"]["metadata"]["labels"] == {"app": "pi"}
    assert trimmed["metadata"]["labels"] == {"app": "pi"}


def test_new_manifest_names_and_labels() -> None:
    manifest = new_manifest(DEPLOYMENTS, deployment({"tier": "front"}), "clusternet-reserved")
    assert manifest["metadata"]["name"] == "deployments.shop.web"
    assert manifest["metadata"]["namespace"] == "clusternet-reserved"
    assert manifest["metadata"]["labels"] == {
        "tier": "front",
        "clusternet.io/created-by": "clusternet-hub",
        "apps.clusternet.io/config.group": "apps",
        "apps.clusternet.io/config.version": "v1",
        "apps.clusternet.io/config.kind": "Deployment",
        "apps.clusternet.io/config.name": "web",
        "apps.clusternet.io/config.namespace": "shop",
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    assert new_manifest(NAMESPACES, namespace, "r")["metadata"]["name"] == "namespaces.shop"


def test_replace_template_removes_dropped_template_labels_only() -> None:
    manifest = new_manifest(DEPLOYMENTS, deployment({"tier": "front", "team": "a"}), "r")
    manifest["metadata"]["labels"]["0f0e-base-uid"] = "Base"  # a back-reference
    updated = replace_template(manifest, deployment({"tier": "back"}))
    labels = updated["metadata"]["labels"]
    assert labels["tier"] == "back"
    assert "team" not in labels
    assert labels["0f0e-base-uid"] == "Base"
    assert labels["apps.clusternet.io/config.name"] == "web"
    assert updated["template"]["metadata"]["labels"] == {"tier": "back"}
    assert manifest["metadata"]["labels"]["team"] == "a", "the input is left alone"


def test_template_of_takes_identity_from_the_manifest() -> None:
    manifest = new_manifest(DEPLOYMENTS, deployment(), "r")
    manifest["metadata"] |= {
        "uid": "m-uid",
        "resourceVersion": "42",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "deletionTimestamp": "2026-01-02T00:00:00Z",
        "annotations": {"apps.clusternet.io/feed-protection": "in use", "other": "x"},
    }
    template = template_of(manifest)
    assert template["metadata"]["uid"] == "m-uid"
    assert template["metadata"]["resourceVersion"] == "42"
    assert template["metadata"]["deletionTimestamp"] == "2026-01-02T00:00:00Z"
    assert template["metadata"]["annotations"] == {"apps.clusternet.io/feed-protection": "in use"}
    assert (template["apiVersion"], template["kind"]) == ("apps/v1", "Deployment")


def test_manifest_selector() -> None:
    selector = manifest_selector(DEPLOYMENTS, "shop", "tier=front", "metadata.name=web")
    assert selector.split(",") == [
        "tier=front",
        "apps.clusternet.io/config.kind=Deployment",
        "apps.clusternet.io/config.group=apps",
        "apps.clusternet.io/config.namespace=shop",
        "apps.clusternet.io/config.name=web",
    ]
    assert manifest_selector(NAMESPACES, None, None, "metadata.name!=kube-system").split(",") == [
        "apps.clusternet.io/config.kind=Namespace",
        "apps.clusternet.io/config.name!=kube-system",
    ]


@pytest.mark.parametrize("field_selector", ["spec.replicas=1", "status.phase==Running", "oops"])
def test_manifest_selector_rejects_other_fields(field_selector: str) -> None:
    with pytest.raises(UnsupportedSelector):
        manifest_selector(DEPLOYMENTS, "shop", None, field_selector)


def test_merge_patch_rfc7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "list": [1, 2], "gone": True}
    patch = {"a": {"b": None, "d": 3}, "list": [3], "gone": None}
    assert merge_patch(target, patch) == {"a": {"c": 2, "d": 3}, "list": [3]}
    assert target["a"] == {"b": 1, "c": 2}, "the target is left alone"
    assert merge_patch({"a": 1}, [1]) == [1]


def test_scale() -> None:
    template = template_of({**new_manifest(DEPLOYMENTS, deployment(), "r")})
    scale = scale_of(template)
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 2)
    assert scale["metadata"]["namespace"] == "shop"
    assert with_replicas(template, 5)["spec"]["replicas"] == 5
    for bad in (-1, "3", True, None):
        with pytest.raises(ValueError, match="non-negative integer"):
            with_replicas(template, bad)
