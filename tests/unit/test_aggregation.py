"""Subscription status aggregation (spec §4.9)."""

from __future__ import annotations

from typing import Any

from clusternet.apis import known
from clusternet.controllermanager.aggregation import (
    BoundCluster,
    aggregate,
    replica_status,
    subscription_condition,
    subscription_of,
)

DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"}
NS = {"apiVersion": "v1", "kind": "Namespace", "name": "shop"}
CLUSTERS = [
    BoundCluster("id-1", "child1", "clusternet-a"),
    BoundCluster("id-2", "child2", "clusternet-b"),
]


def description(
    namespace: str, *statuses: dict[str, Any], deleting: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web-x-generic", "namespace": namespace}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"manifestStatuses": list(statuses)}}


def deployed(feed: dict[str, str], **status: int) -> dict[str, Any]:
    return {**feed, "observedStatus": status}


def test_replica_counts_are_summed_and_availability_anded() -> None:
    result = aggregate(
        [NS, DEPLOY],
        CLUSTERS,
        [
            description(
                "clusternet-a",
                deployed(NS),
                deployed(DEPLOY, replicas=2, readyReplicas=2, observedGeneration=3),
            ),
            description(
                "clusternet-b",
                deployed(NS),
                deployed(DEPLOY, replicas=4, readyReplicas=1, observedGeneration=2),
            ),
        ],
    )
    namespace, deployment = result
    assert namespace["feedStatusSummary"] == {"available": True}
    assert deployment["feedStatusSummary"] == {
        "available": True,
        "replicaStatus": {"replicas": 6, "readyReplicas": 3, "observedGeneration": 3},
    }
    assert [d["replicaStatus"]["replicas"] for d in deployment["feedStatusDetails"]] == [2, 4]
    assert deployment["feedStatusDetails"][0]["clusterName"] == "child1"
    assert subscription_condition(result)["status"] == "True"


def test_a_cluster_that_has_not_reported_is_not_available() -> None:
    result = aggregate(
        [DEPLOY],
        CLUSTERS,
        [
            description("clusternet-a", deployed(DEPLOY, replicas=1)),
            description("clusternet-b", deployed(DEPLOY), deleting=True),
        ],
    )
    details = result[0]["feedStatusDetails"]
    assert [d["available"] for d in details] == [True, False]
    assert result[0]["feedStatusSummary"]["available"] is False
    condition = subscription_condition(result)
    assert condition["status"] == "False"
    assert condition["message"] == "not deployed yet: Deployment/web on child2"


def test_counters_by_kind() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "namespace": "n"}
    assert replica_status(job, {"active": 1, "succeeded": 2, "failed": 0, "ready": 1}) == {
        "active": 1,
        "succeeded": 2,
        "failed": 0,
    }
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "s", "namespace": "n"}
    assert replica_status(sts, {"currentReplicas": 3}) == {"currentReplicas": 3}
    assert replica_status(NS, {"phase": "Active"}) == {}
    assert replica_status(DEPLOY, None) == {}


def test_nothing_bound() -> None:
    assert subscription_condition([])["reason"] == "NothingToDeploy"


def test_descriptions_point_back_to_their_subscription() -> None:
    labels = {
        known.CONFIG_SUBSCRIPTION_NAME_LABEL: "web",
        known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: "team-a",
    }
    assert subscription_of({"metadata": {"labels": labels}}) == ("team-a", "web")
    assert subscription_of({"metadata": {}}) is None
