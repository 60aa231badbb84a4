"""Subscription status aggregation (spec §4.9), as a pure function.

Every Description reports the live status of the objects it deployed
(``status.manifestStatuses``); a Subscription's ``status.aggregatedStatuses`` has one entry per
feed with a row per bound cluster and a summary.  Upstream never ran this (its Descriptions lost
the labels the lookup needs, §12.1); here Descriptions carry them, and these functions are what the
``aggregatestatus`` controller writes: the aggregated statuses and a ``Deployed`` condition
(ours) that says in one line whether everything runs, and where it does not and why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from clusternet.apis import known

Object = Mapping[str, Any]

CONDITION_DEPLOYED: Final = "Deployed"
FAILURE: Final = "Failure"  # DescriptionPhase.FAILURE
SUCCESS: Final = "Success"
HELM_CHART_API_VERSION: Final = f"{known.APPS_GROUP}/v1alpha1"
_CONDITION_FIELDS: Final = ("type", "status", "reason", "message", "observedGeneration")
_REASON_LIMIT: Final = 1024  # per failed cluster, so that one long error cannot crowd out others
_MESSAGE_LIMIT: Final = 32768  # metav1.Condition.message

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


def replica_status(feed: Object, observed: Object | None) -> dict[str, int]:
    """The replica counters of one object's live status (empty for other kinds); values that
    are not whole numbers (a broken status) are left out rather than failing the whole sum."""
    counters = _COUNTERS.get((feed["apiVersion"], feed["kind"]), ())
    observed = observed if isinstance(observed, Mapping) else {}
    names = (*counters, "observedGeneration") if counters else ()
    return {name: observed[name] for name in names if _whole(observed.get(name))}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _feed_tuple(obj: Object) -> tuple[str, str, str, str]:
    return (
        str(obj.get("apiVersion") or ""),
        str(obj.get("kind") or ""),
        str(obj.get("namespace") or ""),
        str(obj.get("name") or ""),
    )


def aggregate(
    feeds: Sequence[Object], clusters: Sequence[BoundCluster], descriptions: Iterable[Object]
) -> list[dict[str, Any]]:
    """``status.aggregatedStatuses``: per feed, a row per bound cluster and a summary.

    A cluster whose Description has not reported the feed yet is listed as not available.
    Descriptions being deleted, or in namespaces no longer bound, do not count.
    """
    indexes: dict[tuple[str, str, str, str], list[int]] = {}
    for index, feed in enumerate(feeds):
        indexes.setdefault(_feed_tuple(feed), []).append(index)
    bound = {cluster.namespace for cluster in clusters}
    observed: dict[tuple[str, int], Object] = {}  # (namespace, feed index) -> manifest status
    for description in descriptions:
        meta = description["metadata"]
        if meta.get("deletionTimestamp") or meta.get("namespace") not in bound:
            continue
        for reported in _reported(description):
            for index in indexes.get(_feed_tuple(reported), ()):
                observed[(meta["namespace"], index)] = reported
    aggregated = []
    for index, feed in enumerate(feeds):
        details = []
        for cluster in clusters:
            status = observed.get((cluster.namespace, index))
            row: dict[str, Any] = {}
            if cluster.cluster_id:
                row["clusterId"] = cluster.cluster_id
            row["clusterName"] = cluster.cluster_name
            row["available"] = status is not None
            replicas = replica_status(feed, (status or {}).get("observedStatus"))
            if replicas:
                row["replicaStatus"] = replicas
            details.append(row)
        aggregated.append(
            {**_feed(feed), "feedStatusSummary": _summary(details), "feedStatusDetails": details}
        )
    return aggregated


def _reported(description: Object) -> list[Object]:
    """The feeds a Description reports as deployed: its ``manifestStatuses``, and for a Helm
    Description in phase Success its charts (Helm releases report no object statuses)."""
    status = description.get("status") or {}
    reported = [s for s in status.get("manifestStatuses") or () if isinstance(s, Mapping)]
    spec = description.get("spec") or {}
    if spec.get("deployer") == "Helm" and status.get("phase") == SUCCESS:
        reported += [
            {"apiVersion": HELM_CHART_API_VERSION, "kind": "HelmChart", **chart}
            for chart in spec.get("charts") or ()
            if isinstance(chart, Mapping)
        ]
    return reported


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


def failures(clusters: Sequence[BoundCluster], descriptions: Iterable[Object]) -> dict[str, str]:
    """Cluster name → ``<phase>: <reason>`` of its Descriptions that failed to deploy."""
    names = {cluster.namespace: cluster.cluster_name for cluster in clusters}
    found: dict[str, list[str]] = {}
    for description in descriptions:
        meta = description["metadata"]
        status = description.get("status") or {}
        name = names.get(meta.get("namespace"))
        if name is None or meta.get("deletionTimestamp") or status.get("phase") != FAILURE:
            continue
        reason = " ".join(str(status.get("reason") or "no reason given").split())
        if len(reason) > _REASON_LIMIT:
            reason = reason[: _REASON_LIMIT - 3] + "..."
        found.setdefault(name, []).append(f"{FAILURE}: {reason}")
    return {name: "; ".join(sorted(texts)) for name, texts in found.items()}


def render_errors(clusters: Sequence[BoundCluster], bases: Iterable[Object]) -> dict[str, str]:
    """Cluster name → what is wrong with the input of its Base (the Base controller's
    ``apps.clusternet.io/render-error`` annotation: missing templates, bad overrides)."""
    names = {cluster.namespace: cluster.cluster_name for cluster in clusters}
    found: dict[str, list[str]] = {}
    for base in bases:
        meta = base["metadata"]
        text = (meta.get("annotations") or {}).get(known.RENDER_ERROR_ANNOTATION)
        name = names.get(meta.get("namespace"))
        if name is None or not text or meta.get("deletionTimestamp"):
            continue
        text = " ".join(str(text).split())
        if len(text) > _REASON_LIMIT:
            text = text[: _REASON_LIMIT - 3] + "..."
        found.setdefault(name, []).append(text)
    return {name: "; ".join(sorted(texts)) for name, texts in found.items()}


def subscription_condition(
    aggregated: Sequence[Mapping[str, Any]],
    failed: Mapping[str, str] | None = None,
    invalid: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """One line that says whether everything is deployed, and where not.

    ``failed`` (from :func:`failures`) names the clusters whose Descriptions report
    ``Failure``, with the deployer's reason: they make the condition False even where
    every feed was reported once.  ``invalid`` (from :func:`render_errors`) names the
    clusters whose input could not be rendered as written (reason ``InvalidInput`` unless
    something also failed to deploy): their objects may be deployed, but not as asked.
    """
    if not any(entry["feedStatusDetails"] for entry in aggregated):
        return {
            "type": CONDITION_DEPLOYED,
            "status": "False",
            "reason": "NothingToDeploy",
            "message": "no feeds are bound to any cluster",
        }
    problems: list[str] = []
    if invalid:
        problems.append(
            "bad input for "
            + "; ".join(f"{name} ({text})" for name, text in sorted(invalid.items()))
        )
    if failed:
        problems.append(
            "failed on " + "; ".join(f"{name} ({text})" for name, text in sorted(failed.items()))
        )
    missing: list[str] = []
    for entry in aggregated:
        clusters = [d["clusterName"] for d in entry["feedStatusDetails"] if not d["available"]]
        if clusters:
            missing.append(f"{entry['kind']}/{entry['name']} on {', '.join(clusters)}")
    if missing:
        problems.append("not deployed yet: " + "; ".join(missing))
    if problems:
        return {
            "type": CONDITION_DEPLOYED,
            "status": "False",
            "reason": "Failed" if failed else "InvalidInput" if invalid else "Pending",
            "message": "; ".join(problems)[:_MESSAGE_LIMIT],
        }
    bound = {d["clusterName"] for e in aggregated for d in e["feedStatusDetails"]}
    return {
        "type": CONDITION_DEPLOYED,
        "status": "True",
        "reason": "Deployed",
        "message": f"{len(aggregated)} feeds deployed to {len(bound)} clusters",
    }


def with_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    condition: Mapping[str, str],
    *,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]] | None:
    """``conditions`` with ``condition`` set (others kept, in place), or None if nothing a
    reader would see changed; ``lastTransitionTime`` moves only when the status flips."""
    current = [dict(c) for c in conditions or () if isinstance(c, Mapping)]
    new: dict[str, Any] = dict(condition)
    if generation is not None:
        new["observedGeneration"] = generation
    for position, existing in enumerate(current):
        if existing.get("type") != new["type"]:
            continue
        if all(existing.get(k) == new.get(k) for k in _CONDITION_FIELDS):
            return None
        same_status = existing.get("status") == new["status"]
        new["lastTransitionTime"] = (
            existing.get("lastTransitionTime") if same_status else None
        ) or _format(now)
        current[position] = new
        return current
    new["lastTransitionTime"] = _format(now)
    return [*current, new]


def status_patch(
    subscription: Object,
    clusters: Sequence[BoundCluster],
    descriptions: Sequence[Object],
    now: datetime,
    bases: Sequence[Object] = (),
) -> dict[str, Any] | None:
    """The ``status`` fields to merge-patch (aggregatedStatuses, conditions), or None when
    the Subscription already says all of it."""
    feeds = (subscription.get("spec") or {}).get("feeds") or ()
    status = subscription.get("status") or {}
    aggregated = aggregate(feeds, clusters, descriptions)
    condition = subscription_condition(
        aggregated, failures(clusters, descriptions), render_errors(clusters, bases)
    )
    conditions = with_condition(
        status.get("conditions"),
        condition,
        generation=subscription["metadata"].get("generation"),
        now=now,
    )
    patch: dict[str, Any] = {}
    if status.get("aggregatedStatuses") != aggregated:
        patch["aggregatedStatuses"] = aggregated
    if conditions is not None:
        patch["conditions"] = conditions
    return patch or None


def guarded_status_patch(subscription: Object, status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902, on the status subresource) writing ``status`` (from
    :func:`status_patch`), guarded by ``test`` ops on what it was computed from: the
    generation (the feeds), ``status.bindingClusters`` (the scheduler's), and the conditions
    it replaces.  Other writes meanwhile (the finalizer and label of the Subscription
    controller, the scheduler's replicas) do not fail it; a precondition on the
    ``resourceVersion`` made the write of most Subscriptions of a burst fail once (409) and
    go again.  An absent member is tested as ``null``."""
    current = subscription.get("status") or {}
    ops: list[dict[str, Any]] = []
    generation = subscription["metadata"].get("generation")
    if generation is not None:
        ops.append({"op": "test", "path": "/metadata/generation", "value": generation})
    ops.append(
        {"op": "test", "path": "/status/bindingClusters", "value": current.get("bindingClusters")}
    )
    if "conditions" in status:
        ops.append({"op": "test", "path": "/status/conditions", "value": current.get("conditions")})
    if "status" not in subscription:
        ops.append({"op": "test", "path": "/status", "value": None})
        ops.append({"op": "add", "path": "/status", "value": dict(status)})
        return ops
    for field, value in status.items():
        ops.append({"op": "add", "path": f"/status/{field}", "value": value})
    return ops


def bound_clusters(
    binding_clusters: Iterable[str], cluster_ids: Mapping[str, str]
) -> list[BoundCluster]:
    """``status.bindingClusters`` (``<namespace>/<name>``) with each ManagedCluster's ID
    (``cluster_ids`` by the same key; unknown → no ID, the name is still listed)."""
    bound = []
    for key in binding_clusters:
        namespace, _, name = str(key).partition("/")
        if namespace and name:
            bound.append(BoundCluster(cluster_ids.get(key, ""), name, namespace))
    return bound


def _format(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def subscription_of(description: Object) -> tuple[str, str] | None:
    """(namespace, name) of the Subscription a Description belongs to, from its labels."""
    labels = description["metadata"].get("labels") or {}
    name = labels.get(known.CONFIG_SUBSCRIPTION_NAME_LABEL)
    namespace = labels.get(known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL)
    return (namespace, name) if name and namespace else None
