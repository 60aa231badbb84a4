"""FeedInventory parsing: replicas, JSON path and per-replica requirements; feed ↔ Manifest."""

from __future__ import annotations

from typing import Any

import pytest

from clusternet.apis.apps.v1alpha1 import Feed, Subscription
from clusternet.controllermanager.feedinventory import (
    desired_inventory,
    feed_identity,
    manifest_identity,
    subscription_feed_identities,
)
from clusternet.controllermanager.feedinventory_parsers import feed_order, pod_resources


def workload(replicas: int | None, pod_spec: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": {"spec": pod_spec}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"spec": spec}


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("apps/v1", "Deployment"), ("apps/v1beta1", "Deployment"), ("apps/v1beta2", "Deployment"),
        ("extensions/v1beta1", "Deployment"), ("apps/v1", "ReplicaSet"),
        ("extensions/v1beta1", "ReplicaSet"), ("apps/v1", "StatefulSet"),
        ("apps/v1beta1", "StatefulSet"), ("apps/v1beta2", "StatefulSet"),
        ("extensions/v1beta1", "StatefulSet"),
    ],
)  # fmt: skip
def test_every_workload_version_is_parsed(api_version: str, kind: str) -> None:
    feed = Feed(api_version=api_version, kind=kind, namespace="shop", name="web")
    order = feed_order(feed, workload(6, {"containers": [{"name": "c"}]}))
    assert (order.desired_replicas, order.replica_json_path) == (6, "/spec/replicas")


def test_other_kinds_are_listed_without_replicas() -> None:
    for feed, template in (
        (Feed(api_version="v1", kind="Namespace", name="shop"), {"metadata": {"name": "shop"}}),
        (Feed(api_version="batch/v1", kind="Job", namespace="a", name="j"), workload(3, {})),
        (Feed(api_version="apps/v1", kind="Deployment", namespace="a", name="d"), None),
    ):
        assert feed_order(feed, template).to_dict() == feed.to_dict()


def test_unset_replicas_stay_unset() -> None:
    feed = Feed(api_version="apps/v1", kind="Deployment", namespace="a", name="d")
    assert feed_order(feed, workload(None, {"containers": []})).desired_replicas is None


@pytest.mark.parametrize(
    ("pod_spec", "requests", "limits"),
    [
        # spec §11 item 12: two containers summed.
        (
            {"containers": [
                {"resources": {"requests": {"cpu": "500m", "memory": "128Mi"}}},
                {"resources": {"requests": {"cpu": "500m", "memory": "128Mi"}}},
            ]},
            {"cpu": "1", "memory": "256Mi"},
            {},
        ),
        # A limit without a request counts as the request.
        (
            {"containers": [{"resources": {"limits": {"cpu": "2"}}}, {"resources": {"requests": {"cpu": "1"}}}]},  # noqa: E501
            {"cpu": "3"},
            {"cpu": "2"},
        ),
        # Init containers count by max, against the containers' sum.
        (
            {
                "containers": [{"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
                "initContainers": [
                    {"resources": {"requests": {"cpu": "3"}}},
                    {"resources": {"requests": {"cpu": "2", "memory": "512Mi"}}},
                ],
            },
            {"cpu": "3", "memory": "1Gi"},
            {},
        ),
        ({}, {}, {}),
    ],
)  # fmt: skip
def test_pod_resources(
    pod_spec: dict[str, Any], requests: dict[str, str], limits: dict[str, str]
) -> None:
    assert pod_resources(pod_spec) == (requests, limits)


def test_scheduling_constraints_are_carried() -> None:
    pod_spec = {
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]  # noqa: E501
        }}},
        "containers": [{"resources": {"requests": {"cpu": "250m"}}}],
    }  # fmt: skip
    feed = Feed(api_version="apps/v1", kind="Deployment", namespace="a", name="d")
    requirements = feed_order(feed, workload(2, pod_spec)).to_dict()["replicaRequirements"]
    assert requirements["nodeSelector"] == {"disk": "ssd"}
    assert requirements["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert requirements["affinity"] == pod_spec["affinity"]
    assert requirements["resources"] == {"requests": {"cpu": "250m"}}


def test_feeds_and_manifests_meet_on_their_identity() -> None:
    manifest = {
        "metadata": {
            "labels": {
                "apps.clusternet.io/config.group": "apps",
                "apps.clusternet.io/config.version": "v1",
                "apps.clusternet.io/config.kind": "Deployment",
                "apps.clusternet.io/config.name": "web",
                "apps.clusternet.io/config.namespace": "shop",
            }
        }
    }
    core = {
        "metadata": {
            "labels": {
                "apps.clusternet.io/config.group": "",
                "apps.clusternet.io/config.version": "v1",
                "apps.clusternet.io/config.kind": "Namespace",
                "apps.clusternet.io/config.name": "shop",
                "apps.clusternet.io/config.namespace": "",
            }
        }
    }
    assert manifest_identity(manifest) == [feed_identity("apps/v1", "Deployment", "shop", "web")]
    assert manifest_identity(core) == [feed_identity("v1", "Namespace", None, "shop")]
    assert manifest_identity({"metadata": {"labels": {"app": "x"}}}) == []
    sub = {
        "spec": {
            "schedulingStrategy": "Dividing",
            "feeds": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"}
            ],
        }
    }
    assert subscription_feed_identities(sub) == manifest_identity(manifest)
    assert subscription_feed_identities({"spec": {"feeds": sub["spec"]["feeds"]}}) == []


def test_desired_inventory_is_owned_by_and_labelled_for_its_subscription() -> None:
    sub = Subscription.model_validate(
        {
            "metadata": {"name": "web", "namespace": "team", "uid": "u-1"},
            "spec": {
                "schedulingStrategy": "Dividing",
                "subscribers": [{"clusterAffinity": {}}],
                "feeds": [
                    {"apiVersion": "v1", "kind": "Namespace", "name": "shop"},
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "namespace": "shop",
                        "name": "web",
                    },
                    {
                        "apiVersion": "apps.clusternet.io/v1alpha1",
                        "kind": "HelmChart",
                        "namespace": "d",
                        "name": "m",
                    },
                ],
            },
        }
    )
    templates = {
        "v1/Namespace/shop": {"metadata": {"name": "shop"}},
        "apps/v1/Deployment/shop/web": workload(6, {"containers": []}),
        "apps.clusternet.io/v1alpha1/HelmChart/d/m": None,
    }
    inventory = desired_inventory(sub, templates).to_dict()
    assert inventory["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert inventory["metadata"]["labels"]["apps.clusternet.io/subs.name"] == "web"
    assert [f.get("desiredReplicas") for f in inventory["spec"]["feeds"]] == [None, 6, None]
