"""Subscription status aggregation (spec §4.9), as a pure function.

Every Description reports the live status of the objects it deployed
(``status.manifestStatuses``); a Subscription's ``status.aggregatedStatuses`` has one entry per
feed with a row per bound cluster and a summary.  Upstream never ran this (its Descriptions lost
the labels the lookup needs, §12.1); here Descriptions carry them, and this function is what the
controller writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clusternet.apis import known

Object = Mapping[str, Any]

# Replica counters read from each kind's status (spec §4.9).
_COUNTERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps/v1", "Deployment"): (
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    ),
    ("apps/v1", "StatefulSet"): (
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "currentReplicas",
    ),
    ("batch/v1", "Job"): ("active", "succeeded", "failed"),
}


@dataclass(frozen=True)
class BoundCluster:
    cluster_id: str
    cluster_name: str
    namespace: str  # the cluster's dedicated namespace (where its Description lives)


def _feed(obj: Object) -> dict[str, str]:
    feed = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["name"]}
    if obj.get("namespace"):
        feed["namespace"] = obj["namespace"]
    return feed


def _same_feed(a: Object, b: Object) -> bool:
    return _feed(a) == _feed(b)


def replica_status(feed: Object, observed: Object | None) -> dict[str, int]:
    """The replica counters of one object's live status (empty for other kinds)."""
    counters = _COUNTERS.get((feed["apiVersion"], feed["kind"]), ())
    observed = observed or {}
    status = {name: int(observed[name]) for name in counters if observed.get(name) is not None}
    if observed.get("observedGeneration") is not None and counters:
        status["observedGeneration"] = int(observed["observedGeneration"])
    return status


def aggregate(
    feeds: Sequence[Object], clusters: Sequence[BoundCluster], descriptions: Iterable[Object]
) -> list[dict[str, Any]]:
    """``status.aggregatedStatuses``: per feed, a row per bound cluster and a summary.

    A cluster whose Description has not reported the feed yet is listed as not available.
    """
    observed: dict[tuple[str, int], Object] = {}  # (namespace, feed index) -> manifest status
    for description in descriptions:
        meta = description["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        for status in (description.get("status") or {}).get("manifestStatuses") or ():
            for index, feed in enumerate(feeds):
                if _same_feed(status, feed):
                    observed[(meta["namespace"], index)] = status
    aggregated = []
    for index, feed in enumerate(feeds):
        details = []
        for cluster in clusters:
            status = observed.get((cluster.namespace, index))
            row: dict[str, Any] = {
                "clusterId": cluster.cluster_id,
                "clusterName": cluster.cluster_name,
                "available": status is not None,
            }
            replicas = replica_status(feed, (status or {}).get("observedStatus"))
            if replicas:
                row["replicaStatus"] = replicas
            details.append(row)
        aggregated.append(
            {**_feed(feed), "feedStatusSummary": _summary(details), "feedStatusDetails": details}
        )
    return aggregated


def _summary(details: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"available": bool(details) and all(d["available"] for d in details)}
    totals: dict[str, int] = {}
    for row in details:
        for name, value in (row.get("replicaStatus") or {}).items():
            if name == "observedGeneration":
                totals[name] = max(totals.get(name, 0), value)
            else:
                totals[name] = totals.get(name, 0) + value
    if totals:
        summary["replicaStatus"] = totals
    return summary


def subscription_condition(aggregated: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """One line that says whether everything is deployed, and where not."""
    missing: list[str] = []
    for entry in aggregated:
        clusters = [d["clusterName"] for d in entry["feedStatusDetails"] if not d["available"]]
        if clusters:
            missing.append(f"{entry['kind']}/{entry['name']} on {', '.join(clusters)}")
    if not aggregated:
        return {
            "type": "Deployed",
            "status": "False",
            "reason": "NothingToDeploy",
            "message": "no feeds are bound to any cluster",
        }
    if missing:
        return {
            "type": "Deployed",
            "status": "False",
            "reason": "Pending",
            "message": "not deployed yet: " + "; ".join(missing),
        }
    bound = {d["clusterName"] for e in aggregated for d in e["feedStatusDetails"]}
    return {
        "type": "Deployed",
        "status": "True",
        "reason": "Deployed",
        "message": f"{len(aggregated)} feeds deployed to {len(bound)} clusters",
    }


def subscription_of(description: Object) -> tuple[str, str] | None:
    """(namespace, name) of the Subscription a Description belongs to, from its labels."""
    labels = description["metadata"].get("labels") or {}
    name = labels.get(known.CONFIG_SUBSCRIPTION_NAME_LABEL)
    namespace = labels.get(known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL)
    return (namespace, name) if name and namespace else None
