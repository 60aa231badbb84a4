"""What a Subscription's Bases and replica Localizations should be (spec §2.3, §4.3, §4.4), as
pure functions: the Subscription controller (:mod:`.subscription`) only diffs and writes.

* One Base per bound cluster, in the cluster's dedicated namespace (the namespace half of each
  ``status.bindingClusters`` entry).  The Base is named ``<subscription>-<5 random>`` by the
  API server (``generateName``), carries the Subscription's feeds, the labels of spec §2.3, the
  annotation ``is-default-cluster-init`` when the Subscription has it, and the finalizer
  ``apps.clusternet.io/finalizer``.  It has no owner reference: owners cannot be in another
  namespace, so Bases are found by their ``subs.uid`` label.
* A Dividing Subscription's per-cluster replica counts (``status.replicas``, aligned with
  ``status.bindingClusters``) become one Localization per (Base, divided feed): priority
  1000, ApplyNow, a JSON patch replacing the feed's ``replicaJsonPath`` (from the
  FeedInventory).  They are owned by their Base, so they go with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from clusternet.apis import known, naming

Object = dict[str, Any]

APPS_API_VERSION: Final = f"{known.APPS_GROUP}/v1alpha1"
REPLICA_LOCALIZATION_PRIORITY: Final = 1000


# --- Bases ---------------------------------------------------------------------------------


def subscription_back_reference(sub: Mapping[str, Any]) -> tuple[str, str]:
    """The ``<subUID>: Subscription`` label put on the Subscription and its Localizations."""
    return sub["metadata"]["uid"], "Subscription"


def bound_namespaces(sub: Mapping[str, Any]) -> list[str]:
    """The dedicated namespaces of the bound clusters, in ``bindingClusters`` order."""
    clusters = (sub.get("status") or {}).get("bindingClusters") or []
    return [entry.partition("/")[0] for entry in clusters if "/" in entry]


def desired_base(
    sub: Mapping[str, Any], namespace: str, namespace_labels: Mapping[str, str]
) -> Object:
    """The Base ``sub`` needs in ``namespace`` (a cluster's dedicated namespace)."""
    meta = sub["metadata"]
    metadata: Object = {
        "generateName": f"{meta['name']}-",
        "namespace": namespace,
        "labels": naming.base_labels(sub, namespace_labels),
        "finalizers": [known.APP_FINALIZER],
    }
    annotations: dict[str, str] = {}
    init = (meta.get("annotations") or {}).get(known.IS_DEFAULT_CLUSTER_INIT_ANNOTATION)
    if init is not None:
        annotations[known.IS_DEFAULT_CLUSTER_INIT_ANNOTATION] = init
    if (sub.get("spec") or {}).get("schedulingStrategy") == "Dividing":
        # Not rendered until its replica Localizations exist: rendered before them, a new
        # cluster would first run the template's full replica count, then scale down.
        annotations[known.REPLICA_LOCALIZATIONS_ANNOTATION] = known.REPLICA_LOCALIZATIONS_PENDING
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": APPS_API_VERSION,
        "kind": "Base",
        "metadata": metadata,
        "spec": {"feeds": [dict(feed) for feed in (sub.get("spec") or {}).get("feeds") or ()]},
    }


def base_update(current: Mapping[str, Any], desired: Mapping[str, Any]) -> Object | None:
    """``current`` changed to match ``desired`` (labels and annotations merged, others kept),
    or None when it already does: a Base is only written when something differs."""
    meta = current["metadata"]
    labels = dict(meta.get("labels") or {})
    annotations = dict(meta.get("annotations") or {})
    finalizers = list(meta.get("finalizers") or [])
    want = desired["metadata"]
    changed = False
    for key, value in (want.get("labels") or {}).items():
        if labels.get(key) != value:
            labels[key] = value
            changed = True
    init = (want.get("annotations") or {}).get(known.IS_DEFAULT_CLUSTER_INIT_ANNOTATION)
    if annotations.get(known.IS_DEFAULT_CLUSTER_INIT_ANNOTATION) != init:
        if init is None:
            annotations.pop(known.IS_DEFAULT_CLUSTER_INIT_ANNOTATION, None)
        else:
            annotations[known.IS_DEFAULT_CLUSTER_INIT_ANNOTATION] = init
        changed = True
    if known.APP_FINALIZER not in finalizers:
        finalizers.append(known.APP_FINALIZER)
        changed = True
    if (current.get("spec") or {}).get("feeds") != desired["spec"]["feeds"]:
        changed = True
    if not changed:
        return None
    return {
        **current,
        "metadata": {
            **meta,
            "labels": labels,
            "annotations": annotations,
            "finalizers": finalizers,
        },
        "spec": {**(current.get("spec") or {}), "feeds": desired["spec"]["feeds"]},
    }


@dataclass
class BasePlan:
    """What to write so that ``sub`` has exactly one up-to-date Base per bound cluster."""

    create: list[Object] = field(default_factory=list)
    update: list[Object] = field(default_factory=list)
    duplicates: list[Object] = field(default_factory=list)  # extra Bases in a bound namespace
    unbound: list[Object] = field(default_factory=list)  # Bases of clusters no longer bound
    kept: dict[str, Object] = field(default_factory=dict)  # namespace -> its (current) Base
    missing_namespaces: list[str] = field(default_factory=list)


def _age(base: Mapping[str, Any]) -> tuple[str, str]:
    meta = base["metadata"]
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


def plan_bases(
    sub: Mapping[str, Any],
    existing: Iterable[Mapping[str, Any]],
    namespace_labels: Mapping[str, Mapping[str, str]],
    pending: Iterable[str] = (),
) -> BasePlan:
    """Diff the Subscription's Bases against its bindings.

    ``existing``: the Bases labelled with the Subscription's UID; ``namespace_labels``: the
    labels of every dedicated namespace that exists (bound namespaces missing from it are
    skipped and reported); ``pending``: namespaces whose Base was just created and is not
    in the cache yet (not created again).  In a namespace with several Bases the oldest
    stays and the others are duplicates.
    """
    plan = BasePlan()
    by_namespace: dict[str, list[Mapping[str, Any]]] = {}
    for base in existing:
        if base["metadata"].get("deletionTimestamp"):
            continue  # on its way out already
        by_namespace.setdefault(base["metadata"]["namespace"], []).append(base)
    bound = bound_namespaces(sub)
    pending_set = set(pending)
    for namespace in dict.fromkeys(bound):
        labels = namespace_labels.get(namespace)
        bases = sorted(by_namespace.pop(namespace, []), key=_age)
        if labels is None and not bases:
            plan.missing_namespaces.append(namespace)
            continue
        desired = desired_base(sub, namespace, labels or {})
        if not bases:
            if namespace not in pending_set:
                plan.create.append(desired)
            continue
        first, *rest = bases
        plan.kept[namespace] = dict(first)
        plan.duplicates.extend(dict(b) for b in rest)
        updated = base_update(first, desired)
        if updated is not None:
            plan.update.append(updated)
            plan.kept[namespace] = updated
    for bases in by_namespace.values():
        plan.unbound.extend(dict(b) for b in bases)
    return plan


# --- replica Localizations for Dividing ------------------------------------------------------


class SchedulingResultError(ValueError):
    """``status.replicas`` cannot be turned into Localizations; ``reason`` is the event's."""

    def __init__(self, reason: str, feed_key: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.feed_key = feed_key


def replica_localization_name(base_name: str, feed: Mapping[str, Any]) -> str:
    """``<base>-<8 hex of the feed key>``: one per (Base, feed), stable across re-syncs."""
    digest = hashlib.sha256(naming.feed_key(feed).encode()).hexdigest()[:8]
    return f"{base_name}-{digest}"


def _replica_json_path(inventory: Mapping[str, Any] | None, feed: Mapping[str, Any]) -> str:
    for order in ((inventory or {}).get("spec") or {}).get("feeds") or ():
        if naming.feed_key(order) == naming.feed_key(feed):
            return str(order.get("replicaJsonPath") or "")
    return ""


def divides_replicas(sub: Mapping[str, Any]) -> bool:
    """A Dividing Subscription the scheduler gave replica counts to (needs Localizations)."""
    if (sub.get("spec") or {}).get("schedulingStrategy") != "Dividing":
        return False
    return any((sub.get("status") or {}).get("replicas", {}).values())


def replica_localizations(
    sub: Mapping[str, Any],
    bases: Mapping[str, Mapping[str, Any]],
    inventory: Mapping[str, Any] | None,
) -> tuple[list[Object], list[SchedulingResultError]]:
    """The replica Localizations of a Dividing Subscription, and the feeds that failed.

    ``bases``: namespace → that cluster's Base (clusters without one yet are skipped; their
    Localizations come once the Base exists).  A feed without ``replicaJsonPath`` in the
    FeedInventory (``ReplicaJsonPathUnset``) or with fewer replica counts than bound
    clusters (``BadSchedulingResult``) is reported and left without Localizations; the other
    feeds are not held up.
    """
    if (sub.get("spec") or {}).get("schedulingStrategy") != "Dividing":
        return [], []
    status = sub.get("status") or {}
    clusters = status.get("bindingClusters") or []
    replicas: Mapping[str, Sequence[int]] = status.get("replicas") or {}
    uid, kind = subscription_back_reference(sub)
    result: list[Object] = []
    errors: list[SchedulingResultError] = []
    for feed in (sub.get("spec") or {}).get("feeds") or ():
        key = naming.feed_key(feed)
        counts = replicas.get(key)
        if not counts:
            continue  # not a workload: nothing to divide
        if len(counts) < len(clusters):
            errors.append(
                SchedulingResultError(
                    "BadSchedulingResult",
                    key,
                    f"status.replicas[{key}] has {len(counts)} entries for "
                    f"{len(clusters)} binding clusters",
                )
            )
            continue
        path = _replica_json_path(inventory, feed)
        if not path:
            errors.append(
                SchedulingResultError(
                    "ReplicaJsonPathUnset",
                    key,
                    f"the FeedInventory has no replicaJsonPath for feed {key}",
                )
            )
            continue
        for index, cluster in enumerate(clusters):
            base = bases.get(cluster.partition("/")[0])
            if base is None or not base["metadata"].get("uid"):
                continue
            meta = base["metadata"]
            patch = [{"op": "replace", "path": path, "value": counts[index]}]
            result.append(
                {
                    "apiVersion": APPS_API_VERSION,
                    "kind": "Localization",
                    "metadata": {
                        "name": replica_localization_name(meta["name"], feed),
                        "namespace": meta["namespace"],
                        "labels": {
                            known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_CONTROLLER_MANAGER_NAME,
                            uid: kind,
                        },
                        "ownerReferences": [
                            {
                                "apiVersion": APPS_API_VERSION,
                                "kind": "Base",
                                "name": meta["name"],
                                "uid": meta["uid"],
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "spec": {
                        "overridePolicy": "ApplyNow",
                        "priority": REPLICA_LOCALIZATION_PRIORITY,
                        "feed": dict(feed),
                        "overrides": [
                            {
                                "name": "dividing scheduling replicas",
                                "type": "JSONPatch",
                                "value": json.dumps(patch, separators=(",", ":")),
                            }
                        ],
                    },
                }
            )
    return result, errors


def replica_localizations_annotation(
    base: Mapping[str, Any], localizations: Sequence[Mapping[str, Any]], dividing: bool
) -> str | None:
    """The value the Base's replica-localizations annotation must have (None: absent):
    the names of its replica Localizations, comma-separated, for a Dividing Subscription."""
    if not dividing:
        return None
    namespace = base["metadata"]["namespace"]
    return ",".join(
        sorted(
            loc["metadata"]["name"]
            for loc in localizations
            if loc["metadata"]["namespace"] == namespace
        )
    )


def missing_replica_localizations(
    base: Mapping[str, Any], present: Callable[[str], bool]
) -> list[str] | None:
    """Why ``base`` cannot be rendered yet: None when it can; otherwise the replica
    Localizations (``namespace/name``) not in the cache yet, or ``["pending"]`` while the
    Subscription controller has not written them.  ``present`` answers for a cache key."""
    value = (base["metadata"].get("annotations") or {}).get(known.REPLICA_LOCALIZATIONS_ANNOTATION)
    if value is None:
        return None
    if value == known.REPLICA_LOCALIZATIONS_PENDING:
        return [value]
    namespace = base["metadata"]["namespace"]
    missing = [
        f"{namespace}/{n}" for n in value.split(",") if n and not present(f"{namespace}/{n}")
    ]
    return missing or None


def localization_update(current: Mapping[str, Any], desired: Mapping[str, Any]) -> Object | None:
    """``current`` with ``desired``'s spec and labels, or None if nothing differs."""
    labels = dict(current["metadata"].get("labels") or {})
    want = desired["metadata"]["labels"]
    if current.get("spec") == desired["spec"] and all(labels.get(k) == v for k, v in want.items()):
        return None
    return {
        **current,
        "metadata": {**current["metadata"], "labels": {**labels, **want}},
        "spec": desired["spec"],
    }
